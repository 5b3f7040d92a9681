"""The gradient reversal layer (Ganin & Lempitsky, 2015): identity forward, ``-lambda`` backward.

Put between a feature extractor and a domain classifier, it lets ordinary gradient descent
train the domain classifier to *tell the domains apart* while the same backward pass pushes the
features to make the domains *indistinguishable*: the saddle point of DANN in one backward.

Written as a modern :class:`torch.autograd.Function` (static ``forward``/``backward`` with a
``ctx``); the old style with instance methods, as in many 2017-era snippets, no longer runs.
"""

from __future__ import annotations

import math
import numbers

import torch
from torch import nn


def check_lambda(lambda_) -> None:
    """Raise ``ValueError`` unless ``lambda_`` is a finite real number >= 0 (or a 0-d tensor)."""
    if torch.is_tensor(lambda_):
        if lambda_.ndim != 0 or not lambda_.is_floating_point():
            raise ValueError(f"lambda_ must be a float or a 0-d floating tensor, got a tensor of "
                             f"shape {tuple(lambda_.shape)} and dtype {lambda_.dtype}")
        return  # not read back: that would synchronise a GPU on every step
    if isinstance(lambda_, bool) or not isinstance(lambda_, numbers.Real):
        raise ValueError(f"lambda_ must be a real number such as 0.5 (the weight of the reversed "
                         f"gradient), got {type(lambda_).__name__} {lambda_!r}")
    if not math.isfinite(lambda_) or lambda_ < 0:
        raise ValueError(f"lambda_ must be finite and >= 0, got {lambda_!r}")


class GradReverse(torch.autograd.Function):
    """``y = x`` forward; ``dL/dx = -lambda * dL/dy`` backward (no gradient for ``lambda``)."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, lambda_) -> torch.Tensor:
        ctx.lambda_ = lambda_
        return x.view_as(x)  # the same values, as a new tensor (the usual idiom)

    @staticmethod
    def backward(ctx, grad_output: torch.Tensor):
        return -ctx.lambda_ * grad_output, None


class GradScale(torch.autograd.Function):
    """``y = a x`` forward; ``dL/dx = b * dL/dy`` backward, with ``a`` and ``b`` set apart.

    The reversal layer is ``a = 1, b = -lambda``; ``a = b`` is an ordinary scaling whose
    backward is the true derivative (so ``torch.autograd.gradcheck`` passes exactly then).
    No gradient reaches ``a`` or ``b``, even when they are tensors (a scheduled lambda).
    """

    @staticmethod
    def forward(ctx, x: torch.Tensor, forward_scale, backward_scale) -> torch.Tensor:
        ctx.backward_scale = backward_scale
        return x * forward_scale

    @staticmethod
    def backward(ctx, grad_output: torch.Tensor):
        return grad_output * ctx.backward_scale, None, None


def scale_gradient(x: torch.Tensor, forward_scale=1.0, backward_scale=-1.0) -> torch.Tensor:
    """``forward_scale * x`` forward, ``backward_scale`` times the gradient backward (floats or
    0-d tensors; ``scale_gradient(x, 1, -lambda_)`` is :func:`grad_reverse`)."""
    if not torch.is_tensor(x) or not x.is_floating_point():
        raise ValueError(f"x must be a floating-point tensor, got "
                         f"{type(x).__name__ if not torch.is_tensor(x) else x.dtype}")
    for name, scale in (("forward_scale", forward_scale), ("backward_scale", backward_scale)):
        if torch.is_tensor(scale):
            if scale.ndim != 0 or not scale.is_floating_point():
                raise ValueError(f"{name} must be a float or a 0-d floating tensor")
        elif isinstance(scale, bool) or not isinstance(scale, numbers.Real) \
                or not math.isfinite(scale):
            raise ValueError(f"{name} must be a finite real number, got {scale!r}")
    return GradScale.apply(x, forward_scale, backward_scale)


def grad_reverse(x: torch.Tensor, lambda_=1.0) -> torch.Tensor:
    """``x`` unchanged, but gradients flowing back through it are multiplied by ``-lambda_``."""
    if not torch.is_tensor(x) or not x.is_floating_point():
        raise ValueError(f"x must be a floating-point tensor, got "
                         f"{type(x).__name__ if not torch.is_tensor(x) else x.dtype}")
    check_lambda(lambda_)
    return GradReverse.apply(x, lambda_)


class GradientReversal(nn.Module):
    """:func:`grad_reverse` as a layer; set ``layer.lambda_`` to follow a schedule."""

    def __init__(self, lambda_=1.0):
        super().__init__()
        check_lambda(lambda_)
        self.lambda_ = lambda_

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return grad_reverse(x, self.lambda_)

    def extra_repr(self) -> str:
        return f"lambda_={self.lambda_}"
