"""The batch: does BN's gain change with the batch size, and is it fitting or generalization?

BN normalizes each layer by the statistics of its batch, so the batch size sets how noisy that
normalization is (Wu & He 2018). The batch grid's cells (grids/batch/dvc.yaml) train its variants at other
batch sizes than the study's, with everything else as the study trains (the optimizer and its rate
unchanged); at the study's own batch size the study's cells stand in, as they do in the sweep. Per
batch size the report gives train and test accuracy and their gap, and splits each BN variant's gain
over `none` into fitting and generalization: test gain = train-accuracy gain − change of the gap.
"""

from __future__ import annotations

from pathlib import Path

from stages.grids.sections import BatchParams, StudyParams, check_batch
from stages.grids.study import RUNS as STUDY_RUNS
from stages.analysis.statistics import compare, describe
from stages.analysis.binding import Recipe
from stages.analysis.cells import Cell, diverged, holm_pairs, incomplete, load_grid, oriented, pairs_table

OUT = Path("reports/batch")  # The report and its records (runs/), outside the trainer package.
RUNS = OUT / "runs"
PIPELINE = "grids/batch/dvc.yaml"
REFERENCE = "none"  # BN's gain is measured against the net without it.
# Per cell: the trained net scored on each whole split in inference mode (evaluate's metrics), and
# the generalization gap between them.
MEASURES = ("train_accuracy", "test_accuracy", "gap")


def record_path(batch_size: int, bn: str, seed: int) -> Path:
    return RUNS / f"{batch_size}-{bn}-{seed}.json"


def grid_cells(batch: BatchParams, study: StudyParams, train) -> dict[Path, tuple[str, dict]]:
    """{record path: (DVC stage, expected settings)} of the batch grid's cells and of the study's
    cells that stand for it at train.batch_size (the rules: sections.check_batch): there every
    variant of the study's, as the comparisons' family is every variant trained at one setting
    (statistics.FAMILY), though the report shows only batch.variants."""
    check_batch(batch, study, train)

    def expected(bn: str, seed: int, batch_size: int) -> dict:
        return {"bn": bn, "seed": seed, "optimizer": train.optimizer, "learning_rate": train.learning_rate,
                "batch_size": batch_size}

    cells = {record_path(size, bn, seed): (f"{PIPELINE}:cell@{bn}-{size}-{seed}", expected(bn, seed, size))
             for size in batch.batch_sizes for bn in batch.variants for seed in batch.seeds}
    cells |= {STUDY_RUNS / f"{bn}-{seed}.json": (f"grids/study/dvc.yaml:cell@{bn}-{seed}",
                                                 expected(bn, seed, train.batch_size))
              for bn in study.variants for seed in study.seeds}
    return cells


def collect(batch: BatchParams, study: StudyParams, train, recipe: Recipe) -> tuple[list[Cell], list[str]]:
    """The cells that have run, and the DVC stages of those that have not (yet)."""
    return load_grid(grid_cells(batch, study, train), "the batch grid", recipe)


def values(cell: Cell) -> dict[str, float]:
    train, test = cell.metrics["train"]["accuracy"], cell.metrics["test"]["accuracy"]
    return {"train_accuracy": train, "test_accuracy": test, "gap": train - test}


def _difference(first: dict[int, float], second: dict[int, float]) -> dict:
    """mean(first) − mean(second) with its 95% CI (one measure of two variants, {seed: value}
    each: paired on seed where both ran the same seeds, else Welch's), and its Holm-free p."""
    comparison = compare("first", first, "second", second)
    return {"test": comparison.test, "difference": comparison.difference, "ci_low": comparison.ci_low,
            "ci_high": comparison.ci_high, "p_value": comparison.p_value,
            "minimum_detectable": comparison.minimum_detectable}


def summarize(cells: list[Cell], shown: list[str] | None = None) -> dict:
    """Per batch size (ascending) and variant: each of MEASURES over the seeds that did not
    diverge, and how many did. Then, among the variants with two such seeds or more and none
    diverged (as the sweep does: a diverged run scores chance, which no t-test models),
    comparisons (paired on seed where the variants ran the same seeds) of test accuracy with Holm's correction over the pairs at that batch size, and
    each BN variant's gain over `none` split into fitting (train accuracy) and the gap. Holm's
    family is every variant at the batch size (statistics.FAMILY); the summary keeps the `shown`
    variants (all if None) and the pairs among them."""
    summary: dict = {}
    for size in sorted({cell.run["train"]["batch_size"] for cell in cells}):
        here = [cell for cell in cells if cell.run["train"]["batch_size"] == size]
        variants = {bn: [cell for cell in here if cell.variant == bn] for bn in dict.fromkeys(c.variant for c in here)}
        kept_variants = [bn for bn in variants if shown is None or bn in shown]
        entry: dict = {}
        for bn, runs in ((bn, variants[bn]) for bn in kept_variants):
            kept = [values(cell) for cell in runs if not diverged(cell)]
            entry[bn] = {"runs": len(runs), "n": len(kept), "diverged": len(runs) - len(kept),
                         **{name: describe([value[name] for value in kept]) for name in MEASURES if kept}}
        comparable = {bn: {cell.seed: values(cell) for cell in runs} for bn, runs in variants.items()
                      if len(runs) >= 2 and not any(diverged(cell) for cell in runs)}
        if len(comparable) > 1:
            family = holm_pairs({bn: {seed: v["test_accuracy"] for seed, v in runs.items()}
                                 for bn, runs in comparable.items()})
            shown_pairs = {name: pair for name, pair in family.items()
                           if all(bn in kept_variants for bn in name.split("_vs_"))}
            if shown_pairs:
                entry["comparisons"] = shown_pairs
        if REFERENCE in comparable:
            entry["split"] = {bn: {name: _difference({seed: v[name] for seed, v in runs.items()},
                                                     {seed: v[name] for seed, v in comparable[REFERENCE].items()})
                                   for name in MEASURES}
                              for bn, runs in comparable.items() if bn != REFERENCE and bn in kept_variants}
        summary[str(size)] = entry
    return summary


def points(entry: dict) -> str:
    """A difference of fractions in points, with its 95% CI."""
    return (f"{100 * entry['difference']:+.2f} [{100 * entry['ci_low']:+.2f}, "
            f"{100 * entry['ci_high']:+.2f}]")


def described(entry: dict, name: str) -> str:
    measure = entry.get(name)
    return "–" if measure is None else f"{measure['mean']:.4f} ± {measure['std']:.4f}"


def variant_table(summary: dict) -> list[str]:
    """Per batch size and variant: seeds (and how many diverged), train and test accuracy, gap."""
    lines = ["| batch size | bn | seeds | train accuracy | test accuracy | gap (train − test) |",
             "|---|---|---|---|---|---|"]
    for size, entry in summary.items():
        for bn, cell in entry.items():
            if bn not in ("comparisons", "split"):
                seeds = f"{cell['runs']}" + (f" ({cell['diverged']} diverged)" if cell["diverged"] else "")
                lines.append(f"| {size} | {bn} | {seeds} | " + " | ".join(described(cell, name) for name in MEASURES) + " |")
    return lines


def verdicts(summary: dict) -> list[str]:
    """Per batch size and BN variant: its test gain over `none` (Holm p over that batch size's
    pairs), and the parts from fitting and from the gap; or how many runs diverged."""
    lines = []
    for size, entry in summary.items():
        for bn in (name for name in entry if name not in (REFERENCE, "comparisons", "split")):
            if entry[bn]["diverged"] or entry.get(REFERENCE, {}).get("diverged"):
                lines.append(f"batch {size}, bn={bn}: {entry[bn]['diverged']} of {entry[bn]['runs']} runs "
                             f"diverged ({REFERENCE}: {entry.get(REFERENCE, {}).get('diverged', 0)}); not compared")
                continue
            split = entry.get("split", {}).get(bn)
            pair = oriented(entry.get("comparisons", {}), bn, REFERENCE)
            if split is None or pair is None:
                continue
            lines.append(f"batch {size}, {bn} − {REFERENCE}: test accuracy {points(split['test_accuracy'])} "
                         f"points (Holm p = {pair['p_holm']:.2g}); train accuracy (fitting) "
                         f"{points(split['train_accuracy'])}, gap {points(split['gap'])}")
    return lines


def render_markdown(summary: dict, batch: BatchParams, study: StudyParams, train, missing: list[str],
                    environments: list[str], minutes: float, mixed: list[str] = ()) -> str:
    lines = ["# The batch: BN's gain at other batch sizes, split into fitting and generalization", "",
             f"{train.optimizer} at {train.learning_rate:g} and {train.epochs} epochs (the study's), at each batch "
             f"size below; seeds {', '.join(map(str, batch.seeds))}, and at {train.batch_size} the study's cells "
             f"(seeds {', '.join(map(str, study.seeds))}). Train and test accuracy: the trained net scored "
             "on each whole split in inference mode (no dropout, BN's moving averages); gap = train − test. "
             "Mean ± std over the seeds that did not diverge (a non-finite training loss, or a last epoch's "
             "no lower than the first's: stages/analysis/cells.py, diverged_history).", ""]
    lines += incomplete(missing, PIPELINE)
    lines += variant_table(summary)
    compared = [(size, pair, c) for size, entry in summary.items() for pair, c in entry.get("comparisons", {}).items()]
    lines += ["", *pairs_table(compared, "batch size")]
    split = [(size, bn, parts) for size, entry in summary.items() for bn, parts in entry.get("split", {}).items()]
    if split:
        lines += ["", f"Each BN variant's gain over `{REFERENCE}`, split: test gain = train-accuracy gain (fitting) "
                  "− change of the gap (points, 95% CI of each, paired on seed where the variants ran the same "
                  "seeds; the CIs are not adjusted):", "",
                  "| batch size | bn | test gain | train-accuracy gain | gap change |", "|---|---|---|---|---|"]
        lines += [f"| {size} | {bn} | " + " | ".join(points(parts[name])
                                                  for name in ("test_accuracy", "train_accuracy", "gap"))
                  + " |" for size, bn, parts in split]
    lines += ["", "In short:", "", *(f"- {line}" for line in verdicts(summary)), "",
              "![accuracy vs batch size](figures/accuracy_vs_batch_size.png)", "",
              "## Where the cells ran", "", *(f"- {line}" for line in environments),
              f"- fit time of the cells (sum of their epochs): {minutes:.1f} min", "",
              *(line for entry in mixed for line in (entry, ""))]
    return "\n".join(lines)


# The report (grids/batch/dvc.yaml's `report` stage, stages/grid_report.py): the params it reads,
# and what it writes.
# The study's seeds and the train settings name the study's cells that stand at train.batch_size.
# model and train: what every record must have trained with (stages/analysis/binding.py).
PARAMS = ("batch", "study.variants", "study.seeds", "model", "train")


def report(params) -> str:
    from stages.analysis import consistency, figures
    from stages.analysis.cells import diverged, environments
    from stages.analysis.records import fit_seconds
    from stages.trainer.atomic import write_json, write_text

    cells, missing = collect(params.batch, params.study, params.train, Recipe.of(params.model, params.train))
    summary = summarize(cells, params.batch.variants)
    cells = [cell for cell in cells if cell.variant in params.batch.variants]  # The figure's.
    minutes = sum(fit_seconds(cell.run) for cell in cells) / 60
    arms: dict[str, dict[str, list]] = {}
    for cell in cells:
        arms.setdefault(f"batch {cell.run['train']['batch_size']}", {}).setdefault(cell.variant, []).append(cell)
    markdown = render_markdown(summary, params.batch, params.study, params.train, missing,
                               environments({"all": cells}), minutes, consistency.mixed_numerics(arms))
    write_json(OUT / "metrics.json", summary)
    figures.accuracy_vs_batch_size([{"bn": cell.variant, "batch_size": cell.run["train"]["batch_size"],
                                     "seed": cell.seed, "diverged": diverged(cell),
                                     **{key: value for key, value in values(cell).items() if key != "gap"}}
                                    for cell in cells], OUT / "figures" / "accuracy_vs_batch_size.png")
    write_text(OUT / "batch.md", markdown)
    return f"{len(cells)} cells ({len(missing)} not yet run) -> {OUT}/batch.md"
