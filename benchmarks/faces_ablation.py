"""Leave-one-out ablation of lecture 03's best face attack, on many pair sets, with intervals.

    python benchmarks/faces_ablation.py [--sets 20] [--seed 1] [--device cpu] [--save FILE]

The cumulative ladder of the lecture adds one idea per rung, so what a rung "gains" depends on
the order.  Here every variant is the full pipeline with exactly ONE idea taken out, run on the
same pair sets (people the black box never saw); the table gives each variant's score and its
paired difference to the full pipeline with a 95 % Student-t interval.  An idea helps, by this
measurement, only where the interval lies above zero.

The pair sets are run one at a time, each with a fresh generator (seed 0), so each pair set's
scores do not depend on how many came before; ``--save`` writes the rows as JSON after every
pair set (the lecture shows a committed copy), so a run stopped early leaves the sets it
finished, and the file says how many.
"""

from __future__ import annotations

import time

import numpy as np
from _faces_setup import arguments, game, print_paired_table, save

from utils import faces


def combine(per_pair: list[list[dict]]) -> list[dict]:
    """One row per variant from :func:`faces.run_ladder`'s rows on single pair sets."""
    rows = []
    for k, first in enumerate(per_pair[0]):
        mine = [rows_of_set[k] for rows_of_set in per_pair]
        rows.append({"rung": first["rung"], "per_set": [r["per_set"][0] for r in mine],
                     "score": float(np.mean([r["score"] for r in mine])),
                     "valid": all(r["valid"] for r in mine),
                     "min SSIM": min(r["min SSIM"] for r in mine),
                     "queries per set": float(np.mean([r["queries per set"] for r in mine]))})
    return rows


def main() -> None:
    args = arguments(__doc__)
    device, blackbox, students, pairs = game(args)
    print(f"{len(pairs)} pair sets (seed {args.seed}) on {device.type}")
    start = time.perf_counter()
    per_pair = []
    for k, pair in enumerate(pairs):
        per_pair.append(faces.run_ladder(blackbox, [pair], faces.ablation_rungs(students),
                                         device=device, progress=False))
        rows = combine(per_pair)
        table = faces.paired_differences(rows)
        for row, diff in zip(rows, table):
            diff.update(score=row["score"], valid=row["valid"], queries=row["queries per set"],
                        min_ssim=row["min SSIM"], per_set=row["per_set"])
        print(f"pair set {k + 1}/{len(pairs)} done, {time.perf_counter() - start:.0f} s",
              flush=True)
        if k:
            args.sets = k + 1
            save(args, device, table)
    print_paired_table(rows, table, extra={"valid": "valid", "queries": "queries per set"})
    print(f"{time.perf_counter() - start:.0f} s in all")


if __name__ == "__main__":
    main()
