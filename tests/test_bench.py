"""The speed benchmark's two trainers still run on tiny data, and its reference net has bnlab's parameters."""

from __future__ import annotations

import importlib.util
import sys

import numpy as np

from conftest import ROOT, easy_split
from stages.trainer.cifar import Split
from stages.trainer.model import build_model, non_trainable_count
from test_model import MODEL, STATISTICS

spec = importlib.util.spec_from_file_location("train_speed", ROOT / "bench" / "train_speed.py")
train_speed = importlib.util.module_from_spec(spec)
sys.modules[spec.name] = train_speed  # Its dataclasses look their module up there.
spec.loader.exec_module(train_speed)


def tiny_splits() -> tuple[Split, Split]:
    (train_labels, train_images), (test_labels, test_images) = easy_split(200, 0), easy_split(40, 1)
    return Split(train_images, train_labels.astype(np.uint8)), Split(test_images, test_labels.astype(np.uint8))


def test_reference_model_has_bnlabs_parameters():
    """The notebook's 553,850/224 are checked once, on bnlab's model (test_model.py)."""
    reference, ours = train_speed.reference_model(), build_model(MODEL, "before", STATISTICS)
    assert (reference.count_params(), non_trainable_count(reference)) == (
        ours.count_params(), non_trainable_count(ours))


def test_both_approaches_train_and_report_per_epoch_times():
    train, test = tiny_splits()
    for run in (train_speed.run_reference, train_speed.run_ours):
        result = run(train, test, 2, "float32")
        assert len(result["epoch_seconds"]) == 2 and all(s > 0 for s in result["epoch_seconds"])
        assert result["total_seconds"] >= sum(result["epoch_seconds"])
        assert result["precision"] == "float32" and 0.0 <= result["accuracy"] <= 1.0
