"""The two schedules of Ganin & Lempitsky (2015), as functions of the training progress p in [0, 1].

- :func:`dann_lambda`: the weight of the reversed gradient, ``2 / (1 + exp(-gamma p)) - 1``,
  grows from 0 to ~1 so that the noisy domain signal of an untrained classifier does not wreck
  the features at the start;
- :func:`dann_lr_factor`: the learning-rate annealing ``1 / (1 + alpha p) ** beta`` (multiply
  by the initial rate mu_0), usable as ``schedule=`` of :func:`utils.training.train` or with
  :func:`utils.training.make_schedule`.
"""

from __future__ import annotations

import math
import numbers


def _check_progress(p) -> float:
    if isinstance(p, bool) or not isinstance(p, numbers.Real) or not 0 <= p <= 1:
        raise ValueError(f"p is the share of training done, a number in [0, 1]; got {p!r}")
    return float(p)


def dann_lambda(p: float, *, gamma: float = 10.0, lambda_max: float = 1.0) -> float:
    """``lambda_max * (2 / (1 + exp(-gamma * p)) - 1)``: 0 at p = 0, ~lambda_max by p ~ 0.5."""
    p = _check_progress(p)
    return lambda_max * (2.0 / (1.0 + math.exp(-gamma * p)) - 1.0)


def dann_lr_factor(p: float, *, alpha: float = 10.0, beta: float = 0.75) -> float:
    """``1 / (1 + alpha * p) ** beta``: 1 at the start, ~0.17 at the end with the paper's values."""
    p = _check_progress(p)
    return 1.0 / (1.0 + alpha * p) ** beta
