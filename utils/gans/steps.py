"""The two players' steps, and a GAN step for :func:`utils.training.fit` (no loop of its own).

One round of training alternates

1. **the D step** -- D, a binary classifier, takes one optimiser step on its log-loss on a
   batch of real images (label 1) and a batch of G's samples (label 0).  G's samples are
   detached: this step must not reach G's parameters;
2. **the G step** -- G takes one step on its loss (minimax or non-saturating) of D's opinion of
   fresh samples.  The gradient flows *through* D into G, but only G's parameters are updated
   (``backward(inputs=G's parameters)`` does not even fill D's gradients).

:func:`gan_step` ties the two into the ``step(batch, p)`` that ``fit`` calls; :func:`train_gan`
is the usual set-up (Adam with DCGAN's beta1 = 0.5, seeded latent codes) around ``fit``.
"""

from __future__ import annotations

from typing import Iterable

import torch
from torch import nn

from utils.gans.losses import (DISCRIMINATOR_LOSSES, GAN_LOSSES, d_loss_kind, discriminator_loss,
                               generator_loss)
from utils.gans.models import DCGAN, latent
from utils.training import Batches, History, fit, make_optimiser


def _players(gan: nn.Module) -> tuple[nn.Module, nn.Module]:
    if not isinstance(gan, DCGAN):
        raise ValueError(f"expected a DCGAN (utils.gans.models), got {type(gan).__name__}")
    return gan.generator, gan.discriminator


def d_step(G: nn.Module, D: nn.Module, opt_D, real: torch.Tensor, z: torch.Tensor,
           kind: str = "log") -> dict:
    """One step of D on its loss (``kind``: "log", "hinge" or "least_squares", see
    :func:`~utils.gans.losses.discriminator_loss`): real images -> 1, G(z) (detached) -> 0.

    Returns ``{"loss_d", "d_real", "d_fake"}`` (tensors): the loss and D's mean probability of
    "real" on each half of the batch, before the step.
    """
    if kind not in DISCRIMINATOR_LOSSES:
        raise ValueError(f"kind must be one of {DISCRIMINATOR_LOSSES}, got {kind!r}")
    G.train(), D.train()
    fake = G(z).detach()
    real_logits, fake_logits = D(real), D(fake)
    loss = discriminator_loss(real_logits, fake_logits, kind)
    opt_D.zero_grad(set_to_none=True)
    loss.backward()
    opt_D.step()
    return {"loss_d": loss.detach(), "d_real": torch.sigmoid(real_logits).mean().detach(),
            "d_fake": torch.sigmoid(fake_logits).mean().detach()}


def g_step(G: nn.Module, D: nn.Module, opt_G, z: torch.Tensor,
           loss: str = "non_saturating") -> dict:
    """One step of G on ``generator_loss(D(G(z)), loss)``; D's parameters get no gradient.

    Returns ``{"loss_g", "d_fake_g"}``: G's loss and D's mean probability of "real" on the
    fresh samples, before the step.
    """
    if loss not in GAN_LOSSES:
        raise ValueError(f"loss must be one of {GAN_LOSSES}, got {loss!r}")
    G.train(), D.train()
    fake_logits = D(G(z))
    value = generator_loss(fake_logits, loss)
    opt_G.zero_grad(set_to_none=True)
    value.backward(inputs=list(G.parameters()))
    opt_G.step()
    return {"loss_g": value.detach(), "d_fake_g": torch.sigmoid(fake_logits).mean().detach()}


def gan_optimisers(gan: DCGAN, *, lr: float = 2e-4, betas=(0.5, 0.999)):
    """Adam for each player with DCGAN's settings (lr 2e-4, beta1 0.5): ``(opt_G, opt_D)``."""
    G, D = _players(gan)
    return (make_optimiser(G.parameters(), "adam", lr=lr, betas=betas),
            make_optimiser(D.parameters(), "adam", lr=lr, betas=betas))


def gan_step(gan: DCGAN, opt_G, opt_D, *, loss: str = "non_saturating",
             generator: torch.Generator | None = None):
    """The ``step(batch, p)`` for ``fit``: one D step, then one G step on fresh codes.

    ``batch`` is ``(real,)`` or ``(real, labels)`` (labels unused).  Latent codes come from
    ``generator`` (a :class:`torch.Generator`, on the images' device or the CPU), so a run is
    repeatable.  Returns the metrics of both steps.
    """
    kind = d_loss_kind(loss)          # D's loss of the pair: "log" for minimax / non-saturating
    G, D = _players(gan)

    def step(batch, p):
        real = batch[0]
        n = len(real)
        metrics = d_step(G, D, opt_D, real, latent(n, G.latent_dim, generator=generator,
                                                   device=real.device), kind)
        metrics.update(g_step(G, D, opt_G, latent(n, G.latent_dim, generator=generator,
                                                  device=real.device), loss))
        return metrics

    return step


def train_gan(gan: DCGAN, images: torch.Tensor, *, epochs: int = 1, steps: int | None = None,
              batch_size: int = 64, lr: float = 2e-4, betas=(0.5, 0.999),
              loss: str = "non_saturating", seed: int = 0,
              device: torch.device | str | None = None, description: str = "GAN",
              progress: bool = True) -> History:
    """Train both players of ``gan`` on ``images`` (``(N, 1, 28, 28)`` in [0, 1]) by ``fit``.

    Batches are shuffled and latent codes drawn from generators seeded by ``seed``; the models
    end in eval mode.  Returns the :class:`~utils.training.History` of the steps' metrics.
    """
    if not torch.is_tensor(images) or images.dim() != 4 or images.shape[1:] != (1, 28, 28):
        raise ValueError("images must be a tensor (N, 1, 28, 28) in [0, 1], got "
                         f"{tuple(images.shape) if torch.is_tensor(images) else type(images)}")
    device = torch.device(device) if device is not None else images.device
    gan.to(device)
    opt_G, opt_D = gan_optimisers(gan, lr=lr, betas=betas)
    codes = torch.Generator(device=device).manual_seed(seed)
    data: Iterable = Batches(images, batch_size=batch_size, seed=seed, device=device,
                             drop_last=True)
    history = fit(gan_step(gan, opt_G, opt_D, loss=loss, generator=codes), data, epochs=epochs,
                  steps=steps, description=description, progress=progress)
    gan.eval()
    return history


__all__ = ["d_step", "g_step", "gan_step", "gan_optimisers", "train_gan"]
