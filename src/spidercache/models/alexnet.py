"""AlexNet adapted to 28x28 / 32x32 input (the usual CIFAR variant).

Five convolutions in three stages, then two fully connected layers; the
embedding is the output of the second one (the penultimate layer).
"""

from __future__ import annotations

from torch import nn

from .base import LayeredNet


class AlexNet(LayeredNet):
    def __init__(self, in_channels: int = 3, num_classes: int = 10) -> None:
        super().__init__()
        self.stage1 = nn.Sequential(
            nn.Conv2d(in_channels, 64, 3, padding=1), nn.ReLU(inplace=True), nn.MaxPool2d(2, ceil_mode=True)
        )
        self.stage2 = nn.Sequential(
            nn.Conv2d(64, 192, 3, padding=1), nn.ReLU(inplace=True), nn.MaxPool2d(2, ceil_mode=True)
        )
        self.stage3 = nn.Sequential(
            nn.Conv2d(192, 384, 3, padding=1),
            nn.ReLU(inplace=True),
            nn.Conv2d(384, 256, 3, padding=1),
            nn.ReLU(inplace=True),
            nn.Conv2d(256, 256, 3, padding=1),
            nn.ReLU(inplace=True),
            nn.MaxPool2d(2, ceil_mode=True),
        )
        # A fixed 2x2 grid makes the classifier independent of the input size.
        self.neck = nn.Sequential(
            nn.AdaptiveAvgPool2d(2),
            nn.Flatten(),
            nn.Dropout(0.5),
            nn.Linear(256 * 4, 1024),
            nn.ReLU(inplace=True),
            nn.Dropout(0.5),
            nn.Linear(1024, 512),
            nn.ReLU(inplace=True),
        )
        self.fc = nn.Linear(512, num_classes)

    def units(self) -> list[tuple[str, nn.Module]]:
        return [("stage1", self.stage1), ("stage2", self.stage2), ("stage3", self.stage3)]


def alexnet(in_channels: int = 3, num_classes: int = 10) -> AlexNet:
    return AlexNet(in_channels, num_classes)
