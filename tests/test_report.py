"""The one-run report (stages/report.py render) from a known model, run record and metrics."""

import dataclasses

import pytest
import yaml

from conftest import ROOT
from stages.trainer.model import batch_norm_layers, build_model, non_trainable_count
from stages.grids.sections import read_all as read_params
from stages.report import render

PARAMS = read_params(ROOT / "params.yaml")
# One block of 4 filters and 8 dense units, small enough to count its parameters by hand.
SMALL = dataclasses.replace(PARAMS.model, filters=[4], dense_units=8)
STATISTICS = {"mode": "global", "mean": [0.0], "std": [1.0]}
METRICS = {"train": {"loss": 0.123456, "accuracy": 0.5},
           "test": {"loss": 1.5, "accuracy": 0.25, "per_class_accuracy": {"airplane": 0.5, "cat": 0.0}}}


def run_record(bn: str) -> dict:
    """What `train` recorded: the settings it used, timings and the device."""
    return {"bn": bn, "seed": 7, "model": dataclasses.asdict(SMALL),
            "train": dataclasses.asdict(PARAMS.train),
            "total_seconds": 13.5, "history": {"epoch_seconds": [6.0, 6.34]},
            "environment": {"device": "CPU: test"}}


def report(bn: str, with_landscape: bool) -> list[str]:
    model = build_model(SMALL, bn, STATISTICS)
    return render(run_record(bn), METRICS, model, batch_norm_layers(model),
                  non_trainable_count(model), with_landscape=with_landscape).splitlines()


def test_report_shows_the_runs_scores_settings_and_counts():
    lines = report("after", with_landscape=False)
    assert lines[0] == "# bnlab report: bn=after, seed=7"
    assert "| train | 0.1235 | 0.5000 |" in lines and "| test | 1.5000 | 0.2500 |" in lines
    assert "Per-class test accuracy: airplane 0.500 | cat 0.000" in lines
    # conv 3*3*3*4 (no bias) + BN 4*4 + dense 1024*8+8 + output 8*10+10; BN's moving mean and variance.
    assert "8,414 parameters, 8 non-trainable." in lines
    assert "| bn1 | 16 | 16 | ok |" in lines
    settings = yaml.safe_load("\n".join(lines[lines.index("```yaml") + 1:lines.index("## Environment") - 2]))
    assert (settings["bn"], settings["seed"], settings["model"]["filters"]) == ("after", 7, [4])
    # Fit time: the epochs' sum (this record predates fit_seconds), not model.fit's total around them.
    assert ("- fit time (sum of the epochs): 12.3 s (epochs: 6.0, 6.3 s); model.fit with its set-up and "
            "logging: 13.5 s") in lines
    assert "![landscape](figures/landscape.png)" not in lines


@pytest.mark.parametrize("bn, rows", [("none", ["| (no BN layers: bn=none) | | | |"]),
                                      ("rescaled", ["| (no BN layers: bn=rescaled) | | | |"]),
                                      ("before", ["| bn1 | 16 | 16 | ok |"])])
def test_report_lists_batch_norm_layers_and_the_landscape_figure(bn, rows):
    lines = report(bn, with_landscape=True)
    table = lines.index("| layer | params | 4 x filters | |")
    assert lines[table + 2:table + 2 + len(rows) + 1] == [*rows, ""]
    assert "![landscape](figures/landscape.png)" in lines
