"""Train the cache or prefetch model on a trace, with checkpoints and resume.

``train(trace, out_dir, cfg)`` writes into ``out_dir``:

* ``config.json``: the model and training configuration (RecMG's example_caching.json);
* ``checkpoint.pt``: model, optimiser, step and loss history, every
  ``checkpoint_every`` steps, written to a temporary file and renamed, so a
  kill -9 loses at most one interval and never leaves a torn checkpoint;
* ``model.pt`` (the final model), ``loss.png`` (loss curves), ``metrics.json``.

Resume is exact: step ``s`` draws its minibatch from ``default_rng([seed, s])``,
the data are recomputed from the trace deterministically, and the optimiser state
is restored, so ``--resume`` after a kill gives the same weights as a run that was
never interrupted (training runs on one thread for bit-for-bit repeatability).
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from ..engine.capacity import capacity_for
from ..engine.ids import remap_trace
from ..engine.nextuse import next_use_positions
from ..errors import UserError
from ..paths import save_atomic
from .features import FeatureState, trace_features
from .models import MAX_DISTANCE, ModelConfig, build_model, save_model
from .optgen import optgen
from .traces import table_of

CHECKPOINT = "checkpoint.pt"
# fields that may differ between a run and its resume (they do not change the result)
_RESUMABLE = {"steps", "checkpoint_every"}


@dataclass
class TrainData:
    x: np.ndarray  # features
    y: np.ndarray  # labels (float32 0/1)
    train_n: int  # the first train_n rows train; the rest validate
    sets: np.ndarray | None = None  # prefetch: start offset of each window's candidate set


def dense_tables(keys: np.ndarray) -> np.ndarray:
    t, _ = remap_trace(table_of(keys))
    return t


def cache_data(keys: np.ndarray, cfg: ModelConfig) -> TrainData:
    """Features and OPT keep-labels at every configured cache size (time split for validation)."""
    ids, n = remap_trace(keys)
    tables = dense_tables(keys)
    cut = int(ids.size * (1 - cfg.validation_share))
    xs_tr, ys_tr, xs_va, ys_va = [], [], [], []
    for cs in cfg.cache_sizes:
        labels = optgen(keys, cs, ids_n=(ids, n))
        feats = trace_features(ids, tables, labels.capacity, cfg.batch_lookups)
        dist = np.where(labels.next_use_distance < 0, np.inf, labels.next_use_distance) / labels.capacity
        y = np.stack(
            [labels.keep.astype(np.float32), np.log1p(np.minimum(dist, MAX_DISTANCE)).astype(np.float32)],
            axis=1,
        )
        xs_tr.append(feats[:cut])
        ys_tr.append(y[:cut])
        xs_va.append(feats[cut:])
        ys_va.append(y[cut:])
    x = np.concatenate(xs_tr + xs_va)
    y = np.concatenate(ys_tr + ys_va)
    return TrainData(x, y, sum(a.shape[0] for a in xs_tr))


def prefetch_data(keys: np.ndarray, cfg: ModelConfig) -> TrainData:
    """Per window of ``window * C`` requests: candidates (keys seen in the last
    ``history * C`` requests), their features now, and whether each comes in the window."""
    ids, n = remap_trace(keys)
    tables = dense_tables(keys)
    cap = min(capacity_for(cfg.cache_sizes[len(cfg.cache_sizes) // 2], n), n)  # all fit above n
    w = max(1, int(cfg.window * cap))
    h = max(1, int(cfg.history * cap))
    nxt = next_use_positions(ids, n)
    table_of_id = np.zeros(n, np.int64)
    table_of_id[ids] = tables
    state = FeatureState(cap, n, int(tables.max()) + 1, cfg.batch_lookups)
    xs, ys, starts = [], [], [0]
    total = ids.size
    for t in range(w, total - w + 1, w):
        state.access(ids[t - w : t], tables[t - w : t])
        cands = np.unique(ids[max(0, t - h) : t])
        last = state.last[cands]
        nu = nxt[last]
        y = ((nu < total) & (nu < t + w)).astype(np.float32)
        xs.append(state.candidates(cands, table_of_id[cands]))
        ys.append(y)
        starts.append(starts[-1] + cands.size)
    if len(xs) < 2:
        raise UserError("trace too short to train a prefetch model: it needs at least two windows")
    n_win = len(xs)
    cut_win = max(1, int(n_win * (1 - cfg.validation_share)))
    return TrainData(np.concatenate(xs), np.concatenate(ys), starts[cut_win], np.array(starts, np.int64))


def _check_config(out: Path, cfg: ModelConfig) -> None:
    path = out / "config.json"
    if not path.exists():
        return
    try:
        saved = ModelConfig.from_dict(json.loads(path.read_text()))
    except (ValueError, TypeError, UserError):
        raise UserError(f"{path} is not a model configuration") from None
    a = {k: v for k, v in asdict(saved).items() if k not in _RESUMABLE}
    b = {k: v for k, v in asdict(cfg).items() if k not in _RESUMABLE}
    if a != b:
        diff = ", ".join(f"{k}: {a[k]!r} vs {b[k]!r}" for k in a if a[k] != b[k])
        raise UserError(f"checkpoint in {out} was made for another model configuration ({diff})")


def _minibatch(data: TrainData, cfg: ModelConfig, step: int):
    rng = np.random.default_rng([cfg.seed, step])
    if data.sets is None:
        idx = rng.integers(0, data.train_n, cfg.batch_size)
        return torch.from_numpy(data.x[idx]), torch.from_numpy(data.y[idx]), None, 0
    n_train_sets = int(np.searchsorted(data.sets, data.train_n))
    chosen = rng.integers(0, n_train_sets, 2)
    parts = [np.arange(data.sets[c], data.sets[c + 1]) for c in chosen]
    idx = np.concatenate(parts)
    sets = np.repeat(np.arange(len(parts)), [p.size for p in parts])
    return torch.from_numpy(data.x[idx]), torch.from_numpy(data.y[idx]), torch.from_numpy(sets), len(parts)


@torch.no_grad()
def evaluate(model, data: TrainData) -> dict:
    x = data.x[data.train_n :]
    y = data.y[data.train_n :]
    if x.shape[0] == 0:
        return {}
    out = {}
    if y.ndim == 2:  # cache model: keep label and log next-use distance
        pred = model(torch.from_numpy(x)).numpy()
        out["val_distance_mse"] = float(np.mean((pred[:, 1] - y[:, 1]) ** 2))
        y = y[:, 0]
    p = model.score(x)
    pred = p >= 0.5
    tp = float(np.sum(pred & (y > 0.5)))
    out |= {
        "val_accuracy": float(np.mean(pred == (y > 0.5))),
        "val_precision": tp / max(float(pred.sum()), 1.0),
        "val_recall": tp / max(float((y > 0.5).sum()), 1.0),
        "val_positive_share": float(y.mean()),
    }
    eps = 1e-7
    out["val_bce"] = float(-np.mean(y * np.log(p + eps) + (1 - y) * np.log(1 - p + eps)))
    return out


def plot_losses(
    history: list[tuple[int, float]], val: list[tuple[int, float]], path: Path, title: str
) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 3.5))
    if history:
        steps, losses = zip(*history)
        ax.plot(steps, losses, lw=0.8, label="train loss")
    if val:
        steps, losses = zip(*val)
        ax.plot(steps, losses, "o-", label="validation loss")
    ax.set_xlabel("step")
    ax.set_ylabel("loss")
    ax.set_title(title)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def _check_run(cfg: ModelConfig, out: Path, resume: bool) -> Path:
    """Refuse a bad configuration or output folder before any work; make the folder."""
    cfg.check()
    if out.exists() and not out.is_dir():
        raise UserError(f"--out exists and is not a folder: {out}")
    ckpt_path = out / CHECKPOINT
    if resume:
        if not ckpt_path.exists():
            raise UserError(f"nothing to resume: no {CHECKPOINT} in {out}")
        _check_config(out, cfg)
    elif ckpt_path.exists() or (out / "model.pt").exists():
        raise UserError(f"{out} already holds a training run; pass --resume or choose another --out")
    out.mkdir(parents=True, exist_ok=True)
    return out


def train(
    keys: np.ndarray,
    out_dir: str | os.PathLike,
    cfg: ModelConfig,
    resume: bool = False,
    progress: Callable[[int, int, float], None] | None = None,
) -> dict:
    """Train ``cfg.model`` on the trace ``keys``; returns the final metrics."""
    out = _check_run(cfg, Path(out_dir), resume)
    ckpt_path = out / CHECKPOINT
    (out / "config.json").write_text(cfg.to_json())

    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # bit-for-bit repeatable, so resume == uninterrupted
    try:
        data = cache_data(keys, cfg) if cfg.model == "cache" else prefetch_data(keys, cfg)
        torch.manual_seed(cfg.seed)
        model = build_model(cfg)
        opt = torch.optim.Adam(model.parameters(), lr=cfg.learning_rate)
        step, history, val_hist = 0, [], []
        if resume:
            try:
                blob = torch.load(ckpt_path, map_location="cpu", weights_only=True)
                model.load_state_dict(blob["model"])
                opt.load_state_dict(blob["optim"])
            except Exception:
                raise UserError(f"{ckpt_path} does not fit this model configuration") from None
            step = int(blob["step"])
            history = [tuple(x) for x in blob["history"]]
            val_hist = [tuple(x) for x in blob["val"]]
        model.train()
        while step < cfg.steps:
            x, y, sets, n_sets = _minibatch(data, cfg, step)
            loss = model.loss(x, y) if sets is None else model.loss(x, y, sets, n_sets)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            step += 1
            value = float(loss.detach())
            history.append((step, value))
            if progress is not None:
                progress(step, cfg.steps, value)
            if step % cfg.checkpoint_every == 0 or step == cfg.steps:
                model.eval()
                ev = evaluate(model, data)
                val_hist.append((step, ev.get("val_bce", float("nan")) + ev.get("val_distance_mse", 0.0)))
                model.train()
                save_atomic(
                    {
                        "model": model.state_dict(),
                        "optim": opt.state_dict(),
                        "step": step,
                        "history": history,
                        "val": val_hist,
                        "config": asdict(cfg),
                    },
                    ckpt_path,
                )
                plot_losses(history, val_hist, out / "loss.png", f"{cfg.model} model")
        model.eval()
        metrics = {
            "steps": step,
            "final_loss": history[-1][1] if history else None,
            "train_rows": int(data.train_n),
            "val_rows": int(data.x.shape[0] - data.train_n),
        }
        metrics.update(evaluate(model, data))
        save_model(model, out / "model.pt")
        (out / "metrics.json").write_text(json.dumps(metrics, indent=2))
        return metrics
    finally:
        torch.set_num_threads(threads)
