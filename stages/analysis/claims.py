"""What the committed reports support, as plain data: the numbers, intervals and counts that the
README's answer and docs/ quote, and which verdict applies to each.

Every function takes what the report stages wrote (a grid's metrics.json summary, the cells'
records) already read, and returns dicts and lists, no wording: stages/analysis/answer.py words
them, and tools/answer.py reads the files and writes the blocks. A comparison ("pair") is a
report's row: difference, ci_low, ci_high (fractions of accuracy, first − second), p_holm, and
minimum_detectable, as stages.analysis.cells.holm_pairs keeps it.
"""

from __future__ import annotations

import math
import re

import numpy as np
import scipy.stats
from statsmodels.stats.weightstats import ttost_paired

from stages.analysis import consistency
from stages.analysis.cells import diverged_history, oriented
from stages.analysis.plotting import VARIANT_ORDER
from stages.analysis.statistics import ALPHA, CONFIDENCE, MIN_RUNS, compare_all, describe
from stages.grids.head import pooled_divergence
from stages.grids.norms import mean_over_seeds, trained_accuracy

PROVENANCE_GRIDS = ("study", "placement", "sweep", "norms", "head", "batch", "map", "rerun")  # Whose cells the answer quotes.
FROZEN_COMPARED = ("none", "rescaled", "frozen", "before")  # In the order docs/why.md's tables list them.
FROZEN_PAIRS = (("frozen", "none"), ("frozen", "rescaled"), ("before", "frozen"))
HIGH_RATE = "0.01"  # The Adam rate at which docs/why.md pools every seed of `frozen` (records' file names).


def includes_zero(pair: dict) -> bool:
    """Whether a comparison's 95% CI leaves room for no difference at all."""
    return pair["ci_low"] <= 0 <= pair["ci_high"]


def gains(sweep: dict, optimizer: str, first: str, second: str) -> list[tuple[str, dict]]:
    """(rate, comparison first − second) at each rate of the sweep where both were compared."""
    found = []
    for rate, cell in sweep[optimizer].items():
        pair = (cell.get("comparisons") or {}).get(f"{first}_vs_{second}")
        if pair is not None:
            found.append((rate, pair))
    return found


# The fixed vocabulary of every claim, decided by its test (answer.py words each kind):
# "detected": the 95% CI excludes 0 after the stated adjustment (Holm p < ALPHA over
# statistics.FAMILY); "equivalent": TOST within ±margin (paired where paired); "no_difference":
# neither, and the claim says what the test could have detected; "not_tested": fewer than
# MIN_RUNS runs in an arm (statistics.py), where a t interval (one or two degrees of freedom) says
# next to nothing.
VERDICTS = ("detected", "equivalent", "no_difference", "not_tested")


def verdict(pair: dict, equivalence: dict | None = None) -> str:
    """Which of VERDICTS a comparison (a report's row, with its `sizes`) earns; `equivalence`: its
    TOST ({"p_value"}), where one was run."""
    if min(pair["sizes"]) < MIN_RUNS:
        return "not_tested"
    if pair["p_holm"] < ALPHA:
        return "detected"
    if equivalence is not None and equivalence["p_value"] < ALPHA:
        return "equivalent"
    return "no_difference"


def judged(pair: dict, equivalence: dict | None = None) -> dict:
    """The comparison with its verdict (`verdict`) and, where it has one, its TOST (`equivalence`)."""
    return {**pair, "verdict": verdict(pair, equivalence), "equivalence": equivalence}


def bn_helps(study: dict) -> dict:
    """BN (before and after the activation) against `none` at the study's setting: the two
    comparisons with their verdicts, the fewest and most seeds of the three variants, and whether
    both gains are detected."""
    before, after = (judged(study["comparisons"][f"{bn}_vs_none"]) for bn in ("before", "after"))
    runs = [study[bn]["test_accuracy"]["n"] for bn in ("before", "after", "none")]
    return {"before": before, "after": after, "seeds": (min(runs), max(runs)),
            "detected": before["verdict"] == after["verdict"] == "detected"}


def placement(summary: dict) -> dict:
    """Before or after the activation, from the placement report: `settled` once every planned
    cell has run and the difference is detected, with the higher variant's lead (its 95% CI, Welch
    p), the seeds' spread, and how often one run of each puts the higher one ahead; otherwise the
    report's own verdict. `seeds`: the runs of each."""
    verdict, comparison = summary["verdict"], summary["comparison"]
    seeds = {variant: summary["variants"][variant]["n"] for variant in ("before", "after")}
    detected = comparison is not None and not includes_zero(comparison)
    if verdict.startswith("interim") or not detected:
        return {"settled": False, "verdict": verdict, "seeds": seeds}
    higher, lower = ("after", "before") if comparison["difference"] < 0 else ("before", "after")
    sign = -1 if higher == "after" else 1  # The report compares before − after.
    low, high = sorted((sign * comparison["ci_low"], sign * comparison["ci_high"]))
    stds = [summary["variants"][variant]["std"] for variant in ("before", "after")]
    # How often one run of each, same setting, different seeds, puts the higher variant ahead:
    # P(X_higher > X_lower) for independent normals with the observed means and spreads.
    ahead = scipy.stats.norm.cdf(abs(comparison["difference"]) / math.hypot(*stds))
    ratio = abs(comparison["difference"]) / max(stds)  # The lead in units of one seed's spread.
    scale = "under_half" if ratio < 0.5 else "about" if ratio <= 2 else "times"
    # The cells' own agreement (stages/analysis/consistency.py): where groups of cells run apart
    # disagree, the direction stands but the pooled size is not one number.
    checked = summary.get("consistency")
    uncertain = (consistency.why(checked, f"{higher} − {lower}", sign)
                 if checked and not checked["consistent"] else None)
    return {"settled": True, "uncertain": uncertain, "test": comparison["test"], "higher": higher, "lower": lower, "difference": sign * comparison["difference"],
            "ci_low": low, "ci_high": high, "p_value": comparison["p_value"], "std_low": min(stds),
            "std_high": max(stds), "ahead": ahead, "ratio": ratio, "scale": scale, "seeds": seeds}


def where_gain(sweep: dict) -> dict:
    """`before` − `none` at each Adam and each SGD rate of the sweep, judged, and per optimizer
    whether every rate's gain is detected (`every`: the only case "at every rate" may be said)."""
    found = {optimizer: [(rate, judged(pair)) for rate, pair in gains(sweep, optimizer, "before", "none")]
             for optimizer in ("adam", "sgd")}
    return {**found, "every": {optimizer: bool(rates) and all(pair["verdict"] == "detected" for _, pair in rates)
                               for optimizer, rates in found.items()}}


BOOTSTRAP_SAMPLES = 10_000
BOOTSTRAP_SEED = 0  # Fixed: the interval is part of a generated text that a test compares.


def share_interval(accuracy: dict[str, dict[int, float]], variant: str, reference: str = "none",
                   full: str = "before") -> tuple[float, float]:
    """95% percentile bootstrap interval of (variant − reference) / (full − reference), the mean
    accuracies' ratio, resampling seeds (the three variants ran the same seeds: one draw takes a
    seed's three runs together). Our own: neither SciPy's bootstrap nor statsmodels resamples a
    ratio of paired means over shared seeds in one call."""
    seeds = sorted(set(accuracy[variant]) & set(accuracy[reference]) & set(accuracy[full]))
    values = np.array([[accuracy[name][seed] for name in (variant, reference, full)] for seed in seeds])
    draws = np.random.default_rng(BOOTSTRAP_SEED).integers(0, len(seeds), (BOOTSTRAP_SAMPLES, len(seeds)))
    means = values[draws].mean(axis=1)  # (samples, 3)
    ratios = (means[:, 0] - means[:, 1]) / (means[:, 2] - means[:, 1])
    low, high = np.percentile(ratios, [100 * (1 - CONFIDENCE) / 2, 100 * (1 + CONFIDENCE) / 2])
    return float(low), float(high)


def rescaled_share(study: dict, accuracy: dict[str, dict[int, float]]) -> dict:
    """The share of `before`'s gain over `none` that `rescaled` (the net rescaled once at the
    start, without BN) recovers at the study's setting, its bootstrap interval (`accuracy`: each
    variant's {seed: test accuracy}), and whether it is less than half: only if the whole
    interval is."""
    comparisons = study["comparisons"]
    share = oriented(comparisons, "rescaled", "none")["difference"] / comparisons["before_vs_none"]["difference"]
    low, high = share_interval(accuracy, "rescaled")
    seeds = min(len(accuracy[bn]) for bn in ("rescaled", "none", "before"))
    return {"share": share, "ci_low": low, "ci_high": high, "seeds": seeds, "tested": seeds >= MIN_RUNS,
            "under_half": seeds >= MIN_RUNS and high < 0.5, "over_half": seeds >= MIN_RUNS and low > 0.5}


def paired_equivalence(first: dict[int, float], second: dict[int, float], margin: float) -> dict:
    """TOST of first − second within ±margin over their shared seeds (statsmodels' ttost_paired)."""
    seeds = sorted(set(first) & set(second))
    p_value, _, _ = ttost_paired(np.array([first[s] for s in seeds]), np.array([second[s] for s in seeds]),
                                 -margin, margin)
    return {"margin": margin, "p_value": float(p_value)}


def frozen_gain(study: dict, accuracy: dict[str, dict[int, float]], margin: float) -> dict | None:
    """`frozen` − `none` and `before` − `frozen`, judged, the second with its paired TOST within
    ±margin (params.yaml's placement.equivalence_margin); None before the study has `frozen` cells."""
    gain = oriented(study["comparisons"], "frozen", "none")
    if gain is None:
        return None
    against = oriented(study["comparisons"], "before", "frozen")
    return {"gain": judged(gain),
            "against": judged(against, paired_equivalence(accuracy["before"], accuracy["frozen"], margin))}


def scale_invariance(norms: dict | None) -> dict | None:
    """From the norms grid's summary, at each rate with both `before` and `none`: the mean growth
    of their convolution kernels' norms, BN's end-of-training effective step over `none`'s, and
    whether both hold (BN's kernels outgrow `none`'s and take smaller relative steps); the seeds of
    the first variant. None before that report exists or has such a rate."""
    if norms is None:
        return None
    rates = []
    for rate, variants in norms.items():
        if not {"before", "none"} <= set(variants):
            continue
        growth = {bn: mean_over_seeds(variants[bn], "conv", "norm_growth") for bn in ("before", "none")}
        step = {bn: mean_over_seeds(variants[bn], "conv", "effective_step_end") for bn in ("before", "none")}
        if None in growth.values() or None in step.values():
            continue
        ratio = step["before"] / step["none"]
        rates.append({"rate": rate, "growth": growth, "step_ratio": ratio,
                      "holds": growth["before"] > growth["none"] and ratio < 1})
    if not rates:
        return None
    seeds = min(len(entry) for variants in norms.values() for entry in variants.values())
    return {"rates": rates, "seeds": seeds, "tested": seeds >= MIN_RUNS}


def head_intervention(head: dict | None) -> list[dict]:
    """Per rate of the head grid where `before` ran with the intervention: its runs (`with`:
    diverged of runs), its sweep twin's (`without`, or None), the BN variants' divergence with and
    without it together and Fisher's exact p of the two (`pooled`, stages/grids/head.py's), and
    `before` − `none` with it (or None)."""
    if head is None:
        return []
    rates = []
    for rate, variants in head["with"].items():
        if variants.get("before") is not None:
            rates.append({"rate": rate, "with": variants["before"],
                          "without": head["without"].get(rate, {}).get("before"),
                          "pooled": pooled_divergence(variants, head["without"].get(rate, {})),
                          "pair": judge_optional(oriented(variants.get("comparisons") or {}, "before", "none"))})
    return rates


def judge_optional(pair: dict | None) -> dict | None:
    return None if pair is None else judged(pair)


def batch_split(batch: dict | None) -> dict | None:
    """`before` − `none` per batch size, split into test accuracy, train accuracy and the train −
    test gap, and the batch sizes where `before` narrows the gap detectably (its CI below zero);
    None before the batch report compares them at two batch sizes or more."""
    if batch is None:
        return None
    split = {size: {**entry["split"]["before"], "test_accuracy": judged(entry["comparisons"]["before_vs_none"])}
             for size, entry in batch.items() if "before" in entry.get("split", {})}
    if len(split) < 2:
        return None
    # The split's intervals are not adjusted: which sizes narrow or widen the gap is said as such.
    return {"split": split, "narrowed": [size for size in split if split[size]["gap"]["ci_high"] < 0],
            "widened": [size for size in split if split[size]["gap"]["ci_low"] > 0],
            "detected": [size for size in split if split[size]["test_accuracy"]["verdict"] == "detected"],
            "fitting": [size for size in split if split[size]["train_accuracy"]["ci_low"] > 0]}


def answer(study: dict, placement_summary: dict, sweep: dict, norms: dict | None, head: dict | None,
           batch: dict | None, accuracy: dict[str, dict[int, float]], setting: dict) -> dict:
    """Everything the README's answer says, from the reports' summaries (the optional grids' None
    before their reports exist), the study's trained runs ({variant: {seed: test accuracy}}) and
    the settings the study ran with (`setting`: params.yaml's train section and the equivalence
    margin)."""
    return {"setting": setting, "helps": bn_helps(study), "placement": placement(placement_summary),
            "where": where_gain(sweep), "rescaled": rescaled_share(study, accuracy),
            "frozen": frozen_gain(study, accuracy, setting["equivalence_margin"]), "scale": scale_invariance(norms),
            "head": head_intervention(head), "batch": batch_split(batch)}


def accuracy_by_seed(records) -> dict[str, dict[int, float]]:
    """{variant: {seed: test accuracy}} of the records' trained runs (cells.diverged_history)."""
    accuracy: dict[str, dict[int, float]] = {}
    for record in records:
        if not diverged_history(record["history"]):
            accuracy.setdefault(record["bn"], {})[record["seed"]] = record["metrics"]["test"]["accuracy"]
    return accuracy


def provenance(runs: list[dict], history: dict[str, tuple[str, str]]) -> list[dict]:
    """Per machine (device, instruction sets, TensorFlow, whether the records date themselves), in
    the order first met: how many cells, their first and last dates, and the commits that stand
    for distinct code versions. `runs`: each record's `environment`, and for records made before
    runs recorded their date and commit, `added`: the (commit, date) that committed it to git.
    `history`: a commit's `stages/` tree and commit date (see code_versions)."""
    groups: dict[tuple, list[tuple[str, str]]] = {}
    for run in runs:
        environment = run["environment"]
        recorded = "date" in environment
        date, commit = environment.get("date", "")[:10], environment.get("git_commit", "")[:7]
        if not recorded:
            commit, date = run["added"]
        key = (environment.get("device", "unknown device"), "/".join(environment.get("cpu_features", [])),
               environment.get("tensorflow", "?"), recorded)
        groups.setdefault(key, []).append((date, commit))
    machines = []
    for (device, features, tensorflow, recorded), cells in groups.items():
        # A record neither dated nor committed yet (git log finds no commit) has no date at all.
        dates = sorted(date for date, _ in cells if date) or ["date unknown"]
        commits = sorted({commit for _, commit in cells if commit})
        machines.append({"device": device, "features": features, "tensorflow": tensorflow, "recorded": recorded,
                         "cells": len(cells), "first": dates[0], "last": dates[-1],
                         "versions": code_versions(commits, history) if recorded else []})
    return machines


def code_versions(commits: list[str], history: dict[str, tuple[str, str]]) -> list[str]:
    """The commits that stand for distinct versions of the code (the `stages/` tree), oldest
    first: cells are committed one by one, so most of their commits change records, not code.
    A commit missing from `history` (not in this clone's history) stands for itself."""
    firsts: dict[str, tuple[str, str]] = {}
    for commit in commits:
        tree, date = history.get(commit, (commit, ""))
        if tree not in firsts or date < firsts[tree][0]:
            firsts[tree] = (date, commit)
    return [commit for _, commit in sorted(firsts.values())]


def sweep_findings(sweep: dict) -> dict:
    """What docs/why.md says under the sweep's table: BN's gains per optimizer and rate, the
    Holm-significant pairs, `rescaled`'s and `frozen`'s shares of BN's gain, `before` − `after`
    at each Adam rate, the diverged runs, β along the update with
    Adam, and how much lower BN's β is with SGD."""
    variants = [variant for variant in VARIANT_ORDER  # Those the sweep has, in the figures' order.
                if any(variant in cell for rates in sweep.values() for cell in rates.values())]
    placements = [(rate, cell["comparisons"]["before_vs_after"]) for rate, cell in sweep["adam"].items()
                  if "before_vs_after" in (cell.get("comparisons") or {})]
    sgd_lower = []
    for rate, cell in sweep["sgd"].items():
        beta = {v: cell[v]["landscape"].get("beta_median", {}).get("mean") for v in ("before", "none") if v in cell}
        if all(beta.get(v) for v in ("before", "none")):
            sgd_lower.append({"rate": rate, "lower": 1 - beta["before"] / beta["none"], **beta})
    return {
        "variants": variants,
        "gains": {(optimizer, variant): gains(sweep, optimizer, variant, "none")
                  for optimizer, variant in (("adam", "before"), ("adam", "after"), ("sgd", "before"))},
        "significant": [{"name": name, "optimizer": optimizer, "rate": rate, "pair": pair}
                        for optimizer, rates in sweep.items() for rate, cell in rates.items()
                        for name, pair in (cell.get("comparisons") or {}).items() if verdict(pair) == "detected"],
        "shares": {variant: shares(sweep, variant) for variant in ("rescaled", "frozen")},
        "placement": placements,
        "diverged": [(variant, cell[variant]["diverged"], cell[variant]["runs"]) for cell in sweep["sgd"].values()
                     for variant in variants if variant in cell and cell[variant]["diverged"]],
        "worst_sgd": max(sweep["sgd"], key=float),
        "update_beta": [(rate, [(variant, cell[variant]["landscape"]["update_beta_median"]["mean"])
                                for variant in variants
                                if "update_beta_median" in cell.get(variant, {}).get("landscape", {})])
                        for rate, cell in sweep["adam"].items()],
        "sgd_lower": sgd_lower,
    }


def shares(sweep: dict, variant: str) -> list[tuple[str, float]]:
    """The variant's share of BN's gain, (variant − none) / (before − none), at each Adam rate."""
    found = []
    for rate, cell in sweep["adam"].items():
        pairs = cell.get("comparisons") or {}
        gained = oriented(pairs, variant, "none")
        if "before_vs_none" in pairs and gained is not None:
            found.append((rate, gained["difference"] / pairs["before_vs_none"]["difference"]))
    return found


def frozen_findings(study: dict, freezes: list[dict], high_rate: list[dict],
                    accuracy: dict[str, dict[int, float]] | None = None) -> dict | None:
    """bn=frozen against `before`, `rescaled` and `none` at the study's setting: each variant's
    test and train accuracy and share of `before`'s gain over `none`, the pairs, how far BN's
    moving averages were from the training set's statistics at the freeze (`freezes`: each
    frozen record's `freeze`, or {}), and the pooled runs at HIGH_RATE (`high_rate`: those
    records; `accuracy`: the study's trained runs by variant and seed, for each share's bootstrap
    interval: a ratio is quoted with its interval or not at all). None before the study has every
    one of these variants."""
    if not all(variant in study for variant in FROZEN_COMPARED):
        return None
    gain = study["before"]["test_accuracy"]["mean"] - study["none"]["test_accuracy"]["mean"]
    rows = [{"variant": variant, "test": study[variant]["test_accuracy"], "train": study[variant]["train_accuracy"],
             "share": (study[variant]["test_accuracy"]["mean"] - study["none"]["test_accuracy"]["mean"]) / gain}
            for variant in FROZEN_COMPARED]
    for row in rows:  # `none` and `before` are the ratio's ends (0% and 100% by definition): no interval.
        if accuracy and row["variant"] not in ("none", "before"):
            row["share_ci"] = share_interval(accuracy, row["variant"])
    pairs = [(first, second, oriented(study["comparisons"], first, second)) for first, second in FROZEN_PAIRS]
    worst = [(max(layer["mean_gap_in_stds"] for layer in freeze["layers"].values()),
              max(layer["log_variance_ratio"] for layer in freeze["layers"].values())) for freeze in freezes if freeze]
    freeze = (None if not worst else
              {"step": freezes[0]["step"], "mean_gap": max(mean for mean, _ in worst),
               "log_variance": max(variance for _, variance in worst), "seeds": len(worst)})
    return {"rows": rows, "pairs": pairs, "freeze": freeze, "high_rate": frozen_at_high_rate(high_rate)}


def frozen_at_high_rate(records: list[dict]) -> dict | None:
    """`frozen` at Adam HIGH_RATE over every seed trained there with these settings (`records`: the
    sweep's and the norms grid's, the same training): each variant's test accuracy (described)
    and diverged runs, and the FROZEN_PAIRS among the variants with two runs or more (paired on
    seed; Holm over every pair of the variants trained there, statistics.FAMILY). None with fewer
    than three `frozen` runs."""
    runs: dict[str, dict[int, float]] = {}
    diverged: dict[str, int] = {}
    for record in records:
        if record["bn"] in VARIANT_ORDER:
            if diverged_history(record["history"]):
                diverged[record["bn"]] = diverged.get(record["bn"], 0) + 1
            else:
                runs.setdefault(record["bn"], {})[record["seed"]] = record["metrics"]["test"]["accuracy"]
    if len(runs.get("frozen", [])) < 3:
        return None
    family = [bn for bn in VARIANT_ORDER if len(runs.get(bn, [])) >= 2 and not diverged.get(bn)]
    compared = {f"{c.first}_vs_{c.second}": c for c in compare_all({bn: runs[bn] for bn in family})}
    variants = [bn for bn in FROZEN_COMPARED if bn in family]
    pairs = []
    for first, second in FROZEN_PAIRS:
        pair = compared.get(f"{first}_vs_{second}") or compared.get(f"{second}_vs_{first}")
        if pair is None:
            continue
        sign = 1 if pair.first == first else -1
        low, high = sorted((sign * pair.ci_low, sign * pair.ci_high))
        pairs.append({"first": first, "second": second, "difference": sign * pair.difference,
                      "ci_low": low, "ci_high": high, "p_holm": pair.p_holm, "test": pair.test})
    return {"rate": HIGH_RATE, "pairs": pairs, "family": family,
            "variants": [{"variant": bn, "accuracy": describe(list(runs[bn].values())), "diverged": diverged.get(bn, 0)}
                         for bn in variants]}


def norms_rows(norms: dict | None) -> list[dict] | None:
    """Per rate and variant of the norms grid: seeds, mean test accuracy, and (unless every seed
    diverged, `end` None) the convolution kernels' norm growth, effective step at the start and
    the last epoch, that last step over `none`'s (None without `none`), and the head's norm growth.
    None before the norms report exists."""
    if norms is None:
        return None
    rows = []
    for rate, variants in norms.items():
        reference = mean_over_seeds(variants["none"], "conv", "effective_step_end") if "none" in variants else None
        for variant, entry in variants.items():
            end = mean_over_seeds(entry, "conv", "effective_step_end")
            rows.append({"rate": rate, "variant": variant, "seeds": len(entry), "accuracy": trained_accuracy(entry),
                         "end": end, "start": mean_over_seeds(entry, "conv", "effective_step_start"),
                         "growth": mean_over_seeds(entry, "conv", "norm_growth"),
                         "head": mean_over_seeds(entry, "head", "norm_growth"),
                         "versus": end / reference if end is not None and reference else None})
    return rows


def main_run(metrics: dict, environment: dict[str, str]) -> dict:
    """The main run's scores (reports/metrics.json) and where it ran (`environment`: the lines
    `- key: value` of reports/report.md, which lists the run record's environment); a value the
    report does not list is None."""
    fit = environment.get("fit time (sum of the epochs)")
    return {"train_accuracy": metrics["train"]["accuracy"], "test_accuracy": metrics["test"]["accuracy"],
            "test_loss": metrics["test"]["loss"], "fit": None if fit is None else fit.split(" (")[0],
            # report.md lists the record's values as Python writes them: a list as ['avx2', 'fma'].
            "features": re.findall(r"'([^']+)'", environment.get("cpu_features", "")),
            **{key: environment.get(key) for key in ("device", "tensorflow", "date", "git_commit")}}


MAP_LABELS = {"relu": "ReLU", "momentum": "SGD + momentum 0.9", "long": "30 epochs"}


def map_settings(summary: dict | None) -> list[dict]:
    """Per setting of the placement map (reports/map/metrics.json), its sequential verdict (the
    grid's own rule, stages/analysis/sequential.py) and design; [] before the map's report exists."""
    if not summary:
        return []
    design = summary["design"]
    return [{"setting": name, "label": MAP_LABELS.get(name, name), "look": row["placement"],
             "looks": design["looks"], "margin": design["equivalence_margin"],
             "diverged_pairs": row["diverged_pairs"], "uncertain": consistency.why(row["consistency"])}
            for name, row in summary["settings"].items()]
