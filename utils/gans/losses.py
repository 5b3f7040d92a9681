"""The GAN losses of Goodfellow et al. (2014), written on D's logits.

The game is

    min_G max_D  E_x[log D(x)] + E_z[log(1 - D(G(z)))],      D(x) = sigmoid(logit(x)).

*D's side* is the log-loss (binary cross-entropy) of a classifier that labels real images 1 and
generated ones 0: maximising the value above is minimising that log-loss.

*G's side*, taken literally ("minimax"), minimises E_z[log(1 - D(G(z)))].  Early in training D
rejects G's samples easily, D(G(z)) -> 0, and there this loss is flat: its gradient through the
sigmoid is -D(G(z)), which vanishes.  The *non-saturating* fix maximises E_z[log D(G(z))] instead
(minimises -log D(G(z))): the same fixed point, but a gradient of -(1 - D(G(z))) -> -1 exactly where
G is bad.

All three are binary cross-entropies on D's logits (``F.binary_cross_entropy_with_logits``, which
never takes the log of 0): D's loss is BCE(real, 1) + BCE(fake, 0); the non-saturating G loss is
BCE(fake, 1) -- G asks D to call its samples real; the minimax G loss is -BCE(fake, 0) -- G
maximises D's own error on its samples.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

GENERATOR_LOSSES = ("minimax", "non_saturating")


def _logits(value, name: str) -> torch.Tensor:
    if not torch.is_tensor(value) or not value.is_floating_point():
        raise ValueError(f"{name} must be a float tensor of D's logits, got {type(value).__name__}"
                         f"{'' if not torch.is_tensor(value) else ' of dtype ' + str(value.dtype)}")
    if value.numel() == 0:
        raise ValueError(f"{name} is empty: pass the logits of at least one image")
    return value


def discriminator_loss(real_logits: torch.Tensor, fake_logits: torch.Tensor) -> torch.Tensor:
    """D's log-loss: -E[log D(x)] - E[log(1 - D(G(z)))] (real labelled 1, generated 0).

    The negative of the game's value, so D *minimises* it: ``BCE(real_logits, 1) +
    BCE(fake_logits, 0)``, each averaged over its batch (patch logits of any shape work too).
    """
    real_logits = _logits(real_logits, "real_logits")
    fake_logits = _logits(fake_logits, "fake_logits")
    return (F.binary_cross_entropy_with_logits(real_logits, torch.ones_like(real_logits))
            + F.binary_cross_entropy_with_logits(fake_logits, torch.zeros_like(fake_logits)))


def generator_loss(fake_logits: torch.Tensor, kind: str = "non_saturating") -> torch.Tensor:
    """G's loss on D's logits of generated images; G minimises it.

    ``"minimax"``: E[log(1 - D(G(z)))] (the game's own term; saturates when D wins);
    ``"non_saturating"``: -E[log D(G(z))] (Goodfellow et al.'s fix).
    """
    fake_logits = _logits(fake_logits, "fake_logits")
    if kind == "minimax":
        return -F.binary_cross_entropy_with_logits(fake_logits, torch.zeros_like(fake_logits))
    if kind == "non_saturating":
        return F.binary_cross_entropy_with_logits(fake_logits, torch.ones_like(fake_logits))
    raise ValueError(f"kind must be one of {GENERATOR_LOSSES}, got {kind!r}")


def d_of_logits(logits: torch.Tensor) -> torch.Tensor:
    """D(x) = sigmoid(logit): D's probability that an image is real."""
    return torch.sigmoid(logits)


__all__ = ["GENERATOR_LOSSES", "discriminator_loss", "generator_loss", "d_of_logits"]
