"""The BN study (grids/study): every variant x every seed, one cell each, landscape probes on.

Its report reads the record of every (variant, seed) cell listed in params.yaml's `study` and
writes, under reports/study/: metrics.json (the study's own numbers: kept out of `dvc metrics show`
and `dvc exp show`, which list the main run's), study.md and index.html (self-contained, no network)
and figures/.
"""

import dataclasses
from pathlib import Path

import numpy as np

from stages.analysis import consistency, figures
from stages.analysis.binding import Recipe
from stages.analysis.cells import collect, diverged, render_html, render_markdown, setting_text, summarize
from stages.trainer.atomic import write_json, write_text

STUDY = Path("reports/study")
RUNS = STUDY / "runs"  # One JSON record per (variant, seed) cell.
PARAMS = ("study", "model", "train")  # model and train: what every record must have trained with.
MEASURES = {  # name in the table -> how to read it from a cell's metrics.json
    "test_accuracy": ("test", "accuracy"),
    "test_loss": ("test", "loss"),
    "train_accuracy": ("train", "accuracy"),
}


def report(params) -> str:
    study = params.study
    cells = collect(RUNS, study.variants, study.seeds, Recipe.of(params.model, params.train))
    summary, comparisons = summarize(cells, MEASURES)
    # Every record was checked whole by collect, so nothing below can fail on one after a write.
    write_json(STUDY / "metrics.json", summary)

    out = STUDY / "figures"
    setting = setting_text(dataclasses.asdict(params.train))
    figures.study_curves({v: [c.history for c in cells[v]] for v in cells}, out / "curves.png", setting)
    figures.per_seed_points({v: [c.metrics["test"]["accuracy"] for c in cells[v]] for v in cells},
                            out / "test_accuracy.png", "test accuracy", "final test accuracy per seed")
    figures.per_seed_points({v: [c.metrics["train"]["accuracy"] - c.metrics["test"]["accuracy"]
                                 for c in cells[v]] for v in cells},
                            out / "generalization_gap.png", "train - test accuracy",
                            "generalization gap per seed")
    # Every study cell probes the landscape; cells trained without probes leave it out entirely.
    with_landscape = all(cell.landscape is not None for runs in cells.values() for cell in runs)
    if with_landscape:
        # Trained runs only: a diverged run's probes measure a net that no longer learns.
        trained = {v: [c for c in runs if not diverged(c)] for v, runs in cells.items()}
        figures.landscape_by_variant({v: mean_columns([c.landscape for c in runs]) for v, runs in trained.items() if runs},
                                     out / "landscape.png", setting)
    markdown = render_markdown(summary, comparisons, cells, with_landscape, consistency.mixed_numerics({"": cells}))
    write_text(STUDY / "study.md", markdown)
    write_text(STUDY / "index.html", render_html(markdown, STUDY))
    return "; ".join(comparison.verdict() for comparison in comparisons)


def mean_columns(runs):
    """Average landscape columns over seeds, step by step (all seeds probe the same steps)."""
    return {name: np.mean([run[name] for run in runs], axis=0) for name in runs[0]}

