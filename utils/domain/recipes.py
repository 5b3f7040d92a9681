"""Zoo recipes of lecture 04: source-only, DANN and target-trained oracle, trained alike.

All three use the same architecture (:func:`utils.domain.models.domain_net`), the same
optimiser (Adam; the paper's SGD with momentum is an option), the paper's learning-rate
annealing ``mu_0 / (1 + 10 p) ** 0.75``, the same number of steps and batch size -- they differ
only in what they learn from:

- source-only: labelled source images (Fashion-MNIST);
- DANN: labelled source images plus *unlabelled* target images (Fashion-M), through the GRL;
- oracle: labelled target images (what DANN would reach with the target labels it lacks).

Each prints the accuracy on the source test set, on the held-out target validation set and on
the target test set.  Lecture 04 checks the settings in :mod:`utils.zoo_entries` without target
labels, by reverse validation (``benchmarks/domain_selection.py``); the test set never chose them.
"""

from __future__ import annotations

import functools

import torch
import torch.nn.functional as F
from torch import nn

from utils.domain import data
from utils.domain.schedules import dann_lambda, dann_lr_factor
from utils.domain.step import make_dann_step
from utils.training import Batches, History, accuracy, fit, make_optimiser, make_schedule


def reinitialise(model: nn.Module, seed: int) -> nn.Module:
    """Draw every layer's initial weights again from ``seed`` (repeatable recipes)."""
    torch.manual_seed(seed)
    for module in model.modules():
        if hasattr(module, "reset_parameters"):
            module.reset_parameters()
    return model


def report(model: nn.Module, device) -> dict[str, float]:
    """Accuracy on the source test set and on the target validation and test sets."""
    scores = {}
    for name, (x, y) in {"source test": data.source("test", device=device),
                         "target validation": data.target("validation", device=device),
                         "target test": data.target("test", device=device)}.items():
        scores[name] = accuracy(model, x, y)
    print("  " + ", ".join(f"{name} accuracy {value:.4f}" for name, value in scores.items()))
    return scores


def _optimiser(model, steps, *, optimiser, lr, weight_decay):
    """``optimiser`` ("adam" or "sgd" with momentum 0.9) with the paper's annealing of ``lr``."""
    made = make_optimiser(model.parameters(), optimiser, lr=lr, weight_decay=weight_decay)
    return made, make_schedule(made, dann_lr_factor, steps)


def train_supervised(model: nn.Module, device, images: torch.Tensor, labels: torch.Tensor, *,
                     steps: int, batch_size: int = 64, optimiser: str = "adam",
                     lr: float = 1e-3, weight_decay: float = 5e-4, seed: int = 0,
                     description: str = "supervised", fresh: bool = True,
                     progress: bool = True) -> History:
    """Cross-entropy on labelled images with the same optimiser and annealing as DANN.

    ``fresh=False`` keeps the model's weights (fine-tuning) instead of drawing them from ``seed``;
    the batches are drawn from ``seed`` either way."""
    model.to(device)
    if fresh:
        reinitialise(model, seed)
    optimiser, scheduler = _optimiser(model, steps, optimiser=optimiser, lr=lr,
                                      weight_decay=weight_decay)

    def step(batch, p):
        x, y = batch
        model.train()
        logits = model(x)
        loss = F.cross_entropy(logits, y)
        optimiser.zero_grad(set_to_none=True)
        loss.backward()
        optimiser.step()
        scheduler.step()
        return {"label_loss": loss.detach(), "label_acc": (logits.argmax(1) == y).float().mean()}

    batches = Batches(images, labels, batch_size=batch_size, seed=seed, device=device,
                      drop_last=True)
    history = fit(step, batches, steps=steps, description=description, progress=progress)
    model.eval()
    return history


def train_dann(model: nn.Module, device, *, steps: int, batch_size: int = 64,
               optimiser: str = "adam", lr: float = 1e-3, weight_decay: float = 5e-4,
               lambda_max: float = 1.0, gamma: float = 10.0,
               seed: int = 0, target_x: torch.Tensor | None = None, reverse: bool = True,
               progress: bool = True) -> History:
    """DANN from scratch: balanced batches of labelled source and unlabelled target images
    (``target_x``: another unlabelled target than Fashion-M's train part; ``reverse=False``:
    joint training without reversal, the naive baseline)."""
    reinitialise(model.to(device), seed)
    optimiser, scheduler = _optimiser(model, steps, optimiser=optimiser, lr=lr,
                                      weight_decay=weight_decay)
    xs, ys = data.source("train", device=device)
    xt = data.target("train", device=device)[0] if target_x is None else target_x
    batches = data.PairedBatches(xs, ys, xt, batch_size=batch_size, seed=seed, device=device)
    schedule = functools.partial(dann_lambda, gamma=gamma, lambda_max=lambda_max)
    history = fit(make_dann_step(model, optimiser, lambda_schedule=schedule, scheduler=scheduler,
                                 reverse=reverse),
                  batches, steps=steps, description="DANN", progress=progress)
    model.eval()
    return history


# --- the zoo's recipes: recipe(model, device, **options) -> trained model --------------------


def source_only(model: nn.Module, device, **options) -> nn.Module:
    """Trained on labelled Fashion-MNIST alone; evaluated on Fashion-M."""
    xs, ys = data.source("train", device=device)
    train_supervised(model, device, xs, ys, description="source only", **options)
    report(model, device)
    return model


def dann(model: nn.Module, device, **options) -> nn.Module:
    """DANN: labelled Fashion-MNIST plus unlabelled Fashion-M (train part)."""
    train_dann(model, device, **options)
    report(model, device)
    return model


def oracle(model: nn.Module, device, **options) -> nn.Module:
    """Trained on labelled Fashion-M (train part): the ceiling DANN is measured against."""
    xt, yt = data.target("train", device=device)
    train_supervised(model, device, xt, yt, description="target oracle", **options)
    report(model, device)
    return model


def dann_label_shift(model: nn.Module, device, **options) -> nn.Module:
    """DANN whose unlabelled target has other class proportions than the source (label shift)."""
    shifted_x, _ = data.target_label_shifted("train", device=device)
    train_dann(model, device, target_x=shifted_x, **options)
    report(model, device)
    x, y = data.target_label_shifted("test", device=device)
    print(f"  label-shifted target test accuracy {accuracy(model, x, y):.4f}")
    return model
