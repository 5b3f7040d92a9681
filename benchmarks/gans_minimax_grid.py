"""Lecture 05's benchmark: minimax vs non-saturating G loss, over optimiser x D head start x seeds.

    python benchmarks/gans_minimax_grid.py [--jobs 2] [--steps 200] [--seeds 0 1 2] [--cells adam:0]

The saturation argument says the minimax loss starves G of gradient where D wins (D(G(z)) -> 0).
Whether that *costs* anything depends on the regime, so the grid varies the two things that set
it: the **optimiser** of both players (Adam, which rescales a small gradient per parameter, vs
SGD with momentum 0.5, which does not) and a **head start** of D-only steps against the untrained
G before the game starts (0, or :data:`HEAD_START`: D then rejects G's samples confidently).
Each cell trains the small DCGAN (``utils.gans.models.small_dcgan``, latent 32, batch 64) with
both losses from the same initial weights, batches and codes (``utils.gans.runs.recorded_run``),
for each seed, and records the classifier FID (``fashion_lenet`` features, 1000 samples against
1000 images of the reference test half) every 50 steps and the per-step D(G(z)).
Seed 0's runs also keep every per-step metric of both players and 6 fixed-code samples per
checkpoint: the lecture's loss curves and samples over training come from them.
Writes ``benchmarks/results/gans_minimax_grid.json`` (rewritten as runs finish, ``"complete"``
at the end), which the lecture loads and asserts on; the lecture uses the cells whose runs are
all in the file and says which are missing.  The committed file was made in two parts: the
head-start cells (a full run stopped after them; the shared 2-core machine then gave each run ~7
minutes of wall time), then ``--cells adam:0 sgd:0``, which added the other two.  24 runs of ~25 s of CPU each.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

OPTIMISERS = {"adam": 1e-3, "sgd": 0.05}
"""The optimisers and their learning rate (both players): Adam with DCGAN's beta1 0.5 at the
lecture's short-run rate 1e-3; SGD with momentum 0.5 at 0.05."""
HEAD_START = 100
"""D-only steps before the game in the head-start cells."""
LOSSES = ("minimax", "non_saturating")
CELL_ORDER = (("sgd", HEAD_START), ("adam", HEAD_START), ("adam", 0), ("sgd", 0))
RECORDED_SEED = 0
"""The seed whose runs keep every per-step metric and 6 fixed-code samples per checkpoint (the
lecture's loss curves and samples over training); the others keep D(G(z)) per step only."""
OUT = Path(__file__).resolve().parent / "results" / "gans_minimax_grid.json"


def one_run(optimiser: str, head_start: int, seed: int, loss: str, steps: int) -> dict:
    import torch

    torch.set_num_threads(1)
    from utils import data, zoo
    from utils.gans import metrics, runs

    train_x, _ = data.fashion_mnist("train")
    classifier = zoo.load(metrics.FID_CLASSIFIER, "cpu")
    half_a, _ = metrics.reference_halves("cpu")
    reference = metrics.features(classifier, half_a[:1000])
    started = time.perf_counter()
    record = runs.recorded_run(train_x, classifier, reference, loss=loss, optimiser=optimiser,
                               lr=OPTIMISERS[optimiser], head_start=head_start, steps=steps,
                               seed=seed, eval_every=50,
                               n_grid=6 if seed == RECORDED_SEED else 0)
    record.pop("model")
    d_fake = record["history"]["d_fake_g"]
    if seed == RECORDED_SEED:                       # the whole record: curves and samples
        record["history"] = {key: [round(v, 3) for v in values]
                             for key, values in record["history"].items()}
    else:                                           # only what the grid's table needs
        record.pop("grids")
        record["history"] = {"d_fake_g": [round(v, 3) for v in d_fake]}
    record["seconds"] = round(time.perf_counter() - started, 1)
    print(f"{optimiser} head {head_start} seed {seed} {loss}: FID {record['fid'][-1]:.1f}, "
          f"mean D(G(z)) first 50 steps {sum(d_fake[:50]) / 50:.3f} ({record['seconds']} s)",
          flush=True)
    return record


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--cells", nargs="+", default=None, metavar="OPTIMISER:HEAD_START",
                        help="only these cells, e.g. adam:0 sgd:0 (default: all, in CELL_ORDER)")
    args = parser.parse_args()
    order = CELL_ORDER if args.cells is None else [
        (cell.split(":")[0], int(cell.split(":")[1])) for cell in args.cells]
    # the cells in order of interest (where D wins first), each cell's seeds together, so that a
    # run cut short still has whole cells
    cells = [(optimiser, head, seed, loss) for optimiser, head in order
             for seed in args.seeds for loss in LOSSES]
    from utils.gans import metrics

    def key(run):
        s = run["settings"]
        return s["optimiser"], s["head_start"], s["seed"], s["loss"]

    everything = {(o, h, s, loss) for o, h in CELL_ORDER for s in args.seeds for loss in LOSSES}
    kept = []                                       # with --cells: the file's other runs stay
    if args.cells is not None and OUT.exists():
        old = json.loads(OUT.read_text())
        if old["steps"] == args.steps:
            kept = [run for run in old["runs"] if key(run) not in set(cells)]
    result = {"script": "benchmarks/gans_minimax_grid.py", "steps": args.steps,
              "seeds": args.seeds, "optimisers": OPTIMISERS, "head_starts": [0, HEAD_START],
              "batch_size": 64, "model": "small_dcgan", "fid_classifier": metrics.FID_CLASSIFIER,
              "fid_n": 1000, "complete": False, "runs": kept}
    with ProcessPoolExecutor(args.jobs) as pool:
        futures = [pool.submit(one_run, *cell, args.steps) for cell in cells]
        for future in as_completed(futures):        # save as runs finish: a partial file survives
            result["runs"].append(future.result())
            result["complete"] = everything <= {key(run) for run in result["runs"]}
            OUT.write_text(json.dumps(result) + "\n")
    print(f"wrote {OUT}")


if __name__ == "__main__":
    main()
