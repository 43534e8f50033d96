"""``spider`` under torchrun: 2 ranks, one real Redis for the cache levels and the shared split ratio."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import redis
from tiny_npz import make_npz

from spidercache.testing.servers import free_port


def test_two_ranks_train_with_spider_and_share_the_split_through_redis(tmp_path, redis_server):
    tr, te = make_npz(tmp_path)
    port = str(redis_server.port)
    r = subprocess.run(
        [
            sys.executable,
            "-m",
            "torch.distributed.run",
            "--nproc_per_node",
            "2",
            "--master_port",
            str(free_port()),
            "-m",
            "spidercache",
            "train",
            tr,
            te,
            "--network",
            "small",
            "--batch_size",
            "32",
            "--epochs",
            "3",
            "--policy",
            "spider",
            "--working_set_size",
            "0.25",
            "--cache-backend",
            "redis",
            "--host_ip",
            "127.0.0.1",
            "--port_num",
            port,
            "--port_num2",
            port,
            "--port_num3",
            port,
            "--workers",
            "0",
            "--storage-latency-ms",
            "0",
            "--epoch-log",
            str(tmp_path / "ddp.jsonl"),
            "--quiet",
        ],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "OMP_NUM_THREADS": "1", "MASTER_ADDR": "127.0.0.1"},
    )
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-3000:]
    rows = [json.loads(line) for line in (tmp_path / "ddp.jsonl").read_text().splitlines()]
    assert [row["ranks"] for row in rows] == [2, 2, 2]
    assert all(row["lost_hits"] == 0 for row in rows), "ranks disagreed about what is cached"
    assert rows[-1]["hits"] + rows[-1]["substitutions"] > 0
    # rank 0 published the split once an epoch had measurable gains (epoch 0 only fills the
    # cache, so the first update is at the start of epoch 2); rank 1 read it from there
    keys = sorted(k.decode() for k in redis.Redis(port=redis_server.port).keys("spidercache:spider:ratio:*"))
    assert "2" in [k.rsplit(":", 1)[1] for k in keys]
    for k in keys:
        assert 0.1 <= float(redis.Redis(port=redis_server.port).get(k)) <= 0.9
