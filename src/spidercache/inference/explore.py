"""Exploration (``spidercache gati build``): train every head variant at every layer and measure it.

One pass of the base network over the head-training images stores, per
candidate layer (the stem and every block / stage), the activations pooled to
a small grid (float16) and the base logits. Every variant of ``heads.py`` is
then trained on those stored tensors, and evaluated on a separate validation
split: its confidence and prediction per validation image are kept, so that
``compose`` can try any threshold without running anything again. Latency is
measured per unit of the base network and per head at batch 1 and batch 32, and
memory is the head's parameter and buffer bytes. The result is saved with the
base model's fingerprint; loading it for other weights is refused.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from ..errors import UserError
from ..paths import save_atomic
from .basemodel import BaseModel, module_bytes
from .heads import Head, head_outputs, pool_activation, train_head, unit_grids, variants_for
from .progress import Eta

FORMAT = "spidercache-gati/1"
FILE_NAME = "gati.pt"
BATCHES = (1, 32)


@dataclass
class HeadRecord:
    """One trained head and what exploration measured about it."""

    unit: int
    layer: str
    variant: str
    channels: int
    state_dict: dict
    memory_bytes: int
    latency_ms: dict[int, float]  # batch size -> ms for the whole batch
    val_conf: np.ndarray
    val_pred: np.ndarray
    train_seconds: float = 0.0

    @property
    def name(self) -> str:
        return f"{self.layer}:{self.variant}"


@dataclass
class Exploration:
    base_fingerprint: str
    network: str
    input_shape: tuple[int, int, int]
    num_classes: int
    unit_names: list[str]
    unit_channels: list[int]
    unit_ms: dict[int, list[float]]  # batch size -> per unit ms
    finish_ms: dict[int, float]
    heads: list[HeadRecord]
    val_labels: np.ndarray
    val_base_pred: np.ndarray
    settings: dict = field(default_factory=dict)

    def build_head(self, index: int) -> Head:
        rec = self.heads[index]
        head = Head(rec.variant, rec.channels, self.num_classes)
        head.load_state_dict(rec.state_dict)
        return head.eval()

    def save(self, directory: str | os.PathLike) -> Path:
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        blob = {
            "format": FORMAT,
            "base_fingerprint": self.base_fingerprint,
            "network": self.network,
            "input_shape": list(self.input_shape),
            "num_classes": self.num_classes,
            "unit_names": self.unit_names,
            "unit_channels": self.unit_channels,
            "unit_ms": {int(k): list(v) for k, v in self.unit_ms.items()},
            "finish_ms": {int(k): float(v) for k, v in self.finish_ms.items()},
            "val_labels": torch.from_numpy(self.val_labels),
            "val_base_pred": torch.from_numpy(self.val_base_pred),
            "settings": self.settings,
            "heads": [
                {
                    "unit": h.unit,
                    "layer": h.layer,
                    "variant": h.variant,
                    "channels": h.channels,
                    "state_dict": h.state_dict,
                    "memory_bytes": h.memory_bytes,
                    "latency_ms": {int(k): float(v) for k, v in h.latency_ms.items()},
                    "val_conf": torch.from_numpy(h.val_conf),
                    "val_pred": torch.from_numpy(h.val_pred),
                    "train_seconds": h.train_seconds,
                }
                for h in self.heads
            ],
        }
        path = save_atomic(blob, directory / FILE_NAME)  # a reader never sees half a file
        (directory / "summary.json").write_text(json.dumps(self.summary(), indent=1))
        return path

    def summary(self) -> dict:
        base_acc = float(np.mean(self.val_base_pred == self.val_labels) * 100)
        rows = []
        for h in self.heads:
            hit = h.val_conf >= 0.9
            rows.append(
                {
                    "head": h.name,
                    "memory_bytes": h.memory_bytes,
                    "latency_ms_b1": h.latency_ms.get(1),
                    "hit_rate_at_0.9": float(hit.mean() * 100),
                    "accuracy_on_hits_at_0.9": float((h.val_pred[hit] == self.val_labels[hit]).mean() * 100)
                    if hit.any()
                    else None,
                    "agreement_with_base": float((h.val_pred == self.val_base_pred).mean() * 100),
                }
            )
        return {
            "network": self.network,
            "base_fingerprint": self.base_fingerprint,
            "base_val_accuracy": base_acc,
            "unit_ms": self.unit_ms,
            "finish_ms": self.finish_ms,
            "heads": rows,
            "settings": self.settings,
        }


def load_exploration(directory: str | os.PathLike, expected_fingerprint: str | None = None) -> Exploration:
    """Load ``DIR/gati.pt``; refuse it when it was built for another base model."""
    path = Path(directory) / FILE_NAME if Path(directory).is_dir() else Path(directory)
    if not path.is_file():
        raise UserError(f"no GATI caches at {directory} (expected {FILE_NAME}; run `spidercache gati build`)")
    try:
        blob = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise UserError(f"cannot read GATI caches {path}: {type(exc).__name__}") from None
    if not isinstance(blob, dict) or blob.get("format") != FORMAT:
        raise UserError(f"{path} is not a GATI cache file")
    if expected_fingerprint is not None and blob["base_fingerprint"] != expected_fingerprint:
        raise UserError(
            f"GATI caches in {directory} were built for another base model "
            f"(fingerprint {blob['base_fingerprint'][:12]}, this model is {expected_fingerprint[:12]}); "
            "rebuild them"
        )
    heads = [
        HeadRecord(
            unit=h["unit"],
            layer=h["layer"],
            variant=h["variant"],
            channels=h["channels"],
            state_dict=h["state_dict"],
            memory_bytes=h["memory_bytes"],
            latency_ms={int(k): v for k, v in h["latency_ms"].items()},
            val_conf=h["val_conf"].numpy(),
            val_pred=h["val_pred"].numpy(),
            train_seconds=h.get("train_seconds", 0.0),
        )
        for h in blob["heads"]
    ]
    return Exploration(
        base_fingerprint=blob["base_fingerprint"],
        network=blob["network"],
        input_shape=tuple(blob["input_shape"]),
        num_classes=blob["num_classes"],
        unit_names=list(blob["unit_names"]),
        unit_channels=list(blob["unit_channels"]),
        unit_ms={int(k): list(v) for k, v in blob["unit_ms"].items()},
        finish_ms={int(k): v for k, v in blob["finish_ms"].items()},
        heads=heads,
        val_labels=blob["val_labels"].numpy(),
        val_base_pred=blob["val_base_pred"].numpy(),
        settings=dict(blob.get("settings", {})),
    )


@torch.inference_mode()
def collect_activations(
    base: BaseModel, images: np.ndarray, batch_size: int = 256, device: str = "cpu"
) -> tuple[list[dict[int, torch.Tensor]], torch.Tensor]:
    """Per unit, {grid side: the activations pooled to that grid} (float16, on the CPU) for every
    grid a head at that unit reads (``Head.grid``); and the base logits."""
    base.model.eval().to(device)
    units = base.model.units()
    per_unit: list[dict[int, list[torch.Tensor]]] = [{} for _ in units]
    logits = []
    for start in range(0, len(images), batch_size):
        h = base.preprocess(images[start : start + batch_size]).to(device)
        for i, (_, unit) in enumerate(units):
            h = unit(h)
            for grid in unit_grids(h.shape[1]):
                per_unit[i].setdefault(grid, []).append(pool_activation(h, grid).half().cpu())
        logits.append(base.model.finish(h).cpu())
    base.model.cpu()
    return [{g: torch.cat(parts) for g, parts in p.items()} for p in per_unit], torch.cat(logits)


@torch.inference_mode()
def time_call(
    fn: Callable[[], object], reps: int, warmup: int = 2, sync: Callable[[], None] = lambda: None
) -> float:
    """Fastest wall time of ``fn()`` over ``reps`` calls, in ms.

    The minimum, not the median: other jobs on a shared machine only ever add
    time, and on a loaded 2-core box even a median of 15 calls of a 0.1 ms head
    was once 28 ms, which made the composition drop the best head. Units and
    heads are timed the same way, so their ratios stay consistent. ``sync``
    waits for the device (``torch.cuda.synchronize`` on a GPU).
    """
    for _ in range(warmup):
        fn()
    sync()
    times = []
    for _ in range(reps):
        t = time.perf_counter()
        fn()
        sync()
        times.append((time.perf_counter() - t) * 1000)
    return float(np.min(times))


@torch.inference_mode()
def measure_units(
    base: BaseModel, batch: int, reps: int, device: str = "cpu"
) -> tuple[list[float], float, list[torch.Tensor]]:
    """Per-unit latency (ms per batch) and the classifier's, plus one activation per unit (on ``device``)."""
    c, hgt, wid = base.input_shape
    h = torch.randn(batch, c, hgt, wid, device=device)
    sync = torch.cuda.synchronize if device.startswith("cuda") else (lambda: None)
    ms, acts = [], []
    for _, unit in base.model.units():
        x = h
        ms.append(time_call(lambda unit=unit, x=x: unit(x), reps, sync=sync))
        h = unit(h)
        acts.append(h)
    final = h
    return ms, time_call(lambda: base.model.finish(final), reps, sync=sync), acts


def explore(
    base: BaseModel,
    train_images: np.ndarray,
    train_labels: np.ndarray,
    val_images: np.ndarray,
    val_labels: np.ndarray,
    variants: list[str] | None = None,
    head_epochs: int = 8,
    timing_reps: int = 15,
    progress: Callable[[str], None] | None = None,
    device: str = "cpu",
) -> Exploration:
    """Train and measure every (layer, variant) head; see the module docstring."""
    say = progress or (lambda _msg: None)
    torch.manual_seed(0)
    say(f"storing pooled activations of {len(train_images)} training and {len(val_images)} validation images")
    train_acts, train_logits = collect_activations(base, train_images, device=device)
    val_acts, val_logits = collect_activations(base, val_images, device=device)
    val_base_pred = val_logits.argmax(1).numpy()
    train_labels_t = torch.as_tensor(train_labels, dtype=torch.long)
    unit_names = [name for name, _ in base.model.units()]
    channels = [next(iter(a.values())).shape[1] for a in train_acts]

    heads: list[HeadRecord] = []
    todo = [
        (i, v) for i in range(len(unit_names)) for v in variants_for(channels[i]) if v in (variants or [v])
    ]
    eta = Eta(say, "head", every=0.0)
    for i, variant in todo:
        t0 = time.perf_counter()
        head = Head(variant, channels[i], base.num_classes)
        head = train_head(
            head, train_acts[i][head.grid], train_logits, train_labels_t, epochs=head_epochs, seed=i
        )
        seconds = time.perf_counter() - t0
        conf, pred = head_outputs(head, val_acts[i][head.grid])
        state = {k: v.clone() for k, v in head.state_dict().items()}
        rec = HeadRecord(
            i, unit_names[i], variant, channels[i], state, module_bytes(head), {}, conf, pred, seconds
        )
        heads.append(rec)
        hit = conf >= 0.9
        hit_acc = (pred[hit] == val_labels[hit]).mean() * 100 if hit.any() else float("nan")
        agree = (pred == val_base_pred).mean() * 100
        line = (
            f"{unit_names[i]:>10} {variant:<10} hit@0.9 {hit.mean() * 100:5.1f}%  acc on hits {hit_acc:5.1f}%"
        )
        eta(len(heads), len(todo), f"{line}  agrees with base {agree:5.1f}%  trained in {seconds:.1f} s")
    ex = Exploration(
        base_fingerprint=base.fingerprint(),
        network=base.network,
        input_shape=base.input_shape,
        num_classes=base.num_classes,
        unit_names=unit_names,
        unit_channels=channels,
        unit_ms={},
        finish_ms={},
        heads=heads,
        val_labels=np.asarray(val_labels, dtype=np.int64),
        val_base_pred=val_base_pred.astype(np.int64),
        settings={
            "head_epochs": head_epochs,
            "train_images": int(len(train_images)),
            "val_images": int(len(val_images)),
            "variants": variants or "all",
            "torch_threads": torch.get_num_threads(),
        },
    )
    return measure_latency(base, ex, timing_reps, say)


def measure_latency(
    base: BaseModel,
    ex: Exploration,
    reps: int = 15,
    say: Callable[[str], None] = lambda _m: None,
    device: str = "cpu",
) -> Exploration:
    """(Re)measure every unit of the base network and every head at each batch size, in place.

    Exploration calls it once all heads are trained (the timings then come from
    one stretch of time); ``gati bench --retime`` calls it on reused heads, since
    latency belongs to the machine and the moment, not to the heads. With
    ``device="cuda"`` everything is timed on the GPU (the base network is moved
    there and back), for compositions chosen with GPU costs.
    """
    where = f"{torch.get_num_threads()} threads" if device == "cpu" else device
    say(f"timing the base network unit by unit and every head ({where})")
    sync = torch.cuda.synchronize if device.startswith("cuda") else (lambda: None)
    was_on = next(base.model.parameters()).device
    base.model.to(device)
    acts_by_batch = {}
    for b in BATCHES:
        ex.unit_ms[b], ex.finish_ms[b], acts_by_batch[b] = measure_units(
            base, b, reps if b == 1 else max(3, reps // 3), device
        )
    for k, rec in enumerate(ex.heads):
        head = ex.build_head(k).to(device)
        for b in BATCHES:
            act = acts_by_batch[b][rec.unit]
            rec.latency_ms[b] = time_call(
                lambda head=head, act=act: head(act).softmax(1).max(1), reps, sync=sync
            )
    base.model.to(was_on)
    say(
        "unit ms at batch 1: "
        + " ".join(f"{n}={v:.3f}" for n, v in zip(ex.unit_names, ex.unit_ms[1]))
        + f" finish={ex.finish_ms[1]:.3f}"
    )
    return ex
