"""Learned cache heads: small predictors of the base network's answer from one layer.

Every head starts by average-pooling the layer's activations to a fixed grid
(4x4 where the layer has at most ``MAX_GRID4_CHANNELS`` channels, else 2x2;
7x7 for ``pool7_mlp``), so that exploration can store small pooled tensors per
sample and layer (one per grid the layer's variants use) and train every
variant from them; at run time the head does the same pooling on the live
activations, so training and serving see identical inputs.

Variants (GATI's "predictor" networks):

* ``gap_linear``  global average pool, then one linear layer;
* ``pool2_mlp``   2x2 average pool, flatten, MLP with one hidden layer;
* ``pool4_mlp``   4x4 average pool, flatten, MLP (only where the 4x4 grid is kept);
* ``pool7_mlp``   7x7 average pool, flatten, MLP: only on narrow layers (at most
  ``MAX_GRID7_CHANNELS``), i.e. early in the network where a head is cheapest
  and the coarser grids throw away most of the spatial detail (on 28x28 images
  a 4x4 grid averages 7x7-pixel blocks);
* ``conv1x1``     1x1 conv (C -> 32) + ReLU on the 4x4 grid, 2x2 pool, linear.

The selector is the head's maximum softmax probability against a threshold
chosen by ``compose``; a hit returns the head's argmax.
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

MAX_GRID4_CHANNELS = 512
MAX_GRID7_CHANNELS = 128
HIDDEN = 128
CONV_CHANNELS = 32
VARIANTS = ("gap_linear", "pool2_mlp", "pool4_mlp", "conv1x1", "pool7_mlp")


def stored_grid(channels: int) -> int:
    """Grid side the exploration stores for the coarse variants of a layer with ``channels`` channels."""
    return 4 if channels <= MAX_GRID4_CHANNELS else 2


def head_grid(variant: str, channels: int) -> int:
    """Grid side a head of ``variant`` pools a ``channels``-channel layer to."""
    return 7 if variant == "pool7_mlp" else stored_grid(channels)


def variants_for(channels: int) -> list[str]:
    if stored_grid(channels) == 2:
        return ["gap_linear", "pool2_mlp"]
    if channels <= MAX_GRID7_CHANNELS:
        return list(VARIANTS)
    return [v for v in VARIANTS if v != "pool7_mlp"]


def unit_grids(channels: int) -> list[int]:
    """Every grid the variants offered for such a layer read (what exploration stores)."""
    return sorted({head_grid(v, channels) for v in variants_for(channels)})


def pool_activation(h: torch.Tensor, grid: int) -> torch.Tensor:
    return F.adaptive_avg_pool2d(h, grid)


class Head(nn.Module):
    """One learned cache: pooled activations of one layer -> class logits."""

    def __init__(self, variant: str, channels: int, num_classes: int) -> None:
        super().__init__()
        if variant not in variants_for(channels):
            raise ValueError(f"variant {variant!r} is not offered for a {channels}-channel layer")
        self.variant = variant
        self.channels = channels
        self.num_classes = num_classes
        self.grid = head_grid(variant, channels)
        if variant == "gap_linear":
            self.body = nn.Sequential(nn.Flatten(), nn.Linear(channels, num_classes))
        elif variant in ("pool2_mlp", "pool4_mlp", "pool7_mlp"):
            width = channels * {"pool2_mlp": 4, "pool4_mlp": 16, "pool7_mlp": 49}[variant]
            self.body = nn.Sequential(
                nn.Flatten(),
                nn.BatchNorm1d(width),
                nn.Linear(width, HIDDEN),
                nn.ReLU(inplace=True),
                nn.Linear(HIDDEN, num_classes),
            )
        else:  # conv1x1
            self.body = nn.Sequential(
                nn.Conv2d(channels, CONV_CHANNELS, 1),
                nn.BatchNorm2d(CONV_CHANNELS),
                nn.ReLU(inplace=True),
                nn.AvgPool2d(2),
                nn.Flatten(),
                nn.Linear(CONV_CHANNELS * 4, num_classes),
            )

    def reduce(self, stored: torch.Tensor) -> torch.Tensor:
        """From the stored grid (7x7, 4x4 or 2x2: ``self.grid``) to this variant's input grid."""
        if self.variant == "gap_linear":
            return stored.mean(dim=(2, 3), keepdim=True)
        if self.variant == "pool2_mlp" and stored.shape[-1] == 4:
            return F.avg_pool2d(stored, 2)
        return stored

    def forward_stored(self, stored: torch.Tensor) -> torch.Tensor:
        return self.body(self.reduce(stored))

    def forward(self, activation: torch.Tensor) -> torch.Tensor:
        return self.forward_stored(pool_activation(activation, self.grid))

    def describe(self) -> dict:
        return {"variant": self.variant, "channels": self.channels, "num_classes": self.num_classes}


def distillation_loss(
    logits: torch.Tensor,
    base_logits: torch.Tensor,
    labels: torch.Tensor | None,
    temperature: float = 2.0,
    label_weight: float = 0.3,
) -> torch.Tensor:
    """KL to the base model's softened output, plus a little cross-entropy on the labels.

    The KL term makes the head a predictor of the base network (GATI's goal);
    the label term keeps it from copying the base model's mistakes where the
    labels are known (it only helps accuracy, which is what is measured).
    """
    t = temperature
    kl = F.kl_div(F.log_softmax(logits / t, 1), F.softmax(base_logits / t, 1), reduction="batchmean") * t * t
    if labels is None or label_weight <= 0:
        return kl
    return (1 - label_weight) * kl + label_weight * F.cross_entropy(logits, labels)


def train_head(
    head: Head,
    stored: torch.Tensor,
    base_logits: torch.Tensor,
    labels: torch.Tensor | None = None,
    epochs: int = 8,
    batch_size: int = 256,
    lr: float = 2e-3,
    seed: int = 0,
) -> Head:
    """Fit ``head`` to the base model's logits on stored pooled activations (float16 ok)."""
    gen = torch.Generator().manual_seed(seed)
    opt = torch.optim.AdamW(head.parameters(), lr=lr, weight_decay=1e-4)
    n = len(stored)
    steps = max(1, epochs * math.ceil(n / batch_size))
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=steps, pct_start=0.2)
    head.train()
    for _ in range(epochs):
        order = torch.randperm(n, generator=gen)
        for start in range(0, n, batch_size):
            idx = order[start : start + batch_size]
            if len(idx) < 2:  # BatchNorm needs two samples
                continue
            x = stored[idx].float()
            loss = distillation_loss(
                head.forward_stored(x), base_logits[idx].float(), None if labels is None else labels[idx]
            )
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
    head.eval()
    return head


@torch.inference_mode()
def head_outputs(head: Head, stored: torch.Tensor, batch_size: int = 1024) -> tuple[np.ndarray, np.ndarray]:
    """(confidence = max softmax, prediction) of ``head`` on stored activations."""
    head.eval()
    confs, preds = [], []
    for start in range(0, len(stored), batch_size):
        p = F.softmax(head.forward_stored(stored[start : start + batch_size].float()), 1)
        c, k = p.max(1)
        confs.append(c.numpy())
        preds.append(k.numpy())
    return np.concatenate(confs).astype(np.float32), np.concatenate(preds).astype(np.int64)
