"""Grading throughput: submissions per minute for 1 and N parallel jobs, on a generated class.

    python benchmarks/grading_throughput.py [--students 10] [--jobs 1 4] [--labs 00 03]

Generates a class from ``solutions/`` and ``labs/``: for every lab, ``--students`` submissions
(40 in all for the four labs of 01-03 and 00) in a fixed mix -- 40 % complete (the solution),
30 % partial (the solution with its first answer left blank), 30 % untouched -- and grades the
whole class once per ``--jobs`` value (default: 1 and one job per CPU core), in the grader's
sandbox when it runs as root with bubblewrap.  Prints submissions per minute, where the seconds
went (worker and kernel start-up versus the student's cells and the checks), and for every lab and
jobs value its slowest check as a share of the check's time limit (``--cell-timeout``): with jobs =
cores each kernel gets one core, so this is the margin a class has on a loaded grading machine.  The numbers depend on
the machine and what else it is doing: run it on a quiet one.
"""

from __future__ import annotations

import argparse
import copy
import os
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

import nbformat

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from utils import grading, labs  # noqa: E402


def make_class(folder: Path, students: int, chosen: list[str]) -> int:
    """Write ``students`` submissions per lab under ``folder/<student>/<lab>.ipynb``."""
    count = 0
    for solution_path in sorted((ROOT / "solutions").glob("*_lab.ipynb")):
        if chosen and not any(solution_path.name.startswith(prefix) for prefix in chosen):
            continue
        solution = nbformat.read(solution_path, as_version=4)
        blank = nbformat.read(ROOT / "labs" / solution_path.name, as_version=4)
        partial = copy.deepcopy(solution)
        first = next(i for i, cell in enumerate(partial.cells) if labs.is_answer(cell))
        partial.cells[first] = copy.deepcopy(blank.cells[first])
        mix = ([solution] * round(0.4 * students) + [partial] * round(0.3 * students))
        mix += [blank] * (students - len(mix))
        for number, notebook in enumerate(mix):
            student = folder / f"student{number:02d}"
            student.mkdir(parents=True, exist_ok=True)
            nbformat.write(notebook, student / solution_path.name)
            count += 1
    return count


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--students", type=int, default=10, help="submissions per lab")
    parser.add_argument("--jobs", type=int, nargs="+", default=None,
                        help="parallel jobs to compare (default: 1 and the number of cores)")
    parser.add_argument("--labs", nargs="*", default=[], help="lab number prefixes, e.g. 00 03")
    parser.add_argument("--cell-timeout", type=int, default=grading.DEFAULT_CELL_TIMEOUT,
                        help="each check's time limit (seconds)")
    args = parser.parse_args(argv)
    jobs_list = args.jobs or sorted({1, os.cpu_count() or 1})
    rows = []
    with tempfile.TemporaryDirectory(prefix="advx-class-") as folder:
        count = make_class(Path(folder), args.students, args.labs)
        print(f"class: {count} submissions, {os.cpu_count()} CPU cores")
        last = sorted(Path(folder).glob("student*"))[-1]   # untouched labs, not timed: they
        grading.grade([last], jobs=1, progress=False)     # fill the data caches first
        for jobs in jobs_list:
            started = time.perf_counter()
            results = grading.grade([Path(folder)], jobs=jobs, progress=False,
                                    cell_timeout=args.cell_timeout)
            seconds = time.perf_counter() - started
            rows.append((jobs, len(results), seconds, results))
    print(f"\n{'jobs':>4s} {'submissions':>11s} {'seconds':>8s} {'per minute':>10s}")
    for jobs, n, seconds, _ in rows:
        print(f"{jobs:>4d} {n:>11d} {seconds:>8.0f} {60 * n / seconds:>10.1f}")
    print("\nwhere the time went (1st run; mean seconds per submission, by lab):")
    by_lab: dict[str, list] = defaultdict(list)
    for result in rows[0][3]:
        by_lab[result.lab].append(result)
    print(f"{'lab':32s} {'n':>3s} {'total':>7s} {'worker':>7s} {'kernel':>7s} {'cells':>7s} "
          f"{'checks':>7s}  points (solution / partial / untouched)")
    for lab, results in sorted(by_lab.items()):
        def mean(key, results=results):
            return sum(r.timing.get(key, 0.0) for r in results) / len(results)
        points = sorted({f"{r.points:g}/{r.max_points:g}" for r in results}, reverse=True)
        print(f"{lab:32s} {len(results):>3d} {sum(r.seconds for r in results) / len(results):>7.1f} "
              f"{mean('worker_start'):>7.1f} {mean('kernel_start'):>7.1f} "
              f"{mean('student_cells'):>7.1f} {mean('checks'):>7.1f}  {', '.join(points)}")
    print(f"\nslowest check of each lab, as a share of its time limit ({args.cell_timeout} s):")
    print(f"{'lab':32s} " + " ".join(f"{f'{jobs} job(s)':>28s}" for jobs, *_ in rows))
    labs_seen = sorted({r.lab for *_, results in rows for r in results})
    for lab in labs_seen:
        cells = []
        for _, _, _, results in rows:
            checks = [c for r in results if r.lab == lab for c in r.checks]
            slowest = max(checks, key=lambda c: c.seconds, default=None)
            cells.append("-" if slowest is None else
                         f"{slowest.grade_id[:14]} {slowest.seconds:5.1f}s "
                         f"{100 * slowest.seconds / args.cell_timeout:4.1f}%")
        print(f"{lab:32s} " + " ".join(f"{cell:>28s}" for cell in cells))
    return 0


if __name__ == "__main__":
    sys.exit(main())
