"""The face-descriptor networks of lecture 03: the black box's architecture and the students'.

Built from the core's blocks (:class:`utils.models.BasicBlock`, :class:`utils.models.Normalize`);
the zoo names these builders in :mod:`utils.zoo_entries`.
"""

from __future__ import annotations

import torch
from torch import nn

from utils.faces.game import DIM
from utils.models import BasicBlock, Normalize

OLIVETTI_MEAN = 0.547
OLIVETTI_STD = 0.173


class L2Normalize(nn.Module):
    """Scale each row to unit Euclidean length: descriptors live on the unit sphere."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return nn.functional.normalize(x, dim=1)


class FaceDescriptorNet(nn.Module):
    """A face-descriptor network: image (N, 1, 64, 64) in [0, 1] -> unit vector (N, dim).

    ``classes`` > 0 adds a cosine classifier head (``logits(x)``) used only while training
    (normalised-softmax training, as in face-recognition networks); the descriptor itself is
    what ``forward`` returns.
    """

    def __init__(self, features: nn.Module, width: int, dim: int = DIM,
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
                dim: int = DIM) -> FaceDescriptorNet:
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


def blackbox_net() -> FaceDescriptorNet:
    """The lecture-03 black box: ResNet-like (5 basic blocks), 64-d descriptor, 25-person head."""
    return face_resnet(classes=25, widths=(32, 64, 128), blocks=(2, 2, 1))


def student_resnet() -> FaceDescriptorNet:
    """A distilled student: a smaller ResNet-like net (one block per stage)."""
    return face_resnet(widths=(24, 48, 96), blocks=(1, 1, 1))


def student_cnn() -> FaceDescriptorNet:
    """A distilled student: plain VGG-style CNN (strided stem, conv-BN-ReLU, max-pooling), no
    shortcuts."""
    def conv(cin, cout):
        return [nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU()]

    layers = ([nn.Conv2d(1, 32, 4, 2, 1, bias=False), nn.BatchNorm2d(32), nn.ReLU(),
               nn.MaxPool2d(2)]                                                        # 16x16
              + conv(32, 48) + conv(48, 64) + [nn.MaxPool2d(2)]                         # 8x8
              + conv(64, 96) + [nn.MaxPool2d(2)] + conv(96, 128))                       # 4x4
    return FaceDescriptorNet(nn.Sequential(*layers), 128)


def student_wide() -> FaceDescriptorNet:
    """A distilled student: wide and shallow (three wide strided convolutions, no shortcuts)."""
    layers = [nn.Conv2d(1, 48, 6, 4, 1, bias=False), nn.BatchNorm2d(48), nn.ReLU(),      # 16x16
              nn.Conv2d(48, 96, 5, 2, 2, bias=False), nn.BatchNorm2d(96), nn.ReLU(),
              nn.Conv2d(96, 160, 3, 2, 1, bias=False), nn.BatchNorm2d(160), nn.ReLU()]
    return FaceDescriptorNet(nn.Sequential(*layers), 160)
