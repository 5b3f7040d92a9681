"""The game of lecture 03: who is who, and the pair sets the attacks are scored on.

The black box and the students were trained on :data:`TRAIN_PEOPLE` (Olivetti people 0-24);
pair sets are drawn only from :data:`UNSEEN_PEOPLE` (25-39).  A *pair set* is 5 source faces of
one person and 5 target faces of another.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F

SIZE = 64
DIM = 64
N_PEOPLE = 40
TRAIN_PEOPLE = tuple(range(25))
UNSEEN_PEOPLE = tuple(range(25, 40))
SSIM_LIMIT = 0.95
PAIR_SIZE = 5
STUDENTS = ("face_student_resnet", "face_student_cnn", "face_student_wide")


def faces_of(people: Sequence[int], device: torch.device | str | None = None):
    """Olivetti images ``(10 * len(people), 1, 64, 64)`` and person ids of ``people``."""
    from utils.data import olivetti_faces

    images, ids = olivetti_faces()
    keep = torch.isin(ids, torch.as_tensor(list(people)))
    device = torch.device(device) if device is not None else images.device
    return images[keep].to(device), ids[keep].to(device)


def augment(images: torch.Tensor, generator: torch.Generator | None = None, *,
            shift: int = 4, noise: float = 0.02) -> torch.Tensor:
    """Light face augmentation on the images' device: random mirror, shift (edge-padded crop),
    brightness/contrast jitter and a little Gaussian noise; result clamped to [0, 1]."""
    n, device = len(images), images.device

    def rand(*shape):
        return torch.rand(*shape, generator=generator).to(device)

    flip = rand(n, 1, 1, 1) < 0.5
    out = torch.where(flip, images.flip(-1), images)
    padded = F.pad(out, (shift,) * 4, mode="replicate")
    offsets = (rand(n, 2) * (2 * shift + 1)).long().clamp_max(2 * shift)
    rows = offsets[:, 0, None] + torch.arange(SIZE, device=device)            # (n, 64)
    cols = offsets[:, 1, None] + torch.arange(SIZE, device=device)
    batch = torch.arange(n, device=device)[:, None, None]
    out = padded[batch, 0, rows[:, :, None], cols[:, None, :]].unsqueeze(1)
    contrast = 0.8 + 0.4 * rand(n, 1, 1, 1)
    brightness = 0.1 * (rand(n, 1, 1, 1) - 0.5)
    mean = out.mean(dim=(2, 3), keepdim=True)
    out = (out - mean) * contrast + mean + brightness
    out = out + noise * torch.randn(out.shape, generator=generator).to(device)
    return out.clamp(0, 1)


@dataclass(frozen=True)
class PairSet:
    """One round of the game: 5 source faces of one person, 5 target faces of another."""

    source_person: int
    target_person: int
    source_index: tuple[int, ...]   # row numbers in utils.data.olivetti_faces()
    target_index: tuple[int, ...]

    def images(self, device: torch.device | str | None = None):
        """``(sources, targets)``: two float tensors ``(5, 1, 64, 64)`` in [0, 1]."""
        from utils.data import olivetti_faces

        images, _ = olivetti_faces()
        device = torch.device(device) if device is not None else images.device
        return (images[list(self.source_index)].to(device),
                images[list(self.target_index)].to(device))

    def other_target_photos(self, device: torch.device | str | None = None) -> torch.Tensor:
        """The target person's photos that are *not* among the pair set's targets
        ``(10 - 5, 1, 64, 64)``: "extra targets", which the score ignores but an attack may aim at
        too (the write-up's teams got theirs from photos repeated across pair sets)."""
        from utils.data import olivetti_faces

        images, _ = olivetti_faces()
        device = torch.device(device) if device is not None else images.device
        rows = [10 * self.target_person + i for i in range(10)
                if 10 * self.target_person + i not in self.target_index]
        return images[rows].to(device)


def pair_sets(n: int, seed: int = 0) -> list[PairSet]:
    """``n`` reproducible pair sets drawn only from :data:`UNSEEN_PEOPLE` (NumPy seeded RNG).

    Each pair set takes two different unseen people and 5 of the 10 photos of each; the same
    ``(n, seed)`` always gives the same list, and ``pair_sets(m, seed)[:n] == pair_sets(n, seed)``.
    """
    if not isinstance(n, (int, np.integer)) or n < 1:
        raise ValueError(f"n must be a positive int, got {n!r}")
    rng = np.random.default_rng([seed, 20180528])
    out = []
    for _ in range(n):
        source, target = rng.choice(UNSEEN_PEOPLE, size=2, replace=False)
        source_photos = np.sort(rng.choice(10, PAIR_SIZE, replace=False))
        target_photos = np.sort(rng.choice(10, PAIR_SIZE, replace=False))
        out.append(PairSet(int(source), int(target),
                           tuple(int(10 * source + i) for i in source_photos),
                           tuple(int(10 * target + i) for i in target_photos)))
    return out
