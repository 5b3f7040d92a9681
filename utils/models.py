"""The network architectures the course trains.

Every model takes images in [0, 1] and normalises them itself (first layer :class:`Normalize`),
so attacks can work in pixel space and clamp to the valid image box.
"""

from __future__ import annotations

import torch
from torch import nn

FASHION_MEAN = 0.2860
FASHION_STD = 0.3530


class Normalize(nn.Module):
    """``(x - mean) / std`` per channel, as a layer, so that models accept raw [0, 1] images."""

    def __init__(self, mean, std):
        super().__init__()
        self.register_buffer("mean", torch.as_tensor(mean, dtype=torch.float32).view(1, -1, 1, 1))
        self.register_buffer("std", torch.as_tensor(std, dtype=torch.float32).view(1, -1, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.mean) / self.std


def fashion_cnn(num_classes: int = 10) -> nn.Sequential:
    """A small two-block CNN for 28x28 grey images (about 0.4 M parameters, ~91-92 % test)."""
    return nn.Sequential(
        Normalize([FASHION_MEAN], [FASHION_STD]),
        nn.Conv2d(1, 32, 3, padding=1), nn.ReLU(),
        nn.Conv2d(32, 32, 3, padding=1), nn.ReLU(),
        nn.MaxPool2d(2),                                   # 14x14
        nn.Conv2d(32, 64, 3, padding=1), nn.ReLU(),
        nn.Conv2d(64, 64, 3, padding=1), nn.ReLU(),
        nn.MaxPool2d(2),                                   # 7x7
        nn.Flatten(),
        nn.Linear(64 * 7 * 7, 128), nn.ReLU(),
        nn.Dropout(0.3),
        nn.Linear(128, num_classes),
    )


# --- lecture 01 -------------------------------------------------------------------------------


# --- lecture 02: five different architectures for Fashion-MNIST ------------------------------


# --- lecture 03: face-descriptor networks (black box and students) ----------------------------
