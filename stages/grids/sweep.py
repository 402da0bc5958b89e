"""The learning-rate sweep's grid, its summary per (optimizer, learning rate), and its report.

The sweep does not train the study's cells again: at the study's own optimizer and learning rate
(train.optimizer, train.learning_rate) it takes the study's records, all of the study's seeds.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from pathlib import Path

from stages.grids.sections import check_sweep
from stages.trainer.params import OPTIMIZERS
from stages.grids.study import RUNS as STUDY_RUNS
from stages.analysis.statistics import describe
from stages.analysis.binding import Recipe
from stages.analysis.cells import (PAPER_MEASURES, UPDATE_MEASURES, Cell, accuracy_text, holm_pairs, load_grid,
                                  pairs_table, rate_record, trained_description)

# The probes' medians over training that the sweep tabulates per rate: the paper's β along −g,
# then what the optimizer's real update Δ meets (study_report owns their names and digits).
LANDSCAPE = {key: PAPER_MEASURES[key] for key in ("beta_median",)} | {
    key: UPDATE_MEASURES[key] for key in ("update_beta_median", "real_length_loss_range_median",
                                          "cos_update_gradient_median", "decrease_ratio_median")}

OUT = Path("reports/sweep")  # The report and its records (runs/), outside the trainer package.
RUNS = OUT / "runs"


def grid(sweep) -> Iterator[tuple[str, float, str, int]]:
    """(optimizer, learning rate, bn, seed) of every cell, in grids/sweep/dvc.yaml's order."""
    for optimizer in OPTIMIZERS:
        part = getattr(sweep, optimizer)
        for bn in part.variants:
            for rate in part.learning_rates:
                for seed in sweep.seeds:
                    yield optimizer, rate, bn, seed


def record_path(optimizer: str, rate: float, bn: str, seed: int) -> Path:
    return rate_record(RUNS, optimizer, rate, bn, seed)


def study_records(sweep, study, train, study_runs: Path) -> dict[Path, tuple[str, dict]]:
    """The study's records that stand for the sweep's cells at the study's optimizer and rate:
    the stage that writes each, and what its record must say (the rules: sections.check_sweep)."""
    check_sweep(sweep, study, train)
    part = getattr(sweep, train.optimizer)
    return {study_runs / f"{bn}-{seed}.json": (f"grids/study/dvc.yaml:cell@{bn}-{seed}",
                                               {"bn": bn, "seed": seed, "optimizer": train.optimizer,
                                                "learning_rate": train.learning_rate})
            for bn in part.variants for seed in study.seeds}


def collect(sweep, study, train, study_runs: Path, recipe: Recipe) -> tuple[list[Cell], list[str]]:
    """The cells that have run, and the DVC stages of those that have not (yet): a sweep this
    size is often run a part at a time, on several machines, so its report shows where it stands."""
    stages = {record_path(optimizer, rate, bn, seed): (f"grids/sweep/dvc.yaml:{optimizer}@{bn}-{rate}-{seed}",
                                                       {"bn": bn, "seed": seed, "optimizer": optimizer,
                                                        "learning_rate": rate})
              for optimizer, rate, bn, seed in grid(sweep)}
    stages |= study_records(sweep, study, train, study_runs)
    return load_grid(stages, "the sweep", recipe)


def summarize(runs: list[dict]) -> dict:
    """Per optimizer and learning rate, per variant: test accuracy over the seeds that trained
    (cells.trained_description) and how many diverged; and comparisons (Holm) among the variants
    with two seeds or more there and no diverged run. A diverged run scores chance, which no
    t-test models: it is counted ("k of n diverged"), never averaged, and a variant with one is
    compared by its divergence, not its accuracy."""
    summary: dict = {}
    for optimizer, rate in sorted({(r["optimizer"], r["learning_rate"]) for r in runs}):
        here = [r for r in runs if (r["optimizer"], r["learning_rate"]) == (optimizer, rate)]
        by_variant = {bn: [r for r in here if r["bn"] == bn] for bn in dict.fromkeys(r["bn"] for r in here)}
        accuracy = {bn: {r["seed"]: r["test_accuracy"] for r in variant_runs if not r["diverged"]}
                    for bn, variant_runs in by_variant.items()}
        entry = {bn: {**trained_description(list(accuracy[bn].values()), sum(r["diverged"] for r in variant_runs)),
                      "landscape": landscape(variant_runs)}
                 for bn, variant_runs in by_variant.items()}
        comparable = {bn: values for bn, values in accuracy.items()
                      if len(values) >= 2 and not entry[bn]["diverged"]}
        if len(comparable) > 1:
            entry["comparisons"] = holm_pairs(comparable)
        summary.setdefault(optimizer, {})[str(rate)] = entry
    return summary


def landscape(runs: list[dict]) -> dict:
    """Each LANDSCAPE measure over the seeds that did not diverge and have a finite value. A
    diverged run's medians describe a blow-up, not the landscape a working run meets; the
    accuracy table counts those runs instead."""
    values = {key: [r["landscape"][key] for r in runs if not r["diverged"]
                    and isinstance(r["landscape"].get(key), (int, float)) and math.isfinite(r["landscape"][key])]
              for key in LANDSCAPE}
    return {key: describe(found) for key, found in values.items() if found}


def landscape_text(variant: dict, key: str, digits: int) -> str:
    """The mean over seeds of one landscape measure, with its n where some seeds had none."""
    measure = variant["landscape"].get(key)
    if measure is None:
        return "–"
    fewer = f" (n={measure['n']})" if measure["n"] < variant["n"] else ""
    return f"{measure['mean']:.{digits}f}{fewer}"


def render_markdown(summary: dict, environments: list[str], minutes: float, missing: list[str],
                    mixed: list[str] = ()) -> str:
    lines = ["# The learning-rate sweep: where does BN's advantage appear?", "",
             "Test accuracy after the sweep's epochs, mean ± std over the n seeds that trained; "
             "k of n diverged counts the runs whose training loss became non-finite or ended no lower than "
             "its first epoch's (stages/analysis/cells.py, diverged_history), which no mean includes.", ""]
    if missing:
        lines += [f"**Incomplete: {len(missing)} of the sweep's cells have not run yet** "
                  "(`dvc repro grids/sweep/dvc.yaml` trains them all, `dvc repro -s <stage>` one): "
                  + ", ".join(f"`{stage}`" for stage in missing) + ".", ""]
    for optimizer, rates in summary.items():
        variants = list(dict.fromkeys(bn for entry in rates.values() for bn in entry if bn != "comparisons"))
        lines += [f"## {optimizer}", "", "| learning rate | " + " | ".join(variants) + " |",
                  "|---|" + "---|" * len(variants)]
        for rate, entry in rates.items():
            cells = [accuracy_text(entry.get(bn)) for bn in variants]
            lines.append(f"| {rate} | " + " | ".join(cells) + " |")
        compared = [(rate, pair, c) for rate, entry in rates.items() for pair, c in entry.get("comparisons", {}).items()]
        lines += ["", *pairs_table(compared, "learning rate")]
        lines += ["", "Along −g (the paper's measure) and along the real update Δ: each run's median over "
                  "training, mean over its seeds that did not diverge ((n=k): only k seeds had a value):", "",
                  "| learning rate | bn | " + " | ".join(heading for heading, _ in LANDSCAPE.values()) + " |",
                  "|---|---|" + "---|" * len(LANDSCAPE)]
        lines += [f"| {rate} | {bn} | " + " | ".join(landscape_text(entry[bn], key, digits)
                                                   for key, (_, digits) in LANDSCAPE.items()) + " |"
                  for rate, entry in rates.items() for bn in variants if bn in entry]
        lines.append("")
    lines += ["![accuracy vs learning rate](figures/accuracy_vs_learning_rate.png)", "",
              "![effective step vs learning rate](figures/effective_step_vs_learning_rate.png)", "",
              "![beta along the update](figures/update_beta_over_training.png)", "",
              "## Where the cells ran", "", *(f"- {line}" for line in environments),
              f"- fit time of the cells (sum of their epochs, probes included): {minutes:.1f} min", "",
              *(line for entry in mixed for line in (entry, ""))]
    return "\n".join(lines)


# The report (grids/sweep/dvc.yaml's `report` stage, stages/grid_report.py): the params it reads,
# and what it writes.
# model and train: what every record must have trained with (stages/analysis/binding.py).
PARAMS = ("sweep", "study", "model", "train")


def report(params) -> str:
    from stages.analysis import figures
    from stages.analysis import consistency
    from stages.analysis.cells import environments, figure_run
    from stages.analysis.records import fit_seconds
    from stages.trainer.atomic import write_json, write_text

    cells, missing = collect(params.sweep, params.study, params.train, STUDY_RUNS, Recipe.of(params.model, params.train))
    runs = [figure_run(cell) for cell in cells]
    summary = summarize(runs)
    minutes = sum(fit_seconds(cell.run) for cell in cells) / 60
    arms: dict[str, dict[str, list]] = {}
    for cell in cells:
        setting = f"{cell.run['train']['optimizer']} {cell.run['train']['learning_rate']:g}"
        arms.setdefault(setting, {}).setdefault(cell.variant, []).append(cell)
    markdown = render_markdown(summary, environments({"all": cells}), minutes, missing,
                               consistency.mixed_numerics(arms))
    write_json(OUT / "metrics.json", summary)
    figures.accuracy_vs_learning_rate(runs, OUT / "figures" / "accuracy_vs_learning_rate.png")
    figures.effective_step_vs_learning_rate(runs, OUT / "figures" / "effective_step_vs_learning_rate.png")
    figures.update_beta_over_training(runs, OUT / "figures" / "update_beta_over_training.png")
    write_text(OUT / "sweep.md", markdown)
    return f"{len(cells)} cells ({len(missing)} not yet run) -> {OUT}/sweep.md"
