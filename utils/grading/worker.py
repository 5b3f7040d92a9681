"""One submission, graded by a trusted process in which no student code ever runs.

Started by :mod:`.cli` as ``python -m utils.grading.worker CONFIG_JSON``; prints one JSON event
per line on stdout (``lab``, ``check``, ``problem``, ``done``), which is all the grader reads.

The worker starts the student's kernel (:mod:`.kernel`, caged by :mod:`.sandbox`) and walks the
submission in its own order.  The student's code cells go to the kernel.  At each check it runs,
*here*, the solution's cells up to that check (its given cells as they are; its answer cells
only as names: each becomes an :class:`~utils.grading.api.Answer`) and then the solution's check
cell -- visible checks and hidden tests.  A check passes when that cell runs to its end here.

Time limits: every student cell and every check has ``cell_timeout`` seconds; at the limit the
kernel is interrupted (SIGINT) and, if it does not come back within a few seconds (signals
ignored), killed and started again with the cells that ran before, minus the one that hung.  The
same happens to a kernel that dies, exits or floods its output.  The whole submission has
``timeout`` seconds.
"""

from __future__ import annotations

import builtins
import contextlib
import io
import json
import linecache
import os
import signal
import subprocess
import sys
import time
import weakref
from pathlib import Path

from utils.grading import api, wire
from utils.grading.sandbox import SECRET_CHECKPOINTS
from utils.grading.notebooks import (
    Lab,
    identify_lab,
    plan,
    read_submission,
    short,
    solution_notebooks,
)
from utils.labs import grading_info

# all a kernel is told: no path or setting of the grader
KERNEL_KEYS = ("limits", "threads", "sandboxed", "uid", "workdir", "lab", "forbid", "why",
               "serve_blackbox", "hide")
KERNEL_PRELOAD = ("numpy", "torch", "IPython.core.interactiveshell", "utils", "utils.zoo")
MAX_RESTARTS = 4
INTERRUPT_GRACE = 4.0
STARTUP_TIMEOUT = 90.0


class KernelGone(RuntimeError):
    """The kernel's process ended (or closed its pipes)."""


class CellTimeout(Exception):
    """A cell or check ran past its time limit."""


class OutputFlood(Exception):
    """The kernel printed more than its allowance."""


class TotalTimeout(Exception):
    """The submission's overall time limit is reached."""


class KernelProblem(RuntimeError):
    """Something went wrong in the kernel that is not the answer's value: the reason says what."""


class NotGraded(RuntimeError):
    """The kernel cannot be (re)started: the remaining checks cannot be graded."""


ABORTS = (KernelGone, CellTimeout, OutputFlood, TotalTimeout)


class _Sink(io.TextIOBase):
    """Where the trusted cells' prints go: the last few kilobytes are kept, nothing more."""

    def __init__(self, keep: int = 8192):
        self.keep, self.text = keep, ""

    def write(self, text) -> int:
        self.text = (self.text + str(text))[-self.keep:]
        return len(text)

    def writable(self) -> bool:
        return True


# ============================================================================================
# the connection to the student's kernel


class Session:
    """The student's kernel: started, fed, interrupted, restarted; reached only through data."""

    def __init__(self, config: dict, lab: Lab):
        self.config, self.lab = config, lab
        self.limits = wire.Limits()
        self.codec = wire.Codec(self.limits, encode_other=self.encode_other,
                                decode_other=self.decode_other)
        self.process: subprocess.Popen | None = None
        self.cgroup = None
        self.pid, self.running = 0, False
        self.endpoint: wire.Endpoint | None = None
        self.handles: dict[str, object] = {}
        self.scopes: list[tuple[list[str], list]] = []
        self.zoo_names: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
        self.zoo_cache: dict[tuple[str, str], object] = {}
        self.executed: list[tuple[int, str]] = []
        self.skipped: set[int] = set()
        self.notices: list[str] = []
        self.restarts = 0
        self.deadline: float | None = None
        self.total_deadline = float(config["total_deadline"])
        self.output_used = 0
        self.output_tail = b""
        self.step_output_start = 0
        self.output_limit = int(config["limits"]["output"])
        self.abandoned: str | None = None
        self.broken: str | None = None
        from utils.grading.blackbox import Desk

        self.desk = Desk(self, int(lab.settings.get("blackbox_setup_queries", 20)))

    # ------------------------------------------------------------------ lifecycle
    def start(self) -> None:
        """A fresh kernel: a new exec in a new sandbox (and cgroup), never a fork of this process."""
        from utils.grading import sandbox

        to_kernel_r, to_kernel_w = os.pipe()
        from_kernel_r, from_kernel_w = os.pipe()
        output_r, output_w = os.pipe()
        kernel = self.config["kernel"]
        kernel_config = {key: kernel[key] for key in KERNEL_KEYS if key in kernel}
        kernel_config.update(fds=[to_kernel_r, from_kernel_w], preload=list(KERNEL_PRELOAD))
        config_json = json.dumps(kernel_config)
        if kernel.get("sandboxed"):
            self.cgroup = sandbox.Cgroup(**kernel["cgroup"]) if kernel.get("cgroup") else None
            empty = Path(self.config["scratch"]) / "empty"
            empty.touch(mode=0o444)
            argv = sandbox.kernel_command(config_json, repo=Path(self.config["repo"]),
                                          env=self.config["kernel_env"], empty=str(empty),
                                          tmp_size=kernel["tmp_size"], cgroup=self.cgroup)
        else:
            argv = [sys.executable, "-m", "utils.grading.kernel", config_json]
        try:
            self.process = subprocess.Popen(
                argv, stdin=subprocess.DEVNULL, stdout=output_w, stderr=output_w,
                pass_fds=(to_kernel_r, from_kernel_w), env=self.config["kernel_env"],
                cwd=kernel.get("workdir") if not kernel.get("sandboxed") else "/",
                start_new_session=True)
        finally:
            for fd in (to_kernel_r, from_kernel_w, output_w):
                os.close(fd)
        self.pid, self.kernel_pid = self.process.pid, None
        self.running = True
        self.read_fd, self.write_fd = from_kernel_r, to_kernel_w
        self._drain_output(output_r)
        self.endpoint = wire.Endpoint(from_kernel_r, to_kernel_w, self.codec, handle=self.handle,
                                      wait=self.wait, abort=ABORTS)
        deadline = min(time.monotonic() + STARTUP_TIMEOUT, self.total_deadline)
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0 or not wire.wait_readable(from_kernel_r, remaining):
                self.kill()
                if time.monotonic() >= self.total_deadline:
                    raise TotalTimeout()
                raise NotGraded("the kernel did not start in time")
            try:
                header, _ = wire.receive(from_kernel_r, self.limits, deadline=deadline)
            except (wire.WireError, wire.PeerClosed):
                time.sleep(0.2)
                tail = short(self.output_tail.decode(errors="replace").strip()[-400:], 300)
                self.kill()
                raise NotGraded(f"the kernel did not start ({tail or 'no message'})") from None
            if header.get("kind") == "ready":
                self.kernel_pid = sandbox.kernel_pid(self.pid) if kernel.get("sandboxed") \
                    else self.pid
                return

    def _drain_output(self, fd: int) -> None:
        import threading

        def drain():
            with os.fdopen(fd, "rb", buffering=0) as pipe:
                while True:
                    chunk = pipe.read(65536)
                    if not chunk:
                        return
                    self.output_used += len(chunk)
                    self.output_tail = (self.output_tail + chunk)[-4096:]

        threading.Thread(target=drain, daemon=True).start()

    def alive(self) -> bool:
        return self.running and self.process.poll() is None

    def kill(self) -> None:
        """End the kernel and everything it started: its bwrap (the PID namespace dies with it),
        its session, then whatever is left in its cgroup."""
        if not self.running:
            return
        self.running = False
        for target in (lambda: os.killpg(self.pid, signal.SIGKILL),
                       lambda: os.kill(self.pid, signal.SIGKILL)):
            with contextlib.suppress(ProcessLookupError, PermissionError):
                target()
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.process.wait(timeout=5)
        if self.cgroup is not None:
            self.cgroup.remove()
            self.cgroup = None
        for fd in (self.read_fd, self.write_fd):
            with contextlib.suppress(OSError):
                os.close(fd)

    def exit_reason(self) -> str:
        try:
            code = self.process.wait(timeout=2)
        except subprocess.TimeoutExpired:
            return "stopped answering"
        if code > 128 and self.config["kernel"].get("sandboxed"):
            code = -(code - 128)           # bwrap reports a killed kernel as 128 + signal
        if code < 0:
            name = signal.Signals(-code).name if -code in signal.Signals._value2member_map_ \
                else str(-code)
            return f"was killed by {name}"
        return f"exited with status {code}"

    def restart(self, why: str) -> None:
        """Kill the kernel and start a new one, replaying the cells that ran (minus skipped)."""
        while True:
            self.kill()
            self.restarts += 1
            if self.restarts > MAX_RESTARTS:
                self.broken = f"the kernel failed {MAX_RESTARTS} times ({why})"
                raise NotGraded(self.broken)
            self.start()
            for index, source in list(self.executed):
                if index in self.skipped:
                    continue
                outcome = self._run_cell(index, source)
                if outcome.get("aborted"):
                    self.skipped.add(index)
                    self.notices.append(f"cell {index} {outcome['aborted']} when it was run "
                                        "again; it was skipped")
                    break
            else:
                return

    def stop(self) -> None:
        self.kill()

    # ------------------------------------------------------------------ waiting
    def begin_step(self, seconds: float) -> None:
        self.deadline = min(time.monotonic() + seconds, self.total_deadline)
        self.step_output_start = self.output_used

    def wait(self, fd: int) -> None:
        """Wait for the kernel's next message; raise to abandon the current step."""
        while True:
            if wire.wait_readable(fd, 0.2):
                return
            allowance = max(self.output_limit - self.step_output_start, self.output_limit // 10)
            if self.output_used - self.step_output_start > allowance:
                self._abandon()
                raise OutputFlood()
            if not self.alive():
                if wire.wait_readable(fd, 0.05):
                    return
                raise KernelGone(self.exit_reason())
            now = time.monotonic()
            if now >= self.total_deadline:
                self._abandon()
                raise TotalTimeout()
            if self.deadline is not None and now >= self.deadline:
                self._abandon()
                raise CellTimeout()

    def _abandon(self) -> None:
        self.abandoned = self.endpoint.pending[0] if self.endpoint.pending else None

    def recover(self) -> str:
        """After an abandoned step: interrupt the kernel and wait for it to come back to its loop;
        kill and restart it when it does not.  Returns ``"interrupted"`` or ``"restarted"``."""
        if self.alive() and self.abandoned is not None and self.kernel_pid:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(self.kernel_pid, signal.SIGINT)
            deadline = time.monotonic() + INTERRUPT_GRACE
            try:
                while wire.wait_readable(self.read_fd, deadline - time.monotonic()):
                    header, _ = wire.receive(self.read_fd, self.limits, deadline=deadline + 5)
                    if header.get("kind") == "reply" and header.get("id") == self.abandoned:
                        self.abandoned = None
                        return "interrupted"
                    if header.get("kind") == "request" and isinstance(header.get("id"), str):
                        wire.send(self.write_fd, {"kind": "reply", "id": header["id"], "ok": False,
                                                  "error": {"type": "KeyboardInterrupt",
                                                            "message": "the grader stopped this"}})
            except (wire.WireError, wire.PeerClosed, OSError):
                pass
        self.abandoned = None
        return "restarted"

    # ------------------------------------------------------------------ requests
    def request(self, op: str, fields: dict, payload=None):
        if self.broken:
            raise NotGraded(self.broken)
        if not self.alive():
            raise KernelGone(self.exit_reason())
        scope: tuple[list[str], list] = ([], [])
        self.scopes.append(scope)
        try:
            value, extra = self.endpoint.request(op, fields, payload)
        except (wire.PeerClosed, BrokenPipeError):
            raise KernelGone(self.exit_reason()) from None
        finally:
            self.scopes.pop()
            for handle in scope[0]:
                self.handles.pop(handle, None)
        for notice in (extra.get("notices") or [])[:20]:
            if isinstance(notice, str) and len(self.notices) < 40:
                self.notices.append(wire._text(notice, 200))
        return value, extra

    def current_blackbox(self):
        for _, boxes in reversed(self.scopes):
            if boxes:
                return boxes[0]
        return None

    def handle(self, op: str, fields: dict, payload):
        """The kernel's requests: calling a function the grader passed, or the black box."""
        if op == "call":
            target = self.handles.get(str(fields.get("handle")))
            if target is None or not callable(target):
                raise LookupError("that function is no longer available (it was passed to an "
                                  "earlier call)")
            args, kwargs = wire.call_arguments(payload)
            return target(*args, **kwargs), {}
        if op == "blackbox":
            return self.desk.handle(fields, payload), {}
        raise ValueError(f"unknown request {op!r}")

    def encode_other(self, value, context: str):
        torch = sys.modules.get("torch")
        if isinstance(value, api.Answer):
            return {"$": "answer", "name": value._name}
        if torch is not None and isinstance(value, torch.nn.Module):
            name = self.zoo_names.get(value)
            if name is None:
                raise wire.DataError(f"cannot send a {type(value).__name__} to the student's "
                                     "kernel: only models loaded with zoo.load(name) go, by name")
            if name in SECRET_CHECKPOINTS:
                raise wire.DataError(f"{name} is never sent to the student's kernel")
            device = next((p.device for p in value.parameters()), "cpu")
            return {"$": "zoo", "name": name, "device": str(device), "training": value.training}
        faces = sys.modules.get("utils.faces")
        if faces is not None and isinstance(value, faces.BlackBox):
            if context == "reply" or not self.scopes:
                raise wire.DataError("a black box can only be passed to an answer")
            handle = wire.new_id()
            self.handles[handle] = value
            self.scopes[-1][0].append(handle)
            self.scopes[-1][1].append(value)
            return {"$": "blackbox", "h": handle}
        if callable(value) and not isinstance(value, type):
            if context == "reply" or not self.scopes:
                raise wire.DataError(f"cannot send a {wire._type_name(value)} here")
            handle = wire.new_id()
            self.handles[handle] = value
            self.scopes[-1][0].append(handle)
            return {"$": "callable", "h": handle}
        return None

    def decode_other(self, tag: str, node: dict, context: str):
        if tag == "answer":
            name = wire._field(node, "name", str)
            if not all(part.isidentifier() for part in name.split(".")):
                raise wire.WireError("bad answer name")
            return api.Answer(name)
        if tag == "zoo":
            return self.zoo_model(wire._field(node, "name", str),
                                  wire._field(node, "device", str), node.get("training") is True)
        if tag == "callable":
            if context == "reply":
                raise wire.DataError("returned a function, not data")
            handle = wire._field(node, "h", str)

            def call_notebook(*args, **kwargs):
                try:
                    return self.request("call", {"handle": handle}, [list(args), kwargs])[0]
                except wire.RemoteError as error:
                    raise api.answer_error("a function from the notebook", error.type_name,
                                           error.message) from None
            return call_notebook
        if tag == "blackbox":
            target = self.handles.get(node.get("h")) if isinstance(node.get("h"), str) else None
            if target is None:
                raise wire.DataError("a black box made in the notebook cannot be sent back")
            return target
        raise wire.WireError(f"unknown value tag {tag!r}")

    def zoo_model(self, name: str, device: str, training: bool):
        from utils import zoo

        if name in SECRET_CHECKPOINTS:
            raise wire.DataError(f"{name} cannot be named by the notebook")
        try:
            zoo.entry(name)
        except Exception:
            raise wire.DataError(f"no zoo model named {name!r}") from None
        key = (name, str(wire._device(device)))
        if key not in self.zoo_cache:
            self.zoo_cache[key] = zoo.load(name, key[1])
        model = self.zoo_cache[key]
        model.train(training)
        return model

    def track_zoo(self) -> None:
        """Models the checks load from the zoo can be sent to the kernel by name."""
        from utils import zoo

        original = zoo.load
        names = self.zoo_names

        def load(name, *args, **kwargs):
            model = original(name, *args, **kwargs)
            names[model] = name
            return model

        load.__doc__, load.__wrapped__ = original.__doc__, original
        zoo.load = load

    # ------------------------------------------------------------------ what checks call
    def call_answer(self, name: str, args: tuple, kwargs: dict, *, effects: bool):
        try:
            value, extra = self.request("call", {"name": name, "effects": effects},
                                        [list(args), dict(kwargs)])
        except wire.RemoteError as error:
            if error.type_name == "NameError" and "not defined in your notebook" in error.message:
                raise KernelProblem(f"{name.split('.')[0]} is not defined in your notebook"
                                    + self._why_missing()) from None
            if error.type_name == "DataError":
                raise KernelProblem(f"{name} returned something that is not data "
                                    f"({short(error.message, 200)})") from None
            raise api.answer_error(name, error.type_name, error.message) from None
        except wire.WireError as error:
            raise KernelProblem(f"the notebook's kernel broke the grading protocol while "
                                f"running {name} ({short(str(error), 120)})") from None
        self._copy_generators(args, kwargs, extra.get("generators"))
        return value, extra

    def call_probe(self, name: str, source: str, args: tuple, kwargs: dict):
        try:
            return self.request("probe", {"name": name, "source": source},
                                [list(args), dict(kwargs)])[0]
        except wire.RemoteError as error:
            raise api.answer_error(name, error.type_name, error.message) from None

    def get_value(self, name: str):
        return self.request("get", {"name": name})[0]

    def _why_missing(self) -> str:
        if self.skipped:
            return f" (cell(s) {', '.join(map(str, sorted(self.skipped)))} stopped the kernel " \
                   "and were skipped)"
        return ""

    @staticmethod
    def _copy_generators(args, kwargs, states) -> None:
        torch = sys.modules.get("torch")
        if torch is None or not isinstance(states, list):
            return
        values = list(args) + list(kwargs.values())
        for item in states[:20]:
            try:
                index, state = item
                if isinstance(values[index], torch.Generator):
                    values[index].set_state(torch.tensor(state, dtype=torch.uint8))
            except Exception:  # a malformed state changes nothing
                continue

    # ------------------------------------------------------------------ the student's cells
    def _run_cell(self, index: int, source: str) -> dict:
        self.begin_step(self.config["cell_timeout"])
        try:
            _, extra = self.request("run_cell", {"source": source, "cell": index})
            return extra
        except CellTimeout:
            how = self.recover()
            if how == "restarted":
                return {"aborted": "ran past the cell time limit and ignored the interrupt"}
            return {"status": "error", "type": "KeyboardInterrupt", "interrupted": True}
        except OutputFlood:
            how = self.recover()
            if how == "restarted":
                return {"aborted": "flooded the output and ignored the interrupt"}
            return {"status": "error", "type": "OutputFlood", "flood": True}
        except KernelGone as gone:
            return {"aborted": f"stopped the kernel (it {gone})"}
        except (wire.WireError, wire.RemoteError) as error:
            return {"aborted": f"broke the grading protocol ({short(str(error), 100)})"}

    def run_student_cell(self, index: int, source: str) -> dict:
        outcome = self._run_cell(index, source)
        if outcome.get("aborted"):
            self.skipped.add(index)
            self.notices.append(f"cell {index} {outcome['aborted']}; the kernel was restarted "
                                "without it")
            self.restart(f"cell {index}")
        else:
            self.executed.append((index, source))
            if outcome.get("interrupted"):
                self.notices.append(f"cell {index} ran past the cell time limit "
                                    f"({self.config['cell_timeout']} s) and was interrupted")
            if outcome.get("flood"):
                self.notices.append(f"cell {index} printed more than its share of the output "
                                    f"limit ({self.output_limit} bytes) and was interrupted")
        return outcome


# ============================================================================================
# the solution's side, run here


class Checks:
    """The solution's cells, run in this (trusted) process with the answers as :class:`Answer`s."""

    def __init__(self, lab: Lab, session: Session):
        self.lab, self.session = lab, session
        self.namespace: dict = {"__name__": "__main__", "__builtins__": builtins}
        self.position = 0
        self.values: list[str] = []
        self.sink = _Sink()
        self.measurements: dict[str, float] = {}   # the running check's (api.record)

    def _exec(self, source: str, label: str) -> None:
        filename = f"<{self.lab.name}: {label}>"
        linecache.cache[filename] = (len(source), None, source.splitlines(True), filename)
        code = compile(_transform(source), filename, "exec")
        with contextlib.redirect_stdout(self.sink), contextlib.redirect_stderr(self.sink):
            exec(code, self.namespace)

    def advance_to(self, cell_index: int) -> None:
        """Run the solution's given cells and bind its answers, up to ``cell_index``."""
        cells = self.lab.notebook.cells
        while self.position < cell_index:
            cell = cells[self.position]
            self.position += 1
            if cell.cell_type != "code" or grading_info(cell).get("grade"):
                continue
            if grading_info(cell).get("solution"):
                functions, values, imports = self.lab.answer_names(cell)
                if imports:
                    self._exec(imports, f"imports of {grading_info(cell)['grade_id']}")
                for name in functions:
                    self.namespace[name] = api.Answer(name)
                self.values += [v for v in values if v not in self.values]
                continue
            self.session.begin_step(self.session.config["cell_timeout"])
            try:
                self._exec(cell.source, f"cell {self.position - 1}")
            except ABORTS:
                raise
            except BaseException:  # noqa: BLE001 - a given cell that fails (e.g. it plots a
                pass               # failed check's variable) fails as it would in the notebook

    def run(self, grade_id: str) -> tuple[bool, str]:
        """Run check ``grade_id``: ``(passed, reason)``."""
        cells = self.lab.notebook.cells
        index = next(i for i, c in enumerate(cells) if grading_info(c).get("grade_id") == grade_id)
        timeout = self.session.config["cell_timeout"]
        self.measurements = {}
        try:
            self.advance_to(index)
            self.session.begin_step(timeout)
            for name in self.values:
                try:
                    self.namespace[name] = self.session.get_value(name)
                except ABORTS:
                    raise
                except Exception:
                    self.namespace.pop(name, None)
            api._recorder = self._record
            try:
                self._exec(cells[index].source, grade_id)
            finally:
                api._recorder = None
            return True, ""
        except CellTimeout:
            how = self.session.recover()
            extra = "" if how == "interrupted" else \
                " and ignored the interrupt: the kernel was stopped and started again"
            if how == "restarted":
                self.session.restart(f"check {grade_id}")
            return False, f"interrupted after the cell time limit ({timeout} s){extra}"
        except OutputFlood:
            how = self.session.recover()
            if how == "restarted":
                self.session.restart(f"check {grade_id}")
            return False, (f"output flood: the answers printed more than "
                           f"{self.session.output_limit} bytes; stopped")
        except KernelGone as gone:
            self.session.restart(f"check {grade_id}")
            return False, f"the kernel died while this check ran (it {gone}); it was restarted"
        except KernelProblem as problem:
            if "protocol" in str(problem):
                self.session.recover()
                self.session.restart(f"check {grade_id}")
            return False, str(problem)
        except (TotalTimeout, NotGraded):
            raise
        except AssertionError as error:
            message = wire._message(error)
            return False, f"AssertionError: {message}" if message else "AssertionError"
        except api.AnswerError as error:
            return False, str(error)
        except BaseException as error:  # noqa: BLE001 - any failure of the check is its reason
            return False, f"{type(error).__name__}: {wire._message(error)}".rstrip(": ")


    def _record(self, name: str, value: float) -> None:
        """:func:`utils.grading.api.record` while a check runs here: the check's measurements."""
        if name in self.measurements or len(self.measurements) < api.MAX_MEASUREMENTS:
            self.measurements[name] = value


def _transform(source: str) -> str:
    if "%" not in source and "!" not in source:
        return source
    from IPython.core.inputtransformer2 import TransformerManager

    return TransformerManager().transform_cell(source)


# ============================================================================================
# the whole submission


class Reporter:
    def __init__(self, fd: int):
        self.fd = fd

    def __call__(self, **event) -> None:
        os.write(self.fd, (json.dumps(event) + "\n").encode())


def grade(config: dict, report: Reporter) -> None:
    started = time.monotonic()
    config["total_deadline"] = started + float(config["timeout"]) - 1.0
    path = Path(config["submission"])
    labs = solution_notebooks(Path(config["solutions"]))
    try:
        submission = read_submission(path, Path(config["root"]) if config.get("root") else None)
        unreadable = None
    except ValueError as error:
        submission, unreadable = None, str(error)
    name = identify_lab(submission, path, labs)
    if name is None:
        report(event="problem", text=unreadable or "cannot tell which lab this is: keep the lab's "
               "file name (e.g. 01_adversarial_examples_lab.ipynb)")
        return
    lab = Lab.read(labs[name])
    report(event="lab", lab=name, checks=[[gid, lab.points[gid]] for gid in lab.tests])
    if unreadable:
        report(event="problem", text=unreadable)
        return
    if lab.problems:
        report(event="problem", text=f"lab {name} cannot be graded: {lab.problems[0]}")
        return
    steps, problems = plan(submission, lab)
    for problem in problems:
        report(event="problem", text=problem)
    if config.get("isolation_note"):
        report(event="problem", text=config["isolation_note"])
    kernel = config["kernel"]
    kernel.update(lab=name, forbid=list(lab.settings.get("forbid", [])),
                  why=lab.settings.get("why", "write it yourself"),
                  hide=[n for n in lab.settings.get("hide", []) if isinstance(n, str)],
                  serve_blackbox="blackbox_setup_queries" in lab.settings or any(
                      entry.startswith("utils.faces") for entry in lab.settings.get("forbid", [])))
    session = Session(config, lab)
    api._session = session
    session.track_zoo()
    checks = Checks(lab, session)
    reported = 0
    timing = {"worker_start": round(time.time() - float(config.get("spawned", time.time())), 2),
              "kernel_start": 0.0, "student_cells": 0.0, "checks": 0.0}
    try:
        began = time.monotonic()
        session.start()
        timing["kernel_start"] = round(time.monotonic() - began, 2)
        for step in steps:
            began = time.monotonic()
            if step[0] == "student":
                outcome = session.run_student_cell(step[1], step[2])
                timing["student_cells"] += time.monotonic() - began
                cell = submission.cells[step[1]]
                if outcome.get("status") == "error" and grading_info(cell).get("solution"):
                    report(event="problem", text=short(
                        f"answer cell {grading_info(cell).get('grade_id')} raised "
                        f"{outcome.get('type')}: {outcome.get('message', '')}".rstrip(": "), 200))
            else:
                began = time.monotonic()
                passed, reason = checks.run(step[1])
                timing["checks"] += time.monotonic() - began
                report(event="check", grade_id=step[1], passed=passed, reason=short(reason, 300),
                       seconds=round(time.monotonic() - began, 2),
                       measurements=dict(checks.measurements))
            for notice in session.notices[reported:]:
                report(event="problem", text=notice)
            reported = len(session.notices)
        _canary(session, report)
    except TotalTimeout:
        report(event="problem", text=f"stopped at the time limit of {config['timeout']} s")
    except NotGraded as error:
        report(event="problem", text=f"not graded further: {error}")
    finally:
        for notice in session.notices[reported:]:
            report(event="problem", text=notice)
        session.stop()
        report(event="timing", **{k: round(v, 2) for k, v in timing.items()})


def _canary(session: Session, report: Reporter) -> None:
    """Tell the instructor when the notebook switched off error reporting in its kernel."""
    if time.monotonic() > session.total_deadline - 5 or not session.alive():
        return
    before = session.output_used
    outcome = session._run_cell(-1, "raise RuntimeError('grading canary')")
    time.sleep(0.3)                      # let the traceback reach the output counter
    if outcome.get("status") != "error" or outcome.get("type") != "RuntimeError" or \
            session.output_used - before < 20:
        report(event="problem", text="the notebook switched off error reporting in its kernel "
               "(a cell that raises showed no error); points come from the grader's own "
               "checks, so this changed nothing")


PRELOAD = ("numpy", "torch", "IPython.core.interactiveshell", "matplotlib.pyplot", "utils",
           "utils.data", "utils.models", "utils.zoo", "utils.training", "utils.grading.api",
           "utils.grading.sandbox", "utils.grading.blackbox", "utils.grading.kernel",
           "utils.grading.notebooks", "utils.grading.worker")


def run(config: dict) -> None:
    """A worker: grade ``config["submission"]``, one JSON event per line on stdout."""
    out = os.dup(1)
    os.dup2(os.open(os.devnull, os.O_WRONLY), 1)      # stray prints cannot corrupt the events
    report = Reporter(out)
    torch = sys.modules.get("torch")
    if torch is not None:
        torch.set_num_threads(int(config.get("threads", 1)))
    try:
        grade(config, report)
    except Exception as error:  # a grader bug: say so, the batch goes on
        report(event="problem", text=f"grader error: {type(error).__name__}: {short(str(error))}")
    report(event="done")
    os._exit(0)


def main(argv: list[str]) -> int:
    run(json.loads(argv[0]))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
