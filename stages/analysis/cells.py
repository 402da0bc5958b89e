"""Gather the study's cells, summarize them, and render the offline report (markdown and HTML)."""

from __future__ import annotations

import base64
import html
import math
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from stages.trainer.errors import InputFileError, quoted
from stages.analysis.binding import Recipe, check_locked, check_recipe
from stages.analysis.records import fit_seconds, read_json_and_md5
from stages.analysis.statistics import (CONFIDENCE, FAMILY, MAX_SEEDS, POWER, TARGET_DIFFERENCE, Comparison, compare_all,
                              describe)

# The probes' summaries (medians over training, landscape.LandscapeProbe.summary) that the study
# tabulates: key -> (column heading, digits). First the paper's measure along -g, then along the
# update D the optimizer really takes.
PAPER_MEASURES = {
    "beta_median": ("effective β-smoothness", 2),
    "loss_range_median": ("loss range over steps", 4),
    "grad_change_max_median": ("max gradient change", 3),
}
UPDATE_MEASURES = {
    "update_beta_median": ("β along Δ", 2),
    "update_loss_range_median": ("loss range along Δ", 4),
    "real_length_loss_range_median": ("loss range along −g at ‖Δ‖", 4),
    "cos_update_gradient_median": ("cos(Δ, −g)", 3),
    "decrease_ratio_median": ("realized / predicted decrease", 3),
}


@dataclass(frozen=True)
class Cell:
    """One study cell, from the JSON record that the `cell` stage wrote."""

    variant: str
    seed: int
    metrics: dict  # evaluate's scores: {"train": {...}, "test": {...}}
    history: dict[str, np.ndarray]  # per epoch, e.g. history["val/accuracy"]
    landscape: dict[str, np.ndarray] | None  # per probe, e.g. landscape["beta"]
    run: dict  # the rest of the record: settings, timings, environment
    landscape_summary: dict


def collect(runs: Path, variants: list[str], seeds: list[int], recipe: Recipe) -> dict[str, list[Cell]]:
    return {variant: [load_cell(runs / f"{variant}-{seed}.json", "grids/study/dvc.yaml", recipe, bn=variant, seed=seed)
                      for seed in seeds] for variant in variants}


def oriented(comparisons: dict, first: str, second: str) -> dict | None:
    """A report's comparison of two variants as first − second, whichever order it names them in
    (each report names a pair once, in its variants' order); None if it did not compare them."""
    if f"{first}_vs_{second}" in comparisons:
        return comparisons[f"{first}_vs_{second}"]
    if f"{second}_vs_{first}" not in comparisons:
        return None
    pair = comparisons[f"{second}_vs_{first}"]
    return {**pair, "difference": -pair["difference"], "ci_low": -pair["ci_high"], "ci_high": -pair["ci_low"]}


def comparison_row(c: Comparison) -> dict:
    """One comparison as the reports keep it in metrics.json: the primary test's (paired on seed
    where the arms share their seeds) difference, interval, p-values and power, and Welch's beside."""
    return {"test": c.test, "difference": c.difference, "ci_low": c.ci_low, "ci_high": c.ci_high,
            "p_value": c.p_value, "p_holm": c.p_holm, "minimum_detectable": c.minimum_detectable,
            "detectable_alpha": c.detectable_alpha,
            "seeds_to_detect_target": c.seeds_to_detect_target, "sizes": list(c.sizes),
            "welch_ci_low": c.welch_ci_low, "welch_ci_high": c.welch_ci_high, "welch_p": c.welch_p}


def holm_pairs(samples: dict[str, dict[int, float]]) -> dict:
    """Every pair of `samples`' variants ({seed: test accuracy} each) compared (paired on seed
    where both ran the same seeds, else Welch; Holm over these pairs), as the grid reports keep
    them in metrics.json."""
    return {f"{c.first}_vs_{c.second}": comparison_row(c) for c in compare_all(samples)}


def pairs_table(compared: list[tuple[str, str, dict]], setting: str, lead: str = "Differences") -> list[str]:
    """A grid report's comparisons, (setting's value, pair, comparison) each, as a markdown table
    after a sentence saying what they are; one line instead where nothing could be compared."""
    lines = [f"{lead} in test accuracy (points), 95% CI of the paired t-test on seed where both variants "
             f"ran the same seeds (else Welch's), Holm-adjusted p over the family ({FAMILY}: here "
             f"each {setting}'s variants with two seeds or more and no diverged run), the smallest difference "
             f"these seeds could detect ({POWER:.0%} power at α / the family's number of pairs, the level Holm's "
             "first step tests at, so the adjusted test has at least that power), and Welch's interval beside:", ""]
    if not compared:
        return lines + [f"No pair yet: no two variants at one {setting} have two seeds each without a diverged run."]
    lines += [f"| {setting} | pair | test | difference | 95% CI | Holm p | minimum detectable | Welch 95% CI |",
              "|---|---|---|---|---|---|---|---|"]
    return lines + [f"| {value} | {pair.replace('_vs_', ' − ')} | {c['test']} | {100 * c['difference']:+.2f} | "
                    f"[{100 * c['ci_low']:+.2f}, {100 * c['ci_high']:+.2f}] | {c['p_holm']:.2g} | "
                    + (f"{100 * c['minimum_detectable']:.2f}" if c["minimum_detectable"] is not None else "–")
                    + f" | {welch_interval(c)} |" for value, pair, c in compared]


def welch_interval(c: dict) -> str:
    """Welch's 95% CI of a comparison whose primary test is paired (in points); – where Welch's is
    the primary test itself."""
    if c["test"] != "paired":
        return "–"
    return f"[{100 * c['welch_ci_low']:+.2f}, {100 * c['welch_ci_high']:+.2f}]"


def rate_record(runs: Path, optimizer: str, rate: float, bn: str, seed: int) -> Path:
    """A cell's record in a grid over learning rates (sweep, norms, head), as its dvc.yaml names it:
    DVC writes a float as Python's str() does (0.0003, 1.0)."""
    return runs / f"{optimizer}-{rate}-{bn}-{seed}.json"


def rate_grid_cells(grid, runs: Path, pipeline: str) -> dict[Path, tuple[str, dict]]:
    """{record path: (DVC stage, expected settings)} for every cell of a grid over one optimizer's
    rates, variants and seeds (params.RateGridParams: norms, head), for load_grid."""
    return {rate_record(runs, grid.optimizer, rate, bn, seed): (
                f"{pipeline}:cell@{bn}-{rate}-{seed}",
                {"bn": bn, "seed": seed, "optimizer": grid.optimizer, "learning_rate": rate})
            for rate in grid.learning_rates for bn in grid.variants for seed in grid.seeds}


def incomplete(missing: list[str], pipeline: str) -> list[str]:
    """A grid report's line (and blank line) naming the cells that have not run, if any."""
    if not missing:
        return []
    return [f"**Incomplete: {len(missing)} cells have not run yet** (`dvc repro {pipeline}`): "
            + ", ".join(f"`{stage}`" for stage in missing) + ".", ""]


def load_grid(stages: dict[Path, tuple[str, dict]], what: str, recipe: Recipe) -> tuple[list[Cell], list[str]]:
    """The cells of a grid that have run ({record path: (DVC stage, expected settings)}), each
    checked by load_cell, and the DVC stages of those that have not (yet): a grid is often run a
    part at a time, on several machines, so its report shows where it stands."""
    missing = [stage for path, (stage, _) in stages.items() if not path.is_file()]
    if len(missing) == len(stages):
        pipeline = next(iter(stages.values()))[0].split(":")[0]
        raise InputFileError(f"no cell of {what} has run yet: run `dvc repro {pipeline}` "
                             f"(or `dvc repro {pipeline}:<cell>` for some of them) first")
    cells = [load_cell(path, stage.split(":")[0], recipe, **expected)
             for path, (stage, expected) in stages.items() if path.is_file()]
    return cells, missing


def load_cell(path: Path, pipeline: str, recipe: Recipe, **expected) -> Cell:
    """The record a `cell` stage of `pipeline` wrote at `path`, checked to be what its name says:
    each of `expected` (bn, seed, and for the grids over them a train or model setting such as
    optimizer, learning_rate, batch_size, epochs or activation) as recorded; every other training
    setting as `recipe` (params.yaml's model and train) gives it; its bytes the output that the
    pipeline's dvc.lock recorded for it (stages/analysis/binding.py); and every field a report
    reads well-formed (check_contents). A record copied over another, edited, forged or truncated
    is refused in one line naming the file, before any report is rewritten."""
    if not path.is_file():
        raise InputFileError(f"{path}: missing: this cell has not run; run `dvc repro {pipeline}` "
                             "to train the missing cells")
    record, md5 = read_json_and_md5(path, "cell")
    check_record(record, path, pipeline, expected)
    check_recipe(path, record, recipe.for_cell(expected), _fix(path, pipeline))
    check_locked(path, md5, record, pipeline)
    probes = record.get("probes")
    return Cell(record["bn"], record["seed"], record["metrics"],
                {name: np.asarray(values) for name, values in record["history"].items()},
                {name: np.asarray(values) for name, values in probes.items()} if probes else None,
                record, record.get("landscape") or {})


def _fix(path: Path, pipeline: str) -> str:
    return (f"`git checkout -- {path}` puts back the committed record; else delete it and run "
            f"`dvc repro {pipeline}` to train that cell again")


def check_record(record: dict, path: Path, pipeline: str, expected: dict) -> None:
    fix = _fix(path, pipeline)
    try:
        found = {"bn": record["bn"], "seed": record["seed"], "optimizer": record["train"]["optimizer"],
                 "learning_rate": record["train"]["learning_rate"]}
        for key in set(expected) - set(found):  # Any other setting: train's, else model's.
            found[key] = record["train"][key] if key in record["train"] else record["model"][key]
        scores = {f"{split}.{measure}": record["metrics"][split][measure]
                  for split in ("train", "test") for measure in ("accuracy", "loss")}
        losses = record["history"]["fit/loss"]
        losses[-1]  # An empty history is as incomplete as a missing one.
    except (KeyError, TypeError, IndexError) as error:
        raise InputFileError(f"{path}: not a complete cell record (no {error}); {fix}") from None
    if type(found["seed"]) is not int:  # 5.0 or "5" would pass for seed 5 below.
        raise InputFileError(f"{path}: seed = {found['seed']!r} is not an integer; {fix}")
    wrong = [key for key, value in expected.items() if found[key] != value]
    if wrong:
        recorded = ", ".join(f"{key}={found[key]}" for key in wrong)
        named = ", ".join(f"{key}={expected[key]}" for key in wrong)
        raise InputFileError(f"{path}: records {recorded}, not the {named} its name says; {fix}")
    run_diverged = all(isinstance(loss, (int, float)) for loss in losses) and diverged_history(record["history"])
    for name, value in scores.items():
        number = _is_number(value)
        finite = number and math.isfinite(value)
        if not number or (name.endswith("accuracy") and not (finite and 0 <= value <= 1)) \
                or (not finite and not run_diverged):
            raise InputFileError(f"{path}: {name} = {value!r} is not a valid score; {fix}")
    check_contents(record, path, fix)


def _is_number(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def check_contents(record: dict, path: Path, fix: str) -> None:
    """Every other field a report reads, well-formed, so that no report writes one output and then
    fails on (or silently drops) a record: the per-epoch history (lists of numbers, one per epoch;
    accuracies and times finite), the fit time, the probes' columns (lists of numbers of one
    length), the landscape summary (finite numbers or None, per layer too), the head input's scale
    and the environment. A loss may be non-finite: that is how a diverged run reads."""
    def refuse(field: str, value: object, why: str) -> None:
        raise InputFileError(f"{path}: {field} = {quoted(value)} {why}; {fix}")

    def column(field: str, values: object, length: int | None, finite: bool) -> int:
        if not isinstance(values, list) or not values or not all(map(_is_number, values)):
            refuse(field, values, "is not a non-empty list of numbers")
        if length is not None and len(values) != length:
            refuse(field, values, f"has {len(values)} values, not the {length} of its record's other columns")
        if finite and not all(math.isfinite(value) for value in values):
            refuse(field, values, "holds a value that is not finite")
        return len(values)

    history = record["history"]
    if not isinstance(history, dict):
        refuse("history", history, "is not a mapping of per-epoch lists")
    epochs = None
    for name, values in history.items():
        epochs = column(f"history.{name}", values, epochs, finite=not name.endswith("loss"))
    if "fit_seconds" in record:
        seconds = record["fit_seconds"]
        if not (_is_number(seconds) and math.isfinite(seconds) and seconds >= 0):
            refuse("fit_seconds", seconds, "is not a finite number of seconds")
    elif "epoch_seconds" not in history:
        refuse("history", sorted(history), "has no epoch_seconds, and the record no fit_seconds")
    probes = record.get("probes")
    if probes is not None:
        if not isinstance(probes, dict) or not probes:
            refuse("probes", probes, "is not a mapping of per-probe lists")
        steps = None
        for name, values in probes.items():
            steps = column(f"probes.{name}", values, steps, finite=name == "step")
    landscape = record.get("landscape")
    if landscape is not None and not isinstance(landscape, dict):
        refuse("landscape", landscape, "is not a mapping of the probes' summaries")
    for name, value in (landscape or {}).items():
        if name == "diverged":
            if not isinstance(value, bool):
                refuse(f"landscape.{name}", value, "is not true or false")
            continue
        for part, number in (value.items() if isinstance(value, dict) else [("", value)]):
            if number is not None and not (_is_number(number) and math.isfinite(number)):
                refuse(f"landscape.{name}" + (f".{part}" if part else ""), number, "is not a finite number or null")
    head = record.get("head_input")
    if head is not None and not (isinstance(head, dict) and _is_number(head.get("rms_before"))
                                 and math.isfinite(head["rms_before"])):
        refuse("head_input", head, "has no finite rms_before")
    if not isinstance(record.get("environment", {}), dict):
        refuse("environment", record["environment"], "is not a mapping")


def setting_text(setting: dict) -> str:
    """A grid's training in words, from a train section (params.yaml's, or a record's)"""
    return (f"{setting['epochs']} epochs, batch {setting['batch_size']}, {setting['optimizer'].capitalize()} "
            f"{setting['learning_rate']:g}, {setting['precision']}")


def diverged_history(history: dict) -> bool:
    """Whether a run diverged, by the one rule every grid uses: a training loss of some epoch is
    not finite, or (with two epochs or more) the last epoch's mean training loss is not below
    the first epoch's; a one-epoch run has nothing to compare its loss with.

    Why this rule: it needs only the per-epoch history, which every record has, probed or not
    (the landscape probe's own flag, stages/trainer/landscape.has_diverged, compares with the
    loss at step 0, which unprobed records lack). A run that learns lowers its epoch mean from
    the first epoch to the last (every committed trained run ends at most 0.74 of its first
    epoch's mean loss, the worst `none` at Adam 1e-2); one that blows up but stays finite does
    not (SGD 0.3, `before`, seed 0: 34.1 in the first epoch, 50.6 in the last, test accuracy at
    chance), nor does one stuck at chance (the same loss every epoch). On the committed records
    it agrees with the probe's flag on every probed record, and with "the last loss is not
    finite" (the rule unprobed grids used) on every record but that one."""
    losses = np.asarray(history.get("fit/loss", [np.nan]), dtype=np.float64)
    return bool(not np.all(np.isfinite(losses)) or (len(losses) > 1 and losses[-1] >= losses[0]))


def diverged(cell: Cell) -> bool:
    """diverged_history of the cell's record: the same rule for every grid."""
    return diverged_history(cell.history)


def trained_description(values: list[float], diverged_runs: int) -> dict:
    """describe() of the trained runs' values (`n` of them; {"n": 0} if none), with `runs` (all of
    them) and `diverged` (how many are left out): a diverged run is counted, never averaged, as
    its score (chance) says nothing about the net that trains."""
    return {**(describe(values) if values else {"n": 0}), "runs": len(values) + diverged_runs,
            "diverged": diverged_runs}


def pairs_of(count: int) -> str:
    """A count of paired seeds as the tables write it: "one pair", "2 pairs"."""
    return "one pair" if count == 1 else f"{count} pairs"


def accuracy_text(entry: dict | None) -> str:
    """A trained_description of test accuracy in a table: mean ± std over the trained runs, and
    how many of all the runs diverged; no mean where one run or none trained."""
    if entry is None:
        return "–"
    diverged_runs = f"{entry['diverged']} of {entry['runs']} diverged" if entry["diverged"] else ""
    if entry["n"] == 0:
        return diverged_runs
    text = (f"{entry['mean']:.4f} (one run)" if entry["n"] == 1
            else f"{entry['mean']:.4f} ± {entry['std']:.4f} (n={entry['n']})")
    return text + (f", {diverged_runs}" if diverged_runs else "")


def figure_run(cell: Cell) -> dict:
    """One cell as the sweep figures take it (figures.accuracy_vs_learning_rate and the like)."""
    probes = cell.landscape or {}
    return {"optimizer": cell.run["train"]["optimizer"], "bn": cell.variant,
            "learning_rate": cell.run["train"]["learning_rate"], "seed": cell.seed,
            "test_accuracy": cell.metrics["test"]["accuracy"],
            "diverged": diverged(cell),
            "effective_step": cell.landscape_summary.get("effective_step_median", {}),
            "steps": probes.get("step", np.array([])), "update_beta": probes.get("update_beta", np.array([])),
            "landscape": cell.landscape_summary}


def summarize(cells: dict[str, list[Cell]], measures: dict) -> tuple[dict, list[Comparison]]:
    """Per variant: each measure described over the seeds that trained (diverged ones counted).
    Pairs: Welch on test accuracy."""
    summary = {}
    trained_cells = {variant: [run for run in runs if not diverged(run)] for variant, runs in cells.items()}
    for variant, runs in cells.items():
        trained = trained_cells[variant]
        summary[variant] = {name: trained_description([run.metrics[a][b] for run in trained], len(runs) - len(trained))
                            for name, (a, b) in measures.items()}
        for key in (*PAPER_MEASURES, *UPDATE_MEASURES):
            # A diverged run has no finite median (None): the measure describes the other seeds.
            values = [run.landscape_summary.get(key) for run in runs]
            if any(value is not None for value in values):
                summary[variant][key] = describe([value for value in values if value is not None])
        summary[variant]["fit_seconds"] = describe([fit_seconds(run.run) for run in runs])
    # A variant with a diverged run is counted, not compared (its divergence is the finding).
    accuracy = {v: {run.seed: run.metrics["test"]["accuracy"] for run in runs} for v, runs in trained_cells.items()
                if len(runs) == len(cells[v]) and len(runs) >= 2}
    comparisons = compare_all(accuracy)
    summary["comparisons"] = {f"{c.first}_vs_{c.second}": comparison_row(c) for c in comparisons}
    return summary, comparisons


def environments(cells: dict[str, list[Cell]]) -> list[str]:
    """One line per machine and software the cells ran on: the number of cells, the code versions
    their records name (first and last by date; cells committed one by one each name their own
    commit) and the dates."""
    groups: dict[tuple, list[tuple[str, str]]] = {}
    for runs in cells.values():
        for cell in runs:
            environment = cell.run.get("environment", {})
            key = (environment.get("device", "unknown device"),
                   ", ".join(environment.get("cpu_features", [])) or "instruction sets not recorded",
                   f"{environment.get('backend', '?')} {environment.get(environment.get('backend', ''), '')}".strip())
            groups.setdefault(key, []).append((environment.get("date", ""),
                                               environment.get("git_commit", "")[:12]))
    lines = []
    for (device, features, backend), runs in groups.items():
        known = sorted(date[:10] for date, _ in runs if date)
        when = (("on " + known[0] if known[0] == known[-1] else f"{known[0]} to {known[-1]}")
                if known else "date not recorded")
        commits = list(dict.fromkeys(commit for _, commit in sorted(runs) if commit))
        version = ("code version not recorded" if not commits else f"code {commits[0]}" if len(commits) == 1
                   else f"code at {len(commits)} commits, {commits[0]} to {commits[-1]}")
        missing = sum(1 for _, commit in runs if not commit)
        if commits and missing:
            version += f" ({missing} without one)"
        cells_text = f"{len(runs)} cell" + ("s" if len(runs) != 1 else "")
        lines.append(f"{cells_text}: {device} [{features}], {backend}, {version}, {when}")
    return lines


def render_markdown(summary: dict, comparisons: list[Comparison], cells: dict[str, list[Cell]],
                    with_landscape: bool, mixed: list[str] = ()) -> str:
    variants = list(cells)
    first = cells[variants[0]][0].run
    total_minutes = sum(fit_seconds(run.run) for runs in cells.values() for run in runs) / 60

    def cell(variant, key, digits=4):
        d = summary[variant][key]
        return f"{d['mean']:.{digits}f} ± {d['std']:.{digits}f} [{d['min']:.{digits}f}, {d['max']:.{digits}f}]"

    lines = [
        "# BN study: where should BatchNormalization sit?", "",
        f"{len(variants)} variants × {summary[variants[0]]['test_accuracy']['n']} seeds, "
        f"{first['train']['epochs']} epochs each. Cells: mean ± std [min, max] over seeds.", "",
        "| bn | seeds | test accuracy | test loss | train accuracy |", "|---|---|---|---|---|",
        *(f"| {v} | {summary[v]['test_accuracy']['n']} | {cell(v, 'test_accuracy')} | "
          f"{cell(v, 'test_loss')} | {cell(v, 'train_accuracy')} |" for v in variants), "",
        "## Differences in mean test accuracy (paired t-test on seed, 95% CI; Welch's beside)", "",
        "Every variant ran the same seeds, and one seed gives two variants the same initializer stream "
        "and data order, so each pair is tested on its per-seed differences (paired t); Welch's test, "
        "which treats the two as independent, is beside it. "
        f"p-values are Holm-adjusted over the family ({FAMILY}: here the {len(comparisons)} pairs; the CIs "
        "are not adjusted); a difference "
        f"counts as detected when the adjusted p < {1 - CONFIDENCE:.2f}. Minimum detectable: the "
        f"smallest true difference found with {POWER:.0%} power at these seed counts and spreads, at "
        f"α / {len(comparisons)} (Holm's first step: the adjusted test has at least that power); "
        f"seeds for {TARGET_DIFFERENCE * 100:.1f}: per variant, to detect {TARGET_DIFFERENCE * 100:.1f} "
        "points with that power.", "",
        f"| pair | difference (points) | 95% CI | p-value | Holm p | minimum detectable (points) | "
        f"seeds for {TARGET_DIFFERENCE * 100:.1f} points | test | Welch 95% CI | Welch p |",
        "|---|---|---|---|---|---|---|---|---|---|",
        *(f"| {c.first} − {c.second} | {c.difference * 100:+.2f} | "
          f"[{c.ci_low * 100:+.2f}, {c.ci_high * 100:+.2f}] | {c.p_value:.3g} | {c.p_holm:.3g} | "
          f"{'–' if c.minimum_detectable is None else f'{c.minimum_detectable * 100:.2f}'} | {c.seeds_to_detect_target or f'> {MAX_SEEDS:,}'} | "
          f"{c.test} | {welch_interval(comparison_row(c))} | {'–' if c.welch_p is None else f'{c.welch_p:.3g}'} |"
          for c in comparisons), "",
        *(f"- {c.verdict()}" for c in comparisons), "",
    ]
    if with_landscape:
        lines += landscape_tables(summary, variants)
    lines += [
        "![validation curves](figures/curves.png)", "",
        "![test accuracy per seed](figures/test_accuracy.png)", "",
        "![generalization gap](figures/generalization_gap.png)", "",
        *(["![landscape](figures/landscape.png)", ""] if with_landscape else []),
        "## Where the cells ran", "",
        *(f"- {line}" for line in environments(cells)),
        f"- fit time of the cells (sum of their epochs, probes included): {total_minutes:.1f} min", "",
        *(line for entry in mixed for line in (entry, "")),
    ]
    return "\n".join(lines)


def landscape_tables(summary: dict, variants: list[str]) -> list[str]:
    """The probes' medians over training: mean over seeds [95% t interval of that mean]."""
    def cell(variant, key, digits):
        d = summary[variant].get(key)
        if d is None:
            return "–"
        interval = f" [{d['ci_low']:.{digits}f}, {d['ci_high']:.{digits}f}]" if d["n"] > 1 else ""
        return f"{d['mean']:.{digits}f}{interval}"

    def table(lead_in, measures):
        shown = {key: spec for key, spec in measures.items()
                 if any(key in summary[variant] for variant in variants)}
        if not shown:
            return []
        return [lead_in, "", "| bn | " + " | ".join(heading for heading, _ in shown.values()) + " |",
                "|---" * (len(shown) + 1) + "|",
                *(f"| {v} | " + " | ".join(cell(v, key, digits) for key, (_, digits) in shown.items())
                  + " |" for v in variants), ""]

    return [
        "## Loss-landscape smoothness (Santurkar et al. 2018), medians over training", "",
        f"Each cell: the mean over seeds of the run's median, with the {CONFIDENCE:.0%} t interval of "
        "that mean.", "",
        *table("Along −g at η ∈ step sizes × the learning rate (the paper's measure):", PAPER_MEASURES),
        *table("Along the update Δ the optimizer takes at that step (k ∈ step sizes × Δ), and along −g "
               "moved as far as Δ:", UPDATE_MEASURES),
    ]


def render_html(markdown: str, base: Path) -> str:
    """A self-contained page from the markdown above: figures inlined as base64, no scripts."""
    body, table = [], []
    for line in markdown.splitlines() + [""]:
        if line.startswith("|"):
            cells = [html.escape(c.strip()) for c in line.strip("|").split("|")]
            if not set("".join(cells)) <= set("-"):
                tag = "th" if not table else "td"
                table.append("<tr>" + "".join(f"<{tag}>{c}</{tag}>" for c in cells) + "</tr>")
            continue
        if table:
            body.append("<table>" + "".join(table) + "</table>")
            table = []
        if image := re.fullmatch(r"!\[(.*)\]\((.*)\)", line):
            data = base64.b64encode((base / image[2]).read_bytes()).decode()
            body.append(f'<img alt="{html.escape(image[1])}" src="data:image/png;base64,{data}">')
        elif heading := re.match(r"(#+) (.*)", line):
            level = len(heading[1])
            body.append(f"<h{level}>{html.escape(heading[2])}</h{level}>")
        elif line.strip():
            body.append(f"<p>{html.escape(line.lstrip('- '))}</p>")
    style = ("body{font-family:sans-serif;max-width:1100px;margin:2em auto}table{border-collapse:collapse}"
             "td,th{border:1px solid #ccc;padding:4px 8px}img{max-width:100%}")
    return (f"<!doctype html><html><head><meta charset='utf-8'><title>bnlab study</title>"
            f"<style>{style}</style></head><body>{''.join(body)}</body></html>\n")
