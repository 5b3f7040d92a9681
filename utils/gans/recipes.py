"""Zoo recipes of lecture 05: the DCGAN and the two de-blurring networks (L1, L1 + PatchGAN).

A recipe is ``recipe(model, device, **options) -> trained model`` (see :mod:`utils.zoo_entries`);
each trains through :func:`utils.training.fit` with its progress bar and prints its key metric.
"""

from __future__ import annotations

import torch
from torch import nn

from utils.data import fashion_mnist
from utils.gans.metrics import evaluate_generator, sharpness_report, reference_halves
from utils.gans.models import DCGAN
from utils.gans.pix2pix import SIGMA, blur, restore, train_deblur
from utils.gans.steps import train_gan


def train_dcgan(model: DCGAN, device: torch.device, *, steps: int, batch_size: int = 64,
                lr: float = 2e-4, loss: str = "non_saturating", seed: int = 0) -> DCGAN:
    """Train both players on the Fashion-MNIST training set; print classifier FID and coverage."""
    torch.manual_seed(seed)
    images, _ = fashion_mnist("train")
    train_gan(model, images, steps=steps, batch_size=batch_size, lr=lr, loss=loss, seed=seed,
              device=device, description=f"DCGAN ({loss})")
    result = evaluate_generator(model, device=device)
    shares = " ".join(f"{share:.3f}" for share in result["coverage"].tolist())
    print(f"  classifier FID {result['fid']:.2f} on {result['n']} samples "
          f"(floor {result['floor']:.2f}); class shares {shares}")
    return model


def train_deblur_net(model: nn.Module, device: torch.device, *, adversarial_weight: float,
                     steps: int, batch_size: int = 64, lr: float = 2e-4, sigma: float = SIGMA,
                     seed: int = 0) -> nn.Module:
    """Train the de-blurring U-Net with L1 (+ a PatchGAN when ``adversarial_weight`` > 0)."""
    images, _ = fashion_mnist("train")
    name = "L1 + adversarial" if adversarial_weight > 0 else "L1 only"
    train_deblur(model, images, adversarial_weight=adversarial_weight, steps=steps,
                 batch_size=batch_size, lr=lr, sigma=sigma, seed=seed, device=device,
                 description=f"de-blur, {name}")
    sharp, _ = reference_halves(device)
    report = sharpness_report(restore(model, blur(sharp, sigma)), sharp)
    print(f"  test L1 {report['l1']:.4f}, Laplacian variance {report['laplacian_ratio']:.3f} "
          f"of the sharp images'")
    return model
