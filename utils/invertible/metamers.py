"""Metamers: images with the logits of one image and the nuisance of another.

With a bijective classifier ``z = (z_s, z_n) = f(x)`` one can *write* into its decision space:

    x_met = f^{-1}(z_s(A), z_n(B))

has exactly the logits of A -- the invertible net sees A's class with A's confidence -- but the
774 nuisance numbers of B.  If the nuisance still carries what makes B look like B, then x_met
looks like B: the network is *excessively invariant* to everything outside its 10 logits.

- :func:`metamers` -- the metameric sampling above, for a batch of pairs;
- :func:`sample_pairs` -- random pairs of images of different classes;
- :func:`metamer_study` -- over many pairs: how often the invertible net says "A" and how often
  an independent classifier says "B" or "A", with 95 % intervals and the chance baseline;
- :func:`metameric_attack` -- the attack built on it: keep an image's nuisance, take the logits
  of an image of the target class, chosen among candidates so that the result stays closest to
  the original;
- :func:`common_pairs`, :func:`size_matched_noise`, :func:`controlled_metamer_study` -- the
  controls: the same pairs for every net, any list of judges, and ``B + noise`` of the
  metamer's size beside each metamer, each read as "A", "B" or neither.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from utils.invertible.network import InvertibleClassifier, decode, encode
from utils.stats import Share, wilson_interval  # noqa: F401  (re-exported: metamers.Share)
from utils.training import predict


def _check_batch(name: str, images, shape) -> None:
    if not torch.is_tensor(images) or images.dim() != 4 or tuple(images.shape[1:]) != tuple(shape):
        got = tuple(images.shape) if torch.is_tensor(images) else type(images).__name__
        expected = ", ".join(map(str, shape))
        raise ValueError(f"{name} must be images of shape (N, {expected}), got {got}")


def metamers(net: InvertibleClassifier, logits_from: torch.Tensor, nuisance_from: torch.Tensor, *,
             batch_size: int = 1000) -> torch.Tensor:
    """``f^{-1}(z_s(A), z_n(B))`` for each pair ``A = logits_from[i]``, ``B = nuisance_from[i]``.

    Not clamped to [0, 1]: the exact inverse (clamp it yourself to get a valid image).
    """
    _check_batch("logits_from", logits_from, net.input_shape)
    _check_batch("nuisance_from", nuisance_from, net.input_shape)
    if len(logits_from) != len(nuisance_from):
        raise ValueError(f"one nuisance image per logits image is needed, got {len(logits_from)} "
                         f"and {len(nuisance_from)}")
    z_s = net.split(encode(net, logits_from, batch_size=batch_size))[0]
    z_n = net.split(encode(net, nuisance_from, batch_size=batch_size))[1]
    return decode(net, net.merge(z_s, z_n), batch_size=batch_size)


def sample_pairs(labels: torch.Tensor, n: int, *, generator: torch.Generator | None = None):
    """``n`` random index pairs ``(a, b)`` with ``labels[a] != labels[b]`` (CPU long tensors)."""
    if not isinstance(n, int) or n < 1:
        raise ValueError(f"n must be a positive int, got {n!r}")
    labels = labels.cpu()
    if len(labels.unique()) < 2:
        raise ValueError("pairs of different classes need labels of at least two classes")
    found_a, found_b, count = [], [], 0
    while count < n:
        a = torch.randint(len(labels), (2 * n,), generator=generator)
        b = torch.randint(len(labels), (2 * n,), generator=generator)
        keep = labels[a] != labels[b]
        found_a.append(a[keep])
        found_b.append(b[keep])
        count += int(keep.sum())
    return torch.cat(found_a)[:n], torch.cat(found_b)[:n]




@dataclass
class MetamerStudy:
    """What :func:`metamer_study` measured over ``n`` pairs (A gives logits, B the nuisance)."""

    n: int
    clamped: bool              # were the metamers clamped to [0, 1] before being judged?
    net_says_a: Share          # the invertible net's class is A's
    judge_says_b: Share        # the independent classifier says B's class
    judge_says_a: Share        # ... says A's class
    chance_b: float            # what "says B" would be if the judge ignored B: sum_c q_c p_c
    closer_to_b: Share         # the metamer is nearer to B than to A (L2, pixels)
    out_of_range: float        # mean |x_met - clamp(x_met, 0, 1)| per pixel of the exact metamers


def metamer_study(net: InvertibleClassifier, judge: torch.nn.Module, images: torch.Tensor,
                  labels: torch.Tensor, *, n_pairs: int = 1000, clamp: bool = False,
                  generator: torch.Generator | None = None) -> MetamerStudy:
    """Metamers of ``n_pairs`` random pairs of different classes, judged by two classifiers.

    Pairs are drawn among the images that *both* ``net`` and ``judge`` classify correctly, so
    "says A" and "says B" have one meaning.  The metamers are judged as they are (exact
    inverses, a little outside [0, 1] here and there), or clamped to [0, 1] first with
    ``clamp=True``.  ``chance_b`` is the baseline: the share of "B" expected if the judge's
    answers kept their frequencies ``q_c`` but ignored the pair (``sum_c q_c p_c``, with ``p_c``
    the frequency of class ``c`` among the B images).
    """
    ok = (predict(net, images) == labels) & (predict(judge, images) == labels)
    pool = ok.nonzero().squeeze(1)
    a, b = sample_pairs(labels[pool], n_pairs, generator=generator)
    a, b = pool[a.to(pool.device)], pool[b.to(pool.device)]
    raw = metamers(net, images[a], images[b])
    met = raw.clamp(0, 1) if clamp else raw
    y_a, y_b = labels[a], labels[b]
    net_pred, judge_pred = predict(net, met), predict(judge, met)
    classes = net.num_classes
    q = torch.bincount(judge_pred, minlength=classes).double() / n_pairs
    p = torch.bincount(y_b, minlength=classes).double() / n_pairs
    to_a = (met - images[a]).flatten(1).norm(dim=1)
    to_b = (met - images[b]).flatten(1).norm(dim=1)

    def count(mask: torch.Tensor) -> int:
        return int(mask.sum())

    return MetamerStudy(
        n=n_pairs,
        clamped=clamp,
        net_says_a=Share(count(net_pred == y_a), n_pairs),
        judge_says_b=Share(count(judge_pred == y_b), n_pairs),
        judge_says_a=Share(count(judge_pred == y_a), n_pairs),
        chance_b=float((q * p).sum()),
        closer_to_b=Share(count(to_b < to_a), n_pairs),
        out_of_range=float((raw - raw.clamp(0, 1)).abs().mean()),
    )


# --------------------------------------------------------------------------------------------
# the metameric attack


@torch.no_grad()
def metameric_attack(net: InvertibleClassifier, images: torch.Tensor, targets: torch.Tensor,
                     pool_images: torch.Tensor, pool_labels: torch.Tensor, *,
                     candidates: int = 16, refine: int = 0,
                     generator: torch.Generator | None = None) -> torch.Tensor:
    """Make ``net`` see class ``targets[i]`` in ``images[i]`` by swapping in another image's logits.

    For each image, ``candidates`` images of the target class are drawn from the pool (among
    those ``net`` classifies as that class); each gives a metamer with its logits and the
    image's nuisance, clamped to [0, 1].  The attack keeps the candidate whose metamer ``net``
    classifies as the target and that is closest (L2) to the original image; if none is
    classified as the target, the closest one.  No gradient is used.  Returns the images.

    Clamping moves a metamer off its logits; ``refine`` rounds of "clamp, encode, put the
    candidate's logits back, invert" (alternating projections onto the image box and onto the
    codes with those logits) bring it back before the final clamp.
    """
    _check_batch("images", images, net.input_shape)
    _check_batch("pool_images", pool_images, net.input_shape)
    if targets.shape != (len(images),):
        raise ValueError(f"targets must hold one class per image, shape ({len(images)},), "
                         f"got {tuple(targets.shape)}")
    if not isinstance(candidates, int) or candidates < 1:
        raise ValueError(f"candidates must be a positive int, got {candidates!r}")
    if not isinstance(refine, int) or refine < 0:
        raise ValueError(f"refine must be an int >= 0, got {refine!r}")
    device = images.device
    pool_pred = predict(net, pool_images)
    usable = (pool_pred == pool_labels.to(device))
    z_s_pool = net.split(encode(net, pool_images))[0]
    z_n = net.split(encode(net, images))[1]
    targets = targets.to(device)
    best = images.clone()
    best_score = torch.full((len(images),), float("inf"), device=device)
    picks = torch.empty(len(images), candidates, dtype=torch.long, device=device)
    for c in torch.unique(targets).tolist():
        members = (usable & (pool_labels.to(device) == c)).nonzero().squeeze(1)
        if len(members) == 0:
            raise ValueError(f"the pool holds no image that net classifies as class {c}")
        rows = (targets == c).nonzero().squeeze(1)
        draw = torch.randint(len(members), (len(rows), candidates), generator=generator)
        picks[rows] = members[draw.to(device)]
    for k in range(candidates):
        z_s = z_s_pool[picks[:, k]]
        trial = decode(net, net.merge(z_s, z_n))
        for _ in range(refine):
            trial = decode(net, net.merge(z_s, net.split(encode(net, trial.clamp(0, 1)))[1]))
        trial = trial.clamp(0, 1)
        hit = predict(net, trial) == targets
        # hits always beat misses: a miss's score is its distance plus a large constant
        score = (trial - images).flatten(1).norm(dim=1) + (~hit).float() * 1e6
        better = score < best_score
        best[better] = trial[better]
        best_score = torch.where(better, score, best_score)
    return best


# --------------------------------------------------------------------------------------------
# controls: several judges, the same pairs for every net, noise of the same size


def common_pairs(models, images: torch.Tensor, labels: torch.Tensor, n: int, *,
                 generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """``n`` index pairs ``(a, b)`` into ``images``, of different classes, among the images that
    *every* model in ``models`` classifies correctly -- so that several nets can be compared on
    the same pairs and "says A" / "says B" mean the same for every judge."""
    models = list(models.values()) if isinstance(models, dict) else list(models)
    if not models:
        raise ValueError("common_pairs needs at least one model")
    ok = torch.ones(len(images), dtype=torch.bool, device=images.device)
    for model in models:
        ok &= predict(model, images) == labels
    pool = ok.nonzero().squeeze(1)
    a, b = sample_pairs(labels[pool], n, generator=generator)
    return pool[a.to(pool.device)], pool[b.to(pool.device)]


def size_matched_noise(images: torch.Tensor, changes: torch.Tensor, *,
                       generator: torch.Generator | None = None) -> torch.Tensor:
    """``images + noise`` with Gaussian noise rescaled to the L2 norm of ``changes`` per image.

    The control for any "image + change" experiment: if a judge reads ``images + noise`` the
    way it reads ``images + changes``, the size of the change explains the reading, not its
    direction.  Not clamped (neither are exact metamers).
    """
    if images.shape != changes.shape:
        raise ValueError(f"images and changes must have the same shape, got "
                         f"{tuple(images.shape)} and {tuple(changes.shape)}")
    noise = torch.randn(images.shape, generator=generator).to(images.device)
    size = changes.flatten(1).norm(dim=1) / noise.flatten(1).norm(dim=1)
    return images + noise * size.view(-1, *([1] * (images.dim() - 1)))


@dataclass
class Reading:
    """What one judge says about a batch of images made from pairs ``(A, B)``."""

    says_a: Share
    says_b: Share
    neither: Share


def read(judge: torch.nn.Module, images: torch.Tensor, class_a: torch.Tensor,
         class_b: torch.Tensor) -> Reading:
    """How often ``judge`` says A's class, B's class, or neither, on ``images``."""
    said = predict(judge, images)
    n = len(images)
    says_a, says_b = int((said == class_a).sum()), int((said == class_b).sum())
    return Reading(Share(says_a, n), Share(says_b, n), Share(n - says_a - says_b, n))


@dataclass
class ControlledStudy:
    """:func:`controlled_metamer_study`'s measurements over ``n`` pairs (A logits, B nuisance)."""

    n: int
    net_says_a: Share                  # the invertible net reads A's class in the metamer
    median_l2: float                   # median ||metamer - B||_2 (exact metamers, pixels)
    value_range: tuple[float, float]   # min and max pixel of the exact metamers
    metamer: dict[str, Reading]        # per judge, on the exact metamers
    noise: dict[str, Reading]          # per judge, on B + noise of the metamer's size per pair


def controlled_metamer_study(net: InvertibleClassifier, judges: dict[str, torch.nn.Module],
                             images: torch.Tensor, labels: torch.Tensor, a: torch.Tensor,
                             b: torch.Tensor, *, generator: torch.Generator | None = None
                             ) -> ControlledStudy:
    """Metamers ``f^{-1}(z_s(A), z_n(B))`` of the given pairs, read by every judge, beside the
    size-matched noise control ``B + noise`` with ``||noise|| = ||metamer - B||`` per pair.

    ``judges`` maps names to classifiers; the pairs ``(a, b)`` come from :func:`common_pairs`
    (pass the same pairs for every net to compare nets).  Nothing is clamped.
    """
    if not judges:
        raise ValueError("controlled_metamer_study needs at least one judge")
    x_a, x_b = images[a], images[b]
    y_a, y_b = labels[a], labels[b]
    met = metamers(net, x_a, x_b)
    noisy = size_matched_noise(x_b, met - x_b, generator=generator)
    n = len(met)
    return ControlledStudy(
        n=n,
        net_says_a=Share(int((predict(net, met) == y_a).sum()), n),
        median_l2=(met - x_b).flatten(1).norm(dim=1).median().item(),
        value_range=(met.min().item(), met.max().item()),
        metamer={name: read(judge, met, y_a, y_b) for name, judge in judges.items()},
        noise={name: read(judge, noisy, y_a, y_b) for name, judge in judges.items()},
    )
