"""Unit tests of utils.invertible: exact inverses, shapes, metamers, the iCE step (tiny, fast)."""

from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from utils.invertible import blocks, ice, metamers, network
from utils.training import predict
from utils.invertible.blocks import (
    AdditiveCoupling,
    SpaceToDepth,
    depth_to_space,
    space_to_depth,
)

cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")


def scrambled(module: nn.Module, seed: int = 0) -> nn.Module:
    """Random weights everywhere (the zero-initialised last layers too) and random BN statistics,
    in eval mode: a block that is far from the identity."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in module.modules():
            if isinstance(m, (nn.Conv2d, nn.Linear)):
                fan_in = m.weight[0].numel()
                m.weight.copy_(0.3 * torch.randn(m.weight.shape, generator=g) / fan_in ** 0.5)
                m.bias.copy_(0.1 * torch.randn(m.bias.shape, generator=g))
            if isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d)):
                m.running_mean.copy_(0.2 * torch.randn(m.running_mean.shape, generator=g))
                m.running_var.copy_(0.5 + torch.rand(m.running_var.shape, generator=g))
                m.weight.copy_(1 + 0.2 * torch.randn(m.weight.shape, generator=g))
    return module.eval()


@pytest.fixture(scope="module")
def net():
    torch.manual_seed(0)
    return scrambled(network.fashion_invertible(hidden=(8, 8, 16), blocks=(1, 1, 1)))


# --- coupling blocks ---------------------------------------------------------------------------


@pytest.mark.parametrize("shape", [(3, 6, 5, 7), (2, 4, 14, 14), (1, 2, 3, 3)])
def test_conv_coupling_round_trip(shape):
    block = scrambled(AdditiveCoupling.conv(shape[1], 5), seed=1)
    x = torch.randn(shape)
    with torch.no_grad():
        y = block(x)
        assert (y - x).abs().max() > 1e-2, "the scrambled block is not the identity"
        assert (block.inverse(y) - x).abs().max() < 1e-5
        assert (block(block.inverse(x)) - x).abs().max() < 1e-5, "also a right inverse"
        block64, x64 = copy.deepcopy(block).double(), x.double()
        assert (block64.inverse(block64(x64)) - x64).abs().max() < 1e-12


def test_bottleneck_and_dense_couplings_round_trip():
    for block, x in [(AdditiveCoupling.conv(8, 6, bottleneck=True), torch.randn(4, 8, 5, 5)),
                     (AdditiveCoupling.dense(12, 7), torch.randn(9, 12))]:
        block = scrambled(block, seed=2)
        with torch.no_grad():
            assert (block.inverse(block(x)) - x).abs().max() < 1e-5


def test_functional_coupling_follows_the_formulas():
    F_, G_ = torch.sin, lambda t: 2 * torch.tanh(t)
    x1, x2 = torch.randn(5, 3), torch.randn(5, 3)
    y1, y2 = blocks.coupling_forward(F_, G_, x1, x2)
    assert torch.equal(y1, x1 + F_(x2)) and torch.equal(y2, x2 + G_(y1))
    b1, b2 = blocks.coupling_inverse(F_, G_, y1, y2)
    assert torch.allclose(b1, x1, atol=1e-6) and torch.allclose(b2, x2, atol=1e-6)


def test_new_blocks_are_the_identity():
    block = AdditiveCoupling.conv(4, 8).eval()
    x = torch.randn(2, 4, 6, 6)
    assert torch.equal(block(x), x)


def test_coupling_rejects_bad_shapes():
    block = AdditiveCoupling.conv(4, 8).eval()
    with pytest.raises(ValueError, match=r"\(N, 4, \.\.\.\)"):
        block.inverse(torch.randn(2, 6, 5, 5))
    with pytest.raises(ValueError, match="even number"):
        AdditiveCoupling.conv(3, 8)
    with pytest.raises(ValueError, match="positive"):
        blocks.conv_stack(2, 0)


# --- space-to-depth ----------------------------------------------------------------------------


@pytest.mark.parametrize("r", [2, 3])
def test_space_to_depth_is_pixel_unshuffle(r):
    x = torch.randn(2, 3, 6 * r, 2 * r)
    y = space_to_depth(x, r)
    assert torch.equal(y, F.pixel_unshuffle(x, r))
    assert torch.equal(depth_to_space(y, r), x)
    assert torch.equal(depth_to_space(y, r), F.pixel_shuffle(y, r))


def test_space_to_depth_rejects_bad_shapes():
    with pytest.raises(ValueError, match="divisible"):
        space_to_depth(torch.randn(1, 1, 5, 4))
    with pytest.raises(ValueError, match=r"\(N, 16, H, W\)"):
        SpaceToDepth(4).inverse(torch.randn(1, 8, 3, 3))


# --- the whole network -------------------------------------------------------------------------


def test_network_round_trip_and_shapes(net):
    x = torch.rand(16, 1, 28, 28)
    with torch.no_grad():
        z = net.encode(x)
        assert z.shape == (16, 784)
        assert torch.equal(net(x), z[:, :10])
        assert (net.inverse(z) - x).abs().max() < 1e-5
        z_s, z_n = net.split(z)
        assert z_s.shape == (16, 10) and z_n.shape == (16, 774)
        assert torch.equal(net.merge(z_s, z_n), z)
    assert network.reconstruction_error(net, x, batch_size=5) < 1e-5
    net64 = copy.deepcopy(net).double()
    assert network.reconstruction_error(net64, x.double()) < 1e-12


def test_network_is_a_bijection_on_codes_too(net):
    z = torch.randn(8, 784)
    with torch.no_grad():
        assert (net.encode(net.inverse(z)) - z).abs().max() < 1e-4


def test_inverse_of_the_wrong_shape_names_the_expected_one(net):
    with pytest.raises(ValueError, match=r"\(N, 784\)"):
        net.inverse(torch.randn(3, 10))          # logits alone are not a code
    with pytest.raises(ValueError, match=r"\(N, 784\)"):
        net.inverse(torch.randn(3, 1, 28, 28))
    with pytest.raises(ValueError, match=r"\(N, 1, 28, 28\)"):
        net.encode(torch.rand(3, 784))
    with pytest.raises(ValueError, match=r"\(N, 10\).*\(N, 774\)"):
        net.merge(torch.randn(2, 10), torch.randn(2, 700))
    with pytest.raises(ValueError, match="invertible"):
        network.InvertibleSequential(nn.ReLU())


# --- metamers ----------------------------------------------------------------------------------


def test_metamers_have_the_logits_of_a_and_the_nuisance_of_b(net):
    a, b = torch.rand(6, 1, 28, 28), torch.rand(6, 1, 28, 28)
    met = metamers.metamers(net, a, b)
    with torch.no_grad():
        z_met, z_a, z_b = net.encode(met), net.encode(a), net.encode(b)
    assert torch.allclose(z_met[:, :10], z_a[:, :10], atol=1e-4)
    assert torch.allclose(z_met[:, 10:], z_b[:, 10:], atol=1e-4)
    with pytest.raises(ValueError, match="one nuisance image per logits image"):
        metamers.metamers(net, a, b[:3])


def test_sample_pairs_are_of_different_classes():
    labels = torch.tensor([0, 0, 1, 2, 2, 2])
    a, b = metamers.sample_pairs(labels, 50, generator=torch.Generator().manual_seed(0))
    assert len(a) == len(b) == 50 and bool((labels[a] != labels[b]).all())
    with pytest.raises(ValueError, match="two classes"):
        metamers.sample_pairs(torch.zeros(5, dtype=torch.long), 3)


def test_wilson_interval():
    low, high = metamers.wilson_interval(50, 100)
    assert low < 0.5 < high and high - low == pytest.approx(0.19, abs=0.01)
    assert metamers.wilson_interval(0, 10)[0] == 0.0
    with pytest.raises(ValueError):
        metamers.wilson_interval(1, 0)


def test_metamer_study_and_attack_run(net):
    torch.manual_seed(1)
    images = torch.rand(300, 1, 28, 28)
    with torch.no_grad():
        labels = net(images).argmax(1)
    judge = _Agree(net)
    study = metamers.metamer_study(net, judge, images, labels, n_pairs=40,
                                   generator=torch.Generator().manual_seed(0))
    assert study.n == 40 and 0 <= study.judge_says_b.value <= 1 and 0 < study.chance_b < 1
    targets = (labels[:10] + 1) % 10
    present = torch.isin(targets, labels[10:])
    adv = metamers.metameric_attack(net, images[:10][present], targets[present], images[10:],
                                    labels[10:], candidates=3,
                                    generator=torch.Generator().manual_seed(0))
    assert adv.shape == images[:10][present].shape and adv.min() >= 0 and adv.max() <= 1
    with pytest.raises(ValueError, match="one class per image"):
        metamers.metameric_attack(net, images[:4], targets[:3], images, labels)


class _Constant(nn.Module):
    """A 'judge' that always answers class ``c``."""

    def __init__(self, c):
        super().__init__()
        self.c = c

    def forward(self, x):
        return torch.nn.functional.one_hot(torch.full((len(x),), self.c), 10).float()


class _Agree(nn.Module):
    """A 'judge' that answers like the net (for a shape-only test)."""

    def __init__(self, net):
        super().__init__()
        self.net = net

    def forward(self, x):
        return self.net(x)


# --- iCE ---------------------------------------------------------------------------------------


def test_ice_step_moves_both_players(net):
    model = copy.deepcopy(net)
    nuisance = ice.nuisance_classifier()
    before_net = [p.detach().clone() for p in model.parameters()]
    before_d = [p.detach().clone() for p in nuisance.parameters()]
    step = ice.ice_step(model, nuisance, torch.optim.SGD(model.parameters(), lr=0.1),
                        torch.optim.SGD(nuisance.parameters(), lr=0.1), weight=1.0)
    x, y = torch.rand(8, 1, 28, 28), torch.arange(8) % 10
    metrics = step((x, y), 0.0)
    assert set(metrics) == {"loss", "semantic_ce", "nuisance_ce", "nuisance_accuracy",
                            "nuisance_nll"}
    assert any(not torch.equal(a, b) for a, b in zip(before_net, model.parameters()))
    assert any(not torch.equal(a, b) for a, b in zip(before_d, nuisance.parameters()))
    with pytest.raises(ValueError, match="weight"):
        ice.ice_step(model, nuisance, None, None, weight=-1)
    with pytest.raises(ValueError, match="ml_weight"):
        ice.ice_step(model, nuisance, None, None, ml_weight=float("nan"))


def test_likelihood_term_is_half_the_mean_square_and_changes_the_step(net):
    z = torch.tensor([[1.0, -2.0], [0.0, 3.0]])
    assert ice.nuisance_nll(z).item() == pytest.approx(0.5 * (1 + 4 + 0 + 9) / 4)
    x, y = torch.rand(8, 1, 28, 28), torch.arange(8) % 10
    trained = []
    for ml_weight in (0.0, 1.0):
        torch.manual_seed(0)
        model, nuisance = copy.deepcopy(net), ice.nuisance_classifier()
        step = ice.ice_step(model, nuisance, torch.optim.SGD(model.parameters(), lr=0.1),
                            torch.optim.SGD(nuisance.parameters(), lr=0.1), ml_weight=ml_weight)
        metrics = step((x, y), 0.0)
        trained.append(model)
    assert metrics["nuisance_nll"] > 0
    assert any(not torch.equal(a, b)
               for a, b in zip(trained[0].parameters(), trained[1].parameters()))


# --- controls: common pairs, size-matched noise, several judges ---------------------------------


def test_size_matched_noise_has_the_size_of_each_change():
    images, changes = torch.rand(5, 1, 28, 28), torch.randn(5, 1, 28, 28) * torch.arange(1, 6.)[
        :, None, None, None]
    noisy = metamers.size_matched_noise(images, changes, generator=torch.Generator().manual_seed(0))
    assert torch.allclose((noisy - images).flatten(1).norm(dim=1), changes.flatten(1).norm(dim=1))
    assert not torch.allclose(noisy - images, changes)
    with pytest.raises(ValueError, match="same shape"):
        metamers.size_matched_noise(images, changes[:3])


def test_controlled_study_reads_every_judge_on_common_pairs(net):
    images, labels = torch.rand(300, 1, 28, 28), torch.arange(300) % 10
    judges = {"agree": _Agree(net), "constant": _Constant(3)}
    a, b = metamers.common_pairs([net], images, labels, 20,
                                 generator=torch.Generator().manual_seed(0))
    assert len(a) == len(b) == 20 and bool((labels[a] != labels[b]).all())
    assert bool((predict(net, images[a]) == labels[a]).all())
    study = metamers.controlled_metamer_study(net, judges, images, labels, a, b,
                                              generator=torch.Generator().manual_seed(1))
    assert set(study.metamer) == set(study.noise) == set(judges)
    for reading in (*study.metamer.values(), *study.noise.values()):
        assert reading.says_a.successes + reading.says_b.successes + reading.neither.successes == 20
    # the net's own reading of an exact metamer is A's class
    assert study.metamer["agree"].says_a.value == study.net_says_a.value
    constant = study.metamer["constant"]
    expected_b = int((labels[b] == 3).sum())
    assert constant.says_b.successes == expected_b
    assert study.value_range[0] <= study.value_range[1] and study.median_l2 > 0
    with pytest.raises(ValueError, match="judge"):
        metamers.controlled_metamer_study(net, {}, images, labels, a, b)


# --- device ------------------------------------------------------------------------------------


@cuda
def test_everything_stays_on_the_gpu(net):
    gpu = copy.deepcopy(net).cuda()
    x = torch.rand(5, 1, 28, 28, device="cuda")
    assert network.reconstruction_error(gpu, x) < 1e-5
    met = metamers.metamers(gpu, x, x.flip(0))
    assert met.device.type == "cuda"


# --- the layers that keep the numbers small, and the zoo entries -------------------------------


def test_soft_clip_and_scale():
    clip = blocks.SoftClip(0.5)
    x = torch.linspace(-100, 100, 1001)
    assert clip(x).abs().max() <= 0.5
    assert torch.allclose(clip(torch.tensor([1e-4])), torch.tensor([1e-4]))
    scale = blocks.Scale(8)
    assert torch.equal(scale.inverse(scale(x)), x), "a power of two scales exactly"
    with pytest.raises(ValueError, match="positive"):
        blocks.SoftClip(0)
    with pytest.raises(ValueError, match="positive"):
        blocks.Scale(-1)


def test_the_network_never_reaches_four(net):
    """Centred pixels (|.| <= 1.42) plus 5 soft-clipped additions of at most 0.5 stay below 4."""
    torch.manual_seed(0)
    big = network.fashion_invertible()
    with torch.no_grad():   # saturate every soft clip: huge last layers
        for m in big.modules():
            if isinstance(m, (nn.Conv2d, nn.Linear)):
                m.weight.normal_(0, 100.0)
    big.eval()
    h = torch.rand(8, 1, 28, 28).round()          # black-and-white images: the extremes
    with torch.no_grad():
        for layer in big.body.layers[:-1]:           # everything before the final scaling
            h = layer(h)
            assert h.abs().max() < 4


@pytest.mark.parametrize("name", ["invertible_fashion", "invertible_fashion_ice",
                                  "invertible_fashion_ice_ml"])
def test_zoo_checkpoints_are_small_and_invertible(name):
    from utils import zoo

    assert zoo.entry(name).path.stat().st_size < 2e6
    model = zoo.load(name, train_if_missing=False)
    x = torch.rand(20, 1, 28, 28, generator=torch.Generator().manual_seed(0))
    assert network.reconstruction_error(model, x) < 1e-5


def test_metameric_attack_refine_rejects_bad_values(net):
    images = torch.rand(4, 1, 28, 28)
    with pytest.raises(ValueError, match="refine"):
        metamers.metameric_attack(net, images, torch.zeros(4, dtype=torch.long), images,
                                  torch.zeros(4, dtype=torch.long), refine=-1)
