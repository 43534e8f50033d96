"""Ranks of one job that were given other settings stop with one UserError, not silently."""

from __future__ import annotations

import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch.utils.data import TensorDataset

from spidercache.data.loader import CachedLoader
from spidercache.errors import UserError
from spidercache.testing.servers import free_port


def _rank(rank: int, port: int, batch_sizes: list[int], out) -> None:
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=2)
    try:
        data = TensorDataset(torch.arange(64, dtype=torch.float32), torch.arange(64) % 4)
        CachedLoader(data, batch_sizes[rank], policy="minio", working_set=0.5, rank=rank, world=2)
        out.put((rank, "ok"))
    except UserError as exc:
        out.put((rank, str(exc)))
    finally:
        dist.destroy_process_group()


def _run(batch_sizes: list[int]) -> dict[int, str]:
    ctx = mp.get_context("spawn")
    out = ctx.Queue()
    port = free_port()
    procs = [ctx.Process(target=_rank, args=(r, port, batch_sizes, out)) for r in range(2)]
    for p in procs:
        p.start()
    got = dict(out.get(timeout=120) for _ in procs)
    for p in procs:
        p.join(timeout=60)
    return got


def test_a_rank_with_another_batch_size_is_one_error_on_every_rank():
    got = _run([16, 8])
    # each names the other rank's value first
    assert "other settings" in got[0] and "batch_size 8 vs 16" in got[0], got
    assert "other settings" in got[1] and "batch_size 16 vs 8" in got[1], got


def test_ranks_with_the_same_settings_start():
    assert _run([16, 16]) == {0: "ok", 1: "ok"}
