from pathlib import Path

import nbformat
import pytest

from utils import labs

ROOT = Path(__file__).resolve().parents[1]


def test_labs_are_generated_from_solutions():
    stale = labs.generate(ROOT, check=True)
    assert not stale, f"labs out of date: {stale}; run `python -m utils.labs`"


def test_every_solution_has_its_lab_and_no_lab_is_orphaned():
    solutions = {p.name for p in (ROOT / "solutions").glob("*_lab.ipynb")}
    generated = {p.name for p in (ROOT / "labs").glob("*.ipynb")}
    assert solutions and solutions == generated


@pytest.mark.parametrize("path", sorted((ROOT / "labs").glob("*.ipynb")), ids=lambda p: p.name)
def test_labs_hold_no_solutions_no_hidden_tests_and_no_outputs(path):
    notebook = nbformat.read(path, as_version=4)
    assert any(labs.is_answer(cell) for cell in notebook.cells), "a lab has answer cells"
    for cell in notebook.cells:
        assert labs.BEGIN_SOLUTION not in cell.source and labs.BEGIN_HIDDEN not in cell.source
        if cell.cell_type == "code":
            assert cell.outputs == [] and cell.execution_count is None
        if labs.is_answer(cell):
            assert "raise NotImplementedError()" in cell.source


def _solution(*cells):
    return nbformat.v4.new_notebook(cells=list(cells))


def test_stub_keeps_the_indentation_and_the_code_around_it():
    cell = labs.answer_cell("def f(x):\n    y = 1\n    ### BEGIN SOLUTION\n    return x + y\n"
                            "    ### END SOLUTION", "f")
    lab = labs.make_lab(_solution(cell))
    assert lab.cells[0].source == ("def f(x):\n    y = 1\n    # YOUR CODE HERE\n"
                                   "    raise NotImplementedError()")


def test_hidden_tests_are_removed_and_visible_ones_kept():
    cell = labs.test_cell("assert f(1) == 2\n### BEGIN HIDDEN TESTS\nassert f(2) == 3\n"
                          "### END HIDDEN TESTS", "check_f", 1)
    lab = labs.make_lab(_solution(cell))
    assert lab.cells[0].source == "assert f(1) == 2"
    assert labs.grading_info(lab.cells[0])["points"] == 1


def test_the_solution_is_left_unchanged():
    solution = _solution(labs.answer_cell("### BEGIN SOLUTION\nx = 1\n### END SOLUTION", "x"))
    labs.make_lab(solution)
    assert "x = 1" in solution.cells[0].source


@pytest.mark.parametrize("source, message", [
    ("### BEGIN SOLUTION\nx = 1", "never closed"),
    ("x = 1\n### END SOLUTION", "without"),
    ("### BEGIN SOLUTION\n### BEGIN SOLUTION\n### END SOLUTION", "inside another"),
])
def test_broken_markers_are_reported(source, message):
    cell = nbformat.v4.new_code_cell(source)
    cell.metadata["nbgrader"] = {"solution": True, "grade": False, "grade_id": "x"}
    with pytest.raises(labs.LabFormatError, match=message):
        labs.make_lab(_solution(cell))


def test_markers_without_metadata_and_duplicate_ids_are_reported():
    with pytest.raises(labs.LabFormatError, match="metadata"):
        labs.make_lab(_solution(nbformat.v4.new_code_cell("### BEGIN SOLUTION\n### END SOLUTION")))
    cell = labs.answer_cell("### BEGIN SOLUTION\n### END SOLUTION", "same")
    with pytest.raises(labs.LabFormatError, match="twice"):
        labs.make_lab(_solution(cell, labs.test_cell("pass", "same", 1)))


def test_cell_builders_check_their_input():
    with pytest.raises(labs.LabFormatError):
        labs.answer_cell("x = 1", "x")
    with pytest.raises(ValueError):
        labs.test_cell("pass", "check", 0)
    with pytest.raises(ValueError):
        labs.test_cell("pass", "bad id!", 1)


def test_check_mode_reports_and_writes_nothing(tmp_path):
    (tmp_path / "solutions").mkdir()
    solution = _solution(labs.answer_cell("### BEGIN SOLUTION\nx = 1\n### END SOLUTION", "x"))
    nbformat.write(solution, tmp_path / "solutions" / "09_toy_lab.ipynb")
    assert labs.generate(tmp_path, check=True) == ["09_toy_lab.ipynb"]
    assert not (tmp_path / "labs" / "09_toy_lab.ipynb").exists()
    assert labs.generate(tmp_path) == ["09_toy_lab.ipynb"]
    assert labs.generate(tmp_path, check=True) == []
