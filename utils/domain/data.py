"""Lecture 04's two domains and the paired batches DANN trains on.

- source: Fashion-MNIST (grey, labelled), given as three equal colour channels;
- target: Fashion-M (Fashion-MNIST blended with photographs, :func:`utils.data.fashion_m`).
  Its training images are split once: the first :data:`TARGET_TRAIN` are the *unlabelled*
  target data DANN adapts to (their labels are used by the oracle alone), the last
  :data:`TARGET_VALIDATION` a held-out labelled validation set.  Lecture 04 chooses settings
  without it (reverse validation reads source labels only) and shows it only to say which
  choice target labels would have made; the target *test* set chooses nothing.
- :func:`target_inverted`: a polarity-shifted target (inverted Fashion-MNIST), a DANN failure.
"""

from __future__ import annotations

import torch

from utils.data import fashion_m, fashion_mnist
from utils.training import Batches

TARGET_TRAIN = 55_000
TARGET_VALIDATION = 5_000
LABEL_SHIFT = {5: 0.1, 6: 0.1, 7: 0.1, 8: 0.1, 9: 0.1}
"""The label-shifted target of lecture 04's "what fails": classes 5-9 keep a tenth of their images."""


def to_rgb(images: torch.Tensor) -> torch.Tensor:
    """Grey ``(N, 1, H, W)`` as ``(N, 3, H, W)`` (a view: three equal channels, no copy)."""
    if images.ndim != 4 or images.shape[1] not in (1, 3):
        raise ValueError(f"expected images (N, 1 or 3, H, W), got shape {tuple(images.shape)}")
    return images.expand(-1, 3, -1, -1)


def source(split: str = "train", *, device=None):
    """Fashion-MNIST ``split`` as ``(images (N, 3, 28, 28), labels)``."""
    images, labels = fashion_mnist(split, device=device)
    return to_rgb(images), labels


def target(part: str = "train", *, device=None):
    """Fashion-M ``part``: ``"train"`` (55 000), ``"validation"`` (5 000) or ``"test"`` (10 000)."""
    if part == "test":
        return fashion_m("test", device=device)
    if part not in ("train", "validation"):
        raise ValueError(f"part must be 'train', 'validation' or 'test', got {part!r}")
    images, labels = fashion_m("train", device=device)
    cut = slice(0, TARGET_TRAIN) if part == "train" else slice(TARGET_TRAIN, None)
    return images[cut], labels[cut]


class PairedBatches:
    """Balanced DANN batches ``(source_x, source_y, target_x)``: ``batch_size`` of each domain.

    One epoch is one pass over the source; the target batches run on in their own shuffled
    order (restarted when they run out), so the two sets may have different sizes.
    """

    def __init__(self, source_x: torch.Tensor, source_y: torch.Tensor, target_x: torch.Tensor, *,
                 batch_size: int, seed: int = 0, device=None):
        if source_x.shape[1:] != target_x.shape[1:]:
            raise ValueError(f"source and target images must have the same shape per image, got "
                             f"{tuple(source_x.shape[1:])} and {tuple(target_x.shape[1:])}; "
                             "make grey images colour with utils.domain.data.to_rgb")
        self.source = Batches(source_x, source_y, batch_size=batch_size, seed=seed,
                              device=device, drop_last=True)
        self.target = Batches(target_x, batch_size=batch_size, seed=seed + 1, device=device,
                              drop_last=True)
        if len(self.target) == 0:
            raise ValueError(f"the target set ({len(target_x)}) is smaller than one batch")
        self._target_iter = iter(self.target)

    def __len__(self) -> int:
        return len(self.source)

    def _next_target(self) -> torch.Tensor:
        try:
            return next(self._target_iter)[0]
        except StopIteration:
            self._target_iter = iter(self.target)
            return next(self._target_iter)[0]

    def __iter__(self):
        for xs, ys in self.source:
            yield xs, ys, self._next_target()


def inverted(images: torch.Tensor) -> torch.Tensor:
    """``1 - images``: the same garments with their intensities reversed (light on dark becomes
    dark on light), a *polarity* shift."""
    return 1.0 - images


def target_inverted(part: str = "train", *, device=None):
    """Fashion-MNIST ``part`` ("train" or "test") with inverted intensities, as colour images:
    lecture 04's polarity-shifted target, where DANN's alignment has little to work with."""
    images, labels = source(part, device=device)
    return inverted(images), labels


def label_shifted(images: torch.Tensor, labels: torch.Tensor, keep: dict[int, float], *,
                  seed: int = 0):
    """A subset where class ``c`` keeps only the share ``keep[c]`` of its images (others: all).

    Used to build a target domain whose class proportions differ from the source's (label
    shift), the case where matching feature distributions is the wrong goal.
    """
    for cls, share in keep.items():
        if not 0 <= share <= 1:
            raise ValueError(f"keep[{cls}] must be a share in [0, 1], got {share!r}")
    generator = torch.Generator().manual_seed(seed)
    u = torch.rand(len(labels), generator=generator).to(labels.device)
    share = torch.ones(len(labels), device=labels.device)
    for cls, value in keep.items():
        share[labels == cls] = value
    chosen = (u < share).nonzero().flatten()
    return images[chosen], labels[chosen]


def target_label_shifted(part: str = "train", *, device=None):
    """Fashion-M ``part`` with the class proportions of :data:`LABEL_SHIFT` (classes 0-4 make up
    about 90 % of it instead of 50 %): the same images and look, other label frequencies."""
    images, labels = target(part, device=device)
    return label_shifted(images, labels, LABEL_SHIFT, seed={"train": 0, "validation": 1, "test": 2}[part])
