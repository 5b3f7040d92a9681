"""One DANN training step, the thing lecture 04 teaches; :func:`utils.training.fit` runs it.

On a balanced batch (``n`` labelled source images, ``m`` unlabelled target images) the step
minimises

    label loss  = cross-entropy of G_y(G_f(x_s)) against y_s          (source only)
    domain loss = logistic loss of G_d(GRL(G_f(x))) against d          (both domains, d = 1 for target)

as one sum.  The gradient reversal layer makes that single descent a saddle-point step: G_y
and G_d descend their losses, while G_f descends the label loss and *ascends* lambda times the
domain loss.  Both domains go through the feature extractor in one forward pass, so batch norm
sees the mixed batch -- the same mixture its running statistics hold at test time.
"""

from __future__ import annotations

from typing import Callable

import torch
import torch.nn.functional as F

from utils.domain.grl import check_lambda, grad_reverse, scale_gradient
from utils.domain.schedules import dann_lambda


def check_batch(batch) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``(source_x, source_y, target_x)`` checked: same image shape, one label per source image."""
    if not isinstance(batch, (tuple, list)) or len(batch) != 3:
        raise ValueError("a DANN batch is a tuple (source_x, source_y, target_x), e.g. from "
                         "utils.domain.data.PairedBatches")
    xs, ys, xt = batch
    if not all(torch.is_tensor(t) for t in batch):
        raise ValueError("source_x, source_y and target_x must be tensors")
    if xs.ndim != 4 or xs.shape[1:] != xt.shape[1:]:
        raise ValueError(f"source and target images must be (N, C, H, W) with the same C, H, W; "
                         f"got {tuple(xs.shape)} and {tuple(xt.shape)} (make grey images colour "
                         "with utils.domain.data.to_rgb)")
    if ys.ndim != 1 or len(ys) != len(xs) or ys.dtype != torch.int64:
        raise ValueError(f"source_y must be int64 labels, one per source image: got "
                         f"{tuple(ys.shape)} {ys.dtype} for {len(xs)} images")
    return xs, ys, xt


def dann_loss(model, batch, lambda_, *, domain_weights=None,
              reverse: bool = True) -> tuple[torch.Tensor, dict]:
    """The DANN objective on one batch (label loss + domain loss through the GRL) and metrics.

    ``model`` has ``features``, ``classifier`` and ``domain`` (a :class:`~utils.domain.models.DANNNet`).
    The domain loss is the mean over all ``n + m`` images (each domain counts by its number of
    images), or, with ``domain_weights=(w_s, w_t)``, ``w_s`` times the mean over the source
    images plus ``w_t`` times the mean over the target images (``(0.5, 0.5)``: each domain
    counts the same, whatever ``n : m``).

    ``reverse=False`` is *joint training without reversal*, the naive baseline: the domain
    gradient reaches G_f multiplied by ``+lambda_``, so the features help the domain classifier.
    """
    xs, ys, xt = check_batch(batch)
    check_lambda(lambda_)
    features = model.features(torch.cat([xs, xt]))
    class_logits = model.classifier(features[:len(xs)])
    routed = grad_reverse(features, lambda_) if reverse else scale_gradient(features, 1.0, lambda_)
    domain_logits = model.domain(routed).squeeze(1)
    is_target = torch.cat([torch.zeros(len(xs), device=xs.device),
                           torch.ones(len(xt), device=xs.device)])
    label_loss = F.cross_entropy(class_logits, ys)
    if domain_weights is None:
        domain_loss = F.binary_cross_entropy_with_logits(domain_logits, is_target)
    else:
        w_source, w_target = domain_weights
        per_image = F.binary_cross_entropy_with_logits(domain_logits, is_target, reduction="none")
        domain_loss = w_source * per_image[:len(xs)].mean() + w_target * per_image[len(xs):].mean()
    metrics = {
        "label_loss": label_loss.detach(),
        "domain_loss": domain_loss.detach(),
        "label_acc": (class_logits.argmax(1) == ys).float().mean(),
        "domain_acc": ((domain_logits > 0).float() == is_target).float().mean(),
        "lambda": lambda_,
    }
    return label_loss + domain_loss, metrics


def dann_step(model, optimiser, batch, lambda_, *, domain_weights=None,
              reverse: bool = True) -> dict:
    """One training step on ``batch = (source_x, source_y, target_x)``; returns its metrics."""
    model.train()
    loss, metrics = dann_loss(model, batch, lambda_, domain_weights=domain_weights,
                              reverse=reverse)
    optimiser.zero_grad(set_to_none=True)
    loss.backward()
    optimiser.step()
    return metrics


def make_dann_step(model, optimiser, *, lambda_schedule: Callable[[float], float] = dann_lambda,
                   scheduler=None, reverse: bool = True):
    """A ``step(batch, p)`` for :func:`utils.training.fit`: λ follows ``lambda_schedule(p)``,
    and ``scheduler`` (e.g. the paper's learning-rate annealing) steps after every batch
    (``reverse=False``: joint training without reversal, see :func:`dann_loss`)."""

    def step(batch, p):
        metrics = dann_step(model, optimiser, batch, lambda_schedule(p), reverse=reverse)
        if scheduler is not None:
            scheduler.step()
        return metrics

    return step


def run_in_order(model, source_x: torch.Tensor, source_y: torch.Tensor, target_x: torch.Tensor, *,
                 batch_size: int, lr: float, optimiser: str = "sgd", momentum: float = 0.9,
                 adapt: bool = True, domain_weights=(0.5, 0.5)) -> dict[str, torch.Tensor]:
    """A short run with the paper's schedules on batches taken *in order*; the trained state.

    Step ``k`` (of ``steps = len(source_x) // batch_size``) uses rows ``k*B .. (k+1)*B`` of the
    source and of the target, progress ``p = k / steps``, ``lambda_p`` (:func:`dann_lambda`) and
    ``optimiser`` (``"sgd"`` with ``momentum``, or ``"adam"``) at ``lr * dann_lr_factor(p)``.
    ``adapt=False`` is the source-only run of the same length and budget: the same batches through the same network in train mode, the
    label loss alone.  ``model`` is trained in place and left in eval mode.
    """
    from utils.domain.schedules import dann_lr_factor

    steps = len(source_x) // batch_size
    if steps < 1 or len(target_x) < steps * batch_size or len(source_y) != len(source_x):
        raise ValueError("need at least one batch of source images, one label per source image "
                         "and as many target images as source images used")
    from utils.training import cross_entropy_loss, make_optimiser, optimiser_step

    optimiser = make_optimiser(model.parameters(), optimiser, lr=lr, momentum=momentum)
    source_only_step = optimiser_step(model, cross_entropy_loss, optimiser)
    for k in range(steps):
        p = k / steps
        for group in optimiser.param_groups:
            group["lr"] = lr * dann_lr_factor(p)
        rows = slice(k * batch_size, (k + 1) * batch_size)
        if adapt:
            dann_step(model, optimiser, (source_x[rows], source_y[rows], target_x[rows]),
                      dann_lambda(p), domain_weights=domain_weights)
        else:
            source_only_step((source_x[rows], source_y[rows]), p)
    model.eval()
    return {name: t.detach().clone() for name, t in model.state_dict().items()}
