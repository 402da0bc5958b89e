"""Before or after the activation? The placement study's cells, its test and its report.

The answer is one of three, decided at the study's 95% level: one placement is higher, the two are
equivalent within placement.equivalence_margin (two one-sided tests, TOST), or the seeds cannot yet
tell. Both variants run the same seeds, and one seed gives both the same initializer stream and data
order, so both tests are paired on seed (statistics.compare; statsmodels' ttost_paired), with
Welch's beside them; where the seeds differ, Welch's (ttost_ind with unequal variances).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
from scipy import stats
from statsmodels.stats.weightstats import ttost_ind, ttost_paired

from stages.analysis import consistency
from stages.analysis.statistics import ALPHA, CONFIDENCE, POWER, Comparison, compare
from stages.analysis.binding import Recipe
from stages.analysis.cells import Cell, diverged, environments, load_cell, trained_description, welch_interval
from stages.grids.sections import check_placement
from stages.grids.study import RUNS as STUDY_RUNS

OUT = Path("reports/placement")  # The report and its records (runs/).

PIPELINE = "grids/placement/dvc.yaml"
# The rerun grid's summary (grids/rerun): reference cells of this grid trained again on other
# numerics. Read, not recomputed, so that the rerun report stays the one place that pairs a rerun
# with its original; declared in grids/placement/dvc.yaml, so this report re-runs when it changes.
RERUNS = Path("reports/rerun/metrics.json")


def collect(variants: list[str], study_seeds: list[int], placement_seeds: list[int], study_runs: Path,
            placement_runs: Path, recipe: Recipe) -> tuple[dict[str, list[Cell]], list[str]]:
    """Every cell of both variants: the study's seeds from its records, then the placement's own.
    Returns the cells found and the DVC stages of those not yet run (a long study runs in parts)."""
    cells: dict[str, list[Cell]] = {variant: [] for variant in variants}
    missing = []
    for variant in variants:
        for runs, seeds, pipeline in ((study_runs, study_seeds, "grids/study/dvc.yaml"),
                                      (placement_runs, placement_seeds, PIPELINE)):
            for seed in seeds:
                path = runs / f"{variant}-{seed}.json"
                if not path.is_file():
                    missing.append(f"{pipeline}:cell@{variant}-{seed}")
                    continue
                cells[variant].append(load_cell(path, pipeline, recipe, bn=variant, seed=seed))
    return cells, missing


@dataclass(frozen=True)
class Equivalence:
    """Two one-sided Welch tests that the difference of means lies within +-margin."""
    margin: float
    p_lower: float  # H0: difference <= -margin
    p_upper: float  # H0: difference >= +margin
    # The (1 - 2 ALPHA) interval of the difference: inside +-margin exactly when both tests reject.
    ci_low: float
    ci_high: float

    @property
    def p_value(self) -> float:
        return max(self.p_lower, self.p_upper)

    @property
    def equivalent(self) -> bool:
        return self.p_value < ALPHA


def equivalence(first: dict[int, float], second: dict[int, float], margin: float) -> Equivalence:
    """TOST of first − second within ±margin ({seed: value} each): paired on seed where both ran
    the same seeds (statsmodels' ttost_paired), else Welch's (ttost_ind, unequal variances)."""
    if set(first) == set(second):
        seeds = sorted(first)
        a, b = (np.asarray([sample[seed] for seed in seeds], np.float64) for sample in (first, second))
        _, lower, upper = ttost_paired(a, b, -margin, margin)
        interval = stats.ttest_rel(a, b).confidence_interval(1 - 2 * ALPHA)
    else:
        a, b = (np.asarray(list(sample.values()), np.float64) for sample in (first, second))
        _, lower, upper = ttost_ind(a, b, -margin, margin, usevar="unequal")
        interval = stats.ttest_ind(a, b, equal_var=False).confidence_interval(1 - 2 * ALPHA)
    return Equivalence(margin, float(lower[1]), float(upper[1]), float(interval.low), float(interval.high))


def verdict(comparison: Comparison, test: Equivalence, missing: int = 0) -> str:
    """The answer in one sentence; differences in percentage points. While cells of the planned
    seeds are missing, it is an interim look, and says so: testing again as seeds arrive and
    stopping at the first significant look would make a false difference likely, so the answer
    is the one at all of placement.seeds."""
    # Oriented as the words read it: the higher variant first when one is detected higher.
    sign = -1 if comparison.p_value < ALPHA and comparison.difference < 0 else 1
    first, second = (comparison.first, comparison.second) if sign > 0 else (comparison.second, comparison.first)
    low, high = sorted((sign * comparison.ci_low, sign * comparison.ci_high))
    interval = (f"{sign * comparison.difference * 100:+.2f} points ({first} − {second}), {comparison.test} "
                f"{CONFIDENCE:.0%} CI [{low * 100:+.2f}, {high * 100:+.2f}], "
                f"{comparison.test} p = {comparison.p_value:.3g}")
    within = f"within ±{test.margin * 100:.2g} points (TOST p = {test.p_value:.3g})"
    interim = (f"interim, {missing} planned cells not yet run, so not the answer yet: " if missing else "")
    if comparison.p_value < ALPHA:
        higher = first
        also = f", a difference {within}" if test.equivalent else ""
        return f"{interim}bn={higher} is higher by {abs(comparison.difference) * 100:.2f} points: {interval}{also}"
    if test.equivalent:
        return f"{interim}equivalent {within}: {interval}"
    more = "" if missing else "; add seeds to placement.seeds"
    return f"{interim}undecided: neither a difference nor equivalence {within} is shown: {interval}{more}"


def summarize(cells: dict[str, list[Cell]], margin: float, missing: int = 0) -> dict:
    """Per variant, test accuracy over seeds (diverged runs counted, kept out); the comparison of
    the two when neither has diverged runs and each has two seeds or more. `missing`: how many
    cells have not run yet, which an undecided verdict names."""
    first, second = cells
    accuracy = {variant: {cell.seed: cell.metrics["test"]["accuracy"] for cell in runs if not diverged(cell)}
                for variant, runs in cells.items()}
    summary = {"variants": {variant: {**trained_description(list(accuracy[variant].values()),
                                                            sum(diverged(cell) for cell in runs)),
                                      "seeds": [cell.seed for cell in runs]}
                            for variant, runs in cells.items()},
               "equivalence_margin": margin, "comparison": None, "equivalence": None, "verdict": None,
               "consistency": None}
    counts = {variant: (len(runs), summary["variants"][variant]["diverged"]) for variant, runs in cells.items()}
    broken = [f"{variant}: {k} of {n} diverged" for variant, (n, k) in counts.items() if k]
    if broken:
        summary["verdict"] = "no comparison, as runs diverged (" + "; ".join(broken) + ")"
    elif min(len(accuracy[first]), len(accuracy[second])) < 2:
        summary["verdict"] = "no comparison yet: it needs two seeds of each variant"
    else:
        comparison = compare(first, accuracy[first], second, accuracy[second])
        test = equivalence(accuracy[first], accuracy[second], margin)
        by_seed = {variant: {cell.seed: cell for cell in runs} for variant, runs in cells.items()}
        shared = sorted(set(by_seed[first]) & set(by_seed[second]))
        summary.update(comparison={**asdict(comparison), "ci_half_width": (comparison.ci_high - comparison.ci_low) / 2},
                       equivalence={**asdict(test), "p_value": test.p_value, "equivalent": test.equivalent},
                       verdict=verdict(comparison, test, missing),
                       consistency=consistency.check(((by_seed[first][seed], by_seed[second][seed]) for seed in shared),
                                                     f"{first} − {second}"))
        if not summary["consistency"]["consistent"]:
            summary["verdict"] += "; its size is uncertain: the cells that ran apart disagree (see below)"
    return summary


def read_reruns(path: Path = RERUNS) -> list[dict]:
    """The rerun report's rows ({bn, seed, difference}), checked before anything is written; empty
    before that report exists."""
    from stages.analysis.records import read_json
    from stages.trainer.errors import InputFileError

    if not path.is_file():
        return []
    rows = read_json(path, "the rerun grid's report").get("cells")
    fix = f"re-run that report (`dvc repro grids/rerun/dvc.yaml`) or `git checkout -- {path}`"
    if not isinstance(rows, list):
        raise InputFileError(f"{path}: cells = {str(rows)[:200]} is not a list of reruns; {fix}")
    for row in rows:
        if not (isinstance(row, dict) and isinstance(row.get("bn"), str) and type(row.get("seed")) is int
                and type(row.get("difference")) in (int, float) and np.isfinite(row["difference"])):
            raise InputFileError(f"{path}: {str(row)[:200]} is not a rerun (bn, an integer seed, a finite "
                                 f"difference); {fix}")
    return rows


def reproducibility_line(reruns: list[dict]) -> str:
    """How far numerics alone move one cell: the rerun grid's reference cells against their records."""
    if not reruns:
        return ("**Reproducibility:** not measured yet: no reference cell has been trained again on other "
                "numerics (`dvc repro grids/rerun/dvc.yaml`).")
    moved = ", ".join(f"{row['difference'] * 100:+.2f} (`{row['bn']}`, seed {row['seed']})" for row in reruns)
    return (f"**Reproducibility** ([reports/rerun/rerun.md](../rerun/rerun.md)): {len(reruns)} reference "
            f"cell{'s' if len(reruns) != 1 else ''} trained again on another machine or code version, with the same "
            f"params and seed, landed {moved} points from {'their records' if len(reruns) != 1 else 'its record'}: "
            "numerics alone move one cell that far, so two single cells that differ by as much may differ by "
            "numerics alone.")


def render_markdown(summary: dict, environments: list[str], missing: list[str],
                    reproducibility: str = "") -> str:
    variants = summary["variants"]
    rows = ["| variant | seeds | test accuracy, mean ± std | 95% CI of the mean | min – max | diverged |",
            "|---|---|---|---|---|---|"]
    for variant, row in variants.items():
        if row["n"] == 0:
            rows.append(f"| {variant} | 0 | – | – | – | {row['diverged']} |")
            continue
        interval = (f"[{row['ci_low']:.4f}, {row['ci_high']:.4f}]" if row["ci_low"] is not None else "–")
        rows.append(f"| {variant} | {row['n']} | {row['mean']:.4f} ± {row['std']:.4f} | {interval} | "
                    f"{row['min']:.4f} – {row['max']:.4f} | {row['diverged']} |")
    lines = ["# Before or after the activation?", "",
             f"**{summary['verdict']}**", "", *rows, ""]
    comparison, test = summary["comparison"], summary["equivalence"]
    if comparison:
        lines += ["| test | value |", "|---|---|",
                  f"| difference of means ({comparison['first']} − {comparison['second']}) | "
                  f"{comparison['difference'] * 100:+.2f} points |",
                  f"| its {CONFIDENCE:.0%} CI ({comparison['test']}) | [{comparison['ci_low'] * 100:+.2f}, "
                  f"{comparison['ci_high'] * 100:+.2f}] points, half-width "
                  f"{comparison['ci_half_width'] * 100:.2f} |",
                  f"| {comparison['test']} p (two-sided) | {comparison['p_value']:.3g} |",
                  *([f"| beside it, Welch's {CONFIDENCE:.0%} CI and p (the arms as independent) | "
                     f"{welch_interval(comparison)} points, p = {comparison['welch_p']:.3g} |"]
                    if comparison["test"] == "paired" else []),
                  f"| minimum detectable difference ({POWER:.0%} power, α = {ALPHA:.2g}) | "
                  + ("– (no seed varied) |" if comparison["minimum_detectable"] is None
                     else f"{comparison['minimum_detectable'] * 100:.2f} points |"),
                  f"| equivalence margin | ±{test['margin'] * 100:.2g} points |",
                  f"| TOST p (both one-sided tests) | {test['p_value']:.3g} "
                  f"({test['p_lower']:.3g}, {test['p_upper']:.3g}) |",
                  f"| {1 - 2 * ALPHA:.0%} CI (inside the margin ⇔ equivalent) | [{test['ci_low'] * 100:+.2f}, "
                  f"{test['ci_high'] * 100:+.2f}] points |", ""]
    lines += ["Every cell: the study's setting (params.yaml `model`, `train`), one seed each; seeds "
              "in study.seeds come from the study's cells, the rest from grids/placement/dvc.yaml's. "
              "![every seed's test accuracy, and the difference's CI](figures/placement.png)", "",
              *([reproducibility, ""] if reproducibility else [])]
    if summary["consistency"]:
        lines += consistency.render(summary["consistency"])
    if missing:
        lines += [f"## Cells not yet run ({len(missing)})", "",
                  "The numbers above are over the cells that have run. Train the rest with "
                  f"`dvc repro {PIPELINE}`:", "", *(f"- `{name}`" for name in missing), ""]
    lines += ["## Where the cells ran", "", *(f"- {line}" for line in environments), ""]
    return "\n".join(lines)


# The report (grids/placement/dvc.yaml's `report` stage, stages/grid_report.py): the params it reads,
# and what it writes.
PARAMS = ("placement", "study.variants", "study.seeds", "model", "train")


def report(params) -> str:
    from stages.analysis import figures
    from stages.trainer.atomic import write_json, write_text

    placement = params.placement
    check_placement(placement, params.study)
    cells, missing = collect(placement.variants, params.study.seeds, placement.seeds,
                             STUDY_RUNS, OUT / "runs", Recipe.of(params.model, params.train))
    summary = summarize(cells, placement.equivalence_margin, len(missing))
    # Everything is computed before anything is written, so a bad record leaves the old report.
    markdown = render_markdown(summary, environments(cells), missing, reproducibility_line(read_reruns()))
    write_json(OUT / "metrics.json", summary)
    figures.placement({variant: [c.metrics["test"]["accuracy"] for c in runs] for variant, runs in cells.items()},
                      summary, OUT / "figures" / "placement.png")
    write_text(OUT / "placement.md", markdown)
    return summary["verdict"]
