"""The student's kernel's cage: bubblewrap, cgroups, a fresh exec, the lab's rules.

Why a maintained tool: the cage used to be ~750 lines of hand-written mounts, users, sweeps and a
fork server.  Now the worker (:mod:`.worker`) starts every kernel with :func:`kernel_command`, a
fresh ``exec`` of ``python -m utils.grading.kernel`` -- never a fork of a process that held the
grader's configuration, environment or paths -- inside `bubblewrap <https://github.com/
containers/bubblewrap>`_ (``bwrap``), when the grader runs as root:

- its own PID, mount, network, IPC and UTS namespaces, a fresh ``/proc``, ``--die-with-parent``
  (when the kernel's bwrap ends, every process inside ends: bwrap's init reaps zombies, and the
  PID namespace dies with it -- no per-user sweeps);
- a read-only view of the system (``/usr``, ``/etc``), Python and its packages, the course's
  ``utils/`` and ``data/`` and the zoo's checkpoints, with the secret ones (:data:`SECRET_CHECKPOINTS`)
  reading as empty; no ``solutions/``, hidden tests, submissions or ``.git``; a private ``/tmp``
  tmpfs (also home and working folder);
- a whitelisted environment (``--clearenv`` then the worker's list, :func:`kernel_env`);
- cgroup limits where the machine lets the grader write them (:class:`Cgroup`; v1 ``pids``,
  ``memory``, ``cpu`` controllers): processes, memory of the whole kernel, CPU = the cores given to
  it; rlimits inside in any case (address space per process, file size, open files, no cores,
  and the process count when there is no ``pids`` cgroup).

Inside, :func:`enter` (run by the kernel before any student code) imports the forbidden modules,
stubs their functions (:func:`apply_rules`), hides their files (``mount`` of util-linux: bwrap
grants ``CAP_SYS_ADMIN`` for this step only), then drops to an unprivileged uid (all
capabilities go with root; bwrap has set ``no_new_privs``).

Without root or bwrap (:func:`unavailable` says why) the kernel is still a fresh exec with the
whitelisted environment, rlimits and the rules, but :data:`UNPROTECTED` is not protected; the
grader says so on stderr and in every gradebook row.
"""

from __future__ import annotations

import gc
import importlib
import os
import resource
import shutil
import signal
import subprocess
import sys
import types
import uuid
from pathlib import Path

SECRET_CHECKPOINTS = ("face_blackbox",)   # the one list: never sent to, named by or read in a kernel
OPTIONAL_KEYS = ("memory.memsw.limit_in_bytes", "memory.swappiness")  # absent without swap
KERNEL_UID = 65534 - 100                  # the kernels' unprivileged uid (no passwd entry needed)
UNPROTECTED = ("without the sandbox the kernel sees the machine's files (solutions/ included, "
               "unless unreadable to its user), shares the network, PID and IPC namespaces, and "
               "processes that leave its session may outlive it")


# ============================================================================================
# grader side: is the sandbox possible, cgroups, the command line


def unavailable() -> str | None:
    """``None`` when kernels can be sandboxed here, else why not."""
    if os.geteuid() != 0:
        return "the grader does not run as root"
    if shutil.which("bwrap") is None:
        return "bubblewrap (bwrap) is not installed (Debian: apt-get install bubblewrap)"
    probe = subprocess.run(["bwrap", "--unshare-all", "--die-with-parent", "--ro-bind", "/", "/",
                            "--proc", "/proc", "--dev", "/dev", "true"], capture_output=True)
    if probe.returncode != 0:
        return f"bwrap cannot create namespaces here ({probe.stderr.decode(errors='replace')[:120]})"
    return None


class Cgroup:
    """One kernel's cgroup (v1): ``pids``, ``memory`` and ``cpu`` where they are writable.

    Made under the grader's own cgroup of each controller, so an outer container's limits still
    apply.  ``missing`` names the controllers that could not be used.
    """

    ROOT = Path("/sys/fs/cgroup")

    def __init__(self, *, processes: int, memory: int, cpus: int):
        self.name = f"advx-kernel-{uuid.uuid4().hex[:12]}"
        self.paths: dict[str, Path] = {}
        self.missing: list[str] = []
        own = _own_cgroups()
        settings = {"pids": {"pids.max": processes},
                    "memory": {"memory.limit_in_bytes": memory,
                               "memory.memsw.limit_in_bytes": memory,
                               "memory.swappiness": 0},      # over the limit: killed, not swapped
                    "cpu": {"cpu.cfs_period_us": 100_000, "cpu.cfs_quota_us": 100_000 * cpus}}
        for controller, values in settings.items():
            folder = self.ROOT / controller / own.get(controller, "").lstrip("/") / self.name
            try:
                folder.mkdir()
            except OSError:
                self.missing.append(controller)
                continue
            self.paths[controller] = folder
            for key, value in values.items():
                try:
                    (folder / key).write_text(str(value))
                except OSError:
                    if key not in OPTIONAL_KEYS:
                        self.missing.append(f"{controller} ({key})")

    def enforces_memory(self, probe_bytes: int = 64 << 20) -> bool:
        """Whether the machine really stops this cgroup at its memory limit.

        A limit that can be written is not yet a limit: some kernels and sandboxes account memory
        without enforcing it, and where swap accounting is off a limit only moves pages to swap.
        So the limit is lowered to ``probe_bytes`` and a process that joins the cgroup touches
        twice as much: enforced when it is stopped.  (A probe cgroup only: the limit stays low.)
        """
        folder = self.paths.get("memory")
        if folder is None:
            return False
        try:
            (folder / "memory.limit_in_bytes").write_text(str(probe_bytes))
        except OSError:
            return False
        try:
            (folder / "memory.memsw.limit_in_bytes").write_text(str(probe_bytes))
        except OSError:
            pass
        hog = (f"import os; open({str(folder / 'cgroup.procs')!r}, 'w').write(str(os.getpid()));"
               f"b = b'x' * {2 * probe_bytes}; print('survived')")
        try:
            run = subprocess.run([sys.executable, "-c", hog], capture_output=True, timeout=60)
        except subprocess.TimeoutExpired:
            return True            # stalled at the limit: not allowed to have it
        return b"survived" not in run.stdout

    def procs_files(self) -> list[str]:
        return [str(p / "cgroup.procs") for p in self.paths.values()]

    def processes(self) -> list[int]:
        found: set[int] = set()
        for folder in self.paths.values():
            try:
                found.update(int(v) for v in (folder / "cgroup.procs").read_text().split())
            except OSError:
                pass
        return sorted(found)

    def remove(self) -> None:
        """Kill whatever is left in it (SIGKILL) and remove it (dying tasks keep it busy a while)."""
        import time

        for _ in range(100):
            for pid in self.processes():
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            for controller, folder in list(self.paths.items()):
                try:
                    folder.rmdir()
                    del self.paths[controller]
                except OSError:
                    pass
            if not self.paths:
                return
            time.sleep(0.05)


def _own_cgroups() -> dict[str, str]:
    out = {}
    try:
        for line in Path("/proc/self/cgroup").read_text().splitlines():
            _, controllers, path = line.split(":", 2)
            for controller in controllers.split(","):
                out[controller] = path
    except OSError:
        pass
    return out


def view_paths(repo: Path) -> tuple[list[str], list[str]]:
    """``(binds, hidden)``: what a kernel sees read-only, and the files that read as empty."""
    from utils.paths import checkpoint_dir, data_dir
    import site

    binds = {"/usr", "/etc", sys.base_prefix, sys.prefix, sys.exec_prefix,
             os.path.dirname(os.path.realpath(sys.executable)), str(repo / "utils"),
             str(data_dir()), str(checkpoint_dir())}
    binds.update(p for p in site.getsitepackages() if os.path.isdir(p))
    hidden = [str(checkpoint_dir() / f"{name}.pt") for name in SECRET_CHECKPOINTS]
    return sorted(os.path.realpath(p) for p in binds if os.path.exists(p)), hidden


def kernel_env(repo: Path, threads: int, home: str) -> dict:
    """The kernel's whole environment: a whitelist, nothing of the grader's own."""
    env = {
        "PATH": f"{os.path.dirname(sys.executable)}:/usr/local/bin:/usr/bin:/bin",
        "HOME": home, "TMPDIR": "/tmp" if home.startswith("/tmp/") else home,
        "LANG": "C.UTF-8", "PYTHONPATH": str(repo), "PYTHONNOUSERSITE": "1",
        "PYTHONDONTWRITEBYTECODE": "1", "PYTHONUNBUFFERED": "1", "MPLBACKEND": "Agg",
        "MPLCONFIGDIR": f"{home}/.matplotlib", "CUDA_VISIBLE_DEVICES": "", "ADVX_DEVICE": "cpu",
        "MALLOC_ARENA_MAX": "2", "TQDM_DISABLE": "1", "ADVX_GRADING": "1",
    }
    for name in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        env[name] = str(threads)      # torch too: the kernel calls torch.set_num_threads(threads)
    from utils.paths import checkpoint_dir, data_dir

    env["ADVX_DATA_DIR"], env["ADVX_CHECKPOINT_DIR"] = str(data_dir()), str(checkpoint_dir())
    return env


def kernel_command(config_json: str, *, repo: Path, env: dict, tmp_size: int,
                   cgroup: Cgroup | None, empty: str) -> list[str]:
    """The argv that starts a sandboxed kernel (a fresh exec; join the cgroup, then bwrap);
    ``empty``: an empty file of the grader's, shown in place of each secret file."""
    binds, hidden = view_paths(repo)
    argv = ["bwrap", "--unshare-pid", "--unshare-net", "--unshare-ipc", "--unshare-uts",
            "--unshare-cgroup-try", "--die-with-parent", "--new-session",
            "--hostname", "advx-kernel", "--clearenv"]
    for key, value in env.items():
        argv += ["--setenv", key, value]
    argv += ["--size", str(tmp_size), "--tmpfs", "/tmp"]     # first: binds under /tmp stay visible
    for top in ("bin", "sbin", "lib", "lib64", "lib32", "libx32"):   # merged-/usr symlinks
        host = Path("/") / top
        if host.is_symlink():
            argv += ["--symlink", os.readlink(host), f"/{top}"]
        elif host.is_dir():
            binds.append(str(host))
    parents = {str(p) for path in binds for p in Path(path).parents if str(p) != "/"}
    for folder in sorted(parents - set(binds)):       # bwrap would make them 0700: root's only
        argv += ["--perms", "0755", "--dir", folder]
    for path in sorted(set(binds)):
        argv += ["--ro-bind", path, path]
    argv += ["--ro-bind-try", "/sys/devices/system/cpu", "/sys/devices/system/cpu",
             "--proc", "/proc", "--dev", "/dev"]
    for path in hidden:       # an empty regular file: bwrap's binds refuse device nodes' reads
        if os.path.isfile(path):
            argv += ["--ro-bind", empty, path]
    for folder in ("/tmp/work", env["HOME"]):
        argv += ["--perms", "1777", "--dir", folder]
    argv += ["--chdir", "/tmp/work"]
    for cap in ("CAP_SETUID", "CAP_SETGID", "CAP_SYS_ADMIN"):   # for enter(); dropped there
        argv += ["--cap-add", cap]
    argv += ["--", sys.executable, "-m", "utils.grading.kernel", config_json]
    if cgroup is not None and cgroup.paths:
        join = 'while [ "$1" != -- ]; do echo $$ > "$1" || exit 97; shift; done; shift; exec "$@"'
        argv = ["/bin/sh", "-c", join, "sh", *cgroup.procs_files(), "--", *argv]
    return argv


def kernel_pid(outer: int) -> int | None:
    """The host pid of the kernel's Python under bwrap ``outer`` (to interrupt it)."""
    children: dict[int, list[int]] = {}
    for entry in os.scandir("/proc"):
        if entry.name.isdigit():
            try:
                with open(f"/proc/{entry.name}/stat") as handle:
                    ppid = int(handle.read().rsplit(")", 1)[1].split()[1])
            except (OSError, ValueError, IndexError):
                continue
            children.setdefault(ppid, []).append(int(entry.name))
    level = [outer]
    for _ in range(4):
        for pid in level:
            try:
                with open(f"/proc/{pid}/cmdline", "rb") as handle:
                    if b"utils.grading.kernel" in handle.read() and pid != outer and \
                            not _is_bwrap(pid):
                        return pid
            except OSError:
                continue
        level = [c for pid in level for c in children.get(pid, [])]
    return None


def _is_bwrap(pid: int) -> bool:
    try:
        return os.path.basename(os.readlink(f"/proc/{pid}/exe")) == "bwrap"
    except OSError:
        return False


# ============================================================================================
# kernel side: rules, hiding, limits, dropping root


def enter(config: dict) -> None:
    """Before any student code: the lab's rules, their files hidden, limits, an unprivileged uid."""
    keep = ()
    if config.get("serve_blackbox"):
        from utils.grading import blackbox

        keep = blackbox.install()
    rules = apply_rules(config.get("forbid", []), lab=config.get("lab", "?"),
                        why=config.get("why", "write it yourself"), keep=keep)
    rules.files.update(hidden_checkpoints(config.get("hide", [])))
    if config.get("sandboxed"):
        script = [f"mount -t tmpfs -o ro,size=4k,mode=0555 advx-hidden {_q(d)}"
                  for d in sorted(rules.dirs)]
        script += [f"mount --bind /dev/null {_q(f)}" for f in sorted(rules.files)
                   if not any(f.startswith(d + "/") for d in rules.dirs)]
        if script:
            subprocess.run(["/bin/sh", "-ec", "\n".join(script)], check=True,
                           stdout=subprocess.DEVNULL)
    limits = config.get("limits", {})
    for name, value in (("AS", limits.get("address_space")), ("FSIZE", limits.get("file_size")),
                        ("NPROC", limits.get("nproc")), ("CORE", 0), ("NOFILE", 1024)):
        if value is not None:
            resource.setrlimit(getattr(resource, f"RLIMIT_{name}"), (value, value))
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)     # a too-large write raises instead
    if os.geteuid() == 0 and config.get("uid"):
        os.setgroups([])
        os.setresgid(config["uid"], config["uid"], config["uid"])
        os.setresuid(config["uid"], config["uid"], config["uid"])
        try:
            os.setuid(0)
        except PermissionError:
            pass
        else:
            raise RuntimeError("privileges could not be dropped")


def hidden_checkpoints(names) -> list[str]:
    """The files of the zoo checkpoints a lab hides (``set_grading(hide=...)``): they read as
    empty in the kernel, so ``zoo.load`` fails its checksum instead of handing out the model."""
    from utils.paths import checkpoint_dir

    out = []
    for name in names:
        if isinstance(name, str) and name.isidentifier():
            path = checkpoint_dir() / f"{name}.pt"
            if path.exists():
                out.append(os.path.realpath(path))
    return out


def _q(path: str) -> str:
    import shlex

    return shlex.quote(path)


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
