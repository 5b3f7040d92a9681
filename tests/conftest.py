"""Shared fixtures (tiny models, a temporary checkpoint folder) and the test tiers.

Tiers: ``python3 kit.py test --quick`` runs ``pytest -m "not slow" tests`` -- the unit tests, in
about a minute on 2 cores -- and ``python3 kit.py test`` everything (CI).  What is slow is marked
here by file name, so that a file needs no marker of its own (and one being rewritten keeps its
tier): the grader's tests (``test_grading*.py``: caged kernels, minutes), the browser test, the
course site (converts every notebook) and every notebook nbval runs.  A single slow test in
another file carries ``@pytest.mark.slow`` itself.  The markers are registered in pyproject.toml.
"""

from __future__ import annotations

from fnmatch import fnmatch

import pytest
import torch
from torch import nn


@pytest.fixture
def tiny_classifier() -> nn.Module:
    """A seeded two-layer classifier for 1x8x8 images in [0, 1] (for fast tests)."""
    torch.manual_seed(0)
    return nn.Sequential(nn.Flatten(), nn.Linear(64, 16), nn.ReLU(), nn.Linear(16, 3)).eval()


@pytest.fixture
def checkpoint_dir(tmp_path, monkeypatch):
    """Point the zoo at an empty temporary checkpoint folder."""
    folder = tmp_path / "checkpoints"
    folder.mkdir()
    monkeypatch.setenv("ADVX_CHECKPOINT_DIR", str(folder))
    return folder


SLOW_FILES = {             # file name pattern -> what kind of slow test it holds
    "test_grading*.py": "grader",
    "test_browser.py": "browser",
    "test_site.py": "notebook",
    "*.ipynb": "notebook",
}


@pytest.hookimpl(tryfirst=True)      # before ``-m`` deselects by marker
def pytest_collection_modifyitems(config, items):
    for item in items:
        for pattern, kind in SLOW_FILES.items():
            if fnmatch(item.path.name, pattern):
                item.add_marker(pytest.mark.slow)
                item.add_marker(getattr(pytest.mark, kind))
