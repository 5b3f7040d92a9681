"""Zoo recipes of lecture 06: the invertible classifier with plain cross-entropy and with iCE
(with or without the maximum-likelihood term on the nuisance).

Both recipes train the same architecture on the same batches with the same optimiser and
schedule; only the objective differs, so the lecture's before/after table compares one thing.
Each prints the test accuracy and the float32 reconstruction error over the whole test set.
"""

from __future__ import annotations

import torch

from utils.data import fashion_mnist
from utils.invertible.ice import ice_step, nuisance_classifier
from utils.invertible.network import InvertibleClassifier, reconstruction_error
from utils.training import (
    Batches,
    accuracy,
    cross_entropy_loss,
    fit,
    make_optimiser,
    make_schedule,
    train,
)


def _report(net: InvertibleClassifier, device) -> None:
    test_x, test_y = fashion_mnist("test", device=device)
    print(f"  test accuracy: {accuracy(net, test_x, test_y):.4f}; reconstruction error "
          f"(max abs, {test_x.dtype}, {len(test_x)} test images): "
          f"{reconstruction_error(net, test_x):.2e}")


def train_cross_entropy(net: InvertibleClassifier, device: torch.device, *, epochs: int,
                        lr: float, batch_size: int = 128, weight_decay: float = 1e-4,
                        seed: int = 0) -> InvertibleClassifier:
    """Cross-entropy on the logits ``z_s`` only (AdamW, one-cycle) -- the paper's baseline."""
    images, labels = fashion_mnist("train")
    data = Batches(images, labels, batch_size=batch_size, seed=seed, device=device)
    train(net, cross_entropy_loss, data, epochs=epochs, lr=lr, optimiser="adamw",
          weight_decay=weight_decay, seed=seed, device=device, description="invertible, CE")
    _report(net, device)
    return net


def train_ice(net: InvertibleClassifier, device: torch.device, *, epochs: int, lr: float,
              weight: float = 1.0, ml_weight: float = 0.0, nuisance_lr: float = 1e-3,
              batch_size: int = 128, weight_decay: float = 1e-4, seed: int = 0) -> InvertibleClassifier:
    """Independence cross-entropy: the same training plus a nuisance classifier played against
    the encoder (:func:`utils.invertible.ice.ice_step`); the nuisance classifier is discarded.

    ``weight`` multiplies the nuisance classifier's term, ``ml_weight`` the optional
    maximum-likelihood term on the nuisance (:func:`utils.invertible.ice.nuisance_nll`)."""
    torch.manual_seed(seed)
    net.to(device)
    nuisance_net = nuisance_classifier(net.features - net.num_classes, net.num_classes).to(device)
    images, labels = fashion_mnist("train")
    data = Batches(images, labels, batch_size=batch_size, seed=seed, device=device)
    net_optimiser = make_optimiser(net.parameters(), "adamw", lr=lr, weight_decay=weight_decay)
    nuisance_optimiser = make_optimiser(nuisance_net.parameters(), "adam", lr=nuisance_lr)
    scheduler = make_schedule(net_optimiser, "onecycle", epochs * len(data))
    history = fit(ice_step(net, nuisance_net, net_optimiser, nuisance_optimiser, weight=weight,
                           net_scheduler=scheduler, ml_weight=ml_weight), data, epochs=epochs,
                  description="invertible, iCE")
    net.eval()
    print(f"  nuisance classifier during the last 100 steps: accuracy "
          f"{history.last('nuisance_accuracy', 100):.3f}; nuisance NLL per dimension "
          f"{history.last('nuisance_nll', 100):.3f}")
    _report(net, device)
    return net
