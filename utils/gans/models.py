"""DCGAN's two players for 28x28 grey images, and how to draw samples from the generator.

The architecture follows Radford et al. (2015) scaled down to Fashion-MNIST: no pooling (the
generator grows the image with strided transposed convolutions, the discriminator shrinks it with
strided convolutions), batch norm in both players (not on D's input layer), ReLU in G and
LeakyReLU(0.2) in D.  G's last layer is a sigmoid, so samples are images in [0, 1] like every
other image of the course (DCGAN's tanh in [-1, 1] is the same thing, rescaled).
D returns a *logit*: D(x) = sigmoid(logit) is its probability that x is real.
"""

from __future__ import annotations

import torch
from torch import nn

from utils.training import outputs

IMAGE_SHAPE = (1, 28, 28)


class Generator(nn.Module):
    """z ``(N, latent_dim)`` -> image ``(N, 1, 28, 28)`` in [0, 1]: project to 7x7, up twice."""

    def __init__(self, latent_dim: int = 32, width: int = 64):
        super().__init__()
        if latent_dim < 1 or width < 1:
            raise ValueError(f"latent_dim and width must be positive, got {latent_dim}, {width}")
        self.latent_dim, self.width = latent_dim, width
        self.project = nn.Sequential(
            nn.Linear(latent_dim, 2 * width * 7 * 7, bias=False),
            nn.BatchNorm1d(2 * width * 7 * 7), nn.ReLU(),
        )
        self.up = nn.Sequential(
            nn.ConvTranspose2d(2 * width, width, 4, 2, 1, bias=False),   # 7 -> 14
            nn.BatchNorm2d(width), nn.ReLU(),
            nn.ConvTranspose2d(width, 1, 4, 2, 1),                       # 14 -> 28
            nn.Sigmoid(),
        )

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        if z.dim() != 2 or z.shape[1] != self.latent_dim:
            raise ValueError(f"the generator takes latent codes z of shape (N, {self.latent_dim}), "
                             f"got {tuple(z.shape)}")
        return self.up(self.project(z).view(len(z), 2 * self.width, 7, 7))


class Discriminator(nn.Module):
    """image ``(N, 1, 28, 28)`` in [0, 1] -> logit ``(N,)``; D(x) = sigmoid(logit) = P(real)."""

    def __init__(self, width: int = 32):
        super().__init__()
        if width < 1:
            raise ValueError(f"width must be positive, got {width}")
        self.width = width
        self.body = nn.Sequential(
            nn.Conv2d(1, width, 4, 2, 1), nn.LeakyReLU(0.2),                           # 14x14
            nn.Conv2d(width, 2 * width, 4, 2, 1, bias=False), nn.BatchNorm2d(2 * width),
            nn.LeakyReLU(0.2),                                                         # 7x7
            nn.Flatten(),
            nn.Linear(2 * width * 7 * 7, 1),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() != 4 or tuple(x.shape[1:]) != IMAGE_SHAPE:
            raise ValueError(f"the discriminator takes images (N, 1, 28, 28), got {tuple(x.shape)}")
        return self.body(2 * x - 1).squeeze(1)   # centre [0, 1] on 0 (DCGAN's [-1, 1] range)


class DCGAN(nn.Module):
    """The two players in one module, so that one zoo checkpoint holds both.

    ``gan(z)`` is the generator's output; ``gan.generator`` and ``gan.discriminator`` are the
    players.  Only G is needed to draw samples; D is kept to show what it learned.
    """

    def __init__(self, latent_dim: int = 32, g_width: int = 64, d_width: int = 32):
        super().__init__()
        self.generator = Generator(latent_dim, g_width)
        self.discriminator = Discriminator(d_width)

    @property
    def latent_dim(self) -> int:
        return self.generator.latent_dim

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.generator(z)


def dcgan() -> DCGAN:
    """The zoo's DCGAN: latent 32, G width 64 (~0.33 M parameters), D width 32 (~0.04 M)."""
    return DCGAN(latent_dim=32, g_width=64, d_width=32)


def small_dcgan() -> DCGAN:
    """A smaller DCGAN (G width 32, D width 16) that trains a few hundred steps in seconds on a
    CPU: the lecture's side-by-side runs and the lab use it."""
    return DCGAN(latent_dim=32, g_width=32, d_width=16)


# --------------------------------------------------------------------------------------------
# latent codes and samples


def latent(n: int, latent_dim: int, *, generator: torch.Generator | None = None,
           device: torch.device | str | None = None) -> torch.Tensor:
    """``n`` latent codes z ~ N(0, I), drawn from ``generator`` (on its device), moved to ``device``."""
    if not isinstance(n, int) or n < 0:
        raise ValueError(f"n must be a non-negative int, got {n!r}")
    where = generator.device if generator is not None else device
    z = torch.randn(n, latent_dim, generator=generator, device=where)
    return z.to(device) if device is not None else z


def _generator_of(model: nn.Module) -> Generator:
    if isinstance(model, DCGAN):
        return model.generator
    if isinstance(model, Generator):
        return model
    raise ValueError(f"expected a DCGAN or a Generator, got {type(model).__name__}")


@torch.no_grad()
def generate(model: nn.Module, z: torch.Tensor, *, batch_size: int = 1000) -> torch.Tensor:
    """G(z) in eval mode (batch norm with its running statistics), in batches, on z's device."""
    return outputs(_generator_of(model), z, batch_size=batch_size)


def sample(model: nn.Module, n: int, *, generator: torch.Generator | None = None,
           device: torch.device | str | None = None) -> torch.Tensor:
    """``n`` images from the generator of ``model`` (a DCGAN or a Generator), on its device."""
    net = _generator_of(model)
    device = device if device is not None else next(net.parameters()).device
    return generate(net, latent(n, net.latent_dim, generator=generator, device=device))


def interpolate(z0: torch.Tensor, z1: torch.Tensor, t, *, spherical: bool = True) -> torch.Tensor:
    """Points between latent codes ``z0`` and ``z1`` (each ``(latent_dim,)``) at fractions ``t``.

    ``spherical`` (slerp) walks along the great circle, which keeps the norm of a Gaussian code
    near sqrt(latent_dim), where the generator was trained; a straight line passes closer to 0.
    Returns ``(len(t), latent_dim)``.
    """
    if z0.shape != z1.shape or z0.dim() != 1:
        raise ValueError(f"z0 and z1 must be two codes of the same shape (latent_dim,), got "
                         f"{tuple(z0.shape)} and {tuple(z1.shape)}")
    t = torch.as_tensor(t, dtype=z0.dtype, device=z0.device).reshape(-1, 1)
    if not spherical:
        return (1 - t) * z0 + t * z1
    cos = torch.dot(z0, z1) / (z0.norm() * z1.norm())
    omega = torch.arccos(cos.clamp(-1 + 1e-7, 1 - 1e-7))
    if omega.abs() < 1e-4:     # (almost) the same direction: a straight line is the same path
        return (1 - t) * z0 + t * z1
    return (torch.sin((1 - t) * omega) * z0 + torch.sin(t * omega) * z1) / torch.sin(omega)


def parameter_count(model: nn.Module) -> int:
    """Number of trainable parameters."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def checkpoint_megabytes(model: nn.Module) -> float:
    """Size of the model's state dict in float32, in MB (what the zoo's file roughly weighs)."""
    return sum(t.numel() * t.element_size() for t in model.state_dict().values()) / 1e6


__all__ = ["Generator", "Discriminator", "DCGAN", "dcgan", "small_dcgan", "latent", "generate",
           "sample", "interpolate", "parameter_count", "checkpoint_megabytes", "IMAGE_SHAPE"]
