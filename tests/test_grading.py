"""The grader on real notebooks: a toy lab and a set of good, bad and hostile submissions."""

from __future__ import annotations

import copy
import csv

import nbformat
import pytest

from utils import grading, labs

LAB = "99_toy_lab"


def toy_solution() -> nbformat.NotebookNode:
    cells = [
        nbformat.v4.new_markdown_cell("# A toy lab"),
        nbformat.v4.new_code_cell("base = 10"),
        labs.answer_cell("def add(a, b):\n    ### BEGIN SOLUTION\n    return a + b\n"
                         "    ### END SOLUTION", "add"),
        labs.test_cell("assert add(2, 3) == 5\n### BEGIN HIDDEN TESTS\nassert add(-1, base) == 9\n"
                       "### END HIDDEN TESTS", "check_add", 2),
        labs.answer_cell("def square(x):\n    ### BEGIN SOLUTION\n    return x * x\n"
                         "    ### END SOLUTION", "square"),
        labs.test_cell("assert square(3) == 9\n### BEGIN HIDDEN TESTS\nassert square(-4) == 16\n"
                       "### END HIDDEN TESTS", "check_square", 1),
    ]
    notebook = nbformat.v4.new_notebook(cells=cells)
    notebook.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3",
                                       "language": "python"}
    return notebook


@pytest.fixture(scope="module")
def course(tmp_path_factory):
    """A solutions folder with the toy lab, and the lab generated from it."""
    root = tmp_path_factory.mktemp("course")
    (root / "solutions").mkdir()
    solution = toy_solution()
    nbformat.write(solution, root / "solutions" / f"{LAB}.ipynb")
    return root, solution, labs.make_lab(solution, LAB)


def submit(folder, student, notebook) -> None:
    (folder / student).mkdir(parents=True, exist_ok=True)
    path = folder / student / f"{LAB}.ipynb"
    if isinstance(notebook, str):
        path.write_text(notebook)
    else:
        nbformat.write(notebook, path)


def with_answers(lab, add_body: str, square_body: str = "return x * x"):
    notebook = copy.deepcopy(lab)
    notebook.cells[2].source = f"def add(a, b):\n    {add_body}"
    notebook.cells[4].source = f"def square(x):\n    {square_body}"
    return notebook


@pytest.fixture(scope="module")
def graded(course, tmp_path_factory):
    """Grade the whole bad-submission set once, with short time limits."""
    root, solution, lab = course
    folder = tmp_path_factory.mktemp("submissions")
    submit(folder, "correct", with_answers(lab, "return a + b"))
    submit(folder, "wrong", with_answers(lab, "return a - b"))
    submit(folder, "crash", with_answers(lab, "return a + b", "raise ValueError('boom')"))
    submit(folder, "loop", with_answers(lab, "while True:\n        pass"))
    submit(folder, "invalid", "{ this is not json")
    deleted = with_answers(lab, "return a + b")
    del deleted.cells[5]          # the square check cell
    del deleted.cells[4]          # the square answer cell
    submit(folder, "deleted", deleted)
    tampered = with_answers(lab, "return 5")
    tampered.cells[3].source = "pass  # tests? what tests"
    submit(folder, "tampered", tampered)
    dying = with_answers(lab, "return a + b", "return x * x\nimport os\nos._exit(1)")
    submit(folder, "dying", dying)
    submit(folder, "untouched", lab)
    gradebook = folder / "gradebook.csv"
    results = grading.grade([folder], solutions_dir=root / "solutions", gradebook=gradebook,
                            timeout=60, cell_timeout=8, progress=False)
    print(grading.table(results))
    return {result.student: result for result in results}, gradebook


def test_correct_submission_gets_full_marks(graded):
    result = graded[0]["correct"]
    assert (result.points, result.max_points) == (3, 3) and result.reasons() == ""


def test_wrong_answer_loses_those_points_with_the_assertion(graded):
    result = graded[0]["wrong"]
    assert result.points == 1
    assert "check_add: AssertionError" in result.reasons()


def test_exception_is_reported(graded):
    result = graded[0]["crash"]
    assert result.points == 2 and "ValueError: boom" in result.reasons()


def test_endless_loop_is_interrupted_and_the_rest_still_graded(graded):
    result = graded[0]["loop"]
    assert result.points == 1
    assert "interrupted after the cell time limit" in result.reasons()


def test_invalid_json_gets_zero_and_a_reason(graded):
    result = graded[0]["invalid"]
    assert result.points == 0 and result.max_points == 3
    assert "not a readable notebook" in result.reasons()


def test_deleted_cells_are_reported_and_tests_put_back(graded):
    result = graded[0]["deleted"]
    assert result.points == 2
    assert "answer cell(s) deleted: square" in result.reasons()
    assert "check_square" in result.reasons()


def test_edited_test_cells_are_replaced_by_the_solutions(graded):
    result = graded[0]["tampered"]
    assert result.points == 0 + 1  # add returns 5: visible passes, hidden fails; square is right
    assert "check_add: AssertionError" in result.reasons()


def test_a_kernel_that_dies_costs_the_rest_and_the_batch_goes_on(graded):
    result = graded[0]["dying"]
    assert result.points == 2
    assert "died" in result.reasons()


def test_untouched_lab_gets_zero_with_reasons(graded):
    result = graded[0]["untouched"]
    assert result.points == 0
    assert result.reasons().count("NotImplementedError (an answer is not written yet)") == 2


def test_gradebook_has_one_row_per_submission(graded):
    results, gradebook = graded
    with open(gradebook, newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert {row["student"] for row in rows} == set(results)
    assert list(rows[0]) == list(grading.GRADEBOOK_FIELDS)


def test_overall_time_limit_stops_a_submission_and_keeps_its_partial_points(course, tmp_path):
    root, solution, lab = course
    submit(tmp_path, "slow", with_answers(lab, "return a + b", "while True:\n        pass"))
    [result] = grading.grade([tmp_path], solutions_dir=root / "solutions", timeout=25,
                             cell_timeout=600, progress=False)
    assert result.points == 2
    assert "time limit of 25 s" in result.reasons() and "not reached" in result.reasons()


def test_gradebook_keeps_earlier_rows_and_is_replaced_atomically(tmp_path):
    path = tmp_path / "book.csv"
    first = grading.Result("ann", LAB, "a.ipynb", [grading.Check("c", 2, 2)])
    grading.write_gradebook(path, [first])
    second = grading.Result("bob", LAB, "b.ipynb", [grading.Check("c", 2, 0, "AssertionError")])
    grading.write_gradebook(path, [second])
    rows = list(csv.DictReader(open(path, newline="")))
    assert [(r["student"], r["points"]) for r in rows] == [("ann", "2"), ("bob", "0")]
    assert [p.name for p in tmp_path.iterdir()] == ["book.csv"], "no temporary file left behind"


def test_unknown_lab_is_reported(course, tmp_path):
    root, _, _ = course
    (tmp_path / "x").mkdir()
    nbformat.write(nbformat.v4.new_notebook(), tmp_path / "x" / "homework.ipynb")
    [result] = grading.grade([tmp_path], solutions_dir=root / "solutions", progress=False)
    assert result.points == 0 and "cannot tell which lab" in result.reasons()


def test_missing_path_is_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        grading.find_submissions([tmp_path / "nope"])
