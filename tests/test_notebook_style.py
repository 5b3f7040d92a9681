"""Notebook code stays readable in a browser: no code line is wider than 100 characters.

Pure JSON reading, no kernel: the lectures, the solutions and the labs generated from them.
"""
import json
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
LIMIT = 100
NOTEBOOKS = sorted(p for folder in ("lectures", "solutions", "labs")
                   for p in (ROOT / folder).glob("*.ipynb"))


def long_code_lines(path: Path, root: Path = ROOT) -> list[str]:
    """``notebook cell N line M (length): text`` for every code line over the limit."""
    notebook = json.loads(path.read_text(encoding="utf-8"))
    found = []
    for index, cell in enumerate(notebook["cells"]):
        if cell["cell_type"] != "code":
            continue
        source = cell["source"]
        source = "".join(source) if isinstance(source, list) else source
        for number, line in enumerate(source.split("\n"), start=1):
            if len(line) > LIMIT:
                found.append(f"{path.relative_to(root).as_posix()} cell {index} line {number} "
                             f"({len(line)} characters): {line.strip()[:60]}...")
    return found


def test_there_are_notebooks_to_check():
    folders = {p.parent.name for p in NOTEBOOKS}
    assert folders == {"lectures", "solutions", "labs"}


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_code_lines_fit_in_100_characters(path):
    found = long_code_lines(path)
    assert not found, f"code lines over {LIMIT} characters:\n" + "\n".join(found)


def test_the_check_names_notebook_cell_and_line(tmp_path):
    (tmp_path / "lectures").mkdir()
    path = tmp_path / "lectures" / "x.ipynb"
    cells = [{"cell_type": "markdown", "metadata": {}, "source": ["# " + "m" * 200]},
             {"cell_type": "code", "metadata": {}, "outputs": [], "execution_count": None,
              "source": ["x = 1\n", "y = " + "1 + " * 30 + "1"]}]
    path.write_text(json.dumps({"cells": cells, "metadata": {}, "nbformat": 4,
                                "nbformat_minor": 5}), encoding="utf-8")
    assert long_code_lines(path, tmp_path) == [
        f"lectures/x.ipynb cell 1 line 2 (125 characters): {('y = ' + '1 + ' * 30)[:60]}..."]
