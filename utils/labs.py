"""Labs are generated from their solutions: ``solutions/`` is the single source of truth.

A solution notebook marks its cells with nbgrader's own conventions, so an instructor can also
feed it to nbgrader:

- an *answer cell* holds the solution between ``### BEGIN SOLUTION`` and ``### END SOLUTION``
  and has the cell metadata ``nbgrader: {solution: true, grade_id: ...}``;
- a *test cell* has ``nbgrader: {grade: true, grade_id: ..., points: ...}``; the checks the
  student sees come first, the instructor's between ``### BEGIN HIDDEN TESTS`` and
  ``### END HIDDEN TESTS``.

:func:`answer_cell` and :func:`test_cell` build such cells.  :func:`make_lab` turns a solution
into the student's lab: each solution body becomes a stub that raises ``NotImplementedError``
(indented like the body), hidden tests are removed, outputs and execution counts cleared.

    python -m utils.labs            # regenerate labs/ from solutions/
    python -m utils.labs --check    # exit status 1 when labs/ is out of date (a test runs this)
"""

from __future__ import annotations

import argparse
import copy
import re
import sys
from pathlib import Path

import nbformat

BEGIN_SOLUTION = "### BEGIN SOLUTION"
END_SOLUTION = "### END SOLUTION"
BEGIN_HIDDEN = "### BEGIN HIDDEN TESTS"
END_HIDDEN = "### END HIDDEN TESTS"
STUB = ("# YOUR CODE HERE", "raise NotImplementedError()")
SCHEMA_VERSION = 3


class LabFormatError(ValueError):
    """A solution notebook whose markers or metadata are inconsistent."""


# --------------------------------------------------------------------------------------------
# building cells for solution notebooks


def _nbgrader(grade_id: str, *, solution: bool, grade: bool, points: float = 0) -> dict:
    if not re.fullmatch(r"[A-Za-z0-9_\-]+", grade_id):
        raise ValueError(f"grade_id must be letters, digits, '_' or '-', got {grade_id!r}")
    meta = {"grade": grade, "grade_id": grade_id, "locked": not solution,
            "schema_version": SCHEMA_VERSION, "solution": solution}
    if grade:
        meta["points"] = points
    return meta


def answer_cell(source: str, grade_id: str) -> nbformat.NotebookNode:
    """A code cell the student completes; ``source`` holds the solution between the markers."""
    if BEGIN_SOLUTION not in source or END_SOLUTION not in source:
        raise LabFormatError(f"answer cell {grade_id!r} has no {BEGIN_SOLUTION}/{END_SOLUTION}")
    cell = nbformat.v4.new_code_cell(source.strip("\n"))
    cell.metadata["nbgrader"] = _nbgrader(grade_id, solution=True, grade=False)
    return cell


def test_cell(source: str, grade_id: str, points: float) -> nbformat.NotebookNode:
    """A graded code cell: visible checks, then (optionally) hidden tests between markers."""
    if points <= 0:
        raise ValueError(f"test cell {grade_id!r} needs points > 0, got {points}")
    cell = nbformat.v4.new_code_cell(source.strip("\n"))
    cell.metadata["nbgrader"] = _nbgrader(grade_id, solution=False, grade=True, points=points)
    return cell


def grading_info(cell) -> dict:
    """The nbgrader metadata of a cell (empty for an ordinary cell)."""
    return dict(cell.get("metadata", {}).get("nbgrader", {}))


def is_test(cell) -> bool:
    return cell.get("cell_type") == "code" and bool(grading_info(cell).get("grade"))


def is_answer(cell) -> bool:
    return cell.get("cell_type") == "code" and bool(grading_info(cell).get("solution"))


# --------------------------------------------------------------------------------------------
# solution -> lab


def _replace_blocks(source: str, begin: str, end: str, replacement: tuple[str, ...] | None,
                    where: str) -> str:
    """Replace every ``begin ... end`` block (markers included) by ``replacement`` lines."""
    out, inside, indent = [], False, ""
    for number, line in enumerate(source.split("\n"), 1):
        stripped = line.strip()
        if stripped == begin:
            if inside:
                raise LabFormatError(f"{where}, line {number}: {begin} inside another block")
            inside, indent = True, line[: len(line) - len(line.lstrip())]
            if replacement:
                out.extend(indent + text for text in replacement)
        elif stripped == end:
            if not inside:
                raise LabFormatError(f"{where}, line {number}: {end} without {begin}")
            inside = False
        elif not inside:
            out.append(line)
    if inside:
        raise LabFormatError(f"{where}: {begin} is never closed by {end}")
    return "\n".join(out)


def make_lab(solution: nbformat.NotebookNode, name: str = "solution") -> nbformat.NotebookNode:
    """The student's version of a solution notebook (the input is left unchanged)."""
    lab = copy.deepcopy(solution)
    seen: set[str] = set()
    for index, cell in enumerate(lab.cells):
        where = f"{name}, cell {index}"
        info = grading_info(cell)
        if info.get("grade_id"):
            if info["grade_id"] in seen:
                raise LabFormatError(f"{where}: grade_id {info['grade_id']!r} is used twice")
            seen.add(info["grade_id"])
        if cell.cell_type != "code":
            continue
        has_solution = BEGIN_SOLUTION in cell.source
        if has_solution and not is_answer(cell):
            raise LabFormatError(f"{where}: has {BEGIN_SOLUTION} but no nbgrader solution metadata")
        if is_answer(cell) and not has_solution:
            raise LabFormatError(f"{where}: answer cell without {BEGIN_SOLUTION}")
        cell.source = _replace_blocks(cell.source, BEGIN_SOLUTION, END_SOLUTION, STUB, where)
        cell.source = _replace_blocks(cell.source, BEGIN_HIDDEN, END_HIDDEN, None, where).rstrip()
        cell.outputs = []
        cell.execution_count = None
        for transient in ("execution", "collapsed", "scrolled"):
            cell.metadata.pop(transient, None)
    lab.metadata["advx"] = {"lab": name, "generated_from": f"solutions/{name}.ipynb"}
    return lab


def lab_text(solution_path: Path) -> str:
    """The generated lab for ``solution_path``, as the exact text written to ``labs/``."""
    solution = nbformat.read(solution_path, as_version=4)
    lab = make_lab(solution, solution_path.stem)
    return nbformat.writes(lab) + "\n"


def generate(root: Path, *, check: bool = False) -> list[str]:
    """Write ``labs/`` from ``solutions/`` (or only compare, with ``check``).

    Returns the names of the labs that were (or, with ``check``, would be) rewritten.
    """
    changed = []
    (root / "labs").mkdir(exist_ok=True)
    for solution_path in sorted((root / "solutions").glob("*_lab.ipynb")):
        target = root / "labs" / solution_path.name
        text = lab_text(solution_path)
        if target.exists() and target.read_text() == text:
            continue
        changed.append(target.name)
        if not check:
            target.write_text(text)
    return changed


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m utils.labs",
                                     description="Generate labs/ from solutions/.")
    parser.add_argument("--check", action="store_true",
                        help="only report labs that are out of date (exit status 1)")
    parser.add_argument("--root", type=Path, default=Path(__file__).resolve().parents[1],
                        help="the course folder (default: this repository)")
    args = parser.parse_args(argv)
    changed = generate(args.root, check=args.check)
    if args.check:
        for name in changed:
            print(f"labs/{name} is out of date: run `python -m utils.labs`")
        return 1 if changed else 0
    for name in changed:
        print(f"wrote labs/{name}")
    if not changed:
        print("labs/ is up to date")
    return 0


if __name__ == "__main__":
    sys.exit(main())
