"""Submissions and labs: which notebooks to grade, which lab each is, and the order to run cells.

Only the grader's trusted processes read these files; the student's kernel gets the student's
cells one by one, never a path.  Notebooks are read as plain JSON (:func:`read_notebook`: the
v4 format, sources joined), which is all grading needs and much faster to import than nbformat.
"""

from __future__ import annotations

import ast
import json
from dataclasses import dataclass, field
from pathlib import Path

from utils.labs import (
    answer_names,
    grading_info,
    grading_problems,
    grading_settings,
    is_answer,
    is_test,
)

MAX_NOTEBOOK_BYTES = 50 << 20


class Node(dict):
    """A notebook, cell or metadata dict whose keys read as attributes too (like nbformat's)."""

    def __getattr__(self, name):
        try:
            return self[name]
        except KeyError:
            raise AttributeError(name) from None

    def __setattr__(self, name, value):
        self[name] = value


def _node(value):
    if isinstance(value, dict):
        return Node({k: _node(v) for k, v in value.items()})
    if isinstance(value, list):
        return [_node(v) for v in value]
    return value


def read_notebook(path: Path) -> Node:
    """A v4 notebook as :class:`Node` s, each cell's ``source`` one string; ``ValueError`` when
    the file is not one."""
    with open(path, encoding="utf-8") as handle:
        data = json.load(handle)
    if not isinstance(data, dict) or data.get("nbformat") != 4 or \
            not isinstance(data.get("cells"), list):
        raise ValueError("not a version-4 notebook")
    cells = []
    for cell in data["cells"]:
        if not isinstance(cell, dict) or not isinstance(cell.get("cell_type"), str):
            raise ValueError("a cell is not a cell")
        source = cell.get("source", "")
        if isinstance(source, list) and all(isinstance(line, str) for line in source):
            source = "".join(source)
        if not isinstance(source, str):
            raise ValueError("a cell's source is not text")
        if not isinstance(cell.get("metadata", {}), dict):
            raise ValueError("a cell's metadata is not a dict")
        cells.append(dict(cell, source=source, metadata=cell.get("metadata", {})))
    if not isinstance(data.get("metadata", {}), dict):
        raise ValueError("the notebook's metadata is not a dict")
    return _node(dict(data, cells=cells, metadata=data.get("metadata", {})))


def solution_notebooks(solutions_dir: Path) -> dict[str, Path]:
    return {path.stem: path for path in sorted(Path(solutions_dir).glob("*_lab.ipynb"))}


def find_submissions(paths: list[Path]) -> list[tuple[str, Path]]:
    """``(student, notebook)`` pairs: a folder's notebooks are named by their first sub-folder."""
    found = []
    for path in map(Path, paths):
        if path.is_dir():
            for notebook in sorted(path.rglob("*.ipynb")):
                if ".ipynb_checkpoints" in notebook.parts:
                    continue
                relative = notebook.relative_to(path)
                student = relative.parts[0] if len(relative.parts) > 1 else notebook.stem
                found.append((student, notebook))
        elif path.exists() or path.is_symlink():
            found.append((path.absolute().parent.name, path))
        else:
            raise FileNotFoundError(f"{path} does not exist: name a lab notebook or a folder")
    return found


def read_submission(path: Path, root: Path | None = None) -> Node:
    """The submitted notebook; ``ValueError`` with a reason a student understands otherwise.

    A symbolic link is refused (an archive could point one at the instructor's solution).
    """
    path = Path(path)
    inside = [path]
    if root is not None and Path(root) in path.parents:
        inside += [p for p in path.parents if Path(root) in p.parents]
    if any(part.is_symlink() for part in inside):
        raise ValueError("the submission is a symbolic link, not a notebook file")
    if not path.is_file():
        raise ValueError("the submission is not a regular file")
    size = path.stat().st_size
    if size > MAX_NOTEBOOK_BYTES:
        raise ValueError(f"the notebook is {size >> 20} MB, more than the "
                         f"{MAX_NOTEBOOK_BYTES >> 20} MB a submission may have")
    try:
        return read_notebook(path)
    except (ValueError, UnicodeDecodeError, RecursionError) as error:
        raise ValueError(f"not a readable notebook ({short(str(error), 100)})") from None


def identify_lab(notebook, path: Path, labs: dict[str, Path]) -> str | None:
    """Which lab a submission is: its metadata first, then its file name."""
    if notebook is not None:
        name = notebook.get("metadata", {}).get("advx", {}).get("lab")
        if isinstance(name, str) and name in labs:
            return name
    if path.stem in labs:
        return path.stem
    matches = [name for name in labs if name in path.stem]
    return max(matches, key=len) if matches else None


def short(text: str, limit: int = 160) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


# ============================================================================================
# a lab, as the grader needs it


@dataclass
class Lab:
    """A solution notebook read for grading."""

    name: str
    notebook: Node
    tests: dict[str, Node]
    points: dict[str, float]
    answer_cells: dict[str, Node]
    settings: dict
    problems: list[str] = field(default_factory=list)   # non-empty: the lab cannot be graded

    @classmethod
    def read(cls, path: Path) -> Lab:
        notebook = read_notebook(path)
        tests = {grading_info(c)["grade_id"]: c for c in notebook.cells if is_test(c)}
        points = {gid: float(grading_info(c).get("points", 0)) for gid, c in tests.items()}
        answers = {grading_info(c)["grade_id"]: c for c in notebook.cells if is_answer(c)}
        return cls(Path(path).stem, notebook, tests, points, answers, grading_settings(notebook),
                   grading_problems(notebook, Path(path).name))

    def answer_names(self, cell) -> tuple[list[str], list[str], str]:
        """``(functions, values, imports)`` of an answer cell: the names to reach in the student's
        kernel, and the cell's own import statements (run in the grader's process too)."""
        functions, values = answer_names(cell.source)
        imports = [ast.get_source_segment(cell.source, node) for node in ast.parse(cell.source).body
                   if isinstance(node, (ast.Import, ast.ImportFrom))]
        return functions, values, "\n".join(imports)


def plan(submission: Node, lab: Lab) -> tuple[list[tuple], list[str]]:
    """The order to run things: ``("student", index, source)`` for the student's own code cells and
    ``("test", grade_id)`` for the checks, where the student's notebook has them (a deleted check
    goes back after the cell that precedes it in the solution).  Returns ``(steps, problems)``."""
    problems, steps, present = [], [], set()
    answers = set(lab.answer_cells)
    for index, cell in enumerate(submission.cells):
        if not isinstance(cell, dict) or cell.get("cell_type") != "code":
            continue
        grade_id = grading_info(cell).get("grade_id")
        if grade_id in lab.tests:
            if grade_id not in present:
                steps.append(("test", grade_id))
                present.add(grade_id)
            continue            # the student's copy of a check cell is never run
        if grade_id in answers:
            present.add(grade_id)
        source = cell.get("source", "")
        steps.append(("student", index, source if isinstance(source, str) else "".join(source)))
    deleted_answers = [gid for gid in lab.answer_cells if gid not in present]
    if deleted_answers:
        problems.append("answer cell(s) deleted: " + ", ".join(deleted_answers))
    order = [grading_info(c).get("grade_id") or f"#{i}" for i, c in enumerate(lab.notebook.cells)]
    for grade_id in [g for g in lab.tests if g not in present]:
        problems.append(f"test cell {grade_id} was deleted (put back)")
        position = len(steps)
        for previous in reversed(order[: order.index(grade_id)]):
            spots = [i for i, step in enumerate(steps) if
                     (step[0] == "test" and step[1] == previous) or
                     (step[0] == "student" and grading_info(submission.cells[step[1]])
                      .get("grade_id") == previous)]
            if spots:
                position = spots[0] + 1
                break
        steps.insert(position, ("test", grade_id))
    last_test = max((i for i, step in enumerate(steps) if step[0] == "test"), default=-1)
    return steps[: last_test + 1], problems
