"""utils.viz.interactive: one figure, shown by the widget where it runs, as a PNG everywhere else."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import ipywidgets as widgets
import nbformat
import pytest
from nbclient import NotebookClient
from nbclient.exceptions import CellExecutionError

from utils import viz

WIDGET_VIEW = "application/vnd.jupyter.widget-view+json"
SETUP = """import matplotlib.pyplot as plt, ipywidgets as widgets
from utils import viz
calls = []
def draw(a=1.0):
    calls.append(a)
    fig, ax = plt.subplots(figsize=(2, 2)); ax.plot([0, 1], [0, a])
slider = widgets.FloatSlider(value=1.0, min=0, max=2)"""


def execute(*sources: str) -> nbformat.NotebookNode:
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell(source) for source in sources]
    NotebookClient(nb, kernel_name="python3", timeout=120).execute()
    return nb


@pytest.mark.slow
@pytest.mark.notebook
def test_a_headless_run_leaves_one_output_holding_the_widget_and_its_figure():
    nb = execute(SETUP, "viz.interactive(draw, a=slider)", "slider.value = 1.5\nprint(calls)")
    outputs = nb.cells[1].outputs
    assert len(outputs) == 1, "the figure must be shown once, inside the widget's output"
    assert {WIDGET_VIEW, "image/png", "text/plain"} <= set(outputs[0]["data"])
    assert nb.cells[2].outputs[0]["text"] == "[1.0, 1.5]\n"  # drawn once, then redrawn on a move
    state = nb.metadata["widgets"]["application/vnd.jupyter.widget-state+json"]["state"]
    shown = [o for model in state.values() if model["model_name"] == "OutputModel"
             for o in model["state"]["outputs"]]
    assert len(shown) == 1 and "image/png" in shown[0]["data"]  # the redraw replaced the figure


@pytest.mark.slow
@pytest.mark.notebook
def test_an_error_in_draw_fails_the_cell():
    with pytest.raises(CellExecutionError, match="ZeroDivisionError"):
        execute(SETUP, "viz.interactive(lambda a: 1 / 0, a=slider)")


def test_bad_controls_are_refused():
    with pytest.raises(ValueError, match="at least one control"):
        viz.interactive(lambda: None)
    with pytest.raises(ValueError, match="'a' must be an ipywidgets control"):
        viz.interactive(lambda a: None, a=0.5)


def test_outside_a_notebook_it_just_draws():
    calls = []
    assert viz.interactive(lambda a: calls.append(a), a=widgets.IntSlider(value=3)) is None
    assert calls == [3]
