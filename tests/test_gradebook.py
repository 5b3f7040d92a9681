"""The gradebook's measurements column and the class leaderboard read from it (no kernel runs)."""

from __future__ import annotations

import csv
import subprocess
import sys
from pathlib import Path

import pytest

from utils import grading
from utils.grading import api
from utils.grading.gradebook import (format_measurements, leaderboard, parse_measurements,
                                     read_gradebook)

ROOT = Path(__file__).resolve().parents[1]
LAB = "03_face_attack_competition_lab"


def result(student, lab=LAB, points=8.0, **measured):
    checks = [grading.Check("test_attack_baseline", 4, points / 2, measurements=measured),
              grading.Check("test_attack_lecture", 4, points / 2, measurements={})]
    return grading.Result(student, lab, f"{student}.ipynb", checks)


def test_record_prints_outside_the_grader_and_rejects_bad_names(capsys):
    assert api.record("hidden_score", 0.5) == 0.5
    assert capsys.readouterr().out == "hidden_score = 0.5\n"
    for bad in ("not a name", "", "x" * 41):
        with pytest.raises(ValueError, match="identifier"):
            api.record(bad, 1.0)
    with pytest.raises(ValueError, match="finite"):
        api.record("score", float("nan"))


def test_record_goes_to_the_grader_when_a_check_runs_there():
    seen = {}
    api._recorder = seen.__setitem__
    try:
        api.record("hidden_score", 0.25)
    finally:
        api._recorder = None
    assert seen == {"hidden_score": 0.25}


def test_measurements_are_an_appended_column_that_round_trips(tmp_path):
    path = tmp_path / "book.csv"
    grading.write_gradebook(path, [result("ann", hidden_score=0.41234567, hidden_set_0=0.5)])
    header = next(csv.reader(open(path, newline="")))
    assert header == ["student", "lab", "points", "max_points", "reasons", "measurements"]
    [row] = read_gradebook(path)
    assert row["measurements"] == {"hidden_score": 0.412346, "hidden_set_0": 0.5}
    assert parse_measurements(format_measurements({"a": 1.5, "b": -2.0})) == {"a": 1.5, "b": -2.0}
    assert parse_measurements("a=1; broken; b=x") == {"a": 1.0}


def test_an_old_gradebook_is_read_and_extended(tmp_path):
    path = tmp_path / "book.csv"
    path.write_text("student,lab,points,max_points,reasons\nold,99_toy_lab,3,3,\n")
    assert read_gradebook(path)[0]["measurements"] == {}
    grading.write_gradebook(path, [result("new", hidden_score=0.4)])
    rows = {row["student"]: row for row in read_gradebook(path)}
    assert rows["old"]["points"] == "3" and rows["old"]["measurements"] == {}
    assert rows["new"]["measurements"] == {"hidden_score": 0.4}


def class_gradebook(tmp_path) -> Path:
    path = tmp_path / "book.csv"
    grading.write_gradebook(path, [
        result("carol", hidden_score=0.40), result("dave", hidden_score=0.45),
        result("bob", hidden_score=0.40), result("erin", points=0),     # no score: invalid
        result("ann", hidden_score=0.60), result("zed", lab="01_other_lab", hidden_score=0.1),
    ])
    return path


def test_leaderboard_ranks_ties_share_a_rank_and_unscored_come_last(tmp_path):
    board = leaderboard(class_gradebook(tmp_path), LAB, "hidden_score")
    assert [(e["rank"], e["student"], e["value"]) for e in board] == [
        (1, "bob", 0.40), (1, "carol", 0.40), (3, "dave", 0.45), (4, "ann", 0.60),
        (None, "erin", None)]
    higher = leaderboard(class_gradebook(tmp_path), LAB, "hidden_score", higher_is_better=True)
    assert [e["student"] for e in higher][:2] == ["ann", "dave"]


def test_leaderboard_takes_the_latest_row_of_each_student(tmp_path):
    path = class_gradebook(tmp_path)
    grading.write_gradebook(path, [result("ann", hidden_score=0.30)])     # ann graded again
    board = leaderboard(path, LAB, "hidden_score")
    assert board[0]["student"] == "ann" and board[0]["value"] == 0.30
    assert sum(e["student"] == "ann" for e in board) == 1
    with open(path, "a", newline="") as handle:     # a hand-appended later row wins too
        csv.writer(handle).writerow(["bob", LAB, "8", "8", "", "hidden_score=0.2"])
    assert leaderboard(path, LAB, "hidden_score")[0]["student"] == "bob"


def test_leaderboard_errors_name_what_exists(tmp_path):
    path = class_gradebook(tmp_path)
    with pytest.raises(ValueError, match="01_other_lab.*03_face"):
        leaderboard(path, "03_face_attack_lab", "hidden_score")
    with pytest.raises(ValueError, match="recorded: hidden_score"):
        leaderboard(path, LAB, "score")


def test_leaderboard_command(tmp_path):
    path = class_gradebook(tmp_path)
    run = subprocess.run([sys.executable, "-m", "utils.grading", "leaderboard", str(path),
                          "--lab", LAB, "--measure", "hidden_score"], capture_output=True,
                         text=True, cwd=ROOT)
    assert run.returncode == 0, run.stderr
    lines = run.stdout.splitlines()
    assert lines[2].split()[:3] == ["1", "bob", "0.4000"]
    assert lines[-1].split()[:3] == ["-", "erin", "(none)"]
    bad = subprocess.run([sys.executable, "-m", "utils.grading", "leaderboard", str(path),
                          "--lab", "nope", "--measure", "hidden_score"], capture_output=True,
                         text=True, cwd=ROOT)
    assert bad.returncode == 2 and "no row of lab 'nope'" in bad.stderr


def test_feedback_lists_the_measurements():
    from utils.grading.feedback import render

    text = render(result("ann", hidden_score=0.41, hidden_set_0=0.5), {})
    assert "## Measurements" in text
    assert "| test_attack_baseline | hidden_score | 0.4100 |" in text
    assert "hidden_set_0 | 0.5000" in text
