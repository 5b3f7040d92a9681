"""Training the black box and distilling the students (the zoo recipes of lecture 03), and
measuring how good they are.  Both recipes run the kit's one loop, :func:`utils.training.train`.
"""

from __future__ import annotations

from functools import partial
from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from utils.faces.blackbox import BlackBox, query_tensor
from utils.faces.game import STUDENTS, TRAIN_PEOPLE, UNSEEN_PEOPLE, augment, faces_of
from utils.training import Batches, optimiser_step, train

DISTILL_COPIES = 8      # augmented copies of each training face the students are distilled on


def train_blackbox(model: nn.Module, device: torch.device, *, epochs: int = 30,
                   batch_size: int = 50, lr: float = 3e-3, seed: int = 0) -> nn.Module:
    """Normalised-softmax training of the descriptor net on the 25 training people, with
    augmentation; prints same- vs different-person distances on the 15 unseen people."""
    images, ids = faces_of(TRAIN_PEOPLE, device)

    def loss_fn(net, batch, p):
        x, y = batch
        return F.cross_entropy(net.logits(x), y, label_smoothing=0.1)

    data = Batches(images, ids, batch_size=batch_size, seed=seed,
                   transform=lambda batch, generator: (augment(batch[0], generator), batch[1]))
    train(model, loss_fn, data, epochs=epochs, lr=lr, optimiser="adamw", weight_decay=5e-4,
          seed=seed, device=device, description="face black box")
    stats = descriptor_quality(BlackBox.from_network(model, device=device))
    print(f"  unseen people: same-person distance {stats['same']:.3f}, different-person "
          f"{stats['different']:.3f}, verification accuracy {stats['accuracy']:.3f}")
    return model


def descriptor_quality(blackbox: BlackBox, people: Sequence[int] = UNSEEN_PEOPLE) -> dict:
    """How well descriptors separate ``people``: mean same- and different-person distances,
    the best-threshold verification accuracy over all pairs, and 1-NN identification accuracy."""
    images, ids = faces_of(people)
    desc = torch.from_numpy(blackbox.query(images))
    d = torch.cdist(desc, desc)
    same = ids[:, None] == ids[None, :]
    upper = torch.triu(torch.ones_like(d, dtype=torch.bool), diagonal=1)
    same_d, diff_d = d[same & upper], d[~same & upper]
    thresholds = torch.linspace(0, 2, 401)
    balanced = [0.5 * ((same_d < t).float().mean() + (diff_d >= t).float().mean())
                for t in thresholds]
    best = int(torch.stack(balanced).argmax())
    nearest = (d + 10 * torch.eye(len(d))).argmin(1)
    return {"same": float(same_d.mean()), "different": float(diff_d.mean()),
            "same_values": same_d, "different_values": diff_d,
            "threshold": float(thresholds[best]), "accuracy": float(balanced[best]),
            "identification": float((ids[nearest] == ids).float().mean())}


def distillation_set(blackbox: BlackBox, *, copies: int = DISTILL_COPIES, seed: int = 0,
                     device: torch.device | str | None = None):
    """The students' training data: the training people's faces plus ``copies`` augmented
    versions of each, with their descriptors queried from the black box (counted)."""
    images, _ = faces_of(TRAIN_PEOPLE, device)
    generator = torch.Generator().manual_seed(seed)
    x = torch.cat([images] + [augment(images, generator) for _ in range(copies)])
    return x, query_tensor(blackbox, x)


def distillation_loss(student: nn.Module, batch, p: float = 0.0, *,
                      loss: str = "mse") -> torch.Tensor:
    """The students' loss on a batch ``(images, descriptors)`` of the black box's answers:
    ``"mse"``, the squared error per coordinate (the write-up's choice), or ``"l2"``, the mean
    Euclidean distance per descriptor.  ``p`` (the training progress) is unused."""
    if loss not in ("mse", "l2"):
        raise ValueError(f"loss must be 'mse' or 'l2', got {loss!r}")
    images, descriptors = batch
    if loss == "l2":
        return (student(images) - descriptors).norm(dim=1).mean()
    return F.mse_loss(student(images), descriptors)


def distill_step(student: nn.Module, optimiser: torch.optim.Optimizer, images: torch.Tensor,
                 descriptors: torch.Tensor, *, loss: str = "mse") -> torch.Tensor:
    """One step of :func:`distill_student` on one batch: :func:`distillation_loss` in train
    mode, backward, ``optimiser.step()`` (:func:`utils.training.optimiser_step`, the step the
    recipe's loop runs, without its schedule).  Returns the loss, detached."""
    step = optimiser_step(student, partial(distillation_loss, loss=loss), optimiser)
    return step((images, descriptors), 0.0)["loss"]


def distill_student(model: nn.Module, device: torch.device, *, epochs: int = 8,
                    batch_size: int = 64, lr: float = 3e-3, copies: int = DISTILL_COPIES,
                    loss: str = "mse", seed: int = 0) -> nn.Module:
    """Train ``model`` to reproduce the black box's descriptors on the training people's faces
    and augmentations; prints its MSE on the unseen people's faces.  ``loss="mse"`` (squared
    error per coordinate, the write-up's choice) or ``"l2"`` (the Euclidean distance per
    descriptor, which the write-up found slightly worse)."""
    if loss not in ("mse", "l2"):
        raise ValueError(f"loss must be 'mse' or 'l2', got {loss!r}")
    blackbox = BlackBox(device)
    x, y = distillation_set(blackbox, copies=copies, seed=seed, device=device)

    train(model, partial(distillation_loss, loss=loss),
          Batches(x, y, batch_size=batch_size, seed=seed), epochs=epochs, lr=lr,
          optimiser="adamw", weight_decay=1e-4, seed=seed, device=device,
          description="distilling student")
    print(f"  {blackbox.queries} black-box queries; held-out MSE "
          f"{student_mse(model, blackbox)['mse']:.2e}")
    return model


@torch.no_grad()
def student_mse(student: nn.Module, blackbox: BlackBox, people: Sequence[int] = UNSEEN_PEOPLE):
    """A student's fit to the black box on ``people``'s faces: per-coordinate MSE, mean L2 error
    and mean cosine similarity of descriptors."""
    images, _ = faces_of(people)
    device = next(student.parameters()).device
    truth = torch.from_numpy(blackbox.query(images)).to(device)
    guess = student.eval()(images.to(device))
    return {"mse": float(F.mse_loss(guess, truth)),
            "l2": float((guess - truth).norm(dim=1).mean()),
            "cosine": float(F.cosine_similarity(guess, truth).mean())}


def load_students(names: Sequence[str] = STUDENTS, device: torch.device | str | None = None):
    """The distilled students from the zoo, in eval mode with frozen parameters."""
    from utils import zoo  # the zoo imports no topic, so this import runs one way

    out = []
    for name in names:
        model = zoo.load(name, device)
        for parameter in model.parameters():
            parameter.requires_grad_(False)
        out.append(model)
    return out
