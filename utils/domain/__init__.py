"""Lecture 04: domain adaptation by gradient reversal (DANN; Ganin & Lempitsky, 2015).

- :mod:`utils.domain.grl`       -- the gradient reversal layer (``grad_reverse``, ``GradReverse``)
- :mod:`utils.domain.schedules` -- the paper's λ_p and learning-rate schedules
- :mod:`utils.domain.models`    -- feature extractor, label predictor, domain classifier
- :mod:`utils.domain.data`      -- the source/target domains and paired batches
- :mod:`utils.domain.step`      -- one DANN training step, run by :func:`utils.training.fit`
- :mod:`utils.domain.recipes`   -- zoo recipes: source-only, DANN, oracle
"""

from utils.domain.grl import GradReverse, GradientReversal, GradScale, grad_reverse, scale_gradient
from utils.domain.schedules import dann_lambda, dann_lr_factor
from utils.domain.step import dann_loss, dann_step, make_dann_step, run_in_order

__all__ = ["GradReverse", "GradientReversal", "GradScale", "grad_reverse", "scale_gradient",
           "dann_lambda", "dann_lr_factor", "dann_loss", "dann_step", "make_dann_step",
           "run_in_order"]
