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
  ``steps``: the number of gradient steps; ``generator`` (only the attacks that draw random
  numbers take one: not :func:`cw_l2` or :func:`szegedy`, which are deterministic): an optional
  ``torch.Generator`` that all randomness (random starts, transformations, populations) is drawn
  from.  Without one, PyTorch's default generator is used (which ``utils.setup`` seeds).

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
                    (the paper's L-BFGS replaced by projected Adam)
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

from utils.transforms import RandomTransform
from utils.transforms import uniform as _rand

__all__ = [
    "AttackStats", "RandomTransform", "frozen", "ensemble_logits", "ensemble_members",
    "sign_step", "value_step", "optimise_input", "differential_evolution",
    "fgsm", "pgd", "pgd_stats", "mifgsm", "fgvm", "cw_l2", "szegedy", "eot_pgd",
    "one_pixel",
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


ensemble_members = _members   # public name, for topics that take ensembles the same way


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


def sign_step(grad: torch.Tensor) -> torch.Tensor:
    """FGSM's direction: the sign of the gradient, every pixel moves by the same amount."""
    return grad.sign()


def value_step(grad: torch.Tensor, clip: float = 2.0) -> torch.Tensor:
    """FGVM's direction: the gradient over its per-image standard deviation, clipped to
    ``[-clip, clip]`` (the face competition's ``clamp(g / std(g), -2, 2)``); keeps the
    gradient's relative sizes where the sign throws them away."""
    spread = grad.flatten(1).std(1).clamp_min(1e-12)
    return (grad / _view(spread, grad)).clamp(-clip, clip)


def _step(grad: torch.Tensor, alpha: float, norm: str) -> torch.Tensor:
    if norm == "linf":
        return alpha * sign_step(grad)
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
        adv = start + step * sign_step(grad)
    return _finish(problem, x, adv, eps)


def pgd(model: ModelLike, x: torch.Tensor, y: torch.Tensor | None = None, *, eps: float,
        alpha: float, steps: int, norm: str = "linf", random_start: bool = True,
        targeted: bool = False, generator: torch.Generator | None = None,
        early_stop: bool = False) -> torch.Tensor:
    """Projected gradient descent (iterative FGSM) in the L-inf or L2 ball of radius ``eps``.

    Each step moves by ``alpha`` along ``sign(g)`` (L-inf) or ``g / ||g||_2`` (L2), then
    projects back onto the ball and the box [0, 1].  ``random_start`` begins at a uniformly
    random point of the ball (Madry et al.); ``random_start=False`` is the basic iterative
    method of Kurakin et al.

    ``early_stop=True`` stops updating every image as soon as it is fooled (misclassified, or
    classified as the target): the attack then spends fewer forward-backward passes, at the
    price of one host synchronisation per step.  :func:`pgd_stats` takes the same arguments
    and also returns the :class:`AttackStats` (passes spent against the budget).
    """
    adv, _ = pgd_stats(model, x, y, eps=eps, alpha=alpha, steps=steps, norm=norm,
                       random_start=random_start, targeted=targeted, generator=generator,
                       early_stop=early_stop)
    return adv


def pgd_stats(model: ModelLike, x: torch.Tensor, y: torch.Tensor | None = None, *, eps: float,
              alpha: float, steps: int, norm: str = "linf", random_start: bool = True,
              targeted: bool = False, generator: torch.Generator | None = None,
              early_stop: bool = False) -> tuple[torch.Tensor, "AttackStats"]:
    """:func:`pgd`, returning ``(x_adv, AttackStats)``: what the attack spent."""
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
    return result, AttackStats(passes=passes, budget=n * steps, steps_run=steps_run)


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
                adv = clean + (adv + alpha * sign_step(momentum) - clean).clamp_(-eps, eps)
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
                adv = clean + (adv + alpha * value_step(grad, clip) - clean).clamp_(-eps, eps)
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
    """One search step on a per-image constant ``c``: 10x jumps while unbounded, then bisection."""
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


def optimise_input(loss_fn, start: torch.Tensor, *, steps: int, lr: float, space: str = "box",
                   schedule: str = "constant") -> torch.Tensor:
    """The kit's one loop that optimises an *input* with Adam: under C&W, Szegedy, the face
    competition's C&W and lecture 02's fooling images.

    Minimises ``loss_fn(x, step).sum()`` (``loss_fn`` returns one loss per image) over images
    ``x`` in the box [0, 1], starting from ``start``:

    - ``space="box"``: ``x`` itself is the variable, clipped back into [0, 1] after every step
      (projected Adam);
    - ``space="tanh"``: the variable is ``w`` with ``x = (tanh(w) + 1) / 2`` (Carlini & Wagner's
      change of variables: the box holds by construction).

    ``schedule="cosine"`` decays the step from ``lr`` to 0.  Gradients are taken with respect to
    the variable only (``torch.autograd.grad``); freeze the model first (:func:`frozen`).
    ``loss_fn`` may also record what it sees (e.g. the best image so far).  Returns the final
    ``x``, detached.
    """
    if space not in ("box", "tanh"):
        raise ValueError(f"space must be 'box' or 'tanh', got {space!r}")
    if schedule not in ("constant", "cosine"):
        raise ValueError(f"schedule must be 'constant' or 'cosine', got {schedule!r}")
    _check_number("steps", steps, integer=True)
    _check_number("lr", lr, positive=True, allow_zero=False)
    start = start.detach()
    if space == "tanh":
        variable = torch.atanh((2 * start - 1).clamp(-1 + 1e-6, 1 - 1e-6)).requires_grad_(True)
    else:
        variable = start.clamp(0, 1).requires_grad_(True)

    def image() -> torch.Tensor:
        return (torch.tanh(variable) + 1) / 2 if space == "tanh" else variable

    optimiser = torch.optim.Adam([variable], lr=lr)
    for step in range(steps):
        if schedule == "cosine":
            optimiser.param_groups[0]["lr"] = lr * 0.5 * (1 + math.cos(math.pi * step / steps))
        (grad,) = torch.autograd.grad(loss_fn(image(), step).sum(), variable)
        variable.grad = grad
        optimiser.step()
        if space == "box":
            with torch.no_grad():
                variable.clamp_(0, 1)
    return image().detach()


class _Best:
    """The smallest successful perturbation per image seen so far (C&W's and Szegedy's record)."""

    def __init__(self, clean: torch.Tensor):
        self.images = clean.clone()
        self.size = torch.full((clean.shape[0],), float("inf"), device=clean.device,
                               dtype=clean.dtype)

    @torch.no_grad()
    def offer(self, images: torch.Tensor, size: torch.Tensor, hit: torch.Tensor) -> None:
        better = hit & (size < self.size)
        self.size = torch.where(better, size, self.size)
        self.images = torch.where(_view(better, self.images), images.detach(), self.images)


def _search_c(clean: torch.Tensor, c: float, search_steps: int, objective, *,
              success_raises: bool, inner) -> torch.Tensor:
    """The search over the per-image constant ``c`` shared by C&W and Szegedy.

    Each of ``search_steps`` rounds runs ``inner(loss_fn)`` (the input optimisation) where
    ``loss_fn`` asks ``objective(adv, size, const) -> (loss, hit)`` with ``size`` the squared
    L2 perturbation, records the smallest successful perturbation, and then moves each image's
    ``c`` (:func:`_update_bounds`).  Returns the best images (the clean one where none hit).
    """
    best = _Best(clean)
    const = torch.full((clean.shape[0],), float(c), device=clean.device, dtype=clean.dtype)
    lower, upper = torch.zeros_like(const), torch.full_like(const, 1e10)
    for _ in range(search_steps):
        succeeded = torch.zeros(clean.shape[0], dtype=torch.bool, device=clean.device)

        def loss_fn(adv, step):
            nonlocal succeeded
            size = (adv - clean).flatten(1).pow(2).sum(1)
            loss, hit = objective(adv, size, const)
            best.offer(adv, size.detach(), hit)
            succeeded = succeeded | hit
            return loss

        inner(loss_fn)
        const, lower, upper = _update_bounds(const, lower, upper, succeeded,
                                             success_raises=success_raises)
    return best.images


def cw_l2(model: ModelLike, x: torch.Tensor, y: torch.Tensor | None = None, *, c: float = 1.0,
          kappa: float = 0.0, steps: int = 100, lr: float = 0.01, search_steps: int = 5,
          targeted: bool = False) -> torch.Tensor:
    """Carlini & Wagner's L2 attack (2017).

    Optimises ``w`` with Adam, ``x' = (tanh(w) + 1) / 2`` (so the box [0, 1] holds by
    construction), minimising ``||x' - x||_2^2 + c * max(f(x'), -kappa)`` with ``f`` the logit
    margin (:func:`_margin`).  A per-image search over ``c`` (``search_steps`` rounds of
    ``steps`` Adam steps, starting at ``c``; bisection once bounded, 10x jumps before) finds the
    smallest successful perturbation.  Images never fooled are returned unchanged.
    Deterministic, so it takes no ``generator``.
    """
    problem = _prepare(model, x, y, targeted=targeted, c=(c, "positive"), kappa=(kappa, "size"),
                       steps=(steps, "count"), lr=(lr, "positive"),
                       search_steps=(search_steps, "count1"))
    clean, labels = problem.x, problem.y

    def objective(adv, size, const):
        margin = _margin(problem.logits(adv), labels, targeted)
        return size + const * margin.clamp(min=-kappa), (margin < 0) & (margin <= -kappa)

    with frozen(model):
        best = _search_c(clean, c, search_steps, objective, success_raises=False,
                         inner=lambda loss_fn: optimise_input(loss_fn, clean, steps=steps, lr=lr,
                                                              space="tanh"))
    return _finish(problem, x, best)


def szegedy(model: ModelLike, x: torch.Tensor, y: torch.Tensor | None = None, *,
            targeted: bool = False, c: float = 0.1, steps: int = 100, lr: float = 0.01,
            search_steps: int = 5) -> torch.Tensor:
    """Szegedy et al.'s (2014) optimisation attack, box-constrained:

    ``min_eta  c * ||eta||_2^2 + J(x + eta, l')``  subject to  ``x + eta in [0, 1]``.

    The paper uses box-constrained L-BFGS; here projected Adam with a cosine-decaying step does
    the inner minimisation (:func:`optimise_input`, for the whole batch at once, on the GPU too)
    and a per-image search over ``c`` (10x jumps, then bisection) looks for the largest ``c`` --
    the smallest perturbation -- that still reaches the label ``l'``.  With ``targeted=True``
    (the paper's setting) ``y`` holds ``l'``; with ``targeted=False`` (the default, as for every
    attack of the kit) the target is each image's runner-up class.  Images never moved to ``l'``
    come back unchanged.  Deterministic, so it takes no ``generator``.
    """
    problem = _prepare(model, x, y, targeted=targeted, c=(c, "positive"),
                       steps=(steps, "count"), lr=(lr, "positive"),
                       search_steps=(search_steps, "count1"))
    clean = problem.x
    with frozen(model):
        target = problem.y
        if not targeted:
            with torch.no_grad():
                logits = problem.logits(clean)
                target = logits.scatter(1, target[:, None], float("-inf")).argmax(1)

        def objective(adv, size, const):
            logits = problem.logits(adv)
            loss = const * size + F.cross_entropy(logits, target, reduction="none")
            return loss, logits.argmax(1) == target

        # a cosine-decaying step lets the norm term shrink what the label does not need
        best = _search_c(clean, c, search_steps, objective, success_raises=True,
                         inner=lambda loss_fn: optimise_input(loss_fn, clean, steps=steps, lr=lr,
                                                              space="box", schedule="cosine"))
    return _finish(problem, x, best)


# --------------------------------------------------------------------------------------------
# robust (physical-world) attacks: expectation over transformation


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
# differential evolution (gradient-free: black-box attacks)


def differential_evolution(fitness, members: torch.Tensor, *, steps: int, low, high,
                           mutation: float = 0.5, crossover: float = 1.0,
                           generator: torch.Generator | None = None):
    """DE/rand/1/bin (Storn & Price) on ``n`` independent problems at once.

    ``members`` ``(n, P, *genes)`` is the first population of each problem; ``fitness`` maps a
    population of that shape to scores ``(n, P)``, lower is better.  Each generation, every
    member proposes ``a + mutation * (b - c)`` from three random members, clipped to
    ``[low, high]``; with ``crossover < 1`` each gene comes from the proposal with that
    probability (at least one does), else from the member.  A proposal replaces its member when
    it scores no worse.  Returns ``(members, scores)`` after ``steps`` generations.  Used by
    :func:`one_pixel` and by lecture 03's pixel polish.
    """
    n, population = members.shape[:2]
    if population < 4:
        raise ValueError(f"population must be at least 4 for DE/rand/1, got {population}")
    _check_number("steps", steps, integer=True)
    rows = torch.arange(n, device=members.device)[:, None]
    scores = fitness(members)
    for _ in range(steps):
        picks = _rand((n, population, population), generator, members).argsort(-1)[..., :3]
        a, b, c = (members[rows, picks[..., k]] for k in range(3))
        trial = torch.maximum(torch.minimum(a + mutation * (b - c), torch.as_tensor(high).to(a)),
                              torch.as_tensor(low).to(a))
        if crossover < 1:
            take = _rand(trial.shape, generator, members) < crossover
            take.view(n, population, -1)[..., 0] = True
            trial = torch.where(take, trial, members)
        trial_scores = fitness(trial)
        better = trial_scores <= scores
        members = torch.where(_view_members(better, members), trial, members)
        scores = torch.where(better, trial_scores, scores)
    return members, scores


def _view_members(values: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """Per-member values ``(n, P)`` shaped to broadcast against ``(n, P, *genes)``."""
    return values.view(*values.shape, *([1] * (like.ndim - 2)))


def one_pixel(model: ModelLike, x: torch.Tensor, y: torch.Tensor | None = None, *,
              pixels: int = 1, population: int = 100, steps: int = 30,
              mutation: float = 0.5, targeted: bool = False,
              generator: torch.Generator | None = None, batch_size: int = 4096) -> torch.Tensor:
    """Change at most ``pixels`` pixels per image by differential evolution (Su et al. 2019).

    A candidate is ``pixels`` tuples (row, column, value per channel); a population of
    ``population`` candidates per image (all images at once) evolves for ``steps`` generations
    of :func:`differential_evolution` (DE/rand/1, no crossover, as in the paper).  The fitness
    is the probability of the true class (untargeted) or minus the probability of the target.
    Returns each image with its fittest candidate applied (whether or not it fools the model).
    Needs no gradients: a black-box attack.
    """
    problem = _prepare(model, x, y, targeted=targeted, images=True, pixels=(pixels, "count1"),
                       population=(population, "count1"), steps=(steps, "count"),
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
        first = low + (high - low) * _rand((n, population, pixels, genes), generator, clean)
        members, scores = differential_evolution(fitness, first, steps=steps, low=low, high=high,
                                                 mutation=mutation, generator=generator)
        winner = members[torch.arange(n, device=clean.device), scores.argmin(1)]
        adv = apply(winner, torch.arange(n, device=clean.device))
    return _finish(problem, x, adv)
