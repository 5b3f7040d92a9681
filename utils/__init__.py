"""Adversarial X: the shared library every notebook of the course imports.

One module per idea:

- :mod:`utils.session`  -- the first cell of every notebook (seeds, device, plots, versions)
- :mod:`utils.data`     -- Fashion-MNIST, Olivetti faces, Fashion-M and noise images, offline-first
- :mod:`utils.models`   -- the network architectures the course trains
- :mod:`utils.training` -- the training loops behind the checkpoint recipes
- :mod:`utils.zoo`      -- the checkpoint registry: load, verify, or train by recipe
- :mod:`utils.labs`     -- generates ``labs/`` from ``solutions/``
- :mod:`utils.grading`  -- grades submitted labs into a gradebook
"""

from utils.session import setup, pick_device

__all__ = ["setup", "pick_device"]
__version__ = "0.1.0"
