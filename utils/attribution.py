"""What a classifier looks at: Captum's attributions of one class score, and their figures.

:func:`captum_attributions` runs Captum's ``IntegratedGradients`` (with ``internal_batch_size``),
``NoiseTunnel`` (``smoothgrad_sq``) over it, and ``Occlusion`` on one batch, and
:func:`attribution_figure` draws them with ``captum.attr.visualization``.  The methods
themselves are written out once, in lecture 02: short teaching versions of integrated
gradients, SmoothGrad² and occlusion, each asserted equal to Captum's on the same input (and
lab 02 asks for variants of them), so this module holds no second copy.

The target score ``f`` is a logit unless ``score="log_softmax"`` or ``"softmax"`` is asked for.
All functions work on any device and keep tensors there; the model's train/eval state is
restored.
"""

from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from utils.training import evaluating

__all__ = ["ScoreModel", "captum_attributions", "attribution_figure"]

_SCORES = ("logit", "log_softmax", "softmax")


class ScoreModel(nn.Module):
    """``model`` followed by the chosen score: logits, log-softmax or softmax (for Captum)."""

    def __init__(self, model: nn.Module, score: str = "logit"):
        super().__init__()
        if score not in _SCORES:
            raise ValueError(f"score must be one of {_SCORES}, got {score!r}")
        self.model, self.score = model, score

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        logits = self.model(x)
        if self.score == "log_softmax":
            return F.log_softmax(logits, dim=1)
        if self.score == "softmax":
            return F.softmax(logits, dim=1)
        return logits


def _targets(target, n: int, device) -> torch.Tensor:
    target = torch.as_tensor(target, device=device, dtype=torch.long)
    if target.ndim == 0:
        target = target.expand(n)
    if target.shape != (n,):
        raise ValueError(f"target must be one class or one per image ({n}), got shape "
                         f"{tuple(target.shape)}")
    return target


def captum_attributions(model: nn.Module, x: torch.Tensor, target, *, baseline: float = 0.0,
                        methods: Sequence[str] = ("ig", "smoothgrad_sq", "occlusion"),
                        ig_steps: int = 500, ig_method: str = "riemann_trapezoid",
                        internal_batch_size: int = 100,
                        smoothgrad_samples: int = 8, smoothgrad_stdev: float = 0.15,
                        smoothgrad_ig_steps: int = 32,
                        occlusion_window: int = 6, occlusion_stride: int = 2,
                        occlusion_batch: int = 64, score: str = "logit") -> dict[str, torch.Tensor]:
    """Captum's views of the ``target`` score of the batch ``x``, for the chosen ``methods``:

    - ``"ig"``: ``IntegratedGradients`` (``ig_steps`` points of the rule ``ig_method``,
      ``internal_batch_size`` path points per forward pass) from a constant ``baseline``
      image.  The trapezoid rule is the default: for ReLU networks the integrand is only
      piecewise smooth, so no rule converges smoothly (lecture 02 measures it) and the
      simple trapezoid rule with many points serves as well as Captum's Gauss-Legendre;
      also gives ``"ig_delta"``, its convergence delta per image,
      ``sum(attr) - (f(x) - f(baseline))``;
    - ``"smoothgrad_sq"``: ``NoiseTunnel`` over the same IG (``smoothgrad_ig_steps`` points),
      ``nt_type="smoothgrad_sq"``: the mean of the *squared* IG maps of ``smoothgrad_samples``
      copies of ``x`` with Gaussian noise of standard deviation ``smoothgrad_stdev`` added
      (Captum draws that noise from PyTorch's global generator);
    - ``"occlusion"``: ``Occlusion`` with a square ``occlusion_window`` moved by
      ``occlusion_stride`` pixels, occluded pixels set to ``baseline``, ``occlusion_batch``
      window positions per forward pass (Captum's ``perturbations_per_eval``; only the speed
      depends on it).

    Returns a dict of detached tensors shaped like ``x`` (``"ig_delta"``: ``(N,)``).
    """
    from captum.attr import IntegratedGradients, NoiseTunnel, Occlusion

    unknown = set(methods) - {"ig", "smoothgrad_sq", "occlusion"}
    if unknown:
        raise ValueError(f"unknown methods {sorted(unknown)}; choose from ig, smoothgrad_sq, "
                         "occlusion")
    x = x.detach()
    target = _targets(target, len(x), x.device)
    scored = ScoreModel(model, score)
    channels = x.shape[1]
    out = {}
    with evaluating(model):
        ig = IntegratedGradients(scored)
        if "ig" in methods:
            attr, delta = ig.attribute(x, baselines=baseline, target=target, n_steps=ig_steps,
                                       method=ig_method, internal_batch_size=internal_batch_size,
                                       return_convergence_delta=True)
            out["ig"], out["ig_delta"] = attr.detach(), delta.detach()
        if "smoothgrad_sq" in methods:
            out["smoothgrad_sq"] = NoiseTunnel(ig).attribute(
                x, baselines=baseline, target=target, nt_type="smoothgrad_sq",
                nt_samples=smoothgrad_samples, stdevs=smoothgrad_stdev,
                n_steps=smoothgrad_ig_steps, method=ig_method,
                internal_batch_size=internal_batch_size).detach()
        if "occlusion" in methods:
            out["occlusion"] = Occlusion(scored).attribute(
                x, target=target, baselines=baseline,
                sliding_window_shapes=(channels, occlusion_window, occlusion_window),
                strides=(channels, occlusion_stride, occlusion_stride),
                perturbations_per_eval=occlusion_batch).detach()
    return out


_SIGN = {"ig": "all", "smoothgrad_sq": "positive", "occlusion": "all"}
_TITLE = {"ig": "integrated gradients", "smoothgrad_sq": "SmoothGrad² (IG)",
          "occlusion": "occlusion"}


def attribution_figure(images: Sequence, attributions: Sequence, row_titles: Sequence[str], *,
                       methods: Sequence[str] = ("ig", "smoothgrad_sq", "occlusion"),
                       column_titles: Sequence[str] | None = None, size: float = 1.7,
                       outlier_perc: float = 1, suptitle: str | None = None,
                       caption: bool = True):
    """A grid of heat maps drawn by ``captum.attr.visualization.visualize_image_attr``.

    One row per entry of ``images``: an image ``(C, H, W)`` -- or a tuple of images to put side
    by side, with a matching tuple of dicts in ``attributions`` -- drawn in grey, followed by
    one heat map per method in ``methods`` (keys of the dicts, as :func:`captum_attributions`
    returns them).  Signed maps use Captum's red (negative) / green (positive) ``"all"``
    colouring, SmoothGrad² (a square, never negative) the ``"positive"`` one; each map is scaled
    by its own ``outlier_perc`` percentile.  ``column_titles`` names the images of a row
    (default: the first row title's).  With ``caption`` (default) a line under the grid says
    how to read the colours and that every map has its own scale.  Returns the figure.
    """
    import matplotlib.pyplot as plt
    from captum.attr import visualization as viz

    def hwc(t: torch.Tensor):
        return t.detach().float().cpu().permute(1, 2, 0).numpy()

    rows = [(tuple(i) if isinstance(i, (tuple, list)) else (i,),
             tuple(a) if isinstance(a, (tuple, list)) else (a,))
            for i, a in zip(images, attributions)]
    per_image = 1 + len(methods)
    cols = per_image * max(len(r[0]) for r in rows)
    fig, axes = plt.subplots(len(rows), cols,
                             figsize=(size * cols, (size + 0.3) * len(rows) + 0.4), squeeze=False)
    for r, ((pictures, attrs), name) in enumerate(zip(rows, row_titles)):
        for k, (image, attr) in enumerate(zip(pictures, attrs)):
            base = k * per_image
            picture = hwc(image)
            axes[r, base].imshow(picture[..., 0] if picture.shape[-1] == 1 else picture,
                                 cmap="gray", vmin=0, vmax=1)
            label = column_titles[k] if column_titles is not None else ""
            axes[r, base].set_title(f"{name}\n{label}".strip() if label else name)
            for c, method in enumerate(methods, start=1):
                a = attr[method]
                a = a[0] if a.ndim == 4 else a
                viz.visualize_image_attr(hwc(a), picture, method="heat_map",
                                         sign=_SIGN[method], outlier_perc=outlier_perc,
                                         plt_fig_axis=(fig, axes[r, base + c]), use_pyplot=False,
                                         title=_TITLE.get(method, method) if r == 0 else None)
    for ax in axes.flat:
        ax.set_xticks([])
        ax.set_yticks([])
        ax.title.set_fontsize(8)
        for spine in ax.spines.values():     # a thin frame shows where a pale map ends
            spine.set_visible(True)
            spine.set_color("0.75")
            spine.set_linewidth(0.6)
    if suptitle:
        fig.suptitle(suptitle)
    fig.tight_layout()
    if caption:
        parts = []
        if any(_SIGN[m] == "all" for m in methods if m in _SIGN):
            parts.append("green: raises the score, red: lowers it")
        if "smoothgrad_sq" in methods:
            parts.append("SmoothGrad²: magnitude only")
        parts.append(f"each map scaled on its own (to its {100 - outlier_perc:g}th percentile), "
                     "so compare within a map, not between maps")
        import textwrap
        text = textwrap.fill(" · ".join(parts), width=int(15 * fig.get_figwidth()))
        height = fig.get_figheight()
        fig.subplots_adjust(bottom=fig.subplotpars.bottom + (0.1 + 0.14 * text.count("\n") + 0.14) / height)
        fig.text(0.5, 0.06 / height, text, ha="center", va="bottom", fontsize=7.5, color="0.3")
    return fig
