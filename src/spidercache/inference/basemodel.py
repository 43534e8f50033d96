"""The base network GATI accelerates: checkpoints, fingerprint, preprocessing, a short training loop.

A checkpoint is ``torch.save`` of a dict with the network's name, its input
shape, class count, the pixel normalisation and the ``state_dict``. A bare
state dict is also accepted when the caller names the network. The
fingerprint is a digest of the network name and every tensor in the state
dict: heads built for one set of weights are refused by any other.
"""

from __future__ import annotations

import hashlib
import math
import os
import time
from dataclasses import dataclass, field
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..errors import UserError
from ..models import LayeredNet, build_model

CHECKPOINT_FORMAT = "spidercache-model/1"


@dataclass
class BaseModel:
    """A network plus what is needed to feed it raw uint8 images."""

    network: str
    model: LayeredNet
    input_shape: tuple[int, int, int]  # C, H, W
    num_classes: int
    mean: float = 0.0
    std: float = 1.0
    meta: dict = field(default_factory=dict)
    _fingerprint: str | None = None

    def preprocess(self, images: np.ndarray | torch.Tensor) -> torch.Tensor:
        """uint8 (or float in [0, 255]) N x C x H x W -> normalised float32 tensor."""
        x = torch.as_tensor(images)
        x = x.float().div_(255.0) if x.dtype == torch.uint8 else x.float()
        return (x - self.mean) / self.std

    def check_shape(self, shape: tuple[int, ...]) -> None:
        """Raise UserError unless ``shape`` (C, H, W) is what the network takes."""
        if tuple(shape) != tuple(self.input_shape):
            c, h, w = self.input_shape
            got = "x".join(str(s) for s in shape)
            raise UserError(f"image is {got} (channels x height x width) but the model takes {c}x{h}x{w}")

    def fingerprint(self) -> str:
        if self._fingerprint is None:
            h = hashlib.sha256(self.network.encode())
            for name, tensor in self.model.state_dict().items():
                h.update(name.encode())
                h.update(str(tuple(tensor.shape)).encode())
                h.update(tensor.detach().cpu().contiguous().numpy().tobytes())
            self._fingerprint = h.hexdigest()[:32]
        return self._fingerprint

    def save(self, path: str | os.PathLike) -> None:
        torch.save(
            {
                "format": CHECKPOINT_FORMAT,
                "network": self.network,
                "input_shape": list(self.input_shape),
                "num_classes": self.num_classes,
                "mean": self.mean,
                "std": self.std,
                "meta": self.meta,
                "state_dict": self.model.state_dict(),
            },
            path,
        )


def load_checkpoint(
    path: str | os.PathLike,
    network: str | None = None,
    input_shape: tuple[int, int, int] | None = None,
    num_classes: int | None = None,
) -> BaseModel:
    """Load a checkpoint written by ``BaseModel.save`` (or a bare state dict plus names).

    Every failure (missing file, not a torch file, truncated, wrong keys) is a
    one-line ``UserError``.
    """
    if not os.path.isfile(path):
        raise UserError(f"model checkpoint not found: {path}")
    try:
        blob = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises many types for a damaged file
        raise UserError(f"cannot read model checkpoint {path}: {type(exc).__name__}: {str(exc).splitlines()[0][:160]}") from None
    if isinstance(blob, dict) and "state_dict" in blob:
        network = blob.get("network", network)
        input_shape = tuple(blob.get("input_shape") or input_shape or ())
        num_classes = blob.get("num_classes", num_classes)
        state = blob["state_dict"]
        mean, std, meta = float(blob.get("mean", 0.0)), float(blob.get("std", 1.0)), dict(blob.get("meta", {}))
    elif isinstance(blob, dict):
        state, mean, std, meta = blob, 0.0, 1.0, {}
    else:
        raise UserError(f"{path} does not hold a state dict")
    if not network or not input_shape or not num_classes:
        raise UserError(f"{path} is a bare state dict: give the network, input shape and class count")
    model = build_model(network, in_channels=int(input_shape[0]), num_classes=int(num_classes))
    try:
        model.load_state_dict(state)
    except (RuntimeError, KeyError, TypeError) as exc:
        raise UserError(f"checkpoint {path} does not fit network {network}: {str(exc).splitlines()[0][:160]}") from None
    model.eval()
    return BaseModel(network, model, tuple(int(s) for s in input_shape), int(num_classes), mean, std, meta)


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
) -> BaseModel:
    """Train ``network`` from scratch with SGD + one-cycle LR on uint8 images (N x C x H x W).

    This is the small loop GATI's benchmark needs; the full ``spidercache
    train`` (caching, policies, DDP) lives elsewhere.
    """
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    mean = float(images.mean() / 255.0)
    std = float(images.std() / 255.0) or 1.0
    model = build_model(network, in_channels=images.shape[1], num_classes=num_classes)
    base = BaseModel(network, model, tuple(images.shape[1:]), num_classes, mean, std)
    model.to(device)
    steps_per_epoch = math.ceil(len(images) / batch_size)
    total = max(1, epochs * steps_per_epoch)
    opt = torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9, nesterov=True, weight_decay=5e-4)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=total, pct_start=0.25)
    labels_t = torch.as_tensor(labels, dtype=torch.long)
    step = 0
    started = time.perf_counter()
    model.train()
    for _ in range(epochs):
        order = rng.permutation(len(images))
        for start in range(0, len(images), batch_size):
            idx = order[start:start + batch_size]
            x = base.preprocess(images[idx]).to(device, non_blocking=True)
            loss = F.cross_entropy(model(x), labels_t[idx].to(device))
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            step += 1
            if progress is not None:
                progress(step, total, float(loss.detach()))
    model.eval().cpu()
    base.meta = {"epochs": epochs, "train_samples": int(len(images)), "train_seconds": time.perf_counter() - started}
    return base


@torch.inference_mode()
def predict_logits(base: BaseModel, images: np.ndarray, batch_size: int = 256) -> torch.Tensor:
    """Base-model logits for uint8 images, in batches."""
    base.model.eval()
    out = [base.model(base.preprocess(images[i:i + batch_size])) for i in range(0, len(images), batch_size)]
    return torch.cat(out) if out else torch.empty(0, base.num_classes)


def accuracy(pred: torch.Tensor | np.ndarray, labels: np.ndarray) -> float:
    """Accuracy in percent."""
    return 100.0 * float(np.mean(np.asarray(pred) == np.asarray(labels)))


def module_bytes(module: nn.Module) -> int:
    return sum(p.numel() * p.element_size() for p in module.parameters()) + sum(
        b.numel() * b.element_size() for b in module.buffers()
    )
