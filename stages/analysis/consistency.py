"""Do cells that ran apart agree? The check behind every contrast that pools paired cells run on
different numerics, code versions or days.

float32 results depend on the machine's kernels (instruction sets, oneDNN, library versions) and on
the code that trains: one seed re-run on another CPU lands up to ~0.3 points from its record
(reports/rerun/rerun.md), while a re-run on one machine repeats it bit for bit. A pooled contrast
is only one number if its groups agree, so this module groups a contrast's pairs three ways and
tests each:

- by **numerics**: the record's numerics fingerprint (record schema 2), else the CPU, its
  instruction sets and TensorFlow's version (records from 2026-12-01), else "numerics unknown";
- by **batch**: numerics, day and the digest of the code that can change a number (schema 2), the
  cells that ran together;
- by **run order**: the pairs in the order they ran (their records' dates), for a drift.

Groups of paired differences are compared with Welch's one-way ANOVA (statsmodels' anova_oneway,
unequal variances: the groups' spreads need not match), the drift with a least-squares slope of
the difference on the pair's rank in run order (scipy's linregress). Each is a test at ALPHA; a
contrast is `consistent` when none of those that could run rejects, and otherwise its answer says
that the size of the effect is uncertain and why.
"""

from __future__ import annotations

from typing import Iterable

import numpy as np
from scipy import stats
from statsmodels.stats.oneway import anova_oneway

from stages.analysis.cells import Cell
from stages.analysis.statistics import ALPHA

UNKNOWN = "numerics unknown (the record names no instruction sets)"


def numerics(run: dict) -> str:
    """The numerics a record ran with, as a label: cells with one label compute the same float32
    bits for the same inputs (as far as their records can tell)."""
    environment = run.get("environment", {})
    libraries = f"tensorflow {environment.get('tensorflow', '?')}, keras {environment.get('keras', '?')}"
    if "numerics_fingerprint" in environment:
        return (f"{environment.get('device', 'unknown device')}, {libraries}, "
                f"fingerprint {environment['numerics_fingerprint']}")
    if environment.get("cpu_features"):
        return (f"{environment.get('device', 'unknown device')} [{', '.join(environment['cpu_features'])}], "
                f"{libraries}, fingerprint not recorded")
    return UNKNOWN


def batch(run: dict) -> str:
    """The cells that ran together: the same numerics, day and code (record schema 2's digest of
    the training package; older records name a commit per cell, which says nothing about whether
    the code that trains changed, so they are grouped by day only)."""
    environment = run.get("environment", {})
    day = environment.get("date", "")[:10] or "date not recorded"
    code = run.get("code", {}).get("trainer")
    return f"{numerics(run)}; {day}; " + (f"code {code[:8]}" if code else "code digest not recorded")


def _pair_label(label_first: str, label_second: str) -> str:
    return label_first if label_first == label_second else f"{label_first} | {label_second}"


def heterogeneity(groups: dict[str, list[float]]) -> dict:
    """Welch's one-way ANOVA of groups of paired differences: whether their means agree. Only
    groups of two pairs or more can enter (a group's variance is needed); fewer than two such
    groups: nothing to test (`p_value` None), and `groups` still lists every group."""
    rows = {label: {"pairs": len(values), "mean": float(np.mean(values))} for label, values in groups.items()}
    testable = [np.asarray(values, np.float64) for values in groups.values() if len(values) >= 2]
    result = {"groups": rows, "p_value": None, "statistic": None, "tested_groups": len(testable)}
    if len(testable) >= 2:
        if all(np.ptp(values) == 0 for values in testable):
            # No spread within any group: any difference between them is exact, none is chance.
            distinct = len({float(values[0]) for values in testable}) > 1
            result.update(p_value=0.0 if distinct else 1.0)
        else:
            anova = anova_oneway(testable, use_var="unequal")
            result.update(statistic=float(anova.statistic), p_value=float(anova.pvalue))
    return result


def drift(dated: list[tuple[str, float]]) -> dict:
    """The slope of the paired difference over the pairs' rank in run order ({date, difference}
    per pair with a recorded date): a drift means the effect moved while the cells ran (code,
    machines or load changed). Needs three dated pairs."""
    ordered = [difference for _, difference in sorted(dated, key=lambda item: item[0])]
    if len(ordered) < 3 or np.ptp(ordered) == 0:
        return {"pairs": len(ordered), "slope": None, "p_value": None}
    fit = stats.linregress(np.arange(len(ordered), dtype=np.float64), np.asarray(ordered, np.float64))
    return {"pairs": len(ordered), "slope": float(fit.slope), "p_value": float(fit.pvalue)}


def check(pairs: Iterable[tuple[Cell, Cell]], contrast: str) -> dict:
    """The three checks over a contrast's pairs ((first cell, second cell) each, the difference
    taken as first − second test accuracy, `contrast` its name, e.g. "before − after"; diverged
    pairs already left out), and `consistent` (no check rejects at ALPHA) with `why` (what failed,
    in words) where not."""
    by_numerics: dict[str, list[float]] = {}
    by_batch: dict[str, list[float]] = {}
    dated = []
    for first, second in pairs:
        difference = first.metrics["test"]["accuracy"] - second.metrics["test"]["accuracy"]
        by_numerics.setdefault(_pair_label(numerics(first.run), numerics(second.run)), []).append(difference)
        by_batch.setdefault(_pair_label(batch(first.run), batch(second.run)), []).append(difference)
        dates = [cell.run.get("environment", {}).get("date", "") for cell in (first, second)]
        if all(dates):
            dated.append((max(dates), difference))
    result = {"numerics": heterogeneity(by_numerics), "batches": heterogeneity(by_batch), "order": drift(dated),
              "contrast": contrast}
    result["consistent"] = not any(result[name]["p_value"] is not None and result[name]["p_value"] < ALPHA
                                   for name in ("numerics", "batches", "order"))
    return result


def why(result: dict, contrast: str | None = None, sign: int = 1) -> str | None:
    """What failed, in words (None when the check passed), for the contrast as the reader meets it:
    `contrast` and `sign` -1 where the text reads the difference the other way round."""
    failed = []
    for name, groups in (("numerics", "cells on different numerics"), ("batches", "cells run on different days or code")):
        if result[name]["p_value"] is not None and result[name]["p_value"] < ALPHA:
            failed.append(f"{groups} disagree (Welch ANOVA p = {result[name]['p_value']:.2g})")
    order = result["order"]
    if order["p_value"] is not None and order["p_value"] < ALPHA:
        failed.append(f"{contrast or result['contrast']} changed with the order the pairs ran in "
                      f"({sign * order['slope'] * 100:+.3f} points a pair, p = {order['p_value']:.2g})")
    return "; ".join(failed) or None


def in_a_word(result: dict) -> str:
    """The check in a table cell: a disagreement and why, none detected, or nothing to compare. Not
    "they agree": a check of a few pairs that rejects nothing has little power to."""
    tested = any(result[name]["p_value"] is not None for name in ("numerics", "batches", "order"))
    if not tested:
        return "nothing to compare yet"
    return "no disagreement detected" if result["consistent"] else f"disagree: {why(result)}"


def render(result: dict) -> list[str]:
    """The check as a report section (markdown lines)."""
    def p(value: float | None, reason: str) -> str:
        return f"{value:.3g}" if value is not None else f"– ({reason})"

    lines = ["## Do cells that ran apart agree?", "",
             f"The difference {result['contrast']} pools pairs run on different numerics, days or code versions. Welch's one-way ANOVA "
             f"asks whether the groups' mean differences agree; a slope over run order asks whether the "
             f"difference drifted. Each is tested at α = {ALPHA:.2g}; "
             + ("**none rejects**: the pooled difference stands as one number." if result["consistent"]
                else f"**the size of the effect is uncertain**: {why(result)}."), ""]
    for name, title in (("numerics", "numerics"), ("batches", "cells run together (numerics, day, code)")):
        test = result[name]
        lines += [f"| grouped by {title} | pairs | mean difference (points) |", "|---|---|---|",
                  *(f"| {label} | {row['pairs']} | {row['mean'] * 100:+.2f} |" for label, row in test["groups"].items()),
                  f"| **Welch ANOVA p** | | {p(test['p_value'], 'fewer than two groups of two pairs')} |", ""]
    numerics_split = [row["pairs"] for row in result["numerics"]["groups"].values()]
    if numerics_split == [row["pairs"] for row in result["batches"]["groups"].values()]:
        # Records without a date or code digest cannot be split further: say so, rather than let
        # a second table look like a second check.
        lines += ["Grouped by cells run together, the pairs fall into the same groups as by numerics, so that "
                  "check adds nothing here: the pairs' days and code digests (recorded since record schema 2) "
                  "split them no further.", ""]
    order = result["order"]
    slope = "–" if order["slope"] is None else f"{order['slope'] * 100:+.4f} points a pair"
    lines += [f"Run order ({order['pairs']} pairs with recorded dates): slope {slope}, "
              f"p = {p(order['p_value'], 'fewer than three dated pairs, or no spread')}.", ""]
    return lines


def mixed_numerics(settings: dict[str, dict[str, list[Cell]]]) -> list[str]:
    """Where a report compares arms that ran on different numerics, one line per setting saying
    so ({setting: {arm: its cells}}; a setting "" for a report of one setting). Such arms share no
    numerics, so whether their cells agree cannot be tested (check() needs pairs run alike), and
    their difference includes whatever numerics alone do."""
    lines = []
    for setting, arms in settings.items():
        labels = {arm: tuple(sorted({numerics(cell.run) for cell in cells})) for arm, cells in arms.items() if cells}
        if len(set(labels.values())) <= 1:
            continue
        groups: dict[tuple, list[str]] = {}
        for arm, label in labels.items():
            groups.setdefault(label, []).append(arm)
        where = "; ".join(f"{', '.join(f'`{arm}`' for arm in arms)} on {' and '.join(label)}"
                          for label, arms in groups.items())
        lines.append(f"**Arms on different numerics{f' at {setting}' if setting else ''}:** {where}. A difference "
                     "between arms that ran apart includes what numerics alone move a cell "
                     "([reports/rerun/rerun.md](../rerun/rerun.md)), and whether their cells agree cannot be tested.")
    return lines
