"""Every file the main pipeline reads or writes, named once; dvc.yaml lists the same paths. Each
grid's report and records live under reports/<grid>/, named in its module (stages/grids/<grid>.py)."""

from pathlib import Path

ARCHIVE = Path("data/raw/cifar-10-binary.tar.gz")
PREPARED = Path("data/prepared")
TRAIN_SPLIT = PREPARED / "train.npz"
TEST_SPLIT = PREPARED / "test.npz"
STATISTICS = Path("data/stats.json")

MODEL = Path("models/model.keras")
TRAIN_LOG = Path("reports/train")  # DVCLive: metrics.json (summary) and plots/ (per epoch).
METRICS = Path("reports/metrics.json")
PREDICTIONS = Path("reports/predictions.csv")
REPORT = Path("reports/report.md")
FIGURES = Path("reports/figures")
RUN_RECORD = TRAIN_LOG / "run.json"  # Settings, history, timings and numerics of the run.

