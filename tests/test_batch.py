"""The batch grid: which cells it allows, its report (the study's cells at train.batch_size, BN's
gain split into fitting and the gap) from hand-made records, and the real pipeline on tiny data."""

import argparse
import json
from pathlib import Path

import pytest
import yaml

from stages.cell import check_args, parse_args
from stages.grids.sections import check_grid
from stages.grids.batch import collect, record_path, render_markdown, summarize, verdicts
from stages.trainer.errors import InputFileError, ParamsError
from stages.grids.sections import parse_all as parse_params
from stages.grids.study import RUNS as STUDY_RUNS
from locks import recipe, write_bound

COMMITTED = yaml.safe_load((Path(__file__).parents[1] / "params.yaml").read_text())


def raw(sizes=(50, 1000), variants=("before", "none"), seeds=(0, 1, 2), study_seeds=(0, 1, 2, 3, 4)):
    return {**COMMITTED, "batch": {"batch_sizes": list(sizes), "variants": list(variants),
                                                "seeds": list(seeds)},
                         "study": {"variants": ["before", "after", "none"], "seeds": list(study_seeds)}}


def params(sizes=(50, 1000), variants=("before", "none"), seeds=(0, 1, 2), study_seeds=(0, 1, 2, 3, 4)):
    return parse_params(raw(sizes, variants, seeds, study_seeds))


def cell_args(**overrides):
    """A cell's command line as stages/cell.py parses it (every option at its default), then `overrides`."""
    values = {"grid": "batch", "bn": "before", "seed": 0, "batch_size": 50, "optimizer": None,
              "learning_rate": None, "head_input_rms": None}
    defaults = vars(parse_args(["--grid", "g", "--bn", "before", "--seed", "0", "--record", "r.json"]))
    return argparse.Namespace(**{**defaults, **values, **overrides})


@pytest.mark.parametrize("overrides, message", [
    ({"batch_size": None}, r"a batch cell needs --batch-size \(its point of the grid\)"),
    ({"batch_size": 250}, r"this cell \(before, 0, 250\) is not in the batch grid"),
    ({"bn": "after"}, r"this cell \(after, 0, 50\) is not in the batch grid"),
    ({"learning_rate": 0.01}, r"--learning-rate is not a setting of the batch grid \(batch lists no "
                              r"learning_rates or learning_rate\)"),
    ({"grid": "study"}, r"--batch-size is not a setting of the study grid"),
])
def test_a_cell_outside_the_batch_grid_is_refused(overrides, message):
    with pytest.raises(ParamsError, match=message):
        check_args(raw(), cell_args(**overrides))
    check_args(raw(), cell_args())


@pytest.mark.parametrize("batch, message", [
    ({"batch_sizes": [50, 250]}, r"batch.batch_sizes lists 250, the study's own batch size"),
    ({"variants": ["before", "frozen"]}, r"batch.variants lists frozen, which study.variants does not"),
])
def test_the_batch_grid_takes_the_studys_cells_at_its_batch_size(batch, message):
    settings = params()
    raw = {**COMMITTED, "study": {"variants": ["before", "after", "none"], "seeds": [0, 1]},
           "batch": {"batch_sizes": [50], "variants": ["before"], "seeds": [0], **batch}}
    with pytest.raises(ParamsError, match=message):  # The grid's own rules, which its report checks.
        check_grid(parse_params(raw), "batch")
    assert settings.batch.batch_sizes == [50, 1000]


def write_record(path, bn, seed, batch_size, train, test, diverged=False):
    path.parent.mkdir(parents=True, exist_ok=True)
    record = {"bn": bn, "seed": seed, "model": {},
              "train": {"optimizer": "adam", "learning_rate": 0.001, "batch_size": batch_size, "epochs": 10},
              "metrics": {"test": {"accuracy": test, "loss": 1.0}, "train": {"accuracy": train, "loss": 0.9}},
              "history": {"fit/loss": [2.0, float("nan") if diverged else 1.0]}, "probes": None,
              "fit_seconds": 30.0, "environment": {"device": "CPU"}}
    write_bound(path, record)


def test_the_report_splits_bns_gain_into_fitting_and_the_gap(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    settings = params(sizes=(50,), study_seeds=(0, 1, 2))
    # Batch 50: `before` fits 4 points better than `none` and generalizes 1 point worse (gap +1).
    for seed, (train, test) in enumerate([(0.80, 0.74), (0.82, 0.75), (0.81, 0.73)]):
        write_record(record_path(50, "before", seed), "before", seed, 50, train + 0.04, test + 0.03)
        write_record(record_path(50, "none", seed), "none", seed, 50, train, test)
    # Batch 250, the study's cells: `none` diverged once.
    for seed in range(3):
        write_record(STUDY_RUNS / f"before-{seed}.json", "before", seed, 250, 0.85, 0.76 + seed / 100)
        write_record(STUDY_RUNS / f"none-{seed}.json", "none", seed, 250, 0.80, 0.73, diverged=seed == 2)
        # The study's `after`, which the batch grid does not train: in the family, not in the report.
        write_record(STUDY_RUNS / f"after-{seed}.json", "after", seed, 250, 0.86, 0.77 + seed / 200)
    cells, missing = collect(settings.batch, settings.study, settings.train, recipe(settings))
    assert missing == [] and len(cells) == 15
    summary = summarize(cells, settings.batch.variants)
    assert "after" not in summary["250"]
    assert list(summary) == ["50", "250"]
    split = summary["50"]["split"]["before"]
    assert split["test_accuracy"]["difference"] == pytest.approx(0.03)
    assert split["train_accuracy"]["difference"] == pytest.approx(0.04)
    assert split["gap"]["difference"] == pytest.approx(0.01)
    assert summary["50"]["before"]["gap"]["mean"] == pytest.approx(0.08)
    # A diverged run is counted and kept out of the means and of every comparison.
    assert summary["250"]["none"]["diverged"] == 1 and summary["250"]["none"]["test_accuracy"]["n"] == 2
    assert "comparisons" not in summary["250"] and "split" not in summary["250"]
    pair = summary["50"]["comparisons"]["before_vs_none"]

    def interval(name):
        return f"[{100 * split[name]['ci_low']:+.2f}, {100 * split[name]['ci_high']:+.2f}]"

    assert verdicts(summary) == [
        f"batch 50, before − none: test accuracy +3.00 {interval('test_accuracy')} points (Holm p = "
        f"{pair['p_holm']:.2g}); train accuracy (fitting) +4.00 {interval('train_accuracy')}, gap +1.00 "
        f"{interval('gap')}",
        "batch 250, bn=before: 0 of 3 runs diverged (none: 1); not compared"]
    markdown = render_markdown(summary, settings.batch, settings.study, settings.train, missing, ["12 cells: CPU"], 6.0)
    assert "| 50 | before | 3 | 0.8500 ± 0.0100 | 0.7700 ± 0.0100 | 0.0800 ± 0.0100 |" in markdown
    assert "| 250 | none | 3 (1 diverged) | 0.8000 ± 0.0000 | 0.7300 ± 0.0000 | 0.0700 ± 0.0000 |" in markdown
    assert "| 50 | before − none | paired | +3.00 |" in markdown and "Incomplete" not in markdown
    assert "| 50 | before | +3.00 [" in markdown


def test_missing_cells_are_listed_and_a_record_must_have_its_batch_size(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    settings = params(sizes=(1000,), variants=("before",), seeds=(0, 1), study_seeds=(0, 1))
    for seed in (0, 1):
        for bn in ("before", "after", "none"):
            write_record(STUDY_RUNS / f"{bn}-{seed}.json", bn, seed, 250, 0.85, 0.76)
    write_record(record_path(1000, "before", 0), "before", 0, 1000, 0.8, 0.7)
    cells, missing = collect(settings.batch, settings.study, settings.train, recipe(settings))
    assert missing == ["grids/batch/dvc.yaml:cell@before-1000-1"]
    markdown = render_markdown(summarize(cells, settings.batch.variants), settings.batch, settings.study,
                               settings.train, missing, [], 1.0)
    assert "cells have not run yet** (`dvc repro grids/batch/dvc.yaml`): `grids/batch/dvc.yaml:cell@before-1000-1`" in markdown
    assert "No pair yet" in markdown
    write_record(record_path(1000, "before", 1), "before", 1, 250, 0.8, 0.7)
    with pytest.raises(InputFileError, match=r"1000-before-1.json: records batch_size=250, not the "
                                             r"batch_size=1000 its name says"):
        collect(settings.batch, settings.study, settings.train, recipe(settings))


@pytest.mark.dvc
def test_batch_pipeline_trains_at_its_batch_size_and_reports_beside_the_study(studied_project):
    from test_pipeline import stages_run

    project = studied_project
    ran = stages_run(project.dvc("repro", "grids/batch/dvc.yaml").stdout)
    # The report reads the study's records at train.batch_size; the study's cells are cached.
    assert sorted(s for s in ran if "@" in s) == ["grids/batch/dvc.yaml:cell@before-25-0", "grids/batch/dvc.yaml:cell@none-25-0"]
    assert "grids/batch/dvc.yaml:report" in ran
    record = json.loads((project.root / "reports/batch/runs/25-before-0.json").read_text())
    assert record["train"]["batch_size"] == 25 and record["probes"] is None
    summary = json.loads((project.root / "reports/batch/metrics.json").read_text())
    assert list(summary) == ["25", "50"] and summary["50"]["before"]["n"] == 2 and summary["25"]["none"]["n"] == 1
    assert (project.root / "reports/batch/figures/accuracy_vs_batch_size.png").stat().st_size > 0
    assert "| 25 | before | 1 |" in (project.root / "reports/batch/batch.md").read_text()


def test_one_pair_has_one_adjusted_p_in_every_committed_report():
    """statistics.FAMILY: Holm over every pair of the variants trained at one setting, so a pair at
    the study's setting has the study's adjusted p in the sweep's and the batch grid's reports too."""
    root = Path(__file__).resolve().parents[1]
    study = json.loads((root / "reports/study/metrics.json").read_text())["comparisons"]
    sweep = json.loads((root / "reports/sweep/metrics.json").read_text())["adam"]["0.001"]["comparisons"]
    batch = json.loads((root / "reports/batch/metrics.json").read_text())["250"]["comparisons"]
    for name, pair in batch.items():
        assert pair["p_holm"] == study[name]["p_holm"] == sweep[name]["p_holm"], name
    assert set(sweep) == set(study) and batch


def split_entry(test, train, gap, p_holm):
    """One batch size of the batch report's summary: `before` − `none`, each measure (difference,
    ci_low, ci_high) in fractions, and the test accuracy's Holm p."""
    def measure(values):
        return dict(zip(("difference", "ci_low", "ci_high"), values), test="paired", p_value=p_holm,
                    minimum_detectable=0.01)
    return {"split": {"before": {"test_accuracy": measure(test), "train_accuracy": measure(train), "gap": measure(gap)}},
            "comparisons": {"before_vs_none": {**measure(test), "p_holm": p_holm, "sizes": [3, 3]}}}


def test_the_gain_is_fitting_only_where_every_detected_gain_gains_train_accuracy_detectably():
    from stages.analysis import answer, claims
    fitting = split_entry((0.03, 0.01, 0.05), (0.04, 0.02, 0.06), (0.01, -0.01, 0.03), 0.001)
    # Train accuracy up by 2 points, but its interval includes 0: not a detected fitting gain.
    unsure = split_entry((0.03, 0.01, 0.05), (0.02, -0.01, 0.05), (-0.01, -0.03, 0.01), 0.001)
    assert claims.batch_split({"250": fitting}) is None  # One batch size: nothing to split by size.
    both = claims.batch_split({"50": unsure, "250": fitting})
    assert (both["detected"], both["fitting"], both["narrowed"]) == (["50", "250"], ["250"], [])
    sentence = answer.batch_sentence(both)
    assert "it is fitting" not in sentence and sentence.endswith("widens (CI above 0) at no batch size.")
    assert answer.batch_sentence(claims.batch_split({"50": fitting, "250": fitting})).endswith(
        "where the gain is detected (50, 250), it is fitting: train accuracy gains detectably and the gap does "
        "not narrow.")
