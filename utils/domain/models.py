"""DANN's three parts -- feature extractor G_f, label predictor G_y, domain classifier G_d.

One architecture serves all three of lecture 04's models (source-only, DANN, target-trained
oracle), so that their comparison changes the training alone.  Models take colour images
``(N, 3, 28, 28)`` in [0, 1]; grey Fashion-MNIST ``(N, 1, 28, 28)`` is repeated to three equal
channels inside the model (:class:`ToRGB`), as the paper did with MNIST against MNIST-M.
"""

from __future__ import annotations

import torch
from torch import nn

from utils.domain.grl import grad_reverse


class ToRGB(nn.Module):
    """Grey ``(N, 1, H, W)`` -> ``(N, 3, H, W)`` by repeating the channel; colour passes as is."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.ndim != 4 or x.shape[1] not in (1, 3):
            raise ValueError(f"expected images (N, 1 or 3, H, W), got shape {tuple(x.shape)}")
        return x.expand(-1, 3, -1, -1) if x.shape[1] == 1 else x


class Standardize(nn.Module):
    """Per-image standardisation: each image minus its mean, over its standard deviation.

    Removes the brightness and contrast of whatever photograph a target image was blended
    with -- the same operation for every image of every domain, so it needs no domain label.
    """

    def __init__(self, eps: float = 1e-5):
        super().__init__()
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        flat = x.flatten(1)
        mean = flat.mean(1).view(-1, 1, 1, 1)
        std = flat.std(1).view(-1, 1, 1, 1)
        return (x - mean) / (std + self.eps)


def conv_bn(cin: int, cout: int, stride: int = 1) -> list[nn.Module]:
    """3x3 convolution (``stride``), batch norm, ReLU."""
    return [nn.Conv2d(cin, cout, 3, stride, padding=1, bias=False), nn.BatchNorm2d(cout),
            nn.ReLU()]


def feature_extractor(channels: tuple[int, ...] = (32, 64, 128), convs: int = 1,
                      features: int | None = 128, standardize: bool = True) -> nn.Sequential:
    """G_f: one stage per entry of ``channels``, each a stride-2 conv-BN-ReLU (28 -> 14 -> 7 ->
    4 pixels; strided convolutions instead of max pooling keep a CPU step cheap) followed by
    ``convs - 1`` more at that size; then the feature maps flattened, and (unless ``features``
    is None) a fully connected layer with batch norm to a ``features``-long vector."""
    layers: list[nn.Module] = [ToRGB()] + ([Standardize()] if standardize else [])
    cin, size = 3, 28
    for cout in channels:
        layers += conv_bn(cin, cout, stride=2)
        size = (size + 1) // 2
        for _ in range(convs - 1):
            layers += conv_bn(cout, cout)
        cin = cout
    layers.append(nn.Flatten())
    if features is not None:
        layers += [nn.Linear(cin * size * size, features, bias=False), nn.BatchNorm1d(features),
                   nn.ReLU()]
    return nn.Sequential(*layers)


def feature_size(channels: tuple[int, ...], features: int | None) -> int:
    """Length of the vector :func:`feature_extractor` returns."""
    size = 28
    for _ in channels:
        size = (size + 1) // 2
    return features if features is not None else channels[-1] * size * size


def label_predictor(features: int = 128, hidden: int = 128, classes: int = 10) -> nn.Sequential:
    """G_y: one hidden layer, then the class logits."""
    return nn.Sequential(nn.Linear(features, hidden), nn.ReLU(), nn.Linear(hidden, classes))


def domain_classifier(features: int = 128, hidden: int = 256, layers: int = 2) -> nn.Sequential:
    """G_d: ``layers`` hidden layers of ``hidden`` units, then one logit (target = 1)."""
    blocks, cin = [], features
    for _ in range(layers):
        blocks += [nn.Linear(cin, hidden), nn.ReLU()]
        cin = hidden
    return nn.Sequential(*blocks, nn.Linear(cin, 1))


class DANNNet(nn.Module):
    """``features`` (G_f), ``classifier`` (G_y) and ``domain`` (G_d); calling it gives class logits.

    ``domain_logits(x, lambda_)`` runs G_d on the features through the gradient reversal layer.
    """

    def __init__(self, features: nn.Module, classifier: nn.Module, domain: nn.Module):
        super().__init__()
        self.features, self.classifier, self.domain = features, classifier, domain

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x))

    def domain_logits(self, x: torch.Tensor, lambda_=1.0) -> torch.Tensor:
        return self.domain(grad_reverse(self.features(x), lambda_)).squeeze(1)


def dann_net(*, channels: tuple[int, ...] = (32, 64, 128), convs: int = 1,
             features: int | None = 128, hidden: int = 128, domain_hidden: int = 256,
             domain_layers: int = 2, standardize: bool = True, classes: int = 10) -> DANNNet:
    """A :class:`DANNNet` built from :func:`feature_extractor`, :func:`label_predictor` and
    :func:`domain_classifier`."""
    width = feature_size(tuple(channels), features)
    return DANNNet(feature_extractor(tuple(channels), convs, features, standardize),
                   label_predictor(width, hidden, classes),
                   domain_classifier(width, domain_hidden, domain_layers))


def domain_net() -> DANNNet:
    """The zoo's architecture for lecture 04 (source-only, DANN and oracle alike): three strided
    conv stages (16, 32, 64 channels), the 64 x 4 x 4 feature maps as G_f's output (the GRL sits
    on the conv features, as in the paper), G_y 1024-128-10, G_d 1024-128-128-1; 0.3 M parameters."""
    return dann_net(channels=(16, 32, 64), features=None, hidden=128, domain_hidden=128,
                    domain_layers=2)


def small_dann_net() -> DANNNet:
    """A smaller version of :func:`domain_net` (8, 16, 32 channels) for short runs in a notebook."""
    return dann_net(channels=(8, 16, 32), features=None, hidden=64, domain_hidden=64,
                    domain_layers=2)


def paper_net(classes: int = 10) -> DANNNet:
    """The paper's MNIST -> MNIST-M network: conv 5x5 (32) - pool - conv 5x5 (48) - pool; label
    predictor 100-100-10; domain classifier 100-1; no batch norm (a baseline for the benchmark)."""
    features = nn.Sequential(ToRGB(), Standardize(),
                             nn.Conv2d(3, 32, 5), nn.ReLU(), nn.MaxPool2d(2),      # 12x12
                             nn.Conv2d(32, 48, 5), nn.ReLU(), nn.MaxPool2d(2),     # 4x4
                             nn.Flatten())
    return DANNNet(features,
                   nn.Sequential(nn.Linear(768, 100), nn.ReLU(), nn.Linear(100, 100), nn.ReLU(),
                                 nn.Linear(100, classes)),
                   nn.Sequential(nn.Linear(768, 100), nn.ReLU(), nn.Linear(100, 1)))


def tiny_dann_net(classes: int = 10) -> DANNNet:
    """A very small DANN network for tests and the lab's checks (runs in milliseconds)."""
    return dann_net(channels=(4, 8), features=16, hidden=16, domain_hidden=16, domain_layers=1,
                    classes=classes)
