"""Unit tests of APGD (utils.attacks.apgd, apgd_targeted) on tiny models, in seconds."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from test_attacks import data, trained  # noqa: F401  (fixtures shared with the other attacks' tests)
from utils import attacks

EPS = 0.1


def tiny_cnn(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Conv2d(1, 4, 3, stride=2, padding=1), nn.ReLU(), nn.Dropout(0.2),
                         nn.Flatten(), nn.Linear(4 * 7 * 7, 10))


VARIANTS = [
    ("apgd_ce", attacks.apgd, dict(eps=EPS, steps=10), "linf"),
    ("apgd_dlr", attacks.apgd, dict(eps=EPS, steps=10, loss="dlr"), "linf"),
    ("apgd_l2", attacks.apgd, dict(eps=0.5, steps=10, norm="l2"), "l2"),
    ("apgd_restarts", attacks.apgd, dict(eps=EPS, steps=5, restarts=3), "linf"),
    ("apgd_t", attacks.apgd_targeted, dict(eps=EPS, steps=5, target_classes=3), "linf"),
]


@pytest.mark.parametrize("name, attack, kw, norm", VARIANTS, ids=[v[0] for v in VARIANTS])
def test_in_ball_box_dtype_device_detached_state_restored(name, attack, kw, norm, data):
    x, y = data
    model = tiny_cnn()
    model.train()
    model[0].weight.requires_grad_(False)
    for dtype in (torch.float32, torch.float64):
        net = model.to(dtype)
        adv = attack(net, x.to(dtype), y, **kw)
        assert adv.dtype == dtype and adv.device == x.device and not adv.requires_grad
        assert adv.min() >= 0 and adv.max() <= 1
        delta = (adv - x.to(dtype)).flatten(1)
        size = delta.abs().amax(1) if norm == "linf" else delta.norm(dim=1)
        assert (size <= kw["eps"] + 1e-6).all()
        assert model.training and all(m.training for m in model.modules())
        assert not model[0].weight.requires_grad and model[0].bias.requires_grad
        assert all(p.grad is None for p in model.parameters())
    model.float()


@pytest.mark.parametrize("targeted", [False, True])
def test_targeted_dlr_and_ce(targeted, trained):
    model, x, y = trained
    goal = (y + 1) % 10 if targeted else y
    for loss in ("ce", "dlr"):
        adv = attacks.apgd(model, x, goal, eps=0.3, steps=20, loss=loss, targeted=targeted,
                           generator=torch.Generator().manual_seed(0))
        prediction = model(adv).argmax(1)
        rate = (prediction == goal).float().mean() if targeted else (prediction != y).float().mean()
        assert rate >= 0.9, (loss, targeted, rate)


def test_stronger_than_pgd_with_a_bad_step(trained):
    model, x, y = trained
    gen = torch.Generator().manual_seed(0)
    weak = attacks.pgd(model, x, y, eps=0.06, alpha=0.5, steps=20, generator=gen)  # step too large
    auto = attacks.apgd(model, x, y, eps=0.06, steps=20, generator=torch.Generator().manual_seed(0))
    assert (model(auto).argmax(1) == y).sum() <= (model(weak).argmax(1) == y).sum()


def test_apgd_t_untargeted_goal(trained):
    model, x, y = trained
    adv = attacks.apgd_targeted(model, x, y, eps=0.3, steps=10, target_classes=2,
                                generator=torch.Generator().manual_seed(0))
    assert (model(adv).argmax(1) != y).float().mean() >= 0.9


def test_generator_repeatable_and_eps_zero_identity(data):
    x, y = data
    model = tiny_cnn()
    a = attacks.apgd(model, x, y, eps=EPS, steps=6, generator=torch.Generator().manual_seed(3))
    b = attacks.apgd(model, x, y, eps=EPS, steps=6, generator=torch.Generator().manual_seed(3))
    assert torch.equal(a, b)
    assert torch.equal(attacks.apgd(model, x, y, eps=0.0, steps=3), x)


def test_checkpoints_follow_the_paper():
    # p = 0, 0.22, 0.41, 0.57, 0.70, 0.80, 0.87, 0.93, 0.99 (intervals 22, 19, 16, 13, 10, 7, 6, 6)
    assert attacks.apgd_checkpoints(100) == [22, 41, 57, 70, 80, 87, 93, 99]
    assert attacks.apgd_checkpoints(1) == [1]
    assert attacks.apgd_checkpoints(0) == []


@pytest.mark.parametrize("kw, message", [
    (dict(eps=-0.1), "eps"), (dict(eps=float("nan")), "eps"), (dict(eps=EPS, steps=-1), "steps"),
    (dict(eps=EPS, restarts=0), "restarts"), (dict(eps=EPS, loss="hinge"), "loss"),
    (dict(eps=EPS, rho=1.5), "rho"), (dict(eps=EPS, momentum=-0.2), "momentum"),
    (dict(eps=EPS, norm="l1"), "norm"),
])
def test_bad_arguments_raise(kw, message, data):
    x, y = data
    with pytest.raises(ValueError, match=message):
        attacks.apgd(tiny_cnn(), x, y, **kw)


def test_bad_inputs_raise(data):
    x, y = data
    model = tiny_cnn()
    with pytest.raises(ValueError, match="uint8"):
        attacks.apgd(model, (x * 255).to(torch.uint8), y, eps=EPS)
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        attacks.apgd(model, x * 3, y, eps=EPS)
    with pytest.raises(ValueError, match="one label per image"):
        attacks.apgd(model, x, y[:3], eps=EPS)
    with pytest.raises(ValueError, match="targets"):
        attacks.apgd(model, x, None, eps=EPS, targeted=True)
    with pytest.raises(ValueError, match="target_classes"):
        attacks.apgd_targeted(model, x, y, eps=EPS, target_classes=10)
    with pytest.raises(ValueError, match="classes"):
        attacks.apgd(nn.Sequential(nn.Flatten(), nn.Linear(196, 2)), x, y % 2, eps=EPS, loss="dlr")


def test_state_restored_when_the_model_raises(data):
    x, y = data

    class Broken(nn.Module):
        def __init__(self):
            super().__init__()
            self.layer = nn.Linear(196, 10)
            self.calls = 0

        def forward(self, inputs):
            self.calls += 1
            if self.calls > 2:
                raise RuntimeError("boom")
            return self.layer(inputs.flatten(1))

    model = Broken().train()
    with pytest.raises(RuntimeError, match="boom"):
        attacks.apgd(model, x, y, eps=EPS, steps=5)
    assert model.training and model.layer.weight.requires_grad


def test_ensemble(data):
    x, y = data
    members = [(tiny_cnn(0), 1.0), (tiny_cnn(1), 2.0)]
    adv = attacks.apgd(members, x, y, eps=EPS, steps=5)
    assert (adv - x).abs().max() <= EPS + 1e-6


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_stays_on_device(data):
    x, y = data
    model = tiny_cnn().cuda()
    adv = attacks.apgd_targeted(model, x.cuda(), y.cuda(), eps=EPS, steps=3, target_classes=2,
                                generator=torch.Generator("cuda").manual_seed(0))
    assert adv.is_cuda
