"""Start the grader's *trusted workers* quickly: fork them from a zygote with the libraries loaded.

Importing torch, IPython and the course's library costs seconds per process; a zygote pays it
once.  The grader starts one, as a fresh interpreter, before its threads start; each worker is a
fork of it.  Workers are trusted (no student code runs in them).  Students' kernels never come
from here: each is a fresh exec in its own sandbox (:mod:`.sandbox`), so no kernel is a fork of a
process that held the grader's configuration, environment or paths.

``spawn(entry, config, fds)`` hands the zygote a ``"module:function"`` to run and the child's
file descriptors (``SCM_RIGHTS``); it returns the child's pid.  The child gets ``fds[0]`` as its
stdout, ``fds[1]`` as its stderr, the others listed in ``config["fds"]``, a new session (its pid
is its process group), and ``config["cwd"]`` / ``config["env"]`` when given.
``returncode(pid)`` says how a child ended (the zygote is its parent and reaps it).
"""

from __future__ import annotations

import importlib
import json
import os
import signal
import socket
import threading
import time

from utils.grading import wire


class Zygote:
    """A fork server for grading processes (see the module's docstring)."""

    def __init__(self, preload: tuple[str, ...] = (), *, env: dict | None = None):
        """Start the zygote as a new interpreter (``env``: its environment) that imports
        ``preload``; nothing of this process's memory goes to its children."""
        import subprocess
        import sys

        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        self.process = subprocess.Popen(
            [sys.executable, "-m", "utils.grading.zygote", str(theirs.fileno()),
             json.dumps(list(preload))], pass_fds=[theirs.fileno()], stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL, env=env, start_new_session=True)
        theirs.close()
        self.socket, self.pid = ours, self.process.pid
        self.buffer, self.ended = b"", {}
        self.lock = threading.Lock()

    def spawn(self, entry: str, config: dict, fds: list[int]) -> int:
        """Fork a child that runs ``entry(config)``; returns its pid."""
        with self.lock:
            socket.send_fds(self.socket, [json.dumps({"entry": entry, "config": config})
                                          .encode() + b"\n"], fds)
            while True:
                message = self._message(timeout=60)
                if message is None:
                    raise RuntimeError("the zygote did not answer")
                if "pid" in message:
                    return int(message["pid"])

    def returncode(self, pid: int, timeout: float = 0.0) -> int | None:
        """How child ``pid`` ended (negative: killed by that signal), or ``None`` if it runs."""
        deadline = time.monotonic() + timeout
        while True:
            with self.lock:
                if pid in self.ended:
                    return self.ended[pid]
                message = self._message(timeout=min(0.05, max(0.0, deadline - time.monotonic())))
            if message is None and time.monotonic() >= deadline:
                return self.ended.get(pid)

    def _message(self, timeout: float):
        while b"\n" not in self.buffer:
            if not wire.wait_readable(self.socket.fileno(), timeout):
                return None
            chunk = self.socket.recv(65536)
            if not chunk:
                return None
            self.buffer += chunk
        line, self.buffer = self.buffer.split(b"\n", 1)
        message = json.loads(line)
        if "ended" in message:
            self.ended[int(message["ended"])] = int(message["code"])
        return message

    def close(self) -> None:
        self.socket.close()
        try:
            os.kill(self.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self.process.wait()


def _die_with_parent() -> None:
    """SIGKILL this process when its parent dies (Linux ``PR_SET_PDEATHSIG``)."""
    import ctypes

    try:
        ctypes.CDLL(None).prctl(1, signal.SIGKILL, 0, 0, 0)
    except AttributeError:      # not Linux
        pass


def _preload(names) -> None:
    for name in names:
        try:
            importlib.import_module(name)
        except ImportError:
            pass


def _serve(control) -> None:
    _die_with_parent()
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    for fd in range(3, 1024):           # whatever the parent had open stays the parent's
        if fd != control.fileno():
            try:
                os.close(fd)
            except OSError:
                pass
    children: set[int] = set()

    def reap() -> None:
        for pid in list(children):
            try:
                done, status = os.waitpid(pid, os.WNOHANG)
            except ChildProcessError:
                children.discard(pid)
                continue
            if done:
                children.discard(pid)
                control.sendall(json.dumps({"ended": pid, "code": os.waitstatus_to_exitcode(
                    status)}).encode() + b"\n")

    while True:
        reap()
        if not wire.wait_readable(control.fileno(), 0.05):
            continue
        message, fds, _, _ = socket.recv_fds(control, 1 << 20, 16)
        if not message:
            return
        request = json.loads(message)
        pid = os.fork()
        if pid == 0:
            control.close()
            _child(request["entry"], request["config"], fds)
        for fd in fds:
            os.close(fd)
        children.add(pid)
        control.sendall(json.dumps({"pid": pid}).encode() + b"\n")


def _child(entry: str, config: dict, fds: list[int]) -> None:
    try:
        _die_with_parent()              # no orphans when the grader is stopped
        os.setsid()
        null = os.open(os.devnull, os.O_RDONLY)
        os.dup2(null, 0)
        os.dup2(fds[0], 1)
        os.dup2(fds[1], 2)
        config["fds"] = list(fds[2:])
        keep = {0, 1, 2, *config["fds"]}
        for fd in range(3, 1024):
            if fd not in keep:
                try:
                    os.close(fd)
                except OSError:
                    pass
        import sys

        sys.stdin = open(0, closefd=False)
        sys.stdout = open(1, "w", buffering=1, closefd=False, errors="replace")
        sys.stderr = open(2, "w", buffering=1, closefd=False, errors="replace")
        signal.signal(signal.SIGINT, signal.default_int_handler)
        if config.get("env") is not None:
            os.environ.clear()
            os.environ.update(config["env"])
        if config.get("cwd"):
            os.chdir(config["cwd"])
        module, _, function = entry.partition(":")
        getattr(importlib.import_module(module), function)(config)
    finally:
        os._exit(1)


if __name__ == "__main__":   # a fresh zygote: python -m utils.grading.zygote FD PRELOAD_JSON
    import sys

    _control = socket.socket(fileno=int(sys.argv[1]))
    _preload(json.loads(sys.argv[2]))
    _serve(_control)
    os._exit(0)
