"""A fully invertible classifier: every layer a bijection, the first C outputs are the logits.

Fashion-MNIST images have ``d = 784`` numbers, and so does the network's output ``z``: nothing is
pooled away.  ``z = (z_s, z_n)``: the first ``C = 10`` numbers ``z_s`` are the logits, the other
774 the *nuisance* variables ``z_n``, which the classification never looks at.  Because the
network is a bijection, ``z_n`` still holds everything about the image that the logits do not --
which is what metameric sampling (:mod:`utils.invertible.metamers`) exploits.

The architecture (:func:`fashion_invertible`), all layers from :mod:`utils.invertible.blocks`::

    Normalize                          1 x 28 x 28
    SpaceToDepth(2)                 -> 4 x 14 x 14
    coupling blocks (conv F, G)
    SpaceToDepth(2)                 -> 16 x 7 x 7
    coupling blocks (conv F, G)
    Flatten                         -> 784
    coupling blocks (dense F, G)       the pooling-free read-out: z[:10] = logits

``net(x)`` returns the logits (so the net is an ordinary classifier for ``accuracy``, attacks,
...); ``net.encode(x)`` returns all of ``z``; ``net.inverse(z)`` gives the image back.
"""

from __future__ import annotations

import torch
from torch import nn

from utils.invertible.blocks import (
    AdditiveCoupling,
    Flatten,
    Normalize,
    Scale,
    SpaceToDepth,
)

# Pixels in [0, 1] become (x - 0.5) / 0.353, within +-1.42: centred, so that the largest number
# in the network stays as small as it can (rounding errors are relative to it).  Every block adds
# less than ``bound`` to a number, so with 5 additions per number and bound 0.5 nothing ever
# reaches 4 (< 1.42 + 5 * 0.5), where float32's spacing of numbers would double.
PIXEL_CENTRE = 0.5
PIXEL_SCALE = 0.353


def _shape(t) -> str:
    return str(tuple(t.shape)) if torch.is_tensor(t) else type(t).__name__


class InvertibleSequential(nn.Module):
    """Invertible layers applied in order; ``inverse`` applies their inverses in reverse order."""

    def __init__(self, *layers: nn.Module):
        super().__init__()
        for layer in layers:
            if not callable(getattr(layer, "inverse", None)):
                raise ValueError(  # noqa: TRY004 (the kit's rule: bad input is a ValueError)
                    f"{type(layer).__name__} has no inverse(): every layer of an "
                    "InvertibleSequential must be invertible")
        self.layers = nn.ModuleList(layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for layer in self.layers:
            x = layer(x)
        return x

    def inverse(self, y: torch.Tensor) -> torch.Tensor:
        for layer in reversed(self.layers):
            y = layer.inverse(y)
        return y


class InvertibleClassifier(nn.Module):
    """A bijection ``x -> z`` whose first ``num_classes`` outputs are the logits.

    - ``forward(x)``: the logits ``z[:, :C]`` (an ordinary classifier);
    - ``encode(x)``: all of ``z``, shape ``(N, d)`` with ``d`` the number of pixels;
    - ``inverse(z)``: the image with code ``z`` (exact up to rounding);
    - ``split(z) -> (z_s, z_n)`` and ``merge(z_s, z_n) -> z``.
    """

    def __init__(self, body: InvertibleSequential, input_shape: tuple[int, int, int],
                 num_classes: int):
        super().__init__()
        self.body, self.input_shape, self.num_classes = body, tuple(input_shape), num_classes
        self.features = input_shape[0] * input_shape[1] * input_shape[2]
        if not 0 < num_classes < self.features:
            raise ValueError(f"num_classes must be between 1 and {self.features - 1}, "
                             f"got {num_classes}")

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """``z = (z_s, z_n)`` for images ``x`` of shape ``(N, *input_shape)``."""
        if not torch.is_tensor(x) or tuple(x.shape[1:]) != self.input_shape or x.dim() != 4:
            expected = ", ".join(map(str, self.input_shape))
            raise ValueError(f"expected images of shape (N, {expected}), got {_shape(x)}")
        return self.body(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.encode(x)[:, :self.num_classes]

    def inverse(self, z: torch.Tensor) -> torch.Tensor:
        """The images whose codes are ``z`` (shape ``(N, d)``)."""
        if not torch.is_tensor(z) or z.dim() != 2 or z.shape[1] != self.features:
            raise ValueError(f"inverse expects codes z of shape (N, {self.features}) -- the "
                             f"logits and nuisance together, as encode() returns them -- got "
                             f"{_shape(z)}")
        return self.body.inverse(z)

    def split(self, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(z_s, z_n)``: the logits and the nuisance variables."""
        if not torch.is_tensor(z) or z.dim() != 2 or z.shape[1] != self.features:
            raise ValueError(f"split expects codes of shape (N, {self.features}), got {_shape(z)}")
        return z[:, :self.num_classes], z[:, self.num_classes:]

    def merge(self, z_s: torch.Tensor, z_n: torch.Tensor) -> torch.Tensor:
        """The code with logits ``z_s`` ``(N, C)`` and nuisance ``z_n`` ``(N, d - C)``."""
        nuisance = self.features - self.num_classes
        if (not torch.is_tensor(z_s) or not torch.is_tensor(z_n) or z_s.dim() != 2
                or z_n.dim() != 2 or z_s.shape[1] != self.num_classes
                or z_n.shape[1] != nuisance or len(z_s) != len(z_n)):
            raise ValueError(f"merge expects z_s of shape (N, {self.num_classes}) and z_n of "
                             f"shape (N, {nuisance}), got {_shape(z_s)} and {_shape(z_n)}")
        return torch.cat([z_s, z_n], dim=1)


def fashion_invertible(num_classes: int = 10, hidden: tuple[int, int, int] = (16, 32, 64),
                       blocks: tuple[int, int, int] = (1, 2, 2), bound: float = 0.5,
                       scale: float = 8.0) -> InvertibleClassifier:
    """The invertible Fashion-MNIST classifier of lecture 06 (about 0.3 M parameters).

    ``blocks[i]`` coupling blocks of width ``hidden[i]`` at 14x14 (4 channels), at 7x7
    (16 channels) and on the flattened 784-vector.
    """
    layers: list[nn.Module] = [Normalize([PIXEL_CENTRE], [PIXEL_SCALE]), SpaceToDepth(1)]
    layers += [AdditiveCoupling.conv(4, hidden[0], bound=bound) for _ in range(blocks[0])]
    layers += [SpaceToDepth(4)]
    layers += [AdditiveCoupling.conv(16, hidden[1], bound=bound) for _ in range(blocks[1])]
    layers += [Flatten((16, 7, 7))]
    layers += [AdditiveCoupling.dense(784, hidden[2], bound=bound) for _ in range(blocks[2])]
    layers += [Scale(scale)]
    return InvertibleClassifier(InvertibleSequential(*layers), (1, 28, 28), num_classes)


# --------------------------------------------------------------------------------------------
# whole-data-set helpers


@torch.no_grad()
def encode(net: InvertibleClassifier, images: torch.Tensor, *,
           batch_size: int = 1000) -> torch.Tensor:
    """``net.encode`` of many images, in batches, with the net in eval mode (BN's running stats)."""
    from utils.training import evaluating

    with evaluating(net):
        return torch.cat([net.encode(images[i:i + batch_size])
                          for i in range(0, len(images), batch_size)])


@torch.no_grad()
def decode(net: InvertibleClassifier, codes: torch.Tensor, *,
           batch_size: int = 1000) -> torch.Tensor:
    """``net.inverse`` of many codes, in batches, with the net in eval mode."""
    from utils.training import evaluating

    with evaluating(net):
        return torch.cat([net.inverse(codes[i:i + batch_size])
                          for i in range(0, len(codes), batch_size)])


@torch.no_grad()
def reconstruction_error(net: InvertibleClassifier, images: torch.Tensor, *,
                         batch_size: int = 1000) -> float:
    """``max |net.inverse(net.encode(x)) - x|`` over every pixel of ``images`` (eval mode).

    Computed in the dtype of ``images`` and of the net (cast both with ``.double()`` to see the
    float64 error).
    """
    from utils.training import evaluating

    if not torch.is_tensor(images) or images.dim() != 4 or len(images) == 0:
        raise ValueError(f"reconstruction_error expects a non-empty batch of images (N, C, H, W), "
                         f"got {_shape(images)}")
    worst = torch.zeros((), dtype=images.dtype, device=images.device)
    with evaluating(net):
        for i in range(0, len(images), batch_size):
            x = images[i:i + batch_size]
            worst = torch.maximum(worst, (net.inverse(net.encode(x)) - x).abs().max())
    return worst.item()
