"""The competition write-up's other tricks, each measured against the rung it is added to.

    python benchmarks/faces_writeup_tricks.py [--sets 20] [--seed 1] [--save FILE]

The write-up lists tricks beyond lecture 03's ladder: a *mask* for FGSM (step only on pixels
whose gradient magnitude exceeds its mean plus one standard deviation), *momentum* (which it
reports did not help), and, from other teams, averaging over *mirror images*.  Each is added to
one reference attack and compared with it pair set by pair set on the same pair sets (people the
black box never saw), with a 95 % Student-t interval: an interval below zero means the trick
lowers (improves) the score.  A student distilled with the L2
distance instead of MSE (the write-up found it slightly worse) is compared the same way, and so
are *extra targets* (the target person's other photos; the write-up's teams found more targets
in photos repeated across pair sets).
``--save`` writes the rows as JSON; lecture 03 shows a committed
copy and re-runs its first pair set.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from _faces_setup import arguments, game, save  # noqa: E402

from utils import faces  # noqa: E402

FGVM_ON_BOUNDARY = dict(faces.FGVM, boundary=True)
COMPARISONS = {
    # name: (reference attack, the attack with the trick added)
    "mean+std mask on the FGSM baseline": (faces.BASELINE, dict(faces.BASELINE, mask_std=1.0)),
    "momentum 0.9 on FGVM (SSIM boundary)": (FGVM_ON_BOUNDARY,
                                              dict(FGVM_ON_BOUNDARY, momentum=0.9)),
    "mirror-image gradients on FGVM (SSIM boundary)": (FGVM_ON_BOUNDARY,
                                                        dict(FGVM_ON_BOUNDARY, flips=True)),
    "student distilled with L2 instead of MSE (FGVM, SSIM boundary)": (
        FGVM_ON_BOUNDARY, dict(FGVM_ON_BOUNDARY, student="face_student_resnet_l2")),
    "extra targets: the target person's other 5 photos (FGVM, SSIM boundary)": (
        FGVM_ON_BOUNDARY, dict(FGVM_ON_BOUNDARY, extra_targets=True)),
}
"""All on the first student alone (``face_student_resnet``), so that each trick is measured where
it is cheapest to see; ``student`` names another zoo student for the trick's side."""


def rungs(students, pairs) -> list[tuple[str, object]]:
    """``[(name, run), ...]`` for :func:`utils.faces.run_ladder`: reference, trick, ..."""
    from utils import zoo

    by_targets = {pair.images("cpu")[1].numpy().tobytes(): pair for pair in pairs}
    def runner(config):
        config = dict(config)
        name = config.pop("student", None)
        device = next(students[0].parameters()).device
        one = students[:1] if name is None else [zoo.load(name, device)]

        extra = config.pop("extra_targets", False)

        def run(blackbox, sources, targets, generator, previous=None):
            more = {}
            if extra:       # the pair set these targets belong to gives the other photos
                pair = by_targets[targets.cpu().numpy().tobytes()]
                more["extra_targets"] = pair.other_target_photos(targets.device)
            return faces.attack_stats(blackbox, sources, targets, one, generator=generator,
                                      **config, **more)
        return run

    out = []
    for name, (reference, trick) in COMPARISONS.items():
        out += [(f"{name}: reference", runner(reference)), (f"{name}: with it", runner(trick))]
    return out


def compare(rows: list[dict]) -> list[dict]:
    """One row per trick: reference and trick scores, the paired difference and its interval."""
    table = []
    for k, name in enumerate(COMPARISONS):
        reference, trick = rows[2 * k], rows[2 * k + 1]
        diff = faces.paired_differences([reference, trick])[1]
        table.append({"trick": name, "reference": reference["score"], "with it": trick["score"],
                      "difference": diff["difference"], "low": diff["low"], "high": diff["high"],
                      "valid": bool(reference["valid"] and trick["valid"]), "sets": diff["sets"],
                      "per_set_reference": reference["per_set"], "per_set_trick": trick["per_set"]})
    return table


def main() -> None:
    args = arguments(__doc__)
    device, blackbox, students, pairs = game(args)
    start = time.perf_counter()
    table = compare(faces.run_ladder(blackbox, pairs, rungs(students, pairs), device=device))
    seconds = time.perf_counter() - start
    print(f"{len(pairs)} pair sets (seed {args.seed}) on {device.type}, {seconds:.0f} s")
    print(f"{'trick':64s} {'reference':>9s} {'with it':>8s} {'diff':>8s} {'95% interval':>19s}")
    for row in table:
        print(f"{row['trick']:64s} {row['reference']:9.4f} {row['with it']:8.4f} "
              f"{row['difference']:+8.4f} [{row['low']:+.4f}, {row['high']:+.4f}]")
    save(args, device, table)


if __name__ == "__main__":
    main()
