"""The real DVC workflow, end to end, on a tiny synthetic archive in a throwaway git repository."""

import json

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


def test_full_repro_and_bn_experiment(project):
    project.dvc("repro")
    root = project.root
    for output in ("models/model.keras", "reports/metrics.json", "reports/predictions.csv",
                   "reports/report.md", "reports/train/metrics.json", "reports/train/run.json"):
        assert (root / output).is_file(), output
    for figure in ("samples", "curves", "confusion", "per_class"):
        assert (root / f"reports/figures/{figure}.png").stat().st_size > 5_000
    run = json.loads((root / "reports/train/run.json").read_text())
    assert run["device_setting"] == "auto" and run["device_fallback"].startswith(
        "train.device = auto fell back to the CPU: tensorflow registers no GPU")
    assert run["precision"] in ("float32", "mixed_bfloat16")
    assert (run["steps_per_execution"], run["xla"]) == (1, False)
    environment = run["environment"]
    assert environment["backend"] == "tensorflow" and environment["tensorflow"]
    assert environment["device"].startswith("CPU: ") and environment["tf32"] == "not applicable"
    metrics = json.loads((root / "reports/metrics.json").read_text())
    assert set(metrics) == {"train", "test"}
    assert len(metrics["test"]["per_class_accuracy"]) == 10
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
