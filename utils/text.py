"""Adversarial text: a "prose or code?" line classifier and the character edits that fool it.

Lecture 01's "not only images" demo.  Text is discrete, so there is no small step along a
gradient; an attacker searches over edits instead (insertions, deletions, typos -- Liang et al.
2017; Ebrahimi et al. 2018's HotFlip).

- :func:`python_lines` -- real text that every Python installation carries: lines of the standard
  library's own source, labelled by Python's tokenizer as **prose** (0: a comment or a docstring
  line) or **code** (1: code tokens only).  Offline by construction.
- :func:`candidate_edits` -- every string one edit away: a character of ``alphabet`` inserted at
  any position, or one character deleted.
- :func:`greedy_edits` -- the attack: take the single edit that raises the target score most,
  repeat until the classifier flips or the budget is spent.
- :func:`random_edits` -- the baseline: as many edits, chosen at random.
"""

from __future__ import annotations

import io
import random
import sysconfig
import tokenize
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

PROSE, CODE = 0, 1
ALPHABET = '()=_."'
"""Characters the attack may insert: the ones that make a line look like code."""


def _line_kinds(source: str) -> dict[int, set[str]]:
    """Line number -> kinds of token on it: "c" comment, "d" inside a multi-line string, "k" code."""
    kinds: dict[int, set[str]] = {}
    skip = {tokenize.NL, tokenize.NEWLINE, tokenize.INDENT, tokenize.DEDENT, tokenize.ENDMARKER}
    for token in tokenize.generate_tokens(io.StringIO(source).readline):
        if token.type == tokenize.COMMENT:
            kinds.setdefault(token.start[0], set()).add("c")
        elif token.type == tokenize.STRING and token.start[0] != token.end[0]:
            for line in range(token.start[0] + 1, token.end[0]):   # the string's inner lines
                kinds.setdefault(line, set()).add("d")
        elif token.type not in skip:
            kinds.setdefault(token.start[0], set()).add("k")
    return kinds


def python_lines(files: int = 30, *, min_words: int = 5,
                 folder: str | Path | None = None) -> tuple[list[str], np.ndarray]:
    """``(lines, labels)`` from the first ``files`` modules (by name) of the standard library.

    A line is kept when it has at least ``min_words`` words and is pure prose (comment or
    docstring text, the ``#`` stripped) or pure code; labels are :data:`PROSE` / :data:`CODE`.
    ``folder`` replaces the standard library (any folder of ``.py`` files).
    """
    if files < 1:
        raise ValueError(f"files must be at least 1, got {files}")
    root = Path(folder) if folder is not None else Path(sysconfig.get_paths()["stdlib"])
    paths = sorted(root.glob("*.py"))[:files]
    if not paths:
        raise ValueError(f"no .py files in {root}: pass a folder of Python sources as folder=")
    lines, labels = [], []
    for path in paths:
        try:
            source = path.read_text(encoding="utf-8")
            kinds = _line_kinds(source)
        except (UnicodeDecodeError, SyntaxError, tokenize.TokenError, IndentationError):
            continue                                   # a file this Python cannot tokenize
        raw = source.splitlines()
        for number, kind in sorted(kinds.items()):
            text = raw[number - 1].strip().lstrip("#").strip()
            if len(text.split()) < min_words:
                continue
            if kind in ({"c"}, {"d"}):
                lines.append(text)
                labels.append(PROSE)
            elif kind == {"k"}:
                lines.append(text)
                labels.append(CODE)
    return lines, np.asarray(labels)


def candidate_edits(text: str, alphabet: str = ALPHABET) -> list[str]:
    """Every string one edit from ``text``: one ``alphabet`` character inserted, or one deleted."""
    inserted = [text[:i] + ch + text[i:] for i in range(len(text) + 1) for ch in alphabet]
    return inserted + [text[:i] + text[i + 1:] for i in range(len(text))]


def greedy_edits(score: Callable[[Sequence[str]], np.ndarray], text: str, *, budget: int = 5,
                 alphabet: str = ALPHABET) -> tuple[str, int | None]:
    """Greedy edit attack: ``score(texts)`` is the classifier's margin for the *target* class
    (> 0 means the target is predicted).  Each round applies the one edit that raises it most.
    Returns the edited text and the number of edits that flipped it (``None``: not within
    ``budget``)."""
    if budget < 0:
        raise ValueError(f"budget must be >= 0, got {budget}")
    current = text
    if float(np.asarray(score([current]))[0]) > 0:
        return current, 0
    for spent in range(1, budget + 1):
        options = candidate_edits(current, alphabet)
        margins = np.asarray(score(options))
        current = options[int(np.argmax(margins))]
        if margins.max() > 0:
            return current, spent
    return current, None


def random_edits(text: str, edits: int, *, alphabet: str = ALPHABET,
                 rng: random.Random | None = None) -> str:
    """The same kind of edits as :func:`greedy_edits`, ``edits`` of them, chosen at random."""
    rng = rng or random.Random(0)
    for _ in range(edits):
        options = candidate_edits(text, alphabet)
        text = options[rng.randrange(len(options))]
    return text
