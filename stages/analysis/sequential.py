"""A group-sequential paired comparison: classic O'Brien-Fleming boundaries over a few looks.

Ours, not a library's: SciPy and statsmodels have no group-sequential boundaries, and the one
package that does (`gsdesign`, alpha) only wraps gsDesign's numerical integration. The boundary
is the classic O'Brien-Fleming one (not a Lan-DeMets spending function): at look k of K, with
information fraction t_k = n_k / n_K, |Z_k| >= c / sqrt(t_k), where c makes the probability of
crossing at any look alpha under no difference. The Z_k of a mean of independent pairs are
Brownian motion at t_k scaled by 1 / sqrt(t_k), so corr(Z_j, Z_k) = sqrt(t_j / t_k), and that
probability is one multivariate normal rectangle (SciPy's `multivariate_normal.cdf`, Genz's
algorithm). tests/test_map.py checks three equal looks at two-sided 0.05 against the published
z = 3.471, 2.454, 2.004.

The boundaries are made for z; with few pairs the statistic is a paired t with n_k - 1 degrees of
freedom, so each look keeps the boundary's nominal two-sided p (2 * (1 - Phi(z_k))) and uses the
t quantile for that p: the look-adjusted confidence interval is mean +- t_k * sd / sqrt(n_k).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np
from scipy import optimize, stats

from stages.analysis.statistics import POWER


def obrien_fleming(looks: list[int], alpha: float) -> list[float]:
    """Two-sided z boundaries at `looks` (pairs at each look) for overall level `alpha`."""
    fractions = np.asarray(looks, dtype=float) / looks[-1]
    correlation = np.sqrt(np.minimum.outer(fractions, fractions) / np.maximum.outer(fractions, fractions))
    normal = stats.multivariate_normal(mean=np.zeros(len(looks)), cov=correlation, seed=0)

    def excess(constant: float) -> float:
        bounds = constant / np.sqrt(fractions)
        return 1 - normal.cdf(bounds, lower_limit=-bounds) - alpha

    constant = optimize.brentq(excess, 1.0, 6.0, xtol=1e-6)
    return [float(constant / math.sqrt(fraction)) for fraction in fractions]


def nominal_p(boundary: float) -> float:
    return float(2 * stats.norm.sf(boundary))


def t_critical(boundary: float, pairs: int) -> float:
    """The paired t quantile with the z boundary's nominal two-sided p, at `pairs` pairs."""
    return float(stats.t.isf(nominal_p(boundary) / 2, pairs - 1))


@dataclass(frozen=True)
class Look:
    """One setting at the last look its pairs reach: the paired difference and what it says."""
    look: int | None  # 1-based; None before the first look
    pairs: int
    mean: float
    sd: float
    low: float
    high: float
    verdict: str  # "detected", "equivalent", "continue", "undecided" or "not yet at look 1"

    def as_dict(self) -> dict:
        """As JSON holds it: a value not defined yet (no interval before look 1) is None, not NaN,
        which strict JSON readers refuse."""
        return {key: None if isinstance(value, float) and math.isnan(value) else value
                for key, value in asdict(self).items()}


def analyse(differences: list[float], looks: list[int], alpha: float, margin: float) -> Look:
    """The sequential rule on paired differences (after - before, in order of seeds): the first
    look whose look-adjusted CI excludes 0 (detected) or lies within +-margin (equivalent) stops
    the setting; with neither at the last look, undecided; between looks, continue."""
    boundaries = obrien_fleming(looks, alpha)
    values = np.asarray(differences, dtype=float)
    reached = [index for index, pairs in enumerate(looks) if len(values) >= pairs]
    if not reached:
        mean = float(values.mean()) if len(values) else math.nan
        sd = float(values.std(ddof=1)) if len(values) > 1 else math.nan
        return Look(None, len(values), mean, sd, math.nan, math.nan, "not yet at look 1")
    for index in reached:
        sample = values[:looks[index]]
        mean, sd = float(sample.mean()), float(sample.std(ddof=1))
        half = t_critical(boundaries[index], len(sample)) * sd / math.sqrt(len(sample))
        low, high = mean - half, mean + half
        if low > 0 or high < 0:
            verdict = "detected"
        elif -margin < low and high < margin:
            verdict = "equivalent"
        elif index == len(looks) - 1:
            verdict = "undecided"
        else:
            verdict = "continue"
        if verdict != "continue" or index == reached[-1]:
            return Look(index + 1, len(sample), mean, sd, low, high, verdict)
    raise AssertionError("unreachable")


def design(looks: list[int], alpha: float, margin: float, sd: float) -> list[dict]:
    """Per look, what the design can see with a paired sd of `sd`: its z and t boundaries, the CI's
    half-width at no difference, the smallest difference it detects with POWER, and whether an
    equivalence verdict is possible at all (half-width below the margin)."""
    rows = []
    for pairs, boundary in zip(looks, obrien_fleming(looks, alpha)):
        critical = t_critical(boundary, pairs)
        half = critical * sd / math.sqrt(pairs)
        detectable = (critical + float(stats.t.ppf(POWER, pairs - 1))) * sd / math.sqrt(pairs)
        rows.append({"pairs": pairs, "z": boundary, "nominal_p": nominal_p(boundary), "t": critical,
                     "half_width": half, "detectable": detectable, "equivalence_possible": half < margin})
    return rows
