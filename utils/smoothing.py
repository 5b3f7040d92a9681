"""Randomized smoothing (Cohen, Rosenfeld & Kolter 2019): a classifier with a certificate.

The smoothed classifier of a base classifier ``f`` is

    g(x) = argmax_c  P( f(x + e) = c ),   e ~ N(0, sigma^2 I).

If the top class has probability at least ``p_A > 1/2`` under the noise, ``g`` provably gives
the same answer on every ``x'`` with ``||x' - x||_2 < sigma * Phi^{-1}(p_A)`` (Theorem 1 of the
paper, with ``p_B = 1 - p_A``).  The probabilities are only known through samples, so:

- :func:`noise_counts` -- how often ``f`` says each class on ``n`` noisy copies of each image;
- :func:`predict` -- the paper's PREDICT: the top class, or abstain (``-1``) when a two-sided
  binomial test cannot tell the top two counts apart at level ``alpha``;
- :func:`certify` -- the paper's CERTIFY: guess the class from ``n0`` samples, bound its
  probability from below with ``n`` fresh samples (one-sided Clopper--Pearson at ``1 - alpha``),
  and return the class with radius ``sigma * Phi^{-1}(p_lower)``, or abstain when
  ``p_lower <= 1/2``;
- :func:`clopper_pearson` and :func:`radius_from_counts`, the pieces, on plain numbers.

With probability at least ``1 - alpha`` over the sampling, a returned radius is a true one.
All sampling draws from an optional ``torch.Generator`` on the images' device.
"""

from __future__ import annotations

import math

import torch
from scipy import stats
from torch import nn

from utils.attacks import frozen
from utils.transforms import uniform as _rand

ABSTAIN = -1

__all__ = ["ABSTAIN", "noise_counts", "predict", "predict_from_counts", "certify",
           "clopper_pearson", "radius_from_counts", "hoeffding_radius"]


def _check(sigma, n, alpha=None) -> None:
    if isinstance(sigma, bool) or not isinstance(sigma, (int, float)) or not math.isfinite(sigma) \
            or sigma <= 0:
        raise ValueError(f"sigma must be a positive number (the noise's standard deviation), "
                         f"got {sigma!r}")
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ValueError(f"the number of samples must be an int >= 1, got {n!r}")
    if alpha is not None and not (isinstance(alpha, (int, float)) and 0 < alpha < 1):
        raise ValueError(f"alpha must lie in (0, 1) (e.g. 0.001), got {alpha!r}")


@torch.no_grad()
def noise_counts(model: nn.Module, x: torch.Tensor, *, sigma: float, n: int,
                 batch_size: int = 1000, generator: torch.Generator | None = None,
                 num_classes: int | None = None) -> torch.Tensor:
    """``(N, classes)`` int64 counts: how often ``model`` says each class on ``n`` copies of each
    image of ``x`` with Gaussian noise of std ``sigma`` added (not clipped, as in the paper)."""
    _check(sigma, n)
    if not isinstance(x, torch.Tensor) or not x.is_floating_point() or x.ndim < 2:
        raise ValueError("x must be a float batch of images (N, ...) in [0, 1]")
    counts = None
    per_round = max(1, batch_size // x.shape[0]) if x.shape[0] <= batch_size else 1
    with frozen(model):
        done = 0
        while done < n:
            copies = min(per_round, n - done)
            for start in range(0, x.shape[0], max(1, batch_size // copies)):
                part = x[start:start + max(1, batch_size // copies)]
                batch = part.repeat_interleave(copies, dim=0)
                noisy = batch + sigma * _rand(batch.shape, generator, batch, normal=True)
                labels = model(noisy).argmax(1).view(part.shape[0], copies)
                if counts is None:
                    classes = num_classes or int(model(part[:1]).shape[1])
                    counts = torch.zeros(x.shape[0], classes, dtype=torch.long, device=x.device)
                counts[start:start + part.shape[0]] += torch.nn.functional.one_hot(
                    labels, counts.shape[1]).sum(1)
            done += copies
    return counts


def clopper_pearson(successes: int, n: int, alpha: float) -> tuple[float, float]:
    """The two-sided ``1 - alpha`` Clopper--Pearson interval of a binomial proportion.

    ``clopper_pearson(k, n, 2 * alpha)[0]`` is the one-sided ``1 - alpha`` lower bound that
    CERTIFY uses.
    """
    if not (0 <= successes <= n) or n < 1:
        raise ValueError(f"need 0 <= successes <= n and n >= 1, got {successes} of {n}")
    low = 0.0 if successes == 0 else float(stats.beta.ppf(alpha / 2, successes, n - successes + 1))
    high = 1.0 if successes == n else float(stats.beta.ppf(1 - alpha / 2, successes + 1,
                                                           n - successes))
    return low, high


def radius_from_counts(count: int, n: int, *, sigma: float, alpha: float) -> float:
    """CERTIFY's radius from the top class's count in ``n`` samples: ``sigma * Phi^{-1}(p_lower)``
    with ``p_lower`` the one-sided ``1 - alpha`` Clopper--Pearson bound, or 0.0 (abstain) when
    ``p_lower <= 1/2``."""
    _check(sigma, n, alpha)
    lower = clopper_pearson(int(count), n, 2 * alpha)[0]
    return float(sigma * stats.norm.ppf(lower)) if lower > 0.5 else 0.0


def hoeffding_radius(count: int, n: int, *, sigma: float, alpha: float) -> float:
    """CERTIFY's radius with Hoeffding's cruder bound ``p_lower = k/n - sqrt(ln(1/alpha) / 2n)``
    in place of Clopper--Pearson's (never larger than :func:`radius_from_counts`); 0.0 (abstain)
    when ``p_lower <= 1/2``."""
    _check(sigma, n, alpha)
    lower = count / n - math.sqrt(math.log(1 / alpha) / (2 * n))
    return float(sigma * stats.norm.ppf(lower)) if lower > 0.5 else 0.0


def predict_from_counts(counts: torch.Tensor, alpha: float) -> torch.Tensor:
    """PREDICT's decision from class counts ``(N, C)``: per row the top class (the first on
    ties), or ``ABSTAIN`` when the two-sided binomial test of the top count against the
    runner-up's (out of their sum, at 1/2) has p-value above ``alpha``."""
    if counts.dim() != 2 or counts.shape[1] < 2 or counts.dtype.is_floating_point:
        raise ValueError(f"counts must be an integer tensor (N, C) with C >= 2, got "
                         f"{counts.dtype} {tuple(counts.shape)}")
    top = counts.topk(2, dim=1)
    result = []
    for (first, second), label in zip(top.values.tolist(), top.indices[:, 0].tolist()):
        p = stats.binomtest(first, first + second, 0.5).pvalue if first + second else 1.0
        result.append(label if p <= alpha else ABSTAIN)
    return torch.tensor(result, dtype=torch.long, device=counts.device)


def predict(model: nn.Module, x: torch.Tensor, *, sigma: float, n: int = 100,
            alpha: float = 0.001, batch_size: int = 1000,
            generator: torch.Generator | None = None) -> torch.Tensor:
    """The paper's PREDICT: per image, the top class of ``n`` noisy samples, or ``ABSTAIN``
    (-1) when the two-sided binomial test of the top count against the runner-up's (out of
    their sum, at 1/2) has p-value above ``alpha``.  Wrong with probability at most ``alpha``."""
    _check(sigma, n, alpha)
    counts = noise_counts(model, x, sigma=sigma, n=n, batch_size=batch_size, generator=generator)
    return predict_from_counts(counts, alpha)


def certify(model: nn.Module, x: torch.Tensor, *, sigma: float, n0: int = 100, n: int = 1000,
            alpha: float = 0.001, batch_size: int = 1000,
            generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """The paper's CERTIFY for each image: ``(classes, radii)``.

    The class is the top one of ``n0`` samples (selection); its count among ``n`` fresh samples
    (estimation) gives the lower bound ``p_lower``; the radius is ``sigma * Phi^{-1}(p_lower)``
    when ``p_lower > 1/2``, else the image abstains (class ``-1``, radius 0).  Radii are L2
    distances in the image space [0, 1]^d.
    """
    _check(sigma, n0, alpha)
    _check(sigma, n)
    guess = noise_counts(model, x, sigma=sigma, n=n0, batch_size=batch_size,
                         generator=generator).argmax(1)
    counts = noise_counts(model, x, sigma=sigma, n=n, batch_size=batch_size, generator=generator)
    hits = counts.gather(1, guess[:, None]).squeeze(1).tolist()
    radii = [radius_from_counts(k, n, sigma=sigma, alpha=alpha) for k in hits]
    classes = [c if r > 0 else ABSTAIN for c, r in zip(guess.tolist(), radii)]
    return (torch.tensor(classes, device=x.device),
            torch.tensor(radii, device=x.device, dtype=x.dtype))
