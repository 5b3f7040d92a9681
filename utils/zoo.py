"""The checkpoint zoo: one registry of the trained models the course uses.

Each entry names a model builder, the recipe that trains it, and its file in
``data/checkpoints/``; the files' sha256 sums are recorded in ``data/checkpoints/SHA256SUMS``
(the format of ``sha256sum``, so ``sha256sum -c SHA256SUMS`` checks them too).

:func:`load` loads the committed file with ``torch.load(weights_only=True)`` after checking its
sha256; a corrupted or changed file raises :class:`CheckpointError` instead of giving a silently
wrong model.  A missing file is trained by its recipe (with a progress bar), saved and recorded:
the load-or-train pattern of the UvA deep-learning tutorials.

From the shell::

    python -m utils.zoo list               # every entry, its file and whether it verifies
    python -m utils.zoo verify             # exit status 1 when a file is missing or corrupted
    python -m utils.zoo retrain NAME ...   # train again by recipe and record the new sha256
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import torch
from torch import nn

from utils import models
from utils.data import repo_root, sha256_of

SUMS_FILE = "SHA256SUMS"


class CheckpointError(RuntimeError):
    """A checkpoint file is corrupted, changed, unrecorded or does not fit its architecture."""


@dataclass(frozen=True)
class Checkpoint:
    """One zoo entry: how to build the model, how to train it, and what it is."""

    name: str
    build: Callable[[], nn.Module]
    recipe: Callable[[nn.Module, torch.device], nn.Module]
    summary: str

    @property
    def filename(self) -> str:
        return f"{self.name}.pt"

    @property
    def path(self) -> Path:
        return checkpoint_dir() / self.filename


REGISTRY: dict[str, Checkpoint] = {}


def register(name: str, *, build, recipe, summary: str) -> Checkpoint:
    """Add an entry to the zoo (each name once)."""
    if name in REGISTRY:
        raise ValueError(f"zoo entry {name!r} is registered twice")
    REGISTRY[name] = entry = Checkpoint(name, build, recipe, summary)
    return entry


def entry(name: str) -> Checkpoint:
    """The registry entry called ``name``, or a :class:`KeyError` listing the known names."""
    try:
        return REGISTRY[name]
    except KeyError:
        known = ", ".join(sorted(REGISTRY))
        raise KeyError(f"no zoo entry {name!r}; known entries: {known}") from None


def checkpoint_dir() -> Path:
    """``data/checkpoints`` of the repository, or ``ADVX_CHECKPOINT_DIR`` when set (tests)."""
    chosen = os.environ.get("ADVX_CHECKPOINT_DIR")
    return Path(chosen) if chosen else repo_root() / "data" / "checkpoints"


# --------------------------------------------------------------------------------------------
# the record of sha256 sums


def recorded_sums() -> dict[str, str]:
    """``{filename: sha256}`` as written in ``SHA256SUMS``."""
    path = checkpoint_dir() / SUMS_FILE
    if not path.exists():
        return {}
    sums = {}
    for line in path.read_text().splitlines():
        if line.strip():
            digest, filename = line.split(maxsplit=1)
            sums[filename.lstrip("*")] = digest
    return sums


@contextlib.contextmanager
def _locked_sums():
    """Hold a lock while ``SHA256SUMS`` is read, changed and written (parallel retrains)."""
    folder = checkpoint_dir()
    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / f".{SUMS_FILE}.lock", "w") as lock:
        try:
            import fcntl

            fcntl.flock(lock, fcntl.LOCK_EX)
        except ImportError:  # Windows: no parallel retrains there
            pass
        yield


def _record(filename: str, digest: str) -> None:
    with _locked_sums():
        sums = recorded_sums()
        sums[filename] = digest
        text = "".join(f"{sums[name]}  {name}\n" for name in sorted(sums))
        path = checkpoint_dir() / SUMS_FILE
        temporary = path.with_suffix(".tmp")
        temporary.write_text(text)
        os.replace(temporary, path)


def verify(name: str) -> str:
    """Check one checkpoint file against its recorded sha256.

    Returns ``"ok"`` or ``"missing"``; raises :class:`CheckpointError` when the file is there
    but unrecorded or different from what was recorded.
    """
    item = entry(name)
    if not item.path.exists():
        return "missing"
    expected = recorded_sums().get(item.filename)
    actual = sha256_of(item.path)
    if expected is None:
        raise CheckpointError(
            f"{item.path} has no sha256 in {SUMS_FILE}, so it cannot be trusted. Retrain it "
            f"with `python -m utils.zoo retrain {name}` (which records it)."
        )
    if actual != expected:
        raise CheckpointError(
            f"{item.path} is corrupted or was changed: its sha256 is {actual[:16]}..., but "
            f"{SUMS_FILE} records {expected[:16]}.... Restore it with `git checkout -- "
            f"data/checkpoints/{item.filename}` or retrain it with "
            f"`python -m utils.zoo retrain {name}`."
        )
    return "ok"


# --------------------------------------------------------------------------------------------
# load, train, save


def _save(item: Checkpoint, model: nn.Module) -> None:
    item.path.parent.mkdir(parents=True, exist_ok=True)
    state = {key: value.detach().cpu().contiguous() for key, value in model.state_dict().items()}
    handle, temporary = tempfile.mkstemp(dir=item.path.parent, prefix=f".{item.filename}.")
    os.close(handle)
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(temporary, 0o666 & ~umask)  # mkstemp makes 0600 files; a checkpoint is for everyone
    try:
        torch.save(state, temporary)
        os.replace(temporary, item.path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
    _record(item.filename, sha256_of(item.path))


def train(name: str, device: torch.device | str | None = None) -> nn.Module:
    """Train ``name`` by its recipe, save it, record its sha256; returns the model in eval mode."""
    from utils.session import pick_device

    item = entry(name)
    device = torch.device(device) if device is not None else pick_device()
    print(f"training zoo entry {name!r} by its recipe on {device.type}: {item.summary}")
    model = item.recipe(item.build().to(device), device)
    _save(item, model)
    return model.eval()


def load(name: str, device: torch.device | str | None = None, *,
         train_if_missing: bool = True) -> nn.Module:
    """The trained model ``name``, in eval mode on ``device`` (default: CPU).

    Verifies the file's sha256 first; trains by recipe when the file is missing (unless
    ``train_if_missing=False``, which raises :class:`FileNotFoundError` instead).
    """
    item = entry(name)
    device = torch.device(device) if device is not None else torch.device("cpu")
    if verify(name) == "missing":
        if not train_if_missing:
            raise FileNotFoundError(
                f"{item.path} is missing; restore it from git or train it with "
                f"`python -m utils.zoo retrain {name}`"
            )
        return train(name, device).to(device)
    model = item.build()
    try:
        state = torch.load(item.path, map_location="cpu", weights_only=True)
        model.load_state_dict(state)
    except Exception as error:
        raise CheckpointError(
            f"{item.path} does not fit the architecture of {name!r} ({error}). The builder "
            f"changed since the file was made: retrain with `python -m utils.zoo retrain {name}`."
        ) from error
    return model.to(device).eval()


# --------------------------------------------------------------------------------------------
# the registry


def _fashion_classifier_recipe(epochs: int, lr: float, *, batch_size: int = 128,
                               weight_decay: float = 0.0, description: str = ""):
    """A recipe: train on the Fashion-MNIST training set, report test accuracy."""

    def recipe(model: nn.Module, device: torch.device) -> nn.Module:
        from utils.data import fashion_mnist
        from utils.training import accuracy, train_classifier

        images, labels = fashion_mnist("train")
        train_classifier(model, images, labels, epochs=epochs, lr=lr, batch_size=batch_size,
                         weight_decay=weight_decay, device=device, description=description)
        test_images, test_labels = fashion_mnist("test", device=device)
        print(f"  test accuracy: {accuracy(model, test_images, test_labels):.4f}")
        return model

    return recipe


register(
    "fashion_cnn",
    build=models.fashion_cnn,
    recipe=_fashion_classifier_recipe(epochs=4, lr=2e-3, description="fashion_cnn"),
    summary="small 4-conv CNN on Fashion-MNIST (the model lecture 01 attacks)",
)


# --- lecture 01: adversarial examples (adversarially trained model, ...) ---------------------


def _fast_adversarial_recipe(*, eps: float, epochs: int, lr: float, batch_size: int = 128):
    """Adversarial training with "fast" FGSM (random start, step 1.25 eps; Wong et al. 2020).

    Every training batch is replaced by its FGSM-with-random-start version at radius ``eps``
    (a little larger than the radius the model is evaluated at), which costs one extra
    forward-backward pass per batch instead of the ten or more of PGD training.
    """

    def recipe(model: nn.Module, device: torch.device) -> nn.Module:
        from utils.attacks import fgsm
        from utils.data import fashion_mnist
        from utils.training import accuracy, train_classifier

        generator = torch.Generator().manual_seed(0)

        def perturb(net, x, y):
            return fgsm(net, x, y, eps=eps, random_start=True, alpha=1.25 * eps,
                        generator=generator)

        images, labels = fashion_mnist("train")
        train_classifier(model, images, labels, epochs=epochs, lr=lr, batch_size=batch_size,
                         device=device, perturb=perturb, description="fast adversarial training")
        test_images, test_labels = fashion_mnist("test", device=device)
        print(f"  clean test accuracy: {accuracy(model, test_images, test_labels):.4f}")
        return model

    return recipe


register(
    "fashion_cnn_adv",
    build=models.fashion_cnn_adv,
    recipe=_fast_adversarial_recipe(eps=0.125, epochs=3, lr=3e-3),
    summary="3-block CNN adversarially trained (fast FGSM, eps 0.125): lecture 01's defence",
)


# --- lecture 02: the five-architecture zoo -----------------------------------------------------
# Five different architectures on Fashion-MNIST, the stand-ins for the noise article's five
# ImageNet networks; each recipe takes one to three minutes on two CPU cores.

for _name, _epochs, _lr, _what in (
    ("fashion_mlp", 3, 2e-3, "multilayer perceptron, 784-256-128-10"),
    ("fashion_lenet", 2, 2e-3, "LeNet/AlexNet-like CNN, 5x5 kernels, dropout head"),
    ("fashion_vgg", 2, 2e-3, "VGG-like CNN, pairs of 3x3 convolutions, two-layer head"),
    ("fashion_resnet", 2, 3e-3, "ResNet-like CNN, three stages of basic blocks with batch norm"),
    ("fashion_densenet", 2, 3e-3, "DenseNet-like CNN, three dense blocks (growth 12)"),
):
    register(
        _name,
        build=getattr(models, _name),
        recipe=_fashion_classifier_recipe(epochs=_epochs, lr=_lr, batch_size=128,
                                          description=_name),
        summary=f"{_what} (lecture 02's zoo)",
    )
del _name, _epochs, _lr, _what



# --- lecture 03: the face black box and its distilled students ----------------------------------


def _face_blackbox_recipe(model: nn.Module, device: torch.device) -> nn.Module:
    from utils.faces import train_blackbox

    return train_blackbox(model, device)


def _face_student_recipe(model: nn.Module, device: torch.device) -> nn.Module:
    from utils.faces import distill_student

    return distill_student(model, device)


register(
    "face_blackbox",
    build=models.face_blackbox_net,
    recipe=_face_blackbox_recipe,
    summary="lecture 03's black box: ResNet-like 64-d face descriptor, Olivetti people 0-24",
)
for _name, _build, _what in [
        ("face_student_resnet", models.face_student_resnet, "small ResNet-like"),
        ("face_student_cnn", models.face_student_cnn, "plain VGG-style CNN"),
        ("face_student_wide", models.face_student_wide, "wide, shallow CNN")]:
    register(_name, build=_build, recipe=_face_student_recipe,
             summary=f"lecture 03 student ({_what}) distilled from face_blackbox's descriptors")


# --------------------------------------------------------------------------------------------
# command line


def _status(name: str) -> str:
    try:
        return verify(name)
    except CheckpointError:
        return "CORRUPTED"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m utils.zoo", description=__doc__.split("\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("list", help="list the entries, their files and their status")
    check = commands.add_parser("verify", help="check files against SHA256SUMS")
    check.add_argument("names", nargs="*", help="entries to check (default: all)")
    again = commands.add_parser("retrain", help="train entries by their recipe and record them")
    again.add_argument("names", nargs="*", help="entries to retrain")
    again.add_argument("--all", action="store_true", help="retrain every entry")
    again.add_argument("--device", default=None, help="cpu or cuda (default: CUDA when present)")
    args = parser.parse_args(argv)

    if args.command == "list":
        for name, item in sorted(REGISTRY.items()):
            size = f"{item.path.stat().st_size / 1e6:.2f} MB" if item.path.exists() else "-"
            print(f"{name:28s} {_status(name):9s} {size:>9s}  {item.summary}")
        return 0
    if args.command == "verify":
        names = args.names or sorted(REGISTRY)
        bad = 0
        for name in names:
            try:
                status = verify(name)
            except CheckpointError as error:
                status, bad = f"CORRUPTED: {error}", bad + 1
            bad += status == "missing"
            print(f"{name:28s} {status}")
        return 1 if bad else 0
    names = sorted(REGISTRY) if args.all else args.names
    if not names:
        parser.error("name the entries to retrain, or pass --all")
    for name in names:
        entry(name)  # fail on a typo before any training starts
    for name in names:
        train(name, args.device)
    return 0


if __name__ == "__main__":
    sys.exit(main())
