"""The pieces every grid report's tables share (stages/analysis/cells.py): a pair read the other way
round, a table cell of accuracies with diverged runs, and the rule that a variant with a diverged
run is counted, never compared."""

import numpy as np
import pytest

from stages.analysis.cells import Cell, accuracy_text, oriented, summarize, trained_description
from stages.grids.study import MEASURES


def test_a_pair_read_the_other_way_round_flips_its_difference_and_its_interval():
    pair = {"difference": 0.02, "ci_low": 0.005, "ci_high": 0.04, "p_holm": 0.01, "sizes": [5, 5]}
    comparisons = {"before_vs_none": pair}
    assert oriented(comparisons, "before", "none") is pair
    assert oriented(comparisons, "none", "before") == {**pair, "difference": -0.02, "ci_low": -0.04, "ci_high": -0.005}
    assert oriented(comparisons, "after", "none") is None


def test_an_accuracy_cell_gives_n_of_the_trained_runs_and_counts_the_diverged_ones():
    entry = trained_description([0.70, 0.72, 0.74], 2)
    assert (entry["n"], entry["runs"], entry["diverged"]) == (3, 5, 2)
    assert accuracy_text(entry) == "0.7200 ± 0.0200 (n=3), 2 of 5 diverged"
    assert accuracy_text(trained_description([0.7], 1)) == "0.7000 (one run), 1 of 2 diverged"
    assert accuracy_text(trained_description([], 2)) == "2 of 2 diverged"


def cell(variant: str, seed: int, accuracy: float, diverged: bool = False) -> Cell:
    losses = [2.0, float("nan") if diverged else 1.0]
    return Cell(variant, seed, {"test": {"accuracy": accuracy, "loss": 1.0}, "train": {"accuracy": accuracy}},
                {"fit/loss": np.array(losses)}, None,
                {"fit_seconds": 1.0, "history": {"fit/loss": losses}, "environment": {}}, {})


def test_a_study_variant_with_a_diverged_run_is_counted_not_compared():
    cells = {"before": [cell("before", seed, 0.70 + seed / 100) for seed in range(3)],
             "none": [cell("none", seed, 0.60 + seed / 90) for seed in range(3)],
             "after": [cell("after", 0, 0.71), cell("after", 1, 0.74), cell("after", 2, 0.10, diverged=True)]}
    summary, comparisons = summarize(cells, MEASURES)
    assert [(c.first, c.second) for c in comparisons] == [("before", "none")]
    assert list(summary["comparisons"]) == ["before_vs_none"]
    after = summary["after"]["test_accuracy"]
    assert (after["n"], after["runs"], after["diverged"], after["mean"]) == (2, 3, 1, pytest.approx(0.725))
