"""Online retraining measured on a stream whose inputs shift.

``drift_stream`` replays ``requests`` test images one by one (batch 1, as a
server sees them), arriving at ``rate`` requests per second (back to back when
the network is slower than that; 0: always back to back). The rate matters: a
retrain runs beside the requests, and a stream that is over before the first
retrain ends shows no effect of retraining. After the first third the input distribution shifts: every
image gets a contrast and brightness change (``x * contrast + brightness``,
clipped), the kind of drift a camera at dusk produces. The stream is replayed
twice from fresh heads: once as built (``static``), once with an
``OnlineRetrainer`` retraining heads in a background thread from the base
network's answers on misses (``retraining``). Per window of the stream it
reports the hit rate (requests answered by a head), the accuracy against the
labels (and the base network's own accuracy on the same stream, the figure
GATI's accuracy is to stay close to) and the latency; per retrain, how long it took and whether the head was
swapped in; and the latency of requests served while a retrain was running
against those served while none was.
"""

from __future__ import annotations

import time
from typing import Callable

import numpy as np
import torch

from .runtime import GatiRuntime, OnlineRetrainer


def shift_images(images: np.ndarray, contrast: float = 0.5, brightness: float = 90.0) -> np.ndarray:
    """uint8 images with contrast scaled and brightness added (clipped to 0..255)."""
    return np.clip(images.astype(np.float32) * contrast + brightness, 0, 255).astype(np.uint8)


def _replay(
    runtime: GatiRuntime, x: torch.Tensor, labels: np.ndarray, retrainer: OnlineRetrainer | None, rate: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    n_units = len(runtime.units)
    ms, hit, correct, busy = (np.zeros(len(x)) for _ in range(4))
    interval, due = (1.0 / rate if rate > 0 else 0.0), time.perf_counter()
    for i in range(len(x)):
        due += interval
        if interval:  # requests arrive at ``rate`` per second (back to back when the model is slower)
            time.sleep(max(0.0, due - time.perf_counter()))
        during = retrainer is not None and retrainer.busy
        t = time.perf_counter()
        out = runtime.predict(x[i : i + 1])
        ms[i] = (time.perf_counter() - t) * 1000
        hit[i] = int(out.exit_unit[0]) < n_units
        correct[i] = int(out.labels[0]) == labels[i]
        busy[i] = during or (retrainer is not None and retrainer.busy)
    return ms, hit, correct, busy


def _summary(mode, ms, hit, correct, busy, shift_at, retrainer, last_window: dict) -> dict:
    """One mode's figures over the whole stream (see the module docstring)."""
    records = (retrainer.swaps + retrainer.rejections) if retrainer is not None else []
    b = busy.astype(bool)
    return {
        "section": "retraining",
        "mode": mode,
        "window": None,
        "requests": len(ms),
        "shift_at": shift_at,
        "accuracy_before_shift": 100 * correct[:shift_at].mean(),
        "accuracy_after_shift": 100 * correct[shift_at:].mean(),
        "hit_rate_before_shift": 100 * hit[:shift_at].mean(),
        "hit_rate_after_shift": 100 * hit[shift_at:].mean(),
        "hit_rate_last_window": last_window["hit_rate"],
        "accuracy_last_window": last_window["accuracy"],
        "mean_ms": ms.mean(),
        "retrains": len(records),
        "swaps": len(retrainer.swaps) if retrainer else 0,
        "retrain_seconds": [r["seconds"] for r in records],
        "mean_ms_while_retraining": float(ms[b].mean()) if b.any() else None,
        "mean_ms_otherwise": float(ms[~b].mean()) if (~b).any() else None,
    }


def drift_stream(
    make_runtime: Callable[[], GatiRuntime],
    images: np.ndarray,
    labels: np.ndarray,
    requests: int = 3000,
    windows: int = 10,
    contrast: float = 0.5,
    brightness: float = 90.0,
    min_new: int = 256,
    rate: float = 500.0,
    seed: int = 0,
    say: Callable[[str], None] = lambda _m: None,
) -> list[dict]:
    """Rows (``section: retraining``) per mode and window, and one summary row per mode (``window: None``)."""
    rng = np.random.default_rng(seed)
    order = rng.integers(0, len(images), size=requests)
    raw = images[order].copy()
    shift_at = requests // 3
    raw[shift_at:] = shift_images(raw[shift_at:], contrast, brightness)
    y = np.asarray(labels)[order]
    rows = []
    base_ok = None  # the base network's own answers on the stream: what GATI is measured against
    for mode in ("static", "retraining"):
        runtime = make_runtime()
        x = runtime.base.preprocess(raw)
        if base_ok is None:
            with torch.inference_mode():
                base_pred = torch.cat(
                    [runtime.base.model(x[i : i + 256]).argmax(1) for i in range(0, len(x), 256)]
                )
            base_ok = base_pred.numpy() == y
        retrainer = OnlineRetrainer(runtime, min_new=min_new).start() if mode == "retraining" else None
        t0 = time.perf_counter()
        try:
            with torch.inference_mode():
                ms, hit, correct, busy = _replay(runtime, x, y, retrainer, rate)
        finally:
            if retrainer is not None:
                retrainer.stop()
        wall = time.perf_counter() - t0
        size = max(1, requests // windows)
        for w, s in enumerate(range(0, requests, size)):
            sl = slice(s, min(s + size, requests))
            rows.append(
                {
                    "section": "retraining",
                    "mode": mode,
                    "window": w,
                    "first_request": s,
                    "shifted": s >= shift_at,
                    "hit_rate": 100 * hit[sl].mean(),
                    "accuracy": 100 * correct[sl].mean(),
                    "base_accuracy": 100 * base_ok[sl].mean(),
                    "mean_ms": ms[sl].mean(),
                    "p99_ms": float(np.percentile(ms[sl], 99)),
                    "retraining_share": 100 * busy[sl].mean(),
                }
            )
        summary = _summary(mode, ms, hit, correct, busy, shift_at, retrainer, rows[-1])
        summary.update(contrast=contrast, brightness=brightness, seconds=wall, rate_rps=rate)
        summary.update(
            base_accuracy_before_shift=100 * base_ok[:shift_at].mean(),
            base_accuracy_after_shift=100 * base_ok[shift_at:].mean(),
        )
        rows.append(summary)
        m = summary
        say(
            f"stream {mode}: hit rate {m['hit_rate_before_shift']:.1f}% -> {m['hit_rate_after_shift']:.1f}% "
            f"(last window {m['hit_rate_last_window']:.1f}%), accuracy {m['accuracy_before_shift']:.2f}% -> "
            f"{m['accuracy_after_shift']:.2f}% (base alone {m['base_accuracy_before_shift']:.2f}% -> "
            f"{m['base_accuracy_after_shift']:.2f}%), {m['retrains']} retrain(s), {m['swaps']} swapped"
        )
    return rows
