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

**Two later losses** change D's side as well, so each names a pair (D's loss, G's loss), on D's
raw output ("score") rather than a probability:

- *hinge* (Lim & Ye 2017; Miyato et al. 2018, SN-GAN; BigGAN): D minimises
  E[max(0, 1 - D(x))] + E[max(0, 1 + D(G(z)))] -- a margin classifier that stops pushing once a
  real score is above +1 and a fake one below -1 -- and G minimises -E[D(G(z))];
- *least squares* (Mao et al. 2017, LSGAN, with a = 0, b = c = 1): D regresses real scores onto 1
  and fake ones onto 0, 1/2 E[(D(x) - 1)^2] + 1/2 E[D(G(z))^2], and G pulls its scores to 1,
  1/2 E[(D(G(z)) - 1)^2]; the gradient never saturates, it grows with the distance.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

GENERATOR_LOSSES = ("minimax", "non_saturating")          # the two of Goodfellow et al.
VARIANT_LOSSES = ("hinge", "least_squares")               # a D loss and a G loss each
GAN_LOSSES = GENERATOR_LOSSES + VARIANT_LOSSES            # every name g_step accepts
DISCRIMINATOR_LOSSES = ("log", "hinge", "least_squares")


def d_loss_kind(loss: str) -> str:
    """D's loss that goes with the GAN loss ``loss``: "log" for minimax and non-saturating."""
    if loss not in GAN_LOSSES:
        raise ValueError(f"loss must be one of {GAN_LOSSES}, got {loss!r}")
    return loss if loss in VARIANT_LOSSES else "log"


def _logits(value, name: str) -> torch.Tensor:
    if not torch.is_tensor(value) or not value.is_floating_point():
        raise ValueError(f"{name} must be a float tensor of D's logits, got {type(value).__name__}"
                         f"{'' if not torch.is_tensor(value) else ' of dtype ' + str(value.dtype)}")
    if value.numel() == 0:
        raise ValueError(f"{name} is empty: pass the logits of at least one image")
    return value


def discriminator_loss(real_logits: torch.Tensor, fake_logits: torch.Tensor,
                       kind: str = "log") -> torch.Tensor:
    """D's loss on its outputs for real and generated images; D minimises it.

    ``"log"`` (default): the log-loss -E[log D(x)] - E[log(1 - D(G(z)))] (real labelled 1,
    generated 0), the negative of the game's value: ``BCE(real_logits, 1) + BCE(fake_logits, 0)``.
    ``"hinge"``: E[max(0, 1 - real)] + E[max(0, 1 + fake)].  ``"least_squares"``:
    1/2 E[(real - 1)^2] + 1/2 E[fake^2].  Each term is averaged over its own batch (patch outputs
    of any shape work too).
    """
    real_logits = _logits(real_logits, "real_logits")
    fake_logits = _logits(fake_logits, "fake_logits")
    if kind == "hinge":
        return F.relu(1 - real_logits).mean() + F.relu(1 + fake_logits).mean()
    if kind == "least_squares":
        return 0.5 * (real_logits - 1).pow(2).mean() + 0.5 * fake_logits.pow(2).mean()
    if kind != "log":
        raise ValueError(f"kind must be one of {DISCRIMINATOR_LOSSES}, got {kind!r}")
    return (F.binary_cross_entropy_with_logits(real_logits, torch.ones_like(real_logits))
            + F.binary_cross_entropy_with_logits(fake_logits, torch.zeros_like(fake_logits)))


def generator_loss(fake_logits: torch.Tensor, kind: str = "non_saturating") -> torch.Tensor:
    """G's loss on D's logits of generated images; G minimises it.

    ``"minimax"``: E[log(1 - D(G(z)))] (the game's own term; saturates when D wins);
    ``"non_saturating"``: -E[log D(G(z))] (Goodfellow et al.'s fix);
    ``"hinge"``: -E[D(G(z))] on raw scores; ``"least_squares"``: 1/2 E[(D(G(z)) - 1)^2].
    """
    fake_logits = _logits(fake_logits, "fake_logits")
    if kind == "hinge":
        return -fake_logits.mean()
    if kind == "least_squares":
        return 0.5 * (fake_logits - 1).pow(2).mean()
    if kind == "minimax":
        return -F.binary_cross_entropy_with_logits(fake_logits, torch.zeros_like(fake_logits))
    if kind == "non_saturating":
        return F.binary_cross_entropy_with_logits(fake_logits, torch.ones_like(fake_logits))
    raise ValueError(f"kind must be one of {GAN_LOSSES}, got {kind!r}")


def d_of_logits(logits: torch.Tensor) -> torch.Tensor:
    """D(x) = sigmoid(logit): D's probability that an image is real."""
    return torch.sigmoid(logits)


__all__ = ["GENERATOR_LOSSES", "VARIANT_LOSSES", "GAN_LOSSES", "DISCRIMINATOR_LOSSES",
           "d_loss_kind", "discriminator_loss", "generator_loss", "d_of_logits"]
