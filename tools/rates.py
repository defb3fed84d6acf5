"""Error rates with the counts behind them: a point estimate, its 95% upper bound, and how many trials.

A false-accept rate of 0 out of 1,000 attempts says little; 0 out of 300,000 says the rate is below
1e-5 with 95% confidence. Two standard tools:
- the Wilson score interval (two-sided 95%), sound at 0 errors and at small counts; at 0 errors its
  upper end is z^2 / (N + z^2), about 3.84 / N: every `*_upper95` figure here is this bound;
- the rule of three: with 0 errors in N trials the one-sided 95% upper bound is about 3 / N, so a
  target rate needs at least ceil(3 / target) error-free trials to be claimed at all. The Wilson
  bound is the stricter of the two, so a figure that meets it meets the rule of three as well.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

Z95 = 1.959964


def wilson_interval(errors: int, trials: int, z: float = Z95) -> tuple[float, float]:
    """95% Wilson score interval of a binomial proportion; (0, 1) when there were no trials."""
    if not 0 <= errors <= trials:
        raise ValueError(f"errors must be in [0, trials], got {errors} of {trials}")
    if trials == 0:
        return (0.0, 1.0)
    p = errors / trials
    denom = 1 + z * z / trials
    centre = (p + z * z / (2 * trials)) / denom
    half = z * math.sqrt(p * (1 - p) / trials + z * z / (4 * trials * trials)) / denom
    return (max(0.0, centre - half), min(1.0, centre + half))


def wilson_upper(errors: int, trials: int) -> float:
    return wilson_interval(errors, trials)[1]


def rule_of_three(target: float) -> int:
    """Error-free trials needed before a rate below `target` can be claimed with 95% confidence."""
    if not 0 < target < 1:
        raise ValueError(f"target rate must be in (0, 1), got {target}")
    return math.ceil(3 / target)


@dataclass(frozen=True)
class Rate:
    errors: int
    trials: int

    @property
    def rate(self) -> float | None:
        """errors / trials, None when nothing was tried (a rate of nothing is not 0)."""
        return self.errors / self.trials if self.trials else None

    @property
    def upper95(self) -> float | None:
        return wilson_upper(self.errors, self.trials) if self.trials else None

    def describe(self) -> str:
        if not self.trials:
            return "n/a"
        return f"{self.rate:.2e} ({self.errors}/{self.trials}, <= {self.upper95:.2e})"
