"""The sweep's report: which records it reads (its own cells, the study's at the study's rate),
what it says about cells not yet run, and its table and comparisons, from hand-made records."""

import json
import math
from pathlib import Path

import pytest
import yaml

from stages.trainer.errors import InputFileError, ParamsError
from stages.grids.sections import parse_all as parse_params
from locks import recipe, write_bound
from stages.grids.sweep import collect, record_path, render_markdown, summarize

COMMITTED = yaml.safe_load((Path(__file__).parents[1] / "params.yaml").read_text())
STUDY_RUNS = Path("reports/study/runs")


def params(adam_rates=(0.01,), train_rate=0.001, optimizer="adam", study_variants=("before", "none", "after")):
    return parse_params({**COMMITTED, "train": {**COMMITTED["train"], "learning_rate": train_rate,
                                                "optimizer": optimizer},
                         "study": {"variants": list(study_variants), "seeds": [0, 1, 2]},
                         "sweep": {"seeds": [0, 1],
                                   "adam": {"variants": ["before", "none"], "learning_rates": list(adam_rates)},
                                   "sgd": {"variants": ["none"], "learning_rates": [0.1]}}})


def write_record(path: Path, bn: str, seed: int, optimizer: str, rate: float, accuracy: float) -> None:
    write_bound(path, {
        "bn": bn, "seed": seed, "model": {}, "train": {"optimizer": optimizer, "learning_rate": rate},
        "metrics": {"test": {"accuracy": accuracy, "loss": 1.0}, "train": {"accuracy": accuracy, "loss": 0.9}},
        "history": {"fit/loss": [2.0, 1.0]}, "probes": None, "landscape": None,
        "fit_seconds": 60.0, "environment": {"device": "CPU"}})


def test_the_report_reads_its_own_cells_and_the_studys_at_the_studys_rate(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    settings = params()
    write_record(record_path("adam", 0.01, "before", 0), "before", 0, "adam", 0.01, 0.70)
    write_record(record_path("sgd", 0.1, "none", 1), "none", 1, "sgd", 0.1, 0.50)
    for variant in ("before", "after"):  # The study's `after` is not in the sweep's Adam variants.
        for seed in (0, 1, 2):
            write_record(STUDY_RUNS / f"{variant}-{seed}.json", variant, seed, "adam", 0.001, 0.75)
    cells, missing = collect(settings.sweep, settings.study, settings.train, STUDY_RUNS, recipe(settings))
    assert sorted((c.run["train"]["learning_rate"], c.variant, c.seed) for c in cells) == [
        (0.001, "before", 0), (0.001, "before", 1), (0.001, "before", 2), (0.01, "before", 0), (0.1, "none", 1)]
    # Missing cells by the DVC stage that trains each, the study's `none` cells among them.
    assert sorted(missing) == [
        *(f"grids/study/dvc.yaml:cell@none-{seed}" for seed in (0, 1, 2)), "grids/sweep/dvc.yaml:adam@before-0.01-1",
        "grids/sweep/dvc.yaml:adam@none-0.01-0", "grids/sweep/dvc.yaml:adam@none-0.01-1", "grids/sweep/dvc.yaml:sgd@none-0.1-0"]


def test_a_record_that_is_not_its_cell_is_refused_before_any_report(tmp_path, monkeypatch):
    """A `before` record copied over another cell's file, or one from another rate, fails in one
    line naming the file, while collecting: nothing is written."""
    monkeypatch.chdir(tmp_path)
    settings = params()
    write_record(record_path("adam", 0.01, "before", 0), "before", 0, "adam", 0.003, 0.70)
    with pytest.raises(InputFileError, match=r"adam-0.01-before-0.json: records learning_rate=0.003, "
                                             r"not the learning_rate=0.01 its name says"):
        collect(settings.sweep, settings.study, settings.train, STUDY_RUNS, recipe(settings))
    write_record(record_path("adam", 0.01, "before", 0), "none", 0, "adam", 0.01, 0.70)
    with pytest.raises(InputFileError, match=r"records bn=none, not the bn=before its name says"):
        collect(settings.sweep, settings.study, settings.train, STUDY_RUNS, recipe(settings))


def test_record_names_follow_dvcs_matrix_names():
    # DVC writes a float as Python's str(): 1.0 stays "1.0" (":g" would give "1"), 3e-4 is "0.0003".
    assert record_path("sgd", 1.0, "none", 0).name == "sgd-1.0-none-0.json"
    assert record_path("adam", 0.0003, "before", 1).name == "adam-0.0003-before-1.json"


@pytest.mark.parametrize("settings, message", [
    (params(adam_rates=(0.001, 0.01)), r"sweep.adam.learning_rates lists 0.001, the study's own rate"),
    # The study's optimizer decides which part of the sweep it stands in for.
    (params(optimizer="sgd", train_rate=0.1), r"sweep.sgd.learning_rates lists 0.1, the study's own rate"),
    (params(study_variants=("before",)), r"sweep.adam.variants lists none, which study.variants does not: "
                                         r".*add none to study.variants"),
])
def test_the_sweep_refuses_a_grid_that_the_study_does_not_fit(tmp_path, monkeypatch, settings, message):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ParamsError, match=message):
        collect(settings.sweep, settings.study, settings.train, STUDY_RUNS, recipe(settings))


def test_a_sweep_with_no_cell_run_says_what_to_run(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    settings = params()
    with pytest.raises(InputFileError, match=r"no cell of the sweep has run yet: run `dvc repro grids/sweep/dvc.yaml`"):
        collect(settings.sweep, settings.study, settings.train, STUDY_RUNS, recipe(settings))


def run(bn, seed, accuracy, rate=0.01, diverged=False, beta=10.0):
    return {"optimizer": "adam", "bn": bn, "learning_rate": rate, "seed": seed,
            "test_accuracy": accuracy, "diverged": diverged,
            "landscape": {"update_beta_median": beta, "cos_update_gradient_median": 0.1}}


def test_summary_and_table_by_rate_with_comparisons_among_variants_with_two_seeds_and_none_diverged():
    runs = [run("before", 0, 0.70, beta=10.0), run("before", 1, 0.72, beta=13.0), run("none", 0, 0.60),
            run("none", 1, 0.10, diverged=True, beta=float("nan")), run("after", 0, 0.71, beta=None),
            run("rescaled", 0, 0.66), run("rescaled", 1, 0.64),
            run("before", 0, 0.75, rate=0.001), run("none", 0, 0.73, rate=0.001)]
    summary = summarize(runs)
    high = summary["adam"]["0.01"]
    assert high["before"]["mean"] == pytest.approx(0.71) and high["none"]["diverged"] == 1
    # Counted, never averaged: `none`'s mean is its one trained run's.
    assert (high["none"]["n"], high["none"]["runs"], high["none"]["mean"]) == (1, 2, pytest.approx(0.60))
    pair = high["comparisons"]["before_vs_rescaled"]
    assert pair["difference"] == pytest.approx(0.06) and pair["ci_low"] < 0.06 < pair["ci_high"]
    # Landscape measures over the seeds that did not diverge: the diverged seed is left out.
    assert high["before"]["landscape"]["update_beta_median"]["mean"] == pytest.approx(11.5)
    assert high["none"]["landscape"]["update_beta_median"]["n"] == 1
    # `after` has one seed and `none` a diverged one: both left out of the comparisons, which go
    # on among the others (a diverged run scores chance: no interval describes it).
    assert list(high["comparisons"]) == ["before_vs_rescaled"]
    assert "update_beta_median" not in high["after"]["landscape"]  # Stored as None: not measured.
    assert "beta_median" not in high["before"]["landscape"]  # Not measured: no column value.
    assert "comparisons" not in summary["adam"]["0.001"]  # One seed each: nothing to compare.
    markdown = render_markdown(summary, {"device": "CPU"}, 6.0, ["grids/sweep/dvc.yaml:sgd@none-0.1-0"])
    assert "**Incomplete: 1 of the sweep's cells have not run yet**" in markdown
    assert "`grids/sweep/dvc.yaml:sgd@none-0.1-0`" in markdown
    assert "| 0.01 | 0.7100 ± 0.0141 (n=2) | 0.6000 (one run), 1 of 2 diverged |" in markdown
    # Seeds 0 and 1 of each: paired on seed, Welch's interval beside.
    assert (f"| 0.01 | before − rescaled | paired | +6.00 | [{100 * pair['ci_low']:+.2f}, {100 * pair['ci_high']:+.2f}] | "
            f"{pair['p_holm']:.2g} | {100 * pair['minimum_detectable']:.2f} | [{100 * pair['welch_ci_low']:+.2f}, "
            f"{100 * pair['welch_ci_high']:+.2f}] |") in markdown
    assert "before − none" not in markdown
    assert "| 0.01 | before | – | 11.50 | – | 0.100 | – |" in markdown
    assert "| 0.01 | none | – | 10.00 | – | 0.100 | – |" in markdown
    assert "- fit time of the cells (sum of their epochs, probes included): 6.0 min" in markdown


@pytest.mark.dvc
def test_sweep_pipeline_trains_each_cell_once_and_takes_the_studys_rate_from_the_study(studied_project):
    from test_pipeline import stages_run

    project = studied_project
    project.set_params(sweep={"seeds": [0],
                              "adam": {"variants": ["before"], "learning_rates": [0.01]},
                              "sgd": {"variants": ["rescaled"], "learning_rates": [0.1]}})
    ran = stages_run(project.dvc("repro", "grids/sweep/dvc.yaml").stdout)
    # The sweep's report reads the study's cells at the study's rate (cached); it trains its own.
    assert sorted(s for s in ran if "@" in s) == [
        "grids/sweep/dvc.yaml:adam@before-0.01-0", "grids/sweep/dvc.yaml:sgd@rescaled-0.1-0"]
    record = json.loads((project.root / "reports/sweep/runs/sgd-0.1-rescaled-0.json").read_text())
    assert (record["train"]["optimizer"], record["train"]["learning_rate"], record["bn"]) == ("sgd", 0.1, "rescaled")
    summary = json.loads((project.root / "reports/sweep/metrics.json").read_text())
    # At the study's rate (0.001), the study's `before` cells (2 seeds); its `none` is not an Adam variant here.
    assert set(summary["adam"]) == {"0.001", "0.01"} and summary["adam"]["0.001"]["before"]["n"] == 2
    assert set(summary["adam"]["0.001"]) == {"before"} and set(summary["sgd"]["0.1"]) == {"rescaled"}
    assert "Incomplete" not in (project.root / "reports/sweep/sweep.md").read_text()
    project.commit("sweep")
    assert stages_run(project.dvc("repro", "grids/sweep/dvc.yaml").stdout) == []

    project.set_params(sweep={"seeds": [0, 1]})
    second = stages_run(project.dvc("repro", "grids/sweep/dvc.yaml").stdout)
    assert sorted(s for s in second if "@" in s) == [
        "grids/sweep/dvc.yaml:adam@before-0.01-1", "grids/sweep/dvc.yaml:sgd@rescaled-0.1-1"]
    assert "grids/sweep/dvc.yaml:report" in second


def test_diverged_runs_are_counted_not_compared():
    # Diverged runs score exactly 10% (every prediction the same class), and a measure a diverged
    # run could not take is stored as None: no comparison, no landscape, "k of n diverged".
    runs = [run(bn, seed, 0.1, rate=0.3, diverged=True, beta=None) for bn in ("before", "none") for seed in (0, 1)]
    summary = summarize(runs)
    assert summary["adam"]["0.3"]["before"]["landscape"] == {}  # Diverged: no landscape to compare.
    assert "comparisons" not in summary["adam"]["0.3"]
    markdown = render_markdown(summary, {}, 1.0, [])
    assert "| 0.3 | before | – | – | – | – | – |" in markdown
    assert "before − none" not in markdown
    assert "| 0.3 | 2 of 2 diverged | 2 of 2 diverged |" in markdown  # No mean of chance scores.
    assert "Incomplete" not in markdown


def test_seeds_without_spread_have_no_minimum_detectable_difference():
    runs = [run(bn, seed, 0.5) for bn in ("before", "none") for seed in (0, 1)]
    pair = summarize(runs)["adam"]["0.01"]["comparisons"]["before_vs_none"]
    assert pair["minimum_detectable"] is None  # Stored as null in metrics.json, not 0.
    assert ("| 0.01 | before − none | paired | +0.00 | [+0.00, +0.00] | 1 | – | [+0.00, +0.00] |"
            in render_markdown(summarize(runs), {}, 1.0, []))


def test_a_variant_with_a_diverged_run_is_left_out_of_the_comparisons_though_two_seeds_trained():
    runs = [run(bn, seed, 0.70 + seed / 100 + offset) for bn, offset in (("before", 0.0), ("rescaled", -0.05))
            for seed in range(3)]
    runs += [run("none", 0, 0.60), run("none", 1, 0.62), run("none", 2, 0.1, diverged=True)]
    entry = summarize(runs)["adam"]["0.01"]
    assert list(entry["comparisons"]) == ["before_vs_rescaled"]
    assert (entry["none"]["n"], entry["none"]["diverged"]) == (2, 1)
