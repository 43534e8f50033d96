"""Training a GATI base network from scratch: SGD, a plateau rule for convergence, resumable epochs.

This is the small loop GATI's benchmark needs (``gati train-base``, ``gati bench``);
the full trainer with caching, policies and DDP is ``spidercache train``.
"""

from __future__ import annotations

import math
import os
import time
from functools import partial
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..errors import UserError
from ..models import build_model, network_key
from .basemodel import BaseModel, evaluate
from .resume import EpochState

PRECISIONS = ("fp32", "bf16")


def check_precision(precision: str) -> str:
    """``precision`` if training can use it (``PRECISIONS``), else a UserError."""
    if precision not in PRECISIONS:
        raise UserError(f"--precision must be one of {', '.join(PRECISIONS)}, got {precision!r}")
    return precision


def _train_epoch(
    base: BaseModel,
    images: np.ndarray,
    labels_t: torch.Tensor,
    rng,
    batch_size: int,
    opt,
    sched,
    device: str,
    step: int,
    total: int,
    progress,
    warmup_lr: float | None,
    precision: str = "fp32",
) -> int:
    """One epoch of SGD in a random order; ``warmup_lr``: ramp the rate linearly up to it over the epoch.

    ``precision`` bf16: the forward pass and the loss under ``torch.autocast`` in bfloat16
    (weights, gradients and the optimizer stay float32).
    """
    model = base.model
    model.train()
    steps_per_epoch = math.ceil(len(images) / batch_size)
    order = rng.permutation(len(images))
    for start in range(0, len(images), batch_size):
        idx = order[start : start + batch_size]
        if warmup_lr is not None:
            for g in opt.param_groups:
                g["lr"] = warmup_lr * min(1.0, (start // batch_size + 1) / steps_per_epoch)
        x = base.preprocess(images[idx]).to(device, non_blocking=True)
        with torch.autocast(device.split(":")[0], torch.bfloat16, enabled=precision == "bf16"):
            loss = F.cross_entropy(model(x), labels_t[idx].to(device))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if sched is not None:
            sched.step()
        step += 1
        if progress is not None:
            progress(step, total, float(loss.detach()))
    return step


class _Plateau:
    """Keeps the best epoch's weights; an epoch that does not beat the best by ``min_delta`` points
    divides the rate by 5, and ``patience`` such epochs in a row stop training."""

    def __init__(self, patience: int, min_delta: float = 0.1) -> None:
        self.patience, self.min_delta = patience, min_delta
        self.history, self.best, self.best_state, self.stall = [], -1.0, None, 0

    def update(self, record: dict, model: nn.Module, opt: torch.optim.Optimizer) -> bool:
        self.history.append(record)
        gain = record["val_accuracy"] - self.best
        if gain > 0:
            self.best = record["val_accuracy"]
            self.best_state = {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}
        # Accuracies are percentages of a count, so a gain of exactly min_delta can land a rounding
        # error either side of it (93.60000000000001 - 93.5 > 0.1, 93.42 - 93.32000000000001 < 0.1): the slack
        # makes such a gain a stall every time, as the rule says.
        if gain > self.min_delta + 1e-9:
            self.stall = 0
            return False
        self.stall += 1
        for g in opt.param_groups:
            g["lr"] /= 5.0
        return self.stall >= self.patience


def _after_epoch(base: BaseModel, epoch: int, val: tuple, device: str, opt, stop: _Plateau, on_epoch) -> bool:
    """Validation accuracy after ``epoch``, told to ``on_epoch``; True when the plateau rule stops."""
    record = {"epoch": epoch, "val_accuracy": evaluate(base, val[0], val[1], device)}
    record["lr"] = opt.param_groups[0]["lr"]
    if on_epoch is not None:
        on_epoch(record)
    return stop.update(record, base.model, opt)


def train_base_model(
    network: str,
    images: np.ndarray,
    labels: np.ndarray,
    num_classes: int,
    epochs: int = 1,
    batch_size: int = 128,
    lr: float = 0.05,
    seed: int = 0,
    progress: Callable[[int, int, float], None] | None = None,
    device: str = "cpu",
    stem: str | None = None,
    val_images: np.ndarray | None = None,
    val_labels: np.ndarray | None = None,
    patience: int = 2,
    on_epoch: Callable[[dict], None] | None = None,
    resume: str | os.PathLike | None = None,
    say: Callable[[str], None] = lambda _m: None,
    precision: str = "fp32",
) -> BaseModel:
    """Train ``network`` from scratch with SGD on uint8 images (N x C x H x W, already at the input size).

    Without a validation split: ``epochs`` epochs of a one-cycle schedule.
    With one (``val_images``): until convergence, at most ``epochs`` epochs;
    after each epoch the validation accuracy is measured, an epoch that does
    not beat the best by 0.1 point divides the learning rate by 5, and
    ``patience`` such epochs in a row stop training; the best epoch's weights
    are kept. The history and whether it stopped by itself (``converged``) go in ``meta``.
    With ``resume`` (a path, ``resume.partial_path(checkpoint)``), the whole
    state is saved there after every epoch and a run with the same data and
    settings continues from it (``inference.resume``); ``say`` tells which.
    ``precision`` ``bf16`` trains in bfloat16 autocast (``PRECISIONS``): about twice as fast
    on a CPU with AVX512-BF16 or AMX, and on recent GPUs; the base is used in float32.
    """
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    base = _fresh_base(network, images, num_classes, stem)
    model = base.model.to(device)
    steps_per_epoch = math.ceil(len(images) / batch_size)
    total = max(1, epochs * steps_per_epoch)
    opt = torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9, nesterov=True, weight_decay=5e-4)
    plateau = val_images is not None
    sched = (
        None
        if plateau
        else torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=total, pct_start=0.25)
    )
    labels_t = torch.as_tensor(labels, dtype=torch.long)
    stop = _Plateau(patience)
    run = EpochState(resume, say, model, opt, sched, rng, stop)
    # fp32 is left out of the key, so that states saved before the option existed stay valid
    mixed = {"precision": precision} if check_precision(precision) != "fp32" else {}
    run.restore(
        (images, labels, val_images, val_labels), network=network_key(network), classes=num_classes,
        epochs=epochs, batch=batch_size, lr=lr, seed=seed, stem=stem, patience=patience, **mixed,
    )  # fmt: skip
    step, started = run.step, time.perf_counter() - run.seconds
    one_epoch = partial(_train_epoch, base, images, labels_t, rng, batch_size, opt, sched, device)
    one_epoch = partial(one_epoch, total=total, progress=progress, precision=precision)
    for epoch in range(run.epoch + 1, 0 if run.done else epochs + 1):
        warmup = lr if plateau and epoch == 1 else None
        step = one_epoch(step=step, warmup_lr=warmup)
        done = epoch == epochs
        if plateau:
            done = _after_epoch(base, epoch, (val_images, val_labels), device, opt, stop, on_epoch) or done
        run.save(epoch, step, time.perf_counter() - started, done)
        if done:
            break
    if stop.best_state is not None:
        model.load_state_dict(stop.best_state)
    model.eval().cpu()
    base.meta = {"epochs": len(stop.history) if plateau else epochs, "train_samples": int(len(images))}
    base.meta.update(train_seconds=time.perf_counter() - started, stem=stem, precision=precision)
    if run.resumed_after:
        base.meta["resumed_after_epoch"] = run.resumed_after
    if plateau:
        best_epoch = max(stop.history, key=lambda h: h["val_accuracy"])["epoch"]
        base.meta.update(val_history=stop.history, val_accuracy=stop.best, converged=stop.stall >= patience)
        base.meta.update(best_epoch=best_epoch, max_epochs=epochs)
    return base


def _fresh_base(network: str, images: np.ndarray, num_classes: int, stem: str | None) -> BaseModel:
    """A randomly initialised ``network`` whose preprocessing normalises by the pixels of ``images``."""
    mean = float(images.mean() / 255.0)
    std = float(images.std() / 255.0) or 1.0
    model = build_model(network, in_channels=images.shape[1], num_classes=num_classes, stem=stem)
    return BaseModel(network_key(network), model, tuple(images.shape[1:]), num_classes, mean, std, stem=stem)
