"""Lab 03's references and the lab's own solution, on pair sets the lab does not grade on.

    python benchmarks/faces_references.py [--sets 8] [--seed 11] [--save FILE]

Lab 03 gives points in tiers: beat the baseline by its spread, beat the lecture's best pipeline
(``faces.best_attack``: ``faces.BEST`` and the DE polish), beat a stronger reference (the lab's
``stronger_attack``: ``faces.BEST`` on four students, the L2-distilled one added).  This script
measures it and other candidates (with the polish, or run longer) against the lecture's
pipeline, and the lab solution's ``attack`` (read from the solution notebook) against them,
pair set by pair set (95 % Student-t intervals; below zero: lower score, better).  It runs on
pair sets of seed 11 (where the ladder's settings were tuned), never on the lab's hidden ones
(seed 31337).  ``--save`` writes the rows as JSON.
"""

from __future__ import annotations

import time

import nbformat
import torch
from _faces_setup import arguments, game, print_paired_table, save

from utils import faces, labs, paths, zoo
from utils.faces.ladder import AttackResult

LAB = paths.repo_root() / "solutions" / "03_face_attack_competition_lab.ipynb"


def solution_attack(students, device):
    """The lab solution's ``attack(blackbox, sources, targets)``, as its answer cell defines it."""
    notebook = nbformat.read(LAB, as_version=4)
    [cell] = [c for c in notebook.cells if labs.grading_info(c).get("grade_id") == "attack"]
    namespace = {"torch": torch, "faces": faces, "zoo": zoo, "students": students,
                 "device": device}
    exec(cell.source, namespace)
    return namespace["attack"]


def as_rung(attack):
    """A function ``attack(blackbox, sources, targets)`` as a rung of :func:`faces.run_ladder`."""
    def run(blackbox, sources, targets, generator=None, previous=None):
        start = blackbox.queries
        images = attack(blackbox, sources, targets)
        return AttackResult(faces.to_uint8(images).float() / 255, blackbox.queries - start, 0, [])
    return run


def main() -> None:
    args = arguments(__doc__)
    device, blackbox, students, pairs = game(args)
    four = students + [zoo.load("face_student_resnet_l2", device)]
    rungs = [
        ("lecture's best pipeline (best_attack)", faces.polished_pipeline(students, **faces.BEST)),
        ("BEST, 4 students (lab's stronger reference)",
         faces.gradient_pipeline(four, **faces.BEST)),
        ("BEST + polish, 4 students", faces.polished_pipeline(four, **faces.BEST)),
        ("BEST + polish, 60 steps", faces.polished_pipeline(students,
                                                             **dict(faces.BEST, steps=60))),
        ("lab 03 solution", as_rung(solution_attack(students, device))),
    ]
    start = time.perf_counter()
    rows = faces.run_ladder(blackbox, pairs, rungs, device=device)
    table = faces.paired_differences(rows)
    print(f"{len(pairs)} pair sets (seed {args.seed}) on {device.type}, "
          f"{time.perf_counter() - start:.0f} s")
    print_paired_table(rows, table, width=40)           # diff: against the lecture's pipeline
    for row, diff in zip(rows, table):
        diff.update(valid=row["valid"], queries=row["queries per set"], per_set=row["per_set"])
    for k in range(1, len(rows) - 1):
        solution = faces.paired_differences([rows[k], rows[-1]])[1]
        print(f"solution - {rows[k]['rung']}: {solution['difference']:+.4f} "
              f"[{solution['low']:+.4f}, {solution['high']:+.4f}]")
    save(args, device, table)


if __name__ == "__main__":
    main()
