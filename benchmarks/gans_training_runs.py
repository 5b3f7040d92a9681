"""Lecture 05's benchmark: a GAN training and failing, recorded (losses, FID, coverage, samples).

    python benchmarks/gans_training_runs.py [--jobs 2]

The lecture shows how a GAN trains -- both players' losses per step, D's opinion of real and
generated images, the classifier FID and class coverage every 100 steps, and the samples of 8
fixed codes at each checkpoint -- and how one fails, without training while it runs.  All runs
use the small DCGAN (``utils.gans.models.small_dcgan``, latent 32, batch 64), the
non-saturating loss and Adam with beta1 0.5, through ``utils.gans.runs.recorded_run``; the FID is
in ``fashion_lenet`` features, 1000 samples against 1000 images of the reference test half.

- ``healthy``: both players at lr 1e-3 (the lecture's short-run rate), :data:`STEPS` steps, the
  run whose curves and samples the lecture shows (the zoo's ``gan_dcgan`` is the same recipe at
  full width and lr 2e-4 for 6000 steps; its own history was not recorded, and retraining it only
  for that costs more than this whole benchmark);
- :data:`FAILURES`: the same with one setting pushed too far, each from the same seeds.

Writes ``benchmarks/results/gans_training_runs.json``, which the lecture loads and asserts on.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

STEPS = 800
SEEDS = (0, 1)
RUNS = {
    "healthy": {"lr": 1e-3},
    "D lr x10": {"lr": 1e-3, "lr_d": 1e-2},
    "both lr x10": {"lr": 1e-2},
}
"""Name -> options of ``recorded_run``: the healthy run first, then the failures tried."""
FAILURES = tuple(RUNS)[1:]
OUT = Path(__file__).resolve().parent / "results" / "gans_training_runs.json"


def one_run(name: str, seed: int, steps: int) -> dict:
    import torch

    torch.set_num_threads(1)
    from utils import data, zoo
    from utils.gans import metrics, runs

    train_x, _ = data.fashion_mnist("train")
    classifier = zoo.load(metrics.FID_CLASSIFIER, "cpu")
    half_a, _ = metrics.reference_halves("cpu")
    reference = metrics.features(classifier, half_a[:1000])
    started = time.perf_counter()
    record = runs.recorded_run(train_x, classifier, reference, loss="non_saturating",
                               optimiser="adam", steps=steps, seed=seed, eval_every=100,
                               n_grid=8, **RUNS[name])
    record.pop("model")
    record["name"] = name
    record["history"] = {key: [round(v, 4) for v in values]
                         for key, values in record["history"].items()}
    record["seconds"] = round(time.perf_counter() - started, 1)
    print(f"{name} seed {seed}: FID {[round(v) for v in record['fid']]} "
          f"({record['seconds']} s)", flush=True)
    return record


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--steps", type=int, default=STEPS)
    args = parser.parse_args()
    cells = [(name, seed) for name in RUNS for seed in SEEDS]
    with ProcessPoolExecutor(args.jobs) as pool:
        records = list(pool.map(one_run, *zip(*cells), [args.steps] * len(cells)))
    from utils.gans import metrics
    result = {"script": "benchmarks/gans_training_runs.py", "steps": args.steps,
              "seeds": list(SEEDS), "runs_tried": RUNS, "batch_size": 64, "model": "small_dcgan",
              "fid_classifier": metrics.FID_CLASSIFIER, "fid_n": 1000, "runs": records}
    OUT.write_text(json.dumps(result) + "\n")
    print(f"wrote {OUT}")


if __name__ == "__main__":
    main()
