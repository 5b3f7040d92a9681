"""Unit tests of utils.faces: the black box's API, pair sets, the SSIM rule and the scorer."""

import pickle

import numpy as np
import pytest
import torch
from torch import nn

from utils import faces


def tiny_network():
    torch.manual_seed(0)
    return nn.Sequential(nn.Flatten(), nn.Linear(64 * 64, faces.DIM))


@pytest.fixture(scope="module")
def box():
    return faces.BlackBox.from_network(tiny_network(), name="tiny")


def test_query_returns_numpy_descriptors_and_counts(box):
    before = box.queries
    out = box.query(torch.rand(3, 1, 64, 64))
    assert isinstance(out, np.ndarray) and out.shape == (3, faces.DIM) and out.dtype == np.float32
    assert box.queries == before + 3
    box.query(np.random.rand(2, 1, 64, 64).astype(np.float32))
    assert box.queries == before + 5


def test_blackbox_hides_its_network(box):
    assert not hasattr(box, "model") and not hasattr(box, "__dict__")
    for name in dir(box):
        value = getattr(box, name, None)
        assert not isinstance(value, (nn.Module, torch.nn.Parameter)), name
    assert "BlackBox" in repr(box) and "query" in repr(box)
    with pytest.raises(AttributeError):
        box.network = tiny_network()
    with pytest.raises(TypeError):
        pickle.dumps(box)
    x = torch.rand(1, 1, 64, 64, requires_grad=True)
    out = box.query(x)
    assert not isinstance(out, torch.Tensor)


@pytest.mark.parametrize("bad, words", [
    (torch.rand(2, 64, 64), "shape"),
    (torch.rand(2, 3, 64, 64), "shape"),
    (torch.rand(0, 1, 64, 64), "shape"),
    (torch.full((1, 1, 64, 64), 1.5), "[0, 1]"),
    (torch.full((1, 1, 64, 64), float("nan")), "NaN"),
    (np.zeros((1, 1, 64, 64), np.uint8), "255"),
    (torch.zeros(1, 1, 64, 64, dtype=torch.int64), "dtype"),
    ([[0.5]], "numpy"),
])
def test_query_validates_input(box, bad, words):
    before = box.queries
    with pytest.raises(ValueError, match=None) as info:
        box.query(bad)
    assert words in str(info.value)
    assert box.queries == before


def test_budget():
    box = faces.BlackBox.from_network(tiny_network(), budget=5)
    box.query(torch.rand(4, 1, 64, 64))
    with pytest.raises(faces.QueryBudgetExceeded, match="budget of 5"):
        box.query(torch.rand(2, 1, 64, 64))
    assert box.queries == 4 and box.remaining == 1
    box.query(torch.rand(1, 1, 64, 64))
    with pytest.raises(ValueError):
        faces.BlackBox.from_network(tiny_network(), budget=-1)


def test_pair_sets_reproducible_and_from_unseen_people():
    first, again = faces.pair_sets(20, seed=3), faces.pair_sets(20, seed=3)
    assert first == again and faces.pair_sets(5, seed=3) == first[:5]
    assert faces.pair_sets(20, seed=4) != first
    for pair in first:
        assert pair.source_person != pair.target_person
        assert {pair.source_person, pair.target_person} <= set(faces.UNSEEN_PEOPLE)
        assert len(set(pair.source_index)) == len(set(pair.target_index)) == 5
        assert all(i // 10 == pair.source_person for i in pair.source_index)
        assert all(i // 10 == pair.target_person for i in pair.target_index)
    assert not set(faces.TRAIN_PEOPLE) & set(faces.UNSEEN_PEOPLE)


def test_ssim_rule_is_on_saved_uint8_images():
    sources, _ = faces.pair_sets(1, 0)[0].images()
    sources = faces.to_uint8(sources).float() / 255          # on the saved grey levels
    assert torch.allclose(faces.ssim_uint8(sources, sources), torch.ones(5))
    # a change below half a grey level disappears when the image is saved
    tiny = (sources + 0.4 / 255 * torch.randn(sources.shape).sign()).clamp(0, 1)
    assert torch.equal(faces.to_uint8(tiny), faces.to_uint8(sources))
    assert torch.allclose(faces.ssim_uint8(tiny, sources), torch.ones(5))
    noisy = (sources + 0.1 * torch.randn(sources.shape)).clamp(0, 1)
    assert (faces.ssim_uint8(noisy, sources) < faces.SSIM_LIMIT).all()
    assert torch.allclose(faces.ssim_uint8(faces.to_uint8(noisy), sources),
                          faces.ssim_uint8(noisy, sources))


def test_project_ssim_lands_inside_the_rule():
    sources, _ = faces.pair_sets(1, 1)[0].images()
    noisy = (sources + 0.1 * torch.randn(sources.shape, generator=torch.Generator().manual_seed(0)))
    projected = faces.project_ssim(noisy.clamp(0, 1), sources)
    values = faces.ssim_uint8(projected, sources)
    assert (values >= faces.SSIM_LIMIT).all() and (values < 0.97).all()


def _submission(tmp_path, images, seed=7, name="sub"):
    return faces.write_submission(tmp_path / name, images, seed).parent


def test_scorer_accepts_valid_and_names_each_bad_image(tmp_path, box):
    pairs = faces.pair_sets(2, seed=7)
    clean = torch.stack([pair.images()[0] for pair in pairs])
    result = faces.score_submission(_submission(tmp_path, clean), box)
    assert result["valid"] and len(result["per_set"]) == 2 and result["score"] > 0
    broken = clean.clone()
    broken[0, 1] = (broken[0, 1] + 0.2 * torch.randn(1, 64, 64)).clamp(0, 1)
    broken[1, 4] = 1 - broken[1, 4]
    with pytest.raises(faces.SubmissionError) as info:
        faces.score_submission(_submission(tmp_path, broken, name="bad"), box)
    text = str(info.value)
    assert "2 image(s)" in text and "pair set 0, source 1" in text and "pair set 1, source 4" in text
    assert "pair set 0, source 0" not in text


def test_scorer_rejects_malformed_submissions(tmp_path, box):
    with pytest.raises(faces.SubmissionError, match="no submission.npz"):
        faces.score_submission(tmp_path / "nothing", box)
    folder = tmp_path / "shape"
    folder.mkdir()
    np.savez(folder / "submission.npz", seed=np.int64(0), images=np.zeros((1, 4, 64, 64), np.uint8))
    with pytest.raises(faces.SubmissionError, match="shape"):
        faces.score_submission(folder, box)
    np.savez(folder / "submission.npz", seed=np.int64(0), images=np.zeros((1, 5, 64, 64)))
    with pytest.raises(faces.SubmissionError, match="uint8"):
        faces.score_submission(folder, box)
    np.savez(folder / "submission.npz", images=np.zeros((1, 5, 64, 64), np.uint8))
    with pytest.raises(faces.SubmissionError, match="seed"):
        faces.score_submission(folder, box)
    (folder / "submission.npz").write_text("not a zip file")
    with pytest.raises(faces.SubmissionError, match="readable"):
        faces.score_submission(folder, box)


def test_leaderboard_ranks_and_keeps_rejected(tmp_path, box):
    pairs = faces.pair_sets(1, seed=7)
    clean = torch.stack([pair.images()[0] for pair in pairs])
    good = _submission(tmp_path, clean, name="good")
    bad = _submission(tmp_path, 1 - clean, name="bad")
    rows = faces.leaderboard([bad, good], box)
    assert rows[0]["submission"] == str(good) and rows[0]["status"] == "valid"
    assert rows[1]["status"].startswith("REJECTED")


def test_attack_keeps_the_rule_and_counts_queries(box):
    net = tiny_network()
    for p in net.parameters():
        p.requires_grad_(False)
    sources, targets = faces.pair_sets(1, 2)[0].images()
    before = box.queries
    result = faces.attack_stats(box, sources, targets, [net], steps=3, keep_if_better=True,
                          boundary=True, target_mode="combos",
                          generator=torch.Generator().manual_seed(0))
    assert result.queries == box.queries - before == 5 + 5 + 3 * 5
    assert (faces.ssim_uint8(result.images, sources) >= faces.SSIM_LIMIT).all()
    polished = faces.de_polish_stats(box, sources, result.images, targets, [(net, 1.0)],
                                     pixels=4, population=4, steps=1,
                               generator=torch.Generator().manual_seed(0))
    assert polished.queries == 5 + 5 * 4 * 2
    assert (faces.ssim_uint8(polished.images, sources) >= faces.SSIM_LIMIT).all()


def test_fast_ssim_matches_the_scorers():
    sources, _ = faces.pair_sets(1, 3)[0].images()
    g = torch.Generator().manual_seed(1)
    for std in (1 / 255, 4 / 255, 0.05):
        noisy = (sources + std * torch.randn(sources.shape, generator=g)).clamp(0, 1)
        assert torch.allclose(faces.ssim_fast(noisy, sources), faces.ssim_uint8(noisy, sources),
                              atol=1e-5)


def test_attack_returns_a_tensor_and_takes_an_ensemble_as_pairs(box):
    net = tiny_network()
    sources, targets = faces.pair_sets(1, 2)[0].images()
    images = faces.attack(box, sources, targets, net, steps=1, alpha=2 / 255)
    assert isinstance(images, torch.Tensor) and images.shape == sources.shape
    weighted = faces.attack(box, sources, targets, [(net, 3.0)], steps=1, alpha=2 / 255)
    assert torch.equal(weighted, images), "one student, any weight: the same attack"
    with pytest.raises(ValueError, match="alpha"):
        faces.attack(box, sources, targets, net, steps=1, alpha=0)


def test_writeup_tricks_keep_the_rule_and_reject_bad_settings(box):
    net = tiny_network()
    sources, targets = faces.pair_sets(1, 2)[0].images()
    plain = faces.attack(box, sources, targets, net, steps=3, alpha=2 / 255)
    for trick in ({"momentum": 0.9}, {"mask_std": 1.0}, {"flips": True}):
        images = faces.attack(box, sources, targets, net, steps=3, alpha=2 / 255, boundary=True,
                              **trick)
        assert images.shape == sources.shape
        assert (faces.ssim_uint8(images, sources) >= faces.SSIM_LIMIT).all()
    masked = faces.attack(box, sources, targets, net, steps=3, alpha=2 / 255, mask_std=1.0)
    saved = faces.to_uint8(sources).float() / 255
    moved, moved_plain = (masked != saved).float().mean(), (plain != saved).float().mean()
    assert moved < moved_plain, "the mask leaves the weaker pixels alone"
    pair = faces.pair_sets(1, 2)[0]
    extra = pair.other_target_photos()
    assert extra.shape == (5, 1, faces.SIZE, faces.SIZE)
    assert not any(torch.equal(e, t) for e in extra for t in targets), "other photos, not the targets"
    before = box.queries
    result = faces.attack_stats(box, sources, targets, net, steps=2, extra_targets=extra)
    assert result.queries == box.queries - before == 5 + 5, "the extra targets cost one query each"
    for bad in ({"momentum": 1.0}, {"momentum": -0.1}, {"mask_std": -1.0}):
        with pytest.raises(ValueError):
            faces.attack(box, sources, targets, net, steps=1, **bad)


def test_paired_differences_give_intervals_on_the_same_pair_sets():
    rows = [{"rung": "full", "score": 0.5, "per_set": [0.5, 0.6, 0.4, 0.5]},
            {"rung": "worse", "score": 0.6, "per_set": [0.6, 0.7, 0.5, 0.61]},
            {"rung": "noise", "score": 0.5, "per_set": [0.6, 0.5, 0.4, 0.5]}]
    table = faces.paired_differences(rows)
    assert table[0]["difference"] == 0 and not table[0]["reliably worse"]
    assert table[1]["reliably worse"] and table[1]["low"] > 0
    assert not table[2]["reliably worse"] and not table[2]["reliably better"]
    assert table[2]["low"] < 0 < table[2]["high"]


def test_ablation_variants_each_drop_one_idea():
    names = [name for name, _ in faces.ablation_rungs([tiny_network(), tiny_network()])]
    assert names[0] == "full pipeline" and len(names) == len(set(names)) == 11
    assert all(name.startswith("- ") for name in names[1:])


def test_best_is_the_tuned_attack_and_the_ladder_climbs_to_it():
    assert faces.BEST == dict(faces.BEST_BEFORE_TUNING, smooth=5.0, steps=30, restart=3)
    rungs = faces.ladder_rungs([tiny_network(), tiny_network()])
    tuned, polished = rungs[-2][1], rungs[-1][1]
    assert tuned.stages[0].plan == faces.plan(**faces.BEST)
    assert polished.resume and polished.stages[0].plan == faces.plan(**faces.BEST)


def test_distill_student_rejects_an_unknown_loss():
    from utils.faces import recipes

    with pytest.raises(ValueError, match="loss"):
        recipes.distill_student(tiny_network(), torch.device("cpu"), loss="l1")


def test_distill_step_is_one_optimiser_step_on_the_recipe_loss():
    images, descriptors = torch.rand(4, 1, 64, 64), torch.randn(4, faces.DIM)
    net, twin = tiny_network(), tiny_network()
    assert torch.equal(faces.distillation_loss(net, (images, descriptors), loss="l2"),
                       (net(images) - descriptors).norm(dim=1).mean())
    with pytest.raises(ValueError, match="loss"):
        faces.distillation_loss(net, (images, descriptors), loss="l1")
    sgd = torch.optim.SGD(twin.parameters(), lr=0.1)
    loss = faces.distill_step(net, torch.optim.SGD(net.parameters(), lr=0.1), images, descriptors)
    expected = ((twin(images) - descriptors) ** 2).mean()
    expected.backward()
    sgd.step()
    assert torch.equal(loss, expected.detach())
    assert all(torch.equal(a, b) for a, b in zip(net.parameters(), twin.parameters()))


def test_a_plan_is_its_keywords_and_tricks_compose(box):
    net = tiny_network()
    sources, targets = faces.pair_sets(1, 2)[0].images()
    options = dict(faces.BEST, steps=2, momentum=0.5, mask_std=0.5, flips=True)
    plan = faces.plan(**options)
    assert [type(f).__name__ for f in plan.filters] == ["Smooth", "Momentum"], "blur first"
    by_keywords = faces.attack(box, sources, targets, net, **options,
                               generator=torch.Generator().manual_seed(0))
    by_plan = faces.attack(box, sources, targets, net, plan,
                           generator=torch.Generator().manual_seed(0))
    assert torch.equal(by_keywords, by_plan)
    with pytest.raises(ValueError, match="not both"):
        faces.attack(box, sources, targets, net, plan, steps=3)
    with pytest.raises(ValueError, match="target mode"):
        faces.plan(target_mode="median")
    # a plan nobody named in keywords: the slots take any trick
    from utils.faces import tricks

    custom = tricks.AttackPlan(alpha=2 / 255, steps=2, aim=tricks.MeanTarget(),
                               filters=(tricks.Momentum(0.9), tricks.Smooth(1.0)),
                               rule=tricks.SSIMBoundary(), accept=tricks.KeepIfBetter())
    result = faces.attack_stats(box, sources, targets, net, custom)
    assert result.queries == 5 + 5 + 2 * 5
    assert (faces.ssim_uint8(result.images, sources) >= faces.SSIM_LIMIT).all()


def test_a_pipeline_chains_stages_and_adds_up_what_they_spent(box):
    net = tiny_network()
    sources, targets = faces.pair_sets(1, 2)[0].images()
    nothing = faces.Pipeline()(box, sources, targets)
    assert torch.equal(nothing.images, faces.to_uint8(sources).float() / 255)
    assert nothing.queries == 0
    small = dict(pixels=4, population=4, steps=1)
    pipeline = faces.Pipeline((faces.GradientStage((net,), faces.plan(steps=2, boundary=True)),
                               faces.PolishStage((net,), **small)))
    result = pipeline(box, sources, targets, torch.Generator().manual_seed(0))
    first = faces.attack_stats(box, sources, targets, net, steps=2, boundary=True,
                               generator=torch.Generator().manual_seed(0))
    second = faces.de_polish_stats(box, sources, first.images, targets, net,
                                   generator=torch.Generator().manual_seed(0), **small)
    assert torch.equal(result.images, second.images)
    assert result.queries == first.queries + second.queries and result.steps == 2 + 1
    assert result.history == first.history
    resumed = faces.Pipeline(pipeline.stages, resume=True)(
        box, sources, targets, torch.Generator().manual_seed(0), first)
    assert torch.equal(resumed.images, second.images), "resume: the rung before stands in"


def test_keep_if_better_restarts_its_step_sizes_after_so_many_halvings():
    from utils.faces import tricks

    x = torch.zeros(2, 1, 64, 64)
    losses = iter([torch.tensor([1.0, 1.0])] + [torch.tensor([0.5, 2.0])] * 2
                  + [torch.tensor([0.4, 2.0])])

    class Box:          # a black box whose loss only the first image ever improves
        queries = 0

    run = tricks.Run(Box(), x, torch.zeros(5, faces.DIM), x=x.clone(),
                     step=torch.full((2, 1, 1, 1), 0.04),
                     active=torch.ones(2, 1, 1, 1, dtype=torch.bool))
    keep = tricks.KeepIfBetter(restart=2)
    original = tricks.blackbox_loss
    tricks.blackbox_loss = lambda box, images, desc: next(losses)
    try:
        keep.start(run)
        steps = []
        for _ in range(3):
            keep(x, run)
            steps.append(run.step.flatten().tolist())
    finally:
        tricks.blackbox_loss = original
    assert steps[0] == pytest.approx([0.04, 0.02])
    assert steps[1] == pytest.approx([0.02, 0.04]), "halved twice: back to the first step"
    assert steps[2] == pytest.approx([0.02, 0.02])
    assert int(run.rejected) == 4
    with pytest.raises(ValueError, match="keep_if_better=True"):
        faces.plan(restart=2)
    with pytest.raises(ValueError, match="restart"):
        tricks.KeepIfBetter(restart=-1)
