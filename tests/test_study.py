"""The BN study: its statistics against known answers, and the cached matrix through real DVC."""

import json
import math
from pathlib import Path

import matplotlib.image
import numpy as np
import pytest
from scipy import stats

from test_pipeline import stages_run
from stages.analysis.statistics import (compare_all, describe, holm, minimum_detectable_difference,
                                       paired_minimum_detectable, power, seeds_to_detect, welch)
from stages.analysis.cells import Cell, figure_run, render_markdown, summarize

ROOT = Path(__file__).resolve().parents[1]


def test_identical_samples_have_no_detectable_difference():
    result = welch("a", [0.75, 0.76, 0.77], "b", [0.75, 0.76, 0.77])
    assert result.difference == 0.0 and result.ci_low < 0 < result.ci_high
    assert result.p_value == pytest.approx(1.0)
    assert "no detectable difference" in result.verdict()


def test_constant_samples_give_an_exact_difference():
    same = welch("a", [0.7, 0.7], "b", [0.7, 0.7])
    assert (same.difference, same.p_value, same.detectable) == (0.0, 1.0, False)
    apart = welch("a", [0.8, 0.8], "b", [0.7, 0.7])
    assert apart.p_value == 0.0 and apart.detectable


def test_well_separated_samples_are_detected():
    result = welch("before", [0.80, 0.81, 0.82, 0.80, 0.81], "none", [0.70, 0.71, 0.70, 0.72, 0.71])
    assert result.p_value < 1e-6 and result.ci_low > 0
    assert result.verdict().startswith("before vs none: before is higher than none (before − none +10.00 points")


def test_interval_matches_a_hand_computation():
    a, b = [1.0, 2.0, 3.0, 4.0], [2.0, 4.0, 6.0]
    # By hand: means 2.5 and 4; variances 5/3 and 4; se^2 = 5/12 + 4/3 = 7/4.
    se = math.sqrt(7 / 4)
    dof = (7 / 4) ** 2 / ((5 / 12) ** 2 / 3 + (4 / 3) ** 2 / 2)
    t = stats.t.ppf(0.975, dof)
    result = welch("a", a, "b", b)
    assert result.difference == pytest.approx(-1.5)
    assert (result.ci_low, result.ci_high) == pytest.approx((-1.5 - t * se, -1.5 + t * se))
    assert result.p_value == pytest.approx(stats.ttest_ind(a, b, equal_var=False).pvalue)


def test_describe_and_too_few_seeds():
    # t(0.975, 1) = 12.706 (any t table): the 95% interval of the mean is 2 +- 12.706 * sqrt(2) / sqrt(2).
    assert describe([1.0, 3.0]) == {"mean": 2.0, "std": pytest.approx(math.sqrt(2)), "min": 1.0, "max": 3.0,
                                    "n": 2, "ci_low": pytest.approx(2 - 12.7062, abs=1e-4),
                                    "ci_high": pytest.approx(2 + 12.7062, abs=1e-4)}
    assert describe([0.5])["ci_low"] is None and describe([0.5, 0.5])["ci_high"] == 0.5
    with pytest.raises(ValueError, match="at least 2 seeds per variant; got 1 for a"):
        welch("a", [0.5], "b", [0.5, 0.6])


def test_holm_matches_a_hand_computation():
    # Sorted: 0.005 * 4 = 0.02, 0.01 * 3 = 0.03, 0.03 * 2 = 0.06, 0.04 * 1 = 0.04 -> raised to 0.06.
    assert holm([0.01, 0.04, 0.03, 0.005]) == pytest.approx([0.03, 0.06, 0.06, 0.02])
    assert holm([0.5, 0.6]) == [1.0, 1.0]  # Capped at 1, and never below the previous one.
    assert holm([0.2]) == [0.2] and holm([]) == []


def test_a_difference_significant_only_before_correction_is_not_detectable():
    noise = np.array([0.000, 0.005, 0.010, 0.008, 0.002])
    samples = {"a": 0.755 + noise, "b": 0.75 + np.array([0.001, 0.004, 0.008, 0.006, 0.000]),
               "c": 0.745 + noise}
    a_b, a_c, b_c = compare_all(samples)
    # a - b is the second smallest of three p-values: Holm doubles it (0.032 -> 0.064).
    assert a_b.p_value < 0.05 < a_b.p_holm and a_b.ci_low > 0  # The 95% CI is not adjusted.
    assert [a_b.p_holm, a_c.p_holm, b_c.p_holm] == holm([a_b.p_value, a_c.p_value, b_c.p_value])
    assert a_b.p_holm == pytest.approx(2 * a_b.p_value)
    assert not a_b.detectable and a_c.detectable and not b_c.detectable
    assert a_b.verdict().startswith("a vs b: no detectable difference (")
    assert "Holm-adjusted p = " in a_b.verdict()


def test_power_matches_the_textbook_sample_size():
    """Cohen (1988): d = 0.5 at alpha 0.05 two-sided and 80% power needs 64 per group; G*Power
    gives the actual power at n = 64 as 0.8014596."""
    assert power(0.5, math.sqrt(2 / 64), 126) == pytest.approx(0.8014596, abs=1e-6)
    assert seeds_to_detect(0.5, 1.0, 1.0) == 64
    assert minimum_detectable_difference(1.0, 63, 1.0, 63) > 0.5 > minimum_detectable_difference(1.0, 64, 1.0, 64)


def test_minimum_detectable_difference_has_the_power_in_a_simulation():
    """Equal spreads and sizes, where the t-test's power is exactly the noncentral t's."""
    difference = minimum_detectable_difference(0.006, 5, 0.006, 5)
    generator = np.random.default_rng(0)
    first = generator.normal(difference, 0.006, size=(40_000, 5))
    second = generator.normal(0.0, 0.006, size=(40_000, 5))
    rejected = stats.ttest_ind(first, second, axis=1).pvalue < 0.05
    assert rejected.mean() == pytest.approx(0.80, abs=0.01)


@pytest.mark.parametrize("pairs, alpha", [(3, 0.05 / 3), (3, 0.05), (5, 0.05 / 10), (35, 0.05)])
def test_the_paired_minimum_detectable_difference_has_its_power_in_a_simulation(pairs, alpha):
    """Paired t-tests on simulated per-seed differences of that mean reject 80% of the time,
    including at 3 pairs and alpha 0.05/3, where statsmodels' TTestPower.solve_power returns a
    wrong root (about 4.3 sds: 61% power) and its power function nan."""
    difference = paired_minimum_detectable(1.0, pairs, alpha=alpha)
    generator = np.random.default_rng(0)
    samples = generator.normal(difference, 1.0, size=(40_000, pairs))
    rejected = stats.ttest_1samp(samples, 0.0, axis=1).pvalue < alpha
    assert rejected.mean() == pytest.approx(0.80, abs=0.01)
    if (pairs, alpha) == (3, 0.05 / 3):
        assert difference == pytest.approx(5.667, abs=1e-3)


def test_in_a_family_the_power_analysis_is_at_holms_first_level():
    """Three pairs: each one's minimum detectable difference is at alpha / 3, so a difference that
    large is found by the Holm-adjusted test with at least 80% power; one pair alone, at alpha."""
    samples = {"a": {0: 0.70, 1: 0.72, 2: 0.71}, "b": {0: 0.69, 1: 0.70, 2: 0.705}, "c": {0: 0.71, 1: 0.705, 2: 0.72}}
    family = compare_all(samples)
    for pair in family:
        spread = np.std([samples[pair.first][seed] - samples[pair.second][seed] for seed in range(3)], ddof=1)
        assert pair.detectable_alpha == pytest.approx(0.05 / 3)
        assert pair.minimum_detectable == pytest.approx(paired_minimum_detectable(spread, 3, alpha=0.05 / 3))
    alone = compare_all({name: samples[name] for name in ("a", "b")})[0]
    assert alone.detectable_alpha == pytest.approx(0.05) and alone.minimum_detectable < family[0].minimum_detectable


def test_no_detectable_difference_says_what_could_have_been_detected():
    before, after = [0.7514, 0.7661, 0.7550, 0.7570, 0.7580], [0.7565, 0.7648, 0.7620, 0.7630, 0.7636]
    result = welch("before", before, "after", after)
    spread = (np.std(before, ddof=1), np.std(after, ddof=1))
    assert result.sizes == (5, 5) and not result.detectable
    assert result.minimum_detectable == pytest.approx(minimum_detectable_difference(spread[0], 5, spread[1], 5))
    assert result.seeds_to_detect_target == seeds_to_detect(0.003, *spread) > 5
    verdict = result.verdict()
    assert f"is {result.minimum_detectable * 100:.2f} points" in verdict
    assert f"0.3 points would take {result.seeds_to_detect_target} seeds per variant" in verdict


def fake_cell(variant: str, seed: int, accuracy: float, beta: float | None) -> Cell:
    landscape = {"beta_median": 100.0 + seed, "loss_range_median": 0.02, "grad_change_max_median": 5.0,
                 "update_beta_median": beta, "decrease_ratio_median": 0.9}
    run = {"fit_seconds": 58.0, "total_seconds": 60.0, "train": {"epochs": 10, "optimizer": "adam", "learning_rate": 0.001},
           "environment": {"device": "CPU"}}
    return Cell(variant, seed, {"test": {"accuracy": accuracy, "loss": 0.7}, "train": {"accuracy": 0.8}},
                {"fit/loss": np.array([1.6, 1.0])}, None, run, landscape)


def test_report_corrects_p_values_and_puts_intervals_on_the_landscape_summaries():
    cells = {"before": [fake_cell("before", s, a, b) for s, a, b in
                        ((0, 0.760, 10.0), (1, 0.755, 12.0), (2, 0.765, 14.0))],
             "none": [fake_cell("none", s, a, b) for s, a, b in
                      ((0, 0.730, 11.0), (1, 0.732, None), (2, 0.728, 13.0))]}
    measures = {"test_accuracy": ("test", "accuracy"), "test_loss": ("test", "loss"),
                "train_accuracy": ("train", "accuracy")}
    summary, comparisons = summarize(cells, measures)
    # The diverged seed (no finite median) leaves the landscape measure, not the accuracy table.
    assert summary["none"]["update_beta_median"]["n"] == 2 and summary["none"]["test_accuracy"]["n"] == 3
    beta = summary["before"]["update_beta_median"]  # 12 +- t(0.975, 2) * 2 / sqrt(3), t = 4.3027.
    assert (beta["ci_low"], beta["ci_high"]) == pytest.approx((12 - 4.3027 * 2 / math.sqrt(3),
                                                               12 + 4.3027 * 2 / math.sqrt(3)), abs=1e-3)
    pair = summary["comparisons"]["before_vs_none"]
    assert pair["p_holm"] == pair["p_value"] and pair["minimum_detectable"] > 0
    markdown = render_markdown(summary, comparisons, cells, with_landscape=True)
    assert "| pair | difference (points) | 95% CI | p-value | Holm p |" in markdown
    assert f"| before | 12.00 [{beta['ci_low']:.2f}, {beta['ci_high']:.2f}] |" in markdown
    assert "β along Δ" in markdown and "realized / predicted decrease" in markdown


def test_a_cell_becomes_a_point_of_the_sweep_figures():
    cell = fake_cell("rescaled", 3, 0.71, 9.0)
    cell.run["train"].update(optimizer="sgd", learning_rate=0.1)
    # Diverged by the one rule (a finite loss that ends above its first epoch's), whatever the
    # probe's own flag says.
    cell.landscape_summary.update(diverged=False, effective_step_median={"conv1": 0.01})
    cell = Cell(**{**cell.__dict__, "landscape": {"step": np.array([0, 50]), "update_beta": np.array([9.0, 8.0])},
                   "history": {"fit/loss": np.array([34.1, 37.9, 50.6])}})
    run = figure_run(cell)
    assert run == {"optimizer": "sgd", "bn": "rescaled", "learning_rate": 0.1, "seed": 3, "test_accuracy": 0.71,
                   "diverged": True, "effective_step": {"conv1": 0.01}, "steps": cell.landscape["step"],
                   "update_beta": cell.landscape["update_beta"], "landscape": cell.landscape_summary}
    unprobed = Cell(**{**fake_cell("none", 0, 0.1, None).__dict__, "landscape_summary": {},
                       "history": {"fit/loss": np.array([2.3, np.nan])}})
    assert figure_run(unprobed)["diverged"] is True


def test_one_divergence_rule_for_every_record():
    """diverged_history, on every committed record: it agrees with the landscape probe's flag
    wherever a record has one, and with "the last loss is not finite" (the rule unprobed grids
    used) on every record but those that blew up and stayed finite (their loss grew, their
    accuracy is at chance): the sweep's SGD 0.3 `before` seed 0 was the first such record."""
    from stages.analysis.cells import diverged_history
    disagree = []
    for path in sorted((ROOT / "reports").glob("*/runs/*.json")):
        record = json.loads(path.read_text())
        rule = diverged_history(record["history"])
        probe = (record.get("landscape") or {}).get("diverged")
        assert probe is None or probe == rule, path
        losses = record["history"]["fit/loss"]
        if rule != (not math.isfinite(losses[-1])):
            disagree.append(path.relative_to(ROOT).as_posix())
            assert rule and losses[-1] > losses[0], path  # Finite, but it blew up.
        if rule:  # A diverged run ends at chance.
            assert record["metrics"]["test"]["accuracy"] <= 0.11, path
    assert "reports/sweep/runs/sgd-0.3-before-0.json" in disagree
    assert diverged_history({"fit/loss": [2.3, 2.3, 2.3]}) and diverged_history({"fit/loss": [2.0, float("inf"), 1.0]})
    assert not diverged_history({"fit/loss": [2.0, 1.999]}) and not diverged_history({"fit/loss": [2.3]})


@pytest.mark.dvc
def test_study_matrix_is_cached_per_cell(studied_project):
    project = studied_project  # `dvc repro grids/study/dvc.yaml` has run in a fresh project.
    first = stages_run(project.first_repro)
    cells = sorted(s for s in first if s.startswith("grids/study/dvc.yaml:cell@"))
    assert cells == [f"grids/study/dvc.yaml:cell@{v}-{s}" for v in ("after", "before", "none") for s in (0, 1)]
    assert "fetch" in first and "grids/study/dvc.yaml:report" in first
    record = json.loads((project.root / "reports/study/runs/none-1.json").read_text())
    assert (record["bn"], record["seed"]) == ("none", 1)
    assert set(record["metrics"]) == {"train", "test"} and len(record["history"]["val/accuracy"]) == 1
    assert record["probes"]["step"] == [0, 2]  # 4 steps of 50 images, probed every 2nd.
    assert not (project.root / "models/study").exists()  # Cells keep no model.
    table = json.loads((project.root / "reports/study/metrics.json").read_text())
    assert table["before"]["test_accuracy"]["n"] == 2 and "before_vs_none" in table["comparisons"]
    # The study probes the landscape in every cell, and the table summarizes each cell's own records.
    runs = [json.loads((project.root / f"reports/study/runs/{cell}.json").read_text())
            for cell in ("before-0", "before-1")]
    betas = [np.median(run["probes"]["beta"]) for run in runs]
    assert table["before"]["beta_median"]["mean"] == pytest.approx(np.mean(betas), rel=1e-5)
    assert table["before"]["test_accuracy"]["mean"] == pytest.approx(
        np.mean([run["metrics"]["test"]["accuracy"] for run in runs]))
    study_md = (project.root / "reports/study/study.md").read_text()
    assert "Welch" in study_md and "β-smoothness" in study_md
    html = (project.root / "reports/study/index.html").read_text()
    assert "data:image/png;base64," in html and "<script" not in html and "http" not in html
    for figure in ("curves", "test_accuracy", "generalization_gap", "landscape"):
        image = matplotlib.image.imread(project.root / f"reports/study/figures/{figure}.png")
        assert image.ndim == 3 and image[..., :3].std() > 0, figure
    # The study's numbers stay out of the main tables.
    shown = json.loads(project.dvc("metrics", "show", "--json").stdout)
    assert not [path for path in shown[""]["data"] if "study" in path]

    project.set_params(study={"seeds": [0, 1, 2]})  # The same variants, one seed more.
    second = stages_run(project.dvc("repro", "grids/study/dvc.yaml").stdout)
    assert sorted(s for s in second if "cell@" in s) == [
        "grids/study/dvc.yaml:cell@after-2", "grids/study/dvc.yaml:cell@before-2", "grids/study/dvc.yaml:cell@none-2"]
    assert "grids/study/dvc.yaml:report" in second and "normalize" not in second
    assert json.loads((project.root / "reports/study/metrics.json").read_text())["none"]["test_accuracy"]["n"] == 3
    assert stages_run(project.dvc("repro", "grids/study/dvc.yaml").stdout) == []
    # Toggling the main run's probe switch leaves the study's cells cached (they always probe).
    project.set_params(landscape={"enabled": True})
    assert "cell@" not in project.dvc("status", "grids/study/dvc.yaml").stdout
