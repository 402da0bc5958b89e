"""The norms grid: which cells it allows, and its report's arithmetic and table, from hand-made
records; then the real pipeline on tiny data."""

import argparse
import json
import math
from pathlib import Path

import numpy as np
import pytest
import yaml

from stages.cell import check_args, parse_args
from stages.trainer.errors import InputFileError, ParamsError
from stages.grids.norms import collect, record_path, render_markdown, summarize, trajectories, verdicts
from stages.grids.sections import parse_all as parse_params
from conftest import TINY_MODEL_LAYERS
from locks import recipe, write_bound

COMMITTED = yaml.safe_load((Path(__file__).parents[1] / "params.yaml").read_text())
LAYERS = ("conv1", "bn1", "conv2", "bn2", "conv3", "bn3", "dense", "probabilities")


def raw(seeds=(35,), rates=(0.001, 0.01), variants=("before", "none"), optimizer="adam"):
    return {**COMMITTED, "norms": {"optimizer": optimizer, "learning_rates": list(rates),
                                                "variants": list(variants), "seeds": list(seeds)}}


def params(seeds=(35,), rates=(0.001, 0.01), variants=("before", "none"), optimizer="adam"):
    return parse_params(raw(seeds, rates, variants, optimizer))


# The hand-made records below trained for 4 epochs: the recipe a report binds them to says so.
RECIPE = recipe(parse_params({**raw(), "train": {**COMMITTED["train"], "epochs": 4}}))


@pytest.mark.parametrize("seeds, rates, message", [
    # The study trains seeds 0-4 at Adam 1e-3 (train.learning_rate), the sweep 0 and 1 at 1e-2.
    ((2,), (0.001,), r"norms.seeds lists 2, which study.seeds already trains"),
    ((1, 35), (0.01,), r"norms.seeds lists 1, which sweep.seeds already trains"),
    ((20,), (0.001,), r"norms.seeds lists 20, which placement.seeds already trains"),
])
def test_a_norms_cell_may_not_repeat_another_grids_cell(seeds, rates, message):
    from stages.grids.sections import check_grid
    with pytest.raises(ParamsError, match=message + r".*choose seeds no other grid uses"):
        check_grid(params(seeds=seeds, rates=rates), "norms")
    check_grid(params(seeds=(2,), rates=(0.01,)), "norms")  # Seed 2 at 1e-2: no other grid's.


def cell_args(**overrides):
    """A cell's command line as stages/cell.py parses it (every option at its default), then `overrides`."""
    values = {"grid": "norms", "bn": "before", "seed": 35, "optimizer": "adam", "learning_rate": 0.01,
              "head_input_rms": None, "batch_size": None}
    defaults = vars(parse_args(["--grid", "g", "--bn", "before", "--seed", "0", "--record", "r.json"]))
    return argparse.Namespace(**{**defaults, **values, **overrides})


@pytest.mark.parametrize("overrides, message", [
    ({"optimizer": None}, r"a norms cell needs --optimizer \(its point of the grid"),
    ({"learning_rate": None}, r"a norms cell needs --learning-rate \(its point of the grid"),
    ({"optimizer": "sgd"}, r"--optimizer sgd is not norms.optimizer \(adam\)"),
    ({"learning_rate": 0.003}, r"this cell \(before, 35, 0.003\) is not in the norms grid"),
    ({"bn": "after"}, r"this cell \(after, 35, 0.01\) is not in the norms grid"),
])
def test_a_cell_outside_the_norms_grid_is_refused(overrides, message):
    with pytest.raises(ParamsError, match=message):
        check_args(raw(), cell_args(**overrides))
    check_args(raw(), cell_args())


def write_record(bn, rate, conv_norms, conv_steps, accuracy=0.7, seed=35, weight_norms=True):
    """A record whose three conv layers have norms `conv_norms[i]` (per probe, split equally over
    the layers' squares) and effective step `conv_steps[i]`; BN and dense layers get fixed values."""
    steps = [0, 50, 100, 150]
    per_layer = [n / math.sqrt(3) for n in conv_norms]
    probes = {"step": steps}
    for layer in LAYERS:
        conv = layer.startswith("conv")
        probes[f"effective_step/{layer}"] = list(conv_steps) if conv else [0.01] * len(steps)
        probes[f"gradient_norm/{layer}"] = [1.0] * len(steps)
        if weight_norms:
            probes[f"weight_norm/{layer}"] = per_layer if conv else [2.0, 2.0, 4.0, 4.0]
    path = record_path("adam", rate, bn, seed)
    write_bound(path, {
        "bn": bn, "seed": seed, "model": {}, "train": {"optimizer": "adam", "learning_rate": rate, "epochs": 4},
        "metrics": {"test": {"accuracy": accuracy, "loss": 1.0}, "train": {"accuracy": accuracy + 0.1, "loss": 0.9}},
        "history": {"fit/loss": [2.0, 1.0]}, "probes": probes,
        "landscape": {"diverged": False}, "fit_seconds": 60.0, "environment": {"device": "CPU"}})
    return path


def test_trajectories_join_the_conv_layers_and_the_report_compares_with_no_bn(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    settings = params(rates=(0.01,))
    write_record("before", 0.01, conv_norms=[10, 20, 30, 40], conv_steps=[0.1, 0.05, 0.02, 0.01], accuracy=0.72)
    write_record("none", 0.01, conv_norms=[10, 11, 12, 12], conv_steps=[0.1, 0.08, 0.04, 0.04], accuracy=0.62)
    cells, missing = collect(settings.norms, RECIPE)
    assert missing == []
    paths = trajectories(cells[0])
    # sqrt of the layers' squares summed; the joint step weights each layer's step by its norm.
    np.testing.assert_allclose(paths["conv_norm"], [10, 20, 30, 40])
    np.testing.assert_allclose(paths["conv_effective_step"], [0.1, 0.05, 0.02, 0.01])
    np.testing.assert_allclose(paths["head_norm"], np.sqrt(2) * np.array([2.0, 2.0, 4.0, 4.0]))
    summary = summarize(cells)
    before = summary["0.01"]["before"]["35"]
    # 4 epochs, last probe at step 150: the last epoch's probes are those past step 112.5.
    assert before["conv"] == {"norm_start": 10.0, "norm_end": 40.0, "norm_growth": 4.0,
                              "effective_step_start": 0.1, "effective_step_end": 0.01}
    assert before["head"]["norm_growth"] == pytest.approx(2.0)
    assert verdicts(summary, "adam") == [
        "adam 0.01, bn=before: conv kernels ×4.00 over training (bn=none: ×1.20); effective step "
        "in the last epoch 0.01 (0.25× bn=none's 0.04)"]
    markdown = render_markdown(summary, settings.norms, cells, missing, ["2 cells: CPU"])
    assert "| before | 0.7200 (one run) | 10 → 40 | ×4 | 0.1 → 0.01 | ×2 | 0.01 | 0 of 1 |" in markdown
    assert "| none | 0.6200 (one run) | 10 → 12 | ×1.2 | 0.1 → 0.04 | ×2 | 0.01 | 0 of 1 |" in markdown
    assert "Incomplete" not in markdown and "- 2 cells: CPU" in markdown


def test_the_report_lists_cells_not_run_and_refuses_records_without_weight_norms(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    settings = params(rates=(0.01,))
    with pytest.raises(InputFileError, match=r"no cell of the norms grid has run yet: run `dvc repro grids/norms/dvc.yaml`"):
        collect(settings.norms, RECIPE)
    write_record("before", 0.01, [1, 2, 3, 4], [0.1] * 4)
    cells, missing = collect(settings.norms, RECIPE)
    assert missing == ["grids/norms/dvc.yaml:cell@none-0.01-35"]
    assert "**Incomplete: 1 cells have not run yet**" in render_markdown(summarize(cells), settings.norms,
                                                                         cells, missing, [])
    path = write_record("none", 0.01, [1, 2, 3, 4], [0.1] * 4, weight_norms=False)
    with pytest.raises(InputFileError, match=rf"{path}: has no weight_norm columns in its probes"):
        collect(settings.norms, RECIPE)


def test_record_names_follow_dvcs_matrix_names():
    assert record_path("adam", 0.001, "before", 35).name == "adam-0.001-before-35.json"


def test_a_record_that_is_not_its_cell_is_refused(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    write_record("before", 0.01, [1, 2, 3, 4], [0.1] * 4, seed=36).rename(record_path("adam", 0.01, "before", 35))
    with pytest.raises(InputFileError, match=r"adam-0.01-before-35.json: records seed=36, not the seed=35"):
        collect(params(rates=(0.01,)).norms, RECIPE)


@pytest.mark.dvc
def test_norms_pipeline_records_weight_norms_and_reports_them(project):
    from test_pipeline import stages_run

    project.set_params(norms={"optimizer": "adam", "learning_rates": [0.01], "variants": ["before", "none"],
                              "seeds": [35]})
    ran = stages_run(project.dvc("repro", "grids/norms/dvc.yaml").stdout)
    assert sorted(s for s in ran if "@" in s) == ["grids/norms/dvc.yaml:cell@before-0.01-35",
                                                  "grids/norms/dvc.yaml:cell@none-0.01-35"]
    assert "grids/norms/dvc.yaml:report" in ran
    record = json.loads((project.root / "reports/norms/runs/adam-0.01-before-35.json").read_text())
    weights = {key for key in record["probes"] if key.startswith("weight_norm/")}
    assert weights == {f"weight_norm/{layer}" for layer in TINY_MODEL_LAYERS}  # The tiny project's net.
    assert all(value > 0 for key in weights for value in record["probes"][key])
    summary = json.loads((project.root / "reports/norms/metrics.json").read_text())
    assert set(summary["0.01"]) == {"before", "none"}
    assert (project.root / "reports/norms/figures/weight_norms.png").stat().st_size > 0
    assert "## adam, learning rate 0.01" in (project.root / "reports/norms/norms.md").read_text()


def seed_summary(growth: float, step_end: float, diverged: bool = False, accuracy: float = 0.7) -> dict:
    """One seed as summarize_cell gives it: conv kernels growing ×growth, ending at step_end."""
    conv = {"norm_start": 10.0, "norm_end": 10.0 * growth, "norm_growth": growth, "effective_step_start": 0.1,
            "effective_step_end": step_end}
    return {"test_accuracy": accuracy, "train_accuracy": accuracy + 0.1, "diverged": diverged, "conv": conv,
            "head": {**conv, "norm_growth": 1.5}}


def test_a_diverged_seed_is_counted_and_left_out_of_every_mean():
    from stages.analysis import claims
    from stages.grids.norms import mean_over_seeds, trained_accuracy
    summary = {"0.01": {"before": {"35": seed_summary(2.0, 0.01), "36": seed_summary(4.0, 0.03),
                                   "37": seed_summary(100.0, 5.0, diverged=True, accuracy=0.1)},
                        "none": {seed: seed_summary(1.5, 0.04) for seed in ("35", "36", "37")}}}
    before = summary["0.01"]["before"]
    assert mean_over_seeds(before, "conv", "norm_growth") == 3.0
    assert (trained_accuracy(before)["n"], trained_accuracy(before)["diverged"]) == (2, 1)
    assert verdicts(summary, "adam") == ["adam 0.01, bn=before: conv kernels ×3.00 over training (bn=none: ×1.50); "
                                         "effective step in the last epoch 0.02 (0.50× bn=none's 0.04)"]
    row = claims.norms_rows(summary)[0]
    assert (row["growth"], row["end"], row["versus"]) == (3.0, 0.02, 0.5)


def test_scale_invariance_holds_only_where_bn_outgrows_none_and_takes_smaller_steps():
    """With three seeds the answer reads the norms: 'they outgrow `none`'s and take smaller
    relative steps' where both hold, and names the rates where either fails."""
    from stages.analysis import answer, claims

    def rate(before_growth, before_step):
        return {"before": {s: seed_summary(before_growth, before_step) for s in ("35", "36", "37")},
                "none": {s: seed_summary(2.0, 0.04) for s in ("35", "36", "37")}}

    # 0.001: BN's kernels grow less (a smaller step alone is not scale invariance); 0.01: both hold.
    scale = claims.scale_invariance({"0.001": rate(1.5, 0.02), "0.01": rate(4.0, 0.02)})
    assert [entry["holds"] for entry in scale["rates"]] == [False, True] and scale["tested"]
    assert answer.scale_sentence(scale).endswith("in the means over seeds they outgrow `none`'s and take smaller "
                                                 "relative steps at 0.01, not at 0.001 (not tested).")
    # No quantifier without a test: the rates are named, never "at every rate" or "at no rate".
    assert answer.scale_sentence(claims.scale_invariance({"0.01": rate(4.0, 0.02)})).endswith(
        "relative steps at 0.01 (not tested).")
    assert answer.scale_sentence(claims.scale_invariance({"0.01": rate(4.0, 0.05)})).endswith(
        "do not both outgrow `none`'s and take smaller relative steps at 0.01 (not tested).")
