"""Unit tests of lecture 02's library code: utils.attribution, utils.fooling, utils.tables.

Untrained (seeded) models stand in for the zoo, so everything runs in a few seconds.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from utils import attribution, fooling, models
from utils.tables import format_table


@pytest.fixture
def lenet():
    torch.manual_seed(0)
    return models.fashion_lenet().eval()


@pytest.fixture
def resnet():
    torch.manual_seed(1)
    return models.fashion_resnet().eval()


@pytest.fixture
def images():
    return torch.rand(3, 1, 28, 28, generator=torch.Generator().manual_seed(0))


# --- the five architectures -------------------------------------------------------------------

@pytest.mark.parametrize("name", models.FASHION_ZOO)
def test_zoo_architectures_map_images_to_ten_logits(name):
    model = getattr(models, name)().eval()
    assert model(torch.rand(2, 1, 28, 28)).shape == (2, 10)
    assert sum(p.numel() for p in model.parameters()) * 4 < 2e6, "checkpoint must stay < 2 MB"


# --- Captum's attributions (the methods themselves are taught in lecture 02) ------------------

def test_captum_ig_of_a_linear_model_is_exact_and_complete():
    torch.manual_seed(0)
    linear = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(4, 2)).eval()
    x = torch.rand(1, 1, 2, 2)
    out = attribution.captum_attributions(linear, x, 1, methods=("ig",), ig_steps=3,
                                          ig_method="riemann_right")
    expected = (x.flatten() * linear[1].weight[1]).view_as(x)
    torch.testing.assert_close(out["ig"], expected)
    assert out["ig_delta"].abs().max() < 1e-5


@pytest.mark.parametrize("window,stride", [(6, 2), (5, 3)])
def test_occlusion_batch_changes_only_the_speed(lenet, images, window, stride):
    one, many = (attribution.captum_attributions(
        lenet, images, torch.tensor([1, 4, 9]), methods=("occlusion",), baseline=0.5,
        occlusion_window=window, occlusion_stride=stride, occlusion_batch=batch)["occlusion"]
        for batch in (1, 64))
    torch.testing.assert_close(one, many, rtol=1e-4, atol=1e-5)


def test_captum_attributions_restores_training_mode_and_checks_targets(resnet, images):
    resnet.train()
    attribution.captum_attributions(resnet, images, 1, methods=("ig",), ig_steps=2)
    assert resnet.training
    with pytest.raises(ValueError, match="target"):
        attribution.captum_attributions(resnet, images, torch.tensor([1, 2]), methods=("ig",))
    with pytest.raises(ValueError, match="unknown"):
        attribution.captum_attributions(resnet, images, 1, methods=("saliency",))


def test_captum_attributions_shapes_and_delta(lenet, images):
    torch.manual_seed(0)
    out = attribution.captum_attributions(lenet, images[:1], 3, ig_steps=32,
                                          internal_batch_size=16, smoothgrad_samples=2)
    for key in ("ig", "smoothgrad_sq", "occlusion"):
        assert out[key].shape == images[:1].shape
    assert (out["smoothgrad_sq"] >= 0).all()
    assert out["ig_delta"].shape == (1,)


def test_attribution_figure_draws_a_grid(lenet, images):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out = attribution.captum_attributions(lenet, images[:1], 3, ig_steps=8,
                                          internal_batch_size=8, smoothgrad_samples=2)
    fig = attribution.attribution_figure([images[0], images[0]], [out, out], ["a", "b"])
    assert len(fig.axes) >= 8
    plt.close(fig)


# --- the noise experiment and fooling images ---------------------------------------------------

def test_noise_batch_is_the_articles_wrapped_noise():
    batch = fooling.noise_batch(4, seed=3)
    assert batch.shape == (4, 1, 28, 28) and batch.dtype == torch.float32
    assert 0 <= batch.min() and batch.max() <= 1
    # the wrap-around makes N(0, 1) * 255 (mod 256) almost uniform over 0..255, not bell-shaped
    for lo in (0.0, 0.25, 0.5, 0.75):
        share = ((batch >= lo) & (batch < lo + 0.25)).float().mean()
        assert abs(share - 0.25) < 0.04


def test_describe_agrees_with_numpy():
    values = torch.tensor([0.3, 0.1, 0.9, 0.5, 0.7, 0.2])
    stats = fooling.describe(values)
    assert list(stats) == list(fooling.DESCRIBE_ROWS)
    array = values.double().numpy()
    assert stats["count"] == 6
    assert stats["std"] == pytest.approx(np.std(array, ddof=1))
    for key, q in (("25%", 25), ("50%", 50), ("75%", 75)):
        assert stats[key] == pytest.approx(np.percentile(array, q))
    assert (stats["min"], stats["max"]) == pytest.approx((0.1, 0.9))


def test_confidences_counts_and_agreement(lenet, images):
    confidence, predicted = fooling.confidences(lenet, images, batch_size=2)
    probs = torch.softmax(lenet(images), 1)
    torch.testing.assert_close(confidence, probs.max(1).values)
    assert fooling.class_counts(predicted).sum() == 3
    a = fooling.agreement_matrix([predicted, predicted, (predicted + 1) % 10])
    assert a.shape == (3, 3) and torch.all(a.diagonal() == 1) and a[0, 2] == 0


def test_fooling_images_reach_high_confidence_and_stay_in_the_box(lenet):
    targets = torch.arange(10)
    fooled = fooling.fooling_images(lenet, targets, steps=60, lr=0.1)
    assert fooled.shape == (10, 1, 28, 28)
    assert 0 <= fooled.min() and fooled.max() <= 1
    probs = torch.softmax(lenet(fooled), 1)
    assert (probs.argmax(1) == targets).all()
    assert all(p.requires_grad for p in lenet.parameters()), "requires_grad restored"
    success, confidence = fooling.transfer_matrix({"a": lenet, "b": lenet}, {"a": fooled,
                                                                             "b": fooled}, targets)
    assert success.shape == (2, 2) and torch.all(success == 1)
    with pytest.raises(ValueError):
        fooling.fooling_images(lenet, targets, start=torch.rand(3, 1, 28, 28))


# --- tables -----------------------------------------------------------------------------------

def test_format_table_aligns_and_checks_lengths():
    text = format_table({"net": [0.25, 1.0], "n": [3, 10]}, ["count", "mean"], floatfmt=".2f")
    lines = text.splitlines()
    assert lines[1].endswith("0.25   3") and lines[2].startswith("mean")
    with pytest.raises(ValueError):
        format_table({"a": [1], "b": [1, 2]})


# --- the ImageNet version: never downloads, runs on whatever weights are on disk ---------------

def test_imagenet_experiment_skips_without_weights(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path))
    assert fooling.imagenet_noise_experiment(n=2) is None
    assert "nothing is downloaded" in capsys.readouterr().out


def test_imagenet_experiment_uses_weights_on_disk(tmp_path, monkeypatch):
    import torchvision

    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path))
    path = fooling.imagenet_weight_files()["resnet18"]
    path.parent.mkdir(parents=True)
    torch.manual_seed(0)
    torch.save(torchvision.models.resnet18(weights=None).state_dict(), path)
    result = fooling.imagenet_noise_experiment(n=2, networks=["resnet18", "alexnet"])
    assert list(result) == ["resnet18"], "only the network whose weights are there"
    confidence, predicted, names = result["resnet18"]
    assert confidence.shape == (2,) and len(names) == 1000 and int(predicted.max()) < 1000
