"""Where the course's files live, and the one way it writes a file: atomically.

Every module that writes something other processes read (data caches, checkpoints, their
sha256 record, the gradebook, submissions) goes through :func:`atomic_write`, so a crash or a
Ctrl-C never leaves half a file behind.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from pathlib import Path
from typing import Callable, IO, Union

Content = Union[bytes, str, Callable[[IO[bytes]], None]]


def repo_root() -> Path:
    """The repository this package sits in (its ``data/`` folder holds caches and checkpoints)."""
    return Path(__file__).resolve().parents[1]


def data_dir() -> Path:
    """The cache folder: ``ADVX_DATA_DIR`` if set, else the repository's ``data/``."""
    chosen = os.environ.get("ADVX_DATA_DIR")
    folder = Path(chosen).expanduser() if chosen else repo_root() / "data"
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def checkpoint_dir() -> Path:
    """``data/checkpoints`` of the repository, or ``ADVX_CHECKPOINT_DIR`` when set (tests)."""
    chosen = os.environ.get("ADVX_CHECKPOINT_DIR")
    return Path(chosen) if chosen else repo_root() / "data" / "checkpoints"


def sha256_of(path: Path | str) -> str:
    """The sha256 of a file's bytes, as ``sha256sum`` prints it."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def atomic_write(target: Path | str, content: Content, *, mode: int | None = None) -> Path:
    """Write ``target`` through a temporary file in the same folder, then rename it into place.

    ``content`` is bytes, text (written as UTF-8) or a function that writes into the open binary
    file.  The file gets ordinary permissions (``0o666`` less the umask) unless ``mode`` says
    otherwise: ``mkstemp`` alone would make it private to its owner.
    """
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.")
    try:
        with os.fdopen(handle, "wb") as out:
            if callable(content):
                content(out)
            else:
                out.write(content.encode() if isinstance(content, str) else content)
        if mode is None:
            umask = os.umask(0)
            os.umask(umask)
            mode = 0o666 & ~umask
        os.chmod(temporary, mode)
        os.replace(temporary, target)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
    return target
