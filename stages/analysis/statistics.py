"""Statistics of the BN study: per-variant summaries over seeds, the comparison of two variants
(paired on seed where both ran the same seeds, Welch's t-test otherwise and beside it) with Holm's
correction, and the power analysis behind every "no detectable difference".

Paired where seeds are shared: two cells with one seed share their initializer stream and their
data order (stages/trainer), so their accuracies correlate, and the difference per seed removes
what the seed adds to both. The paired t-test is then the test of the difference (its interval,
p-value and power); Welch's, which treats the arms as independent, is kept beside it."""

from __future__ import annotations

import dataclasses
import itertools
import math
from dataclasses import dataclass
from typing import Sequence

import numpy as np
from scipy import optimize, stats
from statsmodels.stats.multitest import multipletests

# The one multiple-comparison rule: Holm's adjustment over a family, and the family is every pair
# of the variants trained at one setting (one optimizer, learning rate, batch size, number of
# epochs and head input: one row of a grid's table), whichever grid trained or reports them, so
# that a pair has one adjusted p wherever it is quoted. At the study's setting that is the study's
# variants, which the sweep (at its rate) and the batch grid (at its batch size) take from it.
FAMILY = "every pair of the variants trained at one setting"
CONFIDENCE = 0.95
ALPHA = 1 - CONFIDENCE  # Two-sided significance level of every test.
POWER = 0.8  # The power at which a difference counts as detectable in the power analysis.
MIN_RUNS = 3  # Fewer runs in an arm: "not tested" (claims.py's vocabulary), whatever the numbers.
# The difference whose cost in seeds the study reports: 0.3 points of accuracy, the size of the
# before/after gap in this project's first single runs.
TARGET_DIFFERENCE = 0.003
MAX_SEEDS = 10_000  # Beyond this, "how many seeds" is answered "more than MAX_SEEDS".


def describe(values: Sequence[float]) -> dict:
    """mean, sample std (ddof=1; 0 for one seed), min, max, n, and the t confidence interval of
    the mean (None for one seed) of one measure over seeds."""
    array = np.asarray(values, dtype=np.float64)
    n = len(array)
    mean, std = float(array.mean()), float(array.std(ddof=1)) if n > 1 else 0.0
    interval = {"ci_low": None, "ci_high": None}
    if n > 1:
        half_width = float(stats.t.ppf(0.5 + CONFIDENCE / 2, n - 1)) * std / math.sqrt(n)
        interval = {"ci_low": mean - half_width, "ci_high": mean + half_width}
    return {"mean": mean, "std": std, "min": float(array.min()), "max": float(array.max()), "n": n,
            **interval}


@dataclass(frozen=True)
class Comparison:
    first: str
    second: str
    difference: float  # mean(first) - mean(second)
    ci_low: float  # The 95% interval of the difference, not adjusted for multiple comparisons.
    ci_high: float
    p_value: float
    # Holm-adjusted over the comparisons made together (compare_all); alone, the p-value itself.
    p_holm: float
    sizes: tuple[int, int]
    # At POWER and `detectable_alpha`, for these sizes and the observed spreads; None where no seed
    # varies (no spread: a test can detect nothing, or anything).
    minimum_detectable: float | None
    seeds_to_detect_target: int | None  # Per variant, for TARGET_DIFFERENCE; None: > MAX_SEEDS.
    # "paired" (on seed: the fields above are the paired t-test's, and Welch's stand beside them)
    # or "welch" (the arms' seeds differ: the fields above are Welch's).
    test: str = "welch"
    welch_ci_low: float | None = None
    welch_ci_high: float | None = None
    welch_p: float | None = None
    # The level of the power analysis: ALPHA alone; in a family of m pairs, ALPHA / m, the level
    # at which Holm's first step tests, so a difference of minimum_detectable is detected by the
    # Holm-adjusted test with at least POWER (Holm rejects whenever ALPHA / m does).
    detectable_alpha: float = ALPHA

    @property
    def detectable(self) -> bool:
        return self.p_holm < ALPHA

    def verdict(self) -> str:
        """One line; accuracies are fractions, the differences are shown in percentage points."""
        interval = (f"{self.difference * 100:+.2f} points, {self.test} {CONFIDENCE:.0%} CI "
                    f"[{self.ci_low * 100:+.2f}, {self.ci_high * 100:+.2f}], p = {self.p_value:.3g}, "
                    f"Holm-adjusted p = {self.p_holm:.3g}")
        if self.detectable:
            # The difference as the words read it, higher − lower, so its sign is always +.
            sign = 1 if self.difference > 0 else -1
            better, worse = (self.first, self.second) if sign > 0 else (self.second, self.first)
            low, high = sorted((sign * self.ci_low, sign * self.ci_high))
            return (f"{self.first} vs {self.second}: {better} is higher than {worse} "
                    f"({better} − {worse} {sign * self.difference * 100:+.2f} points, {self.test} {CONFIDENCE:.0%} CI "
                    f"[{low * 100:+.2f}, {high * 100:+.2f}], p = {self.p_value:.3g}, "
                    f"Holm-adjusted p = {self.p_holm:.3g})")
        seeds = (f"{self.seeds_to_detect_target} seeds per variant" if self.seeds_to_detect_target
                 else f"more than {MAX_SEEDS} seeds per variant")
        if self.minimum_detectable is None:
            return f"{self.first} vs {self.second}: no detectable difference ({interval}); no seed varied"
        return (f"{self.first} vs {self.second}: no detectable difference ({interval}); with "
                f"{self.sizes[0]} and {self.sizes[1]} seeds and this spread, the smallest difference "
                f"detected with {POWER:.0%} power is {self.minimum_detectable * 100:.2f} points, and "
                f"{TARGET_DIFFERENCE * 100:.1f} points would take {seeds}")


def welch(first_name: str, first: Sequence[float], second_name: str, second: Sequence[float],
          alpha: float = ALPHA) -> Comparison:
    """Difference of means with Welch's t confidence interval and two-sided p-value (SciPy's), and
    the power analysis for the observed spreads.

    Welch's test does not assume equal variances, which matters here: BN changes the
    run-to-run spread. It needs at least two seeds per variant.
    """
    a, b = np.asarray(first, np.float64), np.asarray(second, np.float64)
    if len(a) < 2 or len(b) < 2:
        raise ValueError(f"Welch's t-test needs at least 2 seeds per variant; got {len(a)} for "
                         f"{first_name} and {len(b)} for {second_name}. Add seeds to study.seeds")
    difference = float(a.mean() - b.mean())
    spreads = (float(a.std(ddof=1)), len(a), float(b.std(ddof=1)), len(b))
    power_analysis = {"sizes": (len(a), len(b)), "detectable_alpha": alpha,
                      "minimum_detectable": minimum_detectable_difference(*spreads, alpha=alpha),
                      "seeds_to_detect_target": seeds_to_detect(TARGET_DIFFERENCE, spreads[0], spreads[2], alpha=alpha)}
    if spreads[0] == spreads[2] == 0.0:  # Both samples constant: the difference is exact.
        p_value = 1.0 if difference == 0.0 else 0.0
        return Comparison(first_name, second_name, difference, difference, difference, p_value, p_value,
                          **power_analysis)
    test = stats.ttest_ind(a, b, equal_var=False)
    interval = test.confidence_interval(CONFIDENCE)
    return Comparison(first_name, second_name, difference, float(interval.low), float(interval.high),
                      float(test.pvalue), float(test.pvalue), **power_analysis)


def divergence_test(diverged_first: int, runs_first: int, diverged_second: int, runs_second: int) -> float:
    """Two-sided p-value of Fisher's exact test that two arms diverge equally often (SciPy's):
    divergence is a count of a few runs, where no normal approximation holds."""
    table = [[diverged_first, runs_first - diverged_first], [diverged_second, runs_second - diverged_second]]
    return float(stats.fisher_exact(table).pvalue)


def paired(first_name: str, first: Sequence[float], second_name: str, second: Sequence[float],
           alpha: float = ALPHA) -> Comparison:
    """The mean of first − second over seeds (the two in the same seed order) with the paired
    t-test's confidence interval and two-sided p-value (SciPy's) and its power analysis; Welch's
    interval and p beside them (welch_*)."""
    a, b = np.asarray(first, np.float64), np.asarray(second, np.float64)
    independent = welch(first_name, a, second_name, b, alpha)
    beside = {"test": "paired", "welch_ci_low": independent.ci_low, "welch_ci_high": independent.ci_high,
              "welch_p": independent.p_value}
    differences = a - b
    difference, spread = float(differences.mean()), float(differences.std(ddof=1))
    power_analysis = {"sizes": (len(a), len(b)), "detectable_alpha": alpha,
                      "minimum_detectable": paired_minimum_detectable(spread, len(a), alpha=alpha),
                      "seeds_to_detect_target": paired_seeds_to_detect(TARGET_DIFFERENCE, spread, alpha=alpha)}
    if spread == 0.0:  # Every seed's difference the same: the difference is exact.
        p_value = 1.0 if difference == 0.0 else 0.0
        return Comparison(first_name, second_name, difference, difference, difference, p_value, p_value,
                          **power_analysis, **beside)
    test = stats.ttest_rel(a, b)
    interval = test.confidence_interval(CONFIDENCE)
    return Comparison(first_name, second_name, difference, float(interval.low), float(interval.high),
                      float(test.pvalue), float(test.pvalue), **power_analysis, **beside)


def compare(first_name: str, first, second_name: str, second, alpha: float = ALPHA) -> Comparison:
    """Two variants' values: paired on seed where both are {seed: value} over the same seeds (two
    or more), Welch's test otherwise (lists, or seeds that differ); `alpha`: the level of the power
    analysis (compare_all's)."""
    if isinstance(first, dict) and isinstance(second, dict) and set(first) == set(second) and len(first) >= 2:
        seeds = sorted(first)
        return paired(first_name, [first[seed] for seed in seeds], second_name, [second[seed] for seed in seeds], alpha)
    values = [list(sample.values()) if isinstance(sample, dict) else sample for sample in (first, second)]
    return welch(first_name, values[0], second_name, values[1], alpha)


def paired_minimum_detectable(spread: float, pairs: int, target_power: float = POWER,
                              alpha: float = ALPHA) -> float | None:
    """The smallest true mean difference the paired t-test detects with `target_power` over
    `pairs` seeds, if the differences' std is `spread`: the root of power() (one-sample t on the
    differences, pairs − 1 degrees of freedom), bracketed and found by Brent's method.

    Our own root rather than statsmodels' TTestPower.solve_power, which returns wrong roots without
    a warning at small alpha and few pairs: at 3 pairs and alpha 0.05/3 it gives an effect of 4.29
    (or 4.12, or 5.14, as alpha moves in its 8th digit), where the power is 0.61, not 0.80, and its
    power function gives nan there; the root is 5.67 (tests/test_study.py checks it by simulation)."""
    if spread == 0.0:
        return None
    standard_error, dof = spread / math.sqrt(pairs), pairs - 1
    high = standard_error
    while power(high, standard_error, dof, alpha) < target_power:
        high *= 2
    return float(optimize.brentq(lambda d: power(d, standard_error, dof, alpha) - target_power,
                                 0.0, high, xtol=1e-12 * standard_error))


def paired_seeds_to_detect(difference: float, spread: float, target_power: float = POWER,
                           alpha: float = ALPHA) -> int | None:
    """How many seeds (pairs) the paired t-test needs to detect `difference` with `target_power`
    if the differences' std is `spread`; None if more than MAX_SEEDS."""
    if spread == 0.0:
        return 2
    # power() rather than statsmodels' TTestPower, whose noncentral t gives nan beyond about a
    # thousand pairs (and fewest_seeds asks up to MAX_SEEDS); at a few seeds the two agree.
    return fewest_seeds(lambda n: power(difference, spread / math.sqrt(n), n - 1, alpha) >= target_power)


def holm(p_values: Sequence[float]) -> list[float]:
    """Holm's step-down adjustment (statsmodels' multipletests): the i-th smallest of m p-values
    is multiplied by m - i + 1 (i from 1), kept at least as large as the one before it, and
    capped at 1."""
    if len(p_values) == 0:  # multipletests refuses an empty family.
        return []
    return [float(p) for p in multipletests(list(p_values), alpha=ALPHA, method="holm")[1]]


def compare_all(samples: dict) -> list[Comparison]:
    """Every pair of variants, in the order given (each compared as `compare` says: paired where
    both are {seed: value} over the same seeds), with Holm-adjusted p-values over all pairs, and
    the power analysis at ALPHA / (number of pairs), the level that Holm's test guarantees."""
    pairs = list(itertools.combinations(samples, 2))
    level = ALPHA / max(len(pairs), 1)
    comparisons = [compare(a, samples[a], b, samples[b], level) for a, b in pairs]
    adjusted = holm([c.p_value for c in comparisons])
    return [dataclasses.replace(c, p_holm=p) for c, p in zip(comparisons, adjusted)]


def welch_error(std_a: float, n_a: int, std_b: float, n_b: int) -> tuple[float, float]:
    """Standard error of a difference of means, and its Welch-Satterthwaite degrees of freedom."""
    variance_a, variance_b = std_a**2 / n_a, std_b**2 / n_b
    standard_error = math.sqrt(variance_a + variance_b)
    if standard_error == 0.0:
        return 0.0, n_a + n_b - 2.0
    dof = (variance_a + variance_b) ** 2 / (variance_a**2 / (n_a - 1) + variance_b**2 / (n_b - 1))
    return standard_error, dof


def power(difference: float, standard_error: float, dof: float, alpha: float = ALPHA) -> float:
    """Power of the two-sided t-test against a true `difference`: the probability that |t|
    exceeds the critical value when t follows the noncentral t with noncentrality difference/se.
    Exact for equal variances and sizes; for Welch's test the usual approximation, slightly
    optimistic at a few seeds (at n = 5 per variant a simulated Welch test has 0.78 where this
    says 0.80), so the minimum detectable differences it gives are, if anything, too small.
    Our own because statsmodels' TTestIndPower assumes equal variances (its effect size is over
    one pooled std), and its TTestPower gives nan for large noncentralities (see below)."""
    critical = stats.t.ppf(1 - alpha / 2, dof)
    noncentrality = difference / standard_error
    # P(t < -critical) written as the upper tail of the mirrored distribution: SciPy's nct.cdf
    # returns nan there for large noncentralities, where the tail is 0.
    return float(stats.nct.sf(critical, dof, noncentrality) + stats.nct.sf(critical, dof, -noncentrality))


def minimum_detectable_difference(std_a: float, n_a: int, std_b: float, n_b: int,
                                  target_power: float = POWER, alpha: float = ALPHA) -> float | None:
    """The smallest true difference of means that Welch's test detects with `target_power`, for
    these sample sizes, taking the observed spreads as the true ones."""
    standard_error, dof = welch_error(std_a, n_a, std_b, n_b)
    if standard_error == 0.0:
        return None
    # Power rises from alpha at 0 towards 1: double the bracket until it holds the root.
    high = standard_error
    while power(high, standard_error, dof, alpha) < target_power:
        high *= 2
    return float(optimize.brentq(lambda d: power(d, standard_error, dof, alpha) - target_power,
                                 0.0, high, xtol=1e-12 * standard_error))


def seeds_to_detect(difference: float, std_a: float, std_b: float, target_power: float = POWER,
                    alpha: float = ALPHA) -> int | None:
    """How many seeds per variant Welch's test needs to detect `difference` with `target_power`,
    if the spreads are these; None if more than MAX_SEEDS."""
    def enough(n):
        standard_error, dof = welch_error(std_a, n, std_b, n)
        return standard_error == 0.0 or power(difference, standard_error, dof, alpha) >= target_power
    return fewest_seeds(enough)


def fewest_seeds(enough) -> int | None:
    """The smallest n from 2 to MAX_SEEDS for which enough(n) holds (power grows with n: a
    bisection), None if not even MAX_SEEDS is enough. (statsmodels' solve_power finds a root, not
    this whole number, and fails at the extremes: a huge effect below 2 seeds, a tiny one.)"""
    if not enough(MAX_SEEDS):
        return None
    low, high = 2, MAX_SEEDS
    while low < high:
        middle = (low + high) // 2
        low, high = (low, middle) if enough(middle) else (middle + 1, high)
    return low
