"""The real DVC workflow, end to end, on a tiny synthetic archive in a throwaway git repository."""

import json
import re
import sys

import matplotlib.image
import numpy as np
import pytest

from stages.trainer.cifar import CLASS_NAMES

pytestmark = pytest.mark.dvc


def stages_run(output: str) -> list[str]:
    """Names of the stages that `dvc repro` / `dvc exp run` actually executed."""
    return [line.split("'")[1] for line in output.splitlines() if line.startswith("Running stage")]


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


def test_full_repro_and_bn_experiment(trained_project):
    project = trained_project  # After its first `dvc repro`, which ran every stage, each after its dependencies
    # (check and fetch depend on nothing, so DVC may run either first):
    ran = stages_run(project.first_repro)
    assert sorted(ran[:2]) == ["check", "fetch"] and ran[2:] == ["normalize", "train", "evaluate", "report"]
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
    # The main run's own metrics only, each name with one meaning; the run's numerics are columns.
    names = metric_names(project)
    assert set(names) == {"reports/metrics.json", "reports/train/metrics.json"}
    assert names["reports/train/metrics.json"] == [
        "epoch_seconds", "fit.accuracy", "fit.loss", "fit_seconds", "numerics.backend", "numerics.device",
        "numerics.onednn", "numerics.precision", "numerics.tf32", "step", "val.accuracy", "val.loss"]
    assert len(names["reports/metrics.json"]) == 14  # train/test loss and accuracy, 10 classes.
    run = json.loads((root / "reports/train/run.json").read_text())
    # Record schema 2: what every result carries beside its numbers (docs/pipeline.md, "Records").
    assert run["schema"] == 2 and set(run["code"]) == {"trainer", "variant", "entry"}
    assert all(re.fullmatch(r"[0-9a-f]{64}", digest) for digest in run["code"].values()), run["code"]
    assert re.fullmatch(r"[0-9a-f]{8}-[0-9a-f]{8}", run["environment"]["numerics_fingerprint"])
    assert set(run["git"]) == {"commit", "code_differs"} and run["data"]["data/stats.json"]
    assert run["train"]["device"] == "auto" and run["device_fallback"].startswith(
        "train.device = auto fell back to the CPU: tensorflow registers no GPU")
    assert run["train"]["precision"] == "float32" and (run["steps_per_execution"], run["xla"]) == (1, False)
    environment = run["environment"]
    assert environment["backend"] == "tensorflow" and environment["tensorflow"]
    assert environment["device"].startswith("CPU: ") and environment["tf32"] == "not applicable"
    assert stages_run(project.dvc("repro").stdout) == []  # Everything is cached: nothing re-runs.
    project.commit("baseline results")

    experiment = project.dvc("exp", "run", "-S", "bn=after")
    # The params check first (bn changed), then the stages that depend on bn.
    assert stages_run(experiment.stdout) == ["check", "train", "evaluate", "report"]
    assert "bn=after" in (root / "reports/report.md").read_text()
    # DVC's own edit of params.yaml is the params, not a "dirty" tree: the record names the commit
    # it ran on and that no file that can change a number differed from it.
    head = project.run("git", "rev-parse", "HEAD").stdout.strip()
    record = json.loads((root / "reports/train/run.json").read_text())
    assert record["bn"] == "after" and record["git"] == {"commit": head, "code_differs": False}
    assert record["environment"]["git_commit"] == head
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
