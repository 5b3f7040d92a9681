"""What check cells use: answers as data, side effects as data, and code that must run beside them.

A check cell runs in two places.  In the student's own notebook (and in the solution notebook
that CI executes) it calls the answer functions directly.  When the grader runs it, it runs in
the grader's trusted process, where every answer name is an :class:`Answer`: calling it sends the
arguments to the student's kernel and returns the answer's return value as data.  The helpers
here behave the same in both places:

- :func:`call_with_effects` ``(fn, *args, **kwargs) -> (value, Effects)``: the return value and
  what the call changed in its arguments -- tensors changed in place, model parameters changed,
  parameter gradients filled, train/eval mode switched.  (In the grader's process an answer works
  on copies of the arguments, so the arguments a check holds never change; ask for the effects.)
- :func:`in_student_kernel`: a decorator for a function that must run *beside* the answers
  (it needs a live object, e.g. an ``autograd.Function`` class the student wrote).  Under the
  grader its source is sent to the student's kernel, run there with the notebook's names, and
  only what it returns comes back (as data, like an answer's value).  Keep its work small and
  its result raw (tensors, numbers), and check the result in the cell, not inside it.
- :func:`record` ``(name, value)``: a named measurement of the check (a hidden score, say).
  Under the grader it is stored with the check's result -- in the gradebook's ``measurements``
  column and the student's feedback, and ``python -m utils.grading leaderboard`` ranks a class
  by it; elsewhere it is printed.  Only the trusted worker's record counts: a notebook that
  calls it records nothing.
"""

from __future__ import annotations

import builtins
import inspect
import textwrap
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

_session = None   # the grader's connection to the student's kernel (set only by the grader)
_recorder = None  # where the running check's measurements go (set only by the grader's worker)
MAX_MEASUREMENTS = 32     # per check; names are identifiers of at most 40 characters


class AnswerError(Exception):
    """An answer raised in the student's kernel: ``type_name`` is its exception's class name."""

    def __init__(self, answer: str, type_name: str, message: str):
        self.answer, self.type_name, self.message = answer, type_name, message
        if type_name == "NotImplementedError" and not message:
            text = f"{answer} raised NotImplementedError (an answer is not written yet)"
        else:
            text = f"{answer} raised {type_name}" + (f": {message}" if message else "")
        super().__init__(text)


_BUILTIN_ERRORS = {
    name: getattr(builtins, name)
    for name in ("ValueError", "TypeError", "RuntimeError", "NotImplementedError", "KeyError",
                 "IndexError", "AssertionError", "ZeroDivisionError", "AttributeError",
                 "ArithmeticError", "LookupError", "OverflowError", "MemoryError",
                 "PermissionError", "OSError", "NameError", "RecursionError", "StopIteration")
}
_ERROR_CLASSES: dict[str, type] = {}


def answer_error(answer: str, type_name: str, message: str) -> AnswerError:
    """An :class:`AnswerError` that is also an instance of the builtin of the same name (so a
    check's ``except ValueError`` still works when an answer raised ``ValueError``)."""
    base = _BUILTIN_ERRORS.get(type_name)
    if base is None:
        return AnswerError(answer, type_name, message)
    if type_name not in _ERROR_CLASSES:
        _ERROR_CLASSES[type_name] = type(f"Answer{type_name}", (AnswerError, base), {})
    return _ERROR_CLASSES[type_name](answer, type_name, message)


@dataclass(frozen=True)
class Effects:
    """What one call changed in its arguments (each a tuple of argument paths, e.g. ``args[1]``)."""

    modified_arguments: tuple[str, ...] = ()   # tensors / arrays changed in place
    parameters_changed: tuple[str, ...] = ()   # models whose parameters or buffers changed
    parameter_grads: tuple[str, ...] = ()      # models whose parameters' .grad changed
    mode_changed: tuple[str, ...] = ()         # models switched between train() and eval()

    @classmethod
    def from_dict(cls, data: dict) -> Effects:
        def paths(key):
            value = data.get(key, ())
            if not isinstance(value, (list, tuple)) or not all(isinstance(v, str) for v in value):
                raise ValueError(f"malformed effects ({key})")
            return tuple(v[:200] for v in value[:100])
        return cls(*(paths(key) for key in ("modified_arguments", "parameters_changed",
                                            "parameter_grads", "mode_changed")))

    def as_dict(self) -> dict:
        return {"modified_arguments": list(self.modified_arguments),
                "parameters_changed": list(self.parameters_changed),
                "parameter_grads": list(self.parameter_grads),
                "mode_changed": list(self.mode_changed)}


class Answer:
    """In the grader's process: an answer of the student's notebook, called over the wire.

    ``fgsm(model, x, y, eps=0.1)`` sends the arguments (as data) to the student's kernel, runs
    ``fgsm`` there and returns its value (as data).  ``Net.method(...)`` calls a dotted name.
    """

    __slots__ = ("_name",)

    def __init__(self, name: str):
        object.__setattr__(self, "_name", name)

    def __call__(self, *args, **kwargs):
        if _session is None:
            raise RuntimeError(f"{self._name} is an answer of a graded notebook; it can only be "
                               "called while the grader runs")
        return _session.call_answer(self._name, args, kwargs, effects=False)[0]

    def __getattr__(self, name: str) -> Answer:
        if name.startswith("__"):
            raise AttributeError(name)
        return Answer(f"{self._name}.{name}")

    def __setattr__(self, name, value):
        raise AttributeError(f"{self._name} is the student's answer: it cannot be changed here")

    def __repr__(self) -> str:
        return f"<answer {self._name} (runs in the student's kernel)>"

    @property
    def __name__(self) -> str:
        return self._name.rsplit(".", 1)[-1]


def call_with_effects(fn: Callable, *args, **kwargs) -> tuple[Any, Effects]:
    """``fn(*args, **kwargs)`` and what it changed in its arguments: ``(value, Effects)``."""
    if isinstance(fn, Answer):
        value, extra = _session.call_answer(fn._name, args, kwargs, effects=True)
        return value, Effects.from_dict(extra.get("effects") or {})
    value, effects = measure_effects(fn, args, kwargs)
    return value, Effects.from_dict(effects)


def in_student_kernel(fn: Callable) -> Callable:
    """Decorator: under the grader, run ``fn`` in the student's kernel and return its value.

    ``fn`` may use its arguments and the notebook's names (the answers, ``torch``, ...), not
    variables of the cell around it.  Outside the grader it is ``fn`` itself.
    """
    if _session is None:
        return fn
    if fn.__code__.co_freevars:
        raise ValueError(f"{fn.__name__} uses variables of the code around it "
                         f"({', '.join(fn.__code__.co_freevars)}): pass them as arguments")
    source = textwrap.dedent(inspect.getsource(fn))
    lines = source.split("\n")
    while lines and lines[0].lstrip().startswith("@"):
        lines.pop(0)              # the decorators stay here
    source, name = "\n".join(lines), fn.__name__

    def run_there(*args, **kwargs):
        return _session.call_probe(name, source, args, kwargs)

    run_there.__name__ = run_there.__qualname__ = name
    return run_there


def under_grader() -> bool:
    """Whether this code runs under the grader (in its trusted worker or in a graded kernel):
    a lab's ungraded cells that only show the student something can skip their work then."""
    import os

    return _session is not None or os.environ.get("ADVX_GRADING") == "1"


def record(name: str, value) -> float:
    """Record the measurement ``name`` (an identifier) of the running check: ``value`` as a
    finite float, returned.  Under the grader it goes with the check's result (gradebook,
    feedback, leaderboard); in a notebook it is printed as ``name = value``."""
    import math

    if not isinstance(name, str) or not name.isidentifier() or len(name) > 40:
        raise ValueError(f"a measurement's name is an identifier of at most 40 characters, "
                         f"got {name!r}")
    value = float(value)
    if not math.isfinite(value):
        raise ValueError(f"measurement {name} must be a finite number, got {value}")
    if _recorder is not None:
        _recorder(name, value)
    else:
        print(f"{name} = {value:.6g}")
    return value


# ============================================================================================
# measuring effects (used in the student's kernel for graded calls, and locally)


def _walk(value, path: str, tensors: list, modules: list, depth: int = 0) -> None:
    import sys

    torch = sys.modules.get("torch")
    if depth > 6:
        return
    if torch is not None and isinstance(value, torch.Tensor):
        tensors.append((path, value))
    elif torch is not None and isinstance(value, torch.nn.Module):
        modules.append((path, value))
    elif type(value).__module__ == "numpy" and type(value).__name__ == "ndarray":
        tensors.append((path, value))
    elif isinstance(value, (list, tuple)):
        for index, item in enumerate(value[:1000]):
            _walk(item, f"{path}[{index}]", tensors, modules, depth + 1)
    elif isinstance(value, dict):
        for key, item in list(value.items())[:1000]:
            _walk(item, f"{path}[{key!r}]", tensors, modules, depth + 1)


def _copy(array):
    return array.detach().clone() if hasattr(array, "detach") else array.copy()


def _same(a, b) -> bool:
    if hasattr(a, "detach"):
        import torch

        return a.shape == b.shape and a.dtype == b.dtype and bool(torch.equal(a.detach(), b))
    import numpy as np

    return a.shape == b.shape and bool(np.array_equal(a, b, equal_nan=True))


def measure_effects(fn: Callable, args: tuple, kwargs: dict) -> tuple[Any, dict]:
    """Call ``fn`` and compare its tensor and model arguments before and after."""
    tensors: list = []
    modules: list = []
    for index, value in enumerate(args):
        _walk(value, f"args[{index}]", tensors, modules)
    for key, value in kwargs.items():
        _walk(value, key, tensors, modules)
    before = [(path, tensor, _copy(tensor)) for path, tensor in tensors]
    states = []
    for path, module in modules:
        values = {name: _copy(v) for name, v in module.state_dict(keep_vars=True).items()}
        grads = {name: (None if p.grad is None else _copy(p.grad))
                 for name, p in module.named_parameters()}
        states.append((path, module, values, grads, [m.training for m in module.modules()]))
    value = fn(*args, **kwargs)
    effects = {"modified_arguments": [], "parameters_changed": [], "parameter_grads": [],
               "mode_changed": []}
    for path, tensor, copy in before:
        if not _same(tensor, copy):
            effects["modified_arguments"].append(path)
    for path, module, values, grads, modes in states:
        now = module.state_dict(keep_vars=True)
        if set(now) != set(values) or any(not _same(now[k], v) for k, v in values.items()):
            effects["parameters_changed"].append(path)
        for name, p in module.named_parameters():
            old = grads.get(name)
            if (p.grad is None) != (old is None) or (old is not None and not _same(p.grad, old)):
                effects["parameter_grads"].append(path)
                break
        if [m.training for m in module.modules()] != modes:
            effects["mode_changed"].append(path)
    return value, effects
