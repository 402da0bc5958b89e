"""The BN study: its statistics against known answers, and the cached matrix through real DVC."""

import json
import math

import pytest
from scipy import stats

from test_pipeline import stages_run
from stages.lib.study import describe, welch


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
    assert result.verdict().startswith("before vs none: before is higher than none (+10.00 points")


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
    assert describe([1.0, 3.0]) == {"mean": 2.0, "std": pytest.approx(math.sqrt(2)), "min": 1.0, "max": 3.0, "n": 2}
    with pytest.raises(ValueError, match="at least 2 seeds per variant; got 1 for a"):
        welch("a", [0.5], "b", [0.5, 0.6])


@pytest.mark.dvc
def test_study_matrix_is_cached_per_cell(project):
    first = stages_run(project.dvc("repro", "study/dvc.yaml").stdout)
    cells = sorted(s for s in first if s.startswith("study/dvc.yaml:cell@"))
    assert cells == [f"study/dvc.yaml:cell@{v}-{s}" for v in ("before", "none") for s in (0, 1)]
    assert "fetch" in first and "study/dvc.yaml:compare" in first
    record = json.loads((project.root / "reports/study/runs/none-1.json").read_text())
    assert (record["bn"], record["seed"]) == ("none", 1)
    assert set(record["metrics"]) == {"train", "test"} and len(record["history"]["val/accuracy"]) == 1
    assert record["probes"]["step"] == [0, 2]  # 4 steps of 50 images, probed every 2nd.
    assert not (project.root / "models/study").exists()  # Cells keep no model.
    table = json.loads((project.root / "reports/study/metrics.json").read_text())
    assert table["before"]["test_accuracy"]["n"] == 2 and "before_vs_none" in table["comparisons"]
    assert table["before"]["beta_median"]["n"] == 2  # The study probes the landscape.
    study_md = (project.root / "reports/study/study.md").read_text()
    assert "Welch" in study_md and "β-smoothness" in study_md
    html = (project.root / "reports/study/index.html").read_text()
    assert "data:image/png;base64," in html and "<script" not in html and "http" not in html
    for figure in ("curves", "test_accuracy", "generalization_gap", "landscape"):
        assert (project.root / f"reports/study/figures/{figure}.png").is_file()
    # The study's numbers stay out of the main tables.
    shown = json.loads(project.dvc("metrics", "show", "--json").stdout)
    assert not [path for path in shown[""]["data"] if "study" in path]
    project.commit("two seeds")

    project.set_params(study={"variants": ["before", "none"], "seeds": [0, 1, 2]})
    second = stages_run(project.dvc("repro", "study/dvc.yaml").stdout)
    assert sorted(s for s in second if "cell@" in s) == [
        "study/dvc.yaml:cell@before-2", "study/dvc.yaml:cell@none-2"]
    assert "study/dvc.yaml:compare" in second and "normalize" not in second
    assert json.loads((project.root / "reports/study/metrics.json").read_text())["none"]["test_accuracy"]["n"] == 3
    assert stages_run(project.dvc("repro", "study/dvc.yaml").stdout) == []
    # Toggling the main run's probe switch leaves the study's cells cached (they always probe).
    project.set_params(landscape={"enabled": True})
    assert "cell@" not in project.dvc("status", "study/dvc.yaml").stdout
