"""Training and evaluation loops shared by the checkpoint recipes of :mod:`utils.zoo`.

Kept small and explicit, in the style of the PyTorch tutorials: one function to train a
classifier (optionally on adversarial examples), one to evaluate it.
"""

from __future__ import annotations

import contextlib
from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn


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
def predict(model: nn.Module, images: torch.Tensor, *, batch_size: int = 1000) -> torch.Tensor:
    """Predicted labels of ``images`` (on the images' device), in batches, model in eval mode."""
    with evaluating(model):
        return torch.cat([model(images[i:i + batch_size]).argmax(1)
                          for i in range(0, len(images), batch_size)])


def accuracy(model: nn.Module, images: torch.Tensor, labels: torch.Tensor, *,
             batch_size: int = 1000) -> float:
    """Fraction of ``images`` that ``model`` classifies as ``labels``."""
    if len(images) != len(labels):
        raise ValueError(f"{len(images)} images but {len(labels)} labels")
    return (predict(model, images, batch_size=batch_size) == labels).float().mean().item()


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
    """Train ``model`` with Adam and a cosine learning-rate schedule, showing a progress bar.

    ``perturb(model, x, y)``, when given, replaces each batch by (a mix with) its adversarial
    version before the step: this is adversarial training (Madry et al.).  Returns the model
    in eval mode.
    """
    from tqdm.auto import tqdm

    generator = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    model.to(device).train()
    optimiser = torch.optim.Adam(model.parameters(), lr=lr, weight_decay=weight_decay)
    steps_per_epoch = (len(images) + batch_size - 1) // batch_size
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimiser, max_lr=lr,
                                                   total_steps=epochs * steps_per_epoch)
    bar = tqdm(total=epochs * steps_per_epoch, desc=description, leave=False)
    for epoch in range(epochs):
        order = torch.randperm(len(images), generator=generator)
        for start in range(0, len(images), batch_size):
            index = order[start:start + batch_size]
            x, y = images[index].to(device), labels[index].to(device)
            if perturb is not None:
                x = perturb(model, x, y)
                model.train()
            loss = F.cross_entropy(model(x), y)
            optimiser.zero_grad(set_to_none=True)
            loss.backward()
            optimiser.step()
            schedule.step()
            bar.update(1)
        bar.set_postfix(epoch=epoch + 1, loss=f"{loss.item():.3f}")
    bar.close()
    return model.eval()
