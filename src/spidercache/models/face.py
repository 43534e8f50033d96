"""SE-LResNet18E-IR: the face-recognition network of InsightFace's model zoo.

* **L**: the stem is a 3x3 convolution with stride 1 (no 7x7, no max-pool), for
  112x112 face crops;
* **IR** (improved residual) blocks: BN, 3x3 conv, BN, PReLU, 3x3 conv (with the
  block's stride), BN, plus the shortcut (1x1 conv + BN when the shape changes);
* **SE**: squeeze-and-excitation on each block's residual branch (reduction 16);
* **E** output: BN, dropout, flatten, a fully connected layer to the 512-d
  embedding, BN1d. The flatten sees a fixed 7x7 grid (adaptive pooling), which
  is the identity at 112 px and lets tests run it on small images.

Stages have [2, 2, 2, 2] blocks of 64, 128, 256, 512 channels, each stage
halving the resolution (112 -> 56 -> 28 -> 14 -> 7). ``fc`` maps the embedding
to identities; once trained, ``inference.faces.use_centroids`` can replace it by
a nearest-centroid classifier over the enrolled identities.
"""

from __future__ import annotations

import torch
from torch import nn

from .base import LayeredNet


class SqueezeExcite(nn.Module):
    def __init__(self, channels: int, reduction: int = 16) -> None:
        super().__init__()
        self.gate = nn.Sequential(
            nn.AdaptiveAvgPool2d(1),
            nn.Conv2d(channels, channels // reduction, 1),
            nn.ReLU(inplace=True),
            nn.Conv2d(channels // reduction, channels, 1),
            nn.Sigmoid(),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.gate(x)


class IRBlock(nn.Module):
    def __init__(self, in_planes: int, planes: int, stride: int) -> None:
        super().__init__()
        self.residual = nn.Sequential(
            nn.BatchNorm2d(in_planes),
            nn.Conv2d(in_planes, planes, 3, 1, 1, bias=False),
            nn.BatchNorm2d(planes),
            nn.PReLU(planes),
            nn.Conv2d(planes, planes, 3, stride, 1, bias=False),
            nn.BatchNorm2d(planes),
            SqueezeExcite(planes),
        )
        self.shortcut = nn.Sequential()
        if stride != 1 or in_planes != planes:
            self.shortcut = nn.Sequential(
                nn.Conv2d(in_planes, planes, 1, stride, bias=False), nn.BatchNorm2d(planes)
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.residual(x) + self.shortcut(x)


class SELResNetIR(LayeredNet):
    def __init__(
        self, num_blocks: list[int], in_channels: int = 3, num_classes: int = 10, embedding_dim: int = 512
    ) -> None:
        super().__init__()
        self.stem = nn.Sequential(
            nn.Conv2d(in_channels, 64, 3, 1, 1, bias=False), nn.BatchNorm2d(64), nn.PReLU(64)
        )
        blocks, in_planes = [], 64
        for planes, n in zip((64, 128, 256, 512), num_blocks):
            for j in range(n):
                blocks.append(IRBlock(in_planes, planes, 2 if j == 0 else 1))
                in_planes = planes
        self.blocks = nn.Sequential(*blocks)
        self.neck = nn.Sequential(
            nn.BatchNorm2d(in_planes),
            nn.Dropout(0.4),
            nn.AdaptiveAvgPool2d(7),
            nn.Flatten(),
            nn.Linear(in_planes * 49, embedding_dim),
            nn.BatchNorm1d(embedding_dim),
        )
        self.fc = nn.Linear(embedding_dim, num_classes)

    def units(self) -> list[tuple[str, nn.Module]]:
        return [("stem", self.stem)] + [(f"block{i}", b) for i, b in enumerate(self.blocks)]


def se_lresnet18e_ir(in_channels: int = 3, num_classes: int = 10) -> SELResNetIR:
    return SELResNetIR([2, 2, 2, 2], in_channels, num_classes)


class CentroidClassifier(nn.Linear):
    """Logits = scale x cosine(embedding, class centroid): the nearest centroid wins.

    A drop-in for a network's ``fc`` (same parameter names and shapes, so the
    checkpoint format is unchanged): ``weight`` holds one centroid per class.
    """

    def __init__(self, in_features: int, out_features: int, scale: float = 16.0) -> None:
        super().__init__(in_features, out_features, bias=True)
        self.scale = scale
        nn.init.zeros_(self.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = nn.functional.normalize(x, dim=1)
        return self.scale * (x @ nn.functional.normalize(self.weight, dim=1).t())
