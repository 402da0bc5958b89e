"""The placement study: which records it pools, its verdict in each of the three cases, the
equivalence test against its definition, and the pipeline end to end on tiny data."""

import json
import math
import re
from pathlib import Path

import numpy as np
import pytest
from scipy import stats

from stages.trainer.errors import InputFileError, ParamsError
from stages.grids.sections import check_placement, read_all as read_params
from stages.grids.placement import collect, environments, equivalence, render_markdown, summarize
from stages.analysis.cells import Cell
from locks import recipe, write_bound


def cell(variant: str, seed: int, accuracy: float, final_loss: float = 0.5) -> Cell:
    return Cell(variant, seed, {"test": {"accuracy": accuracy}}, {"fit/loss": np.array([1.0, final_loss])},
                None, {"environment": {"device": "CPU: test (2 cores)"}}, {})


def cells(before: list[float], after: list[float]) -> dict[str, list[Cell]]:
    """Seed i of each: paired on seed. `after` is taken in reverse so that the per-seed
    differences vary (an evenly spread pair in the same order would differ by a constant)."""
    return {"before": [cell("before", seed, value) for seed, value in enumerate(before)],
            "after": [cell("after", seed, value) for seed, value in enumerate(after[::-1])]}


def spread(center: float, count: int, width: float = 0.004) -> list[float]:
    return list(center + width * np.linspace(-1, 1, count))


def test_equivalence_is_two_one_sided_tests_paired_where_seeds_are_shared_and_matches_the_90_percent_interval():
    generator = np.random.default_rng(0)
    a, b = generator.normal(0.760, 0.004, 35), generator.normal(0.761, 0.005, 35)
    # Other seeds in each arm: Welch's TOST.
    test = equivalence(dict(enumerate(a)), {seed + 100: value for seed, value in enumerate(b)}, margin=0.005)
    # Against the definition: t statistics of (a - b) shifted by -+margin, Welch's degrees of freedom.
    se = math.sqrt(a.var(ddof=1) / 35 + b.var(ddof=1) / 35)
    dof = se**4 / ((a.var(ddof=1) / 35) ** 2 / 34 + (b.var(ddof=1) / 35) ** 2 / 34)
    difference = a.mean() - b.mean()
    assert test.p_lower == pytest.approx(stats.t.sf((difference + 0.005) / se, dof), rel=1e-9)
    assert test.p_upper == pytest.approx(stats.t.cdf((difference - 0.005) / se, dof), rel=1e-9)
    half = stats.t.ppf(0.95, dof) * se
    assert (test.ci_low, test.ci_high) == pytest.approx((difference - half, difference + half), rel=1e-9)
    # Equivalent exactly when the 90% interval lies inside the margin.
    assert test.equivalent == (-0.005 < test.ci_low and test.ci_high < 0.005)
    assert test.equivalent and not equivalence(dict(enumerate(a)), {seed + 100: value for seed, value in enumerate(b)},
                                               margin=0.001).equivalent
    # The same seeds: the one-sample t of the per-seed differences shifted by -+margin.
    same = equivalence(dict(enumerate(a)), dict(enumerate(b)), margin=0.005)
    differences = a - b
    se = differences.std(ddof=1) / math.sqrt(35)
    assert same.p_lower == pytest.approx(stats.t.sf((differences.mean() + 0.005) / se, 34), rel=1e-9)
    assert same.p_upper == pytest.approx(stats.t.cdf((differences.mean() - 0.005) / se, 34), rel=1e-9)
    half = stats.t.ppf(0.95, 34) * se
    assert (same.ci_low, same.ci_high) == pytest.approx((differences.mean() - half, differences.mean() + half))


@pytest.mark.parametrize("before, after, verdict", [
    (spread(0.760, 35), spread(0.770, 35), r"^bn=after is higher by 1\.00 points: \+1\.00 points \(after − before\)"),
    (spread(0.760, 35), spread(0.7605, 35), r"^equivalent within ±0\.5 points \(TOST p = .*\): -0\.05 points"),
    (spread(0.760, 3, 0.02), spread(0.765, 3, 0.02), r"^undecided: neither a difference nor equivalence.*; "
                                                      r"add seeds to placement.seeds$"),
])
def test_the_verdict_is_a_difference_an_equivalence_or_undecided(before, after, verdict):
    summary = summarize(cells(before, after), margin=0.005)
    assert re.search(verdict, summary["verdict"]), summary["verdict"]
    assert summary["variants"]["before"]["n"] == len(before)
    markdown = render_markdown(summary, ["35 cells: CPU"], [])
    assert summary["verdict"] in markdown and "| paired p (two-sided) |" in markdown
    assert "| beside it, Welch's 95% CI and p (the arms as independent) |" in markdown


def test_where_the_cells_ran_is_one_line_per_machine_and_code_version():
    def run(commit: str | None, date: str | None) -> Cell:
        environment = {"device": "CPU: test (2 cores)", "cpu_features": ["avx2"], "backend": "tensorflow",
                       "tensorflow": "2.21.0"}
        environment.update({"git_commit": commit} if commit else {})
        environment.update({"date": date} if date else {})
        return Cell("before", 0, {}, {}, None, {"environment": environment}, {})

    lines = environments({"before": [run(None, None), run(None, None), run("0123456789abcdef", "2026-12-01T10:00")],
                          "after": [run("0123456789abcdef", "2026-12-02T09:00")]})
    assert lines == ["4 cells: CPU: test (2 cores) [avx2], tensorflow 2.21.0, code 0123456789ab (2 without "
                     "one), 2026-12-01 to 2026-12-02"]
    assert environments({"before": [run(None, None), run(None, None)]}) == [
        "2 cells: CPU: test (2 cores) [avx2], tensorflow 2.21.0, code version not recorded, date not recorded"]
    assert environments({"after": [run("0123456789abcdef", "2026-12-02T09:00")]}) == [
        "1 cell: CPU: test (2 cores) [avx2], tensorflow 2.21.0, code 0123456789ab, on 2026-12-02"]
    # Ordered by the time of day too: cells committed one by one on one day.
    cells = [run("aaaaaaaaaaaaaaaa", "2026-12-01T11:00"), run("cccccccccccccccc", "2026-12-01T09:00"),
             run("bbbbbbbbbbbbbbbb", "2026-12-01T10:00")]
    assert environments({"after": cells}) == [
        "3 cells: CPU: test (2 cores) [avx2], tensorflow 2.21.0, code at 3 commits, cccccccccccc to "
        "aaaaaaaaaaaa, on 2026-12-01"]


def test_diverged_runs_are_counted_and_block_the_comparison():
    runs = cells(spread(0.76, 5), spread(0.76, 5))
    runs["after"][1] = cell("after", 1, 0.1, final_loss=math.nan)
    summary = summarize(runs, margin=0.005)
    assert summary["comparison"] is None and summary["equivalence"] is None
    assert summary["verdict"] == "no comparison, as runs diverged (after: 1 of 5 diverged)"
    assert summary["variants"]["after"]["n"] == 4 and summary["variants"]["after"]["diverged"] == 1
    assert "| after | 4 |" in render_markdown(summary, [], [])


def record(variant: str, seed: int, accuracy=0.75) -> dict:
    return {"bn": variant, "seed": seed, "model": {}, "train": {"optimizer": "adam", "learning_rate": 0.001},
            "metrics": {"test": {"accuracy": accuracy, "loss": 0.7}, "train": {"accuracy": 0.8, "loss": 0.5}},
            "history": {"fit/loss": [1.0, 0.5]}, "fit_seconds": 1.0, "environment": {}}


STUDY, PLACEMENT = Path("reports/study/runs"), Path("reports/placement/runs")
RECIPE = recipe(read_params())


def test_collect_pools_the_studys_seeds_and_names_the_cells_not_yet_run(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    for variant in ("before", "after"):
        for seed in (0, 1):
            write_bound(STUDY / f"{variant}-{seed}.json", record(variant, seed))
    write_bound(PLACEMENT / "before-2.json", record("before", 2))
    found, missing = collect(["before", "after"], [0, 1], [2], STUDY, PLACEMENT, RECIPE)
    assert [c.seed for c in found["before"]] == [0, 1, 2] and [c.seed for c in found["after"]] == [0, 1]
    assert missing == ["grids/placement/dvc.yaml:cell@after-2"]


def without_metrics(content: dict) -> dict:
    return {key: value for key, value in content.items() if key != "metrics"}


@pytest.mark.parametrize("content, message", [
    (record("after", 2), r"before-2.json: records bn=after, not the bn=before its name says; `git checkout"),
    (record("before", 3), r"records seed=3, not the seed=2 its name says"),
    (record("before", 2, accuracy=float("nan")), r"test.accuracy = nan is not a valid score"),
    (record("before", 2, accuracy="0.9"), r"test.accuracy = '0.9' is not a valid score"),
    (record("before", 2, accuracy=1.5), r"test.accuracy = 1.5 is not a valid score"),
    (without_metrics(record("before", 2)), r"not a complete cell record \(no 'metrics'\)"),
])
def test_a_record_that_is_not_what_its_name_says_is_refused(tmp_path, monkeypatch, content, message):
    monkeypatch.chdir(tmp_path)
    write_bound(PLACEMENT / "before-2.json", content)
    with pytest.raises(InputFileError, match=message):
        collect(["before"], [], [2], PLACEMENT, PLACEMENT, RECIPE)


def test_placement_params_must_continue_the_study():
    params = read_params()
    check_placement(params.placement, params.study)
    assert params.placement.variants == ["before", "after"] and len(params.placement.seeds) == 30
    with pytest.raises(ParamsError, match=r"placement.seeds repeats study seed 4; .*remove it"):
        check_placement(params.placement.__class__(["before", "after"], [4, 5], 0.005), params.study)
    with pytest.raises(ParamsError, match=r"placement.variants names after, which study.variants lacks"):
        check_placement(params.placement, params.study.__class__(["before", "none"], [0, 1]))


@pytest.mark.dvc
def test_placement_pipeline_trains_without_probes_and_reuses_the_studys_cells(studied_project):
    from test_pipeline import stages_run

    project = studied_project  # The study's before and after cells (seeds 0 and 1) are cached.
    # The report's reproducibility line reads the rerun grid's report, so DVC brings that grid up to
    # date too: here one rerun of the new seed's `before` cell (same machine: it lands on its original).
    project.set_params(placement={"variants": ["before", "after"], "seeds": [2]},
                       rerun={"variants": ["before"], "seeds": [2]})
    ran = stages_run(project.dvc("repro", "grids/placement/dvc.yaml").stdout)
    assert sorted(s for s in ran if "@" in s) == [
        "grids/placement/dvc.yaml:cell@after-2", "grids/placement/dvc.yaml:cell@before-2",
        "grids/rerun/dvc.yaml:cell@before-2"]
    assert ("**Reproducibility** ([reports/rerun/rerun.md](../rerun/rerun.md)): 1 reference cell trained again "
            "on another machine or code version, with the same params and seed, landed +0.00 (`before`, seed 2) "
            "points from its record") in (project.root / "reports/placement/placement.md").read_text()
    new = json.loads((project.root / "reports/placement/runs/after-2.json").read_text())
    assert new["probes"] is None and new["landscape"] is None and new["probe_seconds"] == 0.0
    study = json.loads((project.root / "reports/study/runs/after-0.json").read_text())
    assert study["probes"]["step"] and study["probe_seconds"] > 0
    for key in ("date", "git_commit", "cpu", "cpu_features", "cores"):
        assert key in new["environment"], key
    assert new["fit_seconds"] == pytest.approx(sum(new["history"]["epoch_seconds"]), abs=0.01)
    summary = json.loads((project.root / "reports/placement/metrics.json").read_text())
    assert summary["variants"]["before"]["seeds"] == [0, 1, 2] and summary["comparison"] is not None
    assert (project.root / "reports/placement/figures/placement.png").stat().st_size > 10_000
    project.commit("placement")
    assert stages_run(project.dvc("repro", "grids/placement/dvc.yaml").stdout) == []


@pytest.mark.parametrize("after", [spread(0.765, 3, 0.02), spread(0.860, 3, 0.02)], ids=["undecided", "different"])
def test_a_verdict_before_every_planned_cell_has_run_says_it_is_interim(after):
    """Looking again as seeds arrive and stopping at the first significant look inflates false
    differences: until all of placement.seeds have run, every verdict says it is not the answer."""
    summary = summarize(cells(spread(0.760, 3, 0.02), after), margin=0.005, missing=12)
    assert summary["verdict"].startswith("interim, 12 planned cells not yet run, so not the answer yet: ")
    assert "add seeds" not in summary["verdict"]


@pytest.mark.parametrize("content, message", [
    ('{"cells": {"bn": "after"}}', r"cells = \{'bn': 'after'\} is not a list of reruns"),
    ('{"cells": [{"bn": "after", "seed": 5.0, "difference": 0.01}]}', r"is not a rerun \(bn, an integer seed"),
    ('{"cells": [{"bn": "after", "seed": 5, "difference": NaN}]}', r"is not a rerun"),
], ids=["not a list", "float seed", "NaN difference"])
def test_the_placement_report_refuses_a_malformed_rerun_summary(tmp_path, content, message):
    from stages.grids.placement import read_reruns, reproducibility_line
    from stages.trainer.errors import InputFileError

    path = tmp_path / "metrics.json"
    assert read_reruns(path) == [] and reproducibility_line([]).startswith("**Reproducibility:** not measured yet")
    path.write_text(content)
    with pytest.raises(InputFileError, match=message):
        read_reruns(path)
