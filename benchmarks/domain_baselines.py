"""Lecture 04's baselines, ablations and failure, over seeds (the runs too long for the notebook).

    python benchmarks/domain_baselines.py --jobs 2 --out benchmarks/results/domain_baselines.json

Every run uses the zoo's architecture and recipe options (``domain_*`` in
``utils/zoo_entries.py``: Adam 1e-3 with the paper's annealing, batches of 64 + 64), but
``--steps`` training steps (3 000 by default, a third of the zoo's 9 000, to fit a shared 2-core
CPU), and is scored on a **test** set:

- ``finetune``: the zoo's source-only network fine-tuned (all layers, the same optimiser and
  annealing, ``--finetune-steps`` steps) on ``k`` labelled Fashion-M training images drawn by
  the seed -- what ``k`` target labels buy, against DANN's none.  Scored on the Fashion-M test set.
- ``joint``: the DANN recipe with the domain gradient *not* reversed (the features help the
  domain classifier): the naive way to "use" the target images.  Fashion-M test set.
- ``polarity_dann`` / ``polarity_source``: DANN whose unlabelled target is the Fashion-MNIST
  training images with inverted intensities (``utils.domain.data.target_inverted``), and the
  source-only recipe with the same seed and steps; both scored on the inverted Fashion-MNIST
  test set (and on the Fashion-M test set: the source-only rows are the ``joint`` rows' control).
- ``label_shift``: the zoo's ``domain_dann_label_shift`` recipe (its own 9 000 steps) with seeds
  other than the zoo's 0; scored on the Fashion-M test set and on its label-shifted subset.

Each finished run is printed as one JSON line; ``--resume FILE`` reads such lines back and skips
those runs (long runs can be spread over several sessions).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

KS = (100, 300, 1000, 3000)


def run_one(job: dict) -> dict:
    """One run of ``job['kind']`` with ``job['seed']`` (and ``job['k']`` for fine-tuning)."""
    import torch

    from utils import zoo
    from utils.domain import data, recipes
    from utils.training import accuracy

    torch.set_num_threads(job["threads"])
    device = torch.device(job["device"])
    options = dict(job["options"])
    kind, seed = job["kind"], job["seed"]
    start = time.perf_counter()
    row = {"kind": kind, "seed": seed}
    fashion_m_test = data.target("test", device=device)
    if kind != "finetune":
        row["steps"] = options["steps"]
    if kind == "finetune":
        model = zoo.load("domain_source_only", device)
        x, y = data.target("train", device=device)
        chosen = torch.randperm(len(y), generator=torch.Generator().manual_seed(seed))[:job["k"]]
        recipes.train_supervised(model, device, x[chosen.to(x.device)], y[chosen.to(y.device)],
                                 steps=job["finetune_steps"], batch_size=min(64, job["k"]),
                                 optimiser=options["optimiser"], lr=options["lr"],
                                 weight_decay=options["weight_decay"], seed=seed, fresh=False,
                                 progress=False)
        row.update(k=job["k"], steps=job["finetune_steps"],
                   target_test_acc=accuracy(model, *fashion_m_test))
    elif kind == "joint":
        model = zoo.entry("domain_dann").new_model()
        recipes.train_dann(model, device, seed=seed, reverse=False, progress=False, **options)
        row["target_test_acc"] = accuracy(model, *fashion_m_test)
    elif kind in ("polarity_dann", "polarity_source"):
        inverted_train = data.target_inverted("train", device=device)[0]
        if kind == "polarity_source":
            model = zoo.entry("domain_source_only").new_model()
            supervised = {k: v for k, v in options.items() if k != "lambda_max"}
            recipes.train_supervised(model, device, *data.source("train", device=device),
                                     seed=seed, progress=False, **supervised)
        else:
            model = zoo.entry("domain_dann").new_model()
            recipes.train_dann(model, device, seed=seed, target_x=inverted_train, progress=False,
                               **options)
        row["inverted_test_acc"] = accuracy(model, *data.target_inverted("test", device=device))
        row["source_test_acc"] = accuracy(model, *data.source("test", device=device))
        row["target_test_acc"] = accuracy(model, *fashion_m_test)
    elif kind == "label_shift":
        entry = zoo.entry("domain_dann_label_shift")
        model = entry.new_model()
        shifted_x, _ = data.target_label_shifted("train", device=device)
        options["steps"] = row["steps"] = entry.options["steps"]            # the zoo's length
        recipes.train_dann(model, device, seed=seed, target_x=shifted_x, progress=False, **options)
        row["target_test_acc"] = accuracy(model, *fashion_m_test)
        row["label_shifted_test_acc"] = accuracy(model, *data.target_label_shifted("test",
                                                                                   device=device))
    else:
        raise ValueError(f"unknown kind {kind!r}")
    row["seconds"] = time.perf_counter() - start
    print(json.dumps(row), flush=True)
    return row


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--kinds", nargs="+",
                        default=["finetune", "polarity_dann", "polarity_source", "joint",
                                 "label_shift"])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--steps", type=int, default=3000, help="steps of the training runs")
    parser.add_argument("--finetune-steps", type=int, default=500)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--jobs", type=int, default=1)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--resume", type=Path, default=None, help="JSON lines of finished runs")
    parser.add_argument("--collect-only", action="store_true",
                        help="run nothing: write the --resume rows (of the asked kinds) to --out")
    parser.add_argument("--out", type=Path, default=None, help="write all rows as JSON")
    args = parser.parse_args(argv)

    from utils import zoo

    options = dict(zoo.entry("domain_dann").options)
    options.pop("seed", None)
    options["steps"] = args.steps
    common = {"options": options, "device": args.device, "threads": args.threads,
              "finetune_steps": args.finetune_steps}
    jobs = []                     # seed after seed, so that a cut-short run has every kind
    for seed in args.seeds:
        for kind in args.kinds:
            if kind == "finetune":
                jobs += [{**common, "kind": kind, "seed": seed, "k": k} for k in KS]
            elif not (kind == "label_shift" and seed == 0):   # seed 0 is the zoo's checkpoint
                jobs.append({**common, "kind": kind, "seed": seed})
    done = []
    if args.resume and args.resume.exists():
        done = [json.loads(line) for line in args.resume.read_text().splitlines()
                if line.startswith("{")]
    key = lambda r: (r["kind"], r["seed"], r.get("k"))                      # noqa: E731
    finished = {key(r) for r in done}
    done = [r for r in done if r["kind"] in args.kinds]
    jobs = [job for job in jobs if key(job) not in finished and not args.collect_only]
    if args.jobs > 1:
        import multiprocessing

        with ProcessPoolExecutor(args.jobs, mp_context=multiprocessing.get_context("spawn")) as pool:
            rows = list(pool.map(run_one, jobs))
    else:
        rows = [run_one(job) for job in jobs]
    rows = done + rows
    if args.out:
        result = {"recipe_options": options, "steps": args.steps, "finetune_steps": args.finetune_steps, "rows": rows}
        args.out.write_text(json.dumps(result, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
