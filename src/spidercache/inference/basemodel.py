"""The base network GATI accelerates: checkpoints, fingerprint, preprocessing, evaluation.

A checkpoint is ``torch.save`` of a dict with the network's name, its input
shape, class count, the pixel normalisation, the stem, the classifier kind and
the ``state_dict``. A bare
state dict is also accepted when the caller names the network. The
fingerprint is a digest of the network name and every tensor in the state
dict: heads built for one set of weights are refused by any other.
"""

from __future__ import annotations

import hashlib
import logging
import os
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..errors import UserError
from ..models import CentroidClassifier, LayeredNet, build_model

log = logging.getLogger("spidercache.gati")

CHECKPOINT_FORMAT = "spidercache-model/1"


@dataclass
class BaseModel:
    """A network plus what is needed to feed it raw uint8 images.

    ``input_shape`` is the preprocessing recorded in the checkpoint: images of
    another size are resized to it (bilinear, antialiased) and grey/colour are
    converted, once per shape with a warning (``adapt``); other channel counts
    are refused. ``stem`` is the ResNet stem (``cifar`` or ``imagenet``) and
    ``classifier`` is ``linear`` or ``centroid`` (nearest class centroid over
    the embedding, ``inference.faces.use_centroids``).
    """

    network: str
    model: LayeredNet
    input_shape: tuple[int, int, int]  # C, H, W
    num_classes: int
    mean: float = 0.0
    std: float = 1.0
    meta: dict = field(default_factory=dict)
    stem: str | None = None
    classifier: str = "linear"
    _fingerprint: str | None = None

    def adapt(self, images: np.ndarray | torch.Tensor):
        """uint8 N x C x H x W images at the model's input shape (resized / recoloured if needed)."""
        shape = tuple(images.shape[1:])
        if shape == tuple(self.input_shape):
            return images
        self.check_shape(shape)
        if shape not in _WARNED:
            _WARNED.add(shape)
            c, h, w = self.input_shape
            log.warning("images are %s; resizing to the model's %dx%dx%d", "x".join(map(str, shape)), c, h, w)
        return resize_images(images, self.input_shape)

    def preprocess(self, images: np.ndarray | torch.Tensor) -> torch.Tensor:
        """uint8 N x C x H x W -> normalised float32 tensor at the input shape."""
        return self.normalize(self.adapt(images))

    def normalize(self, images: np.ndarray | torch.Tensor) -> torch.Tensor:
        """uint8 (or float in [0, 1]) -> normalised float32, elementwise (no resizing)."""
        x = torch.as_tensor(images)
        x = x.float().div_(255.0) if x.dtype == torch.uint8 else x.float()
        return (x - self.mean) / self.std

    def check_shape(self, shape: tuple[int, ...]) -> None:
        """Raise UserError unless ``shape`` (C, H, W) can be fed (resized if need be) to the network."""
        if len(shape) != 3 or shape[0] not in (1, 3) or min(shape[1:]) < 1:
            c, h, w = self.input_shape
            got = "x".join(str(s) for s in shape)
            raise UserError(
                f"image is {got} (channels x height x width) but the model takes {c}x{h}x{w} "
                "(1 or 3 channels; other sizes are resized)"
            )

    def fingerprint(self) -> str:
        if self._fingerprint is None:
            h = hashlib.sha256(self.network.encode())
            h.update(f"{self.stem}/{self.classifier}/{tuple(self.input_shape)}".encode())
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
                "stem": self.stem,
                "classifier": self.classifier,
                "meta": self.meta,
                "state_dict": self.model.state_dict(),
            },
            path,
        )


_WARNED: set[tuple] = set()


def resize_images(
    images: np.ndarray | torch.Tensor, shape: tuple[int, int, int], chunk: int = 1024
) -> np.ndarray | torch.Tensor:
    """uint8 N x C x H x W -> uint8 N x shape: bilinear (antialiased when shrinking), grey <-> RGB.

    Returns the input's kind (numpy or torch). Works in chunks so that a whole
    training split can be resized without holding it all as floats.
    """
    c, h, w = (int(v) for v in shape)
    src = torch.as_tensor(images)
    out = torch.empty((src.shape[0], c, h, w), dtype=torch.uint8)
    luma = torch.tensor([0.299, 0.587, 0.114]).view(1, 3, 1, 1)
    for s in range(0, src.shape[0], chunk):
        x = src[s : s + chunk].float()
        if x.shape[1] != c:
            x = x.expand(-1, 3, -1, -1) if c == 3 else (x * luma).sum(1, keepdim=True)
        if tuple(x.shape[2:]) != (h, w):
            x = F.interpolate(
                x,
                size=(h, w),
                mode="bilinear",
                align_corners=False,
                antialias=h < x.shape[2] or w < x.shape[3],
            )
        out[s : s + chunk] = x.round_().clamp_(0, 255).to(torch.uint8)
    return out.numpy() if isinstance(images, np.ndarray) else out


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
        first = str(exc).splitlines()[0][:160] if str(exc) else ""
        raise UserError(f"cannot read model checkpoint {path}: {type(exc).__name__}: {first}") from None
    stem, classifier = None, "linear"
    if isinstance(blob, dict) and "state_dict" in blob:
        network = blob.get("network", network)
        input_shape = tuple(blob.get("input_shape") or input_shape or ())
        num_classes = blob.get("num_classes", num_classes)
        state = blob["state_dict"]
        mean, std, meta = (
            float(blob.get("mean", 0.0)),
            float(blob.get("std", 1.0)),
            dict(blob.get("meta", {})),
        )
        stem, classifier = blob.get("stem"), blob.get("classifier") or "linear"
    elif isinstance(blob, dict):
        state, mean, std, meta = blob, 0.0, 1.0, {}
    else:
        raise UserError(f"{path} does not hold a state dict")
    if not network or not input_shape or not num_classes:
        raise UserError(f"{path} is a bare state dict: give the network, input shape and class count")
    model = build_model(network, in_channels=int(input_shape[0]), num_classes=int(num_classes), stem=stem)
    if classifier == "centroid":
        model.fc = CentroidClassifier(model.fc.in_features, model.fc.out_features)
    try:
        model.load_state_dict(state)
    except (RuntimeError, KeyError, TypeError) as exc:
        raise UserError(
            f"checkpoint {path} does not fit network {network}: {str(exc).splitlines()[0][:160]}"
        ) from None
    model.eval()
    return BaseModel(
        network,
        model,
        tuple(int(s) for s in input_shape),
        int(num_classes),
        mean,
        std,
        meta,
        stem,
        classifier,
    )


@torch.inference_mode()
def evaluate(
    base: BaseModel, images: np.ndarray, labels: np.ndarray, device: str = "cpu", batch_size: int = 256
) -> float:
    """Accuracy in percent of the base network on uint8 images (any size: adapted)."""
    was_training, was_on = base.model.training, next(base.model.parameters()).device
    base.model.eval().to(device)
    preds = [
        base.model(base.preprocess(images[i : i + batch_size]).to(device)).argmax(1).cpu()
        for i in range(0, len(images), batch_size)
    ]
    base.model.train(was_training).to(was_on)
    return accuracy(torch.cat(preds).numpy(), labels) if preds else float("nan")


def accuracy(pred: torch.Tensor | np.ndarray, labels: np.ndarray) -> float:
    """Accuracy in percent."""
    return 100.0 * float(np.mean(np.asarray(pred) == np.asarray(labels)))


def module_bytes(module: nn.Module) -> int:
    return sum(p.numel() * p.element_size() for p in module.parameters()) + sum(
        b.numel() * b.element_size() for b in module.buffers()
    )
