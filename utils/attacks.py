"""Adversarial attacks as plain functions that share their keywords.

Every attack takes ``(model, x, y, *, ...)`` and returns the adversarial batch:

- ``model``: an ``nn.Module`` that maps images in [0, 1] to logits (normalisation belongs inside
  the model), or an *ensemble*: a list of models, or of ``(model, weight)`` pairs, whose logits
  are averaged with the (normalised) weights;
- ``x``: a float batch ``(N, ...)`` with values in [0, 1];
- ``y``: the true labels (untargeted: make the model *leave* them), or the target labels when
  ``targeted=True`` (make the model *choose* them).  Untargeted attacks accept ``y=None`` and
  then use the model's own predictions;
- ``eps``: the radius of the threat model (L-inf unless ``norm="l2"``); ``alpha``: the step;
  ``steps``: the number of gradient steps; ``generator``: an optional ``torch.Generator`` that all
  randomness (random starts, transformations, populations) is drawn from.  Without one, PyTorch's
  default generator is used (which ``utils.setup`` seeds).

What every attack guarantees: the result is detached, on ``x``'s device and of ``x``'s dtype,
inside [0, 1] and (for the attacks with an ``eps``) inside the ``eps``-ball around ``x``; the
model's train/eval state and its parameters' ``requires_grad`` are restored afterwards
(:func:`frozen`); gradients are taken with respect to the input only (``torch.autograd.grad``
on the input, the parameters temporarily frozen), and the loops never wait for the host
(no ``.item()``), except :func:`pgd` with ``early_stop=True``, which must look at which images
are still active once per step to skip the others.  Bad input (negative or NaN ``eps``, uint8
images, values outside [0, 1], mismatched batch sizes, a targeted attack without targets, an
empty ensemble) raises :class:`ValueError` saying what is wrong and how to fix it.

The attacks:

==================  ===========================================================================
:func:`fgsm`        fast gradient sign method (Goodfellow et al. 2015), optionally from a random
                    start (the "fast adversarial training" step of Wong et al. 2020)
:func:`pgd`         projected gradient descent / iterative FGSM (Kurakin et al., Madry et al.),
                    L-inf or L2, with an optional early stop for images already fooled
:func:`mifgsm`      momentum iterative FGSM (Dong et al. 2018)
:func:`fgvm`        fast gradient value method: steps ``alpha * clamp(g / std(g), -2, 2)``
:func:`cw_l2`       Carlini & Wagner's L2 attack, in tanh space, binary search over ``c``
:func:`szegedy`     Szegedy et al.'s box-constrained ``min c ||eta||^2 + J(x + eta, l')``
                    (alias :func:`lbfgs`)
:func:`eot_pgd`     PGD on the expectation over random transformations (Athalye et al. 2018)
:func:`one_pixel`   differential evolution over a few pixels (Su et al. 2019)
==================  ===========================================================================
"""

from __future__ import annotations

import contextlib
import math
from dataclasses import dataclass
from numbers import Real
from typing import Sequence, Union

import torch
import torch.nn.functional as F
from torch import nn

__all__ = [
    "AttackStats", "RandomTransform", "frozen", "ensemble_logits",
    "fgsm", "pgd", "mifgsm", "fgvm", "cw_l2", "szegedy", "lbfgs", "eot_pgd", "one_pixel",
]

ModelLike = Union[nn.Module, Sequence[nn.Module], Sequence[tuple[nn.Module, float]]]


# --------------------------------------------------------------------------------------------
# models and ensembles


def _members(model: ModelLike) -> list[tuple[nn.Module, float]]:
    """``[(module, weight), ...]`` with weights summing to one; ValueError on anything else."""
    if isinstance(model, nn.Module):
        return [(model, 1.0)]
    if not isinstance(model, (list, tuple)):
        raise ValueError(
            f"model must be an nn.Module or a list of modules / (module, weight) pairs (an "
            f"ensemble), got {type(model).__name__}"
        )
    if len(model) == 0:
        raise ValueError("the ensemble is empty: pass at least one model, e.g. [model] or "
                         "[(model_a, 1.0), (model_b, 0.5)]")
    members = []
    for index, item in enumerate(model):
        if isinstance(item, nn.Module):
            members.append((item, 1.0))
            continue
        if (isinstance(item, (tuple, list)) and len(item) == 2 and isinstance(item[0], nn.Module)
                and isinstance(item[1], Real)):
            weight = float(item[1])
            if not math.isfinite(weight) or weight < 0:
                raise ValueError(f"ensemble member {index} has weight {item[1]!r}; weights must "
                                 "be finite and >= 0")
            members.append((item[0], weight))
            continue
        raise ValueError(f"ensemble member {index} is a {type(item).__name__}; give an nn.Module "
                         "or a (module, weight) pair")
    total = sum(weight for _, weight in members)
    if total <= 0:
        raise ValueError("the ensemble's weights sum to 0; give at least one positive weight")
    return [(module, weight / total) for module, weight in members]


def ensemble_logits(model: ModelLike, x: torch.Tensor) -> torch.Tensor:
    """The logits an attack sees: the model's, or the weighted mean of an ensemble's."""
    members = _members(model)
    return _logits(members, x)


def _logits(members: list[tuple[nn.Module, float]], x: torch.Tensor) -> torch.Tensor:
    if len(members) == 1:
        return members[0][0](x)
    total = None
    for module, weight in members:
        part = module(x) * weight
        total = part if total is None else total + part
    return total


@contextlib.contextmanager
def frozen(model: ModelLike):
    """Eval mode and ``requires_grad=False`` for every parameter, both restored on exit.

    Every module's own ``training`` flag and every parameter's ``requires_grad`` are put back
    exactly as they were, even when the body raises.
    """
    modules = [module for module, _ in _members(model)]
    modes = [(m, m.training) for module in modules for m in module.modules()]
    flags = [(p, p.requires_grad) for module in modules for p in module.parameters()]
    try:
        for module in modules:
            module.eval()
        for parameter, _ in flags:
            parameter.requires_grad_(False)
        yield
    finally:
        for m, mode in modes:
            m.training = mode
        for parameter, flag in flags:
            parameter.requires_grad_(flag)


def _work_dtype(members) -> torch.dtype:
    for module, _ in members:
        for parameter in module.parameters():
            if parameter.is_floating_point():
                return parameter.dtype
    return torch.float32


# --------------------------------------------------------------------------------------------
# the one validation helper every attack calls


@dataclass
class _Problem:
    members: list
    x: torch.Tensor          # the input in the models' dtype, detached
    y: torch.Tensor          # int64 labels or targets on x's device
    targeted: bool
    dtype: torch.dtype       # the caller's dtype, for the result

    def logits(self, x: torch.Tensor) -> torch.Tensor:
        return _logits(self.members, x)


def _check_number(name: str, value, *, positive: bool = False, allow_zero: bool = True,
                  integer: bool = False) -> None:
    if isinstance(value, torch.Tensor) and value.numel() == 1:
        value = value.item()
    if integer:
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise ValueError(f"{name} must be a non-negative int, got {value!r}")
        if not allow_zero and value == 0:
            raise ValueError(f"{name} must be at least 1, got 0")
        return
    if isinstance(value, bool) or not isinstance(value, Real):
        raise ValueError(f"{name} must be a real number, got {value!r}")
    value = float(value)
    if math.isnan(value) or math.isinf(value):
        raise ValueError(f"{name} must be a finite number, got {value}")
    if value < 0 or (positive and value == 0 and not allow_zero):
        raise ValueError(f"{name} must be {'> 0' if not allow_zero else '>= 0'}, got {value}; "
                         f"it is a size, so pass e.g. {name}=0.1 (images live in [0, 1])")


def _prepare(model: ModelLike, x, y, *, targeted: bool, eps=None, norm: str | None = None,
             images: bool = False, **numbers) -> _Problem:
    """Validate the common arguments once and return the problem in the models' dtype.

    ``numbers`` maps a name to ``(value, kind)`` with kind ``"size"`` (finite, >= 0),
    ``"positive"`` (finite, > 0), ``"count"`` (int >= 0) or ``"count1"`` (int >= 1).
    """
    members = _members(model)
    if not isinstance(x, torch.Tensor):
        raise ValueError(f"x must be a torch.Tensor of images, got {type(x).__name__}")
    if not x.is_floating_point():
        raise ValueError(
            f"images must be floats in [0, 1], got dtype {x.dtype}; convert uint8 images with "
            "utils.data.to_tensor(...) or x.float() / 255"
        )
    if x.ndim < 2 or x.shape[0] == 0:
        raise ValueError(f"x must be a non-empty batch (N, ...), got shape {tuple(x.shape)}")
    if images and x.ndim != 4:
        raise ValueError(f"this attack needs images shaped (N, C, H, W), got {tuple(x.shape)}")
    # one host synchronisation, before any loop
    low, high = torch.aminmax(x.detach())
    low, high = float(low), float(high)
    if not (low >= 0.0 and high <= 1.0):  # also catches NaN
        raise ValueError(
            f"image values must lie in [0, 1], got min {low:.4g} and max {high:.4g}; undo any "
            "normalisation (it belongs inside the model) or rescale, e.g. x / 255"
        )
    if eps is not None:
        _check_number("eps", eps)
    for name, (value, kind) in numbers.items():
        if kind == "size":
            _check_number(name, value)
        elif kind == "positive":
            _check_number(name, value, positive=True, allow_zero=False)
        else:
            _check_number(name, value, integer=True, allow_zero=(kind == "count"))
    if norm is not None and norm not in ("linf", "l2"):
        raise ValueError(f"norm must be 'linf' or 'l2', got {norm!r}")
    dtype = _work_dtype(members)
    work = x.detach().to(dtype)
    if y is None:
        if targeted:
            raise ValueError("targeted=True needs the target labels: pass y=targets (an int64 "
                             "tensor of shape (N,)), or use targeted=False")
        with torch.no_grad(), frozen(model):
            y = _logits(members, work).argmax(1)
    else:
        if not isinstance(y, torch.Tensor):
            y = torch.as_tensor(y)
        if y.is_floating_point() or y.dtype == torch.bool or y.is_complex():
            raise ValueError(f"labels y must be integers (int64), got dtype {y.dtype}; pass "
                             "y.long() or class indices, not one-hot vectors or probabilities")
        if y.ndim != 1 or y.shape[0] != x.shape[0]:
            raise ValueError(
                f"y must hold one label per image: {x.shape[0]} images but y has shape "
                f"{tuple(y.shape)}; pass labels shaped ({x.shape[0]},)"
            )
        y = y.to(device=x.device, dtype=torch.long)
    return _Problem(members, work, y, targeted, x.dtype)


# --------------------------------------------------------------------------------------------
# small shared pieces


def _view(values: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """Per-image values ``(N,)`` shaped to broadcast against a batch like ``like``."""
    return values.view(-1, *([1] * (like.ndim - 1)))


def _norms(t: torch.Tensor) -> torch.Tensor:
    return t.flatten(1).norm(dim=1)


def _rand(shape, generator: torch.Generator | None, like: torch.Tensor, *,
          normal: bool = False) -> torch.Tensor:
    """Uniform [0, 1) (or standard normal) numbers from ``generator``, on ``like``'s device."""
    device = generator.device if generator is not None else like.device
    sample = torch.randn if normal else torch.rand
    return sample(shape, generator=generator, device=device, dtype=like.dtype).to(like.device)


def _gain(logits: torch.Tensor, y: torch.Tensor, targeted: bool) -> torch.Tensor:
    """Per-image objective the attacker climbs: CE to the label, or minus CE to the target."""
    loss = F.cross_entropy(logits, y, reduction="none")
    return -loss if targeted else loss


def _fooled(logits: torch.Tensor, y: torch.Tensor, targeted: bool) -> torch.Tensor:
    prediction = logits.argmax(1)
    return prediction == y if targeted else prediction != y


def _input_grad(problem: _Problem, x: torch.Tensor, y: torch.Tensor):
    """Gradient of the summed gain w.r.t. the input only, and the (detached) logits."""
    x = x.detach().requires_grad_(True)
    logits = problem.logits(x)
    (grad,) = torch.autograd.grad(_gain(logits, y, problem.targeted).sum(), x)
    return grad, logits.detach()


def _project(delta: torch.Tensor, eps: float, norm: str) -> torch.Tensor:
    if norm == "linf":
        return delta.clamp(-eps, eps)
    scale = (eps / _norms(delta).clamp_min(1e-12)).clamp(max=1.0)
    return delta * _view(scale, delta)


def _step(grad: torch.Tensor, alpha: float, norm: str) -> torch.Tensor:
    if norm == "linf":
        return alpha * grad.sign()
    return grad * _view(alpha / _norms(grad).clamp_min(1e-12), grad)


def _random_start(x: torch.Tensor, eps: float, norm: str, generator) -> torch.Tensor:
    """A uniformly random point of the eps-ball (L-inf: per pixel; L2: direction and radius)."""
    if norm == "linf":
        delta = (2 * _rand(x.shape, generator, x) - 1) * eps
    else:
        direction = _rand(x.shape, generator, x, normal=True)
        direction = direction / _view(_norms(direction).clamp_min(1e-12), x)
        radius = _rand((x.shape[0],), generator, x) ** (1.0 / x[0].numel()) * eps
        delta = direction * _view(radius, x)
    return (x + delta).clamp(0, 1)


def _finish(problem: _Problem, original: torch.Tensor, adv: torch.Tensor, eps=None,
            norm: str = "linf") -> torch.Tensor:
    """Back to the caller's dtype, inside [0, 1] and (given ``eps``) inside the ball."""
    original = original.detach()
    adv = adv.detach().to(original.dtype)
    if eps is not None:
        adv = original + _project(adv - original, float(eps), norm)
    return adv.clamp(0, 1)


@dataclass
class AttackStats:
    """What an attack spent: image-level forward-backward passes against its budget.

    ``passes`` counts one per image per gradient evaluation; ``budget`` is what the attack would
    spend without an early stop (``images * steps``); ``steps_run`` the iterations executed.
    """

    passes: int
    budget: int
    steps_run: int

    @property
    def saved(self) -> float:
        """Fraction of the budget not spent (0 without an early stop)."""
        return 1.0 - self.passes / self.budget if self.budget else 0.0


# --------------------------------------------------------------------------------------------
# gradient-sign attacks


def fgsm(model: ModelLike, x: torch.Tensor, y: torch.Tensor | None = None, *, eps: float,
         targeted: bool = False, random_start: bool = False, alpha: float | None = None,
         generator: torch.Generator | None = None) -> torch.Tensor:
    """Fast gradient sign method: ``x' = x + eps * sign(grad_x J(x, y))`` (targeted: minus).

    With ``random_start=True`` it first jumps to a random point of the L-inf ball and takes one
    step of ``alpha`` (default ``1.25 * eps``) from there, projected back: the cheap attack of
    "fast adversarial training" (Wong, Rice & Kolter 2020).
    """
    problem = _prepare(model, x, y, targeted=targeted, eps=eps,
                       **({} if alpha is None else {"alpha": (alpha, "size")}))
    eps = float(eps)
    with frozen(model):
        start = _random_start(problem.x, eps, "linf", generator) if random_start else problem.x
        grad, _ = _input_grad(problem, start, problem.y)
        step = eps if alpha is None and not random_start else (
            1.25 * eps if alpha is None else float(alpha))
        adv = start + step * grad.sign()
    return _finish(problem, x, adv, eps)


def pgd(model: ModelLike, x: torch.Tensor, y: torch.Tensor | None = None, *, eps: float,
        alpha: float, steps: int, norm: str = "linf", random_start: bool = True,
        targeted: bool = False, generator: torch.Generator | None = None,
        early_stop: bool = False, return_stats: bool = False):
    """Projected gradient descent (iterative FGSM) in the L-inf or L2 ball of radius ``eps``.

    Each step moves by ``alpha`` along ``sign(g)`` (L-inf) or ``g / ||g||_2`` (L2), then
    projects back onto the ball and the box [0, 1].  ``random_start`` begins at a uniformly
    random point of the ball (Madry et al.); ``random_start=False`` is the basic iterative
    method of Kurakin et al.

    ``early_stop=True`` stops updating every image as soon as it is fooled (misclassified, or
    classified as the target): the attack then spends fewer forward-backward passes, at the
    price of one host synchronisation per step.  ``return_stats=True`` returns
    ``(x_adv, AttackStats)`` with the passes spent and the budget.
    """
    problem = _prepare(model, x, y, targeted=targeted, eps=eps, norm=norm,
                       alpha=(alpha, "size"), steps=(steps, "count"))
    eps, alpha = float(eps), float(alpha)
    n = problem.x.shape[0]
    passes, steps_run = n * steps, steps
    with frozen(model):
        clean = problem.x
        adv = _random_start(clean, eps, norm, generator) if random_start else clean.clone()
        if not early_stop:
            for _ in range(steps):
                grad, _ = _input_grad(problem, adv, problem.y)
                with torch.no_grad():
                    adv = clean + _project(adv + _step(grad, alpha, norm) - clean, eps, norm)
                    adv = adv.clamp_(0, 1)
        else:
            passes, steps_run = 0, 0
            active = torch.arange(n, device=clean.device)
            for _ in range(steps):
                if active.numel() == 0:
                    break
                steps_run += 1
                passes += active.numel()
                current, base, labels = adv[active], clean[active], problem.y[active]
                grad, logits = _input_grad(problem, current, labels)
                done = _fooled(logits, labels, targeted)
                with torch.no_grad():
                    moved = base + _project(current + _step(grad, alpha, norm) - base, eps, norm)
                    moved = torch.where(_view(done, moved), current, moved.clamp_(0, 1))
                    adv[active] = moved
                active = active[~done]
    result = _finish(problem, x, adv, eps, norm)
    if return_stats:
        return result, AttackStats(passes=passes, budget=n * steps, steps_run=steps_run)
    return result


def mifgsm(model: ModelLike, x: torch.Tensor, y: torch.Tensor | None = None, *, eps: float,
           alpha: float | None = None, steps: int = 10, decay: float = 1.0,
           targeted: bool = False, random_start: bool = False,
           generator: torch.Generator | None = None) -> torch.Tensor:
    """Momentum iterative FGSM (Dong et al. 2018): the sign of an accumulated, L1-normalised
    gradient ``m <- decay * m + g / mean|g|``; ``alpha`` defaults to ``eps / steps``.
    """
    alpha = eps / max(steps, 1) if alpha is None and isinstance(eps, Real) else alpha
    problem = _prepare(model, x, y, targeted=targeted, eps=eps, alpha=(alpha, "size"),
                       steps=(steps, "count"), decay=(decay, "size"))
    eps, alpha = float(eps), float(alpha)
    with frozen(model):
        clean = problem.x
        adv = _random_start(clean, eps, "linf", generator) if random_start else clean.clone()
        momentum = torch.zeros_like(clean)
        for _ in range(steps):
            grad, _ = _input_grad(problem, adv, problem.y)
            with torch.no_grad():
                scale = grad.abs().flatten(1).mean(1).clamp_min(1e-12)
                momentum = decay * momentum + grad / _view(scale, grad)
                adv = clean + (adv + alpha * momentum.sign() - clean).clamp_(-eps, eps)
                adv = adv.clamp_(0, 1)
    return _finish(problem, x, adv, eps)


def fgvm(model: ModelLike, x: torch.Tensor, y: torch.Tensor | None = None, *, eps: float,
         alpha: float | None = None, steps: int = 1, clip: float = 2.0, targeted: bool = False,
         random_start: bool = False, generator: torch.Generator | None = None) -> torch.Tensor:
    """Fast gradient *value* method: steps ``alpha * clamp(g / std(g), -clip, clip)``.

    The step of the face-attack competition (``noise = eps * clamp(g / std(g), -2, 2)``, with
    the standard deviation taken per image): unlike the sign it keeps the gradient's relative
    sizes.  Here ``alpha`` is the competition's scale and ``eps`` the L-inf ball every step is
    projected onto; ``alpha`` defaults to ``eps / clip``, so one step reaches the ball's faces
    exactly where the gradient is large.
    """
    alpha = eps / clip if alpha is None and isinstance(eps, Real) and clip else alpha
    problem = _prepare(model, x, y, targeted=targeted, eps=eps, alpha=(alpha, "size"),
                       steps=(steps, "count"), clip=(clip, "positive"))
    eps, alpha, clip = float(eps), float(alpha), float(clip)
    with frozen(model):
        clean = problem.x
        adv = _random_start(clean, eps, "linf", generator) if random_start else clean.clone()
        for _ in range(steps):
            grad, _ = _input_grad(problem, adv, problem.y)
            with torch.no_grad():
                spread = grad.flatten(1).std(1).clamp_min(1e-12)
                noise = (grad / _view(spread, grad)).clamp_(-clip, clip)
                adv = clean + (adv + alpha * noise - clean).clamp_(-eps, eps)
                adv = adv.clamp_(0, 1)
    return _finish(problem, x, adv, eps)


# --------------------------------------------------------------------------------------------
# optimisation attacks


def _margin(logits: torch.Tensor, y: torch.Tensor, targeted: bool) -> torch.Tensor:
    """C&W's f: (label logit - best other) untargeted, (best other - target logit) targeted."""
    own = logits.gather(1, y[:, None]).squeeze(1)
    others = logits.masked_fill(F.one_hot(y, logits.shape[1]).bool(), float("-inf")).amax(1)
    return others - own if targeted else own - others


def _update_bounds(c, lower, upper, success, *, success_raises: bool):
    """One bisection step on a per-image constant ``c`` (10x jumps while unbounded)."""
    big = 1e10
    if success_raises:  # success -> try a larger c (szegedy: c weighs the perturbation)
        lower = torch.where(success, torch.maximum(lower, c), lower)
        upper = torch.where(success, upper, torch.minimum(upper, c))
        c = torch.where(upper < big, (lower + upper) / 2, c * 10)
    else:               # success -> try a smaller c (C&W: c weighs the attack's loss)
        upper = torch.where(success, torch.minimum(upper, c), upper)
        lower = torch.where(success, lower, torch.maximum(lower, c))
        c = torch.where(upper < big, (lower + upper) / 2, c * 10)
    return c, lower, upper


def cw_l2(model: ModelLike, x: torch.Tensor, y: torch.Tensor | None = None, *, c: float = 1.0,
          kappa: float = 0.0, steps: int = 100, lr: float = 0.01, binary_search_steps: int = 5,
          targeted: bool = False) -> torch.Tensor:
    """Carlini & Wagner's L2 attack (2017).

    Optimises ``w`` with Adam, ``x' = (tanh(w) + 1) / 2`` (so the box [0, 1] holds by
    construction), minimising ``||x' - x||_2^2 + c * max(f(x'), -kappa)`` with ``f`` the logit
    margin (:func:`_margin`).  A per-image binary search over ``c`` (``binary_search_steps``
    rounds of ``steps`` Adam steps, starting at ``c``) finds the smallest successful
    perturbation.  Images never fooled are returned unchanged.
    """
    problem = _prepare(model, x, y, targeted=targeted, c=(c, "positive"), kappa=(kappa, "size"),
                       steps=(steps, "count"), lr=(lr, "positive"),
                       binary_search_steps=(binary_search_steps, "count1"))
    clean, labels = problem.x, problem.y
    n = clean.shape[0]
    with frozen(model):
        w0 = torch.atanh((2 * clean - 1).clamp(-1 + 1e-6, 1 - 1e-6))
        best = clean.clone()
        best_l2 = torch.full((n,), float("inf"), device=clean.device, dtype=clean.dtype)
        const = torch.full((n,), float(c), device=clean.device, dtype=clean.dtype)
        lower, upper = torch.zeros_like(const), torch.full_like(const, 1e10)
        for _ in range(binary_search_steps):
            w = w0.clone().requires_grad_(True)
            optimiser = torch.optim.Adam([w], lr=lr)
            succeeded = torch.zeros(n, dtype=torch.bool, device=clean.device)
            for _ in range(steps):
                adv = (torch.tanh(w) + 1) / 2
                l2 = (adv - clean).flatten(1).pow(2).sum(1)
                margin = _margin(problem.logits(adv), labels, targeted)
                loss = (l2 + const * margin.clamp(min=-kappa)).sum()
                (grad,) = torch.autograd.grad(loss, w)
                with torch.no_grad():
                    hit = (margin < 0) & (margin <= -kappa)
                    better = hit & (l2 < best_l2)
                    best_l2 = torch.where(better, l2, best_l2)
                    best = torch.where(_view(better, best), adv, best)
                    succeeded |= hit
                w.grad = grad
                optimiser.step()
            const, lower, upper = _update_bounds(const, lower, upper, succeeded,
                                                 success_raises=False)
    return _finish(problem, x, best)


def szegedy(model: ModelLike, x: torch.Tensor, y: torch.Tensor | None = None, *,
            targeted: bool = True, c: float = 0.1, steps: int = 100, lr: float = 0.01,
            search_steps: int = 5) -> torch.Tensor:
    """Szegedy et al.'s (2014) optimisation attack, box-constrained:

    ``min_eta  c * ||eta||_2^2 + J(x + eta, l')``  subject to  ``x + eta in [0, 1]``.

    The paper uses box-constrained L-BFGS; here projected Adam with a cosine-decaying step does
    the inner minimisation (for the whole batch at once, on the GPU too) and a per-image
    bisection over ``c`` looks for the
    largest ``c`` -- the smallest perturbation -- that still reaches the label ``l'``.  With
    ``targeted=True`` (the paper's setting) ``y`` holds ``l'``; with ``targeted=False`` the
    target is each image's runner-up class.  Images never moved to ``l'`` come back unchanged.
    """
    problem = _prepare(model, x, y, targeted=targeted, c=(c, "positive"),
                       steps=(steps, "count"), lr=(lr, "positive"),
                       search_steps=(search_steps, "count1"))
    clean = problem.x
    n = clean.shape[0]
    with frozen(model):
        target = problem.y
        if not targeted:
            with torch.no_grad():
                logits = problem.logits(clean)
                target = logits.scatter(1, target[:, None], float("-inf")).argmax(1)
        best = clean.clone()
        best_size = torch.full((n,), float("inf"), device=clean.device, dtype=clean.dtype)
        const = torch.full((n,), float(c), device=clean.device, dtype=clean.dtype)
        lower, upper = torch.zeros_like(const), torch.full_like(const, 1e10)
        for _ in range(search_steps):
            eta = torch.zeros_like(clean, requires_grad=True)
            optimiser = torch.optim.Adam([eta], lr=lr)
            succeeded = torch.zeros(n, dtype=torch.bool, device=clean.device)
            for step in range(steps):
                # a cosine-decaying step lets the norm term shrink what the label does not need
                optimiser.param_groups[0]["lr"] = lr * 0.5 * (1 + math.cos(math.pi * step / steps))
                adv = clean + eta
                size = eta.flatten(1).pow(2).sum(1)
                logits = problem.logits(adv)
                loss = (const * size + F.cross_entropy(logits, target, reduction="none")).sum()
                (grad,) = torch.autograd.grad(loss, eta)
                with torch.no_grad():
                    hit = logits.argmax(1) == target
                    better = hit & (size < best_size)
                    best_size = torch.where(better, size, best_size)
                    best = torch.where(_view(better, best), adv, best)
                    succeeded |= hit
                eta.grad = grad
                optimiser.step()
                with torch.no_grad():  # the box constraint: x + eta in [0, 1]
                    eta.copy_((clean + eta).clamp_(0, 1) - clean)
            const, lower, upper = _update_bounds(const, lower, upper, succeeded,
                                                 success_raises=True)
    return _finish(problem, x, best)


lbfgs = szegedy


# --------------------------------------------------------------------------------------------
# robust (physical-world) attacks: expectation over transformation


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
        n, channels, height, width = x.shape
        if self.shift > 0:
            offsets = (2 * _rand((n, 2), generator, x) - 1) * self.shift
            theta = torch.zeros(n, 2, 3, device=x.device, dtype=x.dtype)
            theta[:, 0, 0] = theta[:, 1, 1] = 1
            theta[:, 0, 2] = offsets[:, 0] * 2 / width
            theta[:, 1, 2] = offsets[:, 1] * 2 / height
            grid = F.affine_grid(theta, list(x.shape), align_corners=False)
            x = F.grid_sample(x, grid, mode="bilinear", padding_mode="border",
                              align_corners=False)
        low, high = self.blur
        if high > 0:
            sigma = (low + (high - low) * _rand((n,), generator, x)).clamp_min(1e-3)
            radius = max(1, math.ceil(2.5 * high))
            t = torch.arange(-radius, radius + 1, device=x.device, dtype=x.dtype)
            kernel = torch.exp(-t[None] ** 2 / (2 * sigma[:, None] ** 2))
            kernel = (kernel / kernel.sum(1, keepdim=True)).repeat_interleave(channels, 0)
            flat = F.pad(x.reshape(1, n * channels, height, width),
                         (radius, radius, radius, radius), mode="replicate")
            flat = F.conv2d(flat, kernel[:, None, None, :], groups=n * channels)
            flat = F.conv2d(flat, kernel[:, None, :, None], groups=n * channels)
            x = flat.view(n, channels, height, width)
        if self.noise > 0:
            std = self.noise * _rand((n,), generator, x)
            x = x + _view(std, x) * _rand(x.shape, generator, x, normal=True)
        return x.clamp(0, 1)


def eot_pgd(model: ModelLike, x: torch.Tensor, y: torch.Tensor | None = None, *, eps: float,
            alpha: float, steps: int, samples: int = 8, transform=None, norm: str = "linf",
            random_start: bool = True, targeted: bool = False,
            generator: torch.Generator | None = None) -> torch.Tensor:
    """PGD on the expected loss over random transformations (Athalye et al. 2018).

    Every step averages the gradient over ``samples`` draws of ``transform(x, generator)``
    (default :class:`RandomTransform`: shift, blur, noise), so the example keeps fooling the
    model after such changes -- the idea behind adversarial examples that survive printing and
    photographing.
    """
    problem = _prepare(model, x, y, targeted=targeted, eps=eps, norm=norm, images=True,
                       alpha=(alpha, "size"), steps=(steps, "count"),
                       samples=(samples, "count1"))
    eps, alpha = float(eps), float(alpha)
    transform = RandomTransform() if transform is None else transform
    labels = problem.y.repeat(samples)
    with frozen(model):
        clean = problem.x
        adv = _random_start(clean, eps, norm, generator) if random_start else clean.clone()
        for _ in range(steps):
            current = adv.detach().requires_grad_(True)
            views = transform(current.repeat(samples, 1, 1, 1), generator)
            gain = _gain(problem.logits(views), labels, targeted).sum() / samples
            (grad,) = torch.autograd.grad(gain, current)
            with torch.no_grad():
                adv = clean + _project(adv + _step(grad, alpha, norm) - clean, eps, norm)
                adv = adv.clamp_(0, 1)
    return _finish(problem, x, adv, eps, norm)


# --------------------------------------------------------------------------------------------
# differential evolution over pixels


def one_pixel(model: ModelLike, x: torch.Tensor, y: torch.Tensor | None = None, *,
              pixels: int = 1, population: int = 100, iterations: int = 30,
              mutation: float = 0.5, targeted: bool = False,
              generator: torch.Generator | None = None, batch_size: int = 4096) -> torch.Tensor:
    """Change at most ``pixels`` pixels per image by differential evolution (Su et al. 2019).

    A candidate is ``pixels`` tuples (row, column, value per channel).  Each generation every
    member ``i`` of a ``population`` (per image, all images at once) proposes
    ``a + mutation * (b - c)`` from three other random members (DE/rand/1) and is replaced when
    the proposal lowers the fitness: the probability of the true class (untargeted) or minus
    the probability of the target.  Returns each image with its fittest candidate applied
    (whether or not it fools the model).  Needs no gradients: a black-box attack.
    """
    problem = _prepare(model, x, y, targeted=targeted, images=True, pixels=(pixels, "count1"),
                       population=(population, "count1"), iterations=(iterations, "count"),
                       mutation=(mutation, "size"), batch_size=(batch_size, "count1"))
    if population < 4:
        raise ValueError(f"population must be at least 4 for DE/rand/1, got {population}")
    clean, labels = problem.x, problem.y
    n, channels, height, width = clean.shape
    genes = 2 + channels
    low = torch.zeros(genes, device=clean.device, dtype=clean.dtype)
    high = torch.tensor([height - 1e-3, width - 1e-3] + [1.0] * channels, device=clean.device,
                        dtype=clean.dtype)

    def apply(candidates: torch.Tensor, rows: torch.Tensor) -> torch.Tensor:
        """Images ``clean[rows]`` with ``candidates`` (M, pixels, genes) written in."""
        images = clean[rows].flatten(2).clone()
        where = candidates[..., 0].long() * width + candidates[..., 1].long()      # (M, pixels)
        values = candidates[..., 2:].transpose(1, 2)                              # (M, C, pixels)
        images.scatter_(2, where[:, None, :].expand(-1, channels, -1), values)
        return images.view(-1, channels, height, width)

    def fitness(candidates: torch.Tensor) -> torch.Tensor:
        """(n, P, pixels, genes) -> (n, P), lower is better."""
        flat = candidates.reshape(-1, pixels, genes)
        rows = torch.arange(n, device=clean.device).repeat_interleave(population)
        scores = []
        for start in range(0, flat.shape[0], batch_size):
            part = slice(start, start + batch_size)
            probabilities = problem.logits(apply(flat[part], rows[part])).softmax(1)
            chosen = probabilities.gather(1, labels[rows[part]][:, None]).squeeze(1)
            scores.append(-chosen if targeted else chosen)
        return torch.cat(scores).view(n, population)

    with torch.no_grad(), frozen(model):
        members = low + (high - low) * _rand((n, population, pixels, genes), generator, clean)
        scores = fitness(members)
        for _ in range(iterations):
            picks = _rand((n, population, population), generator, clean).argsort(-1)[..., :3]
            gathered = [members.gather(1, picks[..., k, None, None].expand(-1, -1, pixels, genes))
                        for k in range(3)]
            trial = gathered[0] + mutation * (gathered[1] - gathered[2])
            trial = torch.maximum(torch.minimum(trial, high), low)
            trial_scores = fitness(trial)
            better = trial_scores < scores
            members = torch.where(better[..., None, None], trial, members)
            scores = torch.where(better, trial_scores, scores)
        winner = members.gather(
            1, scores.argmin(1)[:, None, None, None].expand(-1, 1, pixels, genes)).squeeze(1)
        adv = apply(winner, torch.arange(n, device=clean.device))
    return _finish(problem, x, adv)
