"""Measuring a generator offline: "classifier FID", class coverage, and image sharpness.

**Classifier FID.**  The Fréchet Inception Distance (Heusel et al., 2017) fits a Gaussian to the
features of real and of generated images in a pretrained network and measures

    FD = ||mu_a - mu_b||^2 + Tr(S_a + S_b - 2 (S_a^1/2 S_b S_a^1/2)^1/2).

Inception needs ImageNet weights and a download; here the features are the penultimate layer of
a Fashion-MNIST classifier from the course's zoo (:data:`FID_CLASSIFIER`: ``fashion_lenet``,
256 features), which knows the domain far better.  The numbers are on their own scale -- compare
them only with the same classifier and the **same sample sizes** (the estimate is biased upward at
small N): the real-vs-real *floor* and the untrained-generator *ceiling* give the scale.

The matrix square root is taken stably: with S_a = U diag(l) U^T (``eigh``, eigenvalues clipped at
0), ``S_a^1/2 S_b S_a^1/2`` is symmetric positive semi-definite, so the trace of its square root is
the sum of the square roots of its eigenvalues -- no complex numbers, no ``scipy.linalg.sqrtm``
round-off, everything in float64 on the features' device.

**What the FID does not see.**  Two Gaussians are compared, so two quite different failures can
score alike: a generator that copies ten training images over and over has a real-looking mean
and a tolerable covariance.  And the value depends on the feature network: a difference measured
in one network's features may flip sign in another's.  Hence two more measures, and the rule to
call a difference only where independent measures agree:

- **precision and recall** on the k-nearest-neighbour manifolds of the two feature sets
  (Kynkäänniemi et al., 2019): precision is the share of samples that fall inside the real
  images' manifold (each real feature's ball reaching its k-th nearest real neighbour), recall the
  share of real images inside the samples' manifold.  Copies of a few images have high precision
  and almost no recall;
- **class coverage** -- the share of samples the classifier puts in each class -- shows mode
  collapse directly.  Its total variation from the real shares is read against the real-vs-real
  floor: two real samples of the same size differ too.

**Sharpness** (variance of the Laplacian, energy of the image gradient) tells blurry images from
sharp ones for the pix2pix comparison; a hand-made unsharp mask can raise it as well, so it is
never read alone.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from utils.training import evaluating


def penultimate(classifier: nn.Module) -> nn.Module:
    """The classifier without its last linear layer: images -> features (``nn.Sequential`` only)."""
    if not isinstance(classifier, nn.Sequential) or not isinstance(classifier[-1], nn.Linear):
        raise ValueError("classifier FID needs an nn.Sequential classifier whose last layer is "
                         f"nn.Linear (like the zoo's fashion_lenet), got {type(classifier).__name__}")
    return classifier[:-1]


def _images(images, name: str = "images") -> torch.Tensor:
    if not torch.is_tensor(images) or not images.is_floating_point() or images.dim() != 4:
        raise ValueError(f"{name} must be a float tensor (N, C, H, W) in [0, 1], got "
                         f"{tuple(images.shape) if torch.is_tensor(images) else type(images).__name__}")
    if len(images) == 0:
        raise ValueError(f"{name} is empty")
    return images


@torch.no_grad()
def features(classifier: nn.Module, images: torch.Tensor, *, batch_size: int = 1000) -> torch.Tensor:
    """Penultimate-layer features ``(N, d)`` of ``images`` (classifier in eval mode), on their device."""
    images = _images(images)
    body = penultimate(classifier)
    with evaluating(classifier):
        return torch.cat([body(images[i:i + batch_size]) for i in range(0, len(images), batch_size)])


def _moments(feats: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    if not torch.is_tensor(feats) or feats.dim() != 2:
        raise ValueError(f"features must be a (N, d) tensor, got "
                         f"{tuple(feats.shape) if torch.is_tensor(feats) else type(feats).__name__}")
    if len(feats) < 2:
        raise ValueError(f"need at least 2 feature vectors for a covariance, got {len(feats)}")
    x = feats.double()
    mu = x.mean(0)
    centred = x - mu
    return mu, centred.T @ centred / (len(x) - 1)


def _sqrt_psd(matrix: torch.Tensor) -> torch.Tensor:
    values, vectors = torch.linalg.eigh(matrix)
    return (vectors * values.clamp(min=0).sqrt()) @ vectors.T


def frechet_distance(feats_a: torch.Tensor, feats_b: torch.Tensor) -> torch.Tensor:
    """Fréchet distance between Gaussians fitted to two feature sets ``(N_a, d)``, ``(N_b, d)``.

    Returns a 0-d float64 tensor on the features' device (>= 0 up to round-off).
    """
    mu_a, cov_a = _moments(feats_a)
    mu_b, cov_b = _moments(feats_b)
    if mu_a.shape != mu_b.shape:
        raise ValueError(f"feature sizes differ: {mu_a.shape[0]} and {mu_b.shape[0]}")
    root_a = _sqrt_psd(cov_a)
    middle = root_a @ cov_b @ root_a
    middle = (middle + middle.T) / 2                        # symmetric up to round-off
    trace_sqrt = torch.linalg.eigvalsh(middle).clamp(min=0).sqrt().sum()
    return ((mu_a - mu_b) ** 2).sum() + torch.trace(cov_a) + torch.trace(cov_b) - 2 * trace_sqrt


def classifier_fid(classifier: nn.Module, images: torch.Tensor, reference) -> float:
    """Classifier FID of ``images`` against ``reference`` (images, or their :func:`features`)."""
    if not torch.is_tensor(reference) or reference.dim() not in (2, 4):
        raise ValueError("reference must be images (N, C, H, W) or their features (N, d)")
    reference_feats = reference if reference.dim() == 2 else features(classifier, reference)
    return frechet_distance(features(classifier, images), reference_feats).item()


@torch.no_grad()
def knn_radii(feats: torch.Tensor, k: int = 3, *, chunk: int = 1000) -> torch.Tensor:
    """Distance of each feature vector to its ``k``-th nearest neighbour in the same set ``(N,)``
    (itself excluded): the radius of its ball in the k-NN manifold estimate."""
    if not isinstance(k, int) or not 1 <= k < len(feats):
        raise ValueError(f"k must be an int in [1, {len(feats) - 1}], got {k!r}")
    x = feats.double()
    return torch.cat([torch.cdist(x[i:i + chunk], x).topk(k + 1, largest=False).values[:, k]
                      for i in range(0, len(x), chunk)])


def in_manifold(queries: torch.Tensor, support: torch.Tensor, radii: torch.Tensor, *,
                chunk: int = 1000) -> torch.Tensor:
    """For each query, whether it lies in some support point's ball (``radii``): ``(N_q,)`` bool."""
    q, s = queries.double(), support.double()
    return torch.cat([(torch.cdist(q[i:i + chunk], s) <= radii.double()).any(1)
                      for i in range(0, len(q), chunk)])


def precision_recall(real_feats: torch.Tensor, fake_feats: torch.Tensor, *, k: int = 3) -> dict:
    """Improved precision and recall (Kynkäänniemi et al., 2019) of samples against real images,
    from their features: ``{"precision", "recall"}`` in [0, 1].

    precision: share of samples inside the real k-NN manifold (fidelity); recall: share of real
    images inside the samples' k-NN manifold (diversity).  Compare at equal set sizes and ``k``.
    """
    _moments(real_feats), _moments(fake_feats)               # shape checks
    precision = in_manifold(fake_feats, real_feats, knn_radii(real_feats, k)).double().mean()
    recall = in_manifold(real_feats, fake_feats, knn_radii(fake_feats, k)).double().mean()
    return {"precision": precision.item(), "recall": recall.item()}


def fid_difference_bootstrap(reference: torch.Tensor, feats_x: torch.Tensor,
                             feats_y: torch.Tensor, *, resamples: int = 50,
                             seed: int = 0) -> torch.Tensor:
    """FD(reference, x) - FD(reference, y) on ``resamples`` bootstrap resamples of the paired rows
    of ``feats_x`` and ``feats_y`` (the same rows for both: x and y are outputs for the same
    inputs): ``(resamples,)``, positive where y is closer to the reference."""
    if feats_x.shape != feats_y.shape:
        raise ValueError(f"paired features must have one shape, got {tuple(feats_x.shape)} and "
                         f"{tuple(feats_y.shape)}")
    picks = torch.Generator().manual_seed(seed)
    out = []
    for _ in range(resamples):
        idx = torch.randint(len(feats_x), (len(feats_x),), generator=picks).to(feats_x.device)
        out.append(frechet_distance(reference, feats_x[idx]) - frechet_distance(reference,
                                                                                feats_y[idx]))
    return torch.stack(out).cpu()


@torch.no_grad()
def class_coverage(classifier: nn.Module, images: torch.Tensor, *, num_classes: int = 10,
                   batch_size: int = 1000) -> torch.Tensor:
    """Share of ``images`` the classifier assigns to each class: ``(num_classes,)``, sums to 1."""
    images = _images(images)
    with evaluating(classifier):
        predicted = torch.cat([classifier(images[i:i + batch_size]).argmax(1)
                               for i in range(0, len(images), batch_size)])
    return torch.bincount(predicted, minlength=num_classes).float() / len(images)


def total_variation(shares_a: torch.Tensor, shares_b: torch.Tensor) -> float:
    """Total variation distance between two class-share vectors: half the L1 distance, in [0, 1]
    (the share of samples that would have to change class to turn one into the other)."""
    if shares_a.shape != shares_b.shape or shares_a.dim() != 1:
        raise ValueError(f"need two share vectors of one length, got {tuple(shares_a.shape)} and "
                         f"{tuple(shares_b.shape)}")
    return 0.5 * (shares_a.double() - shares_b.double()).abs().sum().item()


_LAPLACIAN = torch.tensor([[0.0, 1.0, 0.0], [1.0, -4.0, 1.0], [0.0, 1.0, 0.0]])


def laplacian_variance(images: torch.Tensor) -> torch.Tensor:
    """Per-image variance of the Laplacian (the usual blur detector): ``(N,)``; blur lowers it."""
    images = _images(images)
    kernel = _LAPLACIAN.to(images).view(1, 1, 3, 3).repeat(images.shape[1], 1, 1, 1)
    response = F.conv2d(images, kernel, groups=images.shape[1])       # valid part only
    return response.flatten(1).var(1)


def gradient_energy(images: torch.Tensor) -> torch.Tensor:
    """Per-image mean squared finite-difference gradient ``(N,)``: edges and texture; blur lowers it."""
    images = _images(images)
    dx = images[..., :, 1:] - images[..., :, :-1]
    dy = images[..., 1:, :] - images[..., :-1, :]
    return dx.pow(2).flatten(1).mean(1) + dy.pow(2).flatten(1).mean(1)


# --------------------------------------------------------------------------------------------
# the lecture's evaluation protocol

FID_CLASSIFIER = "fashion_lenet"
"""The zoo classifier whose penultimate layer (256 features) the course's classifier FID uses:
LeNet-like, 88 % test accuracy, and about six times cheaper per image than ``fashion_cnn``."""


def reference_halves(device: torch.device | str | None = None, *, seed: int = 0,
                     with_labels: bool = False):
    """The Fashion-MNIST test set split in two random halves of 5000 images: ``(half_a, half_b)``.

    ``half_a`` is the reference every generator is compared with; ``half_b`` against ``half_a``
    gives the real-vs-real floor.  With ``with_labels`` each half is an ``(images, labels)`` pair.
    """
    from utils.data import fashion_mnist

    images, labels = fashion_mnist("test", device=device)
    order = torch.randperm(len(images), generator=torch.Generator().manual_seed(seed))
    halves = order[:5000].to(images.device), order[5000:].to(images.device)
    if with_labels:
        return tuple((images[half], labels[half]) for half in halves)
    return tuple(images[half] for half in halves)


def evaluate_generator(model: nn.Module, *, n: int = 5000, classifier: nn.Module | None = None,
                       device: torch.device | str | None = None, seed: int = 0) -> dict:
    """Classifier FID of ``n`` samples against the reference half, the floor at the same ``n``,
    and the class coverage of the samples: ``{"fid", "floor", "coverage", "n"}``."""
    from utils import zoo
    from utils.gans.models import sample

    if not isinstance(n, int) or not 2 <= n <= 5000:
        raise ValueError(f"n must be an int between 2 and 5000 (the size of a test half), got {n!r}")
    device = torch.device(device) if device is not None else next(model.parameters()).device
    classifier = classifier if classifier is not None else zoo.load(FID_CLASSIFIER, device)
    half_a, half_b = reference_halves(device)
    reference = features(classifier, half_a[:n])
    fakes = sample(model, n, generator=torch.Generator(device=device).manual_seed(seed),
                   device=device)
    return {"fid": frechet_distance(features(classifier, fakes), reference).item(),
            "floor": frechet_distance(features(classifier, half_b[:n]), reference).item(),
            "coverage": class_coverage(classifier, fakes), "n": n}


def sharpness_report(restored: torch.Tensor, sharp: torch.Tensor) -> dict:
    """How a restoration compares with the sharp originals: mean absolute error, and the
    Laplacian variance and gradient energy as shares of the originals' (1 = as sharp as real)."""
    restored, sharp = _images(restored, "restored"), _images(sharp, "sharp")
    if restored.shape != sharp.shape:
        raise ValueError(f"restored and sharp differ in shape: {tuple(restored.shape)} and "
                         f"{tuple(sharp.shape)}")
    return {"l1": (restored - sharp).abs().mean().item(),
            "laplacian_ratio": (laplacian_variance(restored).mean()
                                / laplacian_variance(sharp).mean()).item(),
            "gradient_ratio": (gradient_energy(restored).mean()
                               / gradient_energy(sharp).mean()).item()}


__all__ = ["penultimate", "features", "frechet_distance", "classifier_fid", "knn_radii",
           "in_manifold", "precision_recall", "fid_difference_bootstrap", "class_coverage",
           "total_variation",
           "laplacian_variance", "gradient_energy", "FID_CLASSIFIER", "reference_halves",
           "evaluate_generator", "sharpness_report"]
