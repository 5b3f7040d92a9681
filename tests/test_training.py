"""The one training loop: fit, Batches, train, and their errors."""

import pytest
import torch
from torch import nn

from utils import training


def toy_data(n=64):
    g = torch.Generator().manual_seed(0)
    x = torch.randn(n, 4, generator=g)
    return x, (x[:, 0] > 0).long()


def test_batches_cover_every_row_once_per_epoch_and_reshuffle():
    x, y = toy_data(10)
    data = training.Batches(x, y, batch_size=4)
    assert len(data) == 3
    first = torch.cat([b[0] for b in data])
    second = torch.cat([b[0] for b in data])
    assert sorted(first[:, 0].tolist()) == sorted(x[:, 0].tolist())
    assert not torch.equal(first, second), "a new order every epoch"
    again = torch.cat([b[0] for b in training.Batches(x, y, batch_size=4)])
    assert torch.equal(first, again), "the same seed gives the same order"
    assert len(training.Batches(x, y, batch_size=4, drop_last=True)) == 2


def test_batches_refuse_bad_input():
    x, y = toy_data(10)
    with pytest.raises(ValueError, match="same length"):
        training.Batches(x, y[:5], batch_size=2)
    with pytest.raises(ValueError, match="batch_size"):
        training.Batches(x, y, batch_size=0)


def test_fit_passes_progress_and_keeps_metrics():
    seen = []

    def step(batch, p):
        seen.append(p)
        return {"p": torch.tensor(p), "size": len(batch[0])}

    x, y = toy_data(8)
    history = training.fit(step, training.Batches(x, y, batch_size=4), epochs=3, progress=False)
    assert seen == [i / 6 for i in range(6)]
    assert history["p"] == pytest.approx(seen) and history["size"] == [4] * 6
    history = training.fit(step, training.Batches(x, y, batch_size=4), steps=5, progress=False)
    assert len(history["p"]) == 5
    with pytest.raises(ValueError, match="epochs"):
        training.fit(step, training.Batches(x, y, batch_size=4), epochs=0)


def test_train_learns_and_is_repeatable():
    x, y = toy_data()
    models = []
    for _ in range(2):
        torch.manual_seed(1)
        model = nn.Linear(4, 2)
        history = training.train(model, training.cross_entropy_loss,
                                 training.Batches(x, y, batch_size=16), epochs=30, lr=0.05,
                                 progress=False)
        models.append(model)
    assert history.last("loss", 4) < 0.3 and not models[0].training
    assert training.accuracy(models[0], x, y) > 0.9
    assert torch.equal(models[0].weight, models[1].weight)


def test_schedules_and_optimisers():
    model = nn.Linear(2, 1)
    opt = training.make_optimiser(model.parameters(), "sgd", lr=0.1)
    schedule = training.make_schedule(opt, lambda p: 1 - p, total_steps=10)
    for _ in range(5):
        opt.step()
        schedule.step()
    assert opt.param_groups[0]["lr"] == pytest.approx(0.05)
    with pytest.raises(ValueError, match="optimiser"):
        training.make_optimiser(model.parameters(), "rmsprop", lr=0.1)
    with pytest.raises(ValueError, match="schedule"):
        training.make_schedule(opt, "linear", 10)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_batches_move_to_the_device():
    x, y = toy_data(8)
    batch = next(iter(training.Batches(x, y, batch_size=4, device="cuda")))
    assert batch[0].is_cuda and batch[1].is_cuda


def test_distillation_step_trains_the_student_on_the_teachers_soft_labels():
    from utils import recipes

    x, _ = toy_data(16)
    torch.manual_seed(0)
    teacher, student = nn.Linear(4, 3), nn.Linear(4, 3)
    before = [p.detach().clone() for p in teacher.parameters()]
    soft = torch.softmax(teacher(x) / 5.0, dim=1).detach()
    expected = -(soft * torch.log_softmax(student(x) / 5.0, dim=1)).sum(1).mean()
    optimiser = torch.optim.SGD(student.parameters(), lr=0.1)
    loss = recipes.distillation_step(student, teacher, x, optimiser, temperature=5.0)
    torch.testing.assert_close(loss, expected.detach())   # the teacher read at T by default
    assert all(torch.equal(a, b) for a, b in zip(before, teacher.parameters())), "teacher fixed"
    after = recipes.distillation_loss(student, x, soft, 5.0)
    assert after < loss, "one step lowers the loss on the same batch"
    with pytest.raises(ValueError, match="temperature"):
        recipes.distillation_step(student, teacher, x, optimiser, temperature=0.0)
