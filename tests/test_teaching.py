"""Every algorithm a lecture teaches is visible in it (d2l's habit): a short teaching version,
called on the same input as the library and asserted equal to it.

``TAUGHT`` is the per-lecture list: teaching function -> the library call it must equal.  A
lecture passes for an entry when one of its code cells *calls* the teaching function (not only
defines it; a class counts when one of its methods is called, as ``GradReverse.apply``), calls
the library, and holds an ``assert`` -- the cell where both run on one input
and are compared.  Pure JSON and AST reading, no kernel.
"""
from __future__ import annotations

import ast
import json
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

TAUGHT = {   # lecture -> {teaching function: library call it is asserted equal to}
    "01_adversarial_examples": {
        "szegedy_teaching": "attacks.szegedy",
        "fgsm_teaching": "attacks.fgsm",
        "pgd_teaching": "attacks.pgd",
        "greedy_teaching": "text.greedy_edits",
        "distillation_step_teaching": "recipes.distillation_step",
    },
    "02_fooling_noise_captum": {
        "fooling_teaching": "fooling.fooling_images",
        "ig_teaching": "IntegratedGradients",
        "smoothgrad_sq_teaching": "NoiseTunnel",
        "occlusion_teaching": "Occlusion",
    },
    "03_face_attack_competition": {
        "fgvm_step": "attacks.value_step",
        "keep_if_better": "faces.attack_stats",
        "distill_step_teaching": "faces.distill_step",
        "project_ssim_teaching": "faces.project_ssim",
        "de_polish_teaching": "faces.de_polish_stats",
        "cw_teaching": "faces.cw_attack",
    },
    "04_domain_adaptation": {
        "GradReverse": "domain.grad_reverse",
        "taught_dann_step": "domain.dann_step",
        "train_dann_taught": "recipes.train_dann",
    },
    "05_gans": {
        "d_step_taught": "steps.d_step",
        "g_step_taught": "steps.g_step",
        "pix2pix_step_taught": "pix2pix.pix2pix_step",
    },
    "06_invertible_networks": {
        "coupling_forward": "block",
        "space_to_depth": "blocks.space_to_depth",
        "depth_to_space": "blocks.depth_to_space",
        "decode_by_hand": "network.reconstruction_error",
        "metamer": "metamers.metamers",
        "metameric_attack_teaching": "metamers.metameric_attack",
        "ice_step_teaching": "ice.ice_step",
    },
    "07_evaluating_robustness": {
        "apgd_teaching": "attacks.apgd",
        "certify_teaching": "smoothing.certify",
    },
}


def code_cells(lecture: str) -> list[tuple[int, ast.Module, str]]:
    notebook = json.loads((ROOT / "lectures" / f"{lecture}.ipynb").read_text(encoding="utf-8"))
    out = []
    for index, cell in enumerate(notebook["cells"]):
        if cell["cell_type"] == "code":
            source = "".join(cell["source"])
            out.append((index, ast.parse(source), source))
    return out


def called(tree: ast.Module) -> set[str]:
    """Dotted names of everything called in a cell (``attacks.pgd``, ``pgd_teaching``)."""
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            parts, target = [], node.func
            while isinstance(target, ast.Attribute):
                parts.append(target.attr)
                target = target.value
            if isinstance(target, ast.Name):
                parts.append(target.id)
                names.add(".".join(reversed(parts)))
    return names


def asserting_cells(lecture: str, teaching: str, library: str) -> list[int]:
    """Cells that call both the teaching version and the library and assert something."""
    found = []
    for index, tree, _ in code_cells(lecture):
        calls = called(tree)
        has_assert = any(isinstance(node, ast.Assert) for node in ast.walk(tree))
        uses_teaching = any(c == teaching or c.startswith(teaching + ".") for c in calls)
        if uses_teaching and any(c == library or c.endswith("." + library) for c in calls) \
                and has_assert:
            found.append(index)
    return found


CASES = [(lecture, teaching, library) for lecture, entries in TAUGHT.items()
         for teaching, library in entries.items()]


def test_every_lecture_with_an_algorithm_is_listed():
    lectures = {p.stem for p in (ROOT / "lectures").glob("*.ipynb")}
    assert set(TAUGHT) <= lectures
    assert lectures - set(TAUGHT) == {"00_start_here"}


@pytest.mark.parametrize("lecture, teaching, library", CASES,
                         ids=[f"{lecture[:2]}-{teaching}" for lecture, teaching, _ in CASES])
def test_taught_function_is_asserted_equal_to_the_library(lecture, teaching, library):
    defined = [index for index, tree, _ in code_cells(lecture)
               if any(isinstance(node, (ast.FunctionDef, ast.ClassDef)) and node.name == teaching
                      for node in ast.walk(tree))]
    assert defined, f"{lecture}: no code cell defines the teaching version {teaching}()"
    assert asserting_cells(lecture, teaching, library), (
        f"{lecture}: no code cell calls {teaching}() and {library}() on the same input and "
        f"asserts they agree (teaching version defined in cell {defined[0]})")


def test_a_definition_without_a_comparison_is_caught():
    tree = ast.parse("def f(x):\n    return x\nassert True\n")
    assert "f" not in called(tree)
    tree = ast.parse("y = f(x)\nz = utils.attacks.fgsm(m, x, y)\nassert torch.equal(y, z)\n")
    assert {"f", "utils.attacks.fgsm", "torch.equal"} <= called(tree)
