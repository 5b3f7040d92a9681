"""Unit tests of utils.attacks on tiny models (seconds, no checkpoints needed)."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from utils import attacks

EPS = 0.1


def tiny_cnn(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(
        nn.Conv2d(1, 4, 3, stride=2, padding=1), nn.ReLU(), nn.Dropout(0.2),
        nn.Flatten(), nn.Linear(4 * 7 * 7, 10),
    )


@pytest.fixture(scope="module")
def data():
    generator = torch.Generator().manual_seed(0)
    x = torch.rand(8, 1, 14, 14, generator=generator)
    y = torch.randint(0, 10, (8,), generator=generator)
    return x, y


@pytest.fixture(scope="module")
def trained():
    """A linear classifier on a small, easy synthetic problem, trained in well under a second."""
    generator = torch.Generator().manual_seed(1)
    prototypes = 0.4 + 0.2 * torch.rand(10, 1, 14, 14, generator=generator)
    y = torch.arange(200) % 10
    x = (prototypes[y] + 0.1 * torch.randn(200, 1, 14, 14, generator=generator)).clamp(0, 1)
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(14 * 14, 10))
    optimiser = torch.optim.Adam(model.parameters(), lr=0.05)
    for _ in range(60):
        optimiser.zero_grad()
        F.cross_entropy(model(x), y).backward()
        optimiser.step()
    model.eval()
    assert (model(x).argmax(1) == y).float().mean() > 0.95
    return model, x[:40], y[:40]


# every attack, configured to be fast; (name, function, keywords, norm or None for no ball)
ATTACKS = [
    ("fgsm", attacks.fgsm, dict(eps=EPS), "linf"),
    ("fgsm_random_start", attacks.fgsm, dict(eps=EPS, random_start=True), "linf"),
    ("pgd_linf", attacks.pgd, dict(eps=EPS, alpha=0.03, steps=3), "linf"),
    ("pgd_l2", attacks.pgd, dict(eps=0.5, alpha=0.2, steps=3, norm="l2"), "l2"),
    ("pgd_early_stop", attacks.pgd, dict(eps=EPS, alpha=0.03, steps=3, early_stop=True), "linf"),
    ("mifgsm", attacks.mifgsm, dict(eps=EPS, steps=3), "linf"),
    ("fgvm", attacks.fgvm, dict(eps=EPS, steps=2), "linf"),
    ("eot_pgd", attacks.eot_pgd, dict(eps=EPS, alpha=0.03, steps=2, samples=2), "linf"),
    ("cw_l2", attacks.cw_l2, dict(steps=3, search_steps=2), None),
    ("szegedy", attacks.szegedy, dict(steps=3, search_steps=2, targeted=False), None),
    ("one_pixel", attacks.one_pixel, dict(population=8, steps=2), None),
]
IDS = [name for name, *_ in ATTACKS]
DETERMINISTIC = {"cw_l2", "szegedy"}     # they draw no random numbers, so take no generator


def seeded(name: str, seed: int = 0, device: str = "cpu") -> dict:
    """The ``generator=`` keyword for an attack that draws random numbers; nothing otherwise."""
    if name in DETERMINISTIC:
        return {}
    return {"generator": torch.Generator(device=device).manual_seed(seed)}


def distance(adv, x, norm):
    delta = (adv.double() - x.double()).flatten(1)
    return delta.abs().amax(1) if norm == "linf" else delta.norm(dim=1)


@pytest.mark.parametrize("name,attack,kw,norm", ATTACKS, ids=IDS)
def test_result_in_ball_box_dtype_detached(name, attack, kw, norm, data):
    x, y = data
    model = tiny_cnn()
    adv = attack(model, x, y, **seeded(name), **kw)
    assert adv.shape == x.shape and adv.dtype == x.dtype and adv.device == x.device
    assert not adv.requires_grad and adv.grad_fn is None
    assert float(adv.min()) >= 0.0 and float(adv.max()) <= 1.0
    if norm is not None:
        assert float(distance(adv, x, norm).max()) <= kw["eps"] + 1e-6
    if name == "one_pixel":
        changed = (adv != x).flatten(1).sum(1)
        assert int(changed.max()) <= 1


@pytest.mark.parametrize("name,attack,kw,norm", ATTACKS, ids=IDS)
def test_modes_and_requires_grad_restored_no_parameter_grads(name, attack, kw, norm, data):
    x, y = data
    model = tiny_cnn().train()
    model[0].eval()                                # a mixed state must come back exactly
    model[4].bias.requires_grad_(False)            # and so must a frozen parameter
    modes = [m.training for m in model.modules()]
    flags = [p.requires_grad for p in model.parameters()]
    attack(model, x, y, **kw)
    assert [m.training for m in model.modules()] == modes
    assert [p.requires_grad for p in model.parameters()] == flags
    assert all(p.grad is None for p in model.parameters()), "gradients w.r.t. the input only"


def test_state_restored_when_the_model_raises(data):
    x, y = data

    class Broken(nn.Module):
        def __init__(self):
            super().__init__()
            self.linear = nn.Linear(3, 3)

        def forward(self, x):
            raise RuntimeError("boom")

    model = Broken().train()
    with pytest.raises(RuntimeError, match="boom"):
        attacks.pgd(model, x, y, eps=EPS, alpha=0.01, steps=2)
    assert model.training and all(p.requires_grad for p in model.parameters())


def test_float64_and_y_none(data):
    x, _ = data
    model = tiny_cnn().double()
    adv = attacks.pgd(model, x.double(), eps=EPS, alpha=0.03, steps=2)
    assert adv.dtype == torch.float64
    assert float((adv - x.double()).abs().max()) <= EPS + 1e-6


def test_input_not_modified_and_requires_grad_input(data):
    x, y = data
    model = tiny_cnn()
    original = x.clone()
    leaf = x.clone().requires_grad_(True)
    adv = attacks.pgd(model, leaf, y, eps=EPS, alpha=0.03, steps=2)
    assert torch.equal(x, original) and leaf.grad is None and not adv.requires_grad


BAD = [
    (dict(eps=-0.1), "eps must be >= 0"),
    (dict(eps=float("nan")), "finite"),
    (dict(eps=float("inf")), "finite"),
    (dict(eps="0.1"), "real number"),
]


@pytest.mark.parametrize("kw,message", BAD)
def test_bad_eps(kw, message, data):
    x, y = data
    with pytest.raises(ValueError, match=message):
        attacks.fgsm(tiny_cnn(), x, y, **kw)


def test_bad_inputs_say_what_and_how(data):
    x, y = data
    model = tiny_cnn()
    with pytest.raises(ValueError, match=r"uint8.*to_tensor"):
        attacks.fgsm(model, (x * 255).to(torch.uint8), y, eps=EPS)
    with pytest.raises(ValueError, match=r"\[0, 1\].*normalisation"):
        attacks.pgd(model, x * 2 - 0.5, y, eps=EPS, alpha=0.1, steps=1)
    nan = x.clone()
    nan[0, 0, 0, 0] = float("nan")
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        attacks.fgsm(model, nan, y, eps=EPS)
    with pytest.raises(ValueError, match=r"8 images but y has shape \(7,\)"):
        attacks.fgsm(model, x, y[:7], eps=EPS)
    with pytest.raises(ValueError, match="targeted=True needs the target labels"):
        attacks.pgd(model, x, None, eps=EPS, alpha=0.1, steps=1, targeted=True)
    with pytest.raises(ValueError, match="ensemble is empty"):
        attacks.fgsm([], x, y, eps=EPS)
    with pytest.raises(ValueError, match="weights"):
        attacks.fgsm([(model, -1.0)], x, y, eps=EPS)
    with pytest.raises(ValueError, match="integers"):
        attacks.fgsm(model, x, y.float(), eps=EPS)
    with pytest.raises(ValueError, match="norm must be"):
        attacks.pgd(model, x, y, eps=EPS, alpha=0.1, steps=1, norm="l1")
    with pytest.raises(ValueError, match="steps must be"):
        attacks.pgd(model, x, y, eps=EPS, alpha=0.1, steps=-1)
    with pytest.raises(ValueError, match="alpha must be"):
        attacks.pgd(model, x, y, eps=EPS, alpha=float("nan"), steps=1)
    with pytest.raises(ValueError, match=r"\(N, C, H, W\)"):
        attacks.one_pixel(model, x.flatten(1), y)


@pytest.mark.parametrize("attack,kw", [
    (attacks.pgd, dict(eps=EPS, alpha=0.03, steps=2)),
    (attacks.pgd, dict(eps=0.5, alpha=0.2, steps=2, norm="l2")),
    (attacks.fgsm, dict(eps=EPS, random_start=True)),
    (attacks.eot_pgd, dict(eps=EPS, alpha=0.03, steps=2, samples=2)),
    (attacks.one_pixel, dict(population=8, steps=2)),
])
def test_generator_repeatability(attack, kw, data):
    x, y = data
    model = tiny_cnn()
    first = attack(model, x, y, generator=torch.Generator().manual_seed(5), **kw)
    torch.manual_seed(123)  # the global RNG must not matter when a generator is given
    again = attack(model, x, y, generator=torch.Generator().manual_seed(5), **kw)
    other = attack(model, x, y, generator=torch.Generator().manual_seed(6), **kw)
    assert torch.equal(first, again)
    assert not torch.equal(first, other)


def test_random_transform_repeatable_and_differentiable(data):
    x, _ = data
    transform = attacks.RandomTransform()
    a = transform(x, torch.Generator().manual_seed(0))
    b = transform(x, torch.Generator().manual_seed(0))
    assert torch.equal(a, b) and a.shape == x.shape and float(a.min()) >= 0 and float(a.max()) <= 1
    leaf = x.clone().requires_grad_(True)
    transform(leaf, torch.Generator().manual_seed(0)).sum().backward()
    assert leaf.grad is not None and torch.isfinite(leaf.grad).all()
    still = attacks.RandomTransform(shift=0, blur=(0.0, 0.0), noise=0)(x)
    assert torch.allclose(still, x)


def test_ensemble_weights(data):
    x, y = data
    a, b = tiny_cnn(0), tiny_cnn(1)
    kw = dict(eps=EPS, alpha=0.03, steps=3, random_start=False)
    alone = attacks.pgd(a, x, y, **kw)
    assert torch.equal(attacks.pgd([a], x, y, **kw), alone)
    assert torch.equal(attacks.pgd([(a, 2.0), (b, 0.0)], x, y, **kw), alone)
    both = attacks.pgd([a, b], x, y, **kw)
    assert not torch.equal(both, alone)
    a.train()
    b.eval()
    attacks.fgsm([(a, 1.0), (b, 1.0)], x, y, eps=EPS)
    assert a.training and not b.training
    a.eval()
    logits = attacks.ensemble_logits([(a, 1.0), (b, 3.0)], x)
    assert torch.allclose(logits, 0.25 * a(x) + 0.75 * b(x), atol=1e-6)


def test_strength_untargeted_and_targeted(trained):
    model, x, y = trained
    clean = (model(x).argmax(1) == y).float().mean()
    assert clean > 0.95
    fgsm_acc = (model(attacks.fgsm(model, x, y, eps=0.1)).argmax(1) == y).float().mean()
    pgd_acc = (model(attacks.pgd(model, x, y, eps=0.1, alpha=0.02, steps=10)).argmax(1) == y
               ).float().mean()
    assert pgd_acc <= fgsm_acc < clean and pgd_acc < 0.2
    target = (y + 1) % 10
    adv = attacks.pgd(model, x, target, eps=0.2, alpha=0.03, steps=15, targeted=True)
    assert (model(adv).argmax(1) == target).float().mean() >= 0.95
    for attack in (attacks.mifgsm, attacks.fgvm):
        adv = attack(model, x, y, eps=0.1, steps=10, alpha=0.02)
        assert (model(adv).argmax(1) == y).float().mean() < 0.3, attack.__name__


def test_optimisation_attacks_succeed_small(trained):
    model, x, y = trained
    target = (y + 3) % 10
    adv = attacks.cw_l2(model, x, target, targeted=True, steps=30, lr=0.05,
                        search_steps=3)
    hit = model(adv).argmax(1) == target
    assert hit.float().mean() >= 0.9
    adv = attacks.szegedy(model, x, target, targeted=True, steps=30, lr=0.02, search_steps=3)
    hit = model(adv).argmax(1) == target
    assert hit.float().mean() >= 0.9


def test_cw_leaves_unreachable_images_unchanged(trained):
    model, x, y = trained
    adv = attacks.cw_l2(model, x, y, steps=0 + 1, lr=1e-6, search_steps=1)
    assert torch.equal(adv, x)


def test_pgd_early_stop_saves_passes(trained):
    model, x, y = trained
    kw = dict(eps=0.1, alpha=0.02, steps=10, generator=torch.Generator().manual_seed(0))
    full, stats_full = attacks.pgd_stats(model, x, y, **kw)
    kw["generator"] = torch.Generator().manual_seed(0)
    short, stats = attacks.pgd_stats(model, x, y, early_stop=True, **kw)
    assert stats_full.passes == stats_full.budget == 400 and stats_full.saved == 0
    assert stats.passes < stats.budget and 0 < stats.saved < 1
    fooled = lambda adv: (model(adv).argmax(1) != y).float().mean()  # noqa: E731
    assert fooled(short) >= fooled(full)


def test_one_pixel_black_box_changes_one_pixel(trained):
    model, x, y = trained
    adv = attacks.one_pixel(model, x[:4], y[:4], pixels=2, population=20, steps=5,
                            generator=torch.Generator().manual_seed(0))
    assert int((adv != x[:4]).flatten(1).sum(1).max()) <= 2
    p_clean = model(x[:4]).softmax(1).gather(1, y[:4, None])
    p_adv = model(adv).softmax(1).gather(1, y[:4, None])
    assert (p_adv <= p_clean + 1e-6).all()


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
@pytest.mark.parametrize("name,attack,kw,norm", ATTACKS, ids=IDS)
def test_cuda_stays_on_device(name, attack, kw, norm, data):
    x, y = data
    model = tiny_cnn().cuda()
    x, y = x.cuda(), y.cuda()
    adv = attack(model, x, y, **seeded(name, device="cuda"), **kw)
    assert adv.is_cuda and adv.dtype == x.dtype
    assert float(adv.min()) >= 0 and float(adv.max()) <= 1
    if norm is not None:
        assert float(distance(adv, x, norm).max()) <= kw["eps"] + 1e-6
    if name not in DETERMINISTIC:  # a CPU generator also works for CUDA tensors
        adv = attack(model, x, y, **kw, **seeded(name))
        assert adv.is_cuda


def test_eps_zero_is_identity(data):
    x, y = data
    model = tiny_cnn()
    assert torch.equal(attacks.pgd(model, x, y, eps=0.0, alpha=0.1, steps=2), x)
    assert math.isclose(float(attacks.fgsm(model, x, y, eps=0).sub(x).abs().max()), 0.0)


@pytest.mark.parametrize("name,attack,kw,norm", ATTACKS, ids=IDS)
def test_untargeted_by_default_and_reproducible_whatever_the_global_rng(name, attack, kw, norm,
                                                                        data):
    """The shared vocabulary, by behaviour: leaving ``targeted`` out is the same attack as
    ``targeted=False``, and a run is fixed by its seed alone -- its ``generator`` where the attack
    draws random numbers, nothing at all where it is deterministic (C&W, Szegedy) -- never by
    the global RNG."""
    x, y = data
    model = tiny_cnn()
    kw = {key: value for key, value in kw.items() if key != "targeted"}
    torch.manual_seed(1)
    default = attack(model, x, y, **seeded(name, 3), **kw)
    torch.manual_seed(2)
    explicit = attack(model, x, y, targeted=False, **seeded(name, 3), **kw)
    assert torch.equal(default, explicit), name
    aimed = attack(model, x, (y + 1) % 10, targeted=True, **seeded(name, 3), **kw)
    assert aimed.shape == x.shape and not aimed.requires_grad, name


def test_optimise_input_minimises_in_the_box():
    target = torch.full((3, 1, 4, 4), 1.5)   # outside the box: the optimum is its face, 1.0
    for space in ("box", "tanh"):
        x = attacks.optimise_input(lambda z, step: (z - target).pow(2).flatten(1).sum(1),
                                   torch.full((3, 1, 4, 4), 0.5), steps=200, lr=0.05, space=space)
        assert float(x.min()) >= 0 and float(x.max()) <= 1
        assert float(x.min()) > 0.95, space
    with pytest.raises(ValueError, match="space"):
        attacks.optimise_input(lambda z, s: z.sum(), torch.zeros(1, 1, 2, 2), steps=1, lr=0.1,
                               space="free")


def test_differential_evolution_finds_a_minimum():
    generator = torch.Generator().manual_seed(0)
    first = torch.rand(2, 20, 3, generator=generator) * 4 - 2
    optimum = torch.tensor([[0.5, -1.0, 1.5], [1.0, 1.0, -0.5]])

    def fitness(members):
        return (members - optimum[:, None]).pow(2).sum(-1)

    members, scores = attacks.differential_evolution(fitness, first, steps=60, low=-2, high=2,
                                                     crossover=0.7, generator=generator)
    best = members[torch.arange(2), scores.argmin(1)]
    assert torch.allclose(best, optimum, atol=0.05)
    with pytest.raises(ValueError, match="at least 4"):
        attacks.differential_evolution(fitness, first[:, :3], steps=1, low=-2, high=2)
