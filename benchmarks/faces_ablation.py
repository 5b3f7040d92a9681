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

import argparse
import json
import time
from pathlib import Path

from utils import faces
from utils.session import pick_device


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sets", type=int, default=20, help="number of pair sets")
    parser.add_argument("--seed", type=int, default=1, help="seed of utils.faces.pair_sets")
    parser.add_argument("--device", default=None, help="cpu or cuda (default: CUDA when present)")
    parser.add_argument("--save", type=Path, default=None, help="write the rows as JSON here")
    args = parser.parse_args()
    device = pick_device(args.device)
    blackbox = faces.BlackBox(device)
    students = faces.load_students(device=device)
    pairs = faces.pair_sets(args.sets, args.seed)
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
    if args.save:
        for row, diff in zip(rows, table):
            diff.update(valid=row["valid"], queries=row["queries per set"],
                        min_ssim=row["min SSIM"], per_set=row["per_set"])
        args.save.parent.mkdir(parents=True, exist_ok=True)
        args.save.write_text(json.dumps({"sets": args.sets, "seed": args.seed,
                                         "device": device.type, "rows": table}, indent=1))
        print(f"saved {args.save}")


if __name__ == "__main__":
    main()
