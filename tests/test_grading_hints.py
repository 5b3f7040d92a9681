"""Hints for common mistakes (issue 23): each lab's table of plausible wrong answers -- each one
tried -- and the hint its check must give, graded by the course grader.

A submission carries one mistake per answer (the i-th row of every answer's list), so three
submissions per lab cover three mistakes of each answer.  The hint is looked for in the check's
reason in the gradebook, which is also what the student's feedback file shows.
"""
from __future__ import annotations

import nbformat
import pytest

from test_grading import CANNOT_GRADE, ROOT, submit
from utils import grading, labs

HINTS = {   # lab -> answer -> [(the answer's code, words its check must say)]
    "00_start_here_lab": {
        "test_accuracy": [
            ("""def test_accuracy(model, images, labels, batch_size=500):
    correct = 0
    with torch.no_grad():
        for start in range(0, len(images), batch_size):
            logits = model(images[start:start + batch_size])
            correct = (logits.argmax(1) == labels[start:start + batch_size]).sum().item()
    return correct / len(images)""", "only one batch was counted"),
            ("""def test_accuracy(model, images, labels, batch_size=500):
    with torch.no_grad():
        return sum((model(images[s:s + batch_size]).max(1).values
                    == labels[s:s + batch_size]).sum().item()
                   for s in range(0, len(images), batch_size)) / len(images)""",
             "index of the largest logit (argmax)"),
            ("""def test_accuracy(model, images, labels, batch_size=500):
    with torch.no_grad():
        return sum((model(images[s:s + batch_size]).argmax(1)
                    == labels[s:s + batch_size]).sum().item()
                   for s in range(0, len(images), batch_size)) / batch_size""",
             "not by the number of batches or the batch size"),
        ],
        "confusion_matrix": [
            ("""def confusion_matrix(model, images, labels, num_classes=10):
    with torch.no_grad():
        p = model(images).argmax(1)
    return torch.bincount(p * num_classes + labels, minlength=num_classes ** 2).reshape(
        num_classes, num_classes)""", "rows are true classes"),
            ("""def confusion_matrix(model, images, labels, num_classes=10):
    with torch.no_grad():
        p = model(images).argmax(1)
    C = torch.zeros(num_classes, num_classes)
    for t, q in zip(labels.tolist(), p.tolist()):
        C[t, q] += 1
    return C""", "counts are integers"),
            ("""def confusion_matrix(model, images, labels, num_classes=10):
    with torch.no_grad():
        p = model(images[:5000]).argmax(1)
    return torch.bincount(labels[:5000] * num_classes + p, minlength=num_classes ** 2).reshape(
        num_classes, num_classes)""", "every image is counted once"),
        ],
        "most_confused": [
            ("""def most_confused(C):
    off = C.clone()
    off.fill_diagonal_(-1)
    flat = int(off.argmax())
    return flat % C.shape[1], flat // C.shape[1]""", "you returned (column, row)"),
            ("""def most_confused(C):
    flat = int(C.argmax())
    return flat // C.shape[1], flat % C.shape[1]""", "the diagonal holds the correct predictions"),
            ("""def most_confused(C):
    off = C.clone()
    off.fill_diagonal_(-1)
    flat = off.argmax()
    return flat // C.shape[1], flat % C.shape[1]""", "return two Python ints"),
        ],
    },
    "03_face_attack_competition_lab": {
        "pair_score": [
            ("""def pair_score(blackbox, adversarial, targets):
    a = torch.from_numpy(blackbox.query(adversarial))
    t = torch.from_numpy(blackbox.query(targets))
    return float((a - t).norm(dim=1).mean())""", "only the 5 matched pairs"),
            ("""def pair_score(blackbox, adversarial, targets):
    a = torch.from_numpy(blackbox.query(adversarial))
    t = torch.from_numpy(blackbox.query(targets))
    return float((torch.cdist(a, t) ** 2).mean())""", "not its square"),
            ("""def pair_score(blackbox, adversarial, targets):
    a = torch.from_numpy(blackbox.query(faces.to_uint8(adversarial).float() / 255))
    t = torch.from_numpy(blackbox.query(targets))
    return float(torch.cdist(a, t).mean())""", "you rounded the images"),
        ],
        "attack": [
            ("""def attack(blackbox, sources, targets):
    target_desc = faces.query_tensor(blackbox, targets)
    x = sources.clone()
    for _ in range(4):
        x_var = x.clone().requires_grad_(True)
        (g,) = torch.autograd.grad(torch.cdist(students[0](x_var), target_desc).mean(), x_var)
        x = (x - 8 / 255 * g.sign()).clamp(0, 1)
    return faces.to_uint8(x).float() / 255""", "project each step back with faces.project_ssim"),
            ("""def attack(blackbox, sources, targets):
    target_desc = faces.query_tensor(blackbox, targets)
    x0 = faces.to_uint8(sources).float() / 255
    x = x0.clone()
    for _ in range(4):
        x_var = x.clone().requires_grad_(True)
        (g,) = torch.autograd.grad(torch.cdist(students[0](x_var), target_desc).mean(), x_var)
        x = faces.project_ssim((x + 2 / 255 * g.sign()).clamp(0, 1), x0)
        x = faces.to_uint8(x).float() / 255
    return x""", "farther from the targets than the untouched sources"),
            ("""def attack(blackbox, sources, targets):
    target_desc = faces.query_tensor(blackbox, targets)
    x_var = sources.clone().requires_grad_(True)
    loss = torch.cdist(faces.query_tensor(blackbox, x_var), target_desc).mean()
    (g,) = torch.autograd.grad(loss, x_var)
    return faces.project_ssim((sources - 2 / 255 * g.sign()).clamp(0, 1), sources)""",
             "take the gradient through the students"),
        ],
        "closing_answer": [
            ('closing_answer = "FGVM steps on a blurred gradient, projected on the SSIM rule."',
             "40 words or more"),
            ("""closing_answer = [
    "My attack uses FGVM steps on the summed gradient of the three students and the L2 student.",
    "The gradient is blurred over 5 pixels, so that SSIM hardly sees the change.",
    "Every step is projected back onto the SSIM rule and kept only if the black box agrees.",
]""", "join them into one string"),
            ('''print("""My attack uses FGVM steps on the summed gradient of four
students, blurred over five pixels so that SSIM hardly sees the change; every step is projected
back onto the rule and kept only if the black box agrees, and a step size halved three times
starts again. On the validation pair sets this beats the lecture's pipeline by a little.""")''',
             "assign your text to the name closing_answer"),
        ],
    },
    "07_evaluating_robustness_lab": {
        "apgd_checkpoints": [
            ("""def apgd_checkpoints(steps):
    first, shrink, floor = (max(int(0.22 * steps), 1), max(int(0.03 * steps), 1),
                            max(int(0.06 * steps), 1))
    out, at, interval = [], 0, first
    while at + interval <= steps:
        at += interval
        out.append(interval)
        interval = max(interval - shrink, floor)
    return out""", "running sum of the intervals"),
            ("""def apgd_checkpoints(steps):
    if steps == 0:
        return []
    first, shrink, floor = (max(int(0.22 * steps), 1), max(int(0.03 * steps), 1),
                            max(int(0.06 * steps), 1))
    out, at, interval = [0], 0, first
    while at + interval <= steps:
        at += interval
        out.append(at)
        interval = max(interval - shrink, floor)
    return out""", "not a checkpoint: leave 0 out"),
            ("""def apgd_checkpoints(steps):
    p, previous, out = 0.22, 0.0, []
    while steps and math.ceil(p * steps) <= steps:
        out.append(math.ceil(p * steps))
        p, previous = p + max(p - previous - 0.03, 0.06), p
    return out""", "count whole iterations"),
        ],
        "hoeffding_radius": [
            ("""def hoeffding_radius(k, n, sigma, alpha):
    lower = k / n - math.sqrt(math.log(1 / alpha) / (2 * n))
    return float(sigma * NormalDist().inv_cdf(lower))""", "abstain with 0.0"),
            ("""def hoeffding_radius(k, n, sigma, alpha):
    lower = min(k / n, 1 - 1e-12)
    return float(sigma * NormalDist().inv_cdf(lower)) if lower > 0.5 else 0.0""",
             "subtract Hoeffding's margin"),
            ("""def hoeffding_radius(k, n, sigma, alpha):
    lower = k / n - math.sqrt(math.log(2 / alpha) / n)
    return float(sigma * NormalDist().inv_cdf(lower)) if lower > 0.5 else 0.0""",
             "divided by 2n"),
        ],
        "predict_from_counts": [
            ("""def predict_from_counts(counts, alpha):
    top = counts.topk(2, dim=1)
    out = []
    for (a, b), label in zip(top.values.tolist(), top.indices[:, 0].tolist()):
        tail = sum(math.comb(a + b, i) for i in range(a, a + b + 1)) / 2 ** (a + b)
        out.append(label if tail <= alpha else -1)
    return torch.tensor(out, dtype=torch.long, device=counts.device)""", "two-sided"),
            ("""def predict_from_counts(counts, alpha):
    top = counts.topk(2, dim=1)
    out = []
    for (a, b), label in zip(top.values.tolist(), top.indices[:, 0].tolist()):
        tail = sum(math.comb(a + b, i) for i in range(0, a + 1)) / 2 ** (a + b)
        out.append(label if min(1.0, 2 * tail) <= alpha else -1)
    return torch.tensor(out, dtype=torch.long, device=counts.device)""",
             "your p-values are too large"),
            ("""def predict_from_counts(counts, alpha):
    top = counts.topk(2, dim=1)
    out = []
    for row, a, label in zip(counts.tolist(), top.values[:, 0].tolist(),
                             top.indices[:, 0].tolist()):
        m = sum(row)
        tail = sum(math.comb(m, i) for i in range(a, m + 1)) / 2 ** m
        out.append(label if min(1.0, 2 * tail) <= alpha else -1)
    return torch.tensor(out, dtype=torch.long, device=counts.device)""", "not all n"),
        ],
    },
}

needs_grader = pytest.mark.skipif(bool(CANNOT_GRADE), reason=CANNOT_GRADE or "grader ready")


def mistaken(lab: str, row: int) -> nbformat.NotebookNode:
    """The handed-out lab with the ``row``-th mistake of every answer written in."""
    notebook = nbformat.read(ROOT / "labs" / f"{lab}.ipynb", as_version=4)
    for cell in notebook.cells:
        answer = labs.grading_info(cell).get("grade_id")
        if labs.is_answer(cell) and answer in HINTS[lab]:
            cell.source = HINTS[lab][answer][row][0]
    return notebook


def test_every_answer_of_a_hinted_lab_has_three_mistakes():
    for lab, answers in HINTS.items():
        solution = nbformat.read(ROOT / "solutions" / f"{lab}.ipynb", as_version=4)
        graded = {labs.grading_info(c)["grade_id"] for c in solution.cells if labs.is_answer(c)}
        assert set(answers) == graded, lab
        assert all(len(rows) >= 3 for rows in answers.values()), lab


@pytest.fixture(scope="module")
def hinted(tmp_path_factory):
    folder = tmp_path_factory.mktemp("hints")
    for lab in HINTS:
        for row in range(3):
            submit(folder, f"mistake{row}", lab, mistaken(lab, row))
    results = grading.grade([folder], timeout=600, cell_timeout=300, jobs=2, progress=False)
    print(grading.table(results))
    return {(r.student, r.lab): r for r in results}


CASES = [(lab, answer, row) for lab, answers in HINTS.items() for answer in answers
         for row in range(3)]


@needs_grader
@pytest.mark.parametrize("lab, answer, row", CASES,
                         ids=[f"{lab[:2]}-{answer}-{row}" for lab, answer, row in CASES])
def test_a_common_mistake_gets_its_hint(hinted, lab, answer, row):
    result = hinted[(f"mistake{row}", lab)]
    words = HINTS[lab][answer][row][1]
    [check] = [c for c in result.checks if c.grade_id == f"check_{answer}"]
    assert check.points == 0, f"{lab} {answer}: the mistake passed its check"
    assert words in check.reason, f"{lab} {answer}: expected a hint with {words!r}, got " \
                                  f"{check.reason!r}"
