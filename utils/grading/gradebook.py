"""Results of grading, the per-check table, and the gradebook CSV (written atomically)."""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass, field
from pathlib import Path

from utils.paths import atomic_write

GRADEBOOK_FIELDS = ("student", "lab", "points", "max_points", "reasons")


@dataclass
class Check:
    """One test cell of one submission: its points and, when failed, why."""

    grade_id: str
    max_points: float
    points: float = 0.0
    reason: str = ""
    seconds: float = 0.0


@dataclass
class Result:
    """The grade of one submission."""

    student: str
    lab: str
    path: str
    checks: list[Check] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)  # about the whole submission
    seconds: float = 0.0
    timing: dict = field(default_factory=dict)          # where the seconds went (benchmarks)

    @property
    def points(self) -> float:
        return sum(check.points for check in self.checks)

    @property
    def max_points(self) -> float:
        return sum(check.max_points for check in self.checks)

    def reasons(self) -> str:
        failed = [f"{check.grade_id}: {check.reason}" for check in self.checks if check.reason]
        return "; ".join(self.problems + failed)


def _cell(text: str) -> str:
    """A CSV cell a spreadsheet will not run as a formula (student names are the students')."""
    return "'" + text if text[:1] in ("=", "+", "-", "@", "\t", "\r") else text


def write_gradebook(path: Path, results: list[Result]) -> None:
    """Write (atomically) the gradebook, keeping earlier rows of submissions not graded now."""
    path = Path(path)
    rows: dict[tuple[str, str], dict] = {}
    if path.exists():
        with open(path, newline="") as handle:
            for row in csv.DictReader(handle):
                rows[(row.get("student", ""), row.get("lab", ""))] = row
    for result in results:
        student = _cell(result.student)
        rows[(student, result.lab)] = {
            "student": student, "lab": result.lab, "points": f"{result.points:g}",
            "max_points": f"{result.max_points:g}", "reasons": _cell(result.reasons()),
        }
    out = io.StringIO(newline="")
    writer = csv.DictWriter(out, fieldnames=GRADEBOOK_FIELDS, extrasaction="ignore")
    writer.writeheader()
    for key in sorted(rows):
        writer.writerow(rows[key])
    atomic_write(path, out.getvalue())


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
