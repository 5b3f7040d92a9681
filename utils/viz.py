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
    """Show ``draw(**values)`` once as a static figure, then attach ipywidgets controls.

    ``controls`` are ipywidgets (e.g. ``FloatSlider``).  Executed without a front end (CI,
    nbconvert) the static figure for the widgets' initial values is what stays in the notebook;
    in JupyterLab moving a control redraws the figure.
    """
    import ipywidgets as widgets
    from IPython.display import display

    output = widgets.Output()

    def redraw(**values):
        output.clear_output(wait=True)
        with output:
            draw(**values)
            plt.show()

    draw(**{name: control.value for name, control in controls.items()})
    plt.show()
    ui = widgets.interactive(redraw, **controls)
    display(widgets.VBox([widgets.HBox(list(ui.children[:-1])), output]))
    return ui
