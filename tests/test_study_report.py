"""The study's summary, verdicts and report, against numbers worked out by hand from made-up cells."""

import base64
import json
from pathlib import Path

import numpy as np
import pytest

from locks import recipe, write_bound
from stages.grids.sections import read_all
from stages.grids.study import RUNS, mean_columns
from stages.trainer.errors import InputFileError
from stages.analysis.statistics import Comparison, paired, welch
from stages.analysis.cells import Cell, collect, render_html, render_markdown, summarize

ROOT = Path(__file__).resolve().parents[1]
MEASURES = {"test_accuracy": ("test", "accuracy"), "test_loss": ("test", "loss"),
            "train_accuracy": ("train", "accuracy")}
# Per variant, over seeds 0, 1, 2: test accuracy, test loss, train accuracy, train seconds, beta.
RESULTS = {
    "before": ([0.70, 0.74, 0.72], [0.90, 0.80, 0.85], [0.80, 0.86, 0.83], [60, 90, 30], [300, 400, 350]),
    "after": ([0.71, 0.75, 0.73], [0.80, 0.80, 0.80], [0.90, 0.90, 0.90], [60, 60, 60], [1, 2, 3]),
    "none": ([0.60, 0.62, 0.61], [1.20, 1.00, 1.10], [0.70, 0.70, 0.70], [30, 30, 30], [4, 5, 6]),
}
ENVIRONMENT = {"device": "CPU: test <cpu> (2 cores)", "tensorflow": "9.9"}


def make_cell(variant: str, seed: int, probed: bool = True) -> Cell:
    """One cell as `collect` would return it; the one place that knows Cell's fields."""
    test_accuracy, test_loss, train_accuracy, seconds, beta = (column[seed] for column in RESULTS[variant])
    landscape = {"beta_median": beta, "loss_range_median": 0.02 + 0.005 * seed,
                 "grad_change_max_median": 5.0 + seed} if probed else {}
    history = {"val/accuracy": np.array([0.5, test_accuracy]), "fit/loss": np.array([2.0, 1.0])}
    run = {"bn": variant, "seed": seed, "train": {"epochs": 2}, "epoch_seconds": [1.0, 2.0],
           "history": {"epoch_seconds": [1.0, 2.0]}, "fit_seconds": seconds,
           "total_seconds": seconds + 5,
           "environment": ENVIRONMENT}
    return Cell(variant, seed, {"test": {"accuracy": test_accuracy, "loss": test_loss},
                                "train": {"accuracy": train_accuracy}},
                history, None, run, landscape)


def cells(probed: bool = True) -> dict[str, list[Cell]]:
    return {variant: [make_cell(variant, seed, probed) for seed in range(3)] for variant in RESULTS}


def moments(description: dict) -> dict:
    return {key: description[key] for key in ("mean", "std", "min", "max", "n")}


def test_summary_describes_each_measure_over_seeds_and_compares_test_accuracy():
    summary, comparisons = summarize(cells(), MEASURES)
    # before: test accuracy 0.70, 0.74, 0.72 -> mean 0.72, deviations -0.02, +0.02, 0 -> std 0.02.
    assert moments(summary["before"]["test_accuracy"]) == pytest.approx(
        {"mean": 0.72, "std": 0.02, "min": 0.70, "max": 0.74, "n": 3})
    assert moments(summary["before"]["test_loss"]) == pytest.approx(
        {"mean": 0.85, "std": 0.05, "min": 0.80, "max": 0.90, "n": 3})
    assert moments(summary["none"]["train_accuracy"]) == pytest.approx(
        {"mean": 0.70, "std": 0.0, "min": 0.70, "max": 0.70, "n": 3})
    # t(0.975, 2) = 4.3027 (any t table): 350 +- 4.3027 * 50 / sqrt(3).
    assert summary["before"]["beta_median"] == pytest.approx(
        {"mean": 350, "std": 50, "min": 300, "max": 400, "n": 3, "ci_low": 225.79, "ci_high": 474.21}, abs=0.01)
    assert summary["before"]["fit_seconds"]["mean"] == pytest.approx(60)  # Not total_seconds.
    # Every pair, in the order given, on test accuracy (train accuracy would give +13 and +20 points).
    assert [(c.first, c.second) for c in comparisons] == [("before", "after"), ("before", "none"),
                                                          ("after", "none")]
    assert [c.difference for c in comparisons] == pytest.approx([-0.01, 0.11, 0.12])
    # Holm: the smallest of the 3 p-values times 3, the next times 2 but never below the first.
    p_values = [c.p_value for c in comparisons]
    # Here before − after is exact (p = 0, first), after − none next (times 2), and before − none
    # last (times 1, but never below the one before it).
    assert p_values[0] == 0 and p_values[2] < p_values[1] < 2 * p_values[2]
    assert [c.p_holm for c in comparisons] == pytest.approx([0, 2 * p_values[2], 2 * p_values[2]])
    # Every variant ran seeds 0-2: paired on seed, Welch's beside.
    expected = paired("before", RESULTS["before"][0], "none", RESULTS["none"][0])
    independent = welch("before", RESULTS["before"][0], "none", RESULTS["none"][0])
    pair = summary["comparisons"]["before_vs_none"]
    assert {key: pair[key] for key in ("difference", "ci_low", "ci_high", "p_value", "welch_p")} == pytest.approx(
        {"difference": 0.11, "ci_low": expected.ci_low, "ci_high": expected.ci_high,
         "p_value": expected.p_value, "welch_p": independent.p_value})
    assert pair["test"] == "paired" and pair["ci_high"] - pair["ci_low"] < independent.ci_high - independent.ci_low


def test_markdown_tables_verdicts_and_environment():
    all_cells = cells()
    summary, comparisons = summarize(all_cells, MEASURES)
    markdown = render_markdown(summary, comparisons, all_cells, with_landscape=True)
    lines = markdown.splitlines()
    assert "3 variants × 3 seeds, 2 epochs each. Cells: mean ± std [min, max] over seeds." in lines
    assert ("| before | 3 | 0.7200 ± 0.0200 [0.7000, 0.7400] | 0.8500 ± 0.0500 [0.8000, 0.9000] | "
            "0.8300 ± 0.0300 [0.8000, 0.8600] |") in lines
    # Minimum detectable: 5.667 sds of the per-seed difference (1 point) at 3 pairs and alpha 0.05/3
    # (three pairs in the family: tests/test_study.py checks that root's power).
    assert ("| before − none | +11.00 | [+8.52, +13.48] | 0.00274 | 0.00461 | 5.67 | 120 | paired | "
            "[+6.84, +15.16] | 0.00366 |") in lines
    assert ("- before vs none: before is higher than none (before − none +11.00 points, paired 95% CI "
            "[+8.52, +13.48], p = 0.00274, Holm-adjusted p = 0.00461)") in lines
    # after − before is 1 point at every seed: paired, that difference is exact.
    assert ("- before vs after: after is higher than before (after − before +1.00 points, paired 95% CI "
            "[+1.00, +1.00], p = 0, Holm-adjusted p = 0)") in lines
    # Beta: 350 [225.79, 474.21]; loss range 0.025 +- 4.3027 * 0.005 / sqrt(3); gradient change 6 +- 2.484.
    assert "| before | 350.00 [225.79, 474.21] | 0.0250 [0.0126, 0.0374] | 6.000 [3.516, 8.484] |" in lines
    assert "![landscape](figures/landscape.png)" in lines
    # 60+90+30 + 3*60 + 3*30 = 450 seconds of training.
    assert "- fit time of the cells (sum of their epochs, probes included): 7.5 min" in lines
    # Where every cell ran, grouped by machine (not one cell's environment for all).
    assert any(line.startswith("- 9 cells: CPU: test <cpu> (2 cores) [instruction sets not recorded]")
               for line in lines), lines


def test_without_probes_there_is_no_landscape_summary_or_section():
    unprobed = cells(probed=False)
    summary, comparisons = summarize(unprobed, MEASURES)
    assert "beta_median" not in summary["before"]
    markdown = render_markdown(summary, comparisons, unprobed, with_landscape=False)
    assert "β" not in markdown and "landscape" not in markdown
    assert "![test accuracy per seed](figures/test_accuracy.png)" in markdown.splitlines()


def test_verdict_names_the_higher_variant_whichever_comes_first():
    lower_first = Comparison("after", "before", -0.1, -0.12, -0.08, 0.001, 0.002, (5, 5), 0.01, 7)
    # The difference as the words read it (higher − lower): a + sign, whichever variant is first.
    assert lower_first.verdict() == ("after vs before: before is higher than after (before − after +10.00 "
                                     "points, welch 95% CI [+8.00, +12.00], p = 0.001, Holm-adjusted p = 0.002)")


def test_html_escapes_text_and_inlines_images(tmp_path):
    (tmp_path / "figures").mkdir()
    png = b"\x89PNG\r\n\x1a\n made-up bytes"
    (tmp_path / "figures" / "curves.png").write_bytes(png)
    markdown = "\n".join(["# A <b> & c", "", "| bn | a<b |", "|---|---|", "| x & y | 1 |", "",
                          "- before vs <none>", "", '![curves "quoted"](figures/curves.png)'])
    page = render_html(markdown, tmp_path)
    assert "<h1>A &lt;b&gt; &amp; c</h1>" in page
    assert "<table><tr><th>bn</th><th>a&lt;b</th></tr><tr><td>x &amp; y</td><td>1</td></tr></table>" in page
    assert "<p>before vs &lt;none&gt;</p>" in page
    encoded = base64.b64encode(png).decode()
    assert f'<img alt="curves &quot;quoted&quot;" src="data:image/png;base64,{encoded}">' in page
    assert "<none>" not in page and "<b>" not in page


def test_a_missing_cell_names_itself_and_the_fix(tmp_path):
    with pytest.raises(InputFileError, match=r"before-1.json: missing: .*run `dvc repro grids/study/dvc.yaml`"):
        collect(tmp_path, ["before"], [1], recipe(read_all()))


def test_landscape_columns_are_averaged_over_seeds_step_by_step():
    seeds = [{"step": np.array([0, 50]), "beta": np.array([1.0, 4.0])},
             {"step": np.array([0, 50]), "beta": np.array([3.0, 8.0])}]
    averaged = mean_columns(seeds)
    assert averaged["step"].tolist() == [0, 50] and averaged["beta"].tolist() == [2.0, 6.0]


def test_a_landscape_table_without_rows_leaves_out_its_lead_in():
    from stages.analysis.statistics import describe
    from stages.analysis.cells import landscape_tables

    lines = landscape_tables({"before": {"beta_median": describe([10.0, 12.0])}}, ["before"])
    assert any(line.startswith("Along −g at η") for line in lines)
    assert not any(line.startswith("Along the update Δ") for line in lines)
    assert "| before | 11.00 [" in "\n".join(lines)


def test_compare_refuses_a_record_copied_over_another_cell(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    runs, settings = RUNS, recipe(read_all(ROOT / "params.yaml"))
    record = {"bn": "before", "seed": 0, "model": {}, "train": {"optimizer": "adam", "learning_rate": 0.001},
              "metrics": {"test": {"accuracy": 0.76, "loss": 0.7}, "train": {"accuracy": 0.83, "loss": 0.5}},
              "history": {"fit/loss": [1.0, 0.6], "val/accuracy": [0.7, 0.76]}, "fit_seconds": 1.0, "probes": None}
    for seed in (0, 1):
        write_bound(runs / f"before-{seed}.json", {**record, "seed": seed})
        write_bound(runs / f"after-{seed}.json", {**record, "bn": "after", "seed": seed})
    assert [c.seed for c in collect(runs, ["before", "after"], [0, 1], settings)["after"]] == [0, 1]
    (runs / "after-0.json").write_text((runs / "before-0.json").read_text())
    with pytest.raises(InputFileError, match=r"after-0.json: records bn=before, not the bn=after its name "
                                             r"says; `git checkout -- reports/study/runs/after-0.json` puts back"):
        collect(runs, ["before", "after"], [0, 1], settings)
