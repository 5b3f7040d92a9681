import pytest
import torch
from torch import nn

from utils import zoo


@pytest.fixture
def toy_entry(checkpoint_dir, monkeypatch):
    """A registered toy entry whose recipe 'trains' instantly, in an empty checkpoint folder."""
    calls = []

    def recipe(model, device, **options):
        calls.append(device)
        with torch.no_grad():
            for parameter in model.parameters():
                parameter.fill_(0.5)
        return model

    monkeypatch.setitem(zoo.REGISTRY, "toy", zoo.Checkpoint("toy", lambda: nn.Linear(3, 2),
                                                             recipe, "a toy"))
    return calls


def test_missing_file_is_trained_saved_and_recorded(toy_entry, checkpoint_dir):
    model = zoo.load("toy")
    assert toy_entry, "the recipe ran"
    assert (checkpoint_dir / "toy.pt").exists()
    assert "toy.pt" in zoo.recorded_sums()
    assert not model.training
    again = zoo.load("toy")
    assert len(toy_entry) == 1, "the second load uses the file"
    assert torch.equal(again.weight, torch.full((2, 3), 0.5))


def test_truncated_file_gives_a_clear_error(toy_entry, checkpoint_dir):
    zoo.load("toy")
    path = checkpoint_dir / "toy.pt"
    path.write_bytes(path.read_bytes()[:50])
    with pytest.raises(zoo.CheckpointError, match="corrupted or was changed"):
        zoo.load("toy")


def test_tampered_file_gives_a_clear_error(toy_entry, checkpoint_dir):
    zoo.load("toy")
    torch.save({"weight": torch.zeros(2, 3), "bias": torch.zeros(2)}, checkpoint_dir / "toy.pt")
    with pytest.raises(zoo.CheckpointError, match="retrain"):
        zoo.load("toy")


def test_unrecorded_file_is_not_trusted(toy_entry, checkpoint_dir):
    torch.save(nn.Linear(3, 2).state_dict(), checkpoint_dir / "toy.pt")
    with pytest.raises(zoo.CheckpointError, match="no sha256"):
        zoo.load("toy")


def test_missing_file_without_training_is_an_error(toy_entry):
    with pytest.raises(FileNotFoundError, match="retrain"):
        zoo.load("toy", train_if_missing=False)


def test_unknown_name_lists_the_known_ones():
    with pytest.raises(KeyError, match="fashion_cnn"):
        zoo.load("no_such_model")


def test_registering_twice_is_refused():
    with pytest.raises(ValueError, match="twice"):
        zoo.register("fashion_cnn", build=None, recipe=None, summary="")


def test_every_committed_checkpoint_verifies_and_loads():
    for name, item in zoo.REGISTRY.items():
        assert zoo.verify(name) == "ok", f"{item.path} is missing: commit it or retrain it"
        size = item.path.stat().st_size
        assert size < 8e6, f"{item.path.name} is {size / 1e6:.1f} MB: checkpoints stay small"
        model = zoo.load(name)
        assert not model.training


def test_loaded_model_goes_to_the_requested_device():
    model = zoo.load("fashion_cnn", "cpu")
    assert all(p.device.type == "cpu" for p in model.parameters())


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_loaded_model_goes_to_cuda():
    model = zoo.load("fashion_cnn", "cuda")
    assert all(p.is_cuda for p in model.parameters())


def test_command_line_verify_and_list(capsys):
    assert zoo.main(["verify"]) == 0
    zoo.main(["list"])
    assert "fashion_cnn" in capsys.readouterr().out
