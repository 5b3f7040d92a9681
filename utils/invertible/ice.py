"""Independence cross-entropy (iCE): train the logits *and* empty the nuisance of the class.

Plain cross-entropy only asks the logits ``z_s`` to predict the label; nothing stops the
nuisance ``z_n`` from carrying the class as well, and then a metamer (logits of A, nuisance of
B) looks like B.  Jacobsen et al. add a *nuisance classifier* ``D`` that tries to read the label
from ``z_n`` and train the encoder against it:

    min_theta max_theta_nc   L_sCE(theta) + L_nCE(theta, theta_nc)
    L_sCE = sum_i -y_i log softmax(z_s)_i              (the usual cross-entropy on the logits)
    L_nCE = sum_i  y_i log D(z_n)_i                    (minus D's cross-entropy on the nuisance)

``D`` maximises ``L_nCE`` (it learns to classify from ``z_n``); the encoder minimises it (it
makes ``z_n`` useless to ``D``).  :func:`ice_step` is one alternating step of this game, for
:func:`utils.training.fit`.  ``L_nCE`` has no lower bound (the encoder could make ``D``
confidently wrong forever), so the encoder's term stops at chance level: ``D``'s
cross-entropy is capped at ``log C``.

The paper adds a third, optional term: maximum likelihood on the nuisance, so that ``z_n`` looks
like a sample of a standard normal under the change of variables ``x -> z``:

    L_MLn = -log N(z_n; 0, I) - log |det dz/dx|  =  ||z_n||^2 / 2 + const

The log-determinant is a constant here: additive couplings and space-to-depth preserve volume,
and the fixed normalisation and scaling contribute a constant.  :func:`ice_step` adds
``ml_weight * L_MLn`` with ``L_MLn`` taken per nuisance dimension (``mean(z_n^2) / 2``), so the
weight does not depend on the image size; ``ml_weight=0`` (the default) leaves it out.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn


def nuisance_classifier(nuisance: int = 774, num_classes: int = 10,
                        hidden: int = 256) -> nn.Sequential:
    """``D``: a two-layer perceptron that reads the class from the nuisance variables."""
    return nn.Sequential(nn.Linear(nuisance, hidden), nn.ReLU(), nn.Linear(hidden, num_classes))


def nuisance_nll(z_n: torch.Tensor) -> torch.Tensor:
    """``L_MLn`` per nuisance dimension: ``mean(z_n^2) / 2``, the standard normal's negative
    log-likelihood up to a constant (the log-determinant of a volume-preserving net is one)."""
    return 0.5 * z_n.pow(2).mean()


def ice_step(net, nuisance_net: nn.Module, net_optimiser, nuisance_optimiser, *,
             weight: float = 1.0, net_scheduler=None, ml_weight: float = 0.0):
    """One step of the iCE game on a batch ``(x, y)``, for :func:`utils.training.fit`.

    1. ``D`` takes one optimiser step down its cross-entropy on the (detached) nuisance;
    2. the encoder takes one step down ``CE(z_s, y) - weight * min(CE(D(z_n), y), log C)``
       ``+ ml_weight * nuisance_nll(z_n)``.

    Returns the metrics ``loss`` (the encoder's), ``semantic_ce``, ``nuisance_ce`` (D's, before
    its step), ``nuisance_accuracy`` (D's, on the batch) and ``nuisance_nll``.
    """
    for name, value in (("weight", weight), ("ml_weight", ml_weight)):
        if value < 0 or not math.isfinite(value):
            raise ValueError(f"{name} must be a finite number >= 0, got {value!r}")
    chance = math.log(net.num_classes)

    def step(batch, p):
        x, y = batch
        net.train()
        nuisance_net.train()
        z_s, z_n = net.split(net.encode(x))
        # 1. the nuisance classifier's move: max over theta_nc of L_nCE = -CE(D(z_n), y)
        scores = nuisance_net(z_n.detach())
        nuisance_ce = F.cross_entropy(scores, y)
        nuisance_optimiser.zero_grad(set_to_none=True)
        nuisance_ce.backward()
        nuisance_optimiser.step()
        # 2. the encoder's move: min over theta of L_sCE + L_nCE (D's loss capped at chance)
        semantic_ce = F.cross_entropy(z_s, y)
        against = F.cross_entropy(nuisance_net(z_n), y).clamp(max=chance)
        nll = nuisance_nll(z_n)
        loss = semantic_ce - weight * against
        if ml_weight:
            loss = loss + ml_weight * nll
        net_optimiser.zero_grad(set_to_none=True)
        loss.backward()
        net_optimiser.step()
        if net_scheduler is not None:
            net_scheduler.step()
        return {"loss": loss.detach(), "semantic_ce": semantic_ce.detach(),
                "nuisance_ce": nuisance_ce.detach(),
                "nuisance_accuracy": (scores.argmax(1) == y).float().mean(),
                "nuisance_nll": nll.detach()}

    return step


def nuisance_probe_accuracy(net, train_images: torch.Tensor, train_labels: torch.Tensor,
                            test_images: torch.Tensor, test_labels: torch.Tensor, *,
                            epochs: int = 5, lr: float = 2e-3, seed: int = 0,
                            progress: bool = True) -> float:
    """How much class information is left in ``z_n``: a fresh :func:`nuisance_classifier`
    trained on the nuisance of ``train_images`` (the net frozen), its accuracy on the test ones.

    Chance is about 0.1 on Fashion-MNIST; the logits alone reach the net's test accuracy.
    """
    from utils.invertible.network import encode
    from utils.training import Batches, accuracy, cross_entropy_loss, train

    device = train_images.device
    train_nuisance = net.split(encode(net, train_images))[1]
    test_nuisance = net.split(encode(net, test_images))[1]
    torch.manual_seed(seed)
    probe = nuisance_classifier(train_nuisance.shape[1], net.num_classes).to(device)
    data = Batches(train_nuisance, train_labels, batch_size=256, seed=seed)
    train(probe, cross_entropy_loss, data, epochs=epochs, lr=lr, seed=seed,
          description="nuisance probe", progress=progress)
    return accuracy(probe, test_nuisance, test_labels)
