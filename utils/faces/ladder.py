"""The attack ladder of lecture 03: the write-up's ideas composed into attacks, and measured.

How the pieces fit, from small to large:

- a **trick** does one job in the step of a gradient attack (where to pull, smoothing,
  momentum, mask, mirror images, the SSIM rule, keep-if-better): :mod:`utils.faces.tricks`;
- a **plan** (:class:`~utils.faces.tricks.AttackPlan`) picks one trick per slot;
  :func:`~utils.faces.tricks.plan` builds one from the ladder's keywords, and
  :data:`BASELINE`, :data:`FGVM`, :data:`BEST` are such keywords;
- a **stage** turns images into better images through the black box's API:
  :class:`GradientStage` runs a plan on an ensemble of students (:func:`attack_stats`, the
  one loop), :class:`PolishStage` the differential-evolution pixel polish
  (:func:`de_polish_stats`, black box only);
- a **pipeline** (:class:`Pipeline`) runs stages one after the other and adds up what they
  spent; each rung of the ladder (:func:`ladder_rungs`) and each variant of the leave-one-out
  ablation (:func:`ablation_rungs`) is one, :func:`run_ladder` measures them, and
  :func:`best_attack` is the lecture's best pipeline on any pair set.

:func:`cw_attack` (Carlini-Wagner on a student, white box) is the write-up's foil.  The loops
are face-specific (their loss is a distance between descriptors, their constraint SSIM) but
share their pieces with :mod:`utils.attacks`: the step directions, the input-optimisation loop,
differential evolution and the blur.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

import numpy as np
import torch
from torch import nn

from utils.attacks import differential_evolution, ensemble_members, frozen, optimise_input
import utils.faces.tricks as tricks
from utils.faces.blackbox import BlackBox, check_images, query_tensor
from utils.faces.game import SIZE, PairSet
from utils.faces.recipes import load_students
from utils.faces.rule import guard, is_valid, to_uint8
from utils.faces.scoring import score_images
from utils.faces.tricks import AttackPlan, Run, blackbox_loss, student_loss
from utils.stats import t_interval


def _ensemble(models) -> list[tuple[nn.Module, float]]:
    """``[(student, weight), ...]`` with weights summing to one, from one student, a list of
    students or ``[(student, weight), ...]`` (the way :mod:`utils.attacks` takes ensembles)."""
    return ensemble_members([models] if isinstance(models, nn.Module) else list(models))


@dataclass
class AttackResult:
    """What an attack returns: the changed sources (quantised to uint8 levels, float in
    [0, 1]), and how it went."""

    images: torch.Tensor
    queries: int
    steps: int
    history: list
    rejected: int = 0   # image-steps that keep-if-better refused (the black box said "worse")


# --------------------------------------------------------------------------------------------
# the gradient attack: one loop, the tricks in their slots


def attack_stats(blackbox: BlackBox, sources: torch.Tensor, targets: torch.Tensor, models,
                 plan: AttackPlan | None = None, *, extra_targets: torch.Tensor | None = None,
                 generator: torch.Generator | None = None, progress: bool = False,
                 **options) -> AttackResult:
    """:func:`attack`, returning the :class:`AttackResult` (images, queries, steps, rejected)."""
    from tqdm.auto import tqdm

    if plan is None:
        plan = tricks.plan(**options)
    elif options:
        raise ValueError(f"give a plan or its keywords, not both (got {sorted(options)})")
    sources, targets = check_images(sources, "sources"), check_images(targets, "targets")
    members = _ensemble(models)
    start = blackbox.queries
    targets_desc = query_tensor(blackbox, targets)
    aim = targets_desc                    # what the students pull towards (the score: targets only)
    if extra_targets is not None:
        extra = query_tensor(blackbox, check_images(extra_targets, "extra_targets"))
        aim = torch.cat([targets_desc, extra])
    x0 = to_uint8(sources).float() / 255
    n = len(x0)
    run = Run(blackbox, x0, targets_desc, x=x0.clone(),
              step=torch.full((n, 1, 1, 1), float(plan.alpha), device=x0.device),
              active=torch.ones(n, 1, 1, 1, dtype=torch.bool, device=x0.device))
    for trick in plan.tricks():
        trick.start(run)
    history = []
    with frozen(members):
        for _ in tqdm(range(plan.steps), desc="gradient attack", leave=False,
                      disable=not progress):
            points = plan.aim(aim, generator)
            x_var = run.x.clone().requires_grad_(True)
            loss = plan.objective(members, x_var, points)
            (grad,) = torch.autograd.grad(loss.sum(), x_var)
            for gradient_filter in plan.filters:
                grad = gradient_filter(grad, run)
            direction = plan.direction(grad)
            if plan.mask is not None:
                direction = plan.mask(direction, grad)
            candidate = plan.rule((run.x - run.step * direction).clamp(0, 1), run)
            move = plan.accept(candidate, run)
            run.x = torch.where(move, candidate, run.x)
            history.append(loss.detach().mean())
    images = guard(to_uint8(run.x).float() / 255, x0)
    return AttackResult(images, blackbox.queries - start, plan.steps,
                        torch.stack(history).tolist() if history else [], int(run.rejected))


def attack(blackbox: BlackBox, sources: torch.Tensor, targets: torch.Tensor, models,
           plan: AttackPlan | None = None, *, extra_targets: torch.Tensor | None = None,
           generator: torch.Generator | None = None, progress: bool = False,
           **options) -> torch.Tensor:
    """A gradient rung of the ladder on one pair set, through the black box's API.

    Every step moves each source down the students' (weighted) gradient of the mean distance
    to the target descriptors (queried once from the black box), with the tricks of ``plan``
    (a :class:`~utils.faces.tricks.AttackPlan`) or of the keywords ``options`` (those of
    :func:`~utils.faces.tricks.plan`: ``method``, ``alpha``, ``steps``, ``keep_if_better``,
    ``target_mode``, ``boundary``, ``smooth``, ``momentum``, ``mask_std``, ``flips``), e.g.
    ``attack(blackbox, sources, targets, students, **faces.BEST)``.

    - ``models``: one student, a list of students (equal weights) or ``[(student, weight), ...]``
      -- an ensemble, as in :mod:`utils.attacks`;
    - ``extra_targets``: more photos of the target person to pull towards (the score ignores
      them; 1 query each, e.g. :meth:`PairSet.other_target_photos`);
    - ``generator``: what target combinations draw from.

    There is no radius: the SSIM rule is the constraint.  Returns the changed sources (float in
    [0, 1] on uint8 levels); :func:`attack_stats` also reports what the attack spent.
    """
    return attack_stats(blackbox, sources, targets, models, plan, extra_targets=extra_targets,
                        generator=generator, progress=progress, **options).images


# --------------------------------------------------------------------------------------------
# the differential-evolution polish (black box only)


def de_polish_stats(blackbox: BlackBox, originals: torch.Tensor, adversarial: torch.Tensor,
                    targets: torch.Tensor, models=(), *, pixels: int = 32, population: int = 16,
                    steps: int = 12, amplitude: float = 6 / 255, mutation: float = 0.6,
                    crossover: float = 0.7,
                    generator: torch.Generator | None = None) -> AttackResult:
    """:func:`de_polish`, returning the :class:`AttackResult`."""
    originals = check_images(originals, "originals")
    x = to_uint8(check_images(adversarial, "adversarial")).float() / 255
    x0 = to_uint8(originals).float() / 255
    device, n = x.device, len(x)
    start = blackbox.queries
    targets_desc = query_tensor(blackbox, check_images(targets, "targets"))
    members = _ensemble(models) if (isinstance(models, nn.Module) or len(models)) else []
    if members:
        with frozen(members):
            x_var = x.clone().requires_grad_(True)
            loss = student_loss(members, x_var, targets_desc)
            (grad,) = torch.autograd.grad(loss.sum(), x_var)
        where = grad.abs().flatten(1).topk(pixels, dim=1).indices                 # (n, k)
    else:
        where = torch.stack([torch.randperm(SIZE * SIZE, generator=generator)[:pixels]
                             for _ in range(n)]).to(device)

    def changed(genes):                                                          # (n, P, k)
        p = genes.shape[1]
        flat = x.flatten(1).repeat_interleave(p, 0)                              # (n P, 4096)
        flat = flat.scatter_add(1, where.repeat_interleave(p, 0), genes.reshape(n * p, -1))
        return to_uint8(flat.view(-1, 1, SIZE, SIZE)).float() / 255

    def fitness(genes):
        candidates = changed(genes)
        ok = is_valid(candidates, x0.repeat_interleave(genes.shape[1], 0))
        value = blackbox_loss(blackbox, candidates, targets_desc)
        return torch.where(ok, value, torch.full_like(value, math.inf)).view(n, -1)

    first = amplitude * (2 * torch.rand(n, population, pixels, generator=generator).to(device) - 1)
    first[:, 0] = 0                      # the current image is a member: the polish never hurts
    genes, score = differential_evolution(fitness, first, steps=steps, low=-amplitude,
                                          high=amplitude, mutation=mutation, crossover=crossover,
                                          generator=generator)
    chosen = genes[torch.arange(n, device=device), score.argmin(1)]
    images = guard(changed(chosen[:, None]), x0)
    return AttackResult(images, blackbox.queries - start, steps, score.min(1).values.tolist())


def de_polish(blackbox: BlackBox, originals: torch.Tensor, adversarial: torch.Tensor,
              targets: torch.Tensor, models=(), *, pixels: int = 32, population: int = 16,
              steps: int = 12, amplitude: float = 6 / 255, mutation: float = 0.6,
              crossover: float = 0.7,
              generator: torch.Generator | None = None) -> torch.Tensor:
    """Differential-evolution pixel polish, black-box only: for each image,
    :func:`utils.attacks.differential_evolution` (rand/1/bin) searches additive changes in
    [-amplitude, amplitude] to ``pixels`` chosen pixels (where the students' gradient is
    largest, or random pixels without students).  Fitness is the image's black-box loss; a
    candidate breaking SSIM >= 0.95 is infeasible.  The current image is in the first
    population, so the polish never makes an image worse.  Costs
    ``5 + n * population * (steps + 1)`` queries.  Returns the polished images.
    """
    return de_polish_stats(blackbox, originals, adversarial, targets, models, pixels=pixels,
                           population=population, steps=steps, amplitude=amplitude,
                           mutation=mutation, crossover=crossover,
                           generator=generator).images


# --------------------------------------------------------------------------------------------
# the write-up's foil: a white-box attack on one student


def cw_attack(model, sources: torch.Tensor, targets_desc: torch.Tensor, *, c: float = 20.0,
              steps: int = 200, lr: float = 0.02) -> torch.Tensor:
    """Carlini-Wagner-style L2 attack on a student (or ensemble), white box, end to end: with
    ``x = (tanh(w) + 1) / 2``, Adam minimises ``||x - x0||^2 + c * mean_j ||s(x) - t_j||`` for
    each image (the kit's input-optimisation loop, :func:`utils.attacks.optimise_input`).  No
    SSIM rule inside (project the result with :func:`project_ssim`).  Returns the changed
    images, quantised to uint8 levels."""
    x0 = check_images(sources, "sources")
    members = _ensemble(model)

    def loss_fn(x, step):
        return ((x - x0) ** 2).flatten(1).sum(1) + c * student_loss(members, x, targets_desc)

    with frozen(members):
        x = optimise_input(loss_fn, x0, steps=steps, lr=lr, space="tanh")
    return to_uint8(x).float() / 255


# --------------------------------------------------------------------------------------------
# stages and pipelines: what a rung is


@dataclass(frozen=True)
class GradientStage:
    """A stage that runs :func:`attack_stats` with ``plan`` on ``students`` (from the
    sources: a gradient stage comes first in a pipeline)."""

    students: tuple
    plan: AttackPlan

    def __call__(self, blackbox, sources, targets, generator, current=None) -> AttackResult:
        return attack_stats(blackbox, sources, targets, list(self.students), self.plan,
                            generator=generator)


@dataclass(frozen=True)
class PolishStage:
    """A stage that polishes the images so far with :func:`de_polish_stats`: ``pixels`` pixels
    (where the students' gradient is largest), ``population`` members, ``steps`` generations,
    changes of at most ``amplitude``."""

    students: tuple
    pixels: int = 32
    population: int = 16
    steps: int = 12
    amplitude: float = 6 / 255

    def __call__(self, blackbox, sources, targets, generator, current=None) -> AttackResult:
        images = current.images if current is not None else sources
        return de_polish_stats(blackbox, sources, images, targets, list(self.students),
                               pixels=self.pixels, population=self.population, steps=self.steps,
                               amplitude=self.amplitude, generator=generator)


@dataclass(frozen=True)
class Pipeline:
    """Stages run one after the other on one pair set; called like a rung of :func:`run_ladder`:
    ``pipeline(blackbox, sources, targets, generator, previous=None) -> AttackResult``.

    The result holds the last stage's images, the queries and steps of all stages together,
    and the first stage's loss history and refused steps.  No stages: the sources as saved
    ("no attack").  ``resume=True``: the ladder's rungs are cumulative, so the rung before's
    result (``previous``), when given, stands in for the first stage instead of running it
    again.
    """

    stages: tuple = ()
    resume: bool = False

    def __call__(self, blackbox, sources, targets, generator=None, previous=None) -> AttackResult:
        stages = self.stages
        result = None
        if self.resume and previous is not None:
            result, stages = previous, stages[1:]
        for stage in stages:
            after = stage(blackbox, sources, targets, generator, result)
            result = after if result is None else AttackResult(
                after.images, result.queries + after.queries, result.steps + after.steps,
                result.history, result.rejected)
        if result is None:
            return AttackResult(to_uint8(sources).float() / 255, 0, 0, [])
        return result


def _as_given(students) -> tuple:
    """One student, a list, or ``[(student, weight), ...]`` as a tuple (weights untouched)."""
    return (students,) if isinstance(students, nn.Module) else tuple(students)


def gradient_pipeline(students, **options) -> Pipeline:
    """A one-stage pipeline: the gradient attack of the ladder's keywords ``options``."""
    return Pipeline((GradientStage(_as_given(students), tricks.plan(**options)),))


def polished_pipeline(students, *, resume: bool = False, **options) -> Pipeline:
    """The gradient attack of ``options``, then the DE polish (:data:`DE_POLISH`), both on
    ``students``."""
    students = _as_given(students)
    return Pipeline((GradientStage(students, tricks.plan(**options)),
                     PolishStage(students, **DE_POLISH)), resume=resume)


BASELINE = dict(method="fgsm", steps=20, alpha=1 / 255)
"""The competition's baseline: iterative FGSM, 20 sign steps of one grey level."""

FGVM = dict(method="fgvm", steps=12, alpha=3 / 255)
"""Fast gradient value steps: 12 steps of ``3/255 * clamp(g / std(g), -2, 2)``."""

BEST_BEFORE_TUNING = dict(FGVM, keep_if_better=True, target_mode="combos", boundary=True,
                         smooth=3.0)
"""The lecture's best gradient attack before issue 23's tuning: FGVM, keep-if-better, target
combinations, the SSIM boundary and gradients smoothed over 3 pixels, 12 steps."""

BEST = dict(BEST_BEFORE_TUNING, smooth=5.0, steps=30, restart=3)
"""The lecture's best gradient attack: :data:`BEST_BEFORE_TUNING` with gradients smoothed over
5 pixels, 30 steps, and keep-if-better's step sizes restarted from alpha after 3 halvings (the
settings chosen on pair sets of seed 11 by ``benchmarks/faces_tuning.py``)."""

DE_POLISH = dict(pixels=32, population=10, steps=5, amplitude=6 / 255)
"""The pixel polish after it: 32 pixels, 10 members, 5 generations, at most 6 grey levels."""


def ladder_rungs(students) -> list[tuple[str, Pipeline]]:
    """The rungs of the ablation, each adding one idea to the one before:
    ``[(name, run(blackbox, sources, targets, generator, previous) -> AttackResult), ...]``
    where ``previous`` is the rung before's result on the same pair set (the DE polish starts
    from it).  ``students``: a list of students or ``[(student, weight), ...]``; the baseline
    and the FGVM rung use the first student alone."""
    ensemble = _ensemble(students)
    one = [ensemble[0][0]]
    keep = dict(FGVM, keep_if_better=True)
    boundary = dict(BEST_BEFORE_TUNING, smooth=0.0)
    rung, polished = gradient_pipeline, polished_pipeline
    return [
        ("no attack", Pipeline()),
        ("iterative FGSM, 1 student (baseline)", rung(one, **BASELINE)),
        ("FGVM, 1 student", rung(one, **FGVM)),
        ("+ ensemble of students", rung(ensemble, **FGVM)),
        ("+ keep step only if black-box loss drops", rung(ensemble, **keep)),
        ("+ target combinations", rung(ensemble, **keep, target_mode="combos")),
        ("+ stop at the SSIM boundary", rung(ensemble, **boundary)),
        ("+ smooth gradients (beyond the write-up)", rung(ensemble, **BEST_BEFORE_TUNING)),
        ("+ blur 5 px, 30 steps, restarted steps", rung(ensemble, **BEST)),
        ("+ differential-evolution pixel polish", polished(ensemble, resume=True, **BEST)),
    ]


def ablation_rungs(students) -> list[tuple[str, Pipeline]]:
    """Leave-one-out ablation of the best pipeline: ``[("full pipeline", run), ("- idea", run),
    ...]``, each variant the full pipeline (:func:`best_attack`'s) with exactly one idea taken
    out.  Unlike the cumulative ladder, the answer does not depend on the order the ideas were
    added in: what a variant loses against the full pipeline, pair set by pair set, is what that
    idea contributes given all the others (:func:`paired_differences`)."""
    ensemble = _ensemble(students)
    one = [ensemble[0][0]]
    polished = polished_pipeline
    return [
        ("full pipeline", polished(ensemble, **BEST)),
        ("- ensemble (first student only)", polished(one, **BEST)),
        ("- FGVM (sign steps instead)",
         polished(ensemble, **dict(BEST, method="fgsm", alpha=BASELINE["alpha"]))),
        ("- keep-if-better (and its restarts)",
         polished(ensemble, **dict(BEST, keep_if_better=False, restart=0))),
        ("- target combinations", polished(ensemble, **dict(BEST, target_mode="each"))),
        ("- SSIM boundary (stop at the first break)",
         polished(ensemble, **dict(BEST, boundary=False))),
        ("- gradient smoothing", polished(ensemble, **dict(BEST, smooth=0.0))),
        ("- wider blur (3 pixels instead of 5)", polished(ensemble, **dict(BEST, smooth=3.0))),
        ("- restarts (steps only ever halved)", polished(ensemble, **dict(BEST, restart=0))),
        ("- more steps (12 instead of 30)",
         polished(ensemble, **dict(BEST, steps=BEST_BEFORE_TUNING["steps"]))),
        ("- DE pixel polish", gradient_pipeline(ensemble, **BEST)),
    ]


def paired_differences(rows: Sequence[dict], reference: int = 0, *,
                       confidence: float = 0.95) -> list[dict]:
    """Per row of :func:`run_ladder`: the mean over pair sets of (row's score - reference row's
    score) on the same pair sets, with a Student-t confidence interval.  A positive interval
    means the row is reliably *worse* (higher score) than the reference."""
    base = np.asarray(rows[reference]["per_set"])
    out = []
    for row in rows:
        diff = np.asarray(row["per_set"]) - base
        mean, low, high = t_interval(diff.tolist(), confidence)
        out.append({"rung": row["rung"], "score": row["score"], "difference": mean,
                    "low": low, "high": high, "sets": len(diff),
                    "reliably worse": bool(low > 0), "reliably better": bool(high < 0)})
    return out


def run_ladder(blackbox: BlackBox, pairs: Sequence[PairSet], rungs, *, seed: int = 0,
               device: torch.device | str | None = None, progress: bool = True) -> list[dict]:
    """Run every rung on every pair set; one row per rung: score, mean/min SSIM, queries/set.

    Scoring queries are not counted (only what each attack spent); the score is computed by
    :func:`score_images` on the saved (uint8) images."""
    from tqdm.auto import tqdm

    rows = []
    bar = tqdm(total=len(rungs) * len(pairs), desc="attack ladder", disable=not progress)
    previous = [None] * len(pairs)
    for name, run in rungs:
        generator = torch.Generator().manual_seed(seed)
        images, queries, rejected = [], [], 0
        for k, pair in enumerate(pairs):
            sources, targets = pair.images(device)
            result = run(blackbox, sources, targets, generator, previous[k])
            previous[k] = result
            images.append(result.images.cpu())
            queries.append(result.queries)
            rejected += result.rejected
            bar.update(1)
        scored = score_images(blackbox, torch.stack(images), pairs)
        rows.append({"rung": name, "score": scored["score"],
                     "mean SSIM": float(scored["ssim"].mean()),
                     "min SSIM": float(scored["ssim"].min()), "valid": scored["valid"],
                     "queries per set": float(np.mean(queries)), "images": torch.stack(images),
                     "rejected steps": rejected,
                     "per_set": scored["per_set"]})
    bar.close()
    return rows


def best_attack(blackbox: BlackBox, sources: torch.Tensor, targets: torch.Tensor,
                students=None, *, polish: bool = True,
                generator: torch.Generator | None = None) -> torch.Tensor:
    """The lecture's best pipeline on any pair set: ensemble FGVM with keep-if-better (step sizes
    restarted), target combinations, the SSIM boundary and gradients smoothed over 5 pixels, 30
    steps (:data:`BEST`), then (``polish``)
    the DE pixel polish (:data:`DE_POLISH`).  ``students`` defaults to the zoo's three, equally
    weighted.  Returns the changed sources (float in [0, 1] on uint8 levels, every one with
    SSIM >= 0.95)."""
    students = load_students(device=sources.device) if students is None else students
    generator = generator if generator is not None else torch.Generator().manual_seed(0)
    make = polished_pipeline if polish else gradient_pipeline
    pipeline = make(students, **BEST)
    return pipeline(blackbox, sources, targets, generator).images
