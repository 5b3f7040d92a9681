from pathlib import Path

import nbformat
import pytest

from utils import lab_copies, labs

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


# --------------------------------------------------------------------------------------------
# a graded task asks for a variant of what the lecture prints (utils.lab_copies)


@pytest.mark.parametrize("path", sorted((ROOT / "solutions").glob("*_lab.ipynb")),
                         ids=lambda p: p.stem)
def test_no_answer_is_a_near_copy_of_a_lecture_cell(path):
    found = lab_copies.near_copies(path, ROOT / "lectures")
    assert not found, (f"answers that are near-copies (>= {lab_copies.NEAR_COPY}) of a lecture "
                       f"cell; ask for a variant the lecture does not print: {found}")


def test_copied_share_ignores_comments_strings_and_layout():
    lecture = "def f(x, y):\n    # the lecture's words\n    return (x + y) * 2  # doubled\n"
    pasted = 'def f(x, y):\n    """mine"""\n    return (x +\n            y) * 2\n'
    assert lab_copies.copied_share(pasted, lecture) == 1.0
    other = "def g(a):\n    return sorted(a, key=len)[::-1]\n"
    assert lab_copies.copied_share(other, lecture) < 0.5
    assert lab_copies.copied_share("", lecture) == 0.0


def _lectures(tmp_path, *sources):
    folder = tmp_path / "lectures"
    folder.mkdir()
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(s) for s in sources])
    nbformat.write(nb, folder / "01_x.ipynb")
    return folder


def test_lecture_copy_pastes_the_closest_cells_definitions_under_the_labs_names(tmp_path):
    lectures = _lectures(
        tmp_path,
        "import torch\ndef fgsm_teaching(model, x, y, eps):\n    g = grad(model, x, y)\n"
        "    return (x + eps * g.sign()).clamp(0, 1)\nours = fgsm_teaching(model, x, y, 0.1)\n"
        "assert torch.equal(ours, library)",
        "print('unrelated')")
    solution = _solution(labs.answer_cell(
        "def fgsm_l2(model, x, y, eps):\n    ### BEGIN SOLUTION\n    g = grad(model, x, y)\n"
        "    return (x + eps * g / g.norm()).clamp(0, 1)\n    ### END SOLUTION", "fgsm_l2"))
    copied = lab_copies.lecture_copy(solution, lectures, "01_x_lab")
    source = copied.cells[0].source
    assert "def fgsm_teaching" in source and "import torch" in source
    assert source.endswith("fgsm_l2 = fgsm_teaching")
    assert "ours =" not in source, "the lecture's demo lines are not pasted"
    assert labs.is_answer(copied.cells[0]) and solution.cells[0].source.startswith("def fgsm_l2")
    assert lab_copies.near_copies(_write(tmp_path, solution), lectures, threshold=0.6)


def _write(tmp_path, notebook):
    path = tmp_path / "x_lab.ipynb"
    nbformat.write(notebook, path)
    return path


def test_closest_needs_lecture_cells():
    with pytest.raises(ValueError, match="no lecture code cells"):
        lab_copies.closest("x = 1", [])
