"""Unit tests of utils.smoothing (randomized smoothing's PREDICT and CERTIFY), in seconds."""

from __future__ import annotations

import math

import pytest
import torch
from scipy import stats
from torch import nn

from utils import smoothing


class Constant(nn.Module):
    """Always class ``label`` (a base classifier that noise cannot move)."""

    def __init__(self, label: int):
        super().__init__()
        self.label = label
        self.dummy = nn.Parameter(torch.zeros(1))

    def forward(self, x):
        logits = torch.zeros(x.shape[0], 10, dtype=x.dtype) + 0 * self.dummy
        logits[:, self.label] = 1
        return logits


class Threshold(nn.Module):
    """Class 1 when the mean pixel exceeds 0.5, else 0: a linear classifier with a known margin."""

    def forward(self, x):
        score = x.flatten(1).mean(1) - 0.5
        return torch.stack([-score, score], 1)


def test_counts_add_up_and_are_repeatable():
    model = nn.Sequential(nn.Flatten(), nn.Linear(16, 10))
    x = torch.rand(5, 1, 4, 4)
    a = smoothing.noise_counts(model, x, sigma=0.3, n=77, batch_size=32,
                               generator=torch.Generator().manual_seed(1))
    b = smoothing.noise_counts(model, x, sigma=0.3, n=77, batch_size=32,
                               generator=torch.Generator().manual_seed(1))
    assert a.shape == (5, 10) and a.dtype == torch.long and (a.sum(1) == 77).all()
    assert torch.equal(a, b)


def test_constant_classifier_certifies_the_bound_radius():
    x = torch.rand(3, 1, 4, 4)
    classes, radii = smoothing.certify(Constant(4), x, sigma=0.5, n0=10, n=1000, alpha=0.001)
    expected = 0.5 * stats.norm.ppf(0.001 ** (1 / 1000))      # all n hits: p_lower = alpha^(1/n)
    assert classes.tolist() == [4, 4, 4]
    assert torch.allclose(radii, torch.full((3,), expected, dtype=radii.dtype), atol=1e-5)
    assert smoothing.predict(Constant(7), x, sigma=0.5, n=50).tolist() == [7, 7, 7]


def test_radius_is_sound_for_a_linear_classifier():
    # distance of x (constant image) to the boundary mean = 0.5 is |c - 0.5| * sqrt(d) in L2
    d = 16
    x = torch.full((4, 1, 4, 4), 0.0) + torch.tensor([0.45, 0.40, 0.60, 0.52]).view(4, 1, 1, 1)
    classes, radii = smoothing.certify(Threshold(), x, sigma=0.25, n0=100, n=2000, alpha=0.001,
                                       generator=torch.Generator().manual_seed(0))
    boundary = (x.flatten(1).mean(1) - 0.5).abs() * d ** 0.5
    assert (radii <= boundary + 1e-6).all()
    certified = classes != smoothing.ABSTAIN
    assert certified.any()
    assert (classes[certified] == (x.flatten(1).mean(1) > 0.5).long()[certified]).all()


def test_abstains_on_a_coin():
    x = torch.full((2, 1, 4, 4), 0.5)      # exactly on the boundary: a fair coin under noise
    classes, radii = smoothing.certify(Threshold(), x, sigma=0.5, n0=50, n=500,
                                       generator=torch.Generator().manual_seed(0))
    assert classes.tolist() == [smoothing.ABSTAIN] * 2 and radii.tolist() == [0.0, 0.0]
    assert smoothing.predict(Threshold(), x, sigma=0.5, n=200,
                             generator=torch.Generator().manual_seed(0)).tolist() == [-1, -1]


def test_clopper_pearson_matches_the_beta_quantiles():
    low, high = smoothing.clopper_pearson(7, 20, 0.05)
    assert low == pytest.approx(stats.beta.ppf(0.025, 7, 14))
    assert high == pytest.approx(stats.beta.ppf(0.975, 8, 13))
    assert smoothing.clopper_pearson(0, 10, 0.05)[0] == 0.0
    assert smoothing.clopper_pearson(10, 10, 0.05)[1] == 1.0
    assert smoothing.radius_from_counts(400, 1000, sigma=0.25, alpha=0.001) == 0.0


@pytest.mark.parametrize("kw", [dict(sigma=0.0), dict(sigma=-1.0), dict(sigma=float("nan")),
                                dict(sigma=0.25, n=0), dict(sigma=0.25, alpha=1.5)])
def test_bad_arguments_raise(kw):
    with pytest.raises(ValueError):
        smoothing.certify(Constant(0), torch.rand(2, 1, 4, 4), **kw)


def test_state_restored():
    model = nn.Sequential(nn.Flatten(), nn.Dropout(0.5), nn.Linear(16, 10)).train()
    smoothing.predict(model, torch.rand(2, 1, 4, 4), sigma=0.25, n=10)
    assert model.training and all(p.requires_grad for p in model.parameters())


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_stays_on_device():
    model = nn.Sequential(nn.Flatten(), nn.Linear(16, 10)).cuda()
    classes, radii = smoothing.certify(model, torch.rand(2, 1, 4, 4, device="cuda"), sigma=0.25,
                                       n0=10, n=50)
    assert classes.is_cuda and radii.is_cuda


def test_hoeffding_radius_is_never_larger_than_clopper_pearsons_and_abstains():
    for count, n in [(1000, 1000), (990, 1000), (700, 1000), (95, 100), (60, 100)]:
        cruder = smoothing.hoeffding_radius(count, n, sigma=0.25, alpha=0.001)
        exact = smoothing.radius_from_counts(count, n, sigma=0.25, alpha=0.001)
        assert isinstance(cruder, float) and 0.0 <= cruder <= exact + 1e-12
    assert smoothing.hoeffding_radius(520, 1000, sigma=0.25, alpha=0.001) == 0.0
    lower = 0.99 - (math.log(1 / 0.01) / 2000) ** 0.5
    assert smoothing.hoeffding_radius(990, 1000, sigma=0.5, alpha=0.01) == pytest.approx(
        0.5 * stats.norm.ppf(lower))
    with pytest.raises(ValueError):
        smoothing.hoeffding_radius(5, 0, sigma=0.25, alpha=0.001)


def test_predict_from_counts_abstains_on_close_calls_and_ties():
    counts = torch.tensor([[0, 200, 0], [0, 110, 90], [5, 150, 45], [100, 100, 0], [0, 0, 0]])
    assert smoothing.predict_from_counts(counts, 0.001).tolist() == [1, -1, 1, -1, -1]
    assert smoothing.predict_from_counts(counts, 0.001).dtype == torch.long
    for bad in (torch.rand(3, 4), torch.tensor([1, 2, 3]), torch.tensor([[3], [4]])):
        with pytest.raises(ValueError, match="integer tensor"):
            smoothing.predict_from_counts(bad, 0.01)
