"""A small CNN that trains an epoch of Fashion-MNIST in seconds on two cores."""

from __future__ import annotations

from torch import nn

from .base import LayeredNet


class SmallCNN(LayeredNet):
    def __init__(self, in_channels: int = 1, num_classes: int = 10) -> None:
        super().__init__()
        self.block1 = nn.Sequential(
            nn.Conv2d(in_channels, 16, 3, padding=1), nn.ReLU(inplace=True), nn.MaxPool2d(2)
        )
        self.block2 = nn.Sequential(nn.Conv2d(16, 32, 3, padding=1), nn.ReLU(inplace=True), nn.MaxPool2d(2))
        # Adaptive pooling to 7x7 lets 28x28 and 32x32 input share the same weights.
        self.neck = nn.Sequential(
            nn.AdaptiveAvgPool2d(7), nn.Flatten(), nn.Linear(32 * 49, 128), nn.ReLU(inplace=True)
        )
        self.fc = nn.Linear(128, num_classes)

    def units(self) -> list[tuple[str, nn.Module]]:
        return [("block1", self.block1), ("block2", self.block2)]


def small(in_channels: int = 1, num_classes: int = 10) -> SmallCNN:
    return SmallCNN(in_channels, num_classes)
