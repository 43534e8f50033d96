"""What ``gati train-base`` and ``gati build`` do, as functions (the CLI and the benchmark call them).

``train_base`` trains a base network on a dataset's training split (the same
fixed splits everywhere: base training, head training, validation; see
``datasets.splits``), until the validation accuracy stops improving when
``converge`` is set. A face network (``se-lresnet18e-ir``) then becomes a
nearest-centroid classifier over its embedding (``faces.use_centroids``).
``build_caches`` explores heads for a trained base on the head-training and
validation splits, after checking that the dataset fits the base.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable

import numpy as np
import torch

from .basemodel import BaseModel, evaluate, resize_images
from .datasets import ImageSplits, check_classes, splits
from .explore import Exploration, explore
from .progress import Eta
from .resume import partial_path
from .training import train_base_model

FACE_NETWORKS = ("selresnet18eir",)


def images_for(data: ImageSplits, shape: tuple[int, int, int], say: Callable[[str], None]) -> np.ndarray:
    """The training images at ``shape`` (resized once, said once)."""
    if tuple(data.train_images.shape[1:]) != tuple(shape):
        say(
            f"resizing {data.name} images {'x'.join(map(str, data.train_images.shape[1:]))} to "
            f"{'x'.join(map(str, shape))}"
        )
        return resize_images(data.train_images, shape)
    return data.train_images


def train_base(
    data: ImageSplits,
    network: str,
    *,
    stem: str | None = None,
    image_size: int | None = None,
    epochs: int = 30,
    converge: bool = True,
    train_samples: int = 20000,
    head_samples: int = 10000,
    val_samples: int = 5000,
    lr: float = 0.05,
    device: str = "cpu",
    say: Callable[[str], None] = lambda _m: None,
    checkpoint: str | Path | None = None,
    fresh: bool = False,
    precision: str = "fp32",
) -> BaseModel:
    """A base network trained on ``data`` (see the module docstring); ``meta`` says how.

    With ``checkpoint`` the base is written there, and until then the run's state is kept after
    every epoch in ``resume.partial_path(checkpoint)``: an interrupted run with the same data and
    settings continues from it (``fresh``: never), and it is removed once the checkpoint is written.
    """
    from ..models import network_key

    base_idx, _, val_idx = splits(len(data.train_images), train_samples, head_samples, val_samples)
    partial = None if checkpoint is None else partial_path(checkpoint)
    if partial is not None and fresh:
        partial.unlink(missing_ok=True)
    c, h, w = data.train_images.shape[1:]
    images = images_for(data, (c, image_size or h, image_size or w), say)
    what = (
        f"until validation accuracy stops improving (at most {epochs} epochs)"
        if converge
        else f"for {epochs} epoch(s)"
    )
    mixed = "" if precision == "fp32" else f", {precision} autocast"
    how = f"{torch.get_num_threads()} threads, {device}{mixed}"
    say(f"training {network} {what} on {len(base_idx)} images ({how})")
    eta = Eta(say, "  step", every=30)
    base = train_base_model(
        network,
        images[base_idx],
        data.train_labels[base_idx],
        data.num_classes,
        epochs=epochs,
        lr=lr,
        device=device,
        stem=stem,
        progress=lambda s, t, loss: eta(s, t, f"loss {loss:.3f}"),
        val_images=images[val_idx] if converge else None,
        val_labels=data.train_labels[val_idx] if converge else None,
        on_epoch=lambda r: say(
            f"  epoch {r['epoch']}: validation accuracy {r['val_accuracy']:.2f}% (lr {r['lr']:.4g})"
        ),
        resume=partial,
        say=say,
        precision=precision,
    )
    base.meta["dataset"] = data.name
    if len(data.classes) == base.num_classes:  # the names replies carry (`gati serve`)
        base.meta["classes"] = [str(c) for c in data.classes]
    if converge and not base.meta.get("converged"):
        m = base.meta
        say(
            f"NOT converged: training did not stop by itself within {epochs} epoch(s) "
            f"(best validation {m['val_accuracy']:.2f}% at epoch {m['best_epoch']})"
        )
    if network_key(network) in FACE_NETWORKS:
        from .faces import use_centroids

        use_centroids(base, images[base_idx], data.train_labels[base_idx], device)
        acc = evaluate(base, images[val_idx], data.train_labels[val_idx], device)
        base.meta["val_accuracy_centroid"] = acc
        say(f"classifier: nearest class centroid of {base.num_classes} identities (validation {acc:.2f}%)")
    if checkpoint is not None:
        base.save(checkpoint)
        partial.unlink(missing_ok=True)
    return base


def build_caches(
    base: BaseModel,
    data: ImageSplits,
    *,
    train_samples: int | None = None,
    head_samples: int = 10000,
    val_samples: int = 5000,
    head_epochs: int = 8,
    variants: list[str] | None = None,
    device: str = "cpu",
    say: Callable[[str], None] = lambda _m: None,
) -> Exploration:
    """Explore heads for ``base`` on ``data``'s head-training and validation splits."""
    check_classes(base.num_classes, data)
    n_base = train_samples if train_samples is not None else int(base.meta.get("train_samples", 0)) or 1
    _, head_idx, val_idx = splits(len(data.train_images), n_base, head_samples, val_samples)
    images = images_for(data, base.input_shape, say)
    return explore(
        base,
        images[head_idx],
        data.train_labels[head_idx],
        images[val_idx],
        data.train_labels[val_idx],
        variants=variants,
        head_epochs=head_epochs,
        progress=say,
        device=device,
    )
