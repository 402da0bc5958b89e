"""Timings as a run records them and the reports publish them: fit time is the epochs' own wall
time (each epoch timed alone, summed), never model.fit's set-up around them (stages/trainer/
training.py); the reports' fit times and cell-minutes are computed from it (stages/analysis/
records.fit_seconds) in the units they name."""

import dataclasses
import time

import keras
import numpy as np
import pytest
from dvclive import Live

from conftest import easy_split
from stages.analysis.cells import Cell, render_markdown, summarize
from stages.analysis.records import fit_seconds
from stages.grids import map as placement_map
from stages.grids.sections import read_all as read_params
from stages.grids.study import MEASURES
from stages.trainer.cifar import Split, pixel_statistics
from stages.trainer.model import build_model
from stages.trainer.training import epoch_orders, fit

PARAMS = read_params()
SET_UP_SECONDS = 0.5  # Slept in model.fit, before the first epoch: not fit time.
FIRST_EPOCH_SECONDS = 1.5  # Slept in the first epoch's first step: that epoch's time only.


class Sleeper(keras.callbacks.Callback):
    def on_train_begin(self, logs=None):
        time.sleep(SET_UP_SECONDS)

    def on_train_batch_end(self, batch, logs=None):
        if not hasattr(self, "slept"):
            self.slept = time.sleep(FIRST_EPOCH_SECONDS)


def test_fit_time_is_the_sum_of_the_epochs_each_timed_alone(tmp_path):
    labels, images = easy_split(100, 1)
    train = Split(images, labels.astype(np.uint8))
    params = dataclasses.replace(PARAMS.train, epochs=2, batch_size=50)
    small = dataclasses.replace(PARAMS.model, filters=[4], dense_units=8)
    model = build_model(small, "none", pixel_statistics(images, "global"))
    with Live(str(tmp_path / "run"), dvcyaml=False, save_dvc_exp=False) as live:
        timings, history = fit(model, train, train, params, epoch_orders(100, 2, 0), live, callbacks=[Sleeper()])
    epochs = history["epoch_seconds"]
    assert timings["fit_seconds"] == pytest.approx(sum(epochs), abs=2e-3)
    assert timings["total_seconds"] >= timings["fit_seconds"] + SET_UP_SECONDS
    # The first epoch holds the sleep; the second, timed from its own start, does not.
    assert epochs[0] >= FIRST_EPOCH_SECONDS > epochs[1]


def test_a_records_fit_time_is_its_fit_seconds_else_the_sum_of_its_epochs():
    assert fit_seconds({"fit_seconds": 30.0, "total_seconds": 41.0, "history": {"epoch_seconds": [9.0, 20.0]}}) == 30.0
    assert fit_seconds({"total_seconds": 41.0, "history": {"epoch_seconds": [9.5, 20.25]}}) == 29.75


def cell(variant: str, seed: int, seconds: float, accuracy: float) -> Cell:
    run = {"bn": variant, "seed": seed, "train": {"epochs": 2}, "fit_seconds": seconds,
           "total_seconds": seconds + 100, "history": {"epoch_seconds": [seconds / 2] * 2},
           "environment": {"device": "CPU"}}
    return Cell(variant, seed, {"test": {"accuracy": accuracy, "loss": 1.0}, "train": {"accuracy": accuracy + 0.1}},
                {"fit/loss": np.array([2.0, 1.0])}, None, run, {})


def test_reports_publish_cell_minutes_from_fit_seconds():
    """The study's report: fit time of all cells in minutes; the map: cell-minutes (sum) and the
    median minutes per cell, of fit_seconds, not of model.fit's total."""
    cells = {"before": [cell("before", s, t, 0.7 + s / 100) for s, t in enumerate((60, 120, 600))],
             "after": [cell("after", s, t, 0.72 + s / 90) for s, t in enumerate((60, 60, 60))]}
    summary, comparisons = summarize(cells, MEASURES)
    assert summary["before"]["fit_seconds"]["mean"] == 260
    markdown = render_markdown(summary, comparisons, cells, with_landscape=False)
    assert "- fit time of the cells (sum of their epochs, probes included): 16.0 min" in markdown.splitlines()
    pairs = {(c.variant, c.seed, None): c for runs in cells.values() for c in runs}
    row = placement_map.summarize_setting(pairs, [3], 0.05, 0.005)
    assert (row["cell_minutes"], row["minutes_per_cell"]) == (16.0, 1.0)
