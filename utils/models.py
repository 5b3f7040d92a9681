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


class ZooBasicBlock(nn.Module):
    """ResNet's basic block: ``relu(F(x) + shortcut(x))`` with two 3x3 conv + batch-norm layers."""

    def __init__(self, cin: int, cout: int, stride: int = 1):
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(cin, cout, 3, stride=stride, padding=1, bias=False), nn.BatchNorm2d(cout),
            nn.ReLU(),
            nn.Conv2d(cout, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout),
        )
        self.shortcut = nn.Identity()
        if stride != 1 or cin != cout:
            self.shortcut = nn.Sequential(nn.Conv2d(cin, cout, 1, stride=stride, bias=False),
                                          nn.BatchNorm2d(cout))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.relu(self.body(x) + self.shortcut(x))


def fashion_resnet(num_classes: int = 10) -> nn.Sequential:
    """ResNet-like: a stem, three stages of basic blocks (16, 32, 64 channels), global pooling."""
    return nn.Sequential(
        Normalize([FASHION_MEAN], [FASHION_STD]),
        nn.Conv2d(1, 16, 3, stride=2, padding=1, bias=False), nn.BatchNorm2d(16), nn.ReLU(),
        ZooBasicBlock(16, 16),  # 14x14
        ZooBasicBlock(16, 32, stride=2),  # 7x7
        ZooBasicBlock(32, 64, stride=2),  # 4x4
        nn.AdaptiveAvgPool2d(1), nn.Flatten(),
        nn.Linear(64, num_classes),
    )


class ZooDenseBlock(nn.Module):
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


def _zoo_transition(cin: int, cout: int) -> nn.Sequential:
    return nn.Sequential(nn.BatchNorm2d(cin), nn.ReLU(), nn.Conv2d(cin, cout, 1, bias=False),
                         nn.AvgPool2d(2))


def fashion_densenet(num_classes: int = 10, growth: int = 12) -> nn.Sequential:
    """DenseNet-like: three dense blocks (growth 12) joined by 1x1-conv + average-pool transitions."""
    return nn.Sequential(
        Normalize([FASHION_MEAN], [FASHION_STD]),
        nn.Conv2d(1, 16, 3, stride=2, padding=1, bias=False),   # 14x14
        ZooDenseBlock(16, growth, 3),  # 16 + 36 = 52 channels
        _zoo_transition(52, 26),  # 7x7
        ZooDenseBlock(26, growth, 3),  # 62
        _zoo_transition(62, 32),  # 3x3
        ZooDenseBlock(32, growth, 3),  # 68
        nn.BatchNorm2d(68), nn.ReLU(),
        nn.AdaptiveAvgPool2d(1), nn.Flatten(),
        nn.Linear(68, num_classes),
    )


FASHION_ZOO = ("fashion_mlp", "fashion_lenet", "fashion_vgg", "fashion_resnet", "fashion_densenet")
"""The lecture-02 zoo, in the order the article lists its networks' stand-ins."""



# --- lecture 03: face-descriptor networks (black box and students) ----------------------------

FACE_SIZE = 64          # Olivetti faces are 64x64 grey images in [0, 1]
FACE_DESCRIPTOR = 64    # length of a face descriptor (L2-normalised, like a real face network)
OLIVETTI_MEAN = 0.547
OLIVETTI_STD = 0.173


class L2Normalize(nn.Module):
    """Scale each row to unit Euclidean length: descriptors live on the unit sphere."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return nn.functional.normalize(x, dim=1)


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


class FaceDescriptorNet(nn.Module):
    """A face-descriptor network: image (N, 1, 64, 64) in [0, 1] -> unit vector (N, dim).

    ``classes`` > 0 adds a cosine classifier head (``logits(x)``) used only while training
    (normalised-softmax training, as in face-recognition networks); the descriptor itself is
    what ``forward`` returns.
    """

    def __init__(self, features: nn.Module, width: int, dim: int = FACE_DESCRIPTOR,
                 classes: int = 0, scale: float = 16.0):
        super().__init__()
        self.features = nn.Sequential(Normalize([OLIVETTI_MEAN], [OLIVETTI_STD]), features,
                                      nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self.embed = nn.Linear(width, dim)
        self.normalise = L2Normalize()
        self.scale = scale
        self.head = nn.Linear(dim, classes, bias=False) if classes else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.normalise(self.embed(self.features(x)))

    def logits(self, x: torch.Tensor) -> torch.Tensor:
        if self.head is None:
            raise RuntimeError("this descriptor network has no classifier head")
        weight = nn.functional.normalize(self.head.weight, dim=1)
        return self.scale * self(x) @ weight.t()


def face_resnet(classes: int = 0, widths=(16, 32, 64, 128), blocks=(1, 1, 1, 1),
                dim: int = FACE_DESCRIPTOR) -> FaceDescriptorNet:
    """ResNet-like descriptor net: 5x5 stride-2 stem and max-pool (64 -> 16 pixels), then one
    stage of basic blocks per width, each after the first halving the resolution."""
    layers = [nn.Conv2d(1, widths[0], 5, 2, 2, bias=False), nn.BatchNorm2d(widths[0]), nn.ReLU(),
              nn.MaxPool2d(2)]                                                    # 16x16
    cin = widths[0]
    for stage, (width, count) in enumerate(zip(widths, blocks)):
        for block in range(count):
            layers.append(BasicBlock(cin, width, 2 if stage > 0 and block == 0 else 1))
            cin = width
    return FaceDescriptorNet(nn.Sequential(*layers), cin, dim, classes)


def face_blackbox_net() -> FaceDescriptorNet:
    """The lecture-03 black box: ResNet-like (5 basic blocks), 64-d descriptor, 25-person head."""
    return face_resnet(classes=25, widths=(32, 64, 128), blocks=(2, 2, 1))


def face_student_resnet() -> FaceDescriptorNet:
    """A distilled student: a smaller ResNet-like net (one block per stage)."""
    return face_resnet(widths=(24, 48, 96), blocks=(1, 1, 1))


def face_student_cnn() -> FaceDescriptorNet:
    """A distilled student: plain VGG-style CNN (strided stem, conv-BN-ReLU, max-pooling), no
    shortcuts."""
    def conv(cin, cout):
        return [nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU()]

    layers = ([nn.Conv2d(1, 32, 4, 2, 1, bias=False), nn.BatchNorm2d(32), nn.ReLU(),
               nn.MaxPool2d(2)]                                                        # 16x16
              + conv(32, 48) + conv(48, 64) + [nn.MaxPool2d(2)]                         # 8x8
              + conv(64, 96) + [nn.MaxPool2d(2)] + conv(96, 128))                       # 4x4
    return FaceDescriptorNet(nn.Sequential(*layers), 128)


def face_student_wide() -> FaceDescriptorNet:
    """A distilled student: wide and shallow (three wide strided convolutions, no shortcuts)."""
    layers = [nn.Conv2d(1, 48, 6, 4, 1, bias=False), nn.BatchNorm2d(48), nn.ReLU(),      # 16x16
              nn.Conv2d(48, 96, 5, 2, 2, bias=False), nn.BatchNorm2d(96), nn.ReLU(),
              nn.Conv2d(96, 160, 3, 2, 1, bias=False), nn.BatchNorm2d(160), nn.ReLU()]
    return FaceDescriptorNet(nn.Sequential(*layers), 160)
