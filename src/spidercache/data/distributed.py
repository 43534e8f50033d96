"""DDP plumbing for ``spidercache train``: process group, device, and the gathers the policies need.

``torchrun --nproc_per_node N -m spidercache train ...`` sets RANK, WORLD_SIZE,
LOCAL_RANK and MASTER_ADDR/PORT; ``init_distributed`` reads them and starts
the process group (NCCL when a GPU is there, gloo on CPU). Without them the
job is a single process and every helper here is a no-op.

Why gathers: every rank must hold the same policy state (same scores, hence
the same epoch order and the same cache decisions), so each step's served
ids, losses and (when the policy asks) embeddings are all-gathered before
``policy.update``. Batches are the same size on every rank (the planning
sampler drops the ragged tail under DDP), so a plain ``all_gather`` works.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.distributed as dist

from ..errors import UserError


@dataclass
class DistInfo:
    rank: int = 0
    world: int = 1
    local_rank: int = 0
    device: torch.device = torch.device("cpu")

    @property
    def enabled(self) -> bool:
        return self.world > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def pick_device(local_rank: int = 0, want: str = "auto") -> torch.device:
    if want == "cpu" or (want == "auto" and not torch.cuda.is_available()):
        return torch.device("cpu")
    if want.startswith("cuda") and not torch.cuda.is_available():
        from ..errors import UserError

        raise UserError(f"--device {want}: no CUDA device is available")
    if want.startswith("cuda:"):
        return torch.device(want)
    return torch.device("cuda", local_rank % max(1, torch.cuda.device_count()))


def init_distributed(device: str = "auto") -> DistInfo:
    """Start the process group when launched by torchrun; otherwise a one-process DistInfo."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return DistInfo(device=pick_device(0, device))
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", str(rank)))
    dev = pick_device(local_rank, device)
    if not dist.is_initialized():
        backend = "nccl" if dev.type == "cuda" else "gloo"
        if dev.type == "cuda":
            torch.cuda.set_device(dev)
        dist.init_process_group(backend=backend)
    return DistInfo(rank, world, local_rank, dev)


def shutdown(info: DistInfo) -> None:
    if info.enabled and dist.is_initialized():
        dist.destroy_process_group()


def all_gather_array(info: DistInfo, arr: np.ndarray) -> np.ndarray:
    """Concatenate equal-shaped arrays from every rank (rank order)."""
    if not info.enabled:
        return arr
    t = torch.from_numpy(np.ascontiguousarray(arr)).to(info.device)
    out = [torch.empty_like(t) for _ in range(info.world)]
    dist.all_gather(out, t)
    return torch.cat(out).cpu().numpy()


def all_reduce_sum(info: DistInfo, values: list[float]) -> list[float]:
    if not info.enabled:
        return values
    t = torch.tensor(values, dtype=torch.float64, device=info.device)
    dist.all_reduce(t)
    return t.cpu().tolist()


def barrier(info: DistInfo) -> None:
    if info.enabled:
        dist.barrier()


def check_same_on_every_rank(settings: dict, world: int) -> None:
    """One ``UserError`` naming what differs when the ranks were given other settings.

    Every rank plans the same global batches and takes its block of them, so a rank with
    another batch size, cache size, policy, seed or dataset would skip samples or train
    them twice (or abort in a gather). Checked with one ``all_gather_object`` when a
    process group of ``world`` ranks is up; every rank compares with every other, so all
    of them stop together."""
    if world < 2 or not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() != world:
        return
    every: list[Any] = [None] * world
    dist.all_gather_object(every, settings)
    for rank, other in enumerate(every):
        diff = [k for k in settings if other.get(k) != settings[k]]
        if diff:
            raise UserError(
                f"rank {rank} was started with other settings than rank {dist.get_rank()}: "
                + ", ".join(f"{k} {other.get(k)!r} vs {settings[k]!r}" for k in diff)
                + " (every rank must get the same)"
            )
