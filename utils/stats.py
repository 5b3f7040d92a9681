"""Intervals for the numbers the lectures report, so a claim comes with its uncertainty.

- :func:`wilson_interval` -- a proportion ``k / n`` (a success rate, a share of images);
- :class:`Share` -- that proportion and its interval, printed as ``0.350 [0.230, 0.490]``;
- :func:`t_interval` -- the mean of a few paired differences (seeds, pair sets).
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from dataclasses import dataclass


def wilson_interval(successes: int, n: int, z: float = 1.96) -> tuple[float, float]:
    """The Wilson score interval of a proportion (95 % for ``z = 1.96``).

    Unlike ``p ± z·sqrt(p(1-p)/n)`` it stays inside [0, 1] and does not collapse to a point
    at ``p = 0`` or ``p = 1``, which is where small samples of attack success rates often are.
    """
    if n <= 0:
        raise ValueError(f"n must be positive, got {n}")
    if not 0 <= successes <= n:
        raise ValueError(f"successes must lie in [0, n] = [0, {n}], got {successes}")
    p = successes / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return max(0.0, centre - half), min(1.0, centre + half)


@dataclass
class Share:
    """A proportion with its 95 % Wilson interval."""

    successes: int
    n: int

    @property
    def value(self) -> float:
        return self.successes / self.n

    @property
    def interval(self) -> tuple[float, float]:
        return wilson_interval(self.successes, self.n)

    def __str__(self) -> str:
        low, high = self.interval
        return f"{self.value:.3f} [{low:.3f}, {high:.3f}]"


def t_interval(values: Sequence[float], confidence: float = 0.95) -> tuple[float, float, float]:
    """``(mean, low, high)``: Student-t interval of the mean of ``values`` (NaN bounds for n < 2)."""
    from scipy import stats

    values = [float(v) for v in values]
    if not values:
        raise ValueError("t_interval needs at least one value")
    mean = statistics.fmean(values)
    if len(values) < 2:
        return mean, math.nan, math.nan
    half = stats.t.ppf(0.5 + confidence / 2, len(values) - 1) * statistics.stdev(values) / \
        math.sqrt(len(values))
    return mean, mean - half, mean + half
