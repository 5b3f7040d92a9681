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


def fashion_cnn_adv(num_classes: int = 10) -> nn.Sequential:
    """Three conv blocks (32-64-64 channels, each halving the image) and a small head.

    The architecture of lecture 01's adversarially trained model: cheap enough to train with
    an attack in the loop on a CPU (about 0.16 M parameters, under 1 MB).
    """
    return nn.Sequential(
        Normalize([FASHION_MEAN], [FASHION_STD]),
        nn.Conv2d(1, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),        # 14x14
        nn.Conv2d(32, 64, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),       # 7x7
        nn.Conv2d(64, 64, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),       # 3x3
        nn.Flatten(),
        nn.Linear(64 * 3 * 3, 128), nn.ReLU(),
        nn.Linear(128, num_classes),
    )


# --- lecture 02: five different architectures for Fashion-MNIST ------------------------------
#
# Stand-ins for the noise article's five ImageNet networks (VGG16, ResNet18, AlexNet, DenseNet,
# Inception): five families that differ in the way they see an image -- no convolution at all,
# big kernels with a wide fully connected head, stacks of 3x3 convolutions, residual sums,
# dense concatenation.  All are small enough to train in a minute or two on a laptop CPU.


def fashion_mlp(num_classes: int = 10) -> nn.Sequential:
    """A multilayer perceptron: no convolution, no notion of neighbouring pixels (~0.24 M params)."""
    return nn.Sequential(
        Normalize([FASHION_MEAN], [FASHION_STD]),
        nn.Flatten(),
        nn.Linear(28 * 28, 256), nn.ReLU(),
        nn.Linear(256, 128), nn.ReLU(),
        nn.Linear(128, num_classes),
    )


def fashion_lenet(num_classes: int = 10) -> nn.Sequential:
    """LeNet/AlexNet-like: big 5x5 kernels without padding, max pooling, a wide dropout head."""
    return nn.Sequential(
        Normalize([FASHION_MEAN], [FASHION_STD]),
        nn.Conv2d(1, 20, 5), nn.ReLU(),                    # 24x24
        nn.MaxPool2d(2),                                   # 12x12
        nn.Conv2d(20, 40, 5), nn.ReLU(),                   # 8x8
        nn.MaxPool2d(2),                                   # 4x4
        nn.Flatten(),
        nn.Dropout(0.3),
        nn.Linear(40 * 4 * 4, 256), nn.ReLU(),
        nn.Dropout(0.3),
        nn.Linear(256, num_classes),
    )


def fashion_vgg(num_classes: int = 10) -> nn.Sequential:
    """VGG-like: pairs of 3x3 convolutions doubling the width after each pooling, two-layer head."""

    def pair(cin: int, cout: int) -> list[nn.Module]:
        return [nn.Conv2d(cin, cout, 3, padding=1), nn.ReLU(),
                nn.Conv2d(cout, cout, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2)]

    return nn.Sequential(
        Normalize([FASHION_MEAN], [FASHION_STD]),
        *pair(1, 8),                                       # 14x14
        *pair(8, 16),                                      # 7x7
        *pair(16, 32),                                     # 3x3
        nn.Flatten(),
        nn.Linear(32 * 3 * 3, 256), nn.ReLU(), nn.Dropout(0.3),
        nn.Linear(256, 256), nn.ReLU(), nn.Dropout(0.3),
        nn.Linear(256, num_classes),
    )


class BasicBlock(nn.Module):
    """The ResNet basic block: two 3x3 convolutions with batch norm and a shortcut."""

    def __init__(self, cin: int, cout: int, stride: int = 1):
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(cin, cout, 3, stride, 1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(),
            nn.Conv2d(cout, cout, 3, 1, 1, bias=False), nn.BatchNorm2d(cout),
        )
        self.shortcut = nn.Identity() if stride == 1 and cin == cout else nn.Sequential(
            nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.relu(self.body(x) + self.shortcut(x))


def fashion_resnet(num_classes: int = 10) -> nn.Sequential:
    """ResNet-like: a stem, three stages of basic blocks (16, 32, 64 channels), global pooling."""
    return nn.Sequential(
        Normalize([FASHION_MEAN], [FASHION_STD]),
        nn.Conv2d(1, 16, 3, stride=2, padding=1, bias=False), nn.BatchNorm2d(16), nn.ReLU(),
        BasicBlock(16, 16),  # 14x14
        BasicBlock(16, 32, stride=2),  # 7x7
        BasicBlock(32, 64, stride=2),  # 4x4
        nn.AdaptiveAvgPool2d(1), nn.Flatten(),
        nn.Linear(64, num_classes),
    )


class DenseBlock(nn.Module):
    """DenseNet's block: each layer (BN-ReLU-3x3 conv) sees the concatenation of all before it."""

    def __init__(self, cin: int, growth: int, layers: int):
        super().__init__()
        self.layers = nn.ModuleList(
            nn.Sequential(nn.BatchNorm2d(cin + i * growth), nn.ReLU(),
                          nn.Conv2d(cin + i * growth, growth, 3, padding=1, bias=False))
            for i in range(layers)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for layer in self.layers:
            x = torch.cat([x, layer(x)], dim=1)
        return x


def _transition(cin: int, cout: int) -> nn.Sequential:
    return nn.Sequential(nn.BatchNorm2d(cin), nn.ReLU(), nn.Conv2d(cin, cout, 1, bias=False),
                         nn.AvgPool2d(2))


def fashion_densenet(num_classes: int = 10, growth: int = 12) -> nn.Sequential:
    """DenseNet-like: three dense blocks (growth 12) joined by 1x1-conv + average-pool transitions."""
    return nn.Sequential(
        Normalize([FASHION_MEAN], [FASHION_STD]),
        nn.Conv2d(1, 16, 3, stride=2, padding=1, bias=False),   # 14x14
        DenseBlock(16, growth, 3),  # 16 + 36 = 52 channels
        _transition(52, 26),  # 7x7
        DenseBlock(26, growth, 3),  # 62
        _transition(62, 32),  # 3x3
        DenseBlock(32, growth, 3),  # 68
        nn.BatchNorm2d(68), nn.ReLU(),
        nn.AdaptiveAvgPool2d(1), nn.Flatten(),
        nn.Linear(68, num_classes),
    )


FASHION_ZOO = ("fashion_mlp", "fashion_lenet", "fashion_vgg", "fashion_resnet", "fashion_densenet")
"""The lecture-02 zoo, in the order the article lists its networks' stand-ins."""
