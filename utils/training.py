"""The course's one training loop, and the evaluation helpers every lecture uses.

Every model the kit trains -- a classifier, the face black box, a distilled student, a DANN, a
GAN, an invertible network -- goes through :func:`fit`: it walks the batches epoch by epoch,
shows one progress bar, hands each batch and the training progress ``p`` in [0, 1) to a *step*
function, and keeps the metrics the step returns.  What differs between the lectures is only the
step, and the step is what the lectures teach, so they write it out in the notebook.

:func:`train` is the common case, one model and one optimiser minimising
``loss_fn(model, batch, p)``; :func:`train_classifier` is cross-entropy on labelled images.
"""

from __future__ import annotations

import contextlib
import math
from typing import Callable, Iterable, Mapping, Sequence

import torch
import torch.nn.functional as F
from torch import nn

Step = Callable[[tuple, float], Mapping[str, torch.Tensor | float]]
LossFn = Callable[[nn.Module, tuple, float], "torch.Tensor | tuple[torch.Tensor, dict]"]


@contextlib.contextmanager
def evaluating(model: nn.Module):
    """Put ``model`` in eval mode for the ``with`` block, then back to the mode it was in."""
    was_training = model.training
    model.eval()
    try:
        yield model
    finally:
        model.train(was_training)


@torch.no_grad()
def outputs(model: nn.Module, inputs: torch.Tensor, *, batch_size: int = 1000) -> torch.Tensor:
    """``model(inputs)`` in eval mode, in batches, without gradients, on the inputs' device."""
    with evaluating(model):
        return torch.cat([model(inputs[i:i + batch_size])
                          for i in range(0, len(inputs), batch_size)])


@torch.no_grad()
def predict(model: nn.Module, images: torch.Tensor, *, batch_size: int = 1000) -> torch.Tensor:
    """Predicted labels of ``images`` (on the images' device), in batches, model in eval mode."""
    return outputs(model, images, batch_size=batch_size).argmax(1)


def accuracy(model: nn.Module, images: torch.Tensor, labels: torch.Tensor, *,
             batch_size: int = 1000) -> float:
    """Fraction of ``images`` that ``model`` classifies as ``labels``."""
    if len(images) != len(labels):
        raise ValueError(f"{len(images)} images but {len(labels)} labels")
    return (predict(model, images, batch_size=batch_size) == labels).float().mean().item()


# --------------------------------------------------------------------------------------------
# batches


class Batches:
    """Mini-batches of aligned tensors, reshuffled every epoch by a seeded generator.

    ``Batches(images, labels, batch_size=128)`` yields ``(x, y)`` tuples on ``device``; ``len``
    is the number of batches per epoch.  ``transform(batch, generator)``, when given, maps each
    batch (e.g. data augmentation) with the same generator, so a run is repeatable.
    """

    def __init__(self, *tensors: torch.Tensor, batch_size: int, shuffle: bool = True,
                 seed: int = 0, device: torch.device | str | None = None,
                 drop_last: bool = False, transform: Callable | None = None):
        if not tensors:
            raise ValueError("Batches needs at least one tensor")
        sizes = {len(t) for t in tensors}
        if len(sizes) != 1:
            raise ValueError(f"the tensors must have the same length, got {[len(t) for t in tensors]}")
        if not isinstance(batch_size, int) or batch_size < 1:
            raise ValueError(f"batch_size must be a positive int, got {batch_size!r}")
        self.tensors, self.batch_size, self.shuffle = tensors, batch_size, shuffle
        self.drop_last, self.transform = drop_last, transform
        self.device = torch.device(device) if device is not None else tensors[0].device
        self.generator = torch.Generator().manual_seed(seed)

    def __len__(self) -> int:
        n = len(self.tensors[0])
        return n // self.batch_size if self.drop_last else math.ceil(n / self.batch_size)

    def __iter__(self):
        n = len(self.tensors[0])
        order = torch.randperm(n, generator=self.generator) if self.shuffle else torch.arange(n)
        for i in range(len(self)):
            index = order[i * self.batch_size:(i + 1) * self.batch_size]
            batch = tuple(t[index.to(t.device)].to(self.device) for t in self.tensors)
            if self.transform is not None:
                batch = self.transform(batch, self.generator)
            yield batch


# --------------------------------------------------------------------------------------------
# the one loop


class History(dict):
    """``{metric: [value per step]}`` of a :func:`fit` run (plain floats)."""

    def last(self, metric: str, n: int = 1) -> float:
        """The mean of the last ``n`` values of ``metric``."""
        values = self[metric][-n:]
        return sum(values) / len(values)


def fit(step: Step, data: Iterable, *, epochs: int = 1, steps: int | None = None,
        description: str = "training", progress: bool = True) -> History:
    """Run ``step(batch, p)`` over ``data`` for ``epochs`` (or exactly ``steps`` batches).

    ``p`` is the share of training done before this step (0 at the first step), which the
    lecture-04 schedules need.  ``step`` returns a mapping of metrics (tensors stay on their
    device; they are read back once per epoch, not per step).  Returns the :class:`History`.
    """
    from tqdm.auto import tqdm

    per_epoch = len(data)
    if per_epoch == 0:
        raise ValueError("fit() got no batches: the data set is empty or smaller than a batch")
    if steps is None:
        if not isinstance(epochs, int) or epochs < 1:
            raise ValueError(f"epochs must be a positive int, got {epochs!r}")
        steps = epochs * per_epoch
    elif not isinstance(steps, int) or steps < 1:
        raise ValueError(f"steps must be a positive int, got {steps!r}")
    history: dict[str, list] = {}
    bar = tqdm(total=steps, desc=description, leave=False, disable=not progress)
    done = 0
    while done < steps:
        epoch_start = done
        for batch in data:
            metrics = step(batch, done / steps)
            for name, value in metrics.items():
                history.setdefault(name, []).append(value.detach() if torch.is_tensor(value)
                                                    else torch.tensor(float(value)))
            done += 1
            bar.update(1)
            if done == steps:
                break
        bar.set_postfix({name: f"{torch.stack(values[epoch_start:]).float().mean():.3g}"
                         for name, values in history.items()})
    bar.close()
    return History({name: torch.stack(values).float().cpu().tolist()
                    for name, values in history.items()})


# --------------------------------------------------------------------------------------------
# one model, one optimiser


def make_optimiser(parameters, name: str = "adam", *, lr: float, weight_decay: float = 0.0,
                   momentum: float = 0.9, betas: Sequence[float] = (0.9, 0.999)):
    """``adam``, ``adamw`` or ``sgd`` (with momentum) over ``parameters``."""
    if name == "adam":
        return torch.optim.Adam(parameters, lr=lr, weight_decay=weight_decay, betas=tuple(betas))
    if name == "adamw":
        return torch.optim.AdamW(parameters, lr=lr, weight_decay=weight_decay, betas=tuple(betas))
    if name == "sgd":
        return torch.optim.SGD(parameters, lr=lr, weight_decay=weight_decay, momentum=momentum)
    raise ValueError(f"optimiser must be 'adam', 'adamw' or 'sgd', got {name!r}")


def make_schedule(optimiser, schedule, total_steps: int):
    """A per-step learning-rate schedule: ``"onecycle"``, ``"cosine"``, ``"constant"``, or a
    function ``factor(p)`` of the training progress ``p`` in [0, 1) (e.g. DANN's annealing)."""
    if schedule == "onecycle":
        return torch.optim.lr_scheduler.OneCycleLR(
            optimiser, max_lr=[g["lr"] for g in optimiser.param_groups], total_steps=total_steps)
    if schedule == "cosine":
        return torch.optim.lr_scheduler.CosineAnnealingLR(optimiser, T_max=total_steps)
    if schedule == "constant":
        return torch.optim.lr_scheduler.LambdaLR(optimiser, lambda _: 1.0)
    if callable(schedule):
        return torch.optim.lr_scheduler.LambdaLR(optimiser, lambda i: schedule(i / total_steps))
    raise ValueError("schedule must be 'onecycle', 'cosine', 'constant' or a function of the "
                     f"progress p in [0, 1), got {schedule!r}")


def optimiser_step(model: nn.Module, loss_fn: LossFn, optimiser, scheduler=None) -> Step:
    """The usual step: ``loss_fn(model, batch, p)``, backward, optimiser and schedule step.

    ``loss_fn`` returns the loss, or ``(loss, metrics)`` to log more than the loss.
    """

    def step(batch, p):
        model.train()
        out = loss_fn(model, batch, p)
        loss, metrics = out if isinstance(out, tuple) else (out, {})
        optimiser.zero_grad(set_to_none=True)
        loss.backward()
        optimiser.step()
        if scheduler is not None:
            scheduler.step()
        return {"loss": loss.detach(), **metrics}

    return step


def train(model: nn.Module, loss_fn: LossFn, data: Iterable, *, epochs: int = 1,
          steps: int | None = None, lr: float = 1e-3, optimiser: str = "adam",
          weight_decay: float = 0.0, schedule="onecycle", seed: int = 0,
          device: torch.device | str | None = None, description: str = "training",
          progress: bool = True) -> History:
    """Minimise ``loss_fn(model, batch, p)`` over ``data`` with one optimiser; model ends in eval.

    Seeds PyTorch's global generator with ``seed`` (dropout, initial noise) so a recipe run twice
    gives the same model on the same device.
    """
    torch.manual_seed(seed)
    if device is not None:
        model.to(device)
    total = steps if steps is not None else epochs * len(data)
    opt = make_optimiser([p for p in model.parameters() if p.requires_grad], optimiser,
                         lr=lr, weight_decay=weight_decay)
    history = fit(optimiser_step(model, loss_fn, opt, make_schedule(opt, schedule, total)), data,
                  epochs=epochs, steps=steps, description=description, progress=progress)
    model.eval()
    return history


def cross_entropy_loss(model: nn.Module, batch: tuple, p: float = 0.0) -> torch.Tensor:
    """The classifier's loss on a batch ``(x, y)``."""
    x, y = batch
    return F.cross_entropy(model(x), y)


def train_classifier(
    model: nn.Module,
    images: torch.Tensor,
    labels: torch.Tensor,
    *,
    epochs: int,
    lr: float = 1e-3,
    batch_size: int = 128,
    weight_decay: float = 0.0,
    seed: int = 0,
    device: torch.device | str = "cpu",
    perturb: Callable[[nn.Module, torch.Tensor, torch.Tensor], torch.Tensor] | None = None,
    description: str = "training",
) -> nn.Module:
    """Train ``model`` with Adam and a one-cycle schedule on cross-entropy; returns it in eval.

    ``perturb(model, x, y)``, when given, replaces each batch by its adversarial version before
    the step: this is adversarial training (Madry et al.).
    """

    def loss_fn(net, batch, p):
        x, y = batch
        if perturb is not None:
            x = perturb(net, x, y)
            net.train()
        return F.cross_entropy(net(x), y)

    data = Batches(images, labels, batch_size=batch_size, seed=seed, device=device)
    train(model, loss_fn, data, epochs=epochs, lr=lr, weight_decay=weight_decay, seed=seed,
          device=device, description=description)
    return model
