"""Figures shared by the notebooks: image grids and widgets that degrade to a static figure."""

from __future__ import annotations

from typing import Callable, Sequence

import matplotlib.pyplot as plt
import numpy as np
import torch


def to_image(x: torch.Tensor | np.ndarray) -> np.ndarray:
    """One image ``(C, H, W)`` or ``(H, W)`` as an array matplotlib shows (``(H, W[, 3])``)."""
    if isinstance(x, torch.Tensor):
        x = x.detach().float().cpu().numpy()
    x = np.asarray(x)
    if x.ndim == 3 and x.shape[0] in (1, 3):
        x = x[0] if x.shape[0] == 1 else np.transpose(x, (1, 2, 0))
    return x


def image_grid(images, titles: Sequence[str] | None = None, *, ncols: int = 8,
               size: float = 1.3, cmap: str = "gray", vmin: float | None = 0.0,
               vmax: float | None = 1.0, suptitle: str | None = None):
    """Show images (a batch ``(N, C, H, W)`` or a list) in a grid; returns the figure."""
    images = list(images)
    n = len(images)
    ncols = max(1, min(ncols, n))
    nrows = (n + ncols - 1) // ncols
    fig, axes = plt.subplots(nrows, ncols, figsize=(size * ncols, size * nrows + 0.3 * bool(titles)),
                             squeeze=False)
    for index, ax in enumerate(axes.flat):
        ax.axis("off")
        if index < n:
            ax.imshow(to_image(images[index]), cmap=cmap, vmin=vmin, vmax=vmax)
            if titles is not None:
                ax.set_title(titles[index], fontsize=8)
    if suptitle:
        fig.suptitle(suptitle)
    fig.tight_layout()
    return fig


def interactive(draw: Callable[..., None], **controls):
    """Show ``draw(**values)`` with ipywidgets ``controls`` (e.g. ``FloatSlider``): one figure.

    ``draw`` makes one matplotlib figure.  It is drawn once for the controls' initial values and
    displayed as a single output whose mimebundle holds both the widget and that figure as an
    image.  A live JupyterLab renders the widget (its renderer outranks images) and never shows
    the image; where no widget front end runs (nbval, nbconvert and the course site, a notebook
    opened but not yet run) the image is what appears.  So the figure is shown exactly once.
    Moving a control redraws into the widget.  Returns nothing, so that a cell ending in this
    call does not display the widget a second time.
    """
    import ipywidgets as widgets
    from IPython import get_ipython
    from IPython.display import display

    if not controls:
        raise ValueError("interactive needs at least one control, e.g. eps=FloatSlider(...)")
    for name, control in controls.items():
        if not isinstance(control, widgets.ValueWidget):
            raise ValueError(f"control {name!r} must be an ipywidgets control with a value "
                             f"(FloatSlider, Dropdown, ...), got {type(control).__name__}")

    def values() -> dict:
        return {name: control.value for name, control in controls.items()}

    output = widgets.Output()

    def redraw(change=None):
        output.clear_output(wait=True)
        with output:  # errors while redrawing show inside the widget
            draw(**values())
            plt.show()

    draw(**values())  # outside the widget, so an error here fails the cell (and CI)
    figure = plt.gcf()
    shell = get_ipython()
    if shell is None:  # plain Python: no notebook to show widgets in
        plt.show()
        return
    figure_data, figure_metadata = shell.display_formatter.format(figure)
    plt.close(figure)  # or the inline backend would show it a second time
    output.outputs = ({"output_type": "display_data", "data": figure_data,
                       "metadata": figure_metadata},)
    for control in controls.values():
        control.observe(redraw, names="value")
    box = widgets.VBox([widgets.HBox(list(controls.values())), output])
    display({**box._repr_mimebundle_(), **figure_data}, metadata=figure_metadata, raw=True)
