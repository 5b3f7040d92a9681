"""How much of a lab's answer can be pasted from a lecture, and the submission that tries it.

A graded task must ask for a *variant* of what its lecture prints (README, "Lab conventions"), so
that pasting a lecture cell does not pass.  Two instruments keep that true:

- :func:`copied_share`: the share of an answer's tokens found, in order, in one lecture code cell
  (``difflib`` matching blocks over Python tokens; comments, strings and layout dropped, so
  renaming nothing and re-wrapping everything changes nothing).  :data:`NEAR_COPY` is the line.
- :func:`lecture_copy`: the lab as a student who pastes would hand it in -- every answer cell
  replaced by the lecture cell closest to the solution's answer, with the names the lab asks for
  bound to the pasted cell's functions.  The grader must give it under half the points.
"""

from __future__ import annotations

import ast
import difflib
import io
import tokenize
from pathlib import Path

import nbformat

from utils.labs import answer_names, is_answer, make_lab

NEAR_COPY = 0.75   # answers written for a lab sit at <= 0.71; pasted-and-trimmed cells at >= 0.81
MIN_TOKENS = 15    # shorter answers (one expression) are too small to call copies


def tokens(source: str) -> list[str]:
    """The Python tokens of ``source`` without comments, strings and layout."""
    skip = {tokenize.COMMENT, tokenize.NL, tokenize.NEWLINE, tokenize.INDENT, tokenize.DEDENT,
            tokenize.STRING, tokenize.ENDMARKER}
    try:
        return [t.string for t in tokenize.generate_tokens(io.StringIO(source).readline)
                if t.type not in skip and not t.string.startswith("%")]
    except (tokenize.TokenError, IndentationError, SyntaxError):
        return source.split()


def copied_share(answer: str, lecture_cell: str) -> float:
    """Share of ``answer``'s tokens found, in order, in ``lecture_cell`` (0 to 1)."""
    mine, theirs = tokens(answer), tokens(lecture_cell)
    if not mine or not theirs:
        return 0.0
    matcher = difflib.SequenceMatcher(None, mine, theirs, autojunk=False)
    return sum(block.size for block in matcher.get_matching_blocks()) / len(mine)


def lecture_cells(lectures: Path) -> list[tuple[str, str]]:
    """``(where, source)`` of every code cell of every lecture notebook in ``lectures``."""
    cells = []
    for path in sorted(Path(lectures).glob("*.ipynb")):
        notebook = nbformat.read(path, as_version=4)
        for index, cell in enumerate(notebook.cells):
            if cell.cell_type == "code" and cell.source.strip():
                cells.append((f"{path.stem}[{index}]", cell.source))
    return cells


def closest(answer: str, cells: list[tuple[str, str]]) -> tuple[float, str, str]:
    """``(share, where, source)`` of the lecture cell that holds most of ``answer``."""
    if not cells:
        raise ValueError("no lecture code cells to compare with")
    return max(((copied_share(answer, source), where, source) for where, source in cells),
               key=lambda found: found[0])


def near_copies(solution_path: Path, lectures: Path, threshold: float = NEAR_COPY) -> list[str]:
    """``'lab[cell] share of it in lecture[cell]'`` for every answer at or over ``threshold``."""
    cells = lecture_cells(lectures)
    found = []
    notebook = nbformat.read(solution_path, as_version=4)
    for index, cell in enumerate(notebook.cells):
        if is_answer(cell) and len(tokens(cell.source)) >= MIN_TOKENS:
            share, where, _ = closest(cell.source, cells)
            if share >= threshold:
                found.append(f"{Path(solution_path).stem}[{index}]: {share:.2f} of it in {where}")
    return found


def _definitions(source: str) -> tuple[str, list[str]]:
    """``(code, names)``: the top-level imports, functions and classes of a lecture cell (what a
    student who pastes keeps; the lecture's demo lines need the lecture's variables), and the
    names of the functions and classes.  The whole cell when it defines nothing."""
    try:
        tree = ast.parse(source)
    except SyntaxError:
        return source, []
    kinds = (ast.Import, ast.ImportFrom, ast.FunctionDef, ast.ClassDef)
    kept = [node for node in tree.body if isinstance(node, kinds)]
    names = [node.name for node in kept if isinstance(node, (ast.FunctionDef, ast.ClassDef))]
    if not names:
        return source, []
    return "\n\n".join(ast.get_source_segment(source, node, padded=True) for node in kept), names


def lecture_copy(solution: nbformat.NotebookNode, lectures: Path,
                 name: str = "solution") -> nbformat.NotebookNode:
    """The lab generated from ``solution`` with every answer cell replaced by the definitions of
    the lecture cell closest to the solution's answer, plus ``name = pasted_function`` for each function the lab
    asks for that the pasted cell does not define (the pasted function whose name is most
    alike).  Everything else is the lab as handed out."""
    cells = lecture_cells(lectures)
    submission = make_lab(solution, name)
    for index, cell in enumerate(solution.cells):
        if not is_answer(cell):
            continue
        _, _, closest_cell = closest(cell.source, cells)
        pasted, offered = _definitions(closest_cell)
        wanted, _ = answer_names(cell.source)
        aliases = []
        for function in wanted:
            if function in offered or not offered:
                continue
            alike = difflib.get_close_matches(function, offered, n=1, cutoff=0.0)
            aliases.append(f"{function} = {alike[0] if alike else offered[-1]}")
        submission.cells[index].source = pasted + ("\n\n" + "\n".join(aliases) if aliases else "")
    return submission
