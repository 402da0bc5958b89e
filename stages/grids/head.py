"""The SGD head, tested: does BN train with plain SGD once the dense head sees the same input scale
in every variant?

With plain SGD, BN's nets diverge at rates where `none` still trains (the sweep). BN and `rescaled`
hand the head features of RMS ~1.1 at initialization, `none` ~0.3, and an SGD step moves the head's
outputs in proportion to the square of that scale. The head grid's cells (grids/head/dvc.yaml) scale
every variant's head input to one RMS (model.head_input_rms). Each has a twin in the sweep (same
optimizer, rate, variant and seed) that differs only by the intervention, so the report shows the
variants with it, without it, and the pairs' differences.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from stages.grids.sections import HeadParams
from stages.trainer.errors import InputFileError
from stages.analysis.statistics import MIN_RUNS, describe, divergence_test
from stages.analysis.binding import Recipe
from stages.analysis.cells import (Cell, accuracy_text, figure_run, incomplete, load_cell, load_grid, oriented, pairs_of,
                                     pairs_table, rate_grid_cells, rate_record)
from stages.grids.sweep import RUNS as SWEEP_RUNS
from stages.grids.sweep import summarize as summarize_grid

OUT = Path("reports/head")  # The report and its records (runs/), outside the trainer package.
RUNS = OUT / "runs"
PIPELINE = "grids/head/dvc.yaml"


def record_path(optimizer: str, rate: float, bn: str, seed: int) -> Path:
    return rate_record(RUNS, optimizer, rate, bn, seed)


def collect(head: HeadParams, recipe: Recipe) -> tuple[list[Cell], list[str]]:
    """The cells that have run, and the DVC stages of those that have not (yet); each cell's
    head input scaled to head.head_input_rms, which the head report reads back."""
    cells = {path: (stage, {**expected, "head_input_rms": head.head_input_rms})
             for path, (stage, expected) in rate_grid_cells(head, RUNS, PIPELINE).items()}
    found, missing = load_grid(cells, "the head grid", recipe)
    for cell in found:
        if "head_input" not in cell.run:
            raise InputFileError(f"{rate_record(RUNS, head.optimizer, cell.run['train']['learning_rate'], cell.variant, cell.seed)}: "
                                 f"has no head_input (not a head cell's record); `git checkout` it, or delete it "
                                 f"and run `dvc repro {PIPELINE}`")
    return found, missing


def twins(head: HeadParams, recipe: Recipe) -> list[Cell]:
    """The sweep's cells at the head grid's points, where they have run: the same runs without
    the intervention."""
    return [load_cell(path, "grids/sweep/dvc.yaml", recipe, **expected)
            for path, (_, expected) in rate_grid_cells(head, SWEEP_RUNS, "grids/sweep/dvc.yaml").items()
            if path.is_file()]


def summarize(cells: list[Cell], without: list[Cell]) -> dict:
    """{"with": ..., "without": ...} as the sweep summarizes its grid (accuracy per rate and
    variant, diverged runs counted, Holm comparisons among the variants that never diverged), and
    per rate and variant the head input's RMS before scaling and the paired differences (with −
    without, test accuracy, over the seeds where neither diverged)."""
    runs = {name: [figure_run(cell) for cell in group] for name, group in (("with", cells), ("without", without))}
    summary = {name: summarize_grid(group).get(cells[0].run["train"]["optimizer"], {}) if group else {}
               for name, group in runs.items()}
    twin = {(r["learning_rate"], r["bn"], r["seed"]): r for r in runs["without"]}
    paired: dict = {}
    for run, cell in zip(runs["with"], cells):
        entry = paired.setdefault(str(run["learning_rate"]), {}).setdefault(
            run["bn"], {"differences": [], "rms_before": []})
        entry["rms_before"].append(cell.run["head_input"]["rms_before"])
        other = twin.get((run["learning_rate"], run["bn"], run["seed"]))
        if other is not None and not run["diverged"] and not other["diverged"]:
            entry["differences"].append(run["test_accuracy"] - other["test_accuracy"])
    summary["paired"] = {rate: {bn: {"rms_before": float(np.mean(entry["rms_before"])),
                                     "difference": describe(entry["differences"]) if entry["differences"] else None}
                                for bn, entry in variants.items()}
                         for rate, variants in paired.items()}
    return summary


def verdicts(summary: dict, head: HeadParams) -> list[str]:
    """Per rate: how many of BN's runs diverged with the intervention and without it, and BN −
    `none` with the intervention where both never diverged."""
    lines = []
    for rate, variants in summary["with"].items():
        without = summary["without"].get(rate, {})
        for bn in (variant for variant in variants if variant not in ("none", "comparisons")):
            ran, before = variants[bn], without.get(bn)
            text = (f"{head.optimizer} {rate}, bn={bn}: {ran['diverged']} of {ran['runs']} runs diverged with the "
                    f"head's input at RMS {head.head_input_rms:g}"
                    + (f" ({before['diverged']} of {before['runs']} without, Fisher exact p = "
                       f"{divergence_test(ran['diverged'], ran['runs'], before['diverged'], before['runs']):.2g})"
                       if before else ""))
            pair = oriented(variants.get("comparisons") or {}, bn, "none")
            if pair is not None:
                text += (f"; {bn} − none {100 * pair['difference']:+.2f} points, 95% CI "
                         f"[{100 * pair['ci_low']:+.2f}, {100 * pair['ci_high']:+.2f}], Holm p = {pair['p_holm']:.2g}")
            lines.append(text)
        pooled = pooled_divergence(variants, without)
        if pooled is not None:
            lines.append(f"{head.optimizer} {rate}, BN variants together ({', '.join(pooled['variants'])}): "
                         f"{pooled['with']} of {pooled['with_runs']} runs diverged with the intervention, "
                         f"{pooled['without']} of {pooled['without_runs']} without, Fisher exact p = {pooled['p']:.2g}")
    return lines


def pooled_divergence(variants: dict, without: dict, reference: str = "none") -> dict | None:
    """At one rate, the variants other than `reference` together (their head input is the large
    one the intervention scales down): diverged runs with the intervention and without (the
    sweep's twins), and Fisher's exact p of the two rates; None without twins."""
    names = [bn for bn in variants if bn not in (reference, "comparisons") and bn in without]
    if not names:
        return None
    counts = {key: sum(group[bn][field] for bn in names)
              for key, group, field in (("with", variants, "diverged"), ("with_runs", variants, "runs"),
                                        ("without", without, "diverged"), ("without_runs", without, "runs"))}
    return {"variants": names, **counts,
            "p": divergence_test(counts["with"], counts["with_runs"], counts["without"], counts["without_runs"])}


def render_markdown(summary: dict, head: HeadParams, missing: list[str], environments: list[str],
                    minutes: float) -> str:
    lines = ["# The SGD head, tested: one input scale for the dense head in every variant", "",
             f"Plain {head.optimizer} (momentum 0) at each rate below, every variant's dense-head input "
             f"scaled to RMS {head.head_input_rms:g} by one constant set at initialization on the first "
             "training batch (`model.head_input_rms`), seeds "
             f"{', '.join(map(str, head.seeds))}. *Without*: the sweep's cells at the same rate, variant and "
             "seed (its seeds only), which differ only by that constant. Test accuracy, mean ± std over "
             "seeds; a diverged run (loss non-finite, or ending above where it began) scores chance and is "
             "counted, not compared.", ""]
    lines += incomplete(missing, PIPELINE)
    lines += ["| rate | bn | head input RMS before scaling | without | with | with − without (paired, points) |",
              "|---|---|---|---|---|---|"]
    for rate, variants in summary["with"].items():
        for bn, entry in variants.items():
            if bn == "comparisons":
                continue
            paired = summary["paired"][rate][bn]
            difference = paired["difference"]
            # Fewer than MIN_RUNS pairs is a description, not a test (the claim rules, docs/why.md).
            shift = ("–" if difference is None else f"{pairs_of(difference['n'])}: not tested" if difference["n"] == 1 else
                     f"{100 * difference['mean']:+.2f} ± {100 * difference['std']:.2f} (n={difference['n']})"
                     + (": not tested" if difference["n"] < MIN_RUNS else ""))
            lines.append(f"| {rate} | {bn} | {paired['rms_before']:.3f} | "
                         f"{accuracy_text(summary['without'].get(rate, {}).get(bn))} | {accuracy_text(entry)} | {shift} |")
    compared = [(rate, pair, c) for rate, variants in summary["with"].items()
                for pair, c in variants.get("comparisons", {}).items()]
    lines += ["", *pairs_table(compared, "rate", lead="With the intervention, differences")]
    lines += ["", "In short:", "", *(f"- {line}" for line in verdicts(summary, head)), "",
              "## Where the cells ran", "", *(f"- {line}" for line in environments),
              f"- fit time of the cells (sum of their epochs, probes included): {minutes:.1f} min", ""]
    return "\n".join(lines)


# The report (grids/head/dvc.yaml's `report` stage, stages/grid_report.py): the params it reads,
# and what it writes.
PARAMS = ("head", "model", "train")  # model and train: what every record must have trained with.


def report(params) -> str:
    from stages.analysis.records import fit_seconds
    from stages.analysis.cells import environments
    from stages.trainer.atomic import write_json, write_text

    from stages.analysis import consistency, figures

    recipe = Recipe.of(params.model, params.train)
    cells, missing = collect(params.head, recipe)
    without = twins(params.head, recipe)
    summary = summarize(cells, without)
    minutes = sum(fit_seconds(cell.run) for cell in cells) / 60
    # Each variant's runs with the head scaled against its sweep twins without: the paired column.
    arms: dict[str, dict[str, list]] = {}
    for scaled, group in (("scaled", cells), ("as is", without)):
        for cell in group:
            setting = f"SGD {cell.run['train']['learning_rate']:g}, {cell.variant}"
            arms.setdefault(setting, {}).setdefault(scaled, []).append(cell)
    mixed = consistency.mixed_numerics(arms)
    markdown = (render_markdown(summary, params.head, missing, environments({"all": cells}), minutes)
                + "\n![every seed's test accuracy with and without the head's scale](figures/head.png)\n"
                + "".join(f"\n{line}\n" for line in mixed))
    write_json(OUT / "metrics.json", summary)
    figures.head_intervention([{**figure_run(cell), "scaled": scaled} for scaled, group in ((True, cells), (False, without))
                               for cell in group], OUT / "figures" / "head.png")
    write_text(OUT / "head.md", markdown)
    return f"{len(cells)} cells ({len(missing)} not yet run) -> {OUT}/head.md"
