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


# --------------------------------------------------------------------------------------------
# auto-PGD (Croce & Hein 2020): the attacks of AutoAttack that need gradients


def _dlr(logits: torch.Tensor, y: torch.Tensor, targeted: bool) -> torch.Tensor:
    """Croce & Hein's difference-of-logits ratio, as a gain the attacker climbs.

    Untargeted: ``-(z_y - max_{i != y} z_i) / (z_pi1 - z_pi3)``; targeted (``y`` the target):
    ``-(max_{i != t} z_i - z_t) / (z_pi1 - (z_pi3 + z_pi4) / 2)``, with ``z_pi1 >= z_pi2 >= ...``
    the sorted logits.  The ratio makes the loss invariant to shifting and scaling the logits,
    so a model whose logits are multiplied by a large temperature cannot hide behind a saturated
    softmax.  (The paper's targeted numerator is ``z_y - z_t`` with ``y`` the true label; the
    best *other* logit is the same while ``y`` leads and keeps pulling once it does not.)
    """
    ordered = logits.sort(dim=1, descending=True).values
    own = logits.gather(1, y[:, None]).squeeze(1)
    others = logits.masked_fill(F.one_hot(y, logits.shape[1]).bool(), float("-inf")).amax(1)
    if targeted:
        scale = ordered[:, 0] - (ordered[:, 2] + ordered[:, 3]) / 2
        return -(others - own) / (scale + 1e-12)
    return -(own - others) / (ordered[:, 0] - ordered[:, 2] + 1e-12)


def _apgd_gain(logits: torch.Tensor, y: torch.Tensor, loss: str, targeted: bool) -> torch.Tensor:
    return _dlr(logits, y, targeted) if loss == "dlr" else _gain(logits, y, targeted)


def apgd_checkpoints(steps: int) -> list[int]:
    """The iterations at which APGD may halve its step: ``w_j = ceil(p_j * steps)`` with
    ``p_0 = 0``, ``p_1 = 0.22`` and ``p_{j+1} = p_j + max(p_j - p_{j-1} - 0.03, 0.06)``.

    (Counted as in the authors' code: intervals of ``0.22 * steps`` iterations, shrinking by
    ``0.03 * steps`` down to ``0.06 * steps``, each at least one iteration.)
    """
    _check_number("steps", steps, integer=True)
    first, shrink = max(int(0.22 * steps), 1), max(int(0.03 * steps), 1)
    floor = max(int(0.06 * steps), 1)
    points, at, interval = [], 0, first
    while at + interval <= steps:
        at += interval
        points.append(at)
        interval = max(interval - shrink, floor)
    return points


def _apgd_run(problem: _Problem, labels: torch.Tensor, start: torch.Tensor, *, eps: float,
              steps: int, norm: str, loss: str, targeted: bool, rho: float, momentum: float):
    """One run of APGD from ``start``: returns ``(best image, fooled mask)`` per image.

    The best image is the first point that fooled the model where one did, else the point of
    highest loss.
    """
    clean = problem.x
    n = clean.shape[0]

    def evaluate(point):
        point = point.detach().requires_grad_(True)
        logits = problem.logits(point)
        if loss == "dlr" and logits.shape[1] < (4 if targeted else 3):
            raise ValueError(f"the DLR loss needs at least {4 if targeted else 3} classes, the "
                             f"model has {logits.shape[1]}; use loss='ce'")
        gain = _apgd_gain(logits, labels, loss, targeted)
        (grad,) = torch.autograd.grad(gain.sum(), point)
        return grad, gain.detach(), _fooled(logits.detach(), labels, targeted)

    def project(point):
        return (clean + _project(point - clean, eps, norm)).clamp(0, 1)

    checkpoints = set(apgd_checkpoints(steps))
    step = torch.full((n,), 2.0 * eps, device=clean.device, dtype=clean.dtype)
    current = start.detach()
    grad, gain, fooled = evaluate(current)
    best_gain, best_point, best_grad = gain.clone(), current.clone(), grad.clone()
    adversarial = torch.where(_view(fooled, current), current, clean)
    previous = current
    increases = torch.zeros(n, device=clean.device, dtype=clean.dtype)
    halved_last = torch.zeros(n, dtype=torch.bool, device=clean.device)
    best_at_last = best_gain.clone()
    last_checkpoint, last_gain = 0, gain
    for k in range(steps):
        with torch.no_grad():
            # a projected gradient step, then momentum: mix it with the last move
            z = project(current + _step(grad, 1.0, norm) * _view(step, current))
            weight = momentum if k > 0 else 1.0
            moved = project(current + weight * (z - current) + (1 - weight) * (current - previous))
            previous, current = current, moved
        grad, gain, hit = evaluate(current)
        with torch.no_grad():
            adversarial = torch.where(_view(hit & ~fooled, current), current, adversarial)
            fooled = fooled | hit
            increases += (gain > last_gain).to(increases.dtype)
            last_gain = gain
            better = gain > best_gain
            best_gain = torch.where(better, gain, best_gain)
            best_point = torch.where(_view(better, current), current, best_point)
            best_grad = torch.where(_view(better, grad), grad, best_grad)
            if k + 1 in checkpoints:
                # halve where the loss rose in fewer than rho of the steps since the last
                # checkpoint, or where the step was kept and the best loss did not move
                length = k + 1 - last_checkpoint
                halve = (increases <= rho * length) | (~halved_last & (best_at_last >= best_gain))
                step = torch.where(halve, step / 2, step)
                current = torch.where(_view(halve, current), best_point, current)
                grad = torch.where(_view(halve, grad), best_grad, grad)
                halved_last, best_at_last = halve, best_gain.clone()
                increases = torch.zeros_like(increases)
                last_checkpoint = k + 1
    return torch.where(_view(fooled, current), adversarial, best_point), fooled


def _apgd_restarts(problem: _Problem, labels: torch.Tensor, *, eps: float, steps: int, norm: str,
                   loss: str, targeted: bool, restarts: int, rho: float, momentum: float,
                   random_start: bool, generator, result: torch.Tensor, fooled: torch.Tensor):
    """``restarts`` runs of APGD, each on the images no earlier run fooled."""
    for restart in range(restarts):
        # which images are left is data-dependent: one host synchronisation per restart
        left = (~fooled).nonzero().squeeze(1)
        if left.numel() == 0:
            break
        sub = _Problem(problem.members, problem.x[left], labels[left], targeted, problem.dtype)
        start = (_random_start(sub.x, eps, norm, generator) if random_start or restart > 0
                 else sub.x.clone())
        adv, hit = _apgd_run(sub, sub.y, start, eps=eps, steps=steps, norm=norm, loss=loss,
                             targeted=targeted, rho=rho, momentum=momentum)
        # images never fooled keep the strongest point found so far (the first run's, or this)
        take = hit | (restart == 0)
        result[left] = torch.where(_view(take, adv), adv, result[left])
        fooled[left] = hit
    return result, fooled


def _apgd_check(loss: str, rho, momentum) -> None:
    if loss not in ("ce", "dlr"):
        raise ValueError(f"loss must be 'ce' (cross-entropy) or 'dlr' (difference of logits "
                         f"ratio), got {loss!r}")
    _check_number("rho", rho)
    _check_number("momentum", momentum)
    if not (0 <= float(rho) <= 1 and 0 <= float(momentum) <= 1):
        raise ValueError(f"rho and momentum are fractions in [0, 1], got rho={rho}, "
                         f"momentum={momentum}")


def apgd(model: ModelLike, x: torch.Tensor, y: torch.Tensor | None = None, *, eps: float,
         steps: int = 100, norm: str = "linf", loss: str = "ce", restarts: int = 1,
         targeted: bool = False, random_start: bool = True, rho: float = 0.75,
         momentum: float = 0.75, generator: torch.Generator | None = None) -> torch.Tensor:
    """Auto-PGD (Croce & Hein 2020): PGD without a step size to tune.

    Starts with step ``2 * eps`` (from a random point of the ball unless
    ``random_start=False``); every step is a projected gradient step (sign for L-inf,
    ``g / ||g||_2`` for L2) mixed with the previous move, ``x <- P(x + momentum (z - x) +
    (1 - momentum)(x - x_prev))``.  At the checkpoints of :func:`apgd_checkpoints` an image's
    step is halved -- and it jumps back to its best point so far -- when its loss rose in at most
    ``rho`` of the steps since the last checkpoint, or when its step was not halved last time
    and its best loss has not improved since.  ``loss="ce"`` is APGD-CE; ``loss="dlr"`` the
    difference of logits ratio (:func:`_dlr`), with ``targeted=True`` the targeted DLR of
    APGD-T.  ``restarts`` runs from fresh random starts attack the images still standing.
    Returns, per image, the first point that fooled the model, else the point of highest loss.
    One host synchronisation per restart, none inside the steps.
    """
    _apgd_check(loss, rho, momentum)
    problem = _prepare(model, x, y, targeted=targeted, eps=eps, norm=norm,
                       steps=(steps, "count"), restarts=(restarts, "count1"))
    eps = float(eps)
    n = problem.x.shape[0]
    with frozen(model):
        result = problem.x.clone()
        fooled = torch.zeros(n, dtype=torch.bool, device=problem.x.device)
        result, _ = _apgd_restarts(problem, problem.y, eps=eps, steps=steps, norm=norm, loss=loss,
                                   targeted=targeted, restarts=restarts, rho=float(rho),
                                   momentum=float(momentum), random_start=random_start,
                                   generator=generator, result=result, fooled=fooled)
    return _finish(problem, x, result, eps, norm)


def apgd_targeted(model: ModelLike, x: torch.Tensor, y: torch.Tensor | None = None, *,
                  eps: float, steps: int = 100, norm: str = "linf", target_classes: int = 9,
                  restarts: int = 1, random_start: bool = True, rho: float = 0.75,
                  momentum: float = 0.75,
                  generator: torch.Generator | None = None) -> torch.Tensor:
    """APGD-T, AutoAttack's targeted rung: untargeted in its goal (``y`` the true labels).

    For the ``target_classes`` classes the model ranks highest on the clean image after its top
    one (the runner-up first), runs :func:`apgd` with the targeted DLR loss toward that class on
    the images no earlier target has fooled; an image counts as broken as soon as it is
    misclassified.  Returns the adversarial batch (the last target's best point where none
    worked).
    """
    _apgd_check("dlr", rho, momentum)
    problem = _prepare(model, x, y, targeted=False, eps=eps, norm=norm, steps=(steps, "count"),
                       restarts=(restarts, "count1"),
                       target_classes=(target_classes, "count1"))
    eps = float(eps)
    clean, labels = problem.x, problem.y
    with frozen(model):
        with torch.no_grad():
            logits = problem.logits(clean)
        classes = logits.shape[1]
        if target_classes > classes - 1:
            raise ValueError(f"target_classes must be at most the number of classes - 1 "
                             f"({classes - 1}), got {target_classes}")
        ranked = logits.sort(dim=1, descending=True).indices
        result = clean.clone()
        fooled = torch.zeros(clean.shape[0], dtype=torch.bool, device=clean.device)
        for rank in range(1, target_classes + 1):
            targets = ranked[:, rank]
            left = (~fooled).nonzero().squeeze(1)
            if left.numel() == 0:
                break
            sub = _Problem(problem.members, clean[left], targets[left], True, problem.dtype)
            adv = sub.x.clone()
            hit = torch.zeros(left.numel(), dtype=torch.bool, device=clean.device)
            adv, _ = _apgd_restarts(sub, sub.y, eps=eps, steps=steps, norm=norm, loss="dlr",
                                    targeted=True, restarts=restarts, rho=float(rho),
                                    momentum=float(momentum), random_start=random_start,
                                    generator=generator, result=adv, fooled=hit)
            with torch.no_grad():
                broken = _fooled(problem.logits(adv), labels[left], False)
            result[left] = adv
            fooled[left] = broken
    return _finish(problem, x, result, eps, norm)


__all__ += ["apgd", "apgd_targeted", "apgd_checkpoints"]
