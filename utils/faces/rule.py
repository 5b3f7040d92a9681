"""The competition's rule: every changed image keeps SSIM >= 0.95 to its original, measured on
the images as they are saved (uint8), plus the attacks' fast check and their projection back
onto the rule.
"""

from __future__ import annotations

import functools

import torch

from utils.faces.game import SSIM_LIMIT

def to_uint8(images: torch.Tensor) -> torch.Tensor:
    """Images as they would be saved: ``round(255 x)`` as uint8 (same device)."""
    return (images.clamp(0, 1) * 255).round().to(torch.uint8)


def ssim_uint8(images, originals) -> torch.Tensor:
    """SSIM of each image to its original, both as saved (uint8), with pytorch-msssim's
    default 11x11 Gaussian window: a float tensor ``(N,)``.  Accepts float [0, 1] or uint8."""
    from pytorch_msssim import ssim

    def pixels(x):
        x = torch.as_tensor(x)
        if x.dtype != torch.uint8:
            x = to_uint8(x)
        if x.dim() == 3:
            x = x.unsqueeze(1)
        return x.float()

    a, b = pixels(images), pixels(originals)
    if a.shape != b.shape:
        raise ValueError(f"images {tuple(a.shape)} and originals {tuple(b.shape)} differ in shape")
    return ssim(a, b.to(a.device), data_range=255, size_average=False)


_SSIM_MARGIN = 1e-5       # the attacks' own (fast) check aims this much above the limit


@functools.lru_cache(maxsize=8)
def _gaussian_band(size: int, device, dtype, window: int = 11, sigma: float = 1.5):
    t = torch.arange(window, device=device, dtype=dtype) - window // 2
    g = torch.exp(-t ** 2 / (2 * sigma ** 2))
    g = g / g.sum()
    band = torch.zeros(size - window + 1, size, device=device, dtype=dtype)
    for i in range(size - window + 1):
        band[i, i:i + window] = g
    return band


def ssim_fast(images: torch.Tensor, originals: torch.Tensor) -> torch.Tensor:
    """The same SSIM as :func:`ssim_uint8` (pytorch-msssim's formula: 11x11 Gaussian window,
    sigma 1.5, K = (0.01, 0.03), valid filtering) computed with two matrix products instead of
    convolutions: several times faster on a CPU, for the attacks' inner loops.  The scorer
    always uses :func:`ssim_uint8`; a test checks that both agree."""
    a = to_uint8(images).float()
    b = to_uint8(originals).float().to(a.device)
    band = _gaussian_band(a.shape[-1], a.device, a.dtype)
    mu_a, mu_b, aa, bb, ab = band @ torch.stack([a, b, a * a, b * b, a * b]) @ band.t()
    c1, c2 = (0.01 * 255) ** 2, (0.03 * 255) ** 2
    var_a, var_b, cov = aa - mu_a ** 2, bb - mu_b ** 2, ab - mu_a * mu_b
    value = ((2 * mu_a * mu_b + c1) / (mu_a ** 2 + mu_b ** 2 + c1)) * \
        ((2 * cov + c2) / (var_a + var_b + c2))
    return value.flatten(1).mean(1)


def is_valid(images: torch.Tensor, originals: torch.Tensor) -> torch.Tensor:
    """The attacks' validity check (fast SSIM, with a hair of margin)."""
    return ssim_fast(images, originals) >= SSIM_LIMIT + _SSIM_MARGIN


def project_ssim(x: torch.Tensor, originals: torch.Tensor, *, grid: int = 8) -> torch.Tensor:
    """Pull each image back along the segment to its original until its saved SSIM >= 0.95:
    the largest scale ``t`` in [0, 1] with SSIM(x0 + t (x - x0)) >= 0.95, searched on a grid of
    ``grid`` scales and then ``grid`` finer ones below the first invalid scale (two batched
    SSIM calls, precision ``1 / grid**2``).  Images already valid are returned unchanged."""
    ok = is_valid(x, originals)
    if bool(ok.all()):
        return x
    n, device = len(x), x.device
    delta = x - originals
    low = torch.zeros(n, device=device)
    width = 1.0
    for _ in range(2):
        width = width / grid
        scales = low[:, None] + width * torch.arange(1, grid + 1, device=device)   # (n, grid)
        trial = originals[:, None] + scales[..., None, None, None] * delta[:, None]
        good = is_valid(trial.flatten(0, 1), originals.repeat_interleave(grid, 0)).view(n, grid)
        # the first invalid scale on the grid bounds the search; keep the last valid before it
        first_bad = torch.where(good.all(1), torch.full_like(low, grid, dtype=torch.long),
                                (~good).float().argmax(1))
        low = low + width * first_bad.float()
    scale = torch.where(ok, torch.ones_like(low), low).view(-1, 1, 1, 1)
    return originals + scale * delta


def guard(images: torch.Tensor, originals: torch.Tensor) -> torch.Tensor:
    """Last check with the scorer's own SSIM: an image that fails it goes back to its original."""
    bad = (ssim_uint8(images, originals) < SSIM_LIMIT).view(-1, 1, 1, 1)
    return torch.where(bad, originals, images)
