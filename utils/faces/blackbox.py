"""The black box: the only way to reach the competition's face-descriptor network.

``query(images)`` takes float images ``(N, 1, 64, 64)`` in [0, 1] and returns NumPy descriptors
``(N, 64)``; it counts the images it has seen (one image = one query) and honours an optional
budget.  No gradients, no weights, no pickling.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import nn

from utils.faces.game import DIM, SIZE

class QueryBudgetExceeded(RuntimeError):
    """The black box's query budget would be exceeded by this call."""


def check_images(images, what: str = "images") -> torch.Tensor:
    """Validate a batch of face images for the black box and return it as a float32 tensor."""
    if isinstance(images, np.ndarray):
        if images.dtype == np.uint8:
            raise ValueError(f"{what} are uint8; the black box takes floats in [0, 1]: pass "
                             f"images.astype(np.float32) / 255")
        if not np.issubdtype(images.dtype, np.floating):
            raise ValueError(f"{what} have dtype {images.dtype}; pass float images in [0, 1]")
        images = torch.from_numpy(np.ascontiguousarray(images))
    if not isinstance(images, torch.Tensor):
        raise ValueError(f"{what} must be a torch.Tensor or numpy array, got {type(images).__name__}")
    if not images.is_floating_point():
        raise ValueError(f"{what} have dtype {images.dtype}; the black box takes float images in "
                         f"[0, 1] (for uint8 pixels divide by 255)")
    if images.dim() != 4 or tuple(images.shape[1:]) != (1, SIZE, SIZE) or len(images) == 0:
        raise ValueError(f"{what} must have shape (N, 1, {SIZE}, {SIZE}) with N >= 1, got "
                         f"{tuple(images.shape)}; add a batch axis with images[None] for one image")
    if torch.isnan(images).any() or torch.isinf(images).any():
        raise ValueError(f"{what} contain NaN or infinite values")
    low, high = images.min(), images.max()
    if low < 0 or high > 1:
        raise ValueError(f"{what} must lie in [0, 1], got values in [{float(low):.3g}, "
                         f"{float(high):.3g}]; clamp them with images.clamp(0, 1)")
    return images.detach().float()


class BlackBox:
    """The competition's black box: face images in, face descriptors out, nothing else.

    ``query(images)`` takes float images ``(N, 1, 64, 64)`` in [0, 1] (a torch tensor on any
    device, or a NumPy array) and returns a NumPy float32 array ``(N, 64)`` of L2-normalised
    descriptors.  No gradients, no weights: the network lives inside a closure.  Every image is
    one query; ``queries`` counts them, and with ``budget`` set a call that would exceed it
    raises :class:`QueryBudgetExceeded` before anything runs.

    ``BlackBox()`` loads the zoo entry ``face_blackbox``; ``BlackBox.from_network(net)`` wraps
    any descriptor network (used by the tests and to build a teacher that is not the real one).
    """

    __slots__ = ("_BlackBox__describe", "_BlackBox__queries", "_BlackBox__budget",
                 "_BlackBox__name")

    def __init__(self, device: torch.device | str | None = None, *, budget: int | None = None,
                 _network: nn.Module | None = None, _name: str = "face_blackbox"):
        device = torch.device(device) if device is not None else torch.device("cpu")
        if _network is None:
            from utils import zoo

            _network = zoo.load("face_blackbox", device)
        network = _network.to(device).eval()

        @torch.no_grad()
        def describe(images: torch.Tensor) -> np.ndarray:
            out = [network(images[i:i + 512].to(device)) for i in range(0, len(images), 512)]
            return torch.cat(out).float().cpu().numpy()

        self.__describe = describe
        self.__queries = 0
        if budget is not None and (not isinstance(budget, int) or budget < 0):
            raise ValueError(f"budget must be a non-negative int or None, got {budget!r}")
        self.__budget = budget
        self.__name = _name

    @classmethod
    def from_network(cls, network: nn.Module, *, budget: int | None = None,
                     device: torch.device | str | None = None, name: str = "custom") -> "BlackBox":
        return cls(device, budget=budget, _network=network, _name=name)

    @property
    def queries(self) -> int:
        """How many images this black box has described so far."""
        return self.__queries

    @property
    def budget(self) -> int | None:
        return self.__budget

    @property
    def remaining(self) -> int | float:
        return math.inf if self.__budget is None else self.__budget - self.__queries

    def query(self, images) -> np.ndarray:
        """Descriptors ``(N, 64)`` (NumPy float32, unit length) of ``images`` ``(N, 1, 64, 64)``."""
        images = check_images(images)
        if self.__budget is not None and self.__queries + len(images) > self.__budget:
            raise QueryBudgetExceeded(
                f"this query of {len(images)} images would exceed the black box's budget of "
                f"{self.__budget} queries ({self.__queries} used, {self.remaining} left)")
        self.__queries += len(images)
        return self.__describe(images)

    __call__ = query

    def __repr__(self) -> str:
        budget = "no budget" if self.__budget is None else f"budget {self.__budget}"
        return (f"<BlackBox {self.__name!r}: query(float images (N, 1, {SIZE}, {SIZE}) in [0, 1])"
                f" -> descriptors (N, {DIM}); {self.__queries} queries used, {budget}>")

    def __getstate__(self):
        raise TypeError("a BlackBox cannot be pickled (that would hand out its network)")

    def __reduce_ex__(self, protocol):
        raise TypeError("a BlackBox cannot be pickled (that would hand out its network)")


def query_tensor(blackbox: BlackBox, images: torch.Tensor) -> torch.Tensor:
    """``blackbox.query`` returning a float32 tensor on the images' device."""
    return torch.from_numpy(blackbox.query(images)).to(images.device)
