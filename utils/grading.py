"""Grade submitted labs into a gradebook.

    python -m utils.grading SUBMISSION [SUBMISSION ...] [--gradebook gradebook.csv]

A SUBMISSION is a lab notebook or a folder searched for them (``alice/01_..._lab.ipynb`` is
graded as student ``alice``).  For each submission the grader

1. finds the lab (notebook metadata written by :mod:`utils.labs`, else the file name);
2. builds the notebook to run: the student's cells, with every test cell replaced by the
   solution's own (hidden tests included; matched by nbgrader ``grade_id``), and test cells the
   student deleted put back where they belong;
3. runs it in a separate process with a time limit (``--timeout``, per cell ``--cell-timeout``:
   a cell that runs too long is interrupted and the rest goes on);
4. gives each test cell its points when it ran without an error, else zero with the reason.

A crash, an endless loop, a file that is not a notebook or a notebook with deleted cells costs
that submission its points, with reasons, and the batch goes on.  The gradebook CSV
(``student, lab, points, max_points, reasons``) is written atomically and keeps the rows of
earlier runs for submissions not graded this time.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import nbformat

from utils.labs import grading_info, is_answer, is_test

DEFAULT_TIMEOUT = 600
DEFAULT_CELL_TIMEOUT = 300
GRADEBOOK_FIELDS = ("student", "lab", "points", "max_points", "reasons")


@dataclass
class Check:
    """One test cell of one submission: its points and, when failed, why."""

    grade_id: str
    max_points: float
    points: float = 0.0
    reason: str = ""


@dataclass
class Result:
    """The grade of one submission."""

    student: str
    lab: str
    path: str
    checks: list[Check] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)  # about the whole submission
    seconds: float = 0.0

    @property
    def points(self) -> float:
        return sum(check.points for check in self.checks)

    @property
    def max_points(self) -> float:
        return sum(check.max_points for check in self.checks)

    def reasons(self) -> str:
        failed = [f"{check.grade_id}: {check.reason}" for check in self.checks if check.reason]
        return "; ".join(self.problems + failed)


# --------------------------------------------------------------------------------------------
# finding submissions and their labs


def solution_notebooks(solutions_dir: Path) -> dict[str, Path]:
    return {path.stem: path for path in sorted(solutions_dir.glob("*_lab.ipynb"))}


def find_submissions(paths: list[Path]) -> list[tuple[str, Path]]:
    """``(student, notebook)`` pairs: a folder's notebooks are named by their first sub-folder."""
    found = []
    for path in paths:
        if path.is_dir():
            for notebook in sorted(path.rglob("*.ipynb")):
                if ".ipynb_checkpoints" in notebook.parts:
                    continue
                relative = notebook.relative_to(path)
                student = relative.parts[0] if len(relative.parts) > 1 else notebook.stem
                found.append((student, notebook))
        elif path.exists():
            found.append((path.resolve().parent.name, path))
        else:
            raise FileNotFoundError(f"{path} does not exist: name a lab notebook or a folder")
    return found


def identify_lab(notebook: dict | None, path: Path, labs: dict[str, Path]) -> str | None:
    """Which lab a submission is: its metadata first, then its file name."""
    if notebook is not None:
        name = notebook.get("metadata", {}).get("advx", {}).get("lab")
        if name in labs:
            return name
    if path.stem in labs:
        return path.stem
    matches = [name for name in labs if name in path.stem]
    return max(matches, key=len) if matches else None


# --------------------------------------------------------------------------------------------
# building the notebook that is run


def graded_notebook(submission: nbformat.NotebookNode, solution: nbformat.NotebookNode):
    """The submission with the solution's test cells in place; returns (notebook, problems)."""
    tests = {grading_info(cell)["grade_id"]: cell for cell in solution.cells if is_test(cell)}
    answers = [grading_info(cell)["grade_id"] for cell in solution.cells if is_answer(cell)]
    problems = []

    cells, present = [], set()
    for cell in submission.cells:
        grade_id = grading_info(cell).get("grade_id")
        if grade_id in tests:
            if grade_id not in present:
                cells.append(nbformat.from_dict(dict(tests[grade_id])))
                present.add(grade_id)
            continue  # a duplicate of a test cell is dropped
        if grade_id is not None and grade_id not in answers:
            cell.metadata.pop("nbgrader", None)  # a made-up grade_id earns nothing
        if grade_id in answers:
            present.add(grade_id)
        cells.append(cell)

    deleted_answers = [grade_id for grade_id in answers if grade_id not in present]
    if deleted_answers:
        problems.append("answer cell(s) deleted: " + ", ".join(deleted_answers))
    # put deleted test cells back after the cell that precedes them in the solution
    order = [grading_info(cell).get("grade_id") or cell.get("id") for cell in solution.cells]
    for grade_id in [g for g in tests if g not in present]:
        problems.append(f"test cell {grade_id} was deleted (put back)")
        position = len(cells)
        for previous in reversed(order[: order.index(grade_id)]):
            spots = [i for i, cell in enumerate(cells)
                     if (grading_info(cell).get("grade_id") or cell.get("id")) == previous]
            if spots:
                position = spots[0] + 1
                break
        cells.insert(position, nbformat.from_dict(dict(tests[grade_id])))
    notebook = nbformat.v4.new_notebook(metadata=solution.metadata, cells=cells)
    for cell in notebook.cells:
        if cell.cell_type == "code":
            cell.outputs, cell.execution_count = [], None
    return notebook, problems


# --------------------------------------------------------------------------------------------
# running it in a separate process


def _execute(notebook_path: str, results_path: str, cell_timeout: int) -> None:
    """Child process: run the notebook cell by cell, appending each test cell's outcome."""
    from nbclient import NotebookClient
    from nbclient.exceptions import CellExecutionError, DeadKernelError

    notebook = nbformat.read(notebook_path, as_version=4)
    client = NotebookClient(notebook, timeout=cell_timeout, interrupt_on_timeout=True,
                            allow_errors=True, kernel_name="python3",
                            resources={"metadata": {"path": str(Path(notebook_path).parent)}})
    with open(results_path, "a") as results, client.setup_kernel():
        for index, cell in enumerate(notebook.cells):
            if cell.cell_type != "code":
                continue
            try:
                client.execute_cell(cell, index)
            except (DeadKernelError, CellExecutionError, RuntimeError) as error:
                results.write(json.dumps({"fatal": f"the kernel died in cell {index} ({error})"}))
                results.write("\n")
                return
            if is_test(cell):
                errors = [out for out in cell.outputs if out.get("output_type") == "error"]
                outcome = {"grade_id": grading_info(cell)["grade_id"], "passed": not errors}
                if errors:
                    name, value = errors[0].get("ename"), errors[0].get("evalue")
                    outcome["reason"] = _explain(name, value, cell_timeout)
                results.write(json.dumps(outcome) + "\n")
                results.flush()


def _explain(name: str | None, value: str | None, cell_timeout: int) -> str:
    """A reason a student understands, from the error a test cell raised."""
    if name == "KeyboardInterrupt":
        return f"interrupted after the cell time limit ({cell_timeout} s)"
    if name == "NotImplementedError" and not value:
        return "NotImplementedError (an answer is not written yet)"
    return f"{name}: {value}" if value else str(name)


def _kill_tree(pid: int) -> None:
    """Stop a process and everything it started (the notebook's kernel included)."""
    try:
        import psutil

        parent = psutil.Process(pid)
        for process in parent.children(recursive=True) + [parent]:
            try:
                process.kill()
            except psutil.NoSuchProcess:
                pass
    except Exception:
        try:
            os.kill(pid, 9)
        except OSError:
            pass


def _short(text: str, limit: int = 160) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


def grade_one(student: str, path: Path, labs: dict[str, Path], *, timeout: int,
              cell_timeout: int) -> Result:
    """Grade one submission; never raises for a bad submission."""
    started = time.monotonic()
    try:
        submission = nbformat.read(path, as_version=4)
    except Exception as error:
        submission, unreadable = None, f"not a readable notebook ({_short(error, 100)})"
    else:
        unreadable = None
    lab = identify_lab(submission, path, labs)
    if lab is None:
        result = Result(student, "?", str(path))
        result.problems.append(unreadable or "cannot tell which lab this is: keep the lab's "
                               "file name (e.g. 01_adversarial_examples_lab.ipynb)")
        return result
    solution = nbformat.read(labs[lab], as_version=4)
    result = Result(student, lab, str(path))
    result.checks = [Check(grading_info(cell)["grade_id"], float(grading_info(cell)["points"]))
                     for cell in solution.cells if is_test(cell)]
    if unreadable:
        result.problems.append(unreadable)
        for check in result.checks:
            check.reason = "not graded"
        return result

    notebook, problems = graded_notebook(submission, solution)
    result.problems.extend(problems)
    outcomes: dict[str, dict] = {}
    with tempfile.TemporaryDirectory(prefix="advx-grade-") as work:
        run_path, results_path = Path(work) / "submission.ipynb", Path(work) / "results.jsonl"
        nbformat.write(notebook, run_path)
        command = [sys.executable, "-m", "utils.grading", "_execute", str(run_path),
                   str(results_path), str(cell_timeout)]
        process = subprocess.Popen(command, cwd=work, stdout=subprocess.DEVNULL,
                                   stderr=subprocess.PIPE, text=True)
        try:
            _, stderr = process.communicate(timeout=timeout)
            if process.returncode != 0:
                result.problems.append(f"the grader's run failed: {_short(stderr.strip()[-300:])}")
        except subprocess.TimeoutExpired:
            _kill_tree(process.pid)
            process.communicate()
            result.problems.append(f"stopped at the time limit of {timeout} s")
        if results_path.exists():
            for line in results_path.read_text().splitlines():
                record = json.loads(line)
                if "fatal" in record:
                    result.problems.append(_short(record["fatal"]))
                else:
                    outcomes[record["grade_id"]] = record
    for check in result.checks:
        outcome = outcomes.get(check.grade_id)
        if outcome is None:
            check.reason = "not reached"
        elif outcome["passed"]:
            check.points = check.max_points
        else:
            check.reason = _short(outcome.get("reason", "failed"))
    result.seconds = time.monotonic() - started
    return result


# --------------------------------------------------------------------------------------------
# the gradebook


def write_gradebook(path: Path, results: list[Result]) -> None:
    """Write (atomically) the gradebook, keeping earlier rows of submissions not graded now."""
    rows: dict[tuple[str, str], dict] = {}
    if path.exists():
        with open(path, newline="") as handle:
            for row in csv.DictReader(handle):
                rows[(row.get("student", ""), row.get("lab", ""))] = row
    for result in results:
        rows[(result.student, result.lab)] = {
            "student": result.student, "lab": result.lab, "points": f"{result.points:g}",
            "max_points": f"{result.max_points:g}", "reasons": result.reasons(),
        }
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(handle, "w", newline="") as out:
            writer = csv.DictWriter(out, fieldnames=GRADEBOOK_FIELDS, extrasaction="ignore")
            writer.writeheader()
            for key in sorted(rows):
                writer.writerow(rows[key])
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def table(results: list[Result]) -> str:
    """The per-check score table, one line per test cell."""
    lines = [f"{'student':14s} {'lab':34s} {'check':24s} {'points':>9s}  reason"]
    for result in results:
        for problem in result.problems:
            lines.append(f"{result.student:14.14s} {result.lab:34.34s} {'(submission)':24s} "
                         f"{'':>9s}  {problem}")
        for check in result.checks:
            score = f"{check.points:g}/{check.max_points:g}"
            lines.append(f"{result.student:14.14s} {result.lab:34.34s} {check.grade_id:24.24s} "
                         f"{score:>9s}  {check.reason}")
        lines.append(f"{result.student:14.14s} {result.lab:34.34s} {'TOTAL':24s} "
                     f"{f'{result.points:g}/{result.max_points:g}':>9s}  ({result.seconds:.0f} s)")
    return "\n".join(lines)


def grade(paths: list[Path], *, solutions_dir: Path | None = None,
          gradebook: Path | None = None, timeout: int = DEFAULT_TIMEOUT,
          cell_timeout: int = DEFAULT_CELL_TIMEOUT, progress: bool = True) -> list[Result]:
    """Grade every submission under ``paths``; write the gradebook when one is named."""
    from utils.data import repo_root

    labs = solution_notebooks(solutions_dir or repo_root() / "solutions")
    if not labs:
        raise FileNotFoundError(f"no *_lab.ipynb solutions in {solutions_dir}")
    submissions = find_submissions([Path(p) for p in paths])
    results = []
    for number, (student, path) in enumerate(submissions, 1):
        if progress:
            print(f"[{number}/{len(submissions)}] grading {path} ...", file=sys.stderr, flush=True)
        try:
            result = grade_one(student, path, labs, timeout=timeout, cell_timeout=cell_timeout)
        except Exception as error:  # a grader bug must not stop the batch either
            result = Result(student, "?", str(path), problems=[f"grader error: {_short(error)}"])
        results.append(result)
        if gradebook is not None:  # after every submission: an interrupted batch keeps its work
            write_gradebook(gradebook, results)
    return results


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["_execute"]:
        _execute(argv[1], argv[2], int(argv[3]))
        return 0
    parser = argparse.ArgumentParser(prog="python -m utils.grading",
                                     description="Grade lab notebooks into a gradebook.")
    parser.add_argument("submissions", nargs="+", type=Path,
                        help="lab notebooks, or folders of them (student/lab.ipynb)")
    parser.add_argument("--gradebook", type=Path, default=Path("gradebook.csv"),
                        help="CSV to write (default: gradebook.csv; earlier rows are kept)")
    parser.add_argument("--solutions", type=Path, default=None,
                        help="folder of solution notebooks (default: the course's solutions/)")
    parser.add_argument("--timeout", type=int, default=DEFAULT_TIMEOUT,
                        help=f"seconds per submission (default {DEFAULT_TIMEOUT})")
    parser.add_argument("--cell-timeout", type=int, default=DEFAULT_CELL_TIMEOUT,
                        help=f"seconds per cell before it is interrupted (default {DEFAULT_CELL_TIMEOUT})")
    args = parser.parse_args(argv)
    try:
        results = grade(args.submissions, solutions_dir=args.solutions, gradebook=args.gradebook,
                        timeout=args.timeout, cell_timeout=args.cell_timeout)
    except FileNotFoundError as error:
        parser.error(str(error))
    print(table(results))
    print(f"\ngradebook: {args.gradebook} ({len(results)} submission(s))")
    return 0


if __name__ == "__main__":
    sys.exit(main())
