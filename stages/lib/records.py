"""Read back what `train` logged: DVCLive's per-epoch TSVs, the landscape CSV, the run record."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np

HISTORY_METRICS = ("train/loss", "train/accuracy", "val/loss", "val/accuracy", "epoch_seconds")


def read_history(log_dir: Path) -> dict[str, np.ndarray]:
    """Per-epoch values by metric name, e.g. history['val/accuracy'][epoch]."""
    history = {}
    for name in HISTORY_METRICS:
        path = Path(log_dir) / "plots" / "metrics" / f"{name}.tsv"
        with path.open() as handle:
            rows = list(csv.DictReader(handle, delimiter="\t"))
        column = name.rsplit("/", 1)[-1]
        history[name] = np.array([float(row[column]) for row in rows])
    return history


def read_landscape(log_dir: Path) -> dict[str, np.ndarray] | None:
    path = Path(log_dir) / "landscape.csv"
    if not path.is_file():
        return None
    table = np.genfromtxt(path, delimiter=",", names=True, ndmin=1)
    return {name: table[name] for name in table.dtype.names}


def read_run(log_dir: Path) -> dict:
    return json.loads((Path(log_dir) / "run.json").read_text())
