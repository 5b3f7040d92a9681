"""The write-up's tricks for the face attack, one small object each (lecture 03).

Every gradient attack of the ladder repeats the same step on each source image ``x``:

====  ===========================================================  ============================
 1    ``points = aim(target descriptors)``: where to pull           :class:`EachTarget`,
                                                                    :class:`MeanTarget`,
                                                                    :class:`TargetCombinations`
 2    ``loss = objective(students, x, points)``: how far it is      :func:`student_loss`,
                                                                    :class:`Mirror`
 3    ``g = d loss / d x``, then each gradient filter in turn       :class:`Smooth`,
                                                                    :class:`Momentum`
 4    ``direction = step(g)``, then the mask                        ``sign_step`` / ``value_step``
                                                                    (:mod:`utils.attacks`),
                                                                    :class:`Mask`
 5    ``candidate = x - alpha * direction``, then the rule          :class:`StopAtBreak`,
                                                                    :class:`SSIMBoundary`
 6    ``x = candidate`` where the acceptance says so                :class:`AcceptAll`,
                                                                    :class:`KeepIfBetter`
====  ===========================================================  ============================

A trick fills one slot and does one job; an :class:`AttackPlan` holds one choice per slot (what a
rung of the ladder is), and :func:`plan` builds one from the ladder's keywords (``method``,
``keep_if_better``, ``target_mode``, ``boundary``, ``smooth``, ``momentum``, ``mask_std``,
``flips``, ``restart``).  The loop that runs a plan is :func:`utils.faces.ladder.attack_stats`;
the last trick of the write-up, the differential-evolution pixel polish, is a stage of its own
(:func:`utils.faces.ladder.de_polish_stats`).

What one run carries from step to step (the current images, each image's step size, which
images are still moving, keep-if-better's best loss, momentum's velocity) lives in a
:class:`Run`, made fresh for every attack, so a plan can be reused on any pair set.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Sequence

import torch
from torch import nn

from utils.attacks import sign_step, value_step
from utils.faces.blackbox import BlackBox, query_tensor
from utils.faces.rule import is_valid, project_ssim, to_uint8
from utils.transforms import gaussian_blur


# --------------------------------------------------------------------------------------------
# the two distances every trick is about


def student_loss(members: Sequence[tuple[nn.Module, float]], x: torch.Tensor,
                 points: torch.Tensor) -> torch.Tensor:
    """Per image: the weighted sum over ``[(student, weight), ...]`` of the mean L2 distance of
    its descriptor to ``points`` (what the gradient attacks descend; white box)."""
    total = 0
    for student, weight in members:
        total = total + weight * torch.cdist(student(x), points).mean(1)
    return total


def blackbox_loss(blackbox: BlackBox, x: torch.Tensor, targets_desc: torch.Tensor) -> torch.Tensor:
    """Per image: mean L2 distance of its black-box descriptor to the targets' (queries len(x),
    on the images as they would be saved): the score's own terms."""
    return torch.cdist(query_tensor(blackbox, to_uint8(x).float() / 255), targets_desc).mean(1)


# --------------------------------------------------------------------------------------------
# the state of one run


@dataclass
class Run:
    """What one gradient attack carries from step to step (made fresh for every attack)."""

    blackbox: BlackBox
    originals: torch.Tensor          # the sources as saved (uint8 levels), the SSIM reference
    targets_desc: torch.Tensor       # the black box's descriptors of the 5 targets (the score)
    x: torch.Tensor                  # the current images
    step: torch.Tensor               # each image's step size, (n, 1, 1, 1)
    active: torch.Tensor             # which images may still move, (n, 1, 1, 1) bool
    rejected: torch.Tensor = None    # image-steps keep-if-better refused (a 0-d long tensor)
    memory: dict = field(default_factory=dict)   # a trick's own state, keyed by the trick

    def __post_init__(self):
        if self.rejected is None:
            self.rejected = torch.zeros((), dtype=torch.long, device=self.x.device)


class Trick:
    """A piece of the step.  ``start(run)`` runs once before the first step (default: nothing);
    the slot decides what ``__call__`` takes and returns."""

    def start(self, run: Run) -> None:
        pass


# --------------------------------------------------------------------------------------------
# slot 1: where to pull (the aim)


@dataclass(frozen=True)
class EachTarget(Trick):
    """Pull towards each of the target descriptors (the score's own 5 terms)."""

    def __call__(self, targets_desc: torch.Tensor, generator=None) -> torch.Tensor:
        return targets_desc


@dataclass(frozen=True)
class MeanTarget(Trick):
    """Pull towards the mean of the target descriptors only."""

    def __call__(self, targets_desc: torch.Tensor, generator=None) -> torch.Tensor:
        return targets_desc.mean(0, keepdim=True)


@dataclass(frozen=True)
class TargetCombinations(Trick):
    """The write-up's target combinations: the targets, the means of a random pair and a random
    triple of them, and the mean of all, drawn anew every step (from ``generator``), so that no
    single target's quirks dominate."""

    def __call__(self, targets_desc: torch.Tensor, generator=None) -> torch.Tensor:
        n = len(targets_desc)
        points = [targets_desc]
        for size in (2, 3):
            pick = torch.randperm(n, generator=generator)[:size].to(targets_desc.device)
            points.append(targets_desc[pick].mean(0, keepdim=True))
        points.append(targets_desc.mean(0, keepdim=True))
        return torch.cat(points)


AIMS = {"each": EachTarget(), "mean": MeanTarget(), "combos": TargetCombinations()}


# --------------------------------------------------------------------------------------------
# slot 2: the objective


@dataclass(frozen=True)
class Mirror(Trick):
    """Mirror images: average the students' loss of the face and of its mirror image, so that
    the step moves both the same way (a change that survives a flip transfers better)."""

    def __call__(self, members, x: torch.Tensor, points: torch.Tensor) -> torch.Tensor:
        return (student_loss(members, x, points) + student_loss(members, x.flip(-1), points)) / 2


# --------------------------------------------------------------------------------------------
# slot 3: gradient filters


@dataclass(frozen=True)
class Smooth(Trick):
    """Blur the gradient with a Gaussian of ``sigma`` pixels: low-frequency changes cost little
    SSIM and transfer better to the black box (beyond the write-up; worth the most here)."""

    sigma: float

    def __post_init__(self):
        if not self.sigma > 0:
            raise ValueError(f"smooth must be > 0 pixels (or leave it out), got {self.sigma}")

    def __call__(self, grad: torch.Tensor, run: Run) -> torch.Tensor:
        return gaussian_blur(grad, self.sigma)


@dataclass(frozen=True)
class Momentum(Trick):
    """MI-FGSM's accumulator: ``v <- decay * v + g / mean|g|`` per image, and step along ``v``
    (the write-up reports it did not help)."""

    decay: float

    def __post_init__(self):
        if not 0 <= self.decay < 1:
            raise ValueError(f"momentum must lie in [0, 1), got {self.decay}")

    def start(self, run: Run) -> None:
        run.memory[self] = torch.zeros_like(run.x)

    def __call__(self, grad: torch.Tensor, run: Run) -> torch.Tensor:
        scale = grad.abs().flatten(1).mean(1).clamp_min(1e-12).view(-1, 1, 1, 1)
        run.memory[self] = self.decay * run.memory[self] + grad / scale
        return run.memory[self]


# --------------------------------------------------------------------------------------------
# slot 4: the direction and its mask


@dataclass(frozen=True)
class Mask(Trick):
    """The write-up's FGSM heuristic: only pixels whose ``|g|`` exceeds its mean plus ``std``
    standard deviations move (per image); the others keep their value."""

    std: float

    def __post_init__(self):
        if not self.std >= 0:
            raise ValueError(f"mask_std must be None or >= 0 (standard deviations), got "
                             f"{self.std}")

    def __call__(self, direction: torch.Tensor, grad: torch.Tensor) -> torch.Tensor:
        size = grad.abs().flatten(1)
        cut = (size.mean(1) + self.std * size.std(1)).view(-1, 1, 1, 1)
        return direction * (grad.abs() > cut)


def fgvm_direction(grad: torch.Tensor) -> torch.Tensor:
    """FGVM's step direction, ``clamp(g / std(g), -2, 2)`` (:func:`utils.attacks.value_step`)."""
    return value_step(grad, 2.0)


DIRECTIONS = {"fgsm": sign_step, "fgvm": fgvm_direction}


# --------------------------------------------------------------------------------------------
# slot 5: the SSIM rule


@dataclass(frozen=True)
class StopAtBreak(Trick):
    """The baseline's rule: an image stops for good at the first step that would break
    SSIM >= 0.95 (it keeps its last valid version)."""

    def __call__(self, candidate: torch.Tensor, run: Run) -> torch.Tensor:
        broke = (~is_valid(candidate, run.originals)).view(-1, 1, 1, 1)
        run.active = run.active & ~broke
        return candidate


@dataclass(frozen=True)
class SSIMBoundary(Trick):
    """Walk the SSIM boundary: a step that breaks the rule is pulled back onto it
    (:func:`~utils.faces.rule.project_ssim`) and the attack goes on from there."""

    def __call__(self, candidate: torch.Tensor, run: Run) -> torch.Tensor:
        return project_ssim(candidate, run.originals)


# --------------------------------------------------------------------------------------------
# slot 6: acceptance


@dataclass(frozen=True)
class AcceptAll(Trick):
    """Every image still allowed to move takes its step."""

    def __call__(self, candidate: torch.Tensor, run: Run) -> torch.Tensor:
        return run.active


@dataclass(frozen=True)
class KeepIfBetter(Trick):
    """Keep a step only where it lowers that image's black-box loss (5 queries per step, 5 more
    at the start); where it does not, the image stays and its step size is halved.

    ``restart`` > 0: an image whose step has been halved ``restart`` times since it was last
    reset starts again from the first step size.  Without it the halving stalls: after a few
    refusals the steps vanish in the uint8 rounding and further steps change nothing."""

    restart: int = 0

    def __post_init__(self):
        if not isinstance(self.restart, int) or self.restart < 0:
            raise ValueError(f"restart must be an int >= 0 (0: never), got {self.restart!r}")

    def start(self, run: Run) -> None:
        run.memory[self] = blackbox_loss(run.blackbox, run.x, run.targets_desc)
        run.memory[(self, "first step")] = run.step.clone()

    def __call__(self, candidate: torch.Tensor, run: Run) -> torch.Tensor:
        best = run.memory[self]
        new = blackbox_loss(run.blackbox, candidate, run.targets_desc)
        better = (new < best).view(-1, 1, 1, 1) & run.active
        run.rejected = run.rejected + (run.active & ~better).sum()
        run.memory[self] = torch.where(better.view(-1), new, best)
        run.step = torch.where(better | ~run.active, run.step, run.step / 2)
        if self.restart:
            first = run.memory[(self, "first step")]
            run.step = torch.where(run.step < first / 2 ** self.restart * 1.001, first, run.step)
        return better


# --------------------------------------------------------------------------------------------
# a plan: one choice per slot


@dataclass(frozen=True)
class AttackPlan:
    """One gradient attack of the ladder: ``steps`` steps of size ``alpha`` along ``direction``
    with one trick per slot (see the module's table).  Immutable; reusable on any pair set."""

    direction: Callable[[torch.Tensor], torch.Tensor] = fgvm_direction
    alpha: float = 2 / 255
    steps: int = 40
    aim: Trick = EachTarget()
    objective: Callable = student_loss
    filters: tuple = ()                  # gradient filters, applied in this order
    mask: Mask | None = None
    rule: Trick = StopAtBreak()
    accept: Trick = AcceptAll()

    def __post_init__(self):
        if not self.alpha > 0 or not isinstance(self.steps, int) or self.steps < 0:
            raise ValueError(f"alpha must be > 0 and steps an int >= 0, got alpha={self.alpha}, "
                             f"steps={self.steps}")

    def tricks(self) -> list[Trick]:
        """Every slot's trick that has a ``start`` (in the order they start)."""
        parts = [self.aim, self.objective, *self.filters, self.mask, self.rule, self.accept]
        return [part for part in parts if isinstance(part, Trick)]


def plan(method: str = "fgvm", alpha: float = 2 / 255, steps: int = 40, *,
           keep_if_better: bool = False, target_mode: str = "each", boundary: bool = False,
           smooth: float = 0.0, momentum: float = 0.0, mask_std: float | None = None,
           flips: bool = False, restart: int = 0) -> AttackPlan:
    """The :class:`AttackPlan` that the ladder's keywords name (``faces.BASELINE``, ``faces.FGVM``
    and ``faces.BEST`` are such keywords):

    - ``method``: ``"fgsm"`` steps ``alpha * sign(g)`` (the competition baseline);
      ``"fgvm"`` steps ``alpha * clamp(g / std(g), -2, 2)`` (fast gradient *value*);
    - ``target_mode``: ``"each"`` / ``"mean"`` / ``"combos"`` (:class:`TargetCombinations`);
    - ``flips``: :class:`Mirror`; ``smooth`` > 0: :class:`Smooth`; ``momentum`` > 0:
      :class:`Momentum` (after the blur); ``mask_std``: :class:`Mask`;
    - ``boundary``: :class:`SSIMBoundary` instead of :class:`StopAtBreak`;
    - ``keep_if_better``: :class:`KeepIfBetter` instead of :class:`AcceptAll`; ``restart``:
      its step sizes start again after that many halvings (0: never).
    """
    if method not in DIRECTIONS:
        raise ValueError(f"method must be 'fgsm' or 'fgvm', got {method!r}")
    if target_mode not in AIMS:
        raise ValueError(f"target mode must be 'each', 'mean' or 'combos', got {target_mode!r}")
    if restart and not keep_if_better:
        raise ValueError("restart restarts keep-if-better's step sizes: give keep_if_better=True")
    if not 0 <= momentum < 1:
        raise ValueError(f"momentum must lie in [0, 1), got {momentum}")
    filters = (() if not smooth > 0 else (Smooth(smooth),)) + \
        (() if momentum == 0 else (Momentum(momentum),))
    return AttackPlan(direction=DIRECTIONS[method], alpha=alpha, steps=steps, aim=AIMS[target_mode],
                  objective=Mirror() if flips else student_loss, filters=filters,
                  mask=None if mask_std is None else Mask(mask_std),
                  rule=SSIMBoundary() if boundary else StopAtBreak(),
                  accept=KeepIfBetter(restart) if keep_if_better else AcceptAll())
