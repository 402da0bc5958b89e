"""Scale invariance, watched: how each variant's weight norms and effective steps evolve.

With BatchNorm right after a convolution, the loss does not change when that convolution's kernel
is scaled (Hoffer et al. 2018; Li & Arora 2019). An update of a given size then matters in
proportion to 1/||w||: as the kernel grows, its effective step ||Δ_l|| / ||w_l|| shrinks, which acts
as a learning rate that decays by itself. Without BN nothing ties the loss to the kernel's scale.
The norms grid's cells record ||w_l|| for every layer at every probe step (grids/norms/dvc.yaml); this
module reduces them to the convolution kernels' norm and effective step over training, per variant
and learning rate, and writes the report's table.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from stages.trainer.errors import InputFileError
from stages.grids.sections import RateGridParams
from stages.analysis.records import fit_seconds
from stages.analysis.binding import Recipe
from stages.analysis.cells import (Cell, accuracy_text, diverged, incomplete, load_grid, rate_grid_cells, rate_record,
                                    trained_description)

OUT = Path("reports/norms")  # The report and its records (runs/), outside the trainer package.
RUNS = OUT / "runs"
PIPELINE = "grids/norms/dvc.yaml"
CONV_PREFIX = "conv"  # model.conv_block names the convolutions conv1, conv2, ...


def record_path(optimizer: str, rate: float, bn: str, seed: int) -> Path:
    return rate_record(RUNS, optimizer, rate, bn, seed)


def collect(norms: RateGridParams, recipe: Recipe) -> tuple[list[Cell], list[str]]:
    """The cells that have run, and the DVC stages of those that have not (yet)."""
    cells, missing = load_grid(rate_grid_cells(norms, RUNS, PIPELINE), "the norms grid", recipe)
    for cell in cells:
        if not cell.landscape or not any(name.startswith("weight_norm/") for name in cell.landscape):
            path = record_path(norms.optimizer, cell.run["train"]["learning_rate"], cell.variant, cell.seed)
            raise InputFileError(f"{path}: has no weight_norm columns in its probes (not a norms "
                                 f"cell's record); delete it and run `dvc repro {PIPELINE}` again")
    return cells, missing


def trajectories(cell: Cell) -> dict[str, np.ndarray]:
    """Per probe: the convolution kernels' joint norm sqrt(Σ_l ||w_l||²) and effective step
    sqrt(Σ_l ||Δ_l||²) / that norm (with ||Δ_l|| = effective_step_l × ||w_l||), and the same for the
    dense head (`dense` and `probabilities`)."""
    probes = cell.landscape
    layers = [name.split("/", 1)[1] for name in probes if name.startswith("weight_norm/")]
    groups = {"conv": [layer for layer in layers if layer.startswith(CONV_PREFIX)],
              "head": [layer for layer in layers if layer in ("dense", "probabilities")]}
    result = {"step": np.asarray(probes["step"], dtype=float)}
    for group, members in groups.items():
        weights = np.stack([np.asarray(probes[f"weight_norm/{layer}"], dtype=float) for layer in members])
        updates = weights * np.stack([np.asarray(probes[f"effective_step/{layer}"], dtype=float)
                                      for layer in members])
        norm = np.sqrt((weights ** 2).sum(axis=0))
        result[f"{group}_norm"] = norm
        result[f"{group}_effective_step"] = np.sqrt((updates ** 2).sum(axis=0)) / norm
    return result


def summarize_cell(cell: Cell) -> dict:
    """One cell's numbers: the norms at the first probe (before any update) and at the end, their
    ratio, and the effective step at the first probe and over the last epoch (median)."""
    series = trajectories(cell)
    # The probes of the last epoch: those past (epochs - 1) / epochs of the last probed step (the
    # record keeps no steps per epoch; probes every 50 of 2,000 steps give steps 1,800 to 1,950).
    epochs = cell.run["train"]["epochs"]
    window = series["step"] > series["step"][-1] * (epochs - 1) / epochs if epochs > 1 \
        else np.ones(len(series["step"]), dtype=bool)
    summary = {"test_accuracy": cell.metrics["test"]["accuracy"],
               "train_accuracy": cell.metrics["train"]["accuracy"], "diverged": diverged(cell)}
    for group in ("conv", "head"):
        norm, step = series[f"{group}_norm"], series[f"{group}_effective_step"]
        end_norm = float(np.median(norm[window]))
        summary[group] = {"norm_start": _rounded(norm[0]), "norm_end": _rounded(end_norm),
                          "norm_growth": _rounded(end_norm / norm[0]),
                          "effective_step_start": _rounded(step[0]),
                          "effective_step_end": _rounded(float(np.median(step[window])))}
    return summary


def summarize(cells: list[Cell]) -> dict:
    """{learning rate: {variant: {seed: summarize_cell}}}, rates and variants in the grid's order."""
    summary: dict = {}
    for cell in cells:
        rate = f"{cell.run['train']['learning_rate']:g}"
        summary.setdefault(rate, {}).setdefault(cell.variant, {})[str(cell.seed)] = summarize_cell(cell)
    return summary


def trained_accuracy(entry: dict) -> dict:
    """Test accuracy over one variant's seeds at one rate (cells.trained_description): diverged
    runs counted, not averaged."""
    return trained_description([seed["test_accuracy"] for seed in entry.values() if not seed["diverged"]],
                               sum(seed["diverged"] for seed in entry.values()))


def mean_over_seeds(entry: dict, group: str, key: str) -> float | None:
    values = [seed[group][key] for seed in entry.values() if not seed["diverged"] and seed[group][key] is not None]
    return float(np.mean(values)) if values else None


def verdicts(summary: dict, optimizer: str, reference: str = "none") -> list[str]:
    """One sentence per learning rate and BN variant: how its kernels' norm growth and end-of-training
    effective step compare with `reference` (no BN), as ratios."""
    lines = []
    for rate, variants in summary.items():
        if reference not in variants or mean_over_seeds(variants[reference], "conv", "norm_growth") is None:
            continue
        base_growth = mean_over_seeds(variants[reference], "conv", "norm_growth")
        base_step = mean_over_seeds(variants[reference], "conv", "effective_step_end")
        for variant, entry in variants.items():
            growth = mean_over_seeds(entry, "conv", "norm_growth")
            step = mean_over_seeds(entry, "conv", "effective_step_end")
            if variant == reference or growth is None:
                continue
            lines.append(f"{optimizer} {rate}, bn={variant}: conv kernels ×{growth:.2f} over training "
                         f"(bn={reference}: ×{base_growth:.2f}); effective step in the last epoch "
                         f"{step:.3g} ({step / base_step:.2f}× bn={reference}'s {base_step:.3g})")
    return lines


def render_markdown(summary: dict, norms: RateGridParams, cells: list[Cell], missing: list[str],
                    environments: list[str]) -> str:
    seeds = sorted({cell.seed for cell in cells})
    lines = ["# Scale invariance, watched: weight norms and effective steps", "",
             f"Every variant trained with {norms.optimizer} at each learning rate below (seed"
             f"{'s' if len(seeds) > 1 else ''} {', '.join(map(str, seeds))}), with each layer's weight "
             "norm ‖w_l‖ recorded at every landscape probe. *conv*: the three convolutions' kernels "
             "together, sqrt(Σ_l ‖w_l‖²) (with their biases in `none` and `rescaled`, which have "
             "them); *head*: the two dense layers. Effective step: ‖Δ‖ / ‖w‖ of the update Δ the "
             "optimizer applied. *start*: at step 0, before any update; *end*: median over the last "
             "epoch's probes. Mean over seeds; diverged runs are left out.", ""]
    lines += incomplete(missing, PIPELINE)
    for rate, variants in summary.items():
        lines += [f"## {norms.optimizer}, learning rate {rate}", "",
                  "| bn | test accuracy | conv ‖w‖ start → end | growth | conv effective step start → end "
                  "| head ‖w‖ growth | head effective step end | diverged |",
                  "|---|---|---|---|---|---|---|---|"]
        for variant, entry in variants.items():
            def mean(group, key, digits=3):
                value = mean_over_seeds(entry, group, key)
                return "–" if value is None else f"{value:.{digits}g}"
            lines.append(f"| {variant} | {accuracy_text(trained_accuracy(entry))} | {mean('conv', 'norm_start')} → "
                         f"{mean('conv', 'norm_end')} | ×{mean('conv', 'norm_growth')} | "
                         f"{mean('conv', 'effective_step_start')} → {mean('conv', 'effective_step_end')} | "
                         f"×{mean('head', 'norm_growth')} | {mean('head', 'effective_step_end')} | "
                         f"{sum(seed['diverged'] for seed in entry.values())} of {len(entry)} |")
        lines.append("")
    lines += ["Against no BN (ratios of the means):", "",
              *(f"- {line}" for line in verdicts(summary, norms.optimizer)), "",
              "![weight norms and effective steps over training](figures/weight_norms.png)", "",
              "## Where the cells ran", "", *(f"- {line}" for line in environments),
              f"- fit time of the cells (sum of their epochs, probes included): "
              f"{sum(fit_seconds(cell.run) for cell in cells) / 60:.1f} min", ""]
    return "\n".join(lines)


def _rounded(value: float) -> float | None:
    value = float(value)
    return float(f"{value:.6g}") if math.isfinite(value) else None


# The report (grids/norms/dvc.yaml's `report` stage, stages/grid_report.py): the params it reads,
# and what it writes.
PARAMS = ("norms", "model", "train")  # model and train: what every record must have trained with.


def report(params) -> str:
    from stages.analysis import figures
    from stages.analysis.cells import diverged
    from stages.analysis.cells import environments
    from stages.trainer.atomic import write_json, write_text

    cells, missing = collect(params.norms, Recipe.of(params.model, params.train))
    summary = summarize(cells)
    runs = [{"bn": cell.variant, "learning_rate": cell.run["train"]["learning_rate"], "seed": cell.seed,
             "diverged": diverged(cell), **trajectories(cell)} for cell in cells]
    markdown = render_markdown(summary, params.norms, cells, missing, environments({"all": cells}))
    write_json(OUT / "metrics.json", summary)
    figures.weight_norms(runs, OUT / "figures" / "weight_norms.png", params.norms.optimizer)
    write_text(OUT / "norms.md", markdown)
    return f"{len(cells)} cells ({len(missing)} not yet run) -> {OUT}/norms.md"
