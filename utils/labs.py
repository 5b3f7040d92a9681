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

The grader runs every test cell in its own trusted process, where the answers are reached only
as data (see :mod:`utils.grading`).  A solution says it is written for that with the notebook
metadata ``advx.grading`` (set it with :func:`set_grading`)::

    {"protocol": 2,                       # the check cells follow utils.grading's rules
     "forbid": ["utils.attacks", ...],    # modules / "module:Name"s that raise while grading
     "why": "write the attacks yourself", # said to a student whose answer calls one
     "blackbox_setup_queries": 20}        # lab 03: queries the notebook's own cells may make

:func:`grading_problems` finds solutions still in the old format (no ``protocol: 2``) and check
cells that cannot work across processes (an answer called only for its side effects, a module
patched in a check cell); ``--check`` reports them, and the grader refuses to grade such a lab.

    python -m utils.labs            # regenerate labs/ from solutions/
    python -m utils.labs --check    # exit status 1 when labs/ is out of date or a solution's
                                    # checks are in the old format (a test runs this)
"""

from __future__ import annotations

import argparse
import ast
import copy
import re
import sys
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:   # imported where needed: nbformat is slow to import, and grading needs none
    import nbformat

BEGIN_SOLUTION = "### BEGIN SOLUTION"
END_SOLUTION = "### END SOLUTION"
BEGIN_HIDDEN = "### BEGIN HIDDEN TESTS"
END_HIDDEN = "### END HIDDEN TESTS"
STUB = ("# YOUR CODE HERE", "raise NotImplementedError()")
SCHEMA_VERSION = 3
GRADING_PROTOCOL = 2


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
    import nbformat

    if BEGIN_SOLUTION not in source or END_SOLUTION not in source:
        raise LabFormatError(f"answer cell {grade_id!r} has no {BEGIN_SOLUTION}/{END_SOLUTION}")
    cell = nbformat.v4.new_code_cell(source.strip("\n"))
    cell.metadata["nbgrader"] = _nbgrader(grade_id, solution=True, grade=False)
    return cell


def test_cell(source: str, grade_id: str, points: float) -> nbformat.NotebookNode:
    """A graded code cell: visible checks, then (optionally) hidden tests between markers."""
    import nbformat

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
# grading settings of a solution, and the check cells' format


def grading_settings(notebook) -> dict:
    """The solution's ``metadata.advx.grading`` (empty when it has none: the old format)."""
    return dict(notebook.get("metadata", {}).get("advx", {}).get("grading", {}))


def set_grading(notebook, *, forbid: tuple[str, ...] | list[str] = (), why: str = "",
                blackbox_setup_queries: int | None = None,
                hide: tuple[str, ...] | list[str] = ()) -> None:
    """Mark a solution as written for the grader's protocol, with the lab's rules.

    ``hide`` names zoo checkpoints that read as empty in the student's kernel while this lab is
    graded (e.g. a trained model the lab asks the student to train)."""
    for entry in forbid:
        if not re.fullmatch(r"[A-Za-z_][\w.]*(:[A-Za-z_][\w.]*)?", entry):
            raise ValueError(f"forbid entries are 'package.module' or 'package.module:Name', "
                             f"got {entry!r}")
    for name in hide:
        if not re.fullmatch(r"[A-Za-z_]\w*", name):
            raise ValueError(f"hide entries are zoo names, got {name!r}")
    settings = {"protocol": GRADING_PROTOCOL, "forbid": list(forbid),
                "why": why or "write it yourself"}
    if hide:
        settings["hide"] = list(hide)
    if blackbox_setup_queries is not None:
        settings["blackbox_setup_queries"] = int(blackbox_setup_queries)
    notebook.metadata.setdefault("advx", {})["grading"] = settings


def answer_names(source: str) -> tuple[list[str], list[str]]:
    """``(functions, values)`` an answer cell defines: its top-level ``def``/``class`` names, and
    the names it assigns at the top level inside the solution block."""
    tree = ast.parse(source)
    functions, values = [], []
    inside, begin = set(), None
    for number, line in enumerate(source.split("\n"), 1):
        if line.strip() == BEGIN_SOLUTION:
            begin = number
        elif line.strip() == END_SOLUTION and begin is not None:
            inside.update(range(begin, number + 1))
            begin = None
    for node in tree.body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            functions.append(node.name)
        elif isinstance(node, (ast.Assign, ast.AnnAssign)) and node.lineno in inside:
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            for target in targets:
                values += [n.id for n in ast.walk(target) if isinstance(n, ast.Name)]
    return functions, values


def _parse(source: str):
    try:
        return ast.parse(source)
    except SyntaxError:
        from IPython.core.inputtransformer2 import TransformerManager

        return ast.parse(TransformerManager().transform_cell(source))


def _runs_in_kernel(node) -> bool:
    """A function decorated with ``in_student_kernel``: under the grader it runs in the kernel."""
    return isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and any(
        (isinstance(d, ast.Name) and d.id == "in_student_kernel")
        or (isinstance(d, ast.Attribute) and d.attr == "in_student_kernel")
        for d in node.decorator_list)


def grading_problems(solution, name: str = "solution") -> list[str]:
    """What keeps ``solution``'s checks from being graded in a separate process (empty: fine)."""
    settings = grading_settings(solution)
    if settings.get("protocol") != GRADING_PROTOCOL:
        return [f"{name}: its checks are in the old format (no metadata advx.grading.protocol "
                f"= {GRADING_PROTOCOL}); the grader runs them in its own process, where answers "
                "are reached only as data: convert them as utils/grading/__init__.py says and "
                "mark the notebook with utils.labs.set_grading(notebook, forbid=[...])"]
    problems = []
    for entry in settings.get("forbid", []):
        if not isinstance(entry, str) or not re.fullmatch(r"[A-Za-z_][\w.]*(:[A-Za-z_][\w.]*)?",
                                                          entry):
            problems.append(f"{name}: bad forbid entry {entry!r}")
    answers, modules = set(), set()
    for cell in solution.cells:
        if cell.get("cell_type") != "code":
            continue
        try:
            tree = _parse(cell.source)
        except SyntaxError as error:
            problems.append(f"{name}: a cell does not parse ({error.msg}, line {error.lineno})")
            continue
        if is_answer(cell):
            answers.update(answer_names(cell.source)[0])
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                modules.update((a.asname or a.name).split(".")[0] for a in node.names)
            elif isinstance(node, ast.ImportFrom):
                modules.update(a.asname or a.name for a in node.names)
    for cell in solution.cells:
        if not is_test(cell):
            continue
        where = f"{name}, check {grading_info(cell).get('grade_id')}"
        try:
            tree = _parse(cell.source)
        except SyntaxError:
            continue
        called = {id(node.func) for node in ast.walk(tree) if isinstance(node, ast.Call)}
        beside = {id(inner) for node in ast.walk(tree) if _runs_in_kernel(node)
                  for inner in ast.walk(node)}     # in_student_kernel code runs beside answers
        for node in ast.walk(tree):
            if id(node) in beside:
                continue
            if isinstance(node, ast.Expr) and isinstance(node.value, ast.Call) and \
                    isinstance(node.value.func, ast.Name) and node.value.func.id in answers:
                problems.append(
                    f"{where}, line {node.lineno}: calls {node.value.func.id}(...) only for its "
                    "side effects, which the grader's process cannot see (the answer runs in the "
                    "student's kernel): check them with utils.grading.call_with_effects")
            targets = []
            if isinstance(node, (ast.Assign, ast.AugAssign, ast.AnnAssign, ast.Delete)):
                targets = node.targets if isinstance(node, (ast.Assign, ast.Delete)) \
                    else [node.target]
            for target in targets:
                if isinstance(target, ast.Attribute) and isinstance(target.value, ast.Name) and \
                        target.value.id in modules:
                    problems.append(
                        f"{where}, line {node.lineno}: changes {target.value.id}.{target.attr}; "
                        "a check cannot reach the student's kernel: to take a function away "
                        "from the answers, list it in the lab's forbid setting")
                if isinstance(target, ast.Name) and target.id in answers:
                    problems.append(f"{where}, line {node.lineno}: assigns to the answer "
                                    f"{target.id}")
            if isinstance(node, ast.Attribute) and node.attr == "grad" and \
                    isinstance(node.ctx, ast.Load) and id(node) not in called:
                problems.append(
                    f"{where}, line {node.lineno}: reads .grad; gradients an answer fills live "
                    "in the student's kernel: check them with utils.grading.call_with_effects")
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and \
                    node.func.id == "setattr" and node.args and \
                    isinstance(node.args[0], ast.Name) and node.args[0].id in modules:
                problems.append(
                    f"{where}, line {node.lineno}: patches module {node.args[0].id}; a check "
                    "cannot reach the student's kernel: list forbidden names in the lab's "
                    "forbid setting")
    return problems


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
    import nbformat

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


def format_problems(root: Path) -> list[str]:
    """:func:`grading_problems` of every solution under ``root/solutions``."""
    import nbformat

    problems = []
    for solution_path in sorted((root / "solutions").glob("*_lab.ipynb")):
        solution = nbformat.read(solution_path, as_version=4)
        problems += grading_problems(solution, solution_path.name)
    return problems


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m utils.labs",
                                     description="Generate labs/ from solutions/.")
    parser.add_argument("--check", action="store_true",
                        help="only report labs that are out of date (exit status 1)")
    parser.add_argument("--root", type=Path, default=Path(__file__).resolve().parents[1],
                        help="the course folder (default: this repository)")
    args = parser.parse_args(argv)
    changed = generate(args.root, check=args.check)
    problems = format_problems(args.root)
    for problem in problems:
        print(f"{'ERROR' if args.check else 'WARNING'}: {problem}", file=sys.stderr)
    if args.check:
        for name in changed:
            print(f"labs/{name} is out of date: run `python -m utils.labs`")
        return 1 if changed or problems else 0
    for name in changed:
        print(f"wrote labs/{name}")
    if not changed:
        print("labs/ is up to date")
    return 0


if __name__ == "__main__":
    sys.exit(main())
