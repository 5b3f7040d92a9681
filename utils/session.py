"""The first code cell of every notebook: one call that makes a run repeatable and readable.

``device = utils.setup()`` seeds every random number generator, picks CUDA when present,
sets the plotting defaults and prints the versions that matter, so that two students who
see different numbers can tell at a glance whether their environments differ.
"""

from __future__ import annotations

import os
import platform
import random

import numpy as np
import torch


def pick_device(prefer: str | None = None) -> torch.device:
    """The device the course runs on: ``prefer`` if given, else CUDA when present, else CPU.

    The environment variable ``ADVX_DEVICE`` (e.g. ``cpu``) overrides the automatic choice,
    which is handy to reproduce the CPU numbers on a machine with a GPU.
    """
    choice = prefer or os.environ.get("ADVX_DEVICE")
    if choice:
        device = torch.device(choice)
        if device.type == "cuda" and not torch.cuda.is_available():
            raise ValueError(
                f"device {choice!r} was asked for, but this PyTorch sees no CUDA GPU; "
                "use 'cpu' or unset ADVX_DEVICE"
            )
        return device
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def seed_everything(seed: int) -> None:
    """Seed Python's, NumPy's and PyTorch's global generators (CPU and every GPU)."""
    if not isinstance(seed, int) or seed < 0:
        raise ValueError(f"seed must be a non-negative int, got {seed!r}")
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)  # also seeds every CUDA device


def plotting_defaults() -> None:
    """Matplotlib settings shared by all figures of the course (small, clean, grey images)."""
    import matplotlib

    matplotlib.rcParams.update(
        {
            "figure.dpi": 90,
            "savefig.dpi": 120,
            "figure.figsize": (7.0, 3.5),
            "image.cmap": "gray",
            "image.interpolation": "nearest",
            "axes.spines.top": False,
            "axes.spines.right": False,
            "axes.grid": False,
            "font.size": 10,
        }
    )


def versions() -> dict[str, str]:
    """Versions of Python and of the packages whose behaviour the course's numbers depend on."""
    from importlib.metadata import PackageNotFoundError, version

    found = {"python": platform.python_version()}
    for package in ("torch", "torchvision", "numpy", "captum", "pytorch-msssim", "matplotlib"):
        try:
            found[package] = version(package)
        except PackageNotFoundError:
            found[package] = "not installed"
    return found


def setup(seed: int = 0, *, device: str | None = None, quiet: bool = False) -> torch.device:
    """Prepare a notebook: seed every RNG, pick the device, set plot defaults, print versions.

    Returns the :class:`torch.device` the notebook should put its models and tensors on.
    """
    seed_everything(seed)
    chosen = pick_device(device)
    plotting_defaults()
    if not quiet:
        line = ", ".join(f"{name} {v}" for name, v in versions().items())
        threads = torch.get_num_threads()
        print(f"device: {chosen.type} ({threads} CPU threads) | seed {seed}\n{line}")
    return chosen
