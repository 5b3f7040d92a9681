"""Results of grading, the per-check table, the gradebook CSV (written atomically) and a class
leaderboard read from it.

The gradebook's columns are ``student, lab, points, max_points, reasons, measurements``; the
last one (appended, so that readers of the first five are unaffected) holds what the checks
recorded with :func:`utils.grading.record`, as ``name=value`` pairs joined by ``"; "``.
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass, field
from pathlib import Path

from utils.paths import atomic_write

GRADEBOOK_FIELDS = ("student", "lab", "points", "max_points", "reasons", "measurements")


@dataclass
class Check:
    """One test cell of one submission: its points and, when failed, why."""

    grade_id: str
    max_points: float
    points: float = 0.0
    reason: str = ""
    seconds: float = 0.0
    measurements: dict = field(default_factory=dict)   # what the check recorded (api.record)


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

    @property
    def measurements(self) -> dict[str, float]:
        """Every check's measurements, in check order (a name recorded twice: the first)."""
        out: dict[str, float] = {}
        for check in self.checks:
            for name, value in check.measurements.items():
                out.setdefault(name, value)
        return out

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
            "measurements": format_measurements(result.measurements),
        }
    out = io.StringIO(newline="")
    writer = csv.DictWriter(out, fieldnames=GRADEBOOK_FIELDS, extrasaction="ignore")
    writer.writeheader()
    for key in sorted(rows):
        writer.writerow(rows[key])
    atomic_write(path, out.getvalue())


def format_measurements(measurements: dict[str, float]) -> str:
    """``{"hidden_score": 0.41}`` -> ``"hidden_score=0.41"`` (pairs joined by ``"; "``)."""
    return "; ".join(f"{name}={value:.6g}" for name, value in measurements.items())


def parse_measurements(text: str) -> dict[str, float]:
    """The inverse of :func:`format_measurements` (malformed pairs are skipped)."""
    out = {}
    for pair in (text or "").split(";"):
        name, _, value = pair.strip().partition("=")
        try:
            out[name] = float(value)
        except ValueError:
            continue
    return out


def read_gradebook(path: Path) -> list[dict]:
    """The gradebook's rows, in file order, each with ``measurements`` as a dict (empty for a
    gradebook written before that column existed)."""
    with open(path, newline="") as handle:
        rows = list(csv.DictReader(handle))
    for row in rows:
        row["measurements"] = parse_measurements(row.get("measurements") or "")
    return rows


def leaderboard(path: Path, lab: str, measure: str, *,
                higher_is_better: bool = False) -> list[dict]:
    """A class ranked by one measurement of one lab: for each student the latest row of ``lab``
    in the gradebook (the last one in the file), ranked by ``measure`` (lowest first unless
    ``higher_is_better``).  Equal values share a rank and the next rank skips (1, 2, 2, 4).
    Students whose row lacks the measurement (a crash, an invalid attack) come last, with rank
    ``None``.  Each entry: ``rank, student, value, points, max_points, reasons``.

    Raises ``ValueError`` naming the labs in the gradebook when ``lab`` has no row there, and
    the measurements recorded for ``lab`` when none of its rows has ``measure``."""
    rows = read_gradebook(path)
    labs = sorted({row.get("lab", "") for row in rows})
    latest: dict[str, dict] = {}
    for row in rows:
        if row.get("lab") == lab:
            latest[row.get("student", "")] = row
    if not latest:
        raise ValueError(f"no row of lab {lab!r} in {path}; its labs: {', '.join(labs) or 'none'}")
    names = sorted({name for row in latest.values() for name in row["measurements"]})
    if measure not in names:
        raise ValueError(f"no row of lab {lab!r} has the measurement {measure!r}; recorded: "
                         f"{', '.join(names) or 'none'}")
    sign = -1.0 if higher_is_better else 1.0
    measured = sorted((row for row in latest.values() if measure in row["measurements"]),
                      key=lambda row: (sign * row["measurements"][measure], row["student"]))
    board, rank, previous = [], 0, None
    for position, row in enumerate(measured, start=1):
        value = row["measurements"][measure]
        if value != previous:
            rank, previous = position, value
        board.append(_entry(rank, row, value))
    unmeasured = sorted((r for r in latest.values() if measure not in r["measurements"]),
                        key=lambda row: row["student"])
    return board + [_entry(None, row, None) for row in unmeasured]


def _entry(rank, row: dict, value) -> dict:
    return {"rank": rank, "student": row.get("student", ""), "value": value,
            "points": row.get("points", ""), "max_points": row.get("max_points", ""),
            "reasons": row.get("reasons", "")}


def leaderboard_table(board: list[dict], measure: str) -> str:
    """The leaderboard as text: rank, student, the measurement, points."""
    lines = [f"{'rank':>4s}  {'student':20s} {measure:>14s} {'points':>9s}"]
    for entry in board:
        rank = "-" if entry["rank"] is None else str(entry["rank"])
        value = "(none)" if entry["value"] is None else f"{entry['value']:.4f}"
        points = f"{entry['points']}/{entry['max_points']}"
        lines.append(f"{rank:>4s}  {entry['student']:20.20s} {value:>14s} {points:>9s}")
    return "\n".join(lines)


def table(results: list[Result]) -> str:
    """The per-check score table, one line per test cell."""
    lines = [f"{'student':14s} {'lab':34s} {'check':24s} {'points':>9s}  reason"]
    for result in results:
        for problem in result.problems:
            lines.append(f"{result.student:14.14s} {result.lab:34.34s} {'(submission)':24s} "
                         f"{'':>9s}  {problem}")
        for check in result.checks:
            score = f"{check.points:g}/{check.max_points:g}"
            measured = f" [{format_measurements(check.measurements)}]" \
                if check.measurements else ""
            lines.append(f"{result.student:14.14s} {result.lab:34.34s} {check.grade_id:24.24s} "
                         f"{score:>9s}  {check.reason}{measured}")
        lines.append(f"{result.student:14.14s} {result.lab:34.34s} {'TOTAL':24s} "
                     f"{f'{result.points:g}/{result.max_points:g}':>9s}  ({result.seconds:.0f} s)")
    return "\n".join(lines)
