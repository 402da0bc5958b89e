"""The learning-rate sweep's grid, its summary per (optimizer, learning rate), and its report."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

from stages.lib.study import compare_all, describe
from stages.lib.study_report import Cell, load_cell

RUNS = Path("reports/sweep/runs")
OPTIMIZERS = ("adam", "sgd")


def grid(sweep) -> Iterator[tuple[str, float, str, int]]:
    """(optimizer, learning rate, bn, seed) of every cell, in sweep/dvc.yaml's order."""
    for optimizer in OPTIMIZERS:
        part = getattr(sweep, optimizer)
        for bn in part.variants:
            for rate in part.learning_rates:
                for seed in sweep.seeds:
                    yield optimizer, rate, bn, seed


def record_path(optimizer: str, rate: float, bn: str, seed: int) -> Path:
    # As sweep/dvc.yaml names it: DVC writes a float as Python's str() does (0.0003, 1.0).
    return RUNS / f"{optimizer}-{rate}-{bn}-{seed}.json"


def collect(sweep) -> list[Cell]:
    return [load_cell(record_path(*key), "sweep/dvc.yaml") for key in grid(sweep)]


def summarize(runs: list[dict]) -> dict:
    """Per optimizer and learning rate, per variant: test accuracy over seeds and how many of
    them diverged; and, where every variant has two seeds or more, Welch comparisons (Holm)."""
    summary: dict = {}
    for optimizer, rate in sorted({(r["optimizer"], r["learning_rate"]) for r in runs}):
        here = [r for r in runs if (r["optimizer"], r["learning_rate"]) == (optimizer, rate)]
        accuracy = {bn: [r["test_accuracy"] for r in here if r["bn"] == bn]
                    for bn in dict.fromkeys(r["bn"] for r in here)}
        entry = {bn: {**describe(values), "diverged": sum(r["diverged"] for r in here if r["bn"] == bn)}
                 for bn, values in accuracy.items()}
        if all(len(values) >= 2 for values in accuracy.values()):
            entry["comparisons"] = {f"{c.first}_vs_{c.second}": {
                "difference": c.difference, "ci_low": c.ci_low, "ci_high": c.ci_high,
                "p_holm": c.p_holm} for c in compare_all(accuracy)}
        summary.setdefault(optimizer, {})[str(rate)] = entry
    return summary


def render_markdown(summary: dict, environment: dict, minutes: float) -> str:
    lines = ["# The learning-rate sweep: where does BN's advantage appear?", "",
             "Test accuracy after the sweep's epochs, mean ± std over seeds; "
             "(k diverged) counts runs whose loss became non-finite or ended above where it began.", ""]
    for optimizer, rates in summary.items():
        variants = list(dict.fromkeys(bn for entry in rates.values() for bn in entry if bn != "comparisons"))
        lines += [f"## {optimizer}", "", "| learning rate | " + " | ".join(variants) + " |",
                  "|---|" + "---|" * len(variants)]
        for rate, entry in rates.items():
            cells = [f"{entry[bn]['mean']:.4f} ± {entry[bn]['std']:.4f}"
                     + (f" ({entry[bn]['diverged']} diverged)" if entry[bn]["diverged"] else "")
                     if bn in entry else "–" for bn in variants]
            lines.append(f"| {rate} | " + " | ".join(cells) + " |")
        lines.append("")
    lines += ["![accuracy vs learning rate](figures/accuracy_vs_learning_rate.png)", "",
              "![effective step vs learning rate](figures/effective_step_vs_learning_rate.png)", "",
              "![beta along the update](figures/update_beta_over_training.png)", "",
              "## Environment", "", *(f"- {key}: {value}" for key, value in environment.items()),
              f"- total training time of the cells: {minutes:.1f} min", ""]
    return "\n".join(lines)
