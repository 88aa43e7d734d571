"""Wilson score intervals of the ratio columns (SPEC section 4), checked against the
quadratic-formula roots of the score test (tests/reference_metrics.py) and the closed
forms at 0 and n successes, on edge cases and at random."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from telemetry.metrics.intervals import Z95, wilson
from tests.reference_metrics import wilson_roots


def one(x: int, n: int) -> tuple[float, float]:
    lo, hi = wilson(np.array([x]), np.array([n]))
    return float(lo[0]), float(hi[0])


@pytest.mark.parametrize("n", [1, 2, 5, 47, 5000, 10**9])
def test_no_success_and_all_successes_have_closed_forms(n):
    z2 = Z95 * Z95
    lo, hi = one(0, n)
    assert lo == 0.0 and math.isclose(hi, z2 / (n + z2), rel_tol=1e-12)
    lo, hi = one(n, n)
    assert hi == 1.0 and math.isclose(lo, n / (n + z2), rel_tol=1e-12)


def test_one_trial_is_wide_and_huge_volume_is_narrow():
    assert one(1, 1)[0] < 0.21 and one(0, 1)[1] > 0.79  # one call proves almost nothing
    lo, hi = one(620_000_000, 10**9)
    assert lo < 0.62 < hi and hi - lo < 1e-4
    assert math.isclose(lo, wilson_roots(620_000_000, 10**9)[0], rel_tol=1e-9)


def test_the_issue_example_47_calls_cannot_prove_what_5000_can():
    # 15 points down on 47 calls: the intervals overlap; 8 points down on 5,000: they do not.
    before, after = one(30, 47), one(23, 47)  # 0.64 -> 0.49
    assert after[1] > before[0]
    before, after = one(3100, 5000), one(2700, 5000)  # 0.62 -> 0.54
    assert after[1] < before[0]


def test_zero_trials_give_no_interval():
    lo, hi = wilson(np.array([0, 3]), np.array([0, 4]))
    assert np.isnan(lo[0]) and np.isnan(hi[0]) and not np.isnan(lo[1])


@given(st.integers(1, 10**7).flatmap(lambda n: st.tuples(st.integers(0, n), st.just(n))))
def test_matches_the_score_test_roots(case):
    x, n = case
    lo, hi = one(x, n)
    ref_lo, ref_hi = wilson_roots(x, n)
    assert math.isclose(lo, ref_lo, rel_tol=1e-9, abs_tol=1e-12)
    assert math.isclose(hi, ref_hi, rel_tol=1e-9, abs_tol=1e-12)
    assert 0.0 <= lo <= x / n <= hi <= 1.0
