"""The face-attack ladder of lecture 03 on many pair sets (the notebook runs only a few).

    python benchmarks/faces_ladder.py [--sets 20] [--seed 1] [--device cpu]

Prints one row per rung: score (mean L2 over the 5x5 pairs, averaged over the pair sets; lower
is better), mean and min SSIM of the saved images, validity, black-box queries per pair set,
and the wall time of the rung.  The pair sets come from people the black box never saw.
"""

from __future__ import annotations

import argparse
import time


from utils import faces
from utils.session import pick_device


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sets", type=int, default=20, help="number of pair sets")
    parser.add_argument("--seed", type=int, default=1, help="seed of utils.faces.pair_sets")
    parser.add_argument("--device", default=None, help="cpu or cuda (default: CUDA when present)")
    args = parser.parse_args()
    device = pick_device(args.device)
    blackbox = faces.BlackBox(device)
    students = faces.load_students(device=device)
    weights = [1 / faces.student_mse(s, blackbox, faces.TRAIN_PEOPLE)["mse"] for s in students]
    pairs = faces.pair_sets(args.sets, args.seed)
    print(f"{len(pairs)} pair sets (seed {args.seed}) on {device.type}; black box: {blackbox!r}")
    print(f"{'rung':44s} {'score':>7s} {'mean SSIM':>9s} {'min SSIM':>8s} {'valid':>5s} "
          f"{'queries':>8s} {'time s':>7s}")
    for name, run in faces.ladder_rungs(list(zip(students, weights))):
        start = time.perf_counter()
        (row,) = faces.run_ladder(blackbox, pairs, [(name, run)], device=device, progress=False)
        seconds = time.perf_counter() - start
        print(f"{name:44s} {row['score']:7.4f} {row['mean SSIM']:9.4f} {row['min SSIM']:8.4f} "
              f"{str(row['valid']):>5s} {row['queries per set']:8.0f} {seconds:7.1f}", flush=True)


if __name__ == "__main__":
    main()
