"""The face-attack competition (a replica of Machines Can See 2018), on Olivetti faces.

The setting.  A face-descriptor network is a *black box*: images in, descriptors out, nothing
else.  A *pair set* is 5 source faces of one person and 5 target faces of another.  An attack
changes each source image so that its descriptor moves close (Euclidean distance) to the
target descriptors, while every changed image keeps SSIM >= 0.95 to its original.  The score of
a pair set is the mean L2 distance over the 5 x 5 source-target pairs; the score of a
submission is that mean over its pair sets.  Lower is better.

What this module holds:

- the split: :data:`TRAIN_PEOPLE` (0..24) trained the black box and the students;
  :data:`UNSEEN_PEOPLE` (25..39) are the only people pair sets are drawn from;
- :class:`BlackBox` -- the only way to reach the descriptor network: ``query(images)`` takes
  float images ``(N, 1, 64, 64)`` in [0, 1] and returns NumPy descriptors ``(N, 64)``; it counts
  the images it has seen (one image = one query) and honours an optional budget;
- :func:`pair_sets` -- seeded, reproducible pair sets; :func:`ssim_uint8` and :func:`to_uint8`
  -- the rule, on images as they are saved (``round(255 x)``); :func:`score_images`,
  :func:`write_submission`, :func:`score_submission` -- the scorer and the submission format;
- the training recipes of the zoo entries ``face_blackbox`` and ``face_student_*``;
- the attack ladder: :func:`attack` (iterative FGSM / FGVM, ensembles, keep-if-better, target
  combinations, SSIM boundary, smoothed gradients), :func:`de_polish`, :func:`cw_attack`,
  :func:`ladder_rungs` / :func:`run_ladder`, and :func:`best_attack` (the whole pipeline).
  These loops are face-specific: their loss is a distance between descriptors and their
  constraint is SSIM, where :mod:`utils.attacks` works on classifiers with labels and norm
  balls.

A submission is a folder holding one file ``submission.npz`` with two arrays: ``seed`` (int, the
seed given to :func:`pair_sets`) and ``images`` (uint8, shape ``(S, 5, 64, 64)``: the changed
sources of pair sets ``0 .. S-1`` of that seed, in the order :func:`pair_sets` gives them).
:func:`write_submission` writes one.  From the shell::

    python -m utils.faces score SUBMISSION_DIR          # validate and score one submission
    python -m utils.faces leaderboard DIR [DIR ...]     # rank several submissions
"""

from __future__ import annotations

import argparse
import functools
import math
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

SIZE = 64
DIM = 64
N_PEOPLE = 40
TRAIN_PEOPLE = tuple(range(25))
UNSEEN_PEOPLE = tuple(range(25, 40))
SSIM_LIMIT = 0.95
PAIR_SIZE = 5
STUDENTS = ("face_student_resnet", "face_student_cnn", "face_student_wide")
DISTILL_COPIES = 8      # augmented copies of each training face the students are distilled on


# ============================================================================================
# data: the identity split and augmentations


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


# ============================================================================================
# the black box


class QueryBudgetExceeded(RuntimeError):
    """The black box's query budget would be exceeded by this call."""


def _check_images(images, what: str = "images") -> torch.Tensor:
    """Validate a batch of face images for the black box and return it as a float32 tensor."""
    if isinstance(images, np.ndarray):
        if images.dtype == np.uint8:
            raise ValueError(f"{what} are uint8; the black box takes floats in [0, 1]: pass "
                             f"images.astype(np.float32) / 255")
        if not np.issubdtype(images.dtype, np.floating):
            raise ValueError(f"{what} have dtype {images.dtype}; pass float images in [0, 1]")
        images = torch.from_numpy(np.ascontiguousarray(images))
    if not isinstance(images, torch.Tensor):
        raise ValueError(f"{what} must be a torch.Tensor or numpy array, got {type(images).__name__}")
    if not images.is_floating_point():
        raise ValueError(f"{what} have dtype {images.dtype}; the black box takes float images in "
                         f"[0, 1] (for uint8 pixels divide by 255)")
    if images.dim() != 4 or tuple(images.shape[1:]) != (1, SIZE, SIZE) or len(images) == 0:
        raise ValueError(f"{what} must have shape (N, 1, {SIZE}, {SIZE}) with N >= 1, got "
                         f"{tuple(images.shape)}; add a batch axis with images[None] for one image")
    if torch.isnan(images).any() or torch.isinf(images).any():
        raise ValueError(f"{what} contain NaN or infinite values")
    low, high = images.min(), images.max()
    if low < 0 or high > 1:
        raise ValueError(f"{what} must lie in [0, 1], got values in [{float(low):.3g}, "
                         f"{float(high):.3g}]; clamp them with images.clamp(0, 1)")
    return images.detach().float()


class BlackBox:
    """The competition's black box: face images in, face descriptors out, nothing else.

    ``query(images)`` takes float images ``(N, 1, 64, 64)`` in [0, 1] (a torch tensor on any
    device, or a NumPy array) and returns a NumPy float32 array ``(N, 64)`` of L2-normalised
    descriptors.  No gradients, no weights: the network lives inside a closure.  Every image is
    one query; ``queries`` counts them, and with ``budget`` set a call that would exceed it
    raises :class:`QueryBudgetExceeded` before anything runs.

    ``BlackBox()`` loads the zoo entry ``face_blackbox``; ``BlackBox.from_network(net)`` wraps
    any descriptor network (used by the tests and to build a teacher that is not the real one).
    """

    __slots__ = ("_BlackBox__describe", "_BlackBox__queries", "_BlackBox__budget",
                 "_BlackBox__name")

    def __init__(self, device: torch.device | str | None = None, *, budget: int | None = None,
                 _network: nn.Module | None = None, _name: str = "face_blackbox"):
        device = torch.device(device) if device is not None else torch.device("cpu")
        if _network is None:
            from utils import zoo

            _network = zoo.load("face_blackbox", device)
        network = _network.to(device).eval()

        @torch.no_grad()
        def describe(images: torch.Tensor) -> np.ndarray:
            out = [network(images[i:i + 512].to(device)) for i in range(0, len(images), 512)]
            return torch.cat(out).float().cpu().numpy()

        self.__describe = describe
        self.__queries = 0
        if budget is not None and (not isinstance(budget, int) or budget < 0):
            raise ValueError(f"budget must be a non-negative int or None, got {budget!r}")
        self.__budget = budget
        self.__name = _name

    @classmethod
    def from_network(cls, network: nn.Module, *, budget: int | None = None,
                     device: torch.device | str | None = None, name: str = "custom") -> "BlackBox":
        return cls(device, budget=budget, _network=network, _name=name)

    @property
    def queries(self) -> int:
        """How many images this black box has described so far."""
        return self.__queries

    @property
    def budget(self) -> int | None:
        return self.__budget

    @property
    def remaining(self) -> int | float:
        return math.inf if self.__budget is None else self.__budget - self.__queries

    def query(self, images) -> np.ndarray:
        """Descriptors ``(N, 64)`` (NumPy float32, unit length) of ``images`` ``(N, 1, 64, 64)``."""
        images = _check_images(images)
        if self.__budget is not None and self.__queries + len(images) > self.__budget:
            raise QueryBudgetExceeded(
                f"this query of {len(images)} images would exceed the black box's budget of "
                f"{self.__budget} queries ({self.__queries} used, {self.remaining} left)")
        self.__queries += len(images)
        return self.__describe(images)

    __call__ = query

    def __repr__(self) -> str:
        budget = "no budget" if self.__budget is None else f"budget {self.__budget}"
        return (f"<BlackBox {self.__name!r}: query(float images (N, 1, {SIZE}, {SIZE}) in [0, 1])"
                f" -> descriptors (N, {DIM}); {self.__queries} queries used, {budget}>")

    def __getstate__(self):
        raise TypeError("a BlackBox cannot be pickled (that would hand out its network)")

    def __reduce_ex__(self, protocol):
        raise TypeError("a BlackBox cannot be pickled (that would hand out its network)")


def query_tensor(blackbox: BlackBox, images: torch.Tensor) -> torch.Tensor:
    """``blackbox.query`` returning a float32 tensor on the images' device."""
    return torch.from_numpy(blackbox.query(images)).to(images.device)


# ============================================================================================
# pair sets, the SSIM rule and the score


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


def to_uint8(images: torch.Tensor) -> torch.Tensor:
    """Images as they would be saved: ``round(255 x)`` as uint8 (same device)."""
    return (images.clamp(0, 1) * 255).round().to(torch.uint8)


def ssim_uint8(images, originals) -> torch.Tensor:
    """SSIM of each image to its original, both as saved (uint8), with pytorch-msssim's
    default 11x11 Gaussian window: a float tensor ``(N,)``.  Accepts float [0, 1] or uint8."""
    from pytorch_msssim import ssim

    def pixels(x):
        x = torch.as_tensor(x)
        if x.dtype != torch.uint8:
            x = to_uint8(x)
        if x.dim() == 3:
            x = x.unsqueeze(1)
        return x.float()

    a, b = pixels(images), pixels(originals)
    if a.shape != b.shape:
        raise ValueError(f"images {tuple(a.shape)} and originals {tuple(b.shape)} differ in shape")
    return ssim(a, b.to(a.device), data_range=255, size_average=False)


_SSIM_MARGIN = 1e-5       # the attacks' own (fast) check aims this much above the limit


@functools.lru_cache(maxsize=8)
def _gaussian_band(size: int, device, dtype, window: int = 11, sigma: float = 1.5):
    t = torch.arange(window, device=device, dtype=dtype) - window // 2
    g = torch.exp(-t ** 2 / (2 * sigma ** 2))
    g = g / g.sum()
    band = torch.zeros(size - window + 1, size, device=device, dtype=dtype)
    for i in range(size - window + 1):
        band[i, i:i + window] = g
    return band


def ssim_fast(images: torch.Tensor, originals: torch.Tensor) -> torch.Tensor:
    """The same SSIM as :func:`ssim_uint8` (pytorch-msssim's formula: 11x11 Gaussian window,
    sigma 1.5, K = (0.01, 0.03), valid filtering) computed with two matrix products instead of
    convolutions: several times faster on a CPU, for the attacks' inner loops.  The scorer
    always uses :func:`ssim_uint8`; a test checks that both agree."""
    a = to_uint8(images).float()
    b = to_uint8(originals).float().to(a.device)
    band = _gaussian_band(a.shape[-1], a.device, a.dtype)
    mu_a, mu_b, aa, bb, ab = band @ torch.stack([a, b, a * a, b * b, a * b]) @ band.t()
    c1, c2 = (0.01 * 255) ** 2, (0.03 * 255) ** 2
    var_a, var_b, cov = aa - mu_a ** 2, bb - mu_b ** 2, ab - mu_a * mu_b
    value = ((2 * mu_a * mu_b + c1) / (mu_a ** 2 + mu_b ** 2 + c1)) * \
        ((2 * cov + c2) / (var_a + var_b + c2))
    return value.flatten(1).mean(1)


def _valid(images: torch.Tensor, originals: torch.Tensor) -> torch.Tensor:
    """The attacks' validity check (fast SSIM, with a hair of margin)."""
    return ssim_fast(images, originals) >= SSIM_LIMIT + _SSIM_MARGIN


def pair_distances(sources_desc, targets_desc) -> torch.Tensor:
    """The 5 x 5 (in general S x T) matrix of L2 distances between descriptors."""
    return torch.cdist(torch.as_tensor(sources_desc).float(), torch.as_tensor(targets_desc).float())


def score_images(blackbox: BlackBox, adversarial, pairs: Sequence[PairSet]) -> dict:
    """Validate and score changed sources ``(S, 5, 1, 64, 64)`` (float in [0, 1] or uint8) for
    ``pairs``: the images are saved to uint8 first, as a submission would be.

    Returns ``{"score", "per_set", "ssim", "valid", "violations"}``; ``violations`` names each
    image under the SSIM limit.  The score is computed on all images (valid or not).
    """
    adversarial = torch.as_tensor(adversarial)
    if adversarial.dim() == 4:
        adversarial = adversarial.unsqueeze(2)
    expected = (len(pairs), PAIR_SIZE, 1, SIZE, SIZE)
    if tuple(adversarial.shape) != expected:
        raise ValueError(f"adversarial images must have shape {expected}, got "
                         f"{tuple(adversarial.shape)}")
    saved = adversarial if adversarial.dtype == torch.uint8 else to_uint8(adversarial)
    per_set, ssims, violations = [], [], []
    for k, pair in enumerate(pairs):
        sources, targets = pair.images()
        images = saved[k].float().cpu() / 255
        values = ssim_uint8(saved[k].cpu(), sources)
        ssims.append(values)
        for i, value in enumerate(values.tolist()):
            if not value >= SSIM_LIMIT:
                violations.append(f"pair set {k}, source {i} (person {pair.source_person}, photo "
                                  f"{pair.source_index[i] % 10}): SSIM {value:.4f} < {SSIM_LIMIT}")
        distances = pair_distances(blackbox.query(images), blackbox.query(targets))
        per_set.append(float(distances.mean()))
    return {"score": float(np.mean(per_set)), "per_set": per_set,
            "ssim": torch.stack(ssims), "valid": not violations, "violations": violations}


def baseline_score(blackbox: BlackBox, pairs: Sequence[PairSet]) -> float:
    """The score of the untouched sources ("no attack")."""
    return score_images(blackbox, torch.stack([p.images()[0] for p in pairs]), pairs)["score"]


# ============================================================================================
# submissions and the command line


SUBMISSION_FILE = "submission.npz"


class SubmissionError(ValueError):
    """A submission that cannot be scored; the message names every problem found."""


def write_submission(folder, images, seed: int) -> Path:
    """Save changed sources ``(S, 5, 1, 64, 64)`` (float or uint8) of ``pair_sets(S, seed)``."""
    images = torch.as_tensor(images)
    saved = images if images.dtype == torch.uint8 else to_uint8(images)
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / SUBMISSION_FILE
    np.savez_compressed(path, seed=np.int64(seed),
                        images=saved.reshape(-1, PAIR_SIZE, SIZE, SIZE).cpu().numpy())
    return path


def read_submission(folder):
    """``(images uint8 (S, 5, 1, 64, 64), pairs)`` of a submission folder, or SubmissionError."""
    path = Path(folder) / SUBMISSION_FILE
    if not path.is_file():
        raise SubmissionError(f"{folder}: no {SUBMISSION_FILE} (see `python -m utils.faces -h` for "
                              f"the format)")
    try:
        with np.load(path, allow_pickle=False) as data:
            missing = [key for key in ("seed", "images") if key not in data.files]
            if missing:
                raise SubmissionError(f"{path.name}: missing array(s) {', '.join(missing)}")
            seed, images = data["seed"], data["images"]
    except SubmissionError:
        raise
    except Exception as error:
        raise SubmissionError(f"{path.name} is not a readable .npz file ({error})") from None
    problems = []
    if seed.shape != () or not np.issubdtype(seed.dtype, np.integer):
        problems.append(f"'seed' must be one integer, got dtype {seed.dtype} shape {seed.shape}")
    if images.dtype != np.uint8:
        problems.append(f"'images' must be uint8 (saved pixels), got {images.dtype}")
    if images.ndim != 4 or images.shape[1:] != (PAIR_SIZE, SIZE, SIZE) or len(images) == 0:
        problems.append(f"'images' must have shape (S, {PAIR_SIZE}, {SIZE}, {SIZE}) with S >= 1, "
                        f"got {images.shape}")
    if problems:
        raise SubmissionError(f"{path.name}: " + "; ".join(problems))
    pairs = pair_sets(len(images), int(seed))
    return torch.from_numpy(images).unsqueeze(2), pairs


def score_submission(folder, blackbox: BlackBox | None = None) -> dict:
    """Validate and score a submission folder; raises :class:`SubmissionError` naming each
    image that breaks the SSIM rule (or what else is wrong)."""
    images, pairs = read_submission(folder)
    result = score_images(blackbox or BlackBox(), images, pairs)
    if not result["valid"]:
        raise SubmissionError(f"{folder}: {len(result['violations'])} image(s) break the rule "
                              f"SSIM >= {SSIM_LIMIT}:\n  " + "\n  ".join(result["violations"]))
    return result


def leaderboard(folders: Sequence, blackbox: BlackBox | None = None) -> list[dict]:
    """Score each submission folder; rows sorted by score (invalid submissions last)."""
    blackbox = blackbox or BlackBox()
    rows = []
    for folder in folders:
        try:
            result = score_submission(folder, blackbox)
            rows.append({"submission": str(folder), "score": result["score"],
                         "pair_sets": len(result["per_set"]),
                         "min_ssim": float(result["ssim"].min()), "status": "valid"})
        except SubmissionError as error:
            rows.append({"submission": str(folder), "score": math.inf, "pair_sets": 0,
                         "min_ssim": math.nan, "status": f"REJECTED: {error}"})
    return sorted(rows, key=lambda row: row["score"])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m utils.faces", formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Score face-attack submissions (lecture 03).",
        epilog=f"A submission is a folder with {SUBMISSION_FILE}: arrays 'seed' (int) and 'images' "
               f"(uint8, (S, 5, 64, 64): the changed sources of utils.faces.pair_sets(S, seed)). "
               f"Every image needs SSIM >= {SSIM_LIMIT} to its original; the score is the mean L2 "
               f"distance over the 5x5 source-target descriptor pairs, averaged over pair sets.")
    commands = parser.add_subparsers(dest="command", required=True)
    one = commands.add_parser("score", help="validate and score one submission folder")
    one.add_argument("folder")
    many = commands.add_parser("leaderboard", help="rank several submission folders")
    many.add_argument("folders", nargs="+")
    args = parser.parse_args(argv)
    if args.command == "score":
        try:
            result = score_submission(args.folder)
        except SubmissionError as error:
            print(f"REJECTED {error}")
            return 1
        print(f"{args.folder}: valid, {len(result['per_set'])} pair sets, score "
              f"{result['score']:.4f} (min SSIM {float(result['ssim'].min()):.4f})")
        return 0
    rows = leaderboard(args.folders)
    print(f"{'rank':>4}  {'score':>8}  {'sets':>4}  {'min SSIM':>8}  submission")
    for rank, row in enumerate(rows, 1):
        print(f"{rank:>4}  {row['score']:8.4f}  {row['pair_sets']:>4}  {row['min_ssim']:8.4f}  "
              f"{row['submission']}  {'' if row['status'] == 'valid' else row['status']}")
    return 0


# ============================================================================================
# training the black box and distilling students (zoo recipes)


def train_blackbox(model: nn.Module, device: torch.device, *, epochs: int = 30,
                   batch_size: int = 50, lr: float = 3e-3, seed: int = 0) -> nn.Module:
    """Normalised-softmax training of the descriptor net on the 25 training people, with
    augmentation; prints same- vs different-person distances on the 15 unseen people."""
    from tqdm.auto import tqdm

    images, ids = faces_of(TRAIN_PEOPLE, device)
    generator = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    model.to(device).train()
    optimiser = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=5e-4)
    steps = epochs * math.ceil(len(images) / batch_size)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimiser, max_lr=lr, total_steps=steps)
    bar = tqdm(total=steps, desc="face black box", leave=False)
    for _ in range(epochs):
        order = torch.randperm(len(images), generator=generator).to(device)
        for start in range(0, len(images), batch_size):
            index = order[start:start + batch_size]
            x = augment(images[index], generator)
            loss = F.cross_entropy(model.logits(x), ids[index], label_smoothing=0.1)
            optimiser.zero_grad(set_to_none=True)
            loss.backward()
            optimiser.step()
            schedule.step()
            bar.update(1)
        bar.set_postfix(loss=f"{loss.item():.3f}")
    bar.close()
    model.eval()
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


def distill_student(model: nn.Module, device: torch.device, *, epochs: int = 8,
                    batch_size: int = 64, lr: float = 3e-3, copies: int = DISTILL_COPIES,
                    seed: int = 0) -> nn.Module:
    """Train ``model`` to reproduce the black box's descriptors (MSE), on the training people's
    faces and augmentations; prints its MSE on the unseen people's faces."""
    from tqdm.auto import tqdm

    blackbox = BlackBox(device)
    x, y = distillation_set(blackbox, copies=copies, seed=seed, device=device)
    generator = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    model.to(device).train()
    optimiser = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=1e-4)
    steps = epochs * math.ceil(len(x) / batch_size)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimiser, max_lr=lr, total_steps=steps)
    bar = tqdm(total=steps, desc="distilling student", leave=False)
    for _ in range(epochs):
        order = torch.randperm(len(x), generator=generator).to(device)
        for start in range(0, len(x), batch_size):
            index = order[start:start + batch_size]
            loss = F.mse_loss(model(x[index]), y[index])
            optimiser.zero_grad(set_to_none=True)
            loss.backward()
            optimiser.step()
            schedule.step()
            bar.update(1)
        bar.set_postfix(mse=f"{loss.item():.2e}")
    bar.close()
    model.eval()
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


# ============================================================================================
# the attack ladder


def load_students(names: Sequence[str] = STUDENTS, device: torch.device | str | None = None):
    """The distilled students from the zoo, in eval mode with frozen parameters."""
    from utils import zoo

    out = []
    for name in names:
        model = zoo.load(name, device)
        for parameter in model.parameters():
            parameter.requires_grad_(False)
        out.append(model)
    return out


def _target_points(targets_desc: torch.Tensor, mode: str, generator: torch.Generator | None):
    """The points in descriptor space the students pull each source towards, ``(P, DIM)``.

    ``each``: the 5 target descriptors (the score's own terms); ``mean``: their mean;
    ``combos``: the means of a random pair and a random triple of targets plus all 5 (drawn
    anew every step, so that no single target's quirks dominate).
    """
    if mode == "each":
        return targets_desc
    if mode == "mean":
        return targets_desc.mean(0, keepdim=True)
    if mode == "combos":
        n = len(targets_desc)
        points = [targets_desc]
        for size in (2, 3):
            pick = torch.randperm(n, generator=generator)[:size].to(targets_desc.device)
            points.append(targets_desc[pick].mean(0, keepdim=True))
        points.append(targets_desc.mean(0, keepdim=True))
        return torch.cat(points)
    raise ValueError(f"target mode must be 'each', 'mean' or 'combos', got {mode!r}")


def gaussian_blur(x: torch.Tensor, sigma: float) -> torch.Tensor:
    """Blur each image with a Gaussian of std ``sigma`` pixels (reflect padding)."""
    radius = max(1, int(math.ceil(3 * sigma)))
    t = torch.arange(-radius, radius + 1, device=x.device, dtype=x.dtype)
    kernel = torch.exp(-t ** 2 / (2 * sigma ** 2))
    kernel = kernel / kernel.sum()
    x = F.pad(x, (radius,) * 4, mode="reflect")
    x = F.conv2d(x, kernel.view(1, 1, 1, -1))
    return F.conv2d(x, kernel.view(1, 1, -1, 1))


def student_loss(students: Sequence[nn.Module], weights: torch.Tensor, x: torch.Tensor,
                 points: torch.Tensor) -> torch.Tensor:
    """Per image: the weighted sum over students of the mean L2 distance to ``points``."""
    total = 0
    for weight, student in zip(weights, students):
        total = total + weight * torch.cdist(student(x), points).mean(1)
    return total


def blackbox_loss(blackbox: BlackBox, x: torch.Tensor, targets_desc: torch.Tensor) -> torch.Tensor:
    """Per image: mean L2 distance of its black-box descriptor to the targets' (queries len(x),
    on the images as they would be saved)."""
    return torch.cdist(query_tensor(blackbox, to_uint8(x).float() / 255), targets_desc).mean(1)


def project_ssim(x: torch.Tensor, originals: torch.Tensor, *, grid: int = 8) -> torch.Tensor:
    """Pull each image back along the segment to its original until its saved SSIM >= 0.95:
    the largest scale ``t`` in [0, 1] with SSIM(x0 + t (x - x0)) >= 0.95, searched on a grid of
    ``grid`` scales and then ``grid`` finer ones below the first invalid scale (two batched
    SSIM calls, precision ``1 / grid**2``).  Images already valid are returned unchanged."""
    ok = _valid(x, originals)
    if bool(ok.all()):
        return x
    n, device = len(x), x.device
    delta = x - originals
    low = torch.zeros(n, device=device)
    width = 1.0
    for _ in range(2):
        width = width / grid
        scales = low[:, None] + width * torch.arange(1, grid + 1, device=device)   # (n, grid)
        trial = originals[:, None] + scales[..., None, None, None] * delta[:, None]
        good = _valid(trial.flatten(0, 1), originals.repeat_interleave(grid, 0)).view(n, grid)
        # the first invalid scale on the grid bounds the search; keep the last valid before it
        first_bad = torch.where(good.all(1), torch.full_like(low, grid, dtype=torch.long),
                                (~good).float().argmax(1))
        low = low + width * first_bad.float()
    scale = torch.where(ok, torch.ones_like(low), low).view(-1, 1, 1, 1)
    return originals + scale * delta


def _guard(images: torch.Tensor, originals: torch.Tensor) -> torch.Tensor:
    """Last check with the scorer's own SSIM: an image that fails it goes back to its original."""
    bad = (ssim_uint8(images, originals) < SSIM_LIMIT).view(-1, 1, 1, 1)
    return torch.where(bad, originals, images)


@dataclass
class AttackResult:
    """What an attack returns: the changed sources (quantised to uint8 levels, float in
    [0, 1]), and how it went."""

    images: torch.Tensor
    queries: int
    steps: int
    history: list
    rejected: int = 0   # image-steps that keep-if-better refused (the black box said "worse")


def attack(blackbox: BlackBox, sources: torch.Tensor, targets: torch.Tensor,
           students: Sequence[nn.Module], *, method: str = "fgvm", weights=None,
           steps: int = 40, eps: float = 2 / 255, keep_if_better: bool = False,
           target_mode: str = "each", boundary: bool = False,
           smooth: float = 0.0, generator: torch.Generator | None = None,
           progress: bool = False) -> AttackResult:
    """The gradient rungs of the ladder, on one pair set, through the black box's API.

    Every step moves each source down the students' (weighted) gradient of the mean distance
    to the target descriptors (queried once from the black box):

    - ``method="fgsm"``: ``x -= eps * sign(g)`` (the competition baseline's iterative FGSM);
      ``method="fgvm"``: ``x -= eps * clamp(g / std(g), -2, 2)`` (fast gradient *value*);
    - ``weights``: one per student (default equal), the ensemble's gradient is their weighted sum;
    - ``keep_if_better``: a step is kept only where it lowers that image's black-box loss (5
      queries per step), otherwise that image's step size is halved;
    - ``target_mode``: ``each`` / ``mean`` / ``combos`` (see :func:`_target_points`);
    - ``smooth`` > 0: blur the gradient with a Gaussian of that many pixels before the step
      (low-frequency changes cost little SSIM and transfer better);
    - ``boundary=False``: an image stops for good at the first step that would break SSIM >= 0.95
      (the baseline's rule); ``boundary=True``: the step is pulled back onto the SSIM boundary
      (:func:`project_ssim`) and the attack goes on from there.
    """
    from tqdm.auto import tqdm

    if method not in ("fgsm", "fgvm"):
        raise ValueError(f"method must be 'fgsm' or 'fgvm', got {method!r}")
    if not eps > 0 or steps < 0:
        raise ValueError(f"eps must be > 0 and steps >= 0, got eps={eps}, steps={steps}")
    sources, targets = _check_images(sources, "sources"), _check_images(targets, "targets")
    device = sources.device
    students = list(students)
    weights = torch.ones(len(students)) if weights is None else torch.as_tensor(weights).float()
    weights = (weights / weights.sum()).to(device)
    start = blackbox.queries
    targets_desc = query_tensor(blackbox, targets)
    x0 = to_uint8(sources).float() / 255
    x = x0.clone()
    n = len(x)
    step = torch.full((n, 1, 1, 1), float(eps), device=device)
    active = torch.ones(n, 1, 1, 1, dtype=torch.bool, device=device)
    best = blackbox_loss(blackbox, x, targets_desc) if keep_if_better else None
    history = []
    rejected = torch.zeros((), dtype=torch.long, device=device)
    for _ in tqdm(range(steps), desc=f"{method} attack", leave=False, disable=not progress):
        points = _target_points(targets_desc, target_mode, generator)
        x_var = x.clone().requires_grad_(True)
        loss = student_loss(students, weights, x_var, points)
        (grad,) = torch.autograd.grad(loss.sum(), x_var)
        if smooth > 0:
            grad = gaussian_blur(grad, smooth)
        if method == "fgsm":
            direction = grad.sign()
        else:
            std = grad.flatten(1).std(1).clamp_min(1e-12).view(-1, 1, 1, 1)
            direction = (grad / std).clamp(-2, 2)
        candidate = (x - step * direction).clamp(0, 1)
        if boundary:
            candidate = project_ssim(candidate, x0)
        else:
            broke = (~_valid(candidate, x0)).view(-1, 1, 1, 1)
            active = active & ~broke
        move = active
        if keep_if_better:
            new = blackbox_loss(blackbox, candidate, targets_desc)
            better = (new < best).view(-1, 1, 1, 1) & active
            rejected = rejected + (active & ~better).sum()
            best = torch.where(better.view(-1), new, best)
            step = torch.where(better | ~active, step, step / 2)
            move = better
        x = torch.where(move, candidate, x)
        history.append(loss.detach().mean())
    images = _guard(to_uint8(x).float() / 255, x0)
    return AttackResult(images, blackbox.queries - start, steps, torch.stack(history).tolist()
                        if history else [], int(rejected))


def de_polish(blackbox: BlackBox, originals: torch.Tensor, adversarial: torch.Tensor,
              targets: torch.Tensor, students: Sequence[nn.Module] = (), *, pixels: int = 32,
              population: int = 16, generations: int = 12, amplitude: float = 6 / 255,
              mutation: float = 0.6, crossover: float = 0.7,
              generator: torch.Generator | None = None, progress: bool = False) -> AttackResult:
    """Differential-evolution pixel polish, black-box only: for each image, DE (rand/1/bin)
    searches additive changes in [-amplitude, amplitude] to ``pixels`` chosen pixels (where the
    students' gradient is largest, or random pixels without students).  Fitness is the image's
    black-box loss; a candidate breaking SSIM >= 0.95 is infeasible.  The current image is in the
    first population, so the polish never makes an image worse.
    Costs ``5 + n * population * (generations + 1)`` queries."""
    from tqdm.auto import tqdm

    originals = _check_images(originals, "originals")
    x = to_uint8(_check_images(adversarial, "adversarial")).float() / 255
    x0 = to_uint8(originals).float() / 255
    device, n = x.device, len(x)
    start = blackbox.queries
    targets_desc = query_tensor(blackbox, _check_images(targets, "targets"))
    if students:
        x_var = x.clone().requires_grad_(True)
        loss = student_loss(students, torch.ones(len(students), device=device) / len(students),
                            x_var, targets_desc)
        (grad,) = torch.autograd.grad(loss.sum(), x_var)
        where = grad.abs().flatten(1).topk(pixels, dim=1).indices                 # (n, k)
    else:
        where = torch.stack([torch.randperm(SIZE * SIZE, generator=generator)[:pixels]
                             for _ in range(n)]).to(device)

    def rand(*shape):
        return torch.rand(*shape, generator=generator).to(device)

    def fitness(genes):                                                          # (n, P, k)
        p = genes.shape[1]
        flat = x.flatten(1).repeat_interleave(p, 0)                              # (n P, 4096)
        flat = flat.scatter_add(1, where.repeat_interleave(p, 0), genes.reshape(n * p, -1))
        candidates = (to_uint8(flat.view(-1, 1, SIZE, SIZE)).float() / 255)
        ok = _valid(candidates, x0.repeat_interleave(p, 0))
        value = blackbox_loss(blackbox, candidates, targets_desc)
        return torch.where(ok, value, torch.full_like(value, math.inf)).view(n, p)

    genes = amplitude * (2 * rand(n, population, pixels) - 1)
    genes[:, 0] = 0
    score = fitness(genes)
    rows = torch.arange(n, device=device)[:, None]
    for _ in tqdm(range(generations), desc="DE polish", leave=False, disable=not progress):
        picks = torch.stack([torch.randperm(population, generator=generator)[:3]
                             for _ in range(n * population)]).to(device).view(n, population, 3)
        a, b, c = (genes[rows, picks[..., i]] for i in range(3))
        mutant = (a + mutation * (b - c)).clamp(-amplitude, amplitude)
        cross = rand(n, population, pixels) < crossover
        cross[..., 0] |= True                      # at least one gene from the mutant (simplified)
        trial = torch.where(cross, mutant, genes)
        trial_score = fitness(trial)
        better = trial_score <= score
        genes = torch.where(better[..., None], trial, genes)
        score = torch.where(better, trial_score, score)
    best = score.argmin(1)
    chosen = genes[torch.arange(n, device=device), best]
    flat = x.flatten(1).scatter_add(1, where, chosen)
    images = _guard(to_uint8(flat.view(-1, 1, SIZE, SIZE)).float() / 255, x0)
    return AttackResult(images, blackbox.queries - start, generations, score.min(1).values.tolist())


def cw_attack(student: nn.Module, sources: torch.Tensor, targets_desc: torch.Tensor, *,
              c: float = 20.0, steps: int = 200, lr: float = 0.02) -> torch.Tensor:
    """Carlini-Wagner-style L2 attack on ONE student (white box), end to end: with
    ``x = (tanh(w) + 1) / 2``, Adam minimises ``||x - x0||^2 + c * mean_j ||s(x) - t_j||`` for
    each image.  No SSIM rule inside (the result can be projected with :func:`project_ssim`).
    Returns the changed images, quantised to uint8 levels."""
    x0 = _check_images(sources, "sources")
    w = torch.atanh((x0 * 2 - 1).clamp(-1 + 1e-6, 1 - 1e-6)).clone().requires_grad_(True)
    optimiser = torch.optim.Adam([w], lr=lr)
    for _ in range(steps):
        x = (torch.tanh(w) + 1) / 2
        distance = torch.cdist(student(x), targets_desc).mean(1)
        loss = ((x - x0) ** 2).flatten(1).sum(1) + c * distance
        optimiser.zero_grad(set_to_none=True)
        loss.sum().backward()
        optimiser.step()
    return to_uint8((torch.tanh(w.detach()) + 1) / 2).float() / 255


# ============================================================================================
# the ladder: every rung on the same pair sets, and the best pipeline


BASELINE = dict(method="fgsm", steps=20, eps=1 / 255)
FGVM = dict(method="fgvm", steps=12, eps=3 / 255)
BEST = dict(FGVM, keep_if_better=True, target_mode="combos", boundary=True, smooth=3.0)
DE_POLISH = dict(pixels=32, population=10, generations=5, amplitude=6 / 255)


def ladder_rungs(students: Sequence[nn.Module], weights=None) -> list[tuple[str, Callable]]:
    """The rungs of the ablation, each adding one idea to the one before:
    ``[(name, run(blackbox, sources, targets, generator, previous) -> AttackResult), ...]``
    where ``previous`` is the rung before's result on the same pair set (the DE polish starts
    from it).  The baseline and the FGVM rung use ``students[0]`` alone."""
    one = list(students[:1])
    configs = [
        ("iterative FGSM, 1 student (baseline)", one, dict(BASELINE)),
        ("FGVM, 1 student", one, dict(FGVM)),
        ("+ ensemble of students", students, dict(FGVM)),
        ("+ keep step only if black-box loss drops", students, dict(FGVM, keep_if_better=True)),
        ("+ target combinations", students, dict(FGVM, keep_if_better=True,
                                                 target_mode=BEST["target_mode"])),
        ("+ stop at the SSIM boundary", students, dict(BEST, smooth=0.0)),
        ("+ smooth gradients (beyond the write-up)", students, dict(BEST)),
    ]

    def gradient_rung(models, config):
        def run(blackbox, sources, targets, generator, previous=None):
            w = weights if models is students else None
            return attack(blackbox, sources, targets, models, weights=w, generator=generator,
                          **config)
        return run

    rungs = [("no attack", lambda blackbox, sources, targets, generator, previous=None:
              AttackResult(to_uint8(sources).float() / 255, 0, 0, []))]
    rungs += [(name, gradient_rung(models, config)) for name, models, config in configs]

    def polished(blackbox, sources, targets, generator, previous=None):
        first = previous if previous is not None else attack(
            blackbox, sources, targets, students, weights=weights, generator=generator, **BEST)
        second = de_polish(blackbox, sources, first.images, targets, students,
                           generator=generator, **DE_POLISH)
        return AttackResult(second.images, first.queries + second.queries,
                            first.steps + second.steps, first.history, first.rejected)

    rungs.append(("+ differential-evolution pixel polish", polished))
    return rungs


def run_ladder(blackbox: BlackBox, pairs: Sequence[PairSet], rungs, *, seed: int = 0,
               device: torch.device | str | None = None, progress: bool = True) -> list[dict]:
    """Run every rung on every pair set; one row per rung: score, mean/min SSIM, queries/set.

    Scoring queries are not counted (only what each attack spent); the score is computed by
    :func:`score_images` on the saved (uint8) images."""
    from tqdm.auto import tqdm

    rows = []
    bar = tqdm(total=len(rungs) * len(pairs), desc="attack ladder", disable=not progress)
    previous = [None] * len(pairs)
    for name, run in rungs:
        generator = torch.Generator().manual_seed(seed)
        images, queries, rejected = [], [], 0
        for k, pair in enumerate(pairs):
            sources, targets = pair.images(device)
            result = run(blackbox, sources, targets, generator, previous[k])
            previous[k] = result
            images.append(result.images.cpu())
            queries.append(result.queries)
            rejected += result.rejected
            bar.update(1)
        scored = score_images(blackbox, torch.stack(images), pairs)
        rows.append({"rung": name, "score": scored["score"],
                     "mean SSIM": float(scored["ssim"].mean()),
                     "min SSIM": float(scored["ssim"].min()), "valid": scored["valid"],
                     "queries per set": float(np.mean(queries)), "images": torch.stack(images),
                     "rejected steps": rejected,
                     "per_set": scored["per_set"]})
    bar.close()
    return rows


def best_attack(blackbox: BlackBox, sources: torch.Tensor, targets: torch.Tensor,
                students: Sequence[nn.Module] | None = None, *, polish: bool = True,
                generator: torch.Generator | None = None) -> torch.Tensor:
    """The lecture's best pipeline on any pair set: ensemble FGVM with keep-if-better, target
    combinations, the SSIM boundary and smoothed gradients, then (``polish``) the DE pixel
    polish.  Returns the
    changed sources (float in [0, 1] on uint8 levels, every one with SSIM >= 0.95)."""
    students = load_students(device=sources.device) if students is None else students
    generator = generator if generator is not None else torch.Generator().manual_seed(0)
    result = attack(blackbox, sources, targets, students, generator=generator, **BEST)
    if polish:
        result = de_polish(blackbox, sources, result.images, targets, students,
                           generator=generator, **DE_POLISH)
    return result.images


if __name__ == "__main__":
    sys.exit(main())
