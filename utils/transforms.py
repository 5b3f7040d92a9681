"""Differentiable image transformations shared by the attacks and the lectures.

:func:`gaussian_blur` is the one blur of the kit (the EOT transformation of lecture 01 and the
gradient smoothing of lecture 03 both use it); :class:`RandomTransform` is the random
shift-blur-noise of Expectation over Transformation.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F


def uniform(shape, generator: torch.Generator | None, like: torch.Tensor, *,
             normal: bool = False) -> torch.Tensor:
    """Uniform [0, 1) (or standard normal) numbers from ``generator``, on ``like``'s device."""
    device = generator.device if generator is not None else like.device
    sample = torch.randn if normal else torch.rand
    return sample(shape, generator=generator, device=device, dtype=like.dtype).to(like.device)


def gaussian_blur(x: torch.Tensor, sigma, *, padding: str = "reflect",
                  radius: int | None = None) -> torch.Tensor:
    """Blur each image of ``x`` ``(N, C, H, W)`` with a separable Gaussian of std ``sigma`` pixels.

    ``sigma`` is one number or a tensor ``(N,)`` (one per image); the kernel's radius is
    ``ceil(3 * max sigma)`` unless given.  ``padding`` is ``"reflect"`` or ``"replicate"``.
    """
    if x.ndim != 4:
        raise ValueError(f"gaussian_blur needs images (N, C, H, W), got shape {tuple(x.shape)}")
    n, channels, height, width = x.shape
    sigma = torch.as_tensor(sigma, dtype=x.dtype, device=x.device).clamp_min(1e-3)
    if sigma.ndim == 0:
        sigma = sigma.expand(n)
    if sigma.shape != (n,):
        raise ValueError(f"sigma must be a number or one value per image ({n}), got shape "
                         f"{tuple(sigma.shape)}")
    if radius is None:
        radius = max(1, math.ceil(3 * float(sigma.max())))
    t = torch.arange(-radius, radius + 1, device=x.device, dtype=x.dtype)
    kernel = torch.exp(-t[None] ** 2 / (2 * sigma[:, None] ** 2))
    kernel = (kernel / kernel.sum(1, keepdim=True)).repeat_interleave(channels, 0)
    flat = F.pad(x.reshape(1, n * channels, height, width), (radius,) * 4, mode=padding)
    flat = F.conv2d(flat, kernel[:, None, None, :], groups=n * channels)
    flat = F.conv2d(flat, kernel[:, None, :, None], groups=n * channels)
    return flat.view(n, channels, height, width)


@dataclass(frozen=True)
class RandomTransform:
    """A random, differentiable image transformation: shift, then blur, then noise.

    Per image: a sub-pixel translation uniform in ``[-shift, shift]`` pixels on each axis
    (bilinear, border padding), a Gaussian blur with sigma uniform in ``blur`` pixels, and
    Gaussian noise with a standard deviation uniform in ``[0, noise]``; the result is clamped
    to [0, 1].  ``transform(x, generator)`` draws fresh parameters for every call.
    """

    shift: float = 2.0
    blur: tuple[float, float] = (0.0, 1.2)
    noise: float = 0.1

    def __call__(self, x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        n, _, height, width = x.shape
        if self.shift > 0:
            offsets = (2 * uniform((n, 2), generator, x) - 1) * self.shift
            theta = torch.zeros(n, 2, 3, device=x.device, dtype=x.dtype)
            theta[:, 0, 0] = theta[:, 1, 1] = 1
            theta[:, 0, 2] = offsets[:, 0] * 2 / width
            theta[:, 1, 2] = offsets[:, 1] * 2 / height
            grid = F.affine_grid(theta, list(x.shape), align_corners=False)
            x = F.grid_sample(x, grid, mode="bilinear", padding_mode="border",
                              align_corners=False)
        low, high = self.blur
        if high > 0:
            sigma = low + (high - low) * uniform((n,), generator, x)
            x = gaussian_blur(x, sigma, padding="replicate", radius=max(1, math.ceil(2.5 * high)))
        if self.noise > 0:
            std = self.noise * uniform((n,), generator, x)
            x = x + std.view(-1, 1, 1, 1) * uniform(x.shape, generator, x, normal=True)
        return x.clamp(0, 1)
