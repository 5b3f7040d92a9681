"""Unit tests of utils.domain (lecture 04): the GRL, the schedules, the DANN step, the batches."""

from __future__ import annotations

import copy
import math

import pytest
import torch

from utils.domain import data, models
from utils.domain.grl import GradReverse, GradientReversal, grad_reverse, scale_gradient
from utils.domain.schedules import dann_lambda, dann_lr_factor
from utils.domain.step import dann_loss, dann_step, make_dann_step, run_in_order
from utils.training import fit

CUDA = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")


def _batch(n=6, m=5, generator_seed=0, device="cpu"):
    g = torch.Generator().manual_seed(generator_seed)
    xs = torch.rand(n, 3, 28, 28, generator=g)
    ys = torch.randint(10, (n,), generator=g)
    xt = torch.rand(m, 3, 28, 28, generator=g)
    return xs.to(device), ys.to(device), xt.to(device)


# --- gradient reversal ----------------------------------------------------------------------


@pytest.mark.parametrize("a, b", [(1.0, -0.5), (2.0, 3.0), (0.5, 0.0)])
def test_scale_gradient_scales_forward_and_backward_apart(a, b):
    x = torch.randn(3, 4, requires_grad=True)
    upstream = torch.randn(3, 4)
    y = scale_gradient(x, a, b)
    (grad,) = torch.autograd.grad(y, x, upstream)
    assert torch.allclose(y, a * x) and torch.allclose(grad, b * upstream)
    lam = torch.tensor(0.7, requires_grad=True)              # a scheduled lambda as a tensor
    (grad,) = torch.autograd.grad(scale_gradient(x, 1.0, -lam), x, upstream)
    assert torch.allclose(grad, -0.7 * upstream)
    assert lam.grad is None


def test_scale_gradient_passes_gradcheck_exactly_when_both_scales_agree():
    x = torch.randn(3, 4, dtype=torch.double, requires_grad=True)
    assert torch.autograd.gradcheck(lambda t: scale_gradient(t, 1.5, 1.5), (x,))
    assert not torch.autograd.gradcheck(lambda t: scale_gradient(t, 1.0, -1.5), (x,),
                                        raise_exception=False)
    with pytest.raises(ValueError):
        scale_gradient(x, "1", 1.0)



@pytest.mark.parametrize("lambda_", [0.0, 0.3, 1.0, 2.5])
@pytest.mark.parametrize("shape", [(4,), (2, 3), (2, 3, 5, 5)])
def test_grad_reverse_is_identity_forward_and_minus_lambda_backward(lambda_, shape):
    x = torch.randn(shape, requires_grad=True)
    upstream = torch.randn(shape)
    y = grad_reverse(x, lambda_)
    assert torch.equal(y, x) and y is not x
    (grad,) = torch.autograd.grad(y, x, upstream)
    assert torch.allclose(grad, -lambda_ * upstream)


def test_gradcheck_fails_on_the_raw_layer_and_passes_on_its_definition():
    x = torch.randn(3, 4, dtype=torch.double, requires_grad=True)
    # the raw GRL lies about its gradient on purpose: finite differences see the identity
    assert not torch.autograd.gradcheck(lambda t: grad_reverse(t, 0.7), (x,), raise_exception=False)
    # shift the forward value to -0.7 x without touching the gradient: now they must agree
    assert torch.autograd.gradcheck(lambda t: grad_reverse(t, 0.7) + (-1.7 * t).detach(), (x,))


def test_layer_follows_its_lambda_and_tensor_lambda_works():
    layer = GradientReversal(0.5)
    x = torch.ones(3, requires_grad=True)
    layer(x).sum().backward()
    assert torch.allclose(x.grad, torch.full((3,), -0.5))
    x.grad = None
    grad_reverse(x, torch.tensor(2.0)).sum().backward()
    assert torch.allclose(x.grad, torch.full((3,), -2.0))
    assert GradReverse.apply(x, 1.0).shape == x.shape


@pytest.mark.parametrize("bad", ["0.5", None, True, [1.0], float("nan"), -0.1, math.inf,
                                 torch.ones(2), torch.tensor(1)])
def test_bad_lambda_is_a_value_error(bad):
    with pytest.raises(ValueError, match="lambda_"):
        grad_reverse(torch.ones(2), bad)


def test_bad_input_is_a_value_error():
    with pytest.raises(ValueError, match="floating-point tensor"):
        grad_reverse([1.0, 2.0], 1.0)
    with pytest.raises(ValueError, match="floating-point tensor"):
        grad_reverse(torch.ones(2, dtype=torch.int64), 1.0)


# --- schedules -----------------------------------------------------------------------------


def test_schedules_follow_the_paper():
    assert dann_lambda(0.0) == 0.0
    assert abs(dann_lambda(1.0) - (2 / (1 + math.exp(-10)) - 1)) < 1e-12
    assert dann_lambda(0.5, lambda_max=0.3) == pytest.approx(0.3 * (2 / (1 + math.exp(-5)) - 1))
    assert dann_lr_factor(0.0) == 1.0
    assert dann_lr_factor(1.0) == pytest.approx(11 ** -0.75)
    ps = [i / 20 for i in range(21)]
    assert all(a < b for a, b in zip(map(dann_lambda, ps), map(dann_lambda, ps[1:])))
    assert all(a > b for a, b in zip(map(dann_lr_factor, ps), map(dann_lr_factor, ps[1:])))


@pytest.mark.parametrize("bad", [-0.1, 1.5, "0.5", None, True])
def test_schedules_reject_a_progress_outside_0_1(bad):
    with pytest.raises(ValueError, match="share of training"):
        dann_lambda(bad)
    with pytest.raises(ValueError, match="share of training"):
        dann_lr_factor(bad)


# --- the DANN step -------------------------------------------------------------------------


def _step_twice(lambda_, seed=0):
    torch.manual_seed(seed)
    model = models.tiny_dann_net()
    optimiser = torch.optim.SGD(model.parameters(), lr=0.1)
    first = dann_step(model, optimiser, _batch(), lambda_)
    return model, first


def test_dann_step_is_repeatable_and_changes_every_part():
    model_a, metrics_a = _step_twice(0.5)
    model_b, metrics_b = _step_twice(0.5)
    for pa, pb in zip(model_a.parameters(), model_b.parameters()):
        assert torch.equal(pa, pb)
    assert metrics_a.keys() >= {"label_loss", "domain_loss", "label_acc", "domain_acc"}
    torch.manual_seed(0)
    fresh = models.tiny_dann_net()
    for part in ("features", "classifier", "domain"):
        before = torch.cat([p.flatten() for p in getattr(fresh, part).parameters()])
        after = torch.cat([p.flatten() for p in getattr(model_a, part).parameters()])
        assert not torch.equal(before, after), f"{part} did not move"


def _gradients(model, lambda_):
    model.zero_grad()
    loss, _ = dann_loss(model, _batch(), lambda_)
    loss.backward()
    return {name: p.grad.clone() for name, p in model.named_parameters()}


def test_reversal_only_touches_the_feature_extractor_and_is_linear_in_lambda():
    torch.manual_seed(0)
    model = models.tiny_dann_net().train()
    g0, g1, g2 = (_gradients(model, lam) for lam in (0.0, 1.0, 2.0))
    for name in g0:
        if name.startswith("features."):
            assert torch.allclose(g2[name] - g1[name], g1[name] - g0[name], atol=1e-6), name
        else:  # label and domain heads do not see lambda
            assert torch.allclose(g0[name], g2[name], atol=1e-7), name
    changed = [n for n in g0 if n.startswith("features.") and not torch.allclose(g0[n], g1[n])]
    assert changed, "the domain loss must reach the feature extractor when lambda > 0"


def test_dann_step_rejects_mismatched_batches():
    model = models.tiny_dann_net()
    optimiser = torch.optim.SGD(model.parameters(), lr=0.1)
    xs, ys, xt = _batch()
    with pytest.raises(ValueError, match="same C, H, W"):
        dann_step(model, optimiser, (xs[:, :1], ys, xt), 1.0)
    with pytest.raises(ValueError, match="one per source image"):
        dann_step(model, optimiser, (xs, ys[:-1], xt), 1.0)
    with pytest.raises(ValueError, match="tuple"):
        dann_step(model, optimiser, (xs, ys), 1.0)
    with pytest.raises(ValueError, match="lambda_"):
        dann_step(model, optimiser, (xs, ys, xt), "1")


def test_make_dann_step_runs_under_fit_and_follows_the_schedule():
    torch.manual_seed(0)
    model = models.tiny_dann_net()
    optimiser = torch.optim.SGD(model.parameters(), lr=0.05)
    batches = [_batch(generator_seed=i) for i in range(4)]
    history = fit(make_dann_step(model, optimiser), batches, steps=4, progress=False)
    assert history["lambda"] == pytest.approx([dann_lambda(i / 4) for i in range(4)])
    assert len(history["domain_acc"]) == 4


# --- models and data -----------------------------------------------------------------------


def test_models_take_grey_and_colour_images_and_reject_others():
    model = models.tiny_dann_net().eval()
    grey = torch.rand(2, 1, 28, 28)
    assert torch.allclose(model(grey), model(grey.expand(-1, 3, -1, -1)))
    with pytest.raises(ValueError, match="N, 1 or 3"):
        model(torch.rand(2, 2, 28, 28))
    with pytest.raises(ValueError, match="N, 1 or 3"):
        data.to_rgb(torch.rand(2, 28, 28))


def test_zoo_architecture_is_under_two_megabytes():
    params = sum(p.numel() for p in models.domain_net().parameters())
    assert params * 4 < 2e6


def test_paired_batches_are_balanced_and_cycle_the_target():
    xs, ys = torch.rand(10, 3, 4, 4), torch.arange(10)
    xt = torch.rand(4, 3, 4, 4)
    batches = data.PairedBatches(xs, ys, xt, batch_size=2, seed=1)
    seen = list(batches)
    assert len(seen) == len(batches) == 5
    assert all(b[0].shape == b[2].shape == (2, 3, 4, 4) for b in seen)
    assert torch.equal(torch.cat([b[1] for b in seen]).sort().values, ys)
    with pytest.raises(ValueError, match="to_rgb"):
        data.PairedBatches(xs, ys, torch.rand(4, 1, 4, 4), batch_size=2)


def test_label_shift_keeps_the_asked_shares():
    labels = torch.arange(10).repeat(1000)
    images = torch.zeros(len(labels), 1, 1, 1)
    _, kept = data.label_shifted(images, labels, {0: 0.1, 1: 0.0}, seed=0)
    counts = torch.bincount(kept, minlength=10)
    assert counts[1] == 0 and 60 < counts[0] < 140 and (counts[2:] == 1000).all()
    with pytest.raises(ValueError, match="share"):
        data.label_shifted(images, labels, {0: 1.5})


# --- device --------------------------------------------------------------------------------


@CUDA
def test_step_stays_on_the_gpu():
    torch.manual_seed(0)
    model = models.tiny_dann_net().cuda()
    optimiser = torch.optim.SGD(model.parameters(), lr=0.1)
    metrics = dann_step(model, optimiser, _batch(device="cuda"), torch.tensor(0.5, device="cuda"))
    assert metrics["domain_loss"].device.type == "cuda"
    x = torch.randn(3, device="cuda", requires_grad=True)
    grad_reverse(x, 0.5).sum().backward()
    assert x.grad.device.type == "cuda"


# --- recipes (a few steps on the real data) ---------------------------------------------------


def test_recipes_train_a_few_steps_and_are_repeatable():
    from utils.domain import recipes

    def run():
        model = models.tiny_dann_net()
        history = recipes.train_dann(model, "cpu", steps=3, batch_size=8, seed=3, progress=False)
        return model, history

    (a, history), (b, _) = run(), run()
    assert len(history["domain_acc"]) == 3 and not a.training
    for pa, pb in zip(a.parameters(), b.parameters()):
        assert torch.equal(pa, pb), "same seed, same model"
    x, y = data.source("test")
    sup = models.tiny_dann_net()
    recipes.train_supervised(sup, "cpu", x[:64], y[:64], steps=2, batch_size=16, progress=False)
    assert not sup.training


def test_zoo_lists_the_lecture_04_entries_without_importing_the_topic():
    import subprocess
    import sys

    code = ("import sys; from utils import zoo; names = sorted(n for n in zoo.REGISTRY if n.startswith('domain_')); "
            "print(names); assert 'utils.domain' not in sys.modules")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert "domain_dann" in out.stdout and "domain_oracle" in out.stdout


def test_domain_weights_count_each_domain_apart():
    model = models.tiny_dann_net()
    xs, ys, xt = _batch(n=6, m=6)
    plain, _ = dann_loss(model, (xs, ys, xt), 1.0)
    balanced, _ = dann_loss(model, (xs, ys, xt), 1.0, domain_weights=(0.5, 0.5))
    assert torch.allclose(plain, balanced)          # equal counts: the same loss
    xs, ys, xt = _batch(n=2, m=10)
    _, m_plain = dann_loss(model, (xs, ys, xt), 1.0)
    _, m_w = dann_loss(model, (xs, ys, xt), 1.0, domain_weights=(0.3, 0.7))
    model.train()
    logits = model.domain(model.features(torch.cat([xs, xt]))).squeeze(1)
    d = torch.cat([torch.zeros(2), torch.ones(10)])
    each = torch.nn.functional.binary_cross_entropy_with_logits(logits, d, reduction="none")
    assert torch.allclose(m_w["domain_loss"], 0.3 * each[:2].mean() + 0.7 * each[2:].mean())
    assert torch.allclose(m_plain["domain_loss"], each.mean())


def test_run_in_order_is_repeatable_and_source_only_leaves_the_domain_head():
    torch.manual_seed(0)
    init = models.tiny_dann_net().state_dict()
    xs, ys, xt = _batch(n=12, m=12)
    states = []
    for adapt in (True, True, False):
        net = models.tiny_dann_net()
        net.load_state_dict(init)
        states.append(run_in_order(net, xs, ys, xt, batch_size=4, lr=0.05, adapt=adapt))
        assert not net.training
    assert all(torch.equal(states[0][k], states[1][k]) for k in states[0])
    assert all(torch.equal(states[2][k], init[k]) for k in init if k.startswith("domain"))
    assert any(not torch.equal(states[0][k], init[k]) for k in init if k.startswith("domain"))
    with pytest.raises(ValueError):
        run_in_order(models.tiny_dann_net(), xs, ys, xt[:4], batch_size=4, lr=0.05)
    net = models.tiny_dann_net()
    net.load_state_dict(init)
    adam = run_in_order(net, xs, ys, xt, batch_size=4, lr=0.05, optimiser="adam")
    assert any(not torch.allclose(adam[k], states[0][k]) for k in adam if "weight" in k)


def test_joint_training_without_reversal_flips_the_features_domain_gradient():
    """reverse=False: the same losses, and the domain loss reaches G_f with the opposite sign."""
    batch = _batch(n=4, m=4)
    model = models.tiny_dann_net()
    model.train()
    first = next(model.features.parameters())
    head = next(model.domain.parameters())
    grads, losses = {}, {}
    for reverse in (True, False):
        loss, _ = dann_loss(model, batch, 0.7, reverse=reverse)
        losses[reverse] = loss.detach()
        grads[reverse] = torch.autograd.grad(loss, [first, head])
    assert torch.equal(losses[True], losses[False])
    assert torch.allclose(grads[True][1], grads[False][1]), "G_d learns the same either way"
    model.zero_grad()
    xs, ys, _ = batch
    label_loss = torch.nn.functional.cross_entropy(model(torch.cat([xs, batch[2]]))[:4], ys)
    (g_label,) = torch.autograd.grad(label_loss, first)
    assert torch.allclose(grads[True][0] + grads[False][0], 2 * g_label, atol=1e-6)
    assert not torch.allclose(grads[True][0], grads[False][0]), "the domain part changes sign"


def test_inverted_target_and_fine_tuning_keep_what_they_should():
    from utils.domain import recipes

    images, labels = data.target_inverted("test")
    source, source_labels = data.source("test")
    assert torch.equal(labels, source_labels) and torch.allclose(images, 1 - source)
    model = models.tiny_dann_net()
    before = copy.deepcopy(model.state_dict())
    recipes.train_supervised(model, "cpu", source[:32], source_labels[:32], steps=1, batch_size=16,
                             fresh=False, lr=0.0, progress=False)
    weights = [k for k in before if "running" not in k and "num_batches" not in k]
    assert all(torch.equal(before[k], model.state_dict()[k]) for k in weights), (
        "fresh=False with lr 0 keeps the given weights (no re-initialisation)"
    )
