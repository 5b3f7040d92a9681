"""Leave-one-out ablation of lecture 03's best face attack, on many pair sets, with intervals.

    python benchmarks/faces_ablation.py [--sets 20] [--seed 1] [--device cpu] [--save FILE]

The cumulative ladder of the lecture adds one idea per rung, so what a rung "gains" depends on
the order.  Here every variant is the full pipeline with exactly ONE idea taken out, run on the
same pair sets (people the black box never saw) with the same generator seed; the table gives
each variant's score and its paired difference to the full pipeline with a 95 % Student-t
interval.  An idea helps, by this measurement, only where the interval lies above zero.
``--save`` writes the rows as JSON (the lecture shows a committed copy).
"""

from __future__ import annotations

import time

from _faces_setup import arguments, game, save

from utils import faces


def main() -> None:
    args = arguments(__doc__)
    device, blackbox, students, pairs = game(args)
    print(f"{len(pairs)} pair sets (seed {args.seed}) on {device.type}")
    start = time.perf_counter()
    rows = faces.run_ladder(blackbox, pairs, faces.ablation_rungs(students), device=device)
    seconds = time.perf_counter() - start
    table = faces.paired_differences(rows)
    print(f"{'variant':44s} {'score':>7s} {'diff':>8s} {'95% interval':>19s} {'valid':>5s} "
          f"{'queries':>8s}")
    for row, diff in zip(rows, table):
        print(f"{row['rung']:44s} {row['score']:7.4f} {diff['difference']:+8.4f} "
              f"[{diff['low']:+.4f}, {diff['high']:+.4f}] {str(row['valid']):>5s} "
              f"{row['queries per set']:8.0f}")
    print(f"{seconds:.0f} s in all")
    for row, diff in zip(rows, table):
        diff.update(valid=row["valid"], queries=row["queries per set"],
                    min_ssim=row["min SSIM"], per_set=row["per_set"])
    save(args, device, table)


if __name__ == "__main__":
    main()
