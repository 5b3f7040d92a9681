"""The checkpoint zoo: one registry of the trained models the course uses.

Each entry (a line of :mod:`utils.zoo_entries`) names its model builder and training recipe as
``"module:function"`` strings -- imported only when that entry is built or trained, so the zoo
imports no lecture's topic package -- and has its file in ``data/checkpoints/``; the files' sha256 sums are recorded in ``data/checkpoints/SHA256SUMS``
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
import importlib
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Union

import torch
from torch import nn

from utils.paths import atomic_write, checkpoint_dir, sha256_of
from utils.zoo_entries import ENTRIES

SUMS_FILE = "SHA256SUMS"


class CheckpointError(RuntimeError):
    """A checkpoint file is corrupted, changed, unrecorded or does not fit its architecture."""


def resolve(reference: Union[str, Callable]) -> Callable:
    """The function named ``"package.module:function"`` (imported now), or ``reference`` itself."""
    if callable(reference):
        return reference
    module, _, name = str(reference).partition(":")
    if not module or not name:
        raise ValueError(f"expected 'module:function', got {reference!r}")
    try:
        return getattr(importlib.import_module(module), name)
    except (ImportError, AttributeError) as error:
        raise CheckpointError(f"the zoo names {reference!r}, which cannot be imported: {error}") from error


@dataclass(frozen=True)
class Checkpoint:
    """One zoo entry: how to build the model, how to train it, and what it is.

    ``build`` and ``recipe`` are ``"module:function"`` names (or, in tests, the functions).
    """

    name: str
    build: Union[str, Callable[[], nn.Module]]
    recipe: Union[str, Callable[..., nn.Module]]
    summary: str
    options: dict = field(default_factory=dict)

    @property
    def filename(self) -> str:
        return f"{self.name}.pt"

    @property
    def path(self) -> Path:
        return checkpoint_dir() / self.filename

    def new_model(self) -> nn.Module:
        """A freshly initialised model of this entry's architecture."""
        return resolve(self.build)()

    def run_recipe(self, model: nn.Module, device: torch.device) -> nn.Module:
        """Train ``model`` by this entry's recipe and options."""
        return resolve(self.recipe)(model, device, **self.options)


REGISTRY: dict[str, Checkpoint] = {}


def register(name: str, *, build, recipe, summary: str, options: dict | None = None) -> Checkpoint:
    """Add an entry to the zoo (each name once); :mod:`utils.zoo_entries` lists the course's."""
    if name in REGISTRY:
        raise ValueError(f"zoo entry {name!r} is registered twice")
    REGISTRY[name] = item = Checkpoint(name, build, recipe, summary, dict(options or {}))
    return item


for _entry in ENTRIES:
    register(_entry.name, build=_entry.build, recipe=_entry.recipe, summary=_entry.summary,
             options=_entry.options)
del _entry


def entry(name: str) -> Checkpoint:
    """The registry entry called ``name``, or a :class:`KeyError` listing the known names."""
    try:
        return REGISTRY[name]
    except KeyError:
        known = ", ".join(sorted(REGISTRY))
        raise KeyError(f"no zoo entry {name!r}; known entries: {known}") from None


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
        atomic_write(checkpoint_dir() / SUMS_FILE, text)


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
    state = {key: value.detach().cpu().contiguous() for key, value in model.state_dict().items()}
    atomic_write(item.path, lambda out: torch.save(state, out))
    _record(item.filename, sha256_of(item.path))


def train(name: str, device: torch.device | str | None = None) -> nn.Module:
    """Train ``name`` by its recipe, save it, record its sha256; returns the model in eval mode."""
    from utils.session import pick_device

    item = entry(name)
    device = torch.device(device) if device is not None else pick_device()
    print(f"training zoo entry {name!r} by its recipe on {device.type}: {item.summary}")
    model = item.run_recipe(item.new_model().to(device), device)
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
    model = item.new_model()
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
