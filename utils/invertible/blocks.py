"""The pieces of a fully invertible network: additive coupling and invertible down-sampling.

Every layer here is a bijection with an exact inverse written in closed form:

- :class:`AdditiveCoupling` -- the RevNet block.  The input is split in two halves along the
  channels, ``y1 = x1 + F(x2)``, ``y2 = x2 + G(y1)``; it is undone by ``x2 = y2 - G(y1)``,
  ``x1 = y1 - F(x2)``.  ``F`` and ``G`` are arbitrary (ResNet-style BN-ReLU-Conv stacks here);
  they never have to be inverted themselves, only evaluated again.
- :class:`SpaceToDepth` -- invertible down-sampling: every ``r x r`` patch of pixels becomes
  ``r * r`` channels of one pixel (the i-RevNet down-sampling; PyTorch's ``pixel_unshuffle``).
- :class:`Normalize` and :class:`Flatten` -- the per-channel affine normalisation and the
  reshape to a vector, with their inverses.

Each layer has ``forward(x)`` and ``inverse(y)``; ``inverse`` checks the shape of what it is
given and raises :class:`ValueError` naming the shape it expects.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from utils import models

Function = Callable[[torch.Tensor], torch.Tensor]

# Batch norm divides by sqrt(variance + eps).  PyTorch's eps of 1e-5 lets a feature that hardly
# varies be amplified a hundredfold, and with it every rounding error in it; 0.1 caps the gain.
BN_EPS = 0.1


def _check_channels(t: torch.Tensor, channels: int, what: str, layout: str) -> None:
    if not torch.is_tensor(t) or t.dim() < 2 or t.shape[1] != channels:
        got = tuple(t.shape) if torch.is_tensor(t) else type(t).__name__
        raise ValueError(f"{what} expects a tensor of shape {layout} with {channels} channels "
                         f"(dimension 1), got {got}")


# --------------------------------------------------------------------------------------------
# the residual functions F and G


class SoftClip(nn.Module):
    """``bound * tanh(x / bound)``: the identity near 0, never beyond ``+-bound``.

    Ends every F and G, so no block can add more than ``bound`` to a number: the values that
    flow through the network stay small, and so do the rounding errors of its additions.
    """

    def __init__(self, bound: float):
        super().__init__()
        if not bound > 0:
            raise ValueError(f"bound must be positive, got {bound!r}")
        self.bound = float(bound)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.bound * torch.tanh(x / self.bound)

    def extra_repr(self) -> str:
        return f"bound={self.bound:g}"


def conv_stack(channels: int, hidden: int, *, bottleneck: bool = False,
               bound: float = 1.0) -> nn.Sequential:
    """A ResNet-style residual function ``channels -> channels`` (the F and G of a block).

    ``BN-ReLU-C3-BN-ReLU-C3`` (basic), or ``BN-ReLU-C1-BN-ReLU-C3-BN-ReLU-C1`` with
    ``bottleneck=True``, then :class:`SoftClip` at ``bound``.  The last convolution starts at
    zero, so a new block is the identity.
    """
    if channels < 1 or hidden < 1:
        raise ValueError(f"channels and hidden must be positive, got {channels} and {hidden}")
    if bottleneck:
        layers = [nn.BatchNorm2d(channels, eps=BN_EPS), nn.ReLU(),
                  nn.Conv2d(channels, hidden, 1),
                  nn.BatchNorm2d(hidden, eps=BN_EPS), nn.ReLU(),
                  nn.Conv2d(hidden, hidden, 3, padding=1),
                  nn.BatchNorm2d(hidden, eps=BN_EPS), nn.ReLU(),
                  nn.Conv2d(hidden, channels, 1)]
    else:
        layers = [nn.BatchNorm2d(channels, eps=BN_EPS), nn.ReLU(),
                  nn.Conv2d(channels, hidden, 3, padding=1),
                  nn.BatchNorm2d(hidden, eps=BN_EPS), nn.ReLU(),
                  nn.Conv2d(hidden, channels, 3, padding=1)]
    nn.init.zeros_(layers[-1].weight)
    nn.init.zeros_(layers[-1].bias)
    return nn.Sequential(*layers, SoftClip(bound))


def dense_stack(features: int, hidden: int, *, bound: float = 1.0) -> nn.Sequential:
    """``BN-ReLU-Linear-BN-ReLU-Linear`` on vectors (the basic stack on a 1x1 image: C1 convs),
    then :class:`SoftClip` at ``bound``."""
    if features < 1 or hidden < 1:
        raise ValueError(f"features and hidden must be positive, got {features} and {hidden}")
    layers = [nn.BatchNorm1d(features, eps=BN_EPS), nn.ReLU(), nn.Linear(features, hidden),
              nn.BatchNorm1d(hidden, eps=BN_EPS), nn.ReLU(), nn.Linear(hidden, features)]
    nn.init.zeros_(layers[-1].weight)
    nn.init.zeros_(layers[-1].bias)
    return nn.Sequential(*layers, SoftClip(bound))


# --------------------------------------------------------------------------------------------
# the coupling block


def coupling_forward(F: Function, G: Function, x1: torch.Tensor, x2: torch.Tensor):
    """``y1 = x1 + F(x2)``, ``y2 = x2 + G(y1)``."""
    y1 = x1 + F(x2)
    y2 = x2 + G(y1)
    return y1, y2


def coupling_inverse(F: Function, G: Function, y1: torch.Tensor, y2: torch.Tensor):
    """``x2 = y2 - G(y1)``, ``x1 = y1 - F(x2)``: the exact inverse of :func:`coupling_forward`."""
    x2 = y2 - G(y1)
    x1 = y1 - F(x2)
    return x1, x2


class AdditiveCoupling(nn.Module):
    """A RevNet block on ``(N, 2h, ...)`` tensors: halves ``x1, x2`` of ``h`` channels each."""

    def __init__(self, F: nn.Module, G: nn.Module, channels: int):
        super().__init__()
        if channels < 2 or channels % 2:
            raise ValueError(f"a coupling block splits the channels in two halves, so it needs "
                             f"an even number of channels >= 2, got {channels}")
        self.F, self.G, self.channels = F, G, channels

    @classmethod
    def conv(cls, channels: int, hidden: int, *, bottleneck: bool = False,
             bound: float = 1.0) -> AdditiveCoupling:
        """A block on images with ``channels`` channels, F and G :func:`conv_stack`."""
        half = channels // 2
        return cls(conv_stack(half, hidden, bottleneck=bottleneck, bound=bound),
                   conv_stack(half, hidden, bottleneck=bottleneck, bound=bound), channels)

    @classmethod
    def dense(cls, features: int, hidden: int, *, bound: float = 1.0) -> AdditiveCoupling:
        """A block on vectors of ``features`` numbers, F and G :func:`dense_stack`."""
        half = features // 2
        return cls(dense_stack(half, hidden, bound=bound), dense_stack(half, hidden, bound=bound),
                   features)

    @property
    def _layout(self) -> str:
        return f"(N, {self.channels}, ...)"

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        _check_channels(x, self.channels, "AdditiveCoupling.forward", self._layout)
        y1, y2 = coupling_forward(self.F, self.G, *x.chunk(2, dim=1))
        return torch.cat([y1, y2], dim=1)

    def inverse(self, y: torch.Tensor) -> torch.Tensor:
        _check_channels(y, self.channels, "AdditiveCoupling.inverse", self._layout)
        x1, x2 = coupling_inverse(self.F, self.G, *y.chunk(2, dim=1))
        return torch.cat([x1, x2], dim=1)

    def extra_repr(self) -> str:
        return f"channels={self.channels}"


# --------------------------------------------------------------------------------------------
# invertible down-sampling, normalisation, flattening


def space_to_depth(x: torch.Tensor, r: int = 2) -> torch.Tensor:
    """``(N, C, H, W) -> (N, C r^2, H/r, W/r)``: each ``r x r`` patch becomes ``r^2`` channels.

    Output channel ``c r^2 + i r + j`` holds pixel ``(i, j)`` of each patch of input channel
    ``c`` -- the order of :func:`torch.nn.functional.pixel_unshuffle`.
    """
    if not torch.is_tensor(x) or x.dim() != 4:
        raise ValueError(f"space_to_depth expects images (N, C, H, W), got "
                         f"{tuple(x.shape) if torch.is_tensor(x) else type(x).__name__}")
    n, c, h, w = x.shape
    if h % r or w % r:
        raise ValueError(f"space_to_depth with r={r} needs H and W divisible by {r}, got {h}x{w}")
    x = x.reshape(n, c, h // r, r, w // r, r)
    return x.permute(0, 1, 3, 5, 2, 4).reshape(n, c * r * r, h // r, w // r)


def depth_to_space(y: torch.Tensor, r: int = 2) -> torch.Tensor:
    """The inverse of :func:`space_to_depth`: ``(N, C r^2, H, W) -> (N, C, H r, W r)``."""
    if not torch.is_tensor(y) or y.dim() != 4 or y.shape[1] % (r * r):
        raise ValueError(f"depth_to_space with r={r} expects (N, C*{r * r}, H, W), got "
                         f"{tuple(y.shape) if torch.is_tensor(y) else type(y).__name__}")
    n, c, h, w = y.shape
    y = y.reshape(n, c // (r * r), r, r, h, w)
    return y.permute(0, 1, 4, 2, 5, 3).reshape(n, c // (r * r), h * r, w * r)


class SpaceToDepth(nn.Module):
    """Invertible down-sampling by ``r`` (no pixel is dropped: the channels grow by ``r^2``)."""

    def __init__(self, channels: int, r: int = 2):
        super().__init__()
        self.channels, self.r = channels, r

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        _check_channels(x, self.channels, "SpaceToDepth.forward", f"(N, {self.channels}, H, W)")
        return space_to_depth(x, self.r)

    def inverse(self, y: torch.Tensor) -> torch.Tensor:
        out = self.channels * self.r ** 2
        _check_channels(y, out, "SpaceToDepth.inverse", f"(N, {out}, H, W)")
        return depth_to_space(y, self.r)

    def extra_repr(self) -> str:
        return f"channels={self.channels}, r={self.r}"


class Normalize(models.Normalize):
    """The core's ``(x - mean) / std`` layer, and back: the images stay in [0, 1] outside the net."""

    def inverse(self, y: torch.Tensor) -> torch.Tensor:
        return y * self.std + self.mean


class Scale(nn.Module):
    """Multiply by a fixed ``factor`` and divide on the way back.

    With a power of two the product is exact in binary floating point, so this layer lets the
    logits be large (cross-entropy wants them so) while the additive couplings before it work
    on small numbers, where their rounding errors are small.
    """

    def __init__(self, factor: float):
        super().__init__()
        if not factor > 0:
            raise ValueError(f"factor must be positive, got {factor!r}")
        self.factor = float(factor)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.factor

    def inverse(self, y: torch.Tensor) -> torch.Tensor:
        return y / self.factor

    def extra_repr(self) -> str:
        return f"factor={self.factor:g}"


class Flatten(nn.Module):
    """``(N, C, H, W) -> (N, C*H*W)`` and back to ``shape``."""

    def __init__(self, shape: tuple[int, int, int]):
        super().__init__()
        self.shape = tuple(shape)
        self.features = self.shape[0] * self.shape[1] * self.shape[2]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not torch.is_tensor(x) or tuple(x.shape[1:]) != self.shape:
            raise ValueError(f"Flatten expects (N, {', '.join(map(str, self.shape))}), got "
                             f"{tuple(x.shape) if torch.is_tensor(x) else type(x).__name__}")
        return x.flatten(1)

    def inverse(self, y: torch.Tensor) -> torch.Tensor:
        if not torch.is_tensor(y) or y.dim() != 2 or y.shape[1] != self.features:
            raise ValueError(f"Flatten.inverse expects (N, {self.features}), got "
                             f"{tuple(y.shape) if torch.is_tensor(y) else type(y).__name__}")
        return y.reshape(len(y), *self.shape)

    def extra_repr(self) -> str:
        return f"shape={self.shape}"
