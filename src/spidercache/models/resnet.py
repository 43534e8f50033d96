"""ResNet-18/34/50 with a CIFAR stem or an ImageNet stem.

``stem="cifar"`` (3x3 conv, stride 1, no max-pool) keeps full resolution for
28-32 px input; ``stem="imagenet"`` (7x7 conv stride 2, then a 3x3 max-pool
stride 2, as in the torchvision layout) divides 64-224 px input by four before
the first stage, so a 224 px image costs what it does in the usual ResNet.

Stages are ``layer1..layer4`` (nn.Sequential of blocks), as in the usual
layout, so that checkpoints keep familiar key names; ``units()`` lists the stem
and then every residual block, which are GATI's candidate exit points.
Works for 1- or 3-channel input of any size >= 8 (CIFAR stem) or >= 32
(ImageNet stem).
"""

from __future__ import annotations

import torch
from torch import nn

from .base import LayeredNet


class BasicBlock(nn.Module):
    expansion = 1

    def __init__(self, in_planes: int, planes: int, stride: int = 1) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_planes, planes, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.relu = nn.ReLU(inplace=True)
        self.shortcut = nn.Sequential()
        if stride != 1 or in_planes != planes:
            self.shortcut = nn.Sequential(
                nn.Conv2d(in_planes, planes, 1, stride, bias=False), nn.BatchNorm2d(planes)
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + self.shortcut(x))


class Bottleneck(nn.Module):
    expansion = 4

    def __init__(self, in_planes: int, planes: int, stride: int = 1) -> None:
        super().__init__()
        out_planes = planes * self.expansion
        self.conv1 = nn.Conv2d(in_planes, planes, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv3 = nn.Conv2d(planes, out_planes, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(out_planes)
        self.relu = nn.ReLU(inplace=True)
        self.shortcut = nn.Sequential()
        if stride != 1 or in_planes != out_planes:
            self.shortcut = nn.Sequential(
                nn.Conv2d(in_planes, out_planes, 1, stride, bias=False), nn.BatchNorm2d(out_planes)
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return self.relu(out + self.shortcut(x))


STEMS = ("cifar", "imagenet")


def make_stem(stem: str, in_channels: int, width: int = 64) -> nn.Sequential:
    """The first unit: ``cifar`` (3x3, stride 1) or ``imagenet`` (7x7 stride 2 + max-pool)."""
    if stem == "cifar":
        return nn.Sequential(
            nn.Conv2d(in_channels, width, 3, 1, 1, bias=False), nn.BatchNorm2d(width), nn.ReLU(inplace=True)
        )
    if stem == "imagenet":
        return nn.Sequential(
            nn.Conv2d(in_channels, width, 7, 2, 3, bias=False),
            nn.BatchNorm2d(width),
            nn.ReLU(inplace=True),
            nn.MaxPool2d(3, 2, 1),
        )
    raise ValueError(f"unknown stem {stem!r}")


class ResNet(LayeredNet):
    def __init__(
        self,
        block: type[BasicBlock] | type[Bottleneck],
        num_blocks: list[int],
        in_channels: int = 3,
        num_classes: int = 10,
        stem: str = "cifar",
    ) -> None:
        super().__init__()
        self.stem = make_stem(stem, in_channels)
        in_planes = 64
        stages = []
        for i, (planes, n) in enumerate(zip((64, 128, 256, 512), num_blocks)):
            blocks = []
            for j in range(n):
                stride = 2 if (i > 0 and j == 0) else 1
                blocks.append(block(in_planes, planes, stride))
                in_planes = planes * block.expansion
            stages.append(nn.Sequential(*blocks))
        self.layer1, self.layer2, self.layer3, self.layer4 = stages
        self.neck = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self.fc = nn.Linear(in_planes, num_classes)

    @property
    def stages(self) -> list[nn.Sequential]:
        return [self.layer1, self.layer2, self.layer3, self.layer4]

    def units(self) -> list[tuple[str, nn.Module]]:
        out: list[tuple[str, nn.Module]] = [("stem", self.stem)]
        for i, stage in enumerate(self.stages, start=1):
            for j, blk in enumerate(stage):
                out.append((f"layer{i}.{j}", blk))
        return out


def resnet18(in_channels: int = 3, num_classes: int = 10, stem: str = "cifar") -> ResNet:
    return ResNet(BasicBlock, [2, 2, 2, 2], in_channels, num_classes, stem)


def resnet34(in_channels: int = 3, num_classes: int = 10, stem: str = "cifar") -> ResNet:
    return ResNet(BasicBlock, [3, 4, 6, 3], in_channels, num_classes, stem)


def resnet50(in_channels: int = 3, num_classes: int = 10, stem: str = "cifar") -> ResNet:
    return ResNet(Bottleneck, [3, 4, 6, 3], in_channels, num_classes, stem)
