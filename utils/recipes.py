"""Training recipes of the core's zoo entries: Fashion-MNIST classifiers, plain or robust.

A recipe is ``recipe(model, device, **options) -> model``; :mod:`utils.zoo_entries` names it and
its options.  Recipes of a lecture's own models live in that lecture's topic package.
"""

from __future__ import annotations

import torch
from torch import nn

from utils.data import fashion_mnist
from utils.training import accuracy, train_classifier


def fashion_classifier(model: nn.Module, device: torch.device, *, epochs: int, lr: float,
                       batch_size: int = 128, weight_decay: float = 0.0, seed: int = 0) -> nn.Module:
    """Train on the Fashion-MNIST training set (Adam, one-cycle); print the test accuracy."""
    images, labels = fashion_mnist("train")
    train_classifier(model, images, labels, epochs=epochs, lr=lr, batch_size=batch_size,
                     weight_decay=weight_decay, seed=seed, device=device,
                     description=type(model).__name__)
    test_images, test_labels = fashion_mnist("test", device=device)
    print(f"  test accuracy: {accuracy(model, test_images, test_labels):.4f}")
    return model


def fast_adversarial(model: nn.Module, device: torch.device, *, eps: float, epochs: int,
                     lr: float, batch_size: int = 128, seed: int = 0) -> nn.Module:
    """Adversarial training with "fast" FGSM (random start, step 1.25 eps; Wong et al. 2020).

    Every training batch is replaced by its FGSM-with-random-start version at radius ``eps``
    (a little larger than the radius the model is evaluated at), which costs one extra
    forward-backward pass per batch instead of the ten or more of PGD training.
    """
    from utils.attacks import fgsm

    generator = torch.Generator().manual_seed(seed)

    def perturb(net, x, y):
        return fgsm(net, x, y, eps=eps, random_start=True, alpha=1.25 * eps, generator=generator)

    images, labels = fashion_mnist("train")
    train_classifier(model, images, labels, epochs=epochs, lr=lr, batch_size=batch_size,
                     seed=seed, device=device, perturb=perturb,
                     description="fast adversarial training")
    test_images, test_labels = fashion_mnist("test", device=device)
    print(f"  clean test accuracy: {accuracy(model, test_images, test_labels):.4f}")
    return model


@torch.no_grad()
def soft_labels(teacher: nn.Module, x: torch.Tensor, temperature: float) -> torch.Tensor:
    """The teacher's probabilities at temperature ``T``: ``softmax(teacher(x) / T)``, ``(N, K)``."""
    return torch.softmax(teacher(x) / temperature, dim=1)


def distillation_loss(student: nn.Module, x: torch.Tensor, soft: torch.Tensor,
                      temperature: float) -> torch.Tensor:
    """Cross-entropy of the student's temperature-``T`` softmax against the soft labels ``soft``
    (``(N, K)``, rows summing to 1), averaged over the batch: a scalar tensor."""
    return -(soft * torch.log_softmax(student(x) / temperature, dim=1)).sum(1).mean()


def distillation_step(student: nn.Module, teacher: nn.Module, x: torch.Tensor,
                      optimiser: torch.optim.Optimizer, *, temperature: float,
                      teacher_temperature: float | None = None) -> torch.Tensor:
    """One step of defensive distillation on the batch ``x``; returns the loss (detached).

    The teacher's soft labels at ``teacher_temperature`` (default: ``temperature``, as in
    Papernot et al.; the zoo's stand-in teacher is read at 1) and the student's cross-entropy
    to them at ``temperature``; one ``optimiser`` step on the student.
    :func:`defensive_distillation` trains ``fashion_cnn_distilled`` with the same loss.
    """
    if temperature <= 0:
        raise ValueError(f"temperature must be positive, got {temperature}")
    soft = soft_labels(teacher, x, temperature if teacher_temperature is None
                       else teacher_temperature)
    loss = distillation_loss(student, x, soft, temperature)
    optimiser.zero_grad()
    loss.backward()
    optimiser.step()
    return loss.detach()


def defensive_distillation(model: nn.Module, device: torch.device, *, teacher: str,
                           temperature: float, epochs: int, lr: float, batch_size: int = 128,
                           seed: int = 0) -> nn.Module:
    """Defensive distillation (Papernot et al. 2016): a student trained at temperature ``T``.

    Papernot et al. train a teacher at temperature ``T`` (its logits divided by ``T`` in the
    softmax), which makes its logits about ``T`` times larger, and then a student at ``T`` on the
    teacher's temperature-``T`` probabilities.  Those probabilities are about a normal network's
    at ``T = 1``, so the zoo's ``teacher`` (trained normally) stands in for the temperature-``T``
    teacher: the student learns ``softmax(z / T) = softmax(teacher(x))``, i.e. logits about ``T``
    times the teacher's.  Used at ``T = 1`` its softmax saturates, and the cross-entropy
    gradient that FGSM and PGD follow is (numerically) zero on most images -- the defence hides
    the gradient, it does not move the decision boundary.  Lecture 01 shows it falling to the
    same attack run on ``logits / T``.
    """
    from utils import zoo
    from utils.training import Batches, train

    if temperature <= 0:
        raise ValueError(f"temperature must be positive, got {temperature}")
    images, labels = fashion_mnist("train")
    source = zoo.load(teacher, device)
    # the stand-in teacher is read at T = 1 (see above)
    soft = torch.cat([soft_labels(source, chunk.to(device), 1.0).cpu()
                      for chunk in images.split(1024)])
    agree = float((soft.argmax(1) == labels).float().mean())
    print(f"  the teacher {teacher} agrees with the labels on {agree:.4f} of the training set")

    def loss_fn(net, batch, p):
        x, target = batch
        return distillation_loss(net, x, target, temperature)

    data = Batches(images, soft, batch_size=batch_size, seed=seed, device=device)
    train(model, loss_fn, data, epochs=epochs, lr=lr, seed=seed, device=device,
          description=f"defensive distillation, T = {temperature:g}")
    model.eval()
    test_images, test_labels = fashion_mnist("test", device=device)
    print(f"  test accuracy at T = 1: {accuracy(model, test_images, test_labels):.4f}")
    return model


def gaussian_noise(model: nn.Module, device: torch.device, *, sigma: float, epochs: int,
                   lr: float, batch_size: int = 128, seed: int = 0) -> nn.Module:
    """Training with Gaussian noise augmentation, the base classifier of randomized smoothing.

    Cohen, Rosenfeld & Kolter (2019) certify ``g(x) = argmax_c P(f(x + N(0, sigma^2 I)) = c)``;
    ``g`` is only accurate when the base classifier ``f`` is accurate *under that noise*, so
    every training batch gets ``x + sigma * N(0, I)`` (not clipped to [0, 1], as in the paper).
    The noise comes from a generator seeded by ``seed``.
    """
    generator = torch.Generator().manual_seed(seed)

    def perturb(net, x, y):
        noise = torch.randn(x.shape, generator=generator, dtype=x.dtype).to(x.device)
        return x + sigma * noise

    images, labels = fashion_mnist("train")
    train_classifier(model, images, labels, epochs=epochs, lr=lr, batch_size=batch_size,
                     seed=seed, device=device, perturb=perturb,
                     description=f"Gaussian noise training, sigma = {sigma:g}")
    test_images, test_labels = fashion_mnist("test", device=device)
    noisy = test_images + sigma * torch.randn(test_images.shape, generator=generator).to(device)
    print(f"  test accuracy: clean {accuracy(model, test_images, test_labels):.4f}, "
          f"under its noise {accuracy(model, noisy, test_labels):.4f}")
    return model
