"""`spidercache train` end to end on tiny data: datasets, config file, resume, bad input, DDP on loopback."""

from __future__ import annotations

import json
import os
import pickle
import subprocess
import sys

import numpy as np
import pytest
from tiny_npz import make_npz

from spidercache.data import ImageFolder, open_splits
from spidercache.data.datasets import CIFAR, NpzDataset

PY = sys.executable


class Result:
    def __init__(self, returncode, stdout, stderr):
        self.returncode, self.stdout, self.stderr = returncode, stdout, stderr


def cli(*args):
    """Run the CLI in this process (a subprocess would pay torch's import each time)."""
    import contextlib
    import io

    from spidercache.cli import main

    out, err = io.StringIO(), io.StringIO()
    code = 0
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            main(list(args))
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    return Result(code, out.getvalue(), err.getvalue())


def test_train_npz_json_log_plot_and_resume(tmp_path):
    tr, te = make_npz(tmp_path)
    common = [
        tr,
        te,
        "--network",
        "small",
        "--batch_size",
        "32",
        "--working_set_size",
        "0.25",
        "--policy",
        "lru",
        "--storage-latency-ms",
        "0",
        "--workers",
        "0",
        "--checkpoint-dir",
        str(tmp_path / "ck"),
        "--log",
        str(tmp_path / "log.jsonl"),
    ]
    r = cli("train", *common, "--epochs", "2", "--json", "--plot", str(tmp_path / "p.png"))
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    assert [row["epoch"] for row in out["rows"]] == [0, 1]
    for key in (
        "loss",
        "test_accuracy",
        "hit_ratio",
        "substitution_ratio",
        "epoch_seconds",
        "data_wait_seconds",
    ):
        assert key in out["rows"][0]
    assert (tmp_path / "p.png").stat().st_size > 1000
    assert len((tmp_path / "log.jsonl").read_text().splitlines()) == 2
    r = cli("train", *common, "--epochs", "3", "--json", "--resume")
    assert r.returncode == 0, r.stderr
    assert [row["epoch"] for row in json.loads(r.stdout)["rows"]] == [0, 1, 2]


def test_config_file_and_flag_precedence(tmp_path):
    tr, te = make_npz(tmp_path)
    cfg = tmp_path / "c.toml"
    cfg.write_text(
        f'train_paths = ["{tr}", "{te}"]\nepochs = 1\nbatch_size = 64\nworking_set_size = 0.5\n'
        'policy = "minio"\nstorage-latency-ms = 0\nworkers = 0\n'
    )
    r = cli("train", "--config", str(cfg), "--policy", "none", "--json")
    assert r.returncode == 0, r.stderr
    row = json.loads(r.stdout)["rows"][0]
    assert row["policy"] == "none" and row["working_set"] == 0.5


@pytest.mark.parametrize(
    "args,words",
    [
        (["--network", "nope"], "unknown network"),
        (["--working_set_size", "1.5"], "--working-set"),
        (["--working_set_size", "0"], "--working-set"),
        (["/no/such/data.npz"], "not found"),
        (["--policy", "magic"], "unknown training policy"),
        (["--cache-bytes", "10"], "smaller than one sample"),
        (["--cache-backend", "redis", "--port_num", "1", "--port_num2", "1"], "does not answer"),
    ],
)
def test_bad_input_one_line_exit_2(args, words, tmp_path):
    tr, te = make_npz(tmp_path, n=64)
    paths = [] if args and args[0].startswith("/no") else [tr, te]
    r = cli("train", *paths, *args, "--epochs", "1", "--workers", "0", "--storage-latency-ms", "0", "--quiet")
    assert r.returncode == 2, r.stdout + r.stderr
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and words in lines[0], r.stderr


def test_corrupt_dataset_file(tmp_path):
    bad = tmp_path / "bad.npz"
    bad.write_bytes(b"PK\x03\x04 not really a zip")
    r = cli("train", str(bad), str(bad), "--epochs", "1", "--quiet")
    assert r.returncode == 2 and len(r.stderr.strip().splitlines()) == 1


def test_dataset_readers_and_fingerprints(tmp_path):
    from PIL import Image

    # CIFAR-10 layout
    cdir = tmp_path / "cifar"
    cdir.mkdir()
    rng = np.random.default_rng(0)
    for i in range(1, 6):
        with open(cdir / f"data_batch_{i}", "wb") as f:
            pickle.dump({"data": rng.integers(0, 256, (4, 3072), dtype=np.uint8), "labels": [0, 1, 2, 3]}, f)
    with open(cdir / "test_batch", "wb") as f:
        pickle.dump({"data": rng.integers(0, 256, (2, 3072), dtype=np.uint8), "labels": [1, 2]}, f)
    ds, test, note = open_splits([str(cdir)])
    assert isinstance(ds, CIFAR) and ds.data.shape == (20, 3, 32, 32) and ds.num_classes == 10
    assert len(test) == 2 and note == ""
    # ImageFolder
    for cls in ("cat", "dog"):
        (tmp_path / "imgs" / "train" / cls).mkdir(parents=True)
        for j in range(3):
            Image.fromarray(rng.integers(0, 256, (20, 24, 3), dtype=np.uint8)).save(
                tmp_path / "imgs" / "train" / cls / f"{j}.png"
            )
    # (read lazily now: one file per access; no test split next to train/: a held-out part, said in a note)
    im, held, note = open_splits([str(tmp_path / "imgs")], image_size=16)
    assert isinstance(im.dataset, ImageFolder) and im.dataset.classes == ["cat", "dog"]
    assert len(im) + len(held) == 6 and len(held) == 1 and "held-out" in note
    assert tuple(im[0][0].shape) == (3, 16, 16)
    assert ImageFolder(str(tmp_path / "imgs" / "train"), 8).fingerprint() != im.dataset.fingerprint()
    # npz + fingerprint changes with the transform and with the file
    tr, te = make_npz(tmp_path, n=32)
    a = NpzDataset(tr).fingerprint()
    assert NpzDataset(tr, transform=lambda t: t).fingerprint() != a
    os.utime(tr, ns=(1, 1))
    assert NpzDataset(tr).fingerprint() != a


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_ddp_two_ranks_share_one_redis(tmp_path, redis_server):
    """torchrun, 2 ranks, gloo on CPU, one Redis: all cached, epoch 2 is all hits on both ranks."""
    tr, te = make_npz(tmp_path, n=256)
    r = subprocess.run(
        [
            PY,
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
            "2",
            "--policy",
            "minio",
            "--working_set_size",
            "1.0",
            "--cache-backend",
            "redis",
            "--host_ip",
            redis_server.host,
            "--port_num",
            str(redis_server.port),
            "--port_num2",
            str(redis_server.port),
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
        timeout=240,
        env={**os.environ, "OMP_NUM_THREADS": "1", "MASTER_ADDR": "127.0.0.1"},
    )
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-3000:]
    rows = [json.loads(line) for line in (tmp_path / "ddp.jsonl").read_text().splitlines()]
    assert [row["ranks"] for row in rows] == [2, 2]
    assert rows[0]["requests"] == 256 and rows[0]["hits"] == 0
    # each rank reads what the other wrote: a sample is cached once for the cluster
    assert rows[1]["hits"] + rows[1]["lost_hits"] == 256 and rows[1]["hits"] > 200
