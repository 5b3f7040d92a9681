"""utils.text: the prose-or-code lines and the greedy edit attack of lecture 01."""

import random

import numpy as np
import pytest

from utils import text

SOURCE = '''"""A module docstring.

This line of the docstring is prose with enough words in it.
"""

# a comment that is also prose, with several words in it
value = compute(first_argument, second_argument, third_argument)  # mixed: dropped
result = [item for item in range(10) if item % 2 == 0 and item > 3]
'''


def test_python_lines_labels_prose_and_code_by_the_tokenizer(tmp_path):
    (tmp_path / "a.py").write_text(SOURCE)
    (tmp_path / "broken.py").write_text("def f(:\n    '''unterminated\n")
    lines, labels = text.python_lines(folder=tmp_path, min_words=5)
    found = dict(zip(lines, labels.tolist()))
    assert found["This line of the docstring is prose with enough words in it."] == text.PROSE
    assert found["a comment that is also prose, with several words in it"] == text.PROSE
    assert found["result = [item for item in range(10) if item % 2 == 0 and item > 3]"] == text.CODE
    assert not any(line.startswith("value =") for line in lines), "mixed lines are left out"


def test_python_lines_reads_the_standard_library_offline():
    lines, labels = text.python_lines(files=3)
    assert len(lines) == len(labels) > 0 and set(labels.tolist()) <= {text.PROSE, text.CODE}


@pytest.mark.parametrize("kwargs", [{"files": 0}, {"folder": "/nonexistent-folder-for-test"}])
def test_python_lines_rejects_bad_input(kwargs):
    with pytest.raises(ValueError):
        text.python_lines(**kwargs)


def test_candidate_edits_are_one_insertion_or_deletion_away():
    edits = text.candidate_edits("ab", alphabet="x")
    assert sorted(edits) == sorted(["xab", "axb", "abx", "b", "a"])


def test_greedy_edits_flips_a_linear_score_and_counts_edits():
    def score(texts):               # "code" when the line has at least two quotes
        return np.array([t.count('"') - 1.5 for t in texts])

    new, spent = text.greedy_edits(score, "plain words", budget=5)
    assert spent == 2 and new.count('"') == 2
    assert text.greedy_edits(score, 'already ""', budget=5) == ('already ""', 0)
    assert text.greedy_edits(score, "plain", budget=1)[1] is None
    with pytest.raises(ValueError):
        text.greedy_edits(score, "plain", budget=-1)


def test_random_edits_are_reproducible():
    a = text.random_edits("some words here", 3, rng=random.Random(5))
    b = text.random_edits("some words here", 3, rng=random.Random(5))
    assert a == b and a != "some words here"
