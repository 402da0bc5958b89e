"""Statistics of the BN study: per-variant summaries over seeds and Welch's t-test between variants."""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass

import numpy as np
from scipy import stats

CONFIDENCE = 0.95


def describe(values: list[float]) -> dict:
    """mean, sample std (ddof=1; 0 for one seed), min, max and n of one measure over seeds."""
    array = np.asarray(values, dtype=np.float64)
    return {"mean": float(array.mean()), "std": float(array.std(ddof=1)) if len(array) > 1 else 0.0,
            "min": float(array.min()), "max": float(array.max()), "n": int(len(array))}


@dataclass(frozen=True)
class Comparison:
    first: str
    second: str
    difference: float  # mean(first) - mean(second)
    ci_low: float
    ci_high: float
    p_value: float

    @property
    def detectable(self) -> bool:
        return not (self.ci_low <= 0.0 <= self.ci_high)

    def verdict(self) -> str:
        """One line; accuracies are fractions, the difference is shown in percentage points."""
        interval = (f"{self.difference * 100:+.2f} points, {CONFIDENCE:.0%} CI "
                    f"[{self.ci_low * 100:+.2f}, {self.ci_high * 100:+.2f}], p = {self.p_value:.3g}")
        if not self.detectable:
            return f"{self.first} vs {self.second}: no detectable difference ({interval})"
        better, worse = (self.first, self.second) if self.difference > 0 else (self.second, self.first)
        return f"{self.first} vs {self.second}: {better} is higher than {worse} ({interval})"


def welch(first_name: str, first: list[float], second_name: str, second: list[float]) -> Comparison:
    """Difference of means with a Welch t confidence interval and two-sided p-value.

    Welch's test does not assume equal variances, which matters here: BN changes the
    run-to-run spread. It needs at least two seeds per variant.
    """
    a, b = np.asarray(first, np.float64), np.asarray(second, np.float64)
    if len(a) < 2 or len(b) < 2:
        raise ValueError(f"Welch's t-test needs at least 2 seeds per variant; got {len(a)} for "
                         f"{first_name} and {len(b)} for {second_name}. Add seeds to study.seeds")
    difference = float(a.mean() - b.mean())
    variance_a, variance_b = a.var(ddof=1) / len(a), b.var(ddof=1) / len(b)
    standard_error = math.sqrt(variance_a + variance_b)
    if standard_error == 0.0:  # Both samples constant: the difference is exact.
        return Comparison(first_name, second_name, difference, difference, difference,
                          1.0 if difference == 0.0 else 0.0)
    # Welch-Satterthwaite degrees of freedom.
    dof = (variance_a + variance_b) ** 2 / (variance_a**2 / (len(a) - 1) + variance_b**2 / (len(b) - 1))
    half_width = stats.t.ppf(0.5 + CONFIDENCE / 2, dof) * standard_error
    p_value = float(2 * stats.t.sf(abs(difference) / standard_error, dof))
    return Comparison(first_name, second_name, difference, difference - half_width,
                      difference + half_width, p_value)


def compare_all(samples: dict[str, list[float]]) -> list[Comparison]:
    """Every pair of variants, in the order given."""
    return [welch(a, samples[a], b, samples[b]) for a, b in itertools.combinations(samples, 2)]
