"""Running a network with learned caches: layer by layer, exit at the first hit.

``GatiRuntime.predict`` runs the base network's units in order. After a unit
that has a head, the head looks at the activations; samples whose confidence
reaches the threshold take the head's answer and leave the batch, the others
go on (their order is kept through an index vector). Samples no head takes get
the base network's answer.

Online retraining (``OnlineRetrainer``): when attached, every request that
missed every head hands, for each head, the pooled activations it had at that
head and the base network's answer to a bounded buffer. A background thread
retrains a copy of a head once enough new misses have arrived and swaps it in
only if it validates better on held-out buffered samples (lower cross-entropy
against the base answers, and accuracy on its hits at the current threshold not
lower). The swap replaces one reference under a lock; a request in flight
keeps the heads it started with.

Misses alone cannot show a head that has become confidently wrong (after a
drift its wrong answers are hits, and a hit never reaches the base network).
So one request in ``audit_every`` (a batch, for batched calls) is *audited*: it
takes no early exit, the base network answers it, and every head's view of it
goes to the buffer with the base's answer. The held-out buffer then holds
samples the current head answers confidently, and its accuracy on its hits
there is a real figure (without audits it was 100% by construction, and every
retrained head that missed once on its new hits was rejected).
"""

from __future__ import annotations

import copy
import threading
import time
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from .basemodel import BaseModel
from .compose import Composition
from .explore import Exploration
from .heads import Head, pool_activation, train_head


@dataclass
class Exit:
    unit: int
    name: str
    head: Head
    threshold: float


@dataclass
class Prediction:
    labels: torch.Tensor  # N predicted classes, in input order
    exit_unit: torch.Tensor  # N: unit index that answered; len(units) means the full network
    confidence: torch.Tensor  # N: the answering head's (or the base model's) max softmax

    FIELDS = ("labels", "exit_unit", "confidence")


class GatiRuntime:
    def __init__(self, base: BaseModel, exits: list[Exit]) -> None:
        self.base = base
        self.units = [u for _, u in base.model.units()]
        self.unit_names = [n for n, _ in base.model.units()] + ["base"]
        self._lock = threading.Lock()
        self._exits = {e.unit: e for e in sorted(exits, key=lambda e: e.unit)}
        self.observer: OnlineRetrainer | None = None
        base.model.eval()
        for e in exits:
            e.head.eval()

    @classmethod
    def from_composition(cls, base: BaseModel, ex: Exploration, comp: Composition) -> GatiRuntime:
        exits = [Exit(ex.heads[h].unit, ex.heads[h].name, ex.build_head(h), t) for h, t in comp.choices]
        return cls(base, exits)

    def to(self, device: str | torch.device) -> GatiRuntime:
        """Move the base network and the heads (GPU timing); predictions come back on that device."""
        self.base.model.to(device)
        for e in self._exits.values():
            e.head.to(device)
        return self

    @property
    def exits(self) -> list[Exit]:
        return list(self._exits.values())

    def replace_head(self, unit: int, head: Head) -> None:
        with self._lock:
            old = self._exits[unit]
            exits = dict(self._exits)
            exits[unit] = Exit(unit, old.name, head.eval(), old.threshold)
            self._exits = exits  # one reference swap: readers see old or new, never half

    def layer_name(self, exit_unit: int) -> str:
        return self.unit_names[exit_unit] if exit_unit < len(self.units) else "base"

    @torch.inference_mode()
    def predict(self, x: torch.Tensor) -> Prediction:
        """Predict a preprocessed float batch ``x`` (N x C x H x W)."""
        exits = self._exits  # snapshot: a concurrent swap does not affect this request
        observer = self.observer
        # An audited request takes no early exit: the base answers it, and every head's view of it goes to
        # the retrainer with the base's answer, so that confident wrong answers (drift) can be seen at all.
        audit = observer is not None and observer.audit_now()
        n = x.shape[0]
        n_units = len(self.units)
        dev = x.device
        labels = torch.empty(n, dtype=torch.long, device=dev)
        where = torch.full((n,), n_units, dtype=torch.long, device=dev)
        confidence = torch.empty(n, device=dev)
        index = torch.arange(n, device=dev)
        stash: list[tuple[int, torch.Tensor, torch.Tensor]] = []
        h = x
        for i, unit in enumerate(self.units):
            h = unit(h)
            e = exits.get(i)
            if e is None:
                continue
            stored = pool_activation(h, e.head.grid)
            if audit:
                stash.append((i, stored, index))
                continue
            conf, pred = F.softmax(e.head.forward_stored(stored), 1).max(1)
            hit = conf >= e.threshold
            if n == 1 and index.numel() == 1:  # batch 1: no indexing work on a hit
                if bool(hit[0]):
                    labels[0], where[0], confidence[0] = pred[0], i, conf[0]
                    return Prediction(labels, where, confidence)
                if observer is not None:
                    stash.append((i, stored, index))
                continue
            if observer is not None:
                stash.append((i, stored, index))
            if bool(hit.any()):
                hit_index = index[hit]
                labels[hit_index], where[hit_index], confidence[hit_index] = pred[hit], i, conf[hit]
                keep = ~hit
                if not bool(keep.any()):
                    return Prediction(labels, where, confidence)
                h, index = h[keep], index[keep]
        logits = self.base.model.finish(h)
        conf, pred = F.softmax(logits, 1).max(1)
        labels[index], confidence[index] = pred, conf
        if observer is not None and stash:
            for unit, stored, idx in stash:
                rows = torch.isin(idx, index)  # misses are a subsequence of every earlier index vector
                observer.add(unit, stored[rows].clone(), logits.clone())
        return Prediction(labels, where, confidence)

    def predict_images(self, images: np.ndarray | torch.Tensor) -> Prediction:
        """Predict raw uint8 images (N x C x H x W); checks the shape first."""
        self.base.check_shape(tuple(images.shape[1:]))
        return self.predict(self.base.preprocess(images))


class OnlineRetrainer:
    """Buffers misses per head and retrains heads in a background thread (see module docstring)."""

    def __init__(
        self,
        runtime: GatiRuntime,
        capacity: int = 4096,
        min_new: int = 512,
        holdout_every: int = 5,
        epochs: int = 3,
        lr: float = 5e-4,
        audit_every: int = 20,
    ) -> None:
        self.runtime = runtime
        self.capacity, self.min_new, self.holdout_every = capacity, min_new, holdout_every
        self.epochs, self.lr = epochs, lr
        self._buffers: dict[int, dict[str, list[torch.Tensor]]] = {}
        self._new: dict[int, int] = {}
        self._seen: dict[int, int] = {}
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.swaps: list[dict] = []
        self.rejections: list[dict] = []
        self.busy = False  # True while a head is being retrained (for latency-while-retraining figures)
        self.audit_every, self._requests = audit_every, 0
        runtime.observer = self

    def audit_now(self) -> bool:
        """True for one request (or batch) in ``audit_every``: it runs the whole network (see predict)."""
        self._requests += 1
        return self.audit_every > 0 and self._requests % self.audit_every == 0

    def add(self, unit: int, stored: torch.Tensor, base_logits: torch.Tensor) -> None:
        with self._lock:
            buf = self._buffers.setdefault(unit, {"train_x": [], "train_y": [], "hold_x": [], "hold_y": []})
            for x, y in zip(stored, base_logits):
                seen = self._seen.get(unit, 0)
                part = "hold" if seen % self.holdout_every == 0 else "train"
                buf[f"{part}_x"].append(x)
                buf[f"{part}_y"].append(y)
                self._seen[unit] = seen + 1
                cap = self.capacity // self.holdout_every if part == "hold" else self.capacity
                if len(buf[f"{part}_x"]) > cap:  # oldest out: the buffer follows the drift
                    del buf[f"{part}_x"][0], buf[f"{part}_y"][0]
            self._new[unit] = self._new.get(unit, 0) + len(stored)
            if self._new[unit] >= self.min_new:
                self._wake.set()

    def retrain_now(self) -> int:
        """Retrain every head with enough new misses; returns how many were swapped in."""
        swapped = 0
        for exit_ in self.runtime.exits:
            with self._lock:
                if self._new.get(exit_.unit, 0) < self.min_new:
                    continue
                buf = self._buffers[exit_.unit]
                if len(buf["hold_x"]) < 2 or len(buf["train_x"]) < 2:
                    continue
                tx, ty = torch.stack(buf["train_x"]), torch.stack(buf["train_y"])
                hx, hy = torch.stack(buf["hold_x"]), torch.stack(buf["hold_y"])
                self._new[exit_.unit] = 0
            self.busy = True
            started = time.perf_counter()
            try:
                candidate = copy.deepcopy(exit_.head)
                train_head(candidate, tx, ty, None, epochs=self.epochs, lr=self.lr)
                old_score = self._score(exit_.head, hx, hy, exit_.threshold)
                new_score = self._score(candidate, hx, hy, exit_.threshold)
            finally:
                self.busy = False
            record = {
                "unit": exit_.unit,
                "head": exit_.name,
                "old": old_score,
                "new": new_score,
                "seconds": time.perf_counter() - started,
                "samples": len(tx),
                "at": started,
            }
            if (
                new_score["cross_entropy"] < old_score["cross_entropy"]
                and new_score["hit_accuracy"] >= old_score["hit_accuracy"]
            ):
                self.runtime.replace_head(exit_.unit, candidate)
                self.swaps.append(record)
                swapped += 1
            else:
                self.rejections.append(record)
        return swapped

    @staticmethod
    @torch.inference_mode()
    def _score(head: Head, x: torch.Tensor, base_logits: torch.Tensor, threshold: float) -> dict:
        head.eval()
        logits = head.forward_stored(x.float())
        target = base_logits.argmax(1)
        conf, pred = F.softmax(logits, 1).max(1)
        hit = conf >= threshold
        return {
            "cross_entropy": float(F.cross_entropy(logits, target)),
            "hit_rate": float(hit.float().mean()),
            "hit_accuracy": float((pred[hit] == target[hit]).float().mean()) if bool(hit.any()) else 1.0,
        }

    def start(self) -> OnlineRetrainer:
        self._thread = threading.Thread(target=self._loop, name="gati-retrainer", daemon=True)
        self._thread.start()
        return self

    def _loop(self) -> None:
        while not self._stop.is_set():
            if self._wake.wait(timeout=0.5):
                self._wake.clear()
                self.retrain_now()

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join()
        self.runtime.observer = None
