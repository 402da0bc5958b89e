"""The real DVC workflow, end to end, on a tiny synthetic archive in a throwaway git repository."""

import json
import sys

import numpy as np
import pytest

from stages.lib.cifar import load_split

pytestmark = pytest.mark.dvc


def stages_run(output: str) -> list[str]:
    """Names of the stages that `dvc repro` / `dvc exp run` actually executed."""
    return [line.split("'")[1] for line in output.splitlines() if line.startswith("Running stage")]


def test_repro_normalize_then_nothing_to_do(project):
    first = project.dvc("repro", "normalize")
    assert stages_run(first.stdout) == ["fetch", "normalize"]
    train = load_split(project.root / "data/prepared/train.npz")
    test = load_split(project.root / "data/prepared/test.npz")
    assert train.images.shape == (200, 32, 32, 3) and train.images.dtype == np.uint8
    assert test.images.shape == (40, 32, 32, 3)
    assert np.bincount(train.labels).tolist() == [20] * 10
    statistics = json.loads((project.root / "data/stats.json").read_text())
    assert statistics["mode"] == "global"
    assert statistics["mean"][0] == pytest.approx(train.images.mean(dtype=np.float64), abs=1e-9)
    second = project.dvc("repro", "normalize")
    assert stages_run(second.stdout) == []


def metric_names(project) -> dict[str, list[str]]:
    """`dvc metrics show`'s columns, per file."""
    def flatten(tree, prefix=""):
        for key, value in tree.items():
            if isinstance(value, dict):
                yield from flatten(value, f"{prefix}{key}.")
            elif not isinstance(value, list):
                yield prefix + key
    shown = json.loads(project.dvc("metrics", "show", "--json").stdout)
    return {path: sorted(flatten(entry["data"])) for path, entry in shown[""]["data"].items()}


def test_full_repro_and_bn_experiment(project):
    project.dvc("repro")
    root = project.root
    for output in ("models/model.keras", "reports/metrics.json", "reports/predictions.csv",
                   "reports/report.md", "reports/train/metrics.json", "reports/train/run.json"):
        assert (root / output).is_file(), output
    # The main run's own metrics only, each name with one meaning; the run's numerics are columns.
    names = metric_names(project)
    assert set(names) == {"reports/metrics.json", "reports/train/metrics.json"}
    assert names["reports/train/metrics.json"] == [
        "epoch_seconds", "fit.accuracy", "fit.loss", "numerics.device", "numerics.onednn",
        "numerics.precision", "seconds", "step", "val.accuracy", "val.loss"]
    assert len(names["reports/metrics.json"]) == 14  # train/test loss and accuracy, 10 classes.
    assert stages_run(project.dvc("repro").stdout) == []  # Everything is cached: nothing re-runs.
    project.commit("baseline results")

    experiment = project.dvc("exp", "run", "-S", "bn=after")
    assert stages_run(experiment.stdout) == ["train", "evaluate", "report"]
    assert "bn=after" in (root / "reports/report.md").read_text()
    # The README's comparison: experiment, bn, seed, precision, test accuracy and loss in 80 columns.
    lines = project.run(sys.executable, "tools/runs.py").stdout.splitlines()
    assert max(len(line) for line in lines) <= 80
    assert lines[0].split() == ["experiment", "bn", "seed", "precision", "test", "acc", "test", "loss"]
    after = json.loads((root / "reports/metrics.json").read_text())["test"]
    rows = [line.split() for line in lines[1:]]
    assert ["after", "0", "float32", f"{after['accuracy']:.4f}", f"{after['loss']:.4f}"] in [
        row[-5:] for row in rows if row[0] != "workspace"]  # The experiment's own row.

    diff = json.loads(project.dvc("metrics", "diff", "--json").stdout)
    assert "reports/metrics.json" in diff
    plots = project.dvc("plots", "diff", "HEAD", "-o", str(root / "plots_html"))
    assert (root / "plots_html/index.html").is_file()
    assert "WARNING" not in plots.stdout + plots.stderr and "ERROR" not in plots.stderr
