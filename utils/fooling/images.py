"""Fooling images: start from noise and climb one class's score until the network is sure.

- :func:`fooling_images` -- Adam up the target's log-softmax, the image kept in [0, 1] (the
  kit's one input-optimisation loop, :func:`utils.attacks.optimise_input`): images no person
  would call a class, classified as it with (almost) full confidence (Nguyen et al. 2015);
- :func:`transfer_matrix` -- how often the fooling images made on one network fool another.
"""

from __future__ import annotations

from typing import Mapping

import torch
import torch.nn.functional as F
from torch import nn

from utils.attacks import frozen, optimise_input
from utils.fooling.noise import noise_batch
from utils.training import evaluating


def fooling_images(model: nn.Module, targets: torch.Tensor, *, start: torch.Tensor | None = None,
                   steps: int = 150, lr: float = 0.05,
                   generator: torch.Generator | None = None) -> torch.Tensor:
    """Images in [0, 1] that ``model`` gives class ``targets[i]`` with high confidence.

    Starting from ``start`` (default: the article's noise, one image per target, drawn with
    ``generator``'s seed), Adam takes ``steps`` steps up the target's log-softmax
    ``log p(target | x)`` and every step is followed by clipping the image back to [0, 1]
    (projected gradient ascent with Adam's step sizes).  Climbing the log-softmax rather than
    the logit pushes the *other* classes down as well, so the confidence, not just the score,
    rises.  All targets are done in one batch.  Returns the detached images.
    """
    targets = torch.as_tensor(targets, dtype=torch.long)
    if start is None:
        seed = int(torch.randint(0, 2**31 - 1, (1,), generator=generator).item()) if generator \
            is not None else 0
        device = next(model.parameters()).device
        start = noise_batch(len(targets), seed=seed, device=device)
    if len(start) != len(targets):
        raise ValueError(f"{len(start)} start images but {len(targets)} targets")
    if steps < 1 or not lr > 0:
        raise ValueError(f"need steps >= 1 and lr > 0, got steps={steps}, lr={lr}")
    targets = targets.to(start.device)

    def loss_fn(image, step):
        return -F.log_softmax(model(image), dim=1).gather(1, targets[:, None]).squeeze(1)

    with frozen(model):
        return optimise_input(loss_fn, start, steps=steps, lr=lr, space="box")


@torch.no_grad()
def transfer_matrix(models: Mapping[str, nn.Module], images: Mapping[str, torch.Tensor],
                    targets: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """How the images made on each source network fare on each target network.

    ``images[name]``: the batch made on network ``name`` for classes ``targets``.  Returns
    ``(success, confidence)``, both ``(S, T)`` in the order of ``models``: the fraction of the
    source's images that the target classifies as intended, and the mean softmax probability the
    target gives the intended class.
    """
    names = list(models)
    device = next(iter(images.values())).device
    success = torch.zeros(len(names), len(names), dtype=torch.float64, device=device)
    confidence = torch.zeros_like(success)
    for s, source in enumerate(names):
        batch = images[source]
        wanted = torch.as_tensor(targets, device=batch.device)
        for t, target_name in enumerate(names):
            model = models[target_name]
            with evaluating(model):
                probs = F.softmax(model(batch), dim=1)
            success[s, t] = (probs.argmax(1) == wanted).double().mean().to(device)
            confidence[s, t] = probs.gather(1, wanted[:, None]).double().mean().to(device)
    return success.cpu(), confidence.cpu()  # one transfer to the host, after the loops
