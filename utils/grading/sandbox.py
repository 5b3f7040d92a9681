"""The student's kernel's cage: its own user, its own view of the files, limits, the lab's rules.

Run as root (as the grader does in CI), a kernel is started like this (:mod:`.kernel`):

1. **Rules first, as root** (:func:`apply_rules`): the modules a lab forbids (e.g. ``utils.attacks``
   in lab 01) are imported and every function they define gets a body that raises
   ``PermissionError`` -- the original code objects are gone from the process, not just renamed.
2. **A view of the file system** (:func:`enter_view`): a new mount namespace (and network and IPC
   namespaces: no network, no shared memory with other kernels) whose root is a fresh tmpfs
   holding read-only bind mounts of only what a kernel needs: the system (``/usr``, ``/etc``),
   Python and its packages, the course's ``utils/`` and ``data/``.  Not there: ``solutions/``,
   the hidden tests, the submissions, ``.git``, the rest of the machine.  On top, the secret
   checkpoints (the face black box) and the files of forbidden modules read as empty files.
   ``/tmp`` (also the kernel's home and working folder) is a small private tmpfs the grader never
   reads.  ``pivot_root`` and a detached unmount leave no way back to the old root.
3. **Limits** (:func:`apply_limits`): address space (memory), processes, file size, open files,
   no core dumps.
4. **An unprivileged user** (:func:`drop_privileges`): one dedicated user per parallel job slot
   (``advx-grader-<k>``, created when missing), ``no_new_privs`` set.  After the submission the
   grader kills every process of that user (:func:`sweep`), whatever its process group.

Root without namespaces (``isolation="user"``) keeps steps 1, 3 and 4; without root
(``isolation="none"``) only the rules apply, in-process, and the kernel runs as the grader's
user.  Verdicts are computed outside the kernel in every case.
"""

from __future__ import annotations

import ctypes
import gc
import importlib
import os
import platform
import pwd
import resource
import signal
import subprocess
import sys
import time
import types
from pathlib import Path

USER_PREFIX = "advx-grader-"

# mount(2) flags
MS_RDONLY, MS_NOSUID, MS_NODEV, MS_REMOUNT = 1, 2, 4, 32
MS_BIND, MS_REC, MS_PRIVATE = 4096, 16384, 1 << 18
MNT_DETACH = 2
CLONE_NEWNS, CLONE_NEWIPC, CLONE_NEWNET = 0x00020000, 0x08000000, 0x40000000
PR_SET_NO_NEW_PRIVS, PR_SET_PDEATHSIG = 38, 1
SYS_PIVOT_ROOT = {"x86_64": 155, "aarch64": 41}


# ============================================================================================
# users (grader side)


def slot_user(slot: int) -> tuple[int, int]:
    """``(uid, gid)`` of the job slot's user, created (``useradd --system``) when missing."""
    name = f"{USER_PREFIX}{slot}"
    try:
        entry = pwd.getpwnam(name)
    except KeyError:
        subprocess.run(["useradd", "--system", "--no-create-home", "--home-dir", "/nonexistent",
                        "--shell", "/usr/sbin/nologin", "--user-group", name],
                       check=False, capture_output=True)
        entry = pwd.getpwnam(name)   # KeyError here: useradd is missing or failed
    return entry.pw_uid, entry.pw_gid


def claim_users(count: int) -> tuple[list[tuple[int, int]], list[int]]:
    """``count`` slot users no other grading run is using now: ``(users, locks)``.

    Each user is held by an exclusive lock on ``/tmp/advx-grader-<k>.lock`` for as long as the
    returned file descriptors stay open (the grader's lifetime), so two runs on one machine never
    share a user -- and never kill each other's kernels when they sweep theirs.
    """
    import fcntl

    users, locks, slot = [], [], 0
    while len(users) < count:
        slot += 1
        fd = os.open(f"/tmp/{USER_PREFIX}{slot}.lock", os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW,
                     0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            continue
        users.append(slot_user(slot))
        locks.append(fd)
    return users, locks


def processes_of(uid: int) -> list[int]:
    found = []
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            with open(f"/proc/{entry.name}/status") as handle:
                for line in handle:
                    if line.startswith("Uid:"):
                        if uid in (int(v) for v in line.split()[1:]):
                            found.append(int(entry.name))
                        break
        except OSError:
            continue
    return found


def sweep(uid: int, rounds: int = 20) -> int:
    """Kill every process that runs as ``uid`` (forks, daemons, new sessions: all of them)."""
    if uid == 0 or uid == os.getuid():
        raise ValueError("refusing to sweep the grader's own user")
    killed = 0
    for _ in range(rounds):
        pids = processes_of(uid)
        if not pids:
            break
        for pid in pids:
            try:
                os.kill(pid, signal.SIGKILL)
                killed += 1
            except ProcessLookupError:
                pass
        time.sleep(0.05)
    return killed


def isolation_available() -> str | None:
    """``None`` when full isolation works here, else the reason it does not."""
    if os.geteuid() != 0:
        return "the grader does not run as root"
    if platform.machine() not in SYS_PIVOT_ROOT:
        return f"no pivot_root syscall number for {platform.machine()}"
    if not Path("/usr/sbin/useradd").exists() and not Path("/usr/bin/useradd").exists():
        return "useradd is missing (needed to create the kernels' users)"
    probe = subprocess.run([sys.executable, "-c",
                            "import ctypes, os; libc = ctypes.CDLL(None, use_errno=True);"
                            f"os._exit(0 if libc.unshare({CLONE_NEWNS | CLONE_NEWNET}) == 0 else 1)"],
                           capture_output=True)
    if probe.returncode != 0:
        return "mount/network namespaces are not allowed here (unshare failed)"
    return None


# ============================================================================================
# the view (kernel side, as root, before dropping privileges)


def _libc():
    libc = ctypes.CDLL(None, use_errno=True)
    libc.mount.argtypes = [ctypes.c_char_p, ctypes.c_char_p, ctypes.c_char_p, ctypes.c_ulong,
                           ctypes.c_char_p]
    libc.umount2.argtypes = [ctypes.c_char_p, ctypes.c_int]
    return libc


def _check(result: int, what: str) -> None:
    if result != 0:
        error = ctypes.get_errno()
        raise OSError(error, f"{what}: {os.strerror(error)}")


def _mount(libc, source, target, fstype, flags, data=None) -> None:
    enc = lambda v: None if v is None else str(v).encode()
    _check(libc.mount(enc(source), enc(target), enc(fstype), flags, enc(data)),
           f"mount {source} on {target}")


def _bind(libc, source: str, target: str, *, writable: bool = False, devices: bool = False) -> None:
    _mount(libc, source, target, None, MS_BIND | MS_REC)
    flags = MS_BIND | MS_REMOUNT | MS_NOSUID | (0 if writable else MS_RDONLY) | (0 if devices else MS_NODEV)
    _mount(libc, None, target, None, flags)


def _make_target(root: Path, path: str, *, is_dir: bool) -> Path:
    target = root / path.lstrip("/")
    if is_dir:
        target.mkdir(mode=0o755, parents=True, exist_ok=True)
    else:
        target.parent.mkdir(mode=0o755, parents=True, exist_ok=True)
        target.touch(exist_ok=True)
    return target


def enter_view(view: dict) -> None:
    """Put this process in a new mount/net/IPC namespace whose root is ``view``'s tree.

    ``view``: ``mount_point`` (an empty host folder), ``binds`` (absolute paths shown
    read-only at the same place), ``hide`` (files that read as empty), ``hide_dirs`` (folders
    that look empty), ``tmp_size`` (bytes of the private ``/tmp``).
    """
    libc = _libc()
    os.umask(0o022)
    _check(libc.unshare(CLONE_NEWNS | CLONE_NEWIPC | CLONE_NEWNET), "unshare")
    _mount(libc, None, "/", None, MS_REC | MS_PRIVATE)
    root = Path(view["mount_point"])
    _mount(libc, "advx-view", root, "tmpfs", MS_NOSUID | MS_NODEV, "size=1m,mode=0755")
    # the private /tmp first: a course or Python installed under /tmp is then bound on top of it
    # (mounted after the binds, the tmpfs would hide them and the kernel could not start)
    tmp = _make_target(root, "/tmp", is_dir=True)
    _mount(libc, "advx-tmp", tmp, "tmpfs", MS_NOSUID | MS_NODEV,
           f"size={int(view['tmp_size'])},mode=1777")
    binds = [os.path.realpath(p) for p in view["binds"]]
    for top in ("bin", "sbin", "lib", "lib64", "lib32", "libx32"):   # merged-/usr symlinks
        host = Path("/") / top
        if host.is_symlink():
            (root / top).symlink_to(os.readlink(host))
        elif host.is_dir():
            binds.append(str(host))
    done: list[str] = []
    for path in sorted(set(binds)):
        if not os.path.exists(path) or any(path == d or path.startswith(d + "/") for d in done):
            continue   # missing, or already shown by a folder around it
        _bind(libc, path, _make_target(root, path, is_dir=os.path.isdir(path)))
        done.append(path)
    _bind(libc, "/proc", _make_target(root, "/proc", is_dir=True))
    _bind(libc, "/sys", _make_target(root, "/sys", is_dir=True))
    for node in ("null", "zero", "full", "random", "urandom"):
        _bind(libc, f"/dev/{node}", _make_target(root, f"/dev/{node}", is_dir=False),
              writable=True, devices=True)
    for name, target in (("fd", "/proc/self/fd"), ("stdin", "/proc/self/fd/0"),
                         ("stdout", "/proc/self/fd/1"), ("stderr", "/proc/self/fd/2")):
        (root / "dev" / name).symlink_to(target)
    shm = _make_target(root, "/dev/shm", is_dir=True)
    _mount(libc, "advx-shm", shm, "tmpfs", MS_NOSUID | MS_NODEV, "size=64m,mode=1777")
    for path in view.get("hide", ()):
        target = root / path.lstrip("/")
        if target.exists() and not target.is_dir():
            _mount(libc, "/dev/null", target, None, MS_BIND)
    for path in view.get("hide_dirs", ()):
        target = root / path.lstrip("/")
        if target.is_dir():
            _mount(libc, "advx-hidden", target, "tmpfs", MS_NOSUID | MS_NODEV | MS_RDONLY,
                   "size=4k,mode=0555")
    old = root / ".old-root"
    old.mkdir()
    _check(libc.syscall(SYS_PIVOT_ROOT[platform.machine()], str(root).encode(),
                        str(old).encode()), "pivot_root")
    os.chdir("/")
    _check(libc.umount2(b"/.old-root", MNT_DETACH), "umount old root")
    os.rmdir("/.old-root")
    _mount(libc, None, "/", None, MS_BIND | MS_REMOUNT | MS_RDONLY | MS_NOSUID | MS_NODEV)


def apply_limits(limits: dict) -> None:
    """Resource limits for the kernel and everything it starts."""
    if limits.get("memory"):
        resource.setrlimit(resource.RLIMIT_AS, (limits["memory"], limits["memory"]))
    if limits.get("processes"):
        resource.setrlimit(resource.RLIMIT_NPROC, (limits["processes"], limits["processes"]))
    if limits.get("file_size"):
        resource.setrlimit(resource.RLIMIT_FSIZE, (limits["file_size"], limits["file_size"]))
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)   # a too-large write raises instead
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    resource.setrlimit(resource.RLIMIT_NOFILE, (1024, 1024))


def drop_privileges(uid: int, gid: int) -> None:
    """Become ``uid:gid`` for good (no supplementary groups, no way back, no setuid gains)."""
    libc = _libc()
    _check(libc.prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0), "prctl(no_new_privs)")
    os.setgroups([])
    os.setresgid(gid, gid, gid)
    os.setresuid(uid, uid, uid)
    try:
        os.setuid(0)
    except PermissionError:
        return
    raise RuntimeError("privileges could not be dropped")


def die_with_parent() -> None:
    """Ask the kernel to send this process SIGKILL when its parent (the grader) dies."""
    try:
        _libc().prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    except AttributeError:      # not Linux
        pass


# ============================================================================================
# the lab's rules: forbidden functions raise (kernel side, before the view hides their files)


class _Rules:
    def __init__(self, lab: str, why: str):
        self.lab, self.why = lab, why
        self.files: set[str] = set()
        self.dirs: set[str] = set()


def _stub_code(function: types.FunctionType, message: str) -> types.CodeType:
    freevars = function.__code__.co_freevars
    lines = ["def _outer():"]
    lines += [f"    {name} = None" for name in freevars]
    lines += ["    def _stub(*args, **kwargs):"]
    if freevars:
        lines.append(f"        ({', '.join(freevars)},)")
    lines += [f"        raise PermissionError({message!r})", "    return _stub"]
    namespace: dict = {}
    exec(compile("\n".join(lines), "<grading rule>", "exec"), namespace)
    return namespace["_outer"]().__code__


def _stub(function, label: str, rules: _Rules, seen: set) -> None:
    if not isinstance(function, types.FunctionType) or id(function) in seen:
        return
    seen.add(id(function))
    if function.__code__.co_filename == "<grading rule>":
        return
    message = (f"{label} is not available while lab {rules.lab} is graded: {rules.why}")
    for cell in function.__closure__ or ():
        try:
            inner = cell.cell_contents
        except ValueError:
            continue
        if isinstance(inner, types.FunctionType) and inner.__qualname__.startswith(
                function.__qualname__.split(".<locals>")[0]):
            _stub(inner, label, rules, seen)
    wrapped = getattr(function, "__wrapped__", None)
    if wrapped is not None:
        _stub(wrapped, label, rules, seen)
    function.__code__ = _stub_code(function, message)


def _functions_of_class(cls) -> list:
    out = []
    for value in vars(cls).values():
        if isinstance(value, (staticmethod, classmethod)):
            value = value.__func__
        if isinstance(value, property):
            out += [f for f in (value.fget, value.fset, value.fdel) if f is not None]
        elif isinstance(value, types.FunctionType):
            out.append(value)
    return out


def _source_files(module) -> list[str]:
    found = []
    path = getattr(module, "__file__", None)
    if path:
        path = os.path.realpath(path)
        found.append(path)
        stem = Path(path).stem
        cache = Path(path).parent / "__pycache__"
        if cache.is_dir():
            found += [str(p) for p in cache.glob(f"{stem}.*.pyc")]
    return found


def apply_rules(forbid: list[str], *, lab: str, why: str, keep: tuple = ()) -> _Rules:
    """Make every forbidden name raise ``PermissionError``; returns the files/folders to hide.

    ``forbid`` entries are ``"package.module"`` (every function defined in it and its
    submodules) or ``"package.module:Name"`` (one function, or every method of one class).
    ``keep`` lists classes whose methods are served by the grader instead (the black box).
    """
    rules = _Rules(lab, why)
    whole_modules, seen = [], set()
    for entry in forbid:
        module_name, _, attribute = entry.partition(":")
        try:
            module = importlib.import_module(module_name)
        except ImportError:
            continue   # not installed: nothing to take away
        if not attribute:
            whole_modules.append(module_name)
            if hasattr(module, "__path__"):
                _import_all(module)
            continue
        target = module
        for part in attribute.split("."):
            target = getattr(target, part)
        if target in keep:
            continue
        if isinstance(target, type):
            for function in _functions_of_class(target):
                _stub(function, f"{module_name}.{attribute}", rules, seen)
            rules.files.update(_source_files(sys.modules.get(target.__module__)))
        else:
            _stub(target, f"{module_name}.{attribute}", rules, seen)
            defining = sys.modules.get(getattr(target, "__module__", ""), None)
            if defining is not None:
                rules.files.update(_source_files(defining))
    if whole_modules:
        files: dict[str, str] = {}
        for name, module in list(sys.modules.items()):
            if any(name == m or name.startswith(m + ".") for m in whole_modules) and module:
                for path in _source_files(module):
                    files[path] = name
                if hasattr(module, "__path__") and name in whole_modules:
                    rules.dirs.update(os.path.realpath(p) for p in module.__path__)
        rules.files.update(files)
        sources = {p for p in files if p.endswith(".py")}
        for obj in gc.get_objects():
            if isinstance(obj, types.FunctionType) and obj.__code__.co_filename in sources:
                module = files[obj.__code__.co_filename]
                _stub(obj, f"{module}.{obj.__qualname__}", rules, seen)
    return rules


def _import_all(package) -> None:
    import pkgutil

    for info in pkgutil.walk_packages(package.__path__, package.__name__ + "."):
        try:
            importlib.import_module(info.name)
        except Exception:  # an optional submodule that needs something not installed
            continue
