"""Shared fixtures: tiny models and a temporary checkpoint folder, so unit tests run in seconds."""

from __future__ import annotations

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
