"""Reproducibility (grids/rerun): reference cells trained again, beside their original records.

Same params, seed and code path as a placement-grid cell; what may differ is the machine, the
libraries and the code version, each of which a record names (environment, code digests, numerics
fingerprint). The report states how far each rerun's test accuracy lands from its original, and
the first epoch's training loss from its original's: where the numerics differ, the first epoch
already differs in its last digits, and ten epochs carry that to tenths of a point.
"""

from __future__ import annotations

from pathlib import Path

from stages.analysis.binding import Recipe
from stages.analysis.cells import Cell, load_cell
from stages.grids.placement import OUT as PLACEMENT
from stages.grids.study import RUNS as STUDY_RUNS

OUT = Path("reports/rerun")
RUNS = OUT / "runs"
PIPELINE = "grids/rerun/dvc.yaml"
PARAMS = ("rerun", "study.seeds", "model", "train")


def original(bn: str, seed: int, study_seeds: list[int], recipe: Recipe) -> Cell:
    """The record the rerun repeats: the study's for its seeds, else the placement grid's."""
    if seed in study_seeds:
        return load_cell(STUDY_RUNS / f"{bn}-{seed}.json", "grids/study/dvc.yaml", recipe, bn=bn, seed=seed)
    return load_cell(PLACEMENT / "runs" / f"{bn}-{seed}.json", "grids/placement/dvc.yaml", recipe, bn=bn, seed=seed)


def numerics(cell: Cell) -> str:
    environment = cell.run.get("environment", {})
    features = ", ".join(environment.get("cpu_features", [])) or "instruction sets not recorded"
    fingerprint = environment.get("numerics_fingerprint", "no fingerprint (older record)")
    return (f"{environment.get('device', '?')} [{features}], TensorFlow {environment.get('tensorflow', '?')}, "
            f"code {environment.get('git_commit', '?')[:12] or '?'}, {fingerprint}")


def summarize(pairs: list[tuple[Cell, Cell]]) -> dict:
    rows = []
    for first, again in pairs:
        rows.append({"bn": first.variant, "seed": first.seed,
                     "original": first.metrics["test"]["accuracy"], "rerun": again.metrics["test"]["accuracy"],
                     "difference": again.metrics["test"]["accuracy"] - first.metrics["test"]["accuracy"],
                     "epoch_1_loss": [float(first.history["fit/loss"][0]), float(again.history["fit/loss"][0])],
                     "original_numerics": numerics(first), "rerun_numerics": numerics(again)})
    largest = max((abs(row["difference"]) for row in rows), default=None)
    return {"cells": rows, "largest_difference": largest}


def render_markdown(summary: dict, missing: list[str]) -> str:
    lines = ["# Reproducibility: reference cells trained again", "",
             "Each row is one cell of the placement grid (same params, seed and training code path) "
             "trained again, and its original record. Points are percentage points of test accuracy.", "",
             "| cell | original | rerun | rerun − original | epoch-1 training loss (original, rerun) |",
             "|---|---|---|---|---|"]
    for row in summary["cells"]:
        lines.append(f"| {row['bn']}, seed {row['seed']} | {row['original']:.4f} | {row['rerun']:.4f} | "
                     f"{row['difference'] * 100:+.2f} | {row['epoch_1_loss'][0]:.6f}, {row['epoch_1_loss'][1]:.6f} |")
    if summary["largest_difference"] is not None:
        lines += ["", f"Largest distance from an original: {summary['largest_difference'] * 100:.2f} points, "
                  f"over {len(summary['cells'])} reruns whose machine or code version (below) differ from "
                  "their originals' while params, seed and training code path are the same: a sample of how "
                  "far those differences alone move one cell, not a bound.", ""]
    lines += ["## Where each ran", ""]
    for row in summary["cells"]:
        lines += [f"- {row['bn']}, seed {row['seed']}: original on {row['original_numerics']}; "
                  f"rerun on {row['rerun_numerics']}"]
    if missing:
        lines += ["", f"**Not yet run** (`dvc repro {PIPELINE}`): " + ", ".join(f"`{name}`" for name in missing)]
    return "\n".join(lines) + "\n"


def report(params) -> str:
    from stages.trainer.atomic import write_json, write_text

    pairs, missing, recipe = [], [], Recipe.of(params.model, params.train)
    for bn in params.rerun.variants:
        for seed in params.rerun.seeds:
            path = RUNS / f"{bn}-{seed}.json"
            if not path.is_file():
                missing.append(f"{PIPELINE}:cell@{bn}-{seed}")
                continue
            pairs.append((original(bn, seed, params.study.seeds, recipe),
                          load_cell(path, PIPELINE, recipe, bn=bn, seed=seed)))
    summary = summarize(pairs)
    write_json(OUT / "metrics.json", summary)
    write_text(OUT / "rerun.md", render_markdown(summary, missing))
    return f"{len(pairs)} reruns ({len(missing)} not yet run) -> {OUT}/rerun.md"
