import random

import numpy as np
import pytest
import torch

import utils
from utils.session import pick_device, seed_everything, versions


def test_setup_seeds_every_generator_and_returns_a_device(capsys):
    device = utils.setup(123)
    first = (random.random(), np.random.rand(), torch.rand(1).item())
    utils.setup(123, quiet=True)
    again = (random.random(), np.random.rand(), torch.rand(1).item())
    assert first == again
    assert isinstance(device, torch.device)
    assert "torch" in capsys.readouterr().out


def test_setup_prints_the_versions_that_matter():
    found = versions()
    for package in ("python", "torch", "torchvision", "captum", "pytorch-msssim"):
        assert package in found


def test_bad_seed_is_refused():
    with pytest.raises(ValueError, match="seed"):
        seed_everything(-1)


def test_pick_device_honours_the_environment(monkeypatch):
    monkeypatch.setenv("ADVX_DEVICE", "cpu")
    assert pick_device() == torch.device("cpu")


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the error on a machine without CUDA")
def test_asking_for_cuda_without_a_gpu_says_so():
    with pytest.raises(ValueError, match="no CUDA"):
        pick_device("cuda")


@pytest.mark.slow   # times busy subprocesses
def test_importing_utils_makes_idle_openmp_threads_sleep_unless_told_otherwise():
    import os
    import subprocess
    import sys

    code = "import os, utils; print(os.environ['OMP_WAIT_POLICY'])"
    env = {k: v for k, v in os.environ.items() if k != "OMP_WAIT_POLICY"}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    assert out.stdout.strip() == "PASSIVE", out.stderr
    env["OMP_WAIT_POLICY"] = "ACTIVE"
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    assert out.stdout.strip() == "ACTIVE", "an explicit setting wins"
