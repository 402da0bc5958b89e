"""The head grid: which cells it allows, its report (with, without, paired) from hand-made records,
and the real pipeline on tiny data."""

import argparse
import json
from pathlib import Path

import pytest
import yaml

from stages.cell import check_args, parse_args
from stages.trainer.errors import InputFileError, ParamsError
from stages.grids.head import collect, record_path, render_markdown, summarize, twins, verdicts
from stages.grids.sections import parse_all as parse_params
from locks import recipe, write_bound
from stages.grids.sweep import record_path as sweep_record_path

COMMITTED = yaml.safe_load((Path(__file__).parents[1] / "params.yaml").read_text())


def raw(rates=(0.1, 0.3), variants=("before", "none"), seeds=(0, 1, 2)):
    return {**COMMITTED, "head": {"optimizer": "sgd", "learning_rates": list(rates),
                                               "variants": list(variants), "seeds": list(seeds),
                                               "head_input_rms": 0.3}}


def params(rates=(0.1, 0.3), variants=("before", "none"), seeds=(0, 1, 2)):
    return parse_params(raw(rates, variants, seeds))


def cell_args(**overrides):
    """A cell's command line as stages/cell.py parses it (every option at its default), then `overrides`."""
    values = {"grid": "head", "bn": "before", "seed": 0, "optimizer": "sgd", "learning_rate": 0.3,
              "head_input_rms": 0.3, "batch_size": None}
    defaults = vars(parse_args(["--grid", "g", "--bn", "before", "--seed", "0", "--record", "r.json"]))
    return argparse.Namespace(**{**defaults, **values, **overrides})


@pytest.mark.parametrize("overrides, message", [
    ({"head_input_rms": None}, r"a head cell needs --head-input-rms \(its point of the grid"),
    ({"grid": "sweep", "learning_rate": 0.1}, r"--head-input-rms is not a setting of the sweep grid"),
    ({"head_input_rms": 0.5}, r"--head-input-rms 0.5 is not head.head_input_rms \(0.3\)"),
    ({"optimizer": "adam"}, r"--optimizer adam is not head.optimizer \(sgd\)"),
    ({"seed": 7}, r"this cell \(before, 7, 0.3\) is not in the head grid"),
])
def test_a_cell_outside_the_head_grid_is_refused(overrides, message):
    with pytest.raises(ParamsError, match=message):
        check_args(raw(), cell_args(**overrides))
    check_args(raw(), cell_args())


def write_record(path, bn, seed, rate, accuracy, diverged=False, rms=None):
    record = {"bn": bn, "seed": seed, "model": {}, "train": {"optimizer": "sgd", "learning_rate": rate},
              "metrics": {"test": {"accuracy": accuracy, "loss": 1.0}, "train": {"accuracy": accuracy, "loss": 0.9}},
              "history": {"fit/loss": [2.0, float("nan") if diverged else 1.0]}, "probes": None,
              "landscape": {"diverged": diverged}, "fit_seconds": 30.0, "environment": {"device": "CPU"}}
    if rms is not None:
        record["head_input"] = {"rms_before": rms, "scale": 0.3 / rms, "target_rms": 0.3}
        record["model"]["head_input_rms"] = 0.3
    write_bound(path, record)


def test_the_report_sets_each_cell_beside_its_sweep_twin(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    settings = params(rates=(0.3,))
    # With the intervention: `before` trains at 0.3 in all three seeds, `none` too.
    for seed, (before, none) in enumerate([(0.70, 0.66), (0.72, 0.67), (0.71, 0.65)]):
        write_record(record_path("sgd", 0.3, "before", seed), "before", seed, 0.3, before, rms=1.1)
        write_record(record_path("sgd", 0.3, "none", seed), "none", seed, 0.3, none, rms=0.3)
    # Without (the sweep, seeds 0 and 1): `before` diverged in both, `none` in one.
    write_record(sweep_record_path("sgd", 0.3, "before", 0), "before", 0, 0.3, 0.1, diverged=True)
    write_record(sweep_record_path("sgd", 0.3, "before", 1), "before", 1, 0.3, 0.1, diverged=True)
    write_record(sweep_record_path("sgd", 0.3, "none", 0), "none", 0, 0.3, 0.1, diverged=True)
    write_record(sweep_record_path("sgd", 0.3, "none", 1), "none", 1, 0.3, 0.69)
    cells, missing = collect(settings.head, recipe(settings))
    assert missing == [] and len(cells) == 6
    summary = summarize(cells, twins(settings.head, recipe(settings)))
    assert summary["with"]["0.3"]["before"]["diverged"] == 0 and summary["without"]["0.3"]["before"]["diverged"] == 2
    # Paired over seeds where neither run diverged: only none's seed 1 (0.67 − 0.69).
    assert summary["paired"]["0.3"]["none"]["difference"]["mean"] == pytest.approx(-0.02)
    assert summary["paired"]["0.3"]["before"]["difference"] is None
    assert summary["paired"]["0.3"]["before"]["rms_before"] == pytest.approx(1.1)
    pair = summary["with"]["0.3"]["comparisons"]["before_vs_none"]
    assert pair["difference"] == pytest.approx(0.05)
    assert verdicts(summary, settings.head) == [
        f"sgd 0.3, bn=before: 0 of 3 runs diverged with the head's input at RMS 0.3 (2 of 2 without, Fisher "
        f"exact p = 0.1); before − none +5.00 points, 95% CI [{100 * pair['ci_low']:+.2f}, {100 * pair['ci_high']:+.2f}], "
        f"Holm p = {pair['p_holm']:.2g}",
        # Fisher's exact test of 0 of 3 against 2 of 2: 1 / C(5, 2).
        "sgd 0.3, BN variants together (before): 0 of 3 runs diverged with the intervention, 2 of 2 without, "
        "Fisher exact p = 0.1"]
    markdown = render_markdown(summary, settings.head, missing, ["6 cells: CPU"], 3.0)
    assert "| 0.3 | before | 1.100 | 2 of 2 diverged | 0.7100 ± 0.0100 (n=3) | – |" in markdown
    assert "| 0.3 | none | 0.300 | 0.6900 (one run), 1 of 2 diverged | 0.6600 ± 0.0100 (n=3) | one pair: not tested |" in markdown
    assert "| 0.3 | before − none | paired | +5.00 |" in markdown and "Incomplete" not in markdown
    # Two pairs: a mean and a spread, worded as not tested (fewer than three runs per arm).
    summary["paired"]["0.3"]["none"]["difference"] = {"mean": -0.02, "std": 0.01, "n": 2}
    markdown = render_markdown(summary, settings.head, missing, ["6 cells: CPU"], 3.0)
    assert "| 0.6600 ± 0.0100 (n=3) | -2.00 ± 1.00 (n=2): not tested |" in markdown


def test_missing_cells_are_listed_and_a_twin_must_be_what_its_name_says(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    settings = params(rates=(0.3,), variants=("before",), seeds=(0, 1))
    write_record(record_path("sgd", 0.3, "before", 0), "before", 0, 0.3, 0.7, rms=1.1)
    cells, missing = collect(settings.head, recipe(settings))
    assert missing == ["grids/head/dvc.yaml:cell@before-0.3-1"]
    markdown = render_markdown(summarize(cells, twins(settings.head, recipe(settings))), settings.head, missing, [], 1.0)
    assert "No pair yet: no two variants at one rate have two seeds each" in markdown
    assert "| rate | pair |" not in markdown
    write_record(sweep_record_path("sgd", 0.3, "before", 0), "before", 0, 0.1, 0.7)
    with pytest.raises(InputFileError, match=r"sgd-0.3-before-0.json: records learning_rate=0.1, not the "
                                        r"learning_rate=0.3 its name says"):
        twins(settings.head, recipe(settings))


@pytest.mark.dvc
def test_head_pipeline_scales_the_head_input_and_reports_beside_the_twin(project):
    from test_pipeline import stages_run

    project.set_params(head={"optimizer": "sgd", "learning_rates": [0.1], "variants": ["before"],
                             "seeds": [0], "head_input_rms": 0.3},
                       sweep={"seeds": [0], "adam": {"variants": ["before"], "learning_rates": [0.01]},
                              "sgd": {"variants": ["before"], "learning_rates": [0.1]}})
    ran = stages_run(project.dvc("repro", "grids/head/dvc.yaml").stdout)
    # The report reads the sweep's records (the twins): DVC trains the sweep's cells first.
    assert sorted(s for s in ran if "@" in s) == ["grids/head/dvc.yaml:cell@before-0.1-0",
                                                  "grids/sweep/dvc.yaml:adam@before-0.01-0",
                                                  "grids/sweep/dvc.yaml:sgd@before-0.1-0"]
    assert "grids/head/dvc.yaml:report" in ran
    record = json.loads((project.root / "reports/head/runs/sgd-0.1-before-0.json").read_text())
    assert record["model"]["head_input_rms"] == 0.3 and record["head_input"]["target_rms"] == 0.3
    assert record["head_input"]["scale"] == pytest.approx(0.3 / record["head_input"]["rms_before"])
    summary = json.loads((project.root / "reports/head/metrics.json").read_text())
    assert summary["without"]["0.1"]["before"]["n"] == 1 and summary["with"]["0.1"]["before"]["n"] == 1
    assert "sgd 0.1, bn=before:" in (project.root / "reports/head/head.md").read_text()
