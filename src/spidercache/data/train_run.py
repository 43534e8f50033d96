"""One training run's epochs, checkpoints and resume (used by ``data.train``).

Each step passes the policy what it needs from the same forward pass: the
served sample ids, their per-sample losses (``reduction='none'``) and, when
the policy asks, their penultimate-layer embeddings. Under DDP those are
all-gathered first, so every rank's policy stays identical.
"""

from __future__ import annotations

import time
from dataclasses import asdict
from pathlib import Path

import torch
import torch.nn.functional as F

from ..errors import UserError
from ..paths import save_atomic
from .distributed import all_gather_array, all_reduce_sum

_SUMMED = (
    "requests",
    "hits",
    "substitutions",
    "misses",
    "lost_hits",
    "store_errors",
    "source_reads",
    "skipped",
    "data_wait_seconds",
)


class _Run:
    def __init__(self, cfg, info, model, opt, sched, loader, transform, fingerprint, threads=None) -> None:
        self.cfg, self.info, self.model, self.opt, self.sched = cfg, info, model, opt, sched
        self.threads = threads  # a ComputeThreads on CPU hosts, else None
        self.loader, self.transform, self.fingerprint = loader, transform, fingerprint
        self.bare = model.module if info.enabled else model
        self.policy = loader.policy
        self.wants_emb = bool(getattr(self.policy, "wants_embeddings", False))
        # Per-sample loss weights, for a policy that asks (spider: importance-sampling
        # correction, down-weighted stand-ins); None from it means a plain mean.
        self.weigh = getattr(self.policy, "batch_loss_weights", None)
        self.ckpt = Path(cfg.checkpoint_dir) / "last.pt" if cfg.checkpoint_dir else None

    def _step(self, x, y) -> tuple[float, float]:
        info, meta = self.info, self.loader.last
        x = self.transform(x.to(info.device, non_blocking=True))
        y = y.to(info.device, non_blocking=True)
        logits, emb = self.model(x, return_embedding=True)
        losses = F.cross_entropy(logits, y, reduction="none")
        self.opt.zero_grad(set_to_none=True)
        w = self.weigh(meta.requested, meta.substituted) if self.weigh is not None else None
        if w is None:
            losses.mean().backward()
        else:
            (losses * torch.as_tensor(w, dtype=losses.dtype, device=losses.device)).mean().backward()
        self.opt.step()
        l_np = losses.detach().cpu().numpy()
        ids = meta.served
        e_np = emb.detach().cpu().numpy() if self.wants_emb else None
        if info.enabled:
            ids = all_gather_array(info, ids)
            l_np = all_gather_array(info, l_np)
            e_np = all_gather_array(info, e_np) if self.wants_emb else None
        self.loader.update(l_np, ids=ids, embeddings=e_np)
        return float(losses.detach().sum()), float((logits.detach().argmax(1) == y).sum())

    def epoch(self, epoch: int, progress) -> dict:
        cfg, info, loader = self.cfg, self.info, self.loader
        t_epoch = time.perf_counter()
        loader.set_epoch(epoch)
        task = progress.task(epoch, len(loader))
        loss_sum = correct = seen = 0.0
        for x, y in loader:
            if self.threads is not None:
                self.threads.after_batch(loader.last.source_reads)
            ls, cor = self._step(x, y)
            loss_sum, correct, seen = loss_sum + ls, correct + cor, seen + len(y)
            st = loader.current
            progress.advance(
                task,
                rate=seen / max(time.perf_counter() - t_epoch, 1e-9),
                hit=st.hit_ratio,
                sub=st.substitution_ratio,
                loss=loss_sum / max(seen, 1),
            )
        self.sched.step()
        epoch_seconds = time.perf_counter() - t_epoch
        if self.threads is not None:
            self.threads.reset()
        st = asdict(loader.epoch_stats)
        totals = all_reduce_sum(info, [loss_sum, correct, seen] + [st[k] for k in _SUMMED])
        ls, cor, sn = totals[:3]
        c = dict(zip(_SUMMED, totals[3:]))
        epoch_seconds = max(all_reduce_sum(info, [epoch_seconds])[0] / info.world, 0.0)
        req = max(c["requests"], 1)
        return {
            "epoch": epoch,
            "policy": self.policy.name,
            "working_set": cfg.working_set_size,
            "network": cfg.network,
            "seed": cfg.seed,
            "train_samples": len(loader.dataset),
            "loss": ls / max(sn, 1),
            "train_accuracy": 100.0 * cor / max(sn, 1),
            "test_accuracy": float("nan"),
            "requests": int(c["requests"]),
            "hits": int(c["hits"]),
            "substitutions": int(c["substitutions"]),
            "misses": int(c["misses"]),
            "hit_ratio": c["hits"] / req,
            "substitution_ratio": c["substitutions"] / req,
            "lost_hits": int(c["lost_hits"]),
            "store_errors": int(c["store_errors"]),
            "source_reads": int(c["source_reads"]),
            "storage_reads": int(c["source_reads"]),
            "skipped": int(c["skipped"]),
            "cached_bytes": loader.cached_bytes(),
            "epoch_seconds": epoch_seconds,
            "data_wait_seconds": c["data_wait_seconds"] / info.world,
            "samples_per_second": sn / max(epoch_seconds, 1e-9),
            "ranks": info.world,
        }

    def resume(self) -> tuple[list[dict], int]:
        if self.ckpt is None or not self.ckpt.exists():
            raise UserError(f"--resume: no checkpoint at {self.ckpt or '(give --checkpoint-dir)'}")
        try:
            state = torch.load(self.ckpt, map_location=self.info.device, weights_only=False)
        except Exception as exc:
            raise UserError(f"cannot read checkpoint {self.ckpt}: {exc}") from None
        if state.get("fingerprint") != self.fingerprint or state.get("network") != self.cfg.network:
            raise UserError(f"checkpoint {self.ckpt} was made for other data or another network")
        self.bare.load_state_dict(state["model"])
        self.opt.load_state_dict(state["optimizer"])
        self.sched.load_state_dict(state["scheduler"])
        self.policy.load_state_dict(state["policy"])
        return list(state["rows"]), int(state["epoch"]) + 1

    def checkpoint(self, epoch: int, rows: list[dict]) -> None:
        if self.ckpt is None or not self.info.is_main:
            return
        self.ckpt.parent.mkdir(parents=True, exist_ok=True)
        save_atomic(
            {
                "epoch": epoch,
                "model": self.bare.state_dict(),
                "optimizer": self.opt.state_dict(),
                "scheduler": self.sched.state_dict(),
                "policy": self.policy.state_dict(),
                "rows": rows,
                "fingerprint": self.fingerprint,
                "network": self.cfg.network,
                "config": {k: v for k, v in asdict(self.cfg).items() if k != "policy_options"},
            },
            self.ckpt,
        )
