"""Feedback for students: one readable Markdown file per graded submission (``--feedback DIR``).

Each file lists the lab's checks with points and the reason a check failed, what the checks
measured (:func:`utils.grading.record`: a hidden score, say), the problems found with the
submission as a whole, and for checks with hidden tests their name and what they test --
the messages of their assertions, never their code -- so that an instructor can hand the files
back as they are (``DIR/<student>/<lab>.md``).
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

from utils.grading.gradebook import Result
from utils.labs import BEGIN_HIDDEN, END_HIDDEN
from utils.paths import atomic_write


def hidden_topics(check_source: str, limit: int = 6) -> list[str]:
    """What the hidden tests of a check cell test: the texts of their assertion messages
    (f-strings with their fields shown as ``…``), never their code."""
    inside, lines = False, []
    for line in check_source.split("\n"):
        if line.strip() == BEGIN_HIDDEN:
            inside = True
        elif line.strip() == END_HIDDEN:
            inside = False
        elif inside:
            lines.append(line)
    try:
        tree = ast.parse("\n".join(lines))
    except SyntaxError:
        return ["(hidden tests present)"] if lines else []
    topics: list[str] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Assert) and node.msg is not None:
            text = _literal(node.msg)
            if text and text not in topics:
                topics.append(text)
    if lines and not topics:
        topics.append("(hidden tests without messages)")
    return topics[:limit]


def _literal(node) -> str:
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return node.value
    if isinstance(node, ast.JoinedStr):
        return "".join(v.value if isinstance(v, ast.Constant) else "…" for v in node.values)
    if isinstance(node, ast.BinOp):
        return (_literal(node.left) + _literal(node.right)).strip()
    return ""


def render(result: Result, hidden: dict[str, list[str]]) -> str:
    lines = [f"# {result.lab}: {result.points:g} / {result.max_points:g} points", "",
             f"Student: {result.student}", ""]
    if result.problems:
        lines += ["## About the whole submission", ""]
        lines += [f"- {problem}" for problem in result.problems] + [""]
    lines += ["## Checks", "", "| check | points | reason |", "|---|---|---|"]
    for check in result.checks:
        reason = (check.reason or "passed").replace("|", "\\|").replace("\n", " ")
        lines.append(f"| {check.grade_id} | {check.points:g} / {check.max_points:g} | {reason} |")
    measured = [check for check in result.checks if check.measurements]
    if measured:
        lines += ["", "## Measurements (recorded by the checks)", "",
                  "| check | measurement | value |", "|---|---|---|"]
        for check in measured:
            lines += [f"| {check.grade_id} | {name} | {value:.4f} |"
                      for name, value in check.measurements.items()]
    described = [(c.grade_id, hidden[c.grade_id]) for c in result.checks if hidden.get(c.grade_id)]
    if described:
        lines += ["", "## Hidden tests (what they test; their code stays with the instructor)", ""]
        for grade_id, topics in described:
            lines.append(f"- **{grade_id}**: " + "; ".join(topics))
    return "\n".join(lines) + "\n"


def write(folder: Path, results: list[Result], solutions: dict[str, Path]) -> list[Path]:
    """Write ``folder/<student>/<lab>.md`` for every result; returns the files written."""
    from utils.grading.notebooks import Lab

    described: dict[str, dict[str, list[str]]] = {}
    written = []
    for result in results:
        if result.lab not in described:
            described[result.lab] = {}
            if result.lab in solutions:
                lab = Lab.read(solutions[result.lab])
                described[result.lab] = {gid: hidden_topics(cell.source)
                                         for gid, cell in lab.tests.items()}
        path = Path(folder) / _safe(result.student) / f"{_safe(result.lab)}.md"
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write(path, render(result, described[result.lab]))
        written.append(path)
    return written


def _safe(name: str) -> str:
    return re.sub(r"[^\w.@+-]", "_", name).lstrip(".") or "_"
