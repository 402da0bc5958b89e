"""The real DVC workflow, end to end, on a tiny synthetic archive in a throwaway git repository."""

import json

import matplotlib.image
import numpy as np
import pytest

from stages.lib.cifar import CLASS_NAMES

pytestmark = pytest.mark.dvc


def stages_run(output: str) -> list[str]:
    """Names of the stages that `dvc repro` / `dvc exp run` actually executed."""
    return [line.split("'")[1] for line in output.splitlines() if line.startswith("Running stage")]


def test_full_repro_and_bn_experiment(project):
    project.dvc("repro")
    root = project.root
    for output in ("models/model.keras", "reports/metrics.json", "reports/predictions.csv",
                   "reports/report.md", "reports/train/metrics.json", "reports/train/run.json"):
        assert (root / output).is_file(), output
    for figure in ("samples", "curves", "confusion", "per_class"):
        image = matplotlib.image.imread(root / f"reports/figures/{figure}.png")
        assert image.ndim == 3 and image.shape[0] >= 200 and image[..., :3].std() > 0, figure
    metrics = json.loads((root / "reports/metrics.json").read_text())
    # The stages agree with each other: train's last validation is evaluate's test score, and the
    # predictions file, the per-class accuracies and the report all hold the same numbers.
    watched = json.loads((root / "reports/train/metrics.json").read_text())["val"]
    assert watched["accuracy"] == pytest.approx(metrics["test"]["accuracy"], abs=1e-6)
    rows = np.loadtxt(root / "reports/predictions.csv", delimiter=",", dtype=str, skiprows=1)
    assert len(rows) == 40
    assert np.mean(rows[:, 0] == rows[:, 1]) == pytest.approx(metrics["test"]["accuracy"], abs=1e-6)
    assert metrics["test"]["per_class_accuracy"] == pytest.approx(
        {name: np.mean(rows[rows[:, 0] == name, 1] == name) for name in CLASS_NAMES}, abs=1e-6)
    report = (root / "reports/report.md").read_text()
    for split in ("train", "test"):
        assert f"| {split} | {metrics[split]['loss']:.4f} | {metrics[split]['accuracy']:.4f} |" in report
    assert stages_run(project.dvc("repro").stdout) == []  # Everything is cached: nothing re-runs.
    project.commit("baseline results")

    experiment = project.dvc("exp", "run", "-S", "bn=after")
    assert stages_run(experiment.stdout) == ["train", "evaluate", "report"]
    after = json.loads((root / "reports/metrics.json").read_text())
    assert after != metrics  # Another model, other numbers.
    report = (root / "reports/report.md").read_text()
    assert "bn=after" in report and "| bn1 | 64 | 64 | ok |" in report

    diff = project.dvc("metrics", "diff", "--json").stdout
    assert "reports/metrics.json" in json.loads(diff)
    shown = project.dvc("exp", "show", "--no-pager", "--csv").stdout
    assert "bn" in shown.splitlines()[0] and "test.accuracy" in shown.splitlines()[0]
    plots = project.dvc("plots", "diff", "HEAD", "-o", str(root / "plots_html"))
    assert (root / "plots_html/index.html").is_file(), plots.stdout
