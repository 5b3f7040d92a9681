"""The scorer, the submission format and the local leaderboard.

A submission is a folder holding one file ``submission.npz`` with two arrays: ``seed`` (int, the
seed given to :func:`~utils.faces.game.pair_sets`) and ``images`` (uint8, shape
``(S, 5, 64, 64)``: the changed sources of pair sets ``0 .. S-1`` of that seed).  The score of a
pair set is the mean L2 distance over its 5 x 5 source-target descriptor pairs; a submission's
score is the mean over its pair sets (lower is better).  From the shell::

    python -m utils.faces score SUBMISSION_DIR          # validate and score one submission
    python -m utils.faces leaderboard DIR [DIR ...]     # rank several submissions
"""

from __future__ import annotations

import argparse
import math
from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from utils.faces.blackbox import BlackBox
from utils.faces.game import PAIR_SIZE, SIZE, SSIM_LIMIT, PairSet, pair_sets
from utils.faces.rule import ssim_uint8, to_uint8
from utils.paths import atomic_write

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
    arrays = {"seed": np.int64(seed),
              "images": saved.reshape(-1, PAIR_SIZE, SIZE, SIZE).cpu().numpy()}
    return atomic_write(path, lambda out: np.savez_compressed(out, **arrays))


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
