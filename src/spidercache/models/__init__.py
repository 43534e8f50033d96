"""The networks ``--network`` can name; ``build_model`` is the one entry point.

Every model is a ``LayeredNet``: ``forward(x, return_embedding=True)`` returns
``(logits, embedding)`` from one pass, and ``units()`` lists the stages or
blocks so that the inference runtime can run them one at a time.
"""

from __future__ import annotations

from typing import Callable

from ..errors import UserError
from .alexnet import AlexNet, alexnet
from .base import LayeredNet
from .resnet import ResNet, resnet18, resnet34, resnet50
from .small import SmallCNN, small
from .vgg import VGG, vgg11, vgg16

NETWORKS: dict[str, Callable[..., LayeredNet]] = {
    "alexnet": alexnet,
    "vgg11": vgg11,
    "vgg16": vgg16,
    "resnet18": resnet18,
    "resnet34": resnet34,
    "resnet50": resnet50,
    "small": small,
}


def build_model(name: str, in_channels: int = 3, num_classes: int = 10) -> LayeredNet:
    """A fresh, randomly initialised network by its ``--network`` name."""
    key = name.lower().replace("-", "").replace("_", "")
    if key not in NETWORKS:
        raise UserError(f"unknown network {name!r}; choose one of: {', '.join(NETWORKS)}")
    if in_channels not in (1, 3):
        raise UserError(f"in_channels must be 1 or 3, got {in_channels}")
    if num_classes < 2:
        raise UserError(f"num_classes must be at least 2, got {num_classes}")
    return NETWORKS[key](in_channels=in_channels, num_classes=num_classes)


__all__ = [
    "NETWORKS", "build_model", "LayeredNet", "AlexNet", "VGG", "ResNet", "SmallCNN",
    "alexnet", "vgg11", "vgg16", "resnet18", "resnet34", "resnet50", "small",
]
