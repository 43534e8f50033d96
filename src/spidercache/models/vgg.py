"""VGG-11 and VGG-16 with batch norm, sized for 28x28 / 32x32 input.

Max-pools use ``ceil_mode`` so that five halvings of a 28x28 image end at 1x1
instead of failing at 0x0. Each unit is one stage (its convs and its pool).
"""

from __future__ import annotations

from torch import nn

from .base import LayeredNet

CONFIGS = {
    "vgg11": [[64], [128], [256, 256], [512, 512], [512, 512]],
    "vgg16": [[64, 64], [128, 128], [256, 256, 256], [512, 512, 512], [512, 512, 512]],
}


class VGG(LayeredNet):
    def __init__(self, config: list[list[int]], in_channels: int = 3, num_classes: int = 10) -> None:
        super().__init__()
        stages = []
        channels = in_channels
        for widths in config:
            layers: list[nn.Module] = []
            for width in widths:
                layers += [
                    nn.Conv2d(channels, width, 3, padding=1),
                    nn.BatchNorm2d(width),
                    nn.ReLU(inplace=True),
                ]
                channels = width
            layers.append(nn.MaxPool2d(2, ceil_mode=True))
            stages.append(nn.Sequential(*layers))
        self.stages = nn.ModuleList(stages)
        self.neck = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self.fc = nn.Linear(channels, num_classes)

    def units(self) -> list[tuple[str, nn.Module]]:
        return [(f"stage{i}", s) for i, s in enumerate(self.stages, start=1)]


def vgg11(in_channels: int = 3, num_classes: int = 10) -> VGG:
    return VGG(CONFIGS["vgg11"], in_channels, num_classes)


def vgg16(in_channels: int = 3, num_classes: int = 10) -> VGG:
    return VGG(CONFIGS["vgg16"], in_channels, num_classes)
