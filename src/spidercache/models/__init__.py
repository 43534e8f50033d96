"""The networks ``--network`` can name; ``build_model`` is the one entry point.

Every model is a ``LayeredNet``: ``forward(x, return_embedding=True)`` returns
``(logits, embedding)`` from one pass, and ``units()`` lists the stages or
blocks so that the inference runtime can run them one at a time.
"""

from __future__ import annotations

from typing import Callable

from ..checks import at_least
from ..errors import UserError
from .alexnet import AlexNet, alexnet
from .base import LayeredNet
from .face import CentroidClassifier, SELResNetIR, se_lresnet18e_ir
from .resnet import STEMS, ResNet, resnet18, resnet34, resnet50
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
    "selresnet18eir": se_lresnet18e_ir,
}
# Networks that take ``stem=`` (``cifar`` or ``imagenet``); the others have one fixed stem.
STEMMED = ("resnet18", "resnet34", "resnet50")


def network_key(name: str) -> str:
    """The canonical ``--network`` name (case, dashes and underscores ignored); UserError if unknown."""
    key = name.lower().replace("-", "").replace("_", "")
    if key not in NETWORKS:
        raise UserError(f"unknown network {name!r}; choose one of: {', '.join(NETWORKS)}")
    return key


def build_model(
    name: str, in_channels: int = 3, num_classes: int = 10, stem: str | None = None
) -> LayeredNet:
    """A fresh, randomly initialised network by its ``--network`` name.

    ``stem`` (ResNets only): ``cifar`` (default; 28-32 px) or ``imagenet`` (64-224 px).
    """
    key = network_key(name)
    if stem is not None and stem not in STEMS:
        raise UserError(f"unknown stem {stem!r}; choose one of: {', '.join(STEMS)}")
    if stem not in (None, "cifar") and key not in STEMMED:
        raise UserError(f"network {name} has one fixed stem; --stem {stem} applies to {', '.join(STEMMED)}")
    if in_channels not in (1, 3):
        raise UserError(f"in_channels must be 1 or 3, got {in_channels}")
    at_least(2, num_classes=num_classes)
    if key in STEMMED:
        return NETWORKS[key](in_channels=in_channels, num_classes=num_classes, stem=stem or "cifar")
    return NETWORKS[key](in_channels=in_channels, num_classes=num_classes)


__all__ = [
    "NETWORKS",
    "STEMS",
    "STEMMED",
    "build_model",
    "network_key",
    "LayeredNet",
    "AlexNet",
    "VGG",
    "ResNet",
    "SmallCNN",
    "SELResNetIR",
    "CentroidClassifier",
    "alexnet",
    "vgg11",
    "vgg16",
    "resnet18",
    "resnet34",
    "resnet50",
    "small",
    "se_lresnet18e_ir",
]
