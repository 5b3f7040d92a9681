"""Grade submitted labs into a gradebook, with verdicts no notebook can forge.

    python -m utils.grading SUBMISSION [...] [--gradebook gradebook.csv] [--jobs N]

A SUBMISSION is a lab notebook or a folder of them (``alice/01_..._lab.ipynb`` is graded as
student ``alice``).  The result is a per-check table and a gradebook CSV (``student, lab,
points, max_points, reasons``), rewritten atomically after every submission and merged with the
rows of earlier runs.

Who computes a verdict
----------------------
Three kinds of process, per submission:

- the **grader** (:mod:`.cli`) lists submissions, runs ``--jobs`` of them at once and writes the
  gradebook; it reads only the events of its workers;
- a **worker** (:mod:`.worker`, trusted: no student code ever runs in it) runs the solution's
  cells -- the given cells and every check cell, hidden tests included -- and decides each
  check: it passes when the solution's check cell runs to its end *in the worker*;
- the student's **kernel** (:mod:`.kernel`, untrusted) runs the student's own cells, and the
  answer functions when the worker calls them.

The worker reaches the answers only as data (:mod:`.wire`): calling ``fgsm(model, x, y,
eps=0.1)`` in a check sends the arguments down a pipe, runs ``fgsm`` in the kernel, and returns
its value.  What crosses: tensors (dtype, shape, device, ``requires_grad`` kept), NumPy arrays and
scalars, Python numbers, strings, bytes, ``None``, lists/tuples/dicts of those, ``torch.device``
/ ``dtype`` / ``Size`` / ``Generator`` (its state; the state after the call is copied back), zoo
models (by name: each side loads its own), answer functions (by name), and -- valid only during
that call -- callables and the face black box, which the kernel calls *back* into the worker.
No pickle: arrays are raw bytes with a declared dtype and shape, checked on arrival, with size
and nesting limits.  So an object that "equals everything", a patched ``torch.equal``, a
redefined check function, a fake results file or a disabled traceback changes nothing: none of it
crosses.  The student's copies of the check cells are never run by the grader.

Writing check cells (labs 00-06 follow this; a solution declares it, see :mod:`utils.labs`)
-------------------------------------------------------------------------------------------
1. Call the answer functions with tensors, arrays, numbers, strings, zoo models loaded by name
   (``zoo.load(name, device)``) or functions of the check, and assert on the *returned values*
   against trusted code (the library's).  Such cells need no change at all.
2. Do not read the notebook's other globals (they do not exist in the worker; the solution's
   given cells run there instead), and do not rely on side effects: the answer worked on copies.
   To check side effects, ask for them::

       x_adv, effects = call_with_effects(fgsm, model, x, y, eps=0.1)
       assert not effects.modified_arguments, "fgsm must not change its input"
       assert not effects.parameter_grads, "take gradients w.r.t. the input only"

   (``effects.parameters_changed``, ``effects.mode_changed`` too.)  It works the same in the
   student's notebook, where it measures the call locally.
3. When a check needs a live object of the notebook (a class the student wrote, an
   ``autograd.Function``, a module built there), decorate a small function with
   :func:`in_student_kernel`: under the grader its source runs in the kernel and only its return
   value comes back, as data.  Return *measurements* (outputs, gradients, Jacobian rows on inputs
   the check chose), never a verdict (``gradcheck(...)``'s bool): everything in the kernel,
   torch included, is the student's; the check compares the measurements with its own computation.
4. Rules such as "write FGSM yourself" go in the solution's metadata
   (``utils.labs.set_grading(notebook, forbid=["utils.attacks", "captum.robust", ...], why=...)``),
   not in the cell: the kernel then has those functions replaced by ones that raise
   ``PermissionError`` and their files read as empty.  List every installed library implementing
   the method and the course library's building blocks, not just its entry points.
   :func:`utils.labs.grading_problems` flags cells in the old style (``labs --check`` fails on them).
5. A check that measures something worth keeping (a hidden score) calls
   :func:`record` ``(name, value)``: under the grader the value goes with the check's result
   into the gradebook's ``measurements`` column and the feedback, and
   ``python -m utils.grading leaderboard gradebook.csv --lab LAB --measure NAME`` ranks a class
   by it; in a notebook it is printed.  :func:`under_grader` tells an ungraded cell that only
   shows the student something (a slow validation run) that it may skip its work.

What the grader guarantees, and what not
----------------------------------------
Verdicts are computed in the worker in every mode.  With root and bubblewrap (the default where
possible; :mod:`.sandbox`) each kernel is a fresh exec -- never a fork of a process that held the
grader's configuration, environment or paths -- in its own PID, mount, network, IPC and UTS
namespaces with a fresh ``/proc``, a read-only view of the system, Python, ``utils/``, ``data/``
and the zoo (no ``solutions/``, hidden tests, submissions or ``.git``; the secret checkpoints and
forbidden modules' files read as empty), a private ``/tmp``, a whitelisted environment, an
unprivileged uid, and a cgroup (processes, memory of the whole kernel, CPU = its cores) where the
machine allows; when it ends, everything it started ends.  Without the sandbox (``--isolation
none``, no root, no bwrap) kernels are still fresh execs with the whitelisted environment and
never root, but see the machine's files and namespaces; stderr and every gradebook row say so.
Not guaranteed: that the student wrote the code; timing precision under load.
"""

from utils.grading.api import (AnswerError, Effects, call_with_effects, in_student_kernel, record,
                               under_grader)

_LAZY = {  # the grader's own machinery, imported on first use (a student's kernel never needs it)
    "grade": "cli", "DEFAULT_TIMEOUT": "cli", "DEFAULT_CELL_TIMEOUT": "cli",
    "GRADEBOOK_FIELDS": "gradebook", "Check": "gradebook", "Result": "gradebook",
    "table": "gradebook", "write_gradebook": "gradebook", "find_submissions": "notebooks",
    "identify_lab": "notebooks", "solution_notebooks": "notebooks",
    "leaderboard": "gradebook", "read_gradebook": "gradebook",
}

__all__ = [
    "DEFAULT_CELL_TIMEOUT",
    "DEFAULT_TIMEOUT",
    "GRADEBOOK_FIELDS",
    "AnswerError",
    "Check",
    "Effects",
    "Result",
    "call_with_effects",
    "find_submissions",
    "grade",
    "identify_lab",
    "in_student_kernel",
    "leaderboard",
    "main",
    "record",
    "solution_notebooks",
    "read_gradebook",
    "table",
    "under_grader",
    "write_gradebook",
]


def __getattr__(name: str):
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(f"utils.grading.{_LAZY[name]}"), name)
    raise AttributeError(f"module 'utils.grading' has no attribute {name!r}")


def main(argv=None):
    """``python -m utils.grading`` (the ``advx-grade`` console script)."""
    from utils.grading.cli import main as run

    return run(argv)
