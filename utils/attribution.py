"""What a classifier looks at: integrated gradients, occlusion, and Captum's versions of them.

Two attribution methods written out in a few lines of PyTorch, so that the lecture and its lab
can compare them with Captum's:

- :func:`integrated_gradients` -- Sundararajan et al. (2017): the gradient of the target score
  averaged along the straight path from a baseline ``x'`` to the image ``x``, times ``x - x'``,

  .. math:: \\mathrm{IG}_i(x) = (x_i - x'_i) \\int_0^1
            \\frac{\\partial f(x' + \\alpha (x - x'))}{\\partial x_i}\\, d\\alpha
            \\approx (x_i - x'_i) \\frac{1}{m} \\sum_{k=1}^{m}
            \\frac{\\partial f(x' + \\tfrac{k}{m} (x - x'))}{\\partial x_i},

  a right Riemann sum, the same as Captum's ``IntegratedGradients(..., method="riemann_right")``.
  Completeness: the attributions sum to ``f(x) - f(x')`` (up to the error of the sum), which
  the returned *convergence delta* measures.
- :func:`occlusion` -- Zeiler & Fergus (2014): slide a window over the image, replace what it
  covers by a baseline value, and give each pixel the mean drop of the target score over the
  windows that cover it (what ``captum.attr.Occlusion`` computes).

:func:`captum_attributions` runs Captum's ``IntegratedGradients`` (with ``internal_batch_size``),
``NoiseTunnel`` (``smoothgrad_sq``) over it, and ``Occlusion`` on one batch, and
:func:`attribution_figure` draws them with ``captum.attr.visualization``.

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

__all__ = ["ScoreModel", "integrated_gradients", "occlusion", "captum_attributions",
           "attribution_figure", "window_positions"]

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


def _score(model: nn.Module, x: torch.Tensor, target: torch.Tensor, score: str) -> torch.Tensor:
    return ScoreModel(model, score)(x).gather(1, target[:, None])[:, 0]


def integrated_gradients(model: nn.Module, x: torch.Tensor, target, *,
                         baseline: torch.Tensor | float = 0.0, steps: int = 50,
                         batch_size: int = 256, score: str = "logit"):
    """Integrated gradients of the ``target`` score, by a right Riemann sum with ``steps`` points.

    ``x``: a batch ``(N, C, H, W)``; ``target``: one class or ``N`` classes; ``baseline``: a
    number or a tensor broadcastable to ``x`` (default: a black image).  The ``N * steps`` path
    points are evaluated ``batch_size`` at a time.  Returns ``(attributions, delta)``:
    attributions shaped like ``x`` and, per image, ``delta = sum(attributions) - (f(x) - f(x'))``,
    the completeness error (Captum's convergence delta).  Agrees with Captum's
    ``IntegratedGradients(model).attribute(x, baseline, target=target, n_steps=steps,
    method="riemann_right", return_convergence_delta=True)``.
    """
    if steps < 1:
        raise ValueError(f"steps must be >= 1, got {steps}")
    x = x.detach()
    baseline = torch.as_tensor(baseline, dtype=x.dtype, device=x.device).expand_as(x)
    target = _targets(target, len(x), x.device)
    alphas = torch.arange(1, steps + 1, dtype=x.dtype, device=x.device) / steps
    n = len(x)
    # every (step, image) pair as one batch: (steps * N, C, H, W), step-major
    shape = (steps,) + (1,) * x.ndim
    path = baseline + alphas.view(shape) * (x - baseline)
    path = path.reshape((steps * n,) + x.shape[1:])
    path_targets = target.repeat(steps)
    grads = torch.empty_like(path)
    with evaluating(model):
        for start in range(0, len(path), batch_size):
            chunk = path[start:start + batch_size].requires_grad_(True)
            scores = _score(model, chunk, path_targets[start:start + batch_size], score)
            grads[start:start + batch_size] = torch.autograd.grad(scores.sum(), chunk)[0]
        with torch.no_grad():
            gap = (_score(model, x, target, score) - _score(model, baseline, target, score))
    attributions = (x - baseline) * grads.view((steps,) + x.shape).mean(0)
    delta = attributions.flatten(1).sum(1) - gap
    return attributions.detach(), delta.detach()


def window_positions(size: int, window: int, stride: int) -> list[int]:
    """Start indices of a sliding window along one axis, by Captum's rule: steps of ``stride``
    until the window reaches the far edge, ``ceil((size - window) / stride) + 1`` of them; the
    last window may stick out and is then cut at the edge, so every pixel is covered."""
    if not 1 <= window <= size or stride < 1:
        raise ValueError(f"need 1 <= window ({window}) <= size ({size}) and stride >= 1")
    if stride > window and window < size:
        raise ValueError(f"a stride ({stride}) longer than the window ({window}) would skip pixels")
    return [k * stride for k in range(-(-(size - window) // stride) + 1)]


@torch.no_grad()
def occlusion(model: nn.Module, x: torch.Tensor, target, *, window: int | tuple = 6,
              stride: int | tuple = 2, baseline: float = 0.0, score: str = "logit",
              batch_size: int = 256) -> torch.Tensor:
    """Occlusion attributions: each pixel gets the mean drop of the target score when a window
    covering it (all channels at once) is set to ``baseline``.

    ``window`` and ``stride`` are ``(height, width)`` or one number for both; the windows are
    placed as :func:`window_positions` says (the last one in a row or column is cut at the
    edge).  Equals ``captum.attr.Occlusion(model).attribute(x, target=target,
    sliding_window_shapes=(C, *window), strides=(C, *stride), baselines=baseline)``.
    """
    wh, ww = (window, window) if isinstance(window, int) else window
    sh, sw = (stride, stride) if isinstance(stride, int) else stride
    n, _, height, width = x.shape
    target = _targets(target, n, x.device)
    windows = [(i, j) for i in window_positions(height, wh, sh)
               for j in window_positions(width, ww, sw)]
    # one mask per window: (W, 1, H, W) with ones where the window is
    masks = torch.zeros(len(windows), 1, height, width, dtype=x.dtype, device=x.device)
    for k, (i, j) in enumerate(windows):
        masks[k, :, i:i + wh, j:j + ww] = 1
    with evaluating(model):
        clean = _score(model, x, target, score)                                  # (N,)
        drops = torch.empty(n, len(windows), dtype=x.dtype, device=x.device)
        for image in range(n):
            for start in range(0, len(windows), batch_size):
                m = masks[start:start + batch_size]
                occluded = x[image] * (1 - m) + baseline * m
                scores = _score(model, occluded, target[image].expand(len(m)), score)
                drops[image, start:start + batch_size] = clean[image] - scores
    total = torch.einsum("nk,kchw->nchw", drops, masks)
    attributions = total / masks.sum(0, keepdim=True)          # every pixel is covered
    return attributions.expand_as(x).clone()


def captum_attributions(model: nn.Module, x: torch.Tensor, target, *, baseline: float = 0.0,
                        methods: Sequence[str] = ("ig", "smoothgrad_sq", "occlusion"),
                        ig_steps: int = 500, ig_method: str = "riemann_trapezoid",
                        internal_batch_size: int = 100,
                        smoothgrad_samples: int = 8, smoothgrad_stdev: float = 0.15,
                        smoothgrad_ig_steps: int = 32,
                        occlusion_window: int = 6, occlusion_stride: int = 2,
                        score: str = "logit") -> dict[str, torch.Tensor]:
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
      ``occlusion_stride`` pixels, occluded pixels set to ``baseline``.

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
                strides=(channels, occlusion_stride, occlusion_stride)).detach()
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
