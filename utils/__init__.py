"""Adversarial X: the shared library every notebook of the course imports.

Imports run one way (``tests/test_architecture.py`` checks it):

- the **core**, which never imports a lecture: :mod:`~utils.session` (the first cell of every
  notebook), :mod:`~utils.paths` (where files live, the one atomic write), :mod:`~utils.data`
  (data sets, offline-first), :mod:`~utils.models` (blocks and the Fashion-MNIST classifiers),
  :mod:`~utils.training` (the one training loop), :mod:`~utils.recipes` (the core's zoo
  recipes), :mod:`~utils.zoo` + :mod:`~utils.zoo_entries` (the checkpoint registry),
  :mod:`~utils.attacks` (one attack vocabulary, the input-optimisation loop, differential
  evolution), :mod:`~utils.transforms` (blur, EOT transformations), :mod:`~utils.attribution`,
  :mod:`~utils.viz`, :mod:`~utils.tables`, :mod:`~utils.stats` (intervals), :mod:`~utils.smoothing`
  (randomized smoothing: PREDICT, CERTIFY), :mod:`~utils.text`
  (adversarial text: prose-or-code lines, greedy character edits);
- one **topic package** per lecture, using the core only: :mod:`utils.fooling` (02),
  :mod:`utils.faces` (03), :mod:`utils.domain` (04), :mod:`utils.gans` (05),
  :mod:`utils.invertible` (06);
- **course tooling**: :mod:`~utils.labs` (labs from solutions), :mod:`~utils.grading`.
"""

import os

# OpenMP threads that spin while they wait for a busy CPU make small-batch torch work many times
# slower on a shared or loaded machine (measured: 6-25x on 2 cores); sleeping costs little on a
# quiet one.  Set before torch loads; an explicit OMP_WAIT_POLICY in the environment wins.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

from importlib.metadata import PackageNotFoundError, version  # noqa: E402

from utils.session import pick_device, setup  # noqa: E402

__all__ = ["setup", "pick_device"]
try:  # one source of truth: the version in pyproject.toml, as installed (pip install -e .)
    __version__ = version("adversarial-x")
except PackageNotFoundError:  # a copy of utils/ that was never installed
    __version__ = "0+unknown"
del PackageNotFoundError, version
