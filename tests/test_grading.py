"""The grader, attacked the way a student of this course would attack it.

Most of this file is one *hostile set*: submissions that try each route around the grader --
switching off error reporting, fake result files, killing the grader, exiting or flooding the
kernel, ignoring interrupts, objects that lie about their value, patched checks and libraries,
forged protocol messages, reading the solution or the black box's weights, calling the library
instead of writing the code, sharing the black box's budget -- each with the points its real
answers earn and the reason the grader must give.  They are graded in two batches (a light one
with short limits, and two full lab-00 runs), so the whole file stays within a few minutes.
"""

from __future__ import annotations

import copy
import csv
import json
import os
from pathlib import Path

import nbformat
import numpy as np
import pytest
import torch

from utils import grading, labs
from utils.grading import api, sandbox, wire
from utils.grading.cli import environment

ROOT = Path(__file__).resolve().parents[1]
TOY = "99_toy_lab"
OLD = "98_old_lab"
RULES = "97_rules_lab"
BOX = "96_blackbox_lab"
PROBE = "95_probe_lab"
LAB00 = "00_start_here_lab"
FULL = sandbox.unavailable() is None             # root with bubblewrap (here and in CI)
needs_cage = pytest.mark.skipif(not FULL, reason="needs root and bubblewrap")
try:   # as root without bubblewrap and with Python unreadable to others nothing can be graded
    environment("auto")                     # here: kernels never run as root
    CANNOT_GRADE = ""
except RuntimeError as _error:
    CANNOT_GRADE = str(_error)


# ============================================================================================
# the labs: a toy lab, an old-format lab, a "write it yourself" lab, a black-box lab, lab 00


def notebook(cells, **grading_settings):
    nb = nbformat.v4.new_notebook(cells=cells)
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3",
                                 "language": "python"}
    if grading_settings.pop("old", False) is False:
        labs.set_grading(nb, **grading_settings)
    return nb


def answer(name: str, body: str, args: str = "") -> nbformat.NotebookNode:
    lines = "\n".join("    " + line for line in body.strip("\n").split("\n"))
    return labs.answer_cell(f"def {name}({args}):\n    ### BEGIN SOLUTION\n{lines}\n"
                            "    ### END SOLUTION", name)


def toy_solution(**settings):
    return notebook([
        nbformat.v4.new_markdown_cell("# A toy lab"),
        nbformat.v4.new_code_cell("base = 10"),
        answer("add", "return a + b", "a, b"),
        labs.test_cell("assert add(2, 3) == 5\n### BEGIN HIDDEN TESTS\nassert add(-1, base) == 9\n"
                       "### END HIDDEN TESTS", "check_add", 2),
        answer("square", "return x * x", "x"),
        labs.test_cell("assert square(3) == 9\n### BEGIN HIDDEN TESTS\nassert square(-4) == 16\n"
                       "### END HIDDEN TESTS", "check_square", 1),
    ], **settings)


RULE_ROUTES = {   # answer name -> body; every one but the first tries to use the library's FGSM
    "honest": """x = x.clone().requires_grad_(True)
(g,) = torch.autograd.grad(torch.nn.functional.cross_entropy(model(x), y), x)
return (x + 0.1 * g.sign()).clamp(0, 1).detach()""",
    "library": "return attacks.fgsm(model, x, y, eps=0.1)",
    "reload": """import importlib, utils.attacks
importlib.reload(utils.attacks)
return utils.attacks.fgsm(model, x, y, eps=0.1)""",
    "source": """namespace = {}
exec(open(attacks.__file__).read(), namespace)
return namespace["fgsm"](model, x, y, eps=0.1)""",
    "bytecode": """import glob, marshal, os
[pyc] = glob.glob(os.path.join(os.path.dirname(attacks.__file__), "__pycache__", "attacks.*.pyc"))
namespace = {}
exec(marshal.loads(open(pyc, "rb").read()[16:]), namespace)
return namespace["fgsm"](model, x, y, eps=0.1)""",
    "garbage_collector": """import gc, types
found = [f for f in gc.get_objects() if isinstance(f, types.FunctionType) and f.__name__ == "fgsm"
         and getattr(getattr(f, "__code__", None), "co_filename", "") == attacks.__file__]
return found[0](model, x, y, eps=0.1)""",
    "subprocess": """import subprocess, sys, torch
torch.save((x, y), "/tmp/xy.pt")
code = ("import torch; from utils import attacks, zoo; x, y = torch.load('/tmp/xy.pt');"
        "torch.save(attacks.fgsm(zoo.load('fashion_mlp'), x, y, eps=0.1), '/tmp/out.pt')")
subprocess.run([sys.executable, "-c", code], check=True, capture_output=True)
return torch.load("/tmp/out.pt")""",
    "torchattacks": "import torchattacks\nreturn torchattacks.FGSM(model, eps=0.1)(x, y)",
    "captum_robust": "from captum.robust import FGSM\n"
                     "return FGSM(model, lower_bound=0.0, upper_bound=1.0).perturb(x, 0.1, y)",
    "getsource": """import inspect
namespace = {"torch": torch}
exec(inspect.getsource(attacks.fgsm), vars(attacks) | namespace)
return namespace["fgsm"](model, x, y, eps=0.1)""",
}


def rules_solution():
    cells = [nbformat.v4.new_code_cell(
        "import torch\nfrom utils import attacks, zoo\nmodel = zoo.load('fashion_mlp')\n"
        "x = torch.rand(6, 1, 28, 28, generator=torch.Generator().manual_seed(0))\n"
        "y = torch.arange(6)")]
    for name, body in RULE_ROUTES.items():
        cells.append(answer(name, body, "model, x, y"))
        cells.append(labs.test_cell(
            f"assert torch.allclose({name}(model, x, y), attacks.fgsm(model, x, y, eps=0.1), "
            "atol=1e-6)", f"check_{name}", 1))
    cells.append(answer("captum_ig", "from captum.attr import IntegratedGradients\n"
                        "return IntegratedGradients(model).attribute(x, target=y, n_steps=8)",
                        "model, x, y"))
    cells.append(labs.test_cell(
        "from captum.attr import IntegratedGradients\n"
        "assert torch.allclose(captum_ig(model, x, y), IntegratedGradients(model).attribute("
        "x, target=y, n_steps=8), atol=1e-5)", "check_captum_ig", 1))
    return notebook(cells, forbid=["utils.attacks", "torchattacks", "captum.attr", "captum.robust",
                                   "utils.attribution"], why="write it yourself")


BOX_ROUTES = {   # answer name -> body (arguments: the black box, 5 faces)
    "describe": "return bb.query(x)",
    "over_budget": "bb.query(x)\nbb.query(x)\nreturn bb.query(x)",
    "second_box": "faces.BlackBox().query(x)\nfaces.BlackBox(budget=None).query(x)\n"
                  "return bb.query(x)",
    "global_box": "blackbox.query(x)\nblackbox.query(x)\nreturn blackbox.query(x)",
    "keep": "global kept\nkept = bb\nreturn bb.query(x)",
    "stale": "return kept.query(x)",
    "weights": """from utils import zoo
try:
    state = torch.load(zoo.entry("face_blackbox").path, weights_only=True)
except Exception:
    net = zoo.load("face_blackbox")
else:
    net = zoo.entry("face_blackbox").new_model()
    net.load_state_dict(state)
with torch.no_grad():
    return net(x).numpy()""",
    "pipeline": "return faces.best_attack(bb, x, x)",
    "hunt": """import gc
nets = [o for o in gc.get_objects() if isinstance(o, torch.nn.Module)]
with torch.no_grad():
    return nets[0](x).numpy()""",
}


def probe_solution():
    """Answers that are not plain functions: a class with a custom gradient, and a value."""
    probe = ("from utils.grading import in_student_kernel\n\n@in_student_kernel\n"
             "def _through(x):\n    x = x.clone().requires_grad_(True)\n    y = Double.apply(x)\n"
             "    (g,) = torch.autograd.grad(y.sum(), x)\n    return y.detach(), g\n\n"
             "y, g = _through(torch.arange(3.0))\n"
             "assert torch.equal(y, 2 * torch.arange(3.0)), 'forward doubles'\n"
             "assert torch.equal(g, torch.full((3,), 2.0)), 'backward doubles the gradient'")
    return notebook([
        nbformat.v4.new_code_cell("import torch"),
        labs.answer_cell("class Double(torch.autograd.Function):\n    @staticmethod\n"
                         "    def forward(ctx, x):\n        ### BEGIN SOLUTION\n"
                         "        return 2 * x\n        ### END SOLUTION\n\n    @staticmethod\n"
                         "    def backward(ctx, g):\n        ### BEGIN SOLUTION\n"
                         "        return 2 * g\n        ### END SOLUTION", "double"),
        labs.test_cell(probe, "check_gradient", 1),
        labs.test_cell("assert torch.equal(Double.apply(torch.ones(2)), torch.full((2,), 2.0))",
                       "check_dotted", 1),
        labs.answer_cell("### BEGIN SOLUTION\nTHRESHOLD = 0.5\n### END SOLUTION", "threshold"),
        labs.test_cell("assert THRESHOLD == 0.5", "check_value", 1),
    ])


def box_solution():
    cells = [nbformat.v4.new_code_cell(
        "import numpy as np\nimport torch\nfrom utils import faces\nblackbox = faces.BlackBox()\n"
        "x = faces.pair_sets(1, seed=5)[0].images()[0]\nprint(blackbox.query(x[:2]).shape)")]
    for name, body in BOX_ROUTES.items():
        cells.append(answer(name, body, "bb, x"))
        cells.append(labs.test_cell(
            f"limited = faces.BlackBox(budget=10)\nout = {name}(limited, x)\n"
            "assert np.allclose(out, blackbox.query(x), atol=1e-5)\n"
            "assert limited.queries <= 10", f"check_{name}", 1))
    return notebook(cells, forbid=["utils.faces:best_attack", "utils.faces:attack"],
                    blackbox_setup_queries=10)


# ============================================================================================
# hostile submissions


def with_answers(lab, add_body: str, square_body: str = "return x * x"):
    nb = copy.deepcopy(lab)
    nb.cells[2].source = f"def add(a, b):\n    {add_body}"
    nb.cells[4].source = f"def square(x):\n    {square_body}"
    return nb


def before_answers(lab, source: str, index: int = 2):
    nb = copy.deepcopy(lab)
    nb.cells.insert(index, nbformat.v4.new_code_cell(source))
    return nb


SERVER = ("import gc, utils.grading.kernel as k\n"
          "server = [o for o in gc.get_objects() if isinstance(o, k.KernelServer)][0]\n")
ERRORS_OFF = ("import sys\nip = get_ipython()\nip.set_custom_exc((BaseException,), lambda *a, **k: None)\n"
              "ip.showtraceback = lambda *a, **k: None\nsys.excepthook = lambda *a: None\n")
FAKE_RESULTS = ("import json, os\nfake = [json.dumps({'grade_id': g, 'passed': True}) for g in "
                "('check_test_accuracy', 'check_confusion_matrix', 'check_most_confused',"
                " 'check_add', 'check_square')]\n"
                "def forge(*args):\n"
                "    for folder in ('.', '/tmp', os.environ.get('HOME', '.')):\n"
                "        try:\n"
                "            open(os.path.join(folder, 'results.jsonl'), 'a').write('\\n'.join(fake))\n"
                "        except OSError:\n"
                "            pass\n"
                "get_ipython().events.register('post_run_cell', forge)\nforge()\n")
KILL_GRADER = ("import os, signal\nsignal.signal(signal.SIGINT, signal.SIG_IGN)\n"
               "for target in (os.getppid(), 1):\n"
               "    try:\n        os.kill(target, signal.SIGKILL)\n    except OSError:\n        pass\n"
               "try:\n    os.killpg(os.getpgid(os.getppid()), signal.SIGKILL)\nexcept OSError:\n"
               "    pass\nsignal.signal(signal.SIGINT, signal.default_int_handler)\n")
PATCH_CHECKS = ("import torch, numpy, sklearn.metrics, utils.training\n"
                "torch.equal = lambda *a, **k: True\ntorch.allclose = lambda *a, **k: True\n"
                "numpy.allclose = lambda *a, **k: True\n"
                "sklearn.metrics.confusion_matrix = lambda *a, **k: None\n"
                "utils.training.accuracy = lambda *a, **k: 0.9\n")
PATCH_EVERYTHING = PATCH_CHECKS + (
    "torch.Tensor.__eq__ = lambda self, other: torch.ones_like(self, dtype=torch.bool)\n")


def toy_set(lab, solution_path: Path) -> dict:
    """student -> (notebook or text, expected points, [reason substrings], [absent substrings])."""
    garbage = SERVER + "os_ = __import__('os')\nos_.write(server.endpoint.write_fd, b'garbage' * 50)\n"
    forged = SERVER + ("from utils.grading import wire\nwire.send(server.endpoint.write_fd, "
                       "{'kind': 'reply', 'id': '0' * 16, 'ok': True, 'data': 5})\n")
    return {
        "correct": (with_answers(lab, "return a + b"), 3, [], []),
        "wrong": (with_answers(lab, "return a - b"), 1, ["check_add: AssertionError"], []),
        "crash": (with_answers(lab, "return a + b", "raise ValueError('boom')"), 2,
                  ["square raised ValueError: boom"], []),
        "invalid": ("{ this is not json", 0, ["not a readable notebook"], []),
        "deleted": (_deleted(lab), 2, ["answer cell(s) deleted: square",
                                       "check_square: square is not defined in your notebook"], []),
        "tampered": (_tampered(lab), 1, ["check_add: AssertionError"], []),
        "untouched": (lab, 0, ["add raised NotImplementedError (an answer is not written yet)",
                               "square raised NotImplementedError"], []),
        "loop": (with_answers(lab, "while True:\n        pass"), 1,
                 ["check_add: interrupted after the cell time limit"], []),
        "deaf_loop": (with_answers(lab, "import signal\n    signal.signal(signal.SIGINT, "
                                   "signal.SIG_IGN)\n    while True:\n        pass"), 1,
                      ["check_add: interrupted after the cell time limit", "ignored the interrupt"],
                      []),
        "deaf_cell": (before_answers(with_answers(lab, "return a + b"), "import signal\nsignal.signal(signal.SIGINT, "
                                     "signal.SIG_IGN)\nwhile True:\n    pass"), 3,
                      ["cell 2 ran past the cell time limit and ignored the interrupt"], []),
        "dying_cell": (with_answers(lab, "return a + b", "return x * x\nimport os\nos._exit(1)"), 2,
                       ["cell 4 stopped the kernel (it exited with status 1)",
                        "check_square: square is not defined"], []),
        "dying_call": (with_answers(lab, "return a + b", "import os\n    os._exit(3)"), 2,
                       ["check_square: the kernel died while this check ran (it exited with "
                        "status 3)"], []),
        "flood_call": (with_answers(lab, "while True:\n        print('x' * 10000)"), 1,
                       ["check_add: output flood"], []),
        "flood_cell": (with_answers(lab, "return a + b\nfor _ in range(10 ** 6):\n"
                                    "    print('x' * 1000)"), 3, ["printed more than"], []),
        "kill_grader": (before_answers(with_answers(lab, "return a + b"), KILL_GRADER), 3,
                        ["the notebook sent SIGKILL to process"], []),
        "errors_off": (before_answers(lab, ERRORS_OFF), 0,
                       ["switched off error reporting", "add raised NotImplementedError"], []),
        "fake_results": (before_answers(lab, FAKE_RESULTS), 0, ["add raised NotImplementedError"],
                         []),
        "liar": (with_answers(lab, "class Liar(int):\n        __eq__ = lambda s, o: True\n"
                              "        __ne__ = lambda s, o: False\n    return Liar(a - b)"), 1,
                 ["check_add: AssertionError"], []),
        "returns_function": (with_answers(lab, "return lambda: a + b"), 1,
                             ["add returned something that is not data"], []),
        "deep_value": (with_answers(lab, "return a + b", "v = x * x\n    for _ in range(200):\n"
                                    "        v = [v]\n    return v"), 2,
                       ["square returned something that is not data", "nested"], []),
        "protocol_garbage": (with_answers(lab, garbage.replace("\n", "\n    ") + "return a + b"), 1,
                             ["check_add: the notebook's kernel broke the grading protocol"], []),
        "forged_reply": (with_answers(lab, forged.replace("\n", "\n    ") + "return a + b"), 1,
                         ["check_add: the notebook's kernel broke the grading protocol"], []),
        "memory_bomb": (with_answers(lab, "return a + b", "hog = bytearray(64 * 2 ** 30)\n"
                                     "    return x * x"), 2, ["square raised MemoryError"], []),
        "daemon": (with_answers(lab, "import os, time\n    if os.fork() == 0:\n        os.setsid()\n"
                                "        time.sleep(600)\n        os._exit(0)\n    return a + b"),
                   3, [], []),
        "reads_solution": (with_answers(lab, "return a + b",
                                        f"import json\n    nb = json.load(open({str(solution_path)!r}))\n"
                                        "    exec(''.join(nb['cells'][4]['source']), globals())\n"
                                        "    return square(x)"), 2,
                           ["square raised FileNotFoundError"], []),
        "bonus_cells": (_bonus(lab), 0, ["add raised NotImplementedError"], ["bonus"]),
        "=HYPERLINK(\"x\")": (with_answers(lab, "return a + b"), 3, [], []),
    }


def _deleted(lab):
    nb = with_answers(lab, "return a + b")
    del nb.cells[5]       # the square check
    del nb.cells[4]       # the square answer
    return nb


def _tampered(lab):
    nb = with_answers(lab, "return 5")
    nb.cells[3].source = "pass  # tests? what tests"
    return nb


def _bonus(lab):
    nb = copy.deepcopy(lab)
    nb.cells[3].source = "pass"
    nb.cells.append(labs.test_cell("pass", "bonus", 100))
    return nb


def lab00_set(lab, solution_path: Path) -> dict:
    """Real lab 00, answers left blank: every trick must leave the grade at 0/5."""
    blank = ["test_accuracy raised NotImplementedError", "confusion_matrix raised NotImplementedError"]
    read_solution = ("import json\n\ndef test_accuracy(model, images, labels, batch_size=500):\n"
                     f"    nb = json.load(open({str(solution_path)!r}))\n"
                     "    exec(''.join(nb['cells'][4]['source']), globals())\n"
                     "    return test_accuracy(model, images, labels, batch_size)\n")
    return {
        "l00_untouched": (lab, 0, blank, []),
        "l00_errors_off": (before_answers(lab, ERRORS_OFF, 3), 0,
                           blank + ["switched off error reporting"], []),
        "l00_fake_results": (before_answers(lab, FAKE_RESULTS, 3), 0, blank, []),
        "l00_kill_grader": (before_answers(lab, KILL_GRADER, 3), 0,
                            blank + ["the notebook sent SIGKILL to process"], []),
        "l00_exit": (before_answers(lab, "import os\nos._exit(0)", 3), 0,
                     blank + ["cell 3 stopped the kernel (it exited with status 0)"], []),
        "l00_patched": (_liar00(lab), 0, ["check_test_accuracy: AssertionError"], []),
        "l00_reads_solution": (_replace_cell(lab, 4, read_solution), 0,
                               ["test_accuracy raised FileNotFoundError"], []),
        "l00_bonus": (_bonus00(lab), 0, blank, ["bonus"]),
    }


def _replace_cell(lab, index: int, source: str):
    nb = copy.deepcopy(lab)
    nb.cells[index].source = source
    return nb


def _liar00(lab):
    nb = before_answers(lab, PATCH_EVERYTHING, 3)
    nb.cells[5].source = ("def test_accuracy(model, images, labels, batch_size=500):\n"
                          "    class Liar(float):\n        __eq__ = lambda s, o: True\n"
                          "        __lt__ = __le__ = __ge__ = __gt__ = lambda s, o: True\n"
                          "        __sub__ = __rsub__ = lambda s, o: 0.0\n"
                          "    return Liar(0.95)")
    return nb


def _bonus00(lab):
    nb = copy.deepcopy(lab)
    for cell in nb.cells:
        if labs.is_test(cell):
            cell.source = "pass"
    nb.cells.append(labs.test_cell("pass", "bonus", 100))
    return nb


def submit(folder: Path, student: str, lab_name: str, content) -> Path:
    (folder / student).mkdir(parents=True, exist_ok=True)
    path = folder / student / f"{lab_name}.ipynb"
    if isinstance(content, str):
        path.write_text(content)
    else:
        nbformat.write(content, path)
    return path


@pytest.fixture(scope="module")
def course(tmp_path_factory):
    """A solutions folder: the toy labs, an old-format lab and a copy of lab 00's solution."""
    if CANNOT_GRADE:
        pytest.skip(CANNOT_GRADE)
    root = tmp_path_factory.mktemp("course")
    solutions = root / "solutions"
    solutions.mkdir()
    nbformat.write(toy_solution(), solutions / f"{TOY}.ipynb")
    nbformat.write(toy_solution(old=True), solutions / f"{OLD}.ipynb")
    nbformat.write(rules_solution(), solutions / f"{RULES}.ipynb")
    nbformat.write(box_solution(), solutions / f"{BOX}.ipynb")
    nbformat.write(probe_solution(), solutions / f"{PROBE}.ipynb")
    (solutions / f"{LAB00}.ipynb").write_bytes((ROOT / "solutions" / f"{LAB00}.ipynb").read_bytes())
    return solutions


@pytest.fixture(scope="module")
def light(course, tmp_path_factory):
    """The hostile set (and the rules and black-box labs), graded in one batch of two jobs."""
    folder = tmp_path_factory.mktemp("submissions")
    toy_lab = labs.make_lab(toy_solution(), TOY)
    expected = {}
    for student, (content, points, reasons, absent) in toy_set(toy_lab, course / f"{TOY}.ipynb").items():
        submit(folder, student, TOY, content)
        expected[(student, TOY)] = (points, reasons, absent)
    lab00 = nbformat.read(ROOT / "labs" / f"{LAB00}.ipynb", as_version=4)
    for student, (content, points, reasons, absent) in lab00_set(lab00, course / f"{LAB00}.ipynb").items():
        submit(folder, student, LAB00, content)
        expected[(student, LAB00)] = (points, reasons, absent)
    (folder / "l00_symlink").mkdir()
    (folder / "l00_symlink" / f"{LAB00}.ipynb").symlink_to(course / f"{LAB00}.ipynb")
    expected[("l00_symlink", LAB00)] = (0, ["symbolic link"], [])
    submit(folder, "old_format", OLD, labs.make_lab(toy_solution(old=True), OLD))
    expected[("old_format", OLD)] = (0, ["cannot be graded", "old format", "not graded"], [])
    submit(folder, "rules", RULES, rules_solution())
    submit(folder, "blackbox", BOX, box_solution())
    submit(folder, "probe", PROBE, probe_solution())
    wrong_gradient = probe_solution()
    wrong_gradient.cells[1].source = wrong_gradient.cells[1].source.replace("return 2 * g",
                                                                            "return g")
    submit(folder, "probe_wrong", PROBE, wrong_gradient)
    submit(folder, "twice", TOY, with_answers(toy_lab, "return a + b"))
    submit(folder / "twice", "copy", TOY, toy_lab)          # twice/copy/99_toy_lab.ipynb: same student
    gradebook = folder / "gradebook.csv"
    results = grading.grade([folder], solutions_dir=course, gradebook=gradebook, timeout=240,
                            cell_timeout=15, jobs=2, output_limit=200_000, progress=False)
    print(grading.table(results))
    return {(r.student, r.lab): r for r in results}, expected, gradebook


def hostile_cases():
    toy_lab = labs.make_lab(toy_solution(), TOY)
    lab00 = nbformat.read(ROOT / "labs" / f"{LAB00}.ipynb", as_version=4)
    cases = [(s, TOY) for s in toy_set(toy_lab, Path("x"))]
    cases += [(s, LAB00) for s in lab00_set(lab00, Path("x"))]
    return cases + [("l00_symlink", LAB00), ("old_format", OLD)]


CAGE_ONLY = {"kill_grader", "reads_solution", "l00_kill_grader", "l00_reads_solution",
             "memory_bomb"}


@pytest.mark.parametrize("student, lab", hostile_cases(), ids=lambda v: str(v)[:24])
def test_hostile_submission_gets_its_real_points_and_a_clear_reason(light, student, lab):
    results, expected, _ = light
    if student in CAGE_ONLY and not FULL:
        pytest.skip("this route is closed only by the cage (root)")
    points, reasons, absent = expected[(student, lab)]
    result = results[(student, lab)]
    text = result.reasons()
    assert result.points == points, text
    for reason in reasons:
        assert reason in text, f"{reason!r} not in {text!r}"
    for word in absent:
        assert word not in text
    assert result.max_points == {TOY: 3, OLD: 3, LAB00: 5}[lab]


def test_library_functions_are_taken_away_by_every_route(light):
    results, _, _ = light
    result = results[("rules", RULES)]
    by_check = {check.grade_id: check for check in result.checks}
    print(grading.table([result]))
    assert by_check["check_honest"].points == 1, by_check["check_honest"].reason
    assert "not available while lab 97_rules_lab is graded: write it yourself" in \
        by_check["check_library"].reason
    assert "not available" in by_check["check_torchattacks"].reason
    assert "not available" in by_check["check_captum_robust"].reason
    assert "not available" in by_check["check_captum_ig"].reason
    assert "IndexError" in by_check["check_garbage_collector"].reason, "no original left"
    if FULL:   # the other routes read the library's files, which only the cage hides
        assert result.points == 1, grading.table([result])


@needs_cage
def test_the_black_box_is_served_by_the_grader_with_one_budget_per_call(light):
    results, _, _ = light
    result = results[("blackbox", BOX)]
    by_check = {check.grade_id: check.reason for check in result.checks}
    print(grading.table([result]))
    assert by_check["check_describe"] == "" and by_check["check_keep"] == ""
    for name in ("over_budget", "second_box", "global_box"):
        assert "QueryBudgetExceeded" in by_check[f"check_{name}"]
    assert "belonged to an earlier call" in by_check["check_stale"]
    assert "CheckpointError" in by_check["check_weights"]
    assert "not available" in by_check["check_pipeline"]
    assert "IndexError" in by_check["check_hunt"]
    assert result.points == 2


def test_classes_values_and_code_run_beside_the_answers(light):
    results, _, _ = light
    assert results[("probe", PROBE)].points == 3, results[("probe", PROBE)].reasons()
    wrong = results[("probe_wrong", PROBE)]
    assert wrong.points == 2 and "backward doubles the gradient" in wrong.reasons()


def test_in_student_kernel_is_the_function_itself_outside_the_grader():
    def f(x):
        return x

    assert api.in_student_kernel(f) is f


def test_one_row_per_student_and_lab_in_the_gradebook(light):
    results, _, gradebook = light
    with open(gradebook, newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert list(rows[0]) == list(grading.GRADEBOOK_FIELDS)
    keys = [(row["student"], row["lab"]) for row in rows]
    assert len(keys) == len(set(keys)) == len(results)
    twice = results[("twice", TOY)]
    assert twice.points == 3 and "also submitted" in twice.reasons()
    assert "'=HYPERLINK(\"x\")" in {row["student"] for row in rows}, "a formula stays text"


@needs_cage
def test_no_process_of_a_graded_notebook_survives(light):
    """The "daemon" submission left a child in a new session: its PID namespace ended with its
    bwrap, and no kernel cgroup of this run is left."""
    results, _, _ = light
    assert results[("daemon", TOY)].points == 3
    for entry in os.scandir("/proc"):
        if entry.name.isdigit():
            try:
                cmdline = open(f"/proc/{entry.name}/cmdline", "rb").read()
            except OSError:
                continue
            ours = b"-m\x00utils.grading.kernel\x00" in cmdline and str(ROOT).encode() in cmdline
            assert not ours, cmdline[:200]


# ============================================================================================
# full runs: the solution and a tampering notebook with the right answers get 5/5


@pytest.fixture(scope="module")
def full_lab00(course, tmp_path_factory):
    folder = tmp_path_factory.mktemp("full")
    solution = nbformat.read(course / f"{LAB00}.ipynb", as_version=4)
    submit(folder, "solution", LAB00, solution)
    tampering = before_answers(solution, ERRORS_OFF + FAKE_RESULTS + KILL_GRADER + PATCH_CHECKS,
                               3)
    submit(folder, "tampering", LAB00, tampering)
    results = grading.grade([folder], solutions_dir=course, timeout=900, cell_timeout=400,
                            jobs=2, progress=False)
    print(grading.table(results))
    return {r.student: r for r in results}


def test_solution_gets_full_marks(full_lab00):
    result = full_lab00["solution"]
    assert (result.points, result.max_points) == (5, 5), result.reasons()


def test_tampering_costs_nothing_and_earns_nothing_but_is_reported(full_lab00):
    result = full_lab00["tampering"]
    assert result.points == 5, result.reasons()
    assert "switched off error reporting" in result.reasons()
    if FULL:
        assert "the notebook sent SIGKILL to process" in result.reasons()


# ============================================================================================
# limits of a whole submission; running without root


def test_overall_time_limit_stops_a_submission_and_keeps_its_partial_points(course, tmp_path):
    lab = labs.make_lab(toy_solution(), TOY)
    submit(tmp_path, "slow", TOY, with_answers(lab, "return a + b", "while True:\n        pass"))
    [result] = grading.grade([tmp_path], solutions_dir=course, timeout=25, cell_timeout=600,
                             progress=False)
    assert result.points == 2
    assert "time limit of 25 s" in result.reasons() and "not reached" in result.reasons()


def test_without_the_sandbox_verdicts_still_come_from_the_grader_and_rows_say_so(course, tmp_path):
    """Without bubblewrap (or root) kernels are plain fresh processes -- never root -- and every
    row says what is then not protected."""
    import sys

    from utils.grading.cli import _readable_by_anyone

    lab = labs.make_lab(toy_solution(), TOY)
    submit(tmp_path, "a", TOY, before_answers(with_answers(lab, "return a - b"), ERRORS_OFF))
    submit(tmp_path, "b", TOY, with_answers(lab, "import os\n    return a + b + (os.geteuid() == 0)"))
    if os.geteuid() == 0 and not _readable_by_anyone(os.path.realpath(sys.base_prefix)):
        with pytest.raises(RuntimeError, match="install bubblewrap"):   # never as root instead
            grading.grade([tmp_path], solutions_dir=course, isolation="none", progress=False)
        return
    results = grading.grade([tmp_path], solutions_dir=course, isolation="none",
                            cell_timeout=30, progress=False)
    by_student = {r.student: r for r in results}
    assert by_student["a"].points == 1 and "check_add: AssertionError" in by_student["a"].reasons()
    assert by_student["b"].points == 3, "the kernel ran as root"
    for result in results:
        assert "WITHOUT the sandbox" in result.reasons() and "solutions/" in result.reasons()


def test_unknown_lab_is_reported(course, tmp_path):
    (tmp_path / "x").mkdir()
    nbformat.write(nbformat.v4.new_notebook(), tmp_path / "x" / "homework.ipynb")
    [result] = grading.grade([tmp_path], solutions_dir=course, progress=False)
    assert result.points == 0 and "cannot tell which lab" in result.reasons()


def test_missing_path_is_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        grading.find_submissions([tmp_path / "nope"])


def test_gradebook_keeps_earlier_rows_and_is_replaced_atomically(tmp_path):
    path = tmp_path / "book.csv"
    grading.write_gradebook(path, [grading.Result("ann", TOY, "a.ipynb", [grading.Check("c", 2, 2)])])
    grading.write_gradebook(path, [grading.Result("bob", TOY, "b.ipynb",
                                                  [grading.Check("c", 2, 0, "AssertionError")])])
    rows = list(csv.DictReader(open(path, newline="")))
    assert [(r["student"], r["points"]) for r in rows] == [("ann", "2"), ("bob", "0")]
    assert [p.name for p in tmp_path.iterdir()] == ["book.csv"], "no temporary file left behind"


# ============================================================================================
# the lab format: old-style checks are found, the course's solutions are in the new format


def test_course_solutions_are_in_the_graders_format():
    assert labs.format_problems(ROOT) == []


def test_old_style_checks_are_found():
    assert "old format" in labs.grading_problems(toy_solution(old=True), "x")[0]
    side_effects = toy_solution()
    side_effects.cells[3].source = "add(1, 2)\nassert all(p.grad is None for p in [])"
    patched = toy_solution()
    patched.cells[1].source = "import math\nbase = 10"
    patched.cells[3].source = "math.pi = 3\nsetattr(math, 'e', 2)"
    problems = labs.grading_problems(side_effects, "x") + labs.grading_problems(patched, "y")
    assert any("only for its side effects" in p for p in problems)
    assert any("reads .grad" in p for p in problems)
    assert sum("list it in the lab's forbid setting" in p or "forbid setting" in p
               for p in problems) == 2


def test_code_that_runs_beside_the_answers_is_not_flagged():
    beside = toy_solution()
    beside.cells[3].source = ("@in_student_kernel\ndef grads(a):\n"
                              "    return [p.grad for p in []]\n\nassert grads(1) == []")
    assert labs.grading_problems(beside, "x") == []


def test_a_lab_can_hide_zoo_checkpoints_from_the_kernel():
    from utils.grading import sandbox
    from utils.paths import checkpoint_dir

    solution = toy_solution()
    labs.set_grading(solution, hide=["gan_dcgan", "no_such_model"])
    assert labs.grading_settings(solution)["hide"] == ["gan_dcgan", "no_such_model"]
    with pytest.raises(ValueError, match="zoo names"):
        labs.set_grading(toy_solution(), hide=["../secret"])
    hidden = sandbox.hidden_checkpoints(["gan_dcgan", "no_such_model", "../x", 3])
    assert hidden == [os.path.realpath(checkpoint_dir() / "gan_dcgan.pt")]


# ============================================================================================
# the wire: only data crosses, and malformed data is refused


def roundtrip(value, codec=None):
    codec = codec or wire.Codec()
    buffers: list = []
    tree = codec.encode(value, buffers)
    read, write = os.pipe()
    wire.send(write, {"data": tree}, buffers)
    header, received = wire.receive(read, codec.limits)
    os.close(read)
    os.close(write)
    return codec.decode(header["data"], received)


def test_values_cross_with_their_types_shapes_and_dtypes():
    leaf = torch.rand(2, 3).requires_grad_(True)
    generator = torch.Generator().manual_seed(3)
    value = {"t": torch.arange(6, dtype=torch.int16).reshape(2, 3), "b": torch.rand(3).bfloat16(),
             "leaf": leaf, "graph": leaf * 2, "a": np.eye(2, dtype=np.float32),
             "s": np.float64(0.5), "i": np.int64(7), ("k", 1): [1, 2.5, True, None, "$x", b"\x00"],
             "size": torch.Size([1, 2]), "dt": torch.float64, "dev": torch.device("cpu"),
             "g": generator, "big": 2 ** 70, "nan": float("nan"), "c": 1 + 2j}
    back = roundtrip(value)
    assert torch.equal(back["t"], value["t"]) and back["t"].dtype == torch.int16
    assert torch.equal(back["b"], value["b"])
    assert back["leaf"].requires_grad and back["leaf"].grad_fn is None
    assert back["graph"].grad_fn is not None
    assert back["a"].dtype == np.float32 and isinstance(back["s"], np.float64)
    assert type(back["i"]) is np.int64 and back[("k", 1)] == [1, 2.5, True, None, "$x", b"\x00"]
    assert back["size"] == torch.Size([1, 2]) and back["dt"] is torch.float64
    assert torch.equal(back["g"].get_state(), generator.get_state())
    assert back["big"] == 2 ** 70 and np.isnan(back["nan"]) and back["c"] == 1 + 2j


def test_subclasses_cross_as_plain_values():
    class Liar(float):
        def __eq__(self, other):
            return True

    class Sneaky(torch.Tensor):
        pass

    back = roundtrip([Liar(1.0), torch.zeros(2).as_subclass(Sneaky)])
    assert type(back[0]) is float and back[0] != 2.0
    assert type(back[1]) is torch.Tensor


@pytest.mark.parametrize("value, message", [
    (lambda: 1, "cannot send"), (torch.nn.Linear(2, 2), "cannot send"),
    (np.array([object()]), "dtype"), (torch.zeros(2).to_sparse(), "dense"),
])
def test_what_is_not_data_is_refused(value, message):
    with pytest.raises(wire.DataError, match=message):
        wire.Codec().encode(value, [])


def test_deep_and_large_values_are_refused():
    deep = 1
    for _ in range(100):
        deep = [deep]
    with pytest.raises(wire.DataError, match="nested"):
        wire.Codec().encode(deep, [])
    with pytest.raises(wire.WireError):
        wire.Codec(wire.Limits(max_items=10)).decode(list(range(100)), [])


@pytest.mark.parametrize("tree, buffers, message", [
    ({"$": "ndarray", "b": 0, "dtype": "float32", "shape": [3]}, [bytearray(8)], "needs 12 bytes"),
    ({"$": "ndarray", "b": 0, "dtype": "object", "shape": [1]}, [bytearray(8)], "not allowed"),
    ({"$": "ndarray", "b": 1, "dtype": "uint8", "shape": [1]}, [bytearray(1)], "missing buffer"),
    ({"$": "ndarray", "b": 0, "dtype": "uint8", "shape": [-1]}, [bytearray(1)], "bad shape"),
    ({"$": "pickle", "v": "gASV"}, [], "unknown value tag"),
    ({"$": "tensor", "b": 0, "dtype": "int64", "shape": [1], "device": "cpu",
      "requires_grad": True}, [bytearray(8)], "floating-point"),
    ({"$": "float", "v": "1e999"}, [], "bad float"),
    ({"$": "generator", "device": "cpu", "b": 0}, [bytearray(3)], "generator"),
    ({"$": "int", "v": "9" * 10000}, [], "malformed"),
])
def test_malformed_values_are_refused(tree, buffers, message):
    with pytest.raises(wire.WireError, match=message):
        wire.Codec().decode(tree, buffers)


def test_malformed_frames_are_refused():
    read, write = os.pipe()
    os.write(write, b"XXXX" + b"\0" * 8)
    with pytest.raises(wire.WireError, match="magic"):
        wire.receive(read, wire.Limits())
    os.write(write, wire._HEAD.pack(wire.MAGIC, 1 << 30, 0))
    with pytest.raises(wire.WireError, match="too large"):
        wire.receive(read, wire.Limits())
    text = b"NaN"
    os.write(write, wire._HEAD.pack(wire.MAGIC, len(text), 0) + text)
    with pytest.raises(wire.WireError, match="JSON"):
        wire.receive(read, wire.Limits())
    os.close(write)
    with pytest.raises(wire.PeerClosed):
        wire.receive(read, wire.Limits())
    os.close(read)


# ============================================================================================
# call_with_effects: side effects as data, the same in a notebook and under the grader


def test_effects_are_measured_locally(tiny_classifier):
    x = torch.rand(2, 1, 8, 8)

    def clean(model, images):
        return model(images).argmax(1)

    def messy(model, images):
        images.add_(0.1)
        model.train()
        model(images).sum().backward()
        with torch.no_grad():
            next(model.parameters()).add_(1)
        return 0

    _, effects = grading.call_with_effects(clean, tiny_classifier, x)
    assert effects == api.Effects()
    _, effects = grading.call_with_effects(messy, tiny_classifier, x)
    assert effects.modified_arguments == ("args[1]",) and effects.parameter_grads == ("args[0]",)
    assert effects.parameters_changed == ("args[0]",) and effects.mode_changed == ("args[0]",)


def test_answer_errors_keep_their_builtin_class():
    error = api.answer_error("f", "ValueError", "bad eps")
    assert isinstance(error, ValueError) and isinstance(error, api.AnswerError)
    assert str(error) == "f raised ValueError: bad eps"
    assert "not written yet" in str(api.answer_error("f", "NotImplementedError", ""))


# ============================================================================================
# every lab of the course: solution, untouched lab and lecture copy through the grader (about 6
# minutes on 2 cores; part of the full suite, not of --quick)


@pytest.mark.skipif(bool(CANNOT_GRADE), reason=CANNOT_GRADE or "grader ready")
def test_every_solution_gets_full_marks_every_lab_zero_and_a_lecture_copy_under_half(tmp_path):
    """The lab rule (README): pasting the closest lecture cell into every answer, under the names
    the lab asks for (utils.lab_copies.lecture_copy), earns less than half of a lab's points."""
    from utils.lab_copies import lecture_copy

    for path in sorted((ROOT / "solutions").glob("*_lab.ipynb")):
        solution = nbformat.read(path, as_version=4)
        submit(tmp_path, "solution", path.stem, solution)
        submit(tmp_path, "lab", path.stem, nbformat.read(ROOT / "labs" / path.name, as_version=4))
        submit(tmp_path, "lecture_copy", path.stem,
               lecture_copy(solution, ROOT / "lectures", path.stem))
    results = grading.grade([tmp_path], timeout=1800, cell_timeout=900, jobs=2, progress=False)
    print(grading.table(results))
    for result in results:
        if result.student == "solution":
            assert result.points == result.max_points > 0, result.reasons()
        elif result.student == "lab":
            assert result.points == 0, result.reasons()
        else:
            assert result.points < result.max_points / 2, (result.lab, result.reasons())
    assert json.dumps([r.lab for r in results])
