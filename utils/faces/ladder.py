"""The attack ladder of lecture 03: every idea of the write-up as one rung, measured together.

- :func:`attack` -- the gradient rungs: iterative FGSM / FGVM on an ensemble of students
  (``[(student, weight), ...]`` as in :mod:`utils.attacks`), keep-if-better, target
  combinations, the SSIM boundary, smoothed gradients; :func:`attack_stats` also returns what
  it spent;
- :func:`de_polish` -- differential-evolution pixel polish through the black box only;
- :func:`cw_attack` -- Carlini-Wagner on one student;
- :func:`ladder_rungs` / :func:`run_ladder` -- the ablation; :func:`best_attack` -- the whole
  pipeline.

These loops are face-specific (their loss is a distance between descriptors, their constraint
SSIM) but share their pieces with :mod:`utils.attacks`: the step directions
(:func:`~utils.attacks.sign_step`, :func:`~utils.attacks.value_step`), the input-optimisation
loop, differential evolution and the blur.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np
import torch
from torch import nn

from utils.attacks import (differential_evolution, ensemble_members, frozen, optimise_input,
                           sign_step, value_step)
from utils.faces.blackbox import BlackBox, check_images, query_tensor
from utils.faces.game import SIZE, PairSet
from utils.faces.recipes import load_students
from utils.faces.rule import guard, is_valid, project_ssim, to_uint8
from utils.faces.scoring import score_images
from utils.stats import t_interval
from utils.transforms import gaussian_blur

def _target_points(targets_desc: torch.Tensor, mode: str, generator: torch.Generator | None):
    """The points in descriptor space the students pull each source towards, ``(P, DIM)``.

    ``each``: the 5 target descriptors (the score's own terms); ``mean``: their mean;
    ``combos``: the means of a random pair and a random triple of targets plus all 5 (drawn
    anew every step, so that no single target's quirks dominate).
    """
    if mode == "each":
        return targets_desc
    if mode == "mean":
        return targets_desc.mean(0, keepdim=True)
    if mode == "combos":
        n = len(targets_desc)
        points = [targets_desc]
        for size in (2, 3):
            pick = torch.randperm(n, generator=generator)[:size].to(targets_desc.device)
            points.append(targets_desc[pick].mean(0, keepdim=True))
        points.append(targets_desc.mean(0, keepdim=True))
        return torch.cat(points)
    raise ValueError(f"target mode must be 'each', 'mean' or 'combos', got {mode!r}")


def student_loss(members: Sequence[tuple[nn.Module, float]], x: torch.Tensor,
                 points: torch.Tensor) -> torch.Tensor:
    """Per image: the weighted sum over ``[(student, weight), ...]`` of the mean L2 distance of
    its descriptor to ``points``."""
    total = 0
    for student, weight in members:
        total = total + weight * torch.cdist(student(x), points).mean(1)
    return total


def _ensemble(models) -> list[tuple[nn.Module, float]]:
    """``[(student, weight), ...]`` with weights summing to one, from an ensemble given the way
    :mod:`utils.attacks` takes it."""
    if isinstance(models, nn.Module):
        models = [models]
    return ensemble_members(list(models))


def blackbox_loss(blackbox: BlackBox, x: torch.Tensor, targets_desc: torch.Tensor) -> torch.Tensor:
    """Per image: mean L2 distance of its black-box descriptor to the targets' (queries len(x),
    on the images as they would be saved)."""
    return torch.cdist(query_tensor(blackbox, to_uint8(x).float() / 255), targets_desc).mean(1)


@dataclass
class AttackResult:
    """What an attack returns: the changed sources (quantised to uint8 levels, float in
    [0, 1]), and how it went."""

    images: torch.Tensor
    queries: int
    steps: int
    history: list
    rejected: int = 0   # image-steps that keep-if-better refused (the black box said "worse")


def attack_stats(blackbox: BlackBox, sources: torch.Tensor, targets: torch.Tensor, models, *,
                 method: str = "fgvm", alpha: float = 2 / 255, steps: int = 40,
                 keep_if_better: bool = False, target_mode: str = "each", boundary: bool = False,
                 smooth: float = 0.0, momentum: float = 0.0, mask_std: float | None = None,
                 flips: bool = False, extra_targets: torch.Tensor | None = None,
                 generator: torch.Generator | None = None,
                 progress: bool = False) -> AttackResult:
    """:func:`attack`, returning the :class:`AttackResult` (images, queries, steps, rejected)."""
    from tqdm.auto import tqdm

    if method not in ("fgsm", "fgvm"):
        raise ValueError(f"method must be 'fgsm' or 'fgvm', got {method!r}")
    if not alpha > 0 or not isinstance(steps, int) or steps < 0:
        raise ValueError(f"alpha must be > 0 and steps an int >= 0, got alpha={alpha}, "
                         f"steps={steps}")
    if not 0 <= momentum < 1:
        raise ValueError(f"momentum must lie in [0, 1), got {momentum}")
    if mask_std is not None and not mask_std >= 0:
        raise ValueError(f"mask_std must be None or >= 0 (standard deviations), got {mask_std}")
    sources, targets = check_images(sources, "sources"), check_images(targets, "targets")
    device = sources.device
    members = _ensemble(models)
    velocity = torch.zeros_like(sources)
    start = blackbox.queries
    targets_desc = query_tensor(blackbox, targets)
    aim = targets_desc                    # what the students pull towards (the score: targets only)
    if extra_targets is not None:
        aim = torch.cat([targets_desc, query_tensor(blackbox, check_images(extra_targets,
                                                                           "extra_targets"))])
    x0 = to_uint8(sources).float() / 255
    x = x0.clone()
    n = len(x)
    step = torch.full((n, 1, 1, 1), float(alpha), device=device)
    active = torch.ones(n, 1, 1, 1, dtype=torch.bool, device=device)
    best = blackbox_loss(blackbox, x, targets_desc) if keep_if_better else None
    history = []
    rejected = torch.zeros((), dtype=torch.long, device=device)
    with frozen(members):
        for _ in tqdm(range(steps), desc=f"{method} attack", leave=False, disable=not progress):
            points = _target_points(aim, target_mode, generator)
            x_var = x.clone().requires_grad_(True)
            loss = student_loss(members, x_var, points)
            if flips:     # the mirrored face should move the same way: average both gradients
                loss = (loss + student_loss(members, x_var.flip(-1), points)) / 2
            (grad,) = torch.autograd.grad(loss.sum(), x_var)
            if smooth > 0:
                grad = gaussian_blur(grad, smooth)
            if momentum > 0:  # MI-FGSM's accumulator, each gradient scaled by its mean |g|
                scale = grad.abs().flatten(1).mean(1).clamp_min(1e-12).view(-1, 1, 1, 1)
                velocity = momentum * velocity + grad / scale
                grad = velocity
            direction = sign_step(grad) if method == "fgsm" else value_step(grad, 2.0)
            if mask_std is not None:  # the write-up's heuristic: only the strongest pixels move
                size = grad.abs().flatten(1)
                cut = (size.mean(1) + mask_std * size.std(1)).view(-1, 1, 1, 1)
                direction = direction * (grad.abs() > cut)
            candidate = (x - step * direction).clamp(0, 1)
            if boundary:
                candidate = project_ssim(candidate, x0)
            else:
                broke = (~is_valid(candidate, x0)).view(-1, 1, 1, 1)
                active = active & ~broke
            move = active
            if keep_if_better:
                new = blackbox_loss(blackbox, candidate, targets_desc)
                better = (new < best).view(-1, 1, 1, 1) & active
                rejected = rejected + (active & ~better).sum()
                best = torch.where(better.view(-1), new, best)
                step = torch.where(better | ~active, step, step / 2)
                move = better
            x = torch.where(move, candidate, x)
            history.append(loss.detach().mean())
    images = guard(to_uint8(x).float() / 255, x0)
    return AttackResult(images, blackbox.queries - start, steps, torch.stack(history).tolist()
                        if history else [], int(rejected))


def attack(blackbox: BlackBox, sources: torch.Tensor, targets: torch.Tensor, models, *,
           method: str = "fgvm", alpha: float = 2 / 255, steps: int = 40,
           keep_if_better: bool = False, target_mode: str = "each", boundary: bool = False,
           smooth: float = 0.0, momentum: float = 0.0, mask_std: float | None = None,
           flips: bool = False, extra_targets: torch.Tensor | None = None,
           generator: torch.Generator | None = None,
           progress: bool = False) -> torch.Tensor:
    """The gradient rungs of the ladder, on one pair set, through the black box's API.

    Every step moves each source down the students' (weighted) gradient of the mean distance
    to the target descriptors (queried once from the black box):

    - ``models``: one student, a list of students (equal weights) or ``[(student, weight), ...]``
      -- an ensemble, as in :mod:`utils.attacks`;
    - ``method="fgsm"``: ``x -= alpha * sign(g)`` (the competition baseline's iterative FGSM);
      ``method="fgvm"``: ``x -= alpha * clamp(g / std(g), -2, 2)`` (fast gradient *value*);
    - ``keep_if_better``: a step is kept only where it lowers that image's black-box loss (5
      queries per step), otherwise that image's step size is halved;
    - ``target_mode``: ``each`` / ``mean`` / ``combos`` (see :func:`_target_points`);
    - ``smooth`` > 0: blur the gradient with a Gaussian of that many pixels before the step
      (low-frequency changes cost little SSIM and transfer better);
    - ``boundary=False``: an image stops for good at the first step that would break SSIM >= 0.95
      (the baseline's rule); ``boundary=True``: the step is pulled back onto the SSIM boundary
      (:func:`project_ssim`) and the attack goes on from there;
    - the write-up's other tricks, for measuring them: ``momentum`` (MI-FGSM's accumulated
      gradient; the write-up reports it did not help), ``mask_std`` (step only on pixels whose
      ``|g|`` exceeds its mean plus ``mask_std`` standard deviations; the write-up's FGSM
      heuristic uses 1), ``flips`` (average the gradient of the face and its mirror image) and
      ``extra_targets`` (more photos of the target person to pull towards; the score ignores
      them; 1 query each, e.g. :meth:`PairSet.other_target_photos`).

    There is no radius: the SSIM rule is the constraint.  Returns the changed sources (float in
    [0, 1] on uint8 levels); :func:`attack_stats` also reports what the attack spent.
    """
    return attack_stats(blackbox, sources, targets, models, method=method, alpha=alpha,
                        steps=steps, keep_if_better=keep_if_better, target_mode=target_mode,
                        boundary=boundary, smooth=smooth, momentum=momentum, mask_std=mask_std,
                        flips=flips, extra_targets=extra_targets, generator=generator,
                        progress=progress).images


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


BASELINE = dict(method="fgsm", steps=20, alpha=1 / 255)


FGVM = dict(method="fgvm", steps=12, alpha=3 / 255)


BEST = dict(FGVM, keep_if_better=True, target_mode="combos", boundary=True, smooth=3.0)


DE_POLISH = dict(pixels=32, population=10, steps=5, amplitude=6 / 255)


def ladder_rungs(students) -> list[tuple[str, Callable]]:
    """The rungs of the ablation, each adding one idea to the one before:
    ``[(name, run(blackbox, sources, targets, generator, previous) -> AttackResult), ...]``
    where ``previous`` is the rung before's result on the same pair set (the DE polish starts
    from it).  ``students``: a list of students or ``[(student, weight), ...]``; the baseline
    and the FGVM rung use the first student alone."""
    ensemble = _ensemble(students)
    one = [ensemble[0][0]]
    configs = [
        ("iterative FGSM, 1 student (baseline)", one, dict(BASELINE)),
        ("FGVM, 1 student", one, dict(FGVM)),
        ("+ ensemble of students", ensemble, dict(FGVM)),
        ("+ keep step only if black-box loss drops", ensemble, dict(FGVM, keep_if_better=True)),
        ("+ target combinations", ensemble, dict(FGVM, keep_if_better=True,
                                                 target_mode=BEST["target_mode"])),
        ("+ stop at the SSIM boundary", ensemble, dict(BEST, smooth=0.0)),
        ("+ smooth gradients (beyond the write-up)", ensemble, dict(BEST)),
    ]

    def gradient_rung(models, config):
        def run(blackbox, sources, targets, generator, previous=None):
            return attack_stats(blackbox, sources, targets, models, generator=generator, **config)
        return run

    rungs = [("no attack", lambda blackbox, sources, targets, generator, previous=None:
              AttackResult(to_uint8(sources).float() / 255, 0, 0, []))]
    rungs += [(name, gradient_rung(models, config)) for name, models, config in configs]

    def polished(blackbox, sources, targets, generator, previous=None):
        first = previous if previous is not None else attack_stats(
            blackbox, sources, targets, ensemble, generator=generator, **BEST)
        second = de_polish_stats(blackbox, sources, first.images, targets, ensemble,
                                 generator=generator, **DE_POLISH)
        return AttackResult(second.images, first.queries + second.queries,
                            first.steps + second.steps, first.history, first.rejected)

    rungs.append(("+ differential-evolution pixel polish", polished))
    return rungs


def ablation_rungs(students) -> list[tuple[str, Callable]]:
    """Leave-one-out ablation of the best pipeline: ``[("full pipeline", run), ("- idea", run),
    ...]``, each variant the full pipeline (:func:`best_attack`'s) with exactly one idea taken
    out.  Unlike the cumulative ladder, the answer does not depend on the order the ideas were
    added in: what a variant loses against the full pipeline, pair set by pair set, is what that
    idea contributes given all the others (:func:`paired_differences`)."""
    ensemble = _ensemble(students)
    one = [ensemble[0][0]]
    variants = [
        ("full pipeline", ensemble, dict(BEST), True),
        ("- ensemble (first student only)", one, dict(BEST), True),
        ("- FGVM (sign steps instead)", ensemble, dict(BEST, method="fgsm",
                                                       alpha=BASELINE["alpha"]), True),
        ("- keep-if-better", ensemble, dict(BEST, keep_if_better=False), True),
        ("- target combinations", ensemble, dict(BEST, target_mode="each"), True),
        ("- SSIM boundary (stop at the first break)", ensemble, dict(BEST, boundary=False), True),
        ("- gradient smoothing", ensemble, dict(BEST, smooth=0.0), True),
        ("- DE pixel polish", ensemble, dict(BEST), False),
    ]

    def variant(models, config, polish):
        def run(blackbox, sources, targets, generator, previous=None):
            first = attack_stats(blackbox, sources, targets, models, generator=generator,
                                 **config)
            if not polish:
                return first
            second = de_polish_stats(blackbox, sources, first.images, targets, models,
                                     generator=generator, **DE_POLISH)
            return AttackResult(second.images, first.queries + second.queries,
                                first.steps + second.steps, first.history, first.rejected)
        return run

    return [(name, variant(models, config, polish)) for name, models, config, polish in variants]


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
    """The lecture's best pipeline on any pair set: ensemble FGVM with keep-if-better, target
    combinations, the SSIM boundary and smoothed gradients, then (``polish``) the DE pixel
    polish.  Returns the
    changed sources (float in [0, 1] on uint8 levels, every one with SSIM >= 0.95)."""
    students = load_students(device=sources.device) if students is None else students
    generator = generator if generator is not None else torch.Generator().manual_seed(0)
    images = attack(blackbox, sources, targets, students, generator=generator, **BEST)
    if polish:
        images = de_polish(blackbox, sources, images, targets, students, generator=generator,
                           **DE_POLISH)
    return images
