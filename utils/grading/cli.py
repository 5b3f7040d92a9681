"""Grade a folder of submissions, in parallel, into a gradebook.

    python -m utils.grading SUBMISSION [SUBMISSION ...] [--gradebook gradebook.csv] [--jobs N]
    python -m utils.grading leaderboard gradebook.csv --lab LAB --measure NAME

Each submission gets its own trusted worker process (:mod:`.worker`) and, through it, its own
caged kernel; ``--jobs`` of them run at once (default: one per CPU core), each in its own job
slot with its own unprivileged user.  The gradebook is rewritten atomically after every
submission, keeping the rows of earlier runs.
"""

from __future__ import annotations

import argparse
import json
import os
import queue
import signal
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from utils.grading.gradebook import Check, Result, table, write_gradebook
from utils.grading.notebooks import find_submissions, short, solution_notebooks

DEFAULT_TIMEOUT = 600
DEFAULT_CELL_TIMEOUT = 300
DEFAULT_MEMORY = 8 << 30          # address space of a kernel (bytes)
DEFAULT_OUTPUT = 2 << 20          # bytes a kernel may print
DEFAULT_DISK = 256 << 20          # bytes of its private /tmp
KERNEL_PROCESSES = 256            # processes and threads of one kernel, all of them together


def _repo_root() -> Path:
    return Path(__file__).resolve().parents[2]


def environment(isolation: str) -> tuple[str, str | None]:
    """``(mode, note)``: ``sandbox`` (bubblewrap + cgroups, :mod:`.sandbox`) or ``none``, and
    what is not protected when not sandboxed (printed on stderr and put in every row)."""
    from utils.grading.sandbox import UNPROTECTED, unavailable

    reason = unavailable() if isolation != "none" else "--isolation none"
    if reason is None:
        return "sandbox", None
    if isolation == "sandbox":
        raise RuntimeError(f"the sandbox cannot be built here: {reason}")
    hidden = [p for p in {os.path.realpath(sys.base_prefix), os.path.realpath(sys.prefix)}
              if not _readable_by_anyone(p)]
    if os.geteuid() == 0 and hidden:    # kernels never run as root: they would not start
        raise RuntimeError(f"without the sandbox ({reason}) kernels run as an unprivileged user, "
                           f"who cannot read {hidden[0]}: install bubblewrap")
    return "none", f"graded WITHOUT the sandbox ({reason}): {UNPROTECTED}"


def _readable_by_anyone(path: str) -> bool:
    """Whether every folder down to ``path`` lets other users in (and ``path`` be read)."""
    return all(os.stat(p).st_mode & 0o005 == 0o005 for p in [path, *map(str, Path(path).parents)])


def _worker_env(threads: int) -> dict:
    env = dict(os.environ)
    env.update({"OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads),
                "OPENBLAS_NUM_THREADS": str(threads),
                "CUDA_VISIBLE_DEVICES": "", "ADVX_DEVICE": "cpu", "MPLBACKEND": "Agg",
                "PYTHONUNBUFFERED": "1", "TQDM_DISABLE": "1",
                "PYTHONPATH": os.pathsep.join([str(_repo_root())] + [
                    p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p])})
    return env


class Batch:
    """Settings shared by every submission of one run."""

    def __init__(self, *, solutions: Path, timeout: int, cell_timeout: int, jobs: int,
                 isolation: str, memory: int, output_limit: int, disk: int):
        self.solutions, self.timeout, self.cell_timeout = solutions, timeout, cell_timeout
        self.jobs = jobs
        self.threads = max(1, (os.cpu_count() or 1) // jobs)    # the cores given to one kernel
        self.mode, self.note = environment(isolation)
        self.repo = _repo_root()
        # address space per process: --memory, or 8 GiB at least where a memory cgroup caps the
        # whole kernel (torch alone maps ~2 GiB of address space it never uses)
        self.limits = {"memory": memory, "address_space": memory, "file_size": 64 << 20,
                       "output": output_limit}
        self.disk = disk
        from utils.data import prefetch
        from utils.paths import checkpoint_dir

        checkpoint_dir()
        prefetch()      # kernels read data/ but cannot fetch: a missing file would zero a class
        if self.mode == "sandbox":
            from utils.grading.sandbox import Cgroup

            probe = Cgroup(processes=KERNEL_PROCESSES, memory=memory, cpus=self.threads)
            if "memory" in probe.paths and not probe.enforces_memory():
                probe.missing.append("memory (written but not enforced here)")
            usable = [c for c in probe.paths if not any(m.startswith(c) for m in probe.missing)]
            probe.remove()
            if "memory" in usable:
                self.limits["address_space"] = max(memory, DEFAULT_MEMORY)
            if probe.missing:
                self.limits["nproc"] = KERNEL_PROCESSES
                self.note = (f"cgroup controller(s) {', '.join(probe.missing)} not usable: "
                             "no limit on the whole kernel's " + ", ".join(
                                 {"pids": "processes (RLIMIT_NPROC per uid instead)",
                                  "memory": "memory (per-process address space only)",
                                  "cpu": "CPU time (threads still set to its cores)"}.get(
                                     m.split()[0], m) for m in probe.missing))
        else:
            self.limits["nproc"] = KERNEL_PROCESSES

    def config(self, student: str, path: Path, root: Path | None, slot: int) -> tuple[dict, str]:
        from utils.grading.sandbox import KERNEL_UID, kernel_env

        scratch = tempfile.mkdtemp(prefix="advx-grade-")
        os.chmod(scratch, 0o711)
        kernel = {"limits": self.limits, "threads": self.threads, "uid": KERNEL_UID + slot}
        if self.mode == "sandbox":
            home = "/tmp/home"
            kernel.update(sandboxed=True, workdir="/tmp/work", tmp_size=self.disk,
                          cgroup={"processes": KERNEL_PROCESSES, "memory": self.limits["memory"],
                                  "cpus": self.threads})
        else:
            home = os.path.join(scratch, "home")
            os.makedirs(home)
            kernel["workdir"] = home
            if os.geteuid() == 0:
                os.chown(home, KERNEL_UID + slot, KERNEL_UID + slot)
        return {
            "student": student, "submission": str(path), "root": str(root) if root else None,
            "solutions": str(self.solutions), "timeout": self.timeout,
            "cell_timeout": self.cell_timeout, "limits": self.limits, "kernel": kernel,
            "kernel_env": kernel_env(self.repo, self.threads, home), "repo": str(self.repo),
            "threads": self.threads, "scratch": scratch, "isolation_note": self.note,
        }, scratch

    def run(self, student: str, path: Path, root: Path | None, slot: int) -> Result:
        started = time.monotonic()
        config, scratch = self.config(student, path, root, slot)
        config.update(spawned=time.time(), cwd=scratch, env=_worker_env(self.threads))
        result = Result(student, "?", str(path))
        out_r, out_w = os.pipe()
        err_r, err_w = os.pipe()
        try:
            pid = self.zygote.spawn("utils.grading.worker:run", config, [out_w, err_w])
        finally:
            os.close(out_w)
            os.close(err_w)
        try:
            stdout, stderr, finished = _collect(out_r, err_r, started + self.timeout + 60)
            if not finished:
                _kill_group(pid)
                result.problems.append(f"stopped at the time limit of {self.timeout} s")
                more, _, _ = _collect(out_r, err_r, time.monotonic() + 5)
                stdout += more
        finally:
            os.close(out_r)
            os.close(err_r)
            _kill_group(pid)
            _remove(scratch)
        _read_events(result, stdout, stderr, self.zygote.returncode(pid, timeout=10))
        result.seconds = time.monotonic() - started
        return result


def _collect(out_fd: int, err_fd: int, deadline: float) -> tuple[bytes, bytes, bool]:
    """Read a worker's stdout (its events) and stderr until both close or the deadline."""
    import selectors

    chunks = {out_fd: bytearray(), err_fd: bytearray()}
    selector = selectors.DefaultSelector()
    for fd in chunks:
        selector.register(fd, selectors.EVENT_READ)
    open_fds = set(chunks)
    while open_fds:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            break
        for key, _ in selector.select(timeout=min(remaining, 1.0)):
            data = os.read(key.fd, 1 << 16)
            if not data:
                selector.unregister(key.fd)
                open_fds.discard(key.fd)
            else:
                chunks[key.fd] += data
                if key.fd == err_fd and len(chunks[err_fd]) > 1 << 16:
                    del chunks[err_fd][: -(1 << 15)]
    selector.close()
    return bytes(chunks[out_fd]), bytes(chunks[err_fd]), not open_fds


def _kill_group(pid: int) -> None:
    try:
        os.killpg(pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


def _remove(folder: str) -> None:
    import shutil

    shutil.rmtree(folder, ignore_errors=True)


def _read_events(result: Result, stdout: bytes, stderr: bytes, returncode: int | None) -> None:
    """Fill ``result`` from the worker's events (every line of its stdout is the grader's)."""
    done = False
    for line in stdout.decode(errors="replace").splitlines():
        try:
            event = json.loads(line)
        except ValueError:
            continue
        kind = event.get("event")
        if kind == "lab":
            result.lab = event["lab"]
            result.checks = [Check(gid, float(points)) for gid, points in event["checks"]]
        elif kind == "check":
            for check in result.checks:
                if check.grade_id == event["grade_id"]:
                    check.points = check.max_points if event["passed"] else 0.0
                    check.reason = "" if event["passed"] else (event.get("reason") or "failed")
                    check.seconds = float(event.get("seconds", 0.0))
                    check.measurements = _measurements(event.get("measurements"))
                    check._graded = True
        elif kind == "problem":
            result.problems.append(short(event["text"], 300))
        elif kind == "timing":
            result.timing = {k: v for k, v in event.items() if k != "event"}
        elif kind == "done":
            done = True
    if not done:
        tail = short(stderr.decode(errors="replace").strip()[-300:], 200)
        how = f"signal {-returncode}" if returncode is not None and returncode < 0 else \
            f"status {returncode}"
        result.problems.append(f"the grading process stopped ({how}){': ' + tail if tail else ''}")
    for check in result.checks:
        if not getattr(check, "_graded", False):
            check.reason = "not graded" if result.problems and (
                "not a readable" in result.problems[0] or "cannot be graded" in result.problems[0]) \
                else "not reached"


def _measurements(value) -> dict[str, float]:
    """A check event's measurements, kept only where they are what a worker sends."""
    import math

    if not isinstance(value, dict):
        return {}
    return {name: float(number) for name, number in list(value.items())[:32]
            if isinstance(name, str) and name.isidentifier() and len(name) <= 40
            and isinstance(number, (int, float)) and math.isfinite(number)}


def _deduplicate(results: list[Result]) -> list[Result]:
    """One row per student and lab: the notebook named like the lab, else the first one."""
    chosen: dict[tuple[str, str], Result] = {}
    for result in results:
        key = (result.student, result.lab)
        if key not in chosen or Path(result.path).stem == result.lab and Path(chosen[key].path).stem != result.lab:
            chosen[key] = result
    for result in results:
        keeper = chosen[(result.student, result.lab)]
        note = f"also submitted {result.path} for this lab (not counted)"
        if keeper is not result and result.lab != "?" and note not in keeper.problems:
            keeper.problems.append(note)
    return [r for r in results if chosen[(r.student, r.lab)] is r or r.lab == "?"]


def grade(paths: list[Path], *, solutions_dir: Path | None = None,
          gradebook: Path | None = None, timeout: int = DEFAULT_TIMEOUT,
          cell_timeout: int = DEFAULT_CELL_TIMEOUT, jobs: int | None = None,
          isolation: str = "auto", memory: int = DEFAULT_MEMORY,
          output_limit: int = DEFAULT_OUTPUT, disk: int = DEFAULT_DISK,
          progress: bool = True, feedback: Path | None = None) -> list[Result]:
    """Grade every submission under ``paths``; write the gradebook when one is named, and one
    feedback file per submission (:mod:`.feedback`) under ``feedback`` when it is given."""
    solutions = Path(solutions_dir) if solutions_dir else _repo_root() / "solutions"
    if not solution_notebooks(solutions):
        raise FileNotFoundError(f"no *_lab.ipynb solutions in {solutions}")
    roots = {Path(p).absolute(): Path(p).absolute().is_dir() for p in paths}
    submissions = []
    for root, is_dir in roots.items():
        submissions += [(s, p, root if is_dir else None) for s, p in find_submissions([root])]
    jobs = max(1, int(jobs or os.cpu_count() or 1))
    batch = Batch(solutions=solutions.absolute(), timeout=timeout, cell_timeout=cell_timeout,
                  jobs=jobs, isolation=isolation, memory=memory, output_limit=output_limit,
                  disk=disk)
    if batch.note and progress:
        print(f"WARNING: {batch.note}", file=sys.stderr)
    from utils.grading.worker import PRELOAD
    from utils.grading.zygote import Zygote

    batch.zygote = Zygote(PRELOAD, env=_worker_env(batch.threads))   # the workers' (trusted)
    slots: queue.Queue = queue.Queue()
    for slot in range(1, jobs + 1):
        slots.put(slot)
    lock = threading.Lock()
    done: dict[int, Result] = {}

    def one(number: int, student: str, path: Path, root: Path | None) -> None:
        slot = slots.get()
        try:
            try:
                result = batch.run(student, path, root, slot)
            except Exception as error:  # a grader bug must not stop the batch either
                result = Result(student, "?", str(path),
                                problems=[f"grader error: {short(str(error))}"])
            with lock:
                done[number] = result
                if progress:
                    print(f"[{len(done)}/{len(submissions)}] {student} {result.lab}: "
                          f"{result.points:g}/{result.max_points:g} ({result.seconds:.0f} s)",
                          file=sys.stderr, flush=True)
                if gradebook is not None:   # after every submission: an interrupted run keeps
                    write_gradebook(gradebook, _deduplicate(  # its work
                        [done[k] for k in sorted(done)]))
        finally:
            slots.put(slot)

    try:
        with ThreadPoolExecutor(max_workers=jobs) as pool:
            for future in [pool.submit(one, n, s, p, r) for n, (s, p, r) in enumerate(submissions)]:
                future.result()
    finally:
        batch.zygote.close()
    results = _deduplicate([done[k] for k in sorted(done)])
    if feedback is not None:
        import utils.grading.feedback as handback

        handback.write(Path(feedback), results, solution_notebooks(solutions))
    return results


def _size(text: str) -> int:
    units = {"k": 1 << 10, "m": 1 << 20, "g": 1 << 30}
    text = text.strip().lower().removesuffix("b")
    return int(float(text[:-1]) * units[text[-1]]) if text[-1:] in units else int(text)


def leaderboard_main(argv: list[str]) -> int:
    """``python -m utils.grading leaderboard GRADEBOOK --lab LAB --measure NAME``."""
    from utils.grading.gradebook import leaderboard, leaderboard_table

    parser = argparse.ArgumentParser(
        prog="python -m utils.grading leaderboard",
        description="Rank a graded class by a measurement its checks recorded (latest row per "
                    "student; equal values share a rank; rows without it come last).")
    parser.add_argument("gradebook", type=Path, help="the gradebook CSV the grader wrote")
    parser.add_argument("--lab", required=True, help="the lab's name, e.g. "
                        "03_face_attack_competition_lab")
    parser.add_argument("--measure", required=True, help="the measurement, e.g. hidden_score")
    parser.add_argument("--higher-is-better", action="store_true",
                        help="rank the highest value first (default: the lowest)")
    args = parser.parse_args(argv)
    if not args.gradebook.is_file():
        parser.error(f"no gradebook at {args.gradebook}")
    try:
        board = leaderboard(args.gradebook, args.lab, args.measure,
                            higher_is_better=args.higher_is_better)
    except ValueError as error:
        parser.error(str(error))
    print(f"{args.lab}: ranked by {args.measure} "
          f"({'higher' if args.higher_is_better else 'lower'} is better)")
    print(leaderboard_table(board, args.measure))
    return 0


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv[:1] == ["leaderboard"]:
        return leaderboard_main(argv[1:])
    parser = argparse.ArgumentParser(prog="python -m utils.grading",
                                     description="Grade lab notebooks into a gradebook.")
    parser.add_argument("submissions", nargs="+", type=Path,
                        help="lab notebooks, or folders of them (student/lab.ipynb); "
                             "'leaderboard GRADEBOOK --lab LAB --measure NAME' ranks a class")
    parser.add_argument("--gradebook", type=Path, default=Path("gradebook.csv"),
                        help="CSV to write (default: gradebook.csv; earlier rows are kept)")
    parser.add_argument("--feedback", type=Path, default=None, metavar="DIR",
                        help="write DIR/<student>/<lab>.md for each submission: checks, points, "
                             "reasons (hidden tests by name and topic only), to hand back")
    parser.add_argument("--solutions", type=Path, default=None,
                        help="folder of solution notebooks (default: the course's solutions/)")
    parser.add_argument("--jobs", type=int, default=None,
                        help="submissions graded at once (default: one per CPU core)")
    parser.add_argument("--timeout", type=int, default=DEFAULT_TIMEOUT,
                        help=f"seconds per submission (default {DEFAULT_TIMEOUT})")
    parser.add_argument("--cell-timeout", type=int, default=DEFAULT_CELL_TIMEOUT,
                        help=f"seconds per cell or check before it is interrupted "
                             f"(default {DEFAULT_CELL_TIMEOUT})")
    parser.add_argument("--memory", type=_size, default=DEFAULT_MEMORY,
                        help="address space of a notebook's kernel (default 8G)")
    parser.add_argument("--output-limit", type=_size, default=DEFAULT_OUTPUT,
                        help="bytes a notebook may print (default 2M)")
    parser.add_argument("--isolation", choices=("auto", "sandbox", "none"), default="auto",
                        help="sandbox: each kernel in bubblewrap with cgroup limits (root and "
                             "bwrap needed); none: no sandbox (every row says what that leaves "
                             "unprotected); auto: the sandbox where possible")
    args = parser.parse_args(argv)
    try:
        results = grade(args.submissions, solutions_dir=args.solutions, gradebook=args.gradebook,
                        timeout=args.timeout, cell_timeout=args.cell_timeout, jobs=args.jobs,
                        isolation=args.isolation, memory=args.memory,
                        output_limit=args.output_limit, feedback=args.feedback)
    except (FileNotFoundError, RuntimeError) as error:
        parser.error(str(error))
    print(table(results))
    print(f"\ngradebook: {args.gradebook} ({len(results)} submission(s))")
    if args.feedback:
        print(f"feedback: {args.feedback}/<student>/<lab>.md")
    return 0
