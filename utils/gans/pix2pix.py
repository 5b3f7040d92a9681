"""The discriminator as a learned loss (the pix2pix idea, Isola et al. 2017) on a small task.

**The task: de-blurring Fashion-MNIST.**  The input is a garment blurred by a Gaussian of
standard deviation ``SIGMA`` pixels, the target is the sharp original.  Many sharp images blur
to nearly the same input (the knit of a pullover, the print on a T-shirt, the stitching of a bag
are gone), so a per-pixel loss cannot ask for "the" answer: L1 is minimised by the per-pixel
*median* of the plausible answers, which is smooth where they disagree.

**The learned loss.**  pix2pix adds a discriminator that sees the input together with a
candidate output and says whether the pair is real; G minimises

    L1_WEIGHT * |G(x) - y|_1  +  non-saturating GAN loss of D(x, G(x)).

D is a *PatchGAN*: fully convolutional, one real/fake logit per overlapping patch (here 7x7
patches of about 18x18 pixels), so it judges local texture and leaves global layout to L1.
When training ends the discriminator is thrown away: it was only ever a loss function.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from utils.gans.losses import discriminator_loss, generator_loss
from utils.training import Batches, History, fit, make_optimiser, outputs

SIGMA = 1.5
L1_WEIGHT = 100.0


# --------------------------------------------------------------------------------------------
# the degradation


def gaussian_kernel(sigma: float, *, device=None, dtype=torch.float32) -> torch.Tensor:
    """A normalised 1-D Gaussian of radius ceil(3 sigma): ``(2 r + 1,)``."""
    if not isinstance(sigma, (int, float)) or not math.isfinite(sigma) or sigma <= 0:
        raise ValueError(f"sigma must be a positive number of pixels, got {sigma!r}")
    radius = max(1, math.ceil(3 * sigma))
    t = torch.arange(-radius, radius + 1, device=device, dtype=dtype)
    kernel = torch.exp(-t ** 2 / (2 * sigma ** 2))
    return kernel / kernel.sum()


def blur(images: torch.Tensor, sigma: float = SIGMA) -> torch.Tensor:
    """Gaussian blur of ``(N, C, H, W)`` images (separable, reflecting the border), same device."""
    if not torch.is_tensor(images) or images.dim() != 4 or not images.is_floating_point():
        raise ValueError("images must be a float tensor (N, C, H, W), got "
                         f"{tuple(images.shape) if torch.is_tensor(images) else type(images).__name__}")
    kernel = gaussian_kernel(sigma, device=images.device, dtype=images.dtype)
    r, c = len(kernel) // 2, images.shape[1]
    if r >= min(images.shape[-2:]):
        raise ValueError(f"sigma {sigma} is too large for {tuple(images.shape[-2:])} images")
    out = F.pad(images, (r, r, 0, 0), mode="reflect")
    out = F.conv2d(out, kernel.view(1, 1, 1, -1).repeat(c, 1, 1, 1), groups=c)
    out = F.pad(out, (0, 0, r, r), mode="reflect")
    return F.conv2d(out, kernel.view(1, 1, -1, 1).repeat(c, 1, 1, 1), groups=c)


def unsharp_mask(images: torch.Tensor, amount: float, sigma: float = 1.0) -> torch.Tensor:
    """The classic hand-made sharpener: ``x + amount * (x - blur(x, sigma))``, clipped to [0, 1].

    No learning and no knowledge of garments: it only steepens the edges the image already has.
    The control for any claim that a learned restorer is "sharper".
    """
    if not isinstance(amount, (int, float)) or not math.isfinite(amount) or amount < 0:
        raise ValueError(f"amount must be a finite number >= 0, got {amount!r}")
    return (images + amount * (images - blur(images, sigma))).clamp(0, 1)


def unsharp_amount_for(images: torch.Tensor, target: float, sigma: float = 1.0, *,
                       high: float = 64.0, iterations: int = 40) -> float:
    """The ``amount`` at which :func:`unsharp_mask` of ``images`` has a mean Laplacian variance of
    ``target`` (bisection: the variance grows with the amount); ``high`` if even that falls short."""
    from utils.gans.metrics import laplacian_variance

    def level(amount: float) -> float:
        return laplacian_variance(unsharp_mask(images, amount, sigma)).mean().item()

    if level(0.0) >= target:
        return 0.0
    low, top = 0.0, float(high)
    if level(top) < target:
        return top
    for _ in range(iterations):
        middle = (low + top) / 2
        low, top = (middle, top) if level(middle) < target else (low, middle)
    return (low + top) / 2


def deblur_pairs(sharp: torch.Tensor, sigma: float = SIGMA) -> tuple[torch.Tensor, torch.Tensor]:
    """``(blurred, sharp)``: the task's input and target for a batch of sharp images."""
    return blur(sharp, sigma), sharp


# --------------------------------------------------------------------------------------------
# the two networks


class DeblurNet(nn.Module):
    """A small U-Net: blurred ``(N, 1, 28, 28)`` -> sharp guess in [0, 1].

    Two strided-conv downs (28 -> 14 -> 7), two transposed-conv ups with skip connections, so
    fine detail need not squeeze through the 7x7 bottleneck.
    """

    def __init__(self, width: int = 16):
        super().__init__()
        if width < 1:
            raise ValueError(f"width must be positive, got {width}")
        w = width
        self.enc1 = nn.Sequential(nn.Conv2d(1, w, 3, 1, 1), nn.LeakyReLU(0.2))
        self.enc2 = nn.Sequential(nn.Conv2d(w, 2 * w, 4, 2, 1, bias=False), nn.BatchNorm2d(2 * w),
                                  nn.LeakyReLU(0.2))
        self.enc3 = nn.Sequential(nn.Conv2d(2 * w, 4 * w, 4, 2, 1, bias=False),
                                  nn.BatchNorm2d(4 * w), nn.LeakyReLU(0.2))
        self.dec2 = nn.Sequential(nn.ConvTranspose2d(4 * w, 2 * w, 4, 2, 1, bias=False),
                                  nn.BatchNorm2d(2 * w), nn.ReLU())
        self.dec1 = nn.Sequential(nn.ConvTranspose2d(4 * w, w, 4, 2, 1, bias=False),
                                  nn.BatchNorm2d(w), nn.ReLU())
        self.out = nn.Sequential(nn.Conv2d(2 * w, 1, 3, 1, 1), nn.Sigmoid())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() != 4 or x.shape[1] != 1 or x.shape[-1] % 4 or x.shape[-2] % 4:
            raise ValueError(f"DeblurNet takes (N, 1, H, W) images with H, W multiples of 4, "
                             f"got {tuple(x.shape)}")
        e1 = self.enc1(2 * x - 1)
        e2 = self.enc2(e1)
        d2 = self.dec2(self.enc3(e2))
        d1 = self.dec1(torch.cat([d2, e2], 1))
        return self.out(torch.cat([d1, e1], 1))


class PatchDiscriminator(nn.Module):
    """Conditional PatchGAN: (input, candidate) -> one logit per patch, ``(N, 1, H/4, W/4)``."""

    def __init__(self, width: int = 16):
        super().__init__()
        if width < 1:
            raise ValueError(f"width must be positive, got {width}")
        w = width
        self.body = nn.Sequential(
            nn.Conv2d(2, w, 4, 2, 1), nn.LeakyReLU(0.2),                                 # 14
            nn.Conv2d(w, 2 * w, 4, 2, 1, bias=False), nn.BatchNorm2d(2 * w), nn.LeakyReLU(0.2),
            nn.Conv2d(2 * w, 1, 3, 1, 1),                                                # 7x7
        )

    def forward(self, condition: torch.Tensor, candidate: torch.Tensor) -> torch.Tensor:
        if condition.shape != candidate.shape or condition.dim() != 4 or condition.shape[1] != 1:
            raise ValueError(f"condition and candidate must both be (N, 1, H, W), got "
                             f"{tuple(condition.shape)} and {tuple(candidate.shape)}")
        return self.body(torch.cat([2 * condition - 1, 2 * candidate - 1], 1))


def deblur_generator() -> DeblurNet:
    """The zoo's de-blurring U-Net (width 16, ~0.09 M parameters)."""
    return DeblurNet(16)


def patch_discriminator() -> PatchDiscriminator:
    """The PatchGAN used as a learned loss while training (width 16)."""
    return PatchDiscriminator(16)


# --------------------------------------------------------------------------------------------
# the step and its training


def pix2pix_step(G: nn.Module, D: nn.Module | None, opt_G, opt_D=None, *,
                 l1_weight: float = L1_WEIGHT, adversarial_weight: float = 1.0):
    """The ``step(batch, p)`` for ``fit`` on batches ``(blurred, sharp)``.

    With a discriminator: one D step (log-loss on real pairs vs G's pairs, G's output detached),
    then one G step on ``l1_weight * L1 + adversarial_weight * non-saturating loss``.  With
    ``D=None`` (or ``adversarial_weight=0``) it is plain L1 regression: the baseline.
    """
    adversarial = D is not None and adversarial_weight > 0
    if adversarial and opt_D is None:
        raise ValueError("a discriminator needs its optimiser opt_D")
    if l1_weight < 0 or adversarial_weight < 0:
        raise ValueError(f"weights must be >= 0, got l1_weight={l1_weight}, "
                         f"adversarial_weight={adversarial_weight}")

    def step(batch, p):
        blurred, sharp = batch
        G.train()
        fake = G(blurred)
        metrics = {}
        if adversarial:
            D.train()
            real_logits, fake_logits = D(blurred, sharp), D(blurred, fake.detach())
            loss_d = discriminator_loss(real_logits, fake_logits)
            opt_D.zero_grad(set_to_none=True)
            loss_d.backward()
            opt_D.step()
            metrics = {"loss_d": loss_d.detach(),
                       "d_real": torch.sigmoid(real_logits).mean().detach(),
                       "d_fake": torch.sigmoid(fake_logits).mean().detach()}
        l1 = (fake - sharp).abs().mean()
        loss_g = l1_weight * l1
        if adversarial:
            adv = generator_loss(D(blurred, fake), "non_saturating")
            loss_g = loss_g + adversarial_weight * adv
            metrics["adv_g"] = adv.detach()
        opt_G.zero_grad(set_to_none=True)
        loss_g.backward(inputs=list(G.parameters()))
        opt_G.step()
        return {"l1": l1.detach(), **metrics}

    return step


def train_deblur(G: nn.Module, sharp_images: torch.Tensor, *, adversarial_weight: float,
                 steps: int, batch_size: int = 64, lr: float = 2e-4, sigma: float = SIGMA,
                 l1_weight: float = L1_WEIGHT, seed: int = 0,
                 device: torch.device | str | None = None, description: str = "pix2pix",
                 progress: bool = True) -> History:
    """Train ``G`` to undo the blur, with (``adversarial_weight`` > 0) or without a PatchGAN.

    Adam with beta1 0.5 for both players, as in pix2pix.  The discriminator is made here (seeded
    by ``seed``) and dropped at the end.  Returns the history; G ends in eval mode.
    """
    device = torch.device(device) if device is not None else sharp_images.device
    G.to(device)
    torch.manual_seed(seed)
    D = patch_discriminator().to(device) if adversarial_weight > 0 else None
    opt_G = make_optimiser(G.parameters(), "adam", lr=lr, betas=(0.5, 0.999))
    opt_D = make_optimiser(D.parameters(), "adam", lr=lr, betas=(0.5, 0.999)) if D else None
    data = Batches(sharp_images, batch_size=batch_size, seed=seed, device=device, drop_last=True,
                   transform=lambda batch, generator: deblur_pairs(batch[0], sigma))
    history = fit(pix2pix_step(G, D, opt_G, opt_D, l1_weight=l1_weight,
                               adversarial_weight=adversarial_weight),
                  data, steps=steps, description=description, progress=progress)
    G.eval()
    return history


@torch.no_grad()
def restore(G: nn.Module, blurred: torch.Tensor, *, batch_size: int = 1000) -> torch.Tensor:
    """G's sharp guesses for ``blurred`` images, in eval mode, in batches, on their device."""
    return outputs(G, blurred, batch_size=batch_size)


__all__ = ["SIGMA", "L1_WEIGHT", "gaussian_kernel", "blur", "unsharp_mask", "unsharp_amount_for",
           "deblur_pairs", "DeblurNet",
           "PatchDiscriminator", "deblur_generator", "patch_discriminator", "pix2pix_step",
           "train_deblur", "restore"]
