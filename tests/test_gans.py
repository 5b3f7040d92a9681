"""Unit tests of utils.gans (lecture 05): tiny models, a few steps, seconds in all."""

from __future__ import annotations

import copy
import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from utils.gans import losses, metrics, models, pix2pix, steps
from utils.training import Batches, fit

cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")


@pytest.fixture
def tiny_gan() -> models.DCGAN:
    torch.manual_seed(0)
    return models.DCGAN(latent_dim=4, g_width=4, d_width=4)


def _params(module: nn.Module) -> list[torch.Tensor]:
    return [p.detach().clone() for p in module.parameters()]


def _same(a: list[torch.Tensor], b: list[torch.Tensor]) -> bool:
    return all(torch.equal(x, y) for x, y in zip(a, b))


# --------------------------------------------------------------------------------------------
# models


def test_generator_makes_images_in_the_unit_box(tiny_gan):
    z = models.latent(5, 4, generator=torch.Generator().manual_seed(0))
    images = models.generate(tiny_gan, z)
    assert images.shape == (5, 1, 28, 28)
    assert images.min() >= 0 and images.max() <= 1
    assert tiny_gan.discriminator(images).shape == (5,)


def test_generate_restores_the_mode_and_sample_is_seeded(tiny_gan):
    tiny_gan.train()
    first = models.sample(tiny_gan, 3, generator=torch.Generator().manual_seed(1))
    again = models.sample(tiny_gan, 3, generator=torch.Generator().manual_seed(1))
    assert torch.equal(first, again)
    assert tiny_gan.generator.training, "generate() puts the generator back in training mode"


def test_bad_shapes_are_value_errors(tiny_gan):
    with pytest.raises(ValueError, match="latent"):
        tiny_gan.generator(torch.zeros(2, 5))
    with pytest.raises(ValueError, match="28, 28"):
        tiny_gan.discriminator(torch.zeros(2, 3, 28, 28))
    with pytest.raises(ValueError, match="DCGAN or a Generator"):
        models.sample(nn.Linear(2, 2), 3)
    with pytest.raises(ValueError, match="non-negative"):
        models.latent(-1, 4)
    with pytest.raises(ValueError, match="positive"):
        models.Generator(latent_dim=0)


def test_zoo_builders_fit_in_two_megabytes():
    assert models.checkpoint_megabytes(models.dcgan()) < 2.0
    assert models.checkpoint_megabytes(models.small_dcgan()) < 2.0
    assert models.checkpoint_megabytes(pix2pix.deblur_generator()) < 2.0


def test_interpolation_ends_at_the_codes_and_slerp_keeps_the_norm():
    g = torch.Generator().manual_seed(0)
    z0, z1 = torch.randn(16, generator=g), torch.randn(16, generator=g)
    for spherical in (True, False):
        path = models.interpolate(z0, z1, torch.linspace(0, 1, 5), spherical=spherical)
        assert path.shape == (5, 16)
        assert torch.allclose(path[0], z0, atol=1e-5) and torch.allclose(path[-1], z1, atol=1e-5)
    a, b = torch.tensor([1.0, 0.0]), torch.tensor([0.0, 1.0])
    mid = models.interpolate(a, b, [0.5])[0]
    assert math.isclose(mid.norm().item(), 1.0, rel_tol=1e-5), "slerp stays on the circle"
    assert math.isclose(models.interpolate(a, b, [0.5], spherical=False)[0].norm().item(),
                        math.sqrt(0.5), rel_tol=1e-5)
    with pytest.raises(ValueError, match="same shape"):
        models.interpolate(a, torch.zeros(3), [0.5])


# --------------------------------------------------------------------------------------------
# losses


def test_discriminator_loss_is_the_log_loss_of_a_real_vs_fake_classifier():
    real, fake = torch.tensor([2.0, -1.0, 0.5]), torch.tensor([-3.0, 0.2])
    expected = (F.binary_cross_entropy_with_logits(real, torch.ones(3))
                + F.binary_cross_entropy_with_logits(fake, torch.zeros(2)))
    assert torch.allclose(losses.discriminator_loss(real, fake), expected)
    right = losses.discriminator_loss(torch.full((4,), 3.0), torch.full((4,), -3.0))
    wrong = losses.discriminator_loss(torch.full((4,), -3.0), torch.full((4,), 3.0))
    assert right < 0.1 < 6 < wrong


def test_generator_losses_and_their_gradients_through_the_sigmoid():
    logits = torch.tensor([-8.0, -2.0, 0.0, 3.0], requires_grad=True)
    d = torch.sigmoid(logits)
    minimax = losses.generator_loss(logits, "minimax")
    assert torch.allclose(minimax, torch.log(1 - d).mean())
    (grad,) = torch.autograd.grad(minimax, logits)
    assert torch.allclose(grad, -d.detach() / 4), "minimax: -D/n, which vanishes as D -> 0"
    ns = losses.generator_loss(logits, "non_saturating")
    assert torch.allclose(ns, -torch.log(d).mean())
    (grad,) = torch.autograd.grad(ns, logits)
    assert torch.allclose(grad, -(1 - d.detach()) / 4), "non-saturating: -(1-D)/n -> -1/n"


def test_losses_stay_finite_at_extreme_logits():
    big = torch.tensor([-200.0, 200.0])
    for value in (losses.discriminator_loss(big, big), losses.generator_loss(big, "minimax"),
                  losses.generator_loss(big, "non_saturating")):
        assert torch.isfinite(value)


def test_hinge_and_least_squares_losses_by_their_formulas():
    real, fake = torch.tensor([2.0, 0.3, -1.0]), torch.tensor([-3.0, -0.5, 0.4, 1.5])
    hinge_d = losses.discriminator_loss(real, fake, "hinge")
    assert torch.allclose(hinge_d, (1 - real).clamp(min=0).mean() + (1 + fake).clamp(min=0).mean())
    assert losses.discriminator_loss(torch.full((3,), 1.5), torch.full((3,), -1.5), "hinge") == 0, (
        "beyond the margins D's hinge loss is zero"
    )
    assert torch.allclose(losses.generator_loss(fake, "hinge"), -fake.mean())
    ls_d = losses.discriminator_loss(real, fake, "least_squares")
    assert torch.allclose(ls_d, 0.5 * ((real - 1) ** 2).mean() + 0.5 * (fake ** 2).mean())
    assert torch.allclose(losses.generator_loss(fake, "least_squares"),
                          0.5 * ((fake - 1) ** 2).mean())
    assert losses.discriminator_loss(real, fake) == losses.discriminator_loss(real, fake, "log")
    assert [losses.d_loss_kind(k) for k in losses.GAN_LOSSES] == [
        "log", "log", "hinge", "least_squares"]
    with pytest.raises(ValueError, match="kind"):
        losses.discriminator_loss(real, fake, "minimax")
    with pytest.raises(ValueError, match="loss"):
        losses.d_loss_kind("wasserstein")


def test_hinge_steps_move_each_player_only(tiny_gan):
    G, D = tiny_gan.generator, tiny_gan.discriminator
    opt_G, opt_D = steps.gan_optimisers(tiny_gan, lr=1e-2)
    real = torch.rand(6, 1, 28, 28, generator=torch.Generator().manual_seed(0))
    z = torch.randn(6, 4, generator=torch.Generator().manual_seed(1))
    G.train(), D.train()
    with torch.no_grad():
        expected = losses.discriminator_loss(D(real), D(G(z)), "hinge")
    g_before = _params(G)
    out = steps.d_step(G, D, opt_D, real, z, "hinge")
    assert torch.allclose(out["loss_d"], expected, atol=1e-6)
    assert _same(_params(G), g_before) and all(p.grad is None for p in G.parameters())
    d_before = _params(D)
    steps.g_step(G, D, opt_G, z, "hinge")
    assert _same(_params(D), d_before) and not _same(_params(G), g_before)
    with pytest.raises(ValueError, match="kind"):
        steps.d_step(G, D, opt_D, real, z, "non_saturating")


def test_loss_inputs_are_checked():
    with pytest.raises(ValueError, match="kind"):
        losses.generator_loss(torch.zeros(2), "wasserstein")
    with pytest.raises(ValueError, match="float"):
        losses.discriminator_loss(torch.zeros(2, dtype=torch.long), torch.zeros(2))
    with pytest.raises(ValueError, match="empty"):
        losses.generator_loss(torch.zeros(0))


# --------------------------------------------------------------------------------------------
# steps


def test_d_step_moves_only_d_and_g_step_moves_only_g(tiny_gan):
    G, D = tiny_gan.generator, tiny_gan.discriminator
    opt_G, opt_D = steps.gan_optimisers(tiny_gan, lr=1e-2)
    real = torch.rand(6, 1, 28, 28, generator=torch.Generator().manual_seed(0))
    z = torch.randn(6, 4, generator=torch.Generator().manual_seed(1))
    g_before, d_before = _params(G), _params(D)
    out = steps.d_step(G, D, opt_D, real, z)
    assert set(out) == {"loss_d", "d_real", "d_fake"} and out["loss_d"].dim() == 0
    assert _same(_params(G), g_before) and not _same(_params(D), d_before)
    assert all(p.grad is None for p in G.parameters())
    for loss in ("minimax", "non_saturating"):
        d_before, g_before = _params(D), _params(G)
        for p in D.parameters():
            p.grad = None
        out = steps.g_step(G, D, opt_G, z, loss)
        assert set(out) == {"loss_g", "d_fake_g"}
        assert _same(_params(D), d_before) and not _same(_params(G), g_before)
        assert all(p.grad is None for p in D.parameters()), "D gets no gradient in G's step"


def test_g_step_raises_d_of_g_and_d_step_separates(tiny_gan):
    G, D = tiny_gan.generator, tiny_gan.discriminator
    opt_G, opt_D = steps.gan_optimisers(tiny_gan, lr=1e-2)
    real = torch.rand(16, 1, 28, 28, generator=torch.Generator().manual_seed(0))
    z = torch.randn(16, 4, generator=torch.Generator().manual_seed(1))
    first = steps.d_step(G, D, opt_D, real, z)["loss_d"]
    for _ in range(4):
        last = steps.d_step(G, D, opt_D, real, z)["loss_d"]
    assert last < first, "D's log-loss falls on a fixed batch"
    before = steps.g_step(G, D, opt_G, z)["d_fake_g"]
    for _ in range(4):
        after = steps.g_step(G, D, opt_G, z)["d_fake_g"]
    assert after > before, "G's steps raise D(G(z)) on a fixed z"


def test_gan_step_through_fit_is_repeatable(tiny_gan):
    images = torch.rand(40, 1, 28, 28, generator=torch.Generator().manual_seed(0))
    runs = []
    for _ in range(2):
        gan = copy.deepcopy(tiny_gan)
        history = steps.train_gan(gan, images, steps=3, batch_size=8, seed=5, progress=False)
        runs.append((history, _params(gan)))
        assert not gan.training, "train_gan leaves the players in eval mode"
    assert set(runs[0][0]) == {"loss_d", "d_real", "d_fake", "loss_g", "d_fake_g"}
    assert len(runs[0][0]["loss_d"]) == 3
    assert runs[0][0] == runs[1][0] and _same(runs[0][1], runs[1][1])
    with pytest.raises(ValueError, match="loss"):
        steps.gan_step(tiny_gan, None, None, loss="wasserstein")
    with pytest.raises(ValueError, match="DCGAN"):
        steps.gan_step(nn.Linear(2, 2), None, None)
    with pytest.raises(ValueError, match="28, 28"):
        steps.train_gan(tiny_gan, torch.rand(4, 3, 28, 28), steps=1)


# --------------------------------------------------------------------------------------------
# metrics


def test_frechet_distance_matches_the_closed_form():
    g = torch.Generator().manual_seed(0)
    a = torch.randn(4000, 3, generator=g, dtype=torch.float64)
    b = torch.randn(4000, 3, generator=g, dtype=torch.float64) * 2 + 1
    mu_a, mu_b = a.mean(0), b.mean(0)
    cov_a, cov_b = torch.cov(a.T), torch.cov(b.T)
    # closed form via scipy's sqrtm
    scipy_linalg = pytest.importorskip("scipy.linalg")
    root = scipy_linalg.sqrtm((cov_a @ cov_b).numpy()).real
    expected = ((mu_a - mu_b) ** 2).sum() + torch.trace(cov_a + cov_b) - 2 * float(root.trace())
    value = metrics.frechet_distance(a, b)
    assert math.isclose(value.item(), expected.item(), rel_tol=1e-6)
    assert math.isclose(value.item(), metrics.frechet_distance(b, a).item(), rel_tol=1e-6)
    assert abs(metrics.frechet_distance(a, a).item()) < 1e-8


def test_frechet_distance_is_stable_for_rank_deficient_features():
    g = torch.Generator().manual_seed(0)
    a = torch.randn(50, 3, generator=g) @ torch.randn(3, 20, generator=g)   # rank 3 in 20-d
    value = metrics.frechet_distance(a, a + 0.01)
    assert torch.isfinite(value) and value.item() >= -1e-6
    assert math.isclose(value.item(), 20 * 0.01 ** 2, abs_tol=1e-5), "a shift adds |d mu|^2 only"


def test_metric_inputs_are_checked(tiny_classifier):
    with pytest.raises(ValueError, match="at least 2"):
        metrics.frechet_distance(torch.zeros(1, 3), torch.zeros(5, 3))
    with pytest.raises(ValueError, match="feature sizes"):
        metrics.frechet_distance(torch.zeros(3, 3), torch.zeros(3, 4))
    with pytest.raises(ValueError, match="nn.Sequential"):
        metrics.penultimate(nn.Linear(3, 3))
    with pytest.raises(ValueError, match="float tensor"):
        metrics.features(tiny_classifier, torch.zeros(2, 64))
    with pytest.raises(ValueError, match="between 2 and 5000"):
        metrics.evaluate_generator(models.small_dcgan(), n=10_000)


def test_coverage_and_features(tiny_classifier):
    images = torch.rand(30, 1, 8, 8, generator=torch.Generator().manual_seed(0))
    shares = metrics.class_coverage(tiny_classifier, images, num_classes=3, batch_size=7)
    assert shares.shape == (3,) and math.isclose(shares.sum().item(), 1.0, rel_tol=1e-6)
    assert metrics.features(tiny_classifier, images, batch_size=7).shape == (30, 16)


def test_sharpness_falls_with_blur():
    images = torch.rand(8, 1, 28, 28, generator=torch.Generator().manual_seed(0))
    blurred = pix2pix.blur(images, 1.0)
    assert (metrics.laplacian_variance(blurred) < metrics.laplacian_variance(images)).all()
    assert (metrics.gradient_energy(blurred) < metrics.gradient_energy(images)).all()
    report = metrics.sharpness_report(blurred, images)
    assert report["laplacian_ratio"] < 0.2 and report["l1"] > 0
    assert metrics.sharpness_report(images, images)["laplacian_ratio"] == pytest.approx(1.0)


def test_precision_recall_tell_copies_from_a_spread_out_sample():
    g = torch.Generator().manual_seed(0)
    real = torch.randn(300, 5, generator=g, dtype=torch.float64)
    same = torch.randn(300, 5, generator=g, dtype=torch.float64)
    copies = real[:3].repeat(100, 1)                       # three real points, over and over
    shifted = same + 6.0                                   # far from every real point
    fair = metrics.precision_recall(real, same)
    assert fair["precision"] > 0.8 and fair["recall"] > 0.8
    copied = metrics.precision_recall(real, copies)
    assert copied["precision"] == 1.0 and copied["recall"] < 0.05
    assert metrics.precision_recall(real, shifted) == {"precision": 0.0, "recall": 0.0}
    radii = metrics.knn_radii(real, 1)
    nearest = torch.cdist(real, real).fill_diagonal_(float("inf")).min(1).values
    assert torch.allclose(radii, nearest)
    with pytest.raises(ValueError, match="k must be"):
        metrics.knn_radii(real, 300)


def test_total_variation_and_paired_fid_bootstrap():
    a, b = torch.tensor([0.5, 0.5, 0.0]), torch.tensor([0.0, 0.5, 0.5])
    assert metrics.total_variation(a, b) == pytest.approx(0.5)
    assert metrics.total_variation(a, a) == 0.0
    with pytest.raises(ValueError, match="share vectors"):
        metrics.total_variation(a, torch.ones(2))
    g = torch.Generator().manual_seed(1)
    reference = torch.randn(400, 3, generator=g, dtype=torch.float64)
    close = torch.randn(400, 3, generator=g, dtype=torch.float64)
    far = close + 1.0
    diffs = metrics.fid_difference_bootstrap(reference, far, close, resamples=20)
    assert diffs.shape == (20,) and (diffs > 0).all()       # y = close is nearer: positive
    with pytest.raises(ValueError, match="paired"):
        metrics.fid_difference_bootstrap(reference, far, close[:10])


# --------------------------------------------------------------------------------------------
# pix2pix


def test_unsharp_mask_sharpens_and_its_amount_hits_a_target():
    images = pix2pix.blur(torch.rand(6, 1, 28, 28, generator=torch.Generator().manual_seed(2)))
    assert torch.equal(pix2pix.unsharp_mask(images, 0.0), images.clamp(0, 1))
    sharper = pix2pix.unsharp_mask(images, 2.0)
    assert sharper.min() >= 0 and sharper.max() <= 1
    assert metrics.laplacian_variance(sharper).mean() > metrics.laplacian_variance(images).mean()
    target = 3 * metrics.laplacian_variance(images).mean().item()
    amount = pix2pix.unsharp_amount_for(images, target)
    reached = metrics.laplacian_variance(pix2pix.unsharp_mask(images, amount)).mean().item()
    assert 0 < amount < 64 and reached == pytest.approx(target, rel=1e-3)
    assert pix2pix.unsharp_amount_for(images, 0.0) == 0.0
    with pytest.raises(ValueError, match="amount"):
        pix2pix.unsharp_mask(images, -1.0)


def test_blur_keeps_constants_and_checks_sigma():
    flat = torch.full((2, 1, 28, 28), 0.3)
    assert torch.allclose(pix2pix.blur(flat), flat, atol=1e-6)
    assert math.isclose(pix2pix.gaussian_kernel(1.5).sum().item(), 1.0, rel_tol=1e-6)
    for bad in (0, -1.0, float("nan")):
        with pytest.raises(ValueError, match="sigma"):
            pix2pix.blur(flat, bad)
    with pytest.raises(ValueError, match="too large"):
        pix2pix.blur(flat, 20.0)


def test_pix2pix_step_with_and_without_discriminator():
    torch.manual_seed(0)
    G, D = pix2pix.DeblurNet(4), pix2pix.PatchDiscriminator(4)
    sharp = torch.rand(8, 1, 28, 28, generator=torch.Generator().manual_seed(0))
    assert G(pix2pix.blur(sharp)).shape == sharp.shape
    assert D(sharp, sharp).shape == (8, 1, 7, 7)
    opt_G = torch.optim.Adam(G.parameters(), lr=1e-3)
    opt_D = torch.optim.Adam(D.parameters(), lr=1e-3)
    data = Batches(sharp, batch_size=4, transform=lambda b, g: pix2pix.deblur_pairs(b[0]))
    d_before = _params(D)
    history = fit(pix2pix.pix2pix_step(G, None, opt_G), data, steps=2, progress=False)
    assert set(history) == {"l1"} and _same(_params(D), d_before)
    history = fit(pix2pix.pix2pix_step(G, D, opt_G, opt_D), data, steps=2, progress=False)
    assert {"l1", "loss_d", "adv_g"} <= set(history) and not _same(_params(D), d_before)
    with pytest.raises(ValueError, match="opt_D"):
        pix2pix.pix2pix_step(G, D, opt_G)
    with pytest.raises(ValueError, match=">= 0"):
        pix2pix.pix2pix_step(G, None, opt_G, l1_weight=-1)


def test_zoo_lists_the_lecture_05_entries():
    from utils import zoo

    for name in ("gan_dcgan", "gan_deblur_l1", "gan_deblur_adv"):
        entry = zoo.entry(name)
        assert models.checkpoint_megabytes(entry.new_model()) < 2.0


# --------------------------------------------------------------------------------------------
# device


@cuda
def test_steps_keep_everything_on_the_gpu(tiny_gan):
    gan = tiny_gan.to("cuda")
    images = torch.rand(16, 1, 28, 28, device="cuda")
    history = steps.train_gan(gan, images, steps=2, batch_size=8, progress=False)
    assert len(history["loss_g"]) == 2
    out = models.sample(gan, 4, generator=torch.Generator(device="cuda").manual_seed(0))
    assert out.device.type == "cuda"
    feats = torch.randn(20, 3, device="cuda")
    assert metrics.frechet_distance(feats, feats + 1).device.type == "cuda"
    assert pix2pix.blur(images).device.type == "cuda"


# --------------------------------------------------------------------------------------------
# recorded runs (the benchmarks' short training runs)


def test_recorded_run_keeps_curves_fid_coverage_and_samples():
    from utils.gans import runs

    g = torch.Generator().manual_seed(3)
    images = torch.rand(64, 1, 28, 28, generator=g)
    torch.manual_seed(0)
    classifier = nn.Sequential(nn.Flatten(), nn.Linear(784, 6), nn.ReLU(), nn.Linear(6, 10))
    reference = metrics.features(classifier, torch.rand(20, 1, 28, 28, generator=g))

    def tiny():
        return models.DCGAN(latent_dim=4, g_width=4, d_width=4)

    options = dict(optimiser="sgd", lr=0.01, head_start=2, steps=5, batch_size=16, eval_every=2,
                   n_grid=3, build=tiny)
    record = runs.recorded_run(images, classifier, reference, **options)
    assert record["eval_steps"] == [0, 2, 4, 5] and len(record["fid"]) == 4
    assert set(record["history"]) == {"loss_d", "d_real", "d_fake", "loss_g", "d_fake_g"}
    assert all(len(v) == 5 for v in record["history"].values())
    assert all(len(c) == 10 and abs(sum(c) - 1) < 1e-6 for c in record["coverage"])
    assert 0 <= record["head_start_d_fake"] <= 1
    grid = runs.decode_images(record["grids"][-1])
    assert grid.shape == (3, 1, 28, 28) and grid.min() >= 0 and grid.max() <= 1
    again = runs.recorded_run(images, classifier, reference, **options)
    assert again["fid"] == record["fid"], "a recorded run is repeatable"
    with pytest.raises(ValueError, match="optimiser"):
        runs.player_optimiser(tiny(), "rmsprop", 1e-3)
