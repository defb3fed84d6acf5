"""Counting errors honestly: the Wilson bound, the rule of three, and rates of nothing."""

from __future__ import annotations

import math

import pytest

from latticelock.tools.rates import Rate, rule_of_three, wilson_interval, wilson_upper


def test_wilson_interval_known_values():
    lo, hi = wilson_interval(0, 100)
    assert lo == 0.0 and hi == pytest.approx(0.0370, abs=1e-4)
    lo, hi = wilson_interval(50, 100)
    assert lo == pytest.approx(0.4038, abs=1e-4) and hi == pytest.approx(0.5962, abs=1e-4)
    assert wilson_interval(0, 0) == (0.0, 1.0)
    assert wilson_interval(7, 7)[1] == 1.0


def test_wilson_bound_at_zero_errors_is_stricter_than_the_rule_of_three():
    for trials in (1_000, 30_000, 300_000, 1_000_000):
        upper = wilson_upper(0, trials)
        assert upper == pytest.approx(1.959964**2 / (trials + 1.959964**2))
        assert upper > 3 / trials  # about 3.84 / N against 3 / N


def test_wilson_bound_grows_with_errors_and_shrinks_with_trials():
    assert wilson_upper(1, 10_000) < wilson_upper(2, 10_000) < wilson_upper(3, 10_000)
    assert wilson_upper(3, 100_000) < wilson_upper(3, 10_000)


def test_rule_of_three():
    assert rule_of_three(1e-4) == 30_000
    assert rule_of_three(1e-5) == 300_000
    assert rule_of_three(0.3) == 10
    # 0 errors in rule_of_three(p) trials: the exact one-sided 95% bound is at most p (to 0.2%).
    n = rule_of_three(1e-4)
    assert 1 - 0.05 ** (1 / n) == pytest.approx(1e-4, rel=2e-3)
    for bad in (0.0, 1.0, -1e-3, math.nan):
        with pytest.raises(ValueError):
            rule_of_three(bad)


def test_rate_of_nothing_is_not_zero():
    assert Rate(0, 0).rate is None and Rate(0, 0).upper95 is None and Rate(0, 0).describe() == "n/a"
    r = Rate(3, 1000)
    assert r.rate == 0.003 and r.upper95 == wilson_upper(3, 1000)
    assert "3/1000" in r.describe()
    with pytest.raises(ValueError):
        wilson_interval(5, 3)
