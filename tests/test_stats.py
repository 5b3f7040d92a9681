"""utils.stats: the intervals lectures print next to their claims."""

import math

import pytest

from utils import stats


def test_wilson_interval_contains_the_proportion_and_stays_in_0_1():
    low, high = stats.wilson_interval(50, 100)
    assert low < 0.5 < high and high - low == pytest.approx(0.19, abs=0.01)
    assert stats.wilson_interval(0, 10)[0] == 0.0 and stats.wilson_interval(0, 10)[1] > 0
    assert stats.wilson_interval(10, 10)[1] == 1.0 and stats.wilson_interval(10, 10)[0] < 1


@pytest.mark.parametrize("successes, n", [(1, 0), (-1, 10), (11, 10)])
def test_wilson_interval_rejects_impossible_counts(successes, n):
    with pytest.raises(ValueError):
        stats.wilson_interval(successes, n)


def test_share_prints_value_and_interval():
    share = stats.Share(7, 20)
    assert share.value == 0.35 and str(share).startswith("0.350 [")


def test_t_interval_matches_the_textbook_formula():
    mean, low, high = stats.t_interval([1.0, 2.0, 3.0, 4.0])
    # t_{0.975, 3} = 3.182; sd = 1.291; half = 3.182 * 1.291 / 2 = 2.054
    assert mean == 2.5 and high - mean == pytest.approx(2.054, abs=1e-3) and low < mean < high
    single = stats.t_interval([0.3])
    assert single[0] == 0.3 and math.isnan(single[1]) and math.isnan(single[2])
    with pytest.raises(ValueError):
        stats.t_interval([])
