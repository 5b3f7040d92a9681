"""The student's kernel: runs the notebook's own cells and answers the grader's calls, as data.

Started by the worker (:mod:`.worker`) as ``python -m utils.grading.kernel CONFIG_JSON`` inside its
sandbox (:mod:`.sandbox`); it applies the lab's rules and drops root, then serves requests on a
pipe pair (file descriptors 3 and 4):

- ``run_cell`` -- run one of the student's cells in an IPython shell (magics work); the reply
  says whether it raised.  Nothing of its output is kept: stdout/stderr go to a pipe the grader
  only counts (to stop floods);
- ``call`` -- call an answer (by name, in the notebook's namespace) with arguments sent as data
  and reply with its return value as data (and, when asked, what it changed in its arguments);
- ``probe`` -- define and call a function the grader sends as source (``in_student_kernel``);
- ``get`` -- the value of a name, as data.

While an answer runs it may call back into the grader: a callable the grader passed, or the face
black box the grader serves (queries are answered and counted there, never here).

Everything in this process is the student's: it can patch any of this code, and that changes
nothing but the data it sends back, which the grader checks itself.
"""

from __future__ import annotations

import json
import os
import signal
import sys

from utils.grading import wire

class KernelServer:
    """The request loop of the student's kernel."""

    def __init__(self, shell, read_fd: int, write_fd: int, limits: wire.Limits):
        self.shell = shell
        self.codec = wire.Codec(limits, encode_other=self.encode_other,
                                decode_other=self.decode_other)
        self.endpoint = wire.Endpoint(read_fd, write_fd, self.codec, handle=self.handle)
        self.zoo_models: dict[tuple[str, str], object] = {}
        self.zoo_names: dict[int, str] = {}
        self.handles: dict[str, object] = {}
        self.scopes: list[list[str]] = []
        self.notices: list[str] = []

    # ------------------------------------------------------------------ the loop
    def loop(self) -> None:
        while True:
            try:
                header, buffers = wire.receive(self.endpoint.read_fd, self.codec.limits)
            except KeyboardInterrupt:
                continue
            except (wire.PeerClosed, wire.WireError, OSError):
                os._exit(0)
            if header.get("kind") == "request":
                try:
                    self.endpoint.serve(header, buffers)
                except (wire.PeerClosed, BrokenPipeError):
                    os._exit(0)
                except KeyboardInterrupt:
                    continue

    def request(self, op: str, fields: dict, payload=None):
        """A request to the grader (a callback), with the handles it hands out scoped to it."""
        scope: list[str] = []
        self.scopes.append(scope)
        try:
            return self.endpoint.request(op, fields, payload)
        finally:
            self.scopes.pop()
            for handle in scope:
                self.handles.pop(handle, None)

    def handle(self, op: str, fields: dict, payload):
        extra: dict = {}
        if op == "run_cell":
            extra.update(self.run_cell(fields.get("source", "")))
            value = None
        elif op == "call":
            args, kwargs = wire.call_arguments(payload)
            function = self.resolve(fields)
            if fields.get("effects"):
                from utils.grading.api import measure_effects

                value, effects = measure_effects(function, args, kwargs)
                extra["effects"] = effects
            else:
                value = function(*args, **kwargs)
            extra["generators"] = _generator_states(args, kwargs)
        elif op == "probe":
            args, kwargs = wire.call_arguments(payload)
            namespace = self.shell.user_ns
            exec(compile(str(fields["source"]), "<the grader's check>", "exec"), namespace)
            value = namespace[str(fields["name"])](*args, **kwargs)
        elif op == "get":
            value = self.resolve(fields)
        else:
            raise ValueError(f"unknown request {op!r}")
        if self.notices:
            extra["notices"], self.notices = self.notices[:20], []
        return value, extra

    def run_cell(self, source: str) -> dict:
        result = self.shell.run_cell(source, store_history=False, silent=False)
        error = result.error_before_exec or result.error_in_exec
        if error is None:
            return {"status": "ok"}
        return {"status": "error", "type": type(error).__name__,
                "message": wire._message(error)[:500]}

    def resolve(self, fields: dict):
        if "handle" in fields:
            target = self.handles.get(str(fields["handle"]))
            if target is None:
                raise LookupError("that function is no longer available (it was passed to an "
                                  "earlier call)")
            return target
        name = str(fields.get("name", ""))
        head, *rest = name.split(".")
        if head not in self.shell.user_ns:
            raise NameError(f"{head} is not defined in your notebook")
        value = self.shell.user_ns[head]
        for part in rest:
            value = getattr(value, part)
        return value

    # ------------------------------------------------------------------ references
    def encode_other(self, value, context: str):
        torch = sys.modules.get("torch")
        if torch is not None and isinstance(value, torch.nn.Module):
            name = self.zoo_names.get(id(value))
            if name is None:
                raise wire.DataError(
                    f"cannot send a {type(value).__name__} model: only the zoo's models "
                    "(zoo.load(name)) can be passed between your notebook and the grader")
            device = next((p.device for p in value.parameters()), "cpu")
            return {"$": "zoo", "name": name, "device": str(device), "training": value.training}
        remote = sys.modules.get("utils.grading.blackbox")
        if remote is not None and remote.RemoteBlackBox is not None and \
                isinstance(value, remote.RemoteBlackBox):
            return remote.encode(value)
        if callable(value) and not isinstance(value, type):
            if context == "reply":
                raise wire.DataError(f"cannot return a {wire._type_name(value)}: answers return "
                                     "data (tensors, arrays, numbers, strings, lists...)")
            for name, candidate in self.shell.user_ns.items():
                if candidate is value and not name.startswith("_"):
                    return {"$": "answer", "name": name}
            if not self.scopes:
                raise wire.DataError("a function can only be passed during a call")
            handle = wire.new_id()
            self.handles[handle] = value
            self.scopes[-1].append(handle)
            return {"$": "callable", "h": handle}
        return None

    def decode_other(self, tag: str, node: dict, context: str):
        if tag == "zoo":
            return self.zoo_model(wire._field(node, "name", str), wire._field(node, "device", str),
                                  node.get("training") is True)
        if tag == "answer":
            name = wire._field(node, "name", str)
            if name in self.shell.user_ns:
                return self.shell.user_ns[name]

            def missing(*args, **kwargs):
                raise NameError(f"{name} is not defined in your notebook")
            return missing
        if tag == "callable":
            handle = wire._field(node, "h", str)

            def call_grader(*args, **kwargs):
                return self.request("call", {"handle": handle}, [list(args), kwargs])[0]
            return call_grader
        if tag == "blackbox":
            from utils.grading import blackbox

            return blackbox.decode(node, self)
        raise wire.WireError(f"unknown value tag {tag!r}")

    def zoo_model(self, name: str, device: str, training: bool):
        key = (name, device)
        if key not in self.zoo_models:
            from utils import zoo

            self.zoo_models[key] = zoo.load(name, device)
        model = self.zoo_models[key]
        model.train(training)
        return model

    def remember_zoo_model(self, model, name: str) -> None:
        self.zoo_names[id(model)] = name


def _generator_states(args: list, kwargs: dict) -> list:
    """States of the generators among the arguments after the call (the grader copies them back)."""
    torch = sys.modules.get("torch")
    if torch is None:
        return []
    values = list(args) + list(kwargs.values())
    return [[index, value.get_state().tolist()] for index, value in enumerate(values)
            if isinstance(value, torch.Generator)]


def _watch_signals(server: KernelServer) -> None:
    """Note (for the grader's report) when the notebook signals a process that is not its own."""
    me = os.getpid()

    def ours(pid: int) -> bool:            # this kernel or one of the processes it started
        for _ in range(20):
            if pid == me:
                return True
            try:
                with open(f"/proc/{pid}/stat") as handle:
                    pid = int(handle.read().rsplit(")", 1)[1].split()[1])
            except (OSError, ValueError, IndexError):
                return False
            if pid <= 1:
                return False
        return False

    def hook(event, args):
        if event in ("os.kill", "os.killpg") and args and isinstance(args[0], int) and \
                args[0] not in (0, me) and len(server.notices) < 20 and \
                not (event == "os.kill" and args[0] > 0 and ours(args[0])):
            name = signal.Signals(args[1]).name if len(args) > 1 and isinstance(args[1], int) \
                and args[1] in signal.Signals._value2member_map_ else str(args[1:])
            server.notices.append(f"the notebook sent {name} to process {args[0]}")

    sys.addaudithook(hook)


def _track_zoo(server: KernelServer) -> None:
    """Models the notebook loads from the zoo can be passed to the grader by name."""
    from utils import zoo

    original = zoo.load

    def load(name, *args, **kwargs):
        model = original(name, *args, **kwargs)
        server.remember_zoo_model(model, name)
        return model

    load.__doc__, load.__wrapped__ = original.__doc__, original
    zoo.load = load


def boot(config: dict) -> None:
    """Cage this process (:func:`sandbox.enter`: rules, limits, an unprivileged uid) and serve.

    A fresh interpreter (never a fork of the grader): its environment is the worker's whitelist
    and ``config`` holds the lab's rules and limits only -- no path, secret or setting of the grader.
    """
    read_fd, write_fd = config["fds"]
    for name in config.get("preload", ()):
        try:
            __import__(name)
        except ImportError:
            pass
    from utils.grading import sandbox

    sandbox.enter(config)
    for folder in (os.environ.get("HOME"), config.get("workdir")):
        if folder:
            os.makedirs(folder, exist_ok=True)
    if config.get("workdir"):
        os.chdir(config["workdir"])
    sys.argv = ["kernel"]
    torch = sys.modules.get("torch")
    if torch is not None:     # the cores given to this kernel, like OMP/MKL/OPENBLAS_NUM_THREADS
        torch.set_num_threads(int(config.get("threads", 1)))
        try:
            torch.set_num_interop_threads(int(config.get("threads", 1)))
        except RuntimeError:  # already set by an import that ran parallel work
            pass
    from IPython.core.interactiveshell import InteractiveShell

    shell = InteractiveShell.instance(colors="NoColor")
    shell.user_ns["__name__"] = "__main__"
    server = KernelServer(shell, read_fd, write_fd, wire.Limits(**config.get("wire", {})))
    if "utils.zoo" in sys.modules or config.get("preload"):
        _track_zoo(server)
    _watch_signals(server)
    blackbox_module = sys.modules.get("utils.grading.blackbox")
    if blackbox_module is not None:
        blackbox_module.connect(server)
    wire.send(write_fd, {"kind": "ready", "pid": os.getpid(), "uid": os.getuid()})
    server.loop()


def main(argv: list[str]) -> None:
    boot(json.loads(argv[0]))


if __name__ == "__main__":   # run as utils.grading.kernel, not __main__: one copy of its classes
    from utils.grading import kernel as _kernel

    _kernel.main(sys.argv[1:])
