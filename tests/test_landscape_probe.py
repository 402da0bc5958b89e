"""The landscape probe measures exactly the mini-batch and weights of the step about to be trained."""

import dataclasses

import keras
import numpy as np
import pytest
import yaml
from dvclive import Live

from conftest import ROOT, easy_split
from stages.lib.cifar import Split, pixel_statistics
from stages.lib.landscape import LandscapeProbe, measure, model_loss_and_gradient
from stages.lib.model import build_model
from stages.lib.params import parse_params
from stages.lib.training import epoch_orders, fit, seed_everything

PARAMS = parse_params(yaml.safe_load((ROOT / "params.yaml").read_text()))
# 180 examples in batches of 50: steps of 50, 50, 50 and 30 examples per epoch, 8 steps in all.
EXAMPLES, BATCH, EPOCHS, EVERY = 180, 50, 2, 3
BATCH_SIZES = [50, 50, 50, 30] * EPOCHS


class StepLosses(keras.callbacks.Callback):
    """Each training step's own loss, recovered from Keras' running, size-weighted epoch mean."""

    def __init__(self) -> None:
        super().__init__()
        self.means: list[float] = []

    def on_train_batch_end(self, batch, logs=None):
        self.means.append(float(logs["loss"]))

    def losses(self) -> list[float]:
        losses, seen, previous = [], 0, 0.0
        for step, mean in enumerate(self.means):
            if step % 4 == 0:  # A new epoch restarts the mean.
                seen, previous = 0, 0.0
            size = BATCH_SIZES[step]
            losses.append((mean * (seen + size) - previous * seen) / size)
            seen, previous = seen + size, mean
        return losses


class FirstStepMeasure(keras.callbacks.Callback):
    """At step 0, after the probe: the paper's measures on the first `BATCH` examples of the epoch
    order, at the step sizes the probe should use (multiples of the learning rate)."""

    def __init__(self, train: Split, orders: np.ndarray, step_sizes: list[float]) -> None:
        super().__init__()
        self.images, self.labels = train.images[orders[0][:BATCH]], train.labels[orders[0][:BATCH]]
        self.step_sizes, self.values = step_sizes, None

    def on_train_batch_begin(self, batch, logs=None):
        if self.values is None:
            weights = [v.value for v in self.model.trainable_variables]
            loss_and_gradient = model_loss_and_gradient(self.model, self.images, self.labels.astype(np.int32))
            measured = measure(loss_and_gradient, weights, self.step_sizes)
            self.values = {name: float(value) for name, value in measured.items()}


def test_probe_measures_the_batch_and_weights_of_the_next_step(tmp_path):
    labels, images = easy_split(EXAMPLES, 1)
    train = Split(images, labels.astype(np.uint8))
    labels, images = easy_split(40, 2)
    validation = Split(images, labels.astype(np.uint8))
    train_params = dataclasses.replace(PARAMS.train, epochs=EPOCHS, batch_size=BATCH, learning_rate=0.01,
                                       precision="float32")
    landscape = dataclasses.replace(PARAMS.landscape, every_steps=EVERY, step_sizes=[0.5, 2.0])
    model_params = dataclasses.replace(PARAMS.model, filters=[4, 8], dense_units=16)
    seed_everything(0, deterministic=True)
    model = build_model(model_params, "before", pixel_statistics(train.images, "global"))
    orders = epoch_orders(EXAMPLES, EPOCHS, seed=0)
    probe = LandscapeProbe(train, orders, landscape, train_params)
    step_losses = StepLosses()
    first = FirstStepMeasure(train, orders, [0.005, 0.02])
    with Live(str(tmp_path), dvcyaml=False, save_dvc_exp=False) as live:
        fit(model, train, validation, train_params, orders, live, [probe, first, step_losses])

    # Steps 0, 3 (the epoch's short last batch) and 6 (the third batch of the second epoch).
    assert [record["step"] for record in probe.records] == [0, 3, 6]
    trained = step_losses.losses()
    assert len(trained) == len(BATCH_SIZES)
    # Dropout masks included, the probe's forward pass is the training step's own: same loss.
    for record in probe.records:
        assert record["loss"] == pytest.approx(trained[record["step"]], rel=1e-4, abs=1e-5), record["step"]
    assert probe.records[0] == pytest.approx({"step": 0, **first.values}, rel=1e-5)


def test_summary_is_the_median_of_each_measure():
    labels, images = easy_split(10, 0)
    probe = LandscapeProbe(Split(images, labels.astype(np.uint8)), epoch_orders(10, 1, seed=0),
                           PARAMS.landscape, PARAMS.train)
    probe.records = [{"beta": b, "loss_min": lo, "loss_max": hi, "grad_change_max": g}
                     for b, lo, hi, g in [(5.0, 1.0, 1.5, 0.1), (1.0, 2.0, 2.1, 0.3), (3.0, 0.5, 0.7, 0.2)]]
    assert probe.summary() == pytest.approx({"beta_median": 3.0, "loss_range_median": 0.2,
                                             "grad_change_max_median": 0.2, "probes": 3})
