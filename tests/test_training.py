"""The real training path (`fit` as `train` runs it) on tiny fake data, and the landscape probe."""

import dataclasses
import math
import os
import subprocess
import sys
from pathlib import Path

import keras
import numpy as np
import pytest
import tensorflow as tf
from dvclive import Live

from conftest import easy_split
from stages.lib import experiment
from stages.lib.cifar import Split, pixel_statistics
from stages.lib.landscape import LandscapeProbe, layer_of, measure
from stages.lib.model import build_model
from stages.lib.params import read_params
from stages.lib.experiment import train_variant
from stages.lib.training import batch_indices, epoch_orders, fit, seed_everything, steps_for

PARAMS = read_params()


def split(count, seed):
    labels, images = easy_split(count, seed)
    return Split(images, labels.astype(np.uint8))


def train_once(tmp_path, seed=0, epochs=1, bn="before", probe=False, name="run", precision="float32"):
    """Train exactly as the `train` and `cell` stages do; return (model, DVCLive summary, probes)."""
    train, test = split(200, 1), split(100, 2)
    train_params = dataclasses.replace(PARAMS.train, epochs=epochs, batch_size=50, precision=precision)
    landscape = dataclasses.replace(PARAMS.landscape, every_steps=2) if probe else None
    with Live(str(tmp_path / name), dvcyaml=False, save_dvc_exp=False) as live:
        model, record, probe_callback = train_variant(
            PARAMS.model, train_params, bn, seed, pixel_statistics(train.images, "global"),
            train, test, landscape, live)
        logged = dict(live.summary)
    assert record["history"]["val/accuracy"][-1] == logged["val"]["accuracy"]
    return model, logged, [probe_callback] if probe else []


@pytest.mark.parametrize("precision", ["float32", "mixed_bfloat16"])
def test_training_learns_easy_classes(tmp_path, precision):
    _, logged, _ = train_once(tmp_path, epochs=6, precision=precision)
    assert logged["val"]["accuracy"] >= 0.6  # Chance is 0.1.


@pytest.mark.parametrize("setting, expected", [(None, ("1", "True")), ("0", ("0", "False"))])
def test_stages_turn_onednn_on_unless_told_otherwise(setting, expected):
    """A fresh process, as a stage is: importing `stages` before TensorFlow decides oneDNN."""
    env = {key: value for key, value in os.environ.items() if key != "TF_ENABLE_ONEDNN_OPTS"}
    if setting is not None:
        env["TF_ENABLE_ONEDNN_OPTS"] = setting
    code = ("import os; from stages.lib.training import onednn_enabled; "
            "print(os.environ['TF_ENABLE_ONEDNN_OPTS'], onednn_enabled())")
    done = subprocess.run([sys.executable, "-c", code], env=env, cwd=Path(__file__).parents[1],
                          capture_output=True, text=True, check=True)
    assert tuple(done.stdout.split()[-2:]) == expected


def test_same_seed_same_metrics_other_seed_differs(tmp_path):
    _, first, _ = train_once(tmp_path, seed=3, name="a")
    _, second, _ = train_once(tmp_path, seed=3, name="b")
    _, other, _ = train_once(tmp_path, seed=4, name="c")
    for split_name in ("fit", "val"):
        assert first[split_name] == second[split_name]
    assert first["fit"] != other["fit"]


def test_probing_does_not_disturb_training(tmp_path):
    plain, plain_logged, _ = train_once(tmp_path, seed=5, epochs=2, name="plain")
    probed, probed_logged, (probe,) = train_once(tmp_path, seed=5, epochs=2, probe=True, name="probed")
    assert len(probe.records) == 4  # 8 steps, every 2nd step.
    assert plain_logged["val"] == probed_logged["val"] and plain_logged["fit"] == probed_logged["fit"]
    # Weights, BN moving statistics and the dropout RNG state are bit-identical.
    for a, b in zip(plain.variables, probed.variables):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    summary = probe.summary()
    assert summary["probes"] == 4 and summary["beta_median"] > 0 and summary["update_beta_median"] > 0
    assert summary["diverged"] is False and summary["final_loss"] < summary["initial_loss"]
    assert set(summary["effective_step_median"]) == {"conv1", "bn1", "conv2", "bn2", "conv3", "bn3",
                                                     "dense", "probabilities"}


class StepRecorder(keras.callbacks.Callback):
    """The weights before and after every training step, and the loss Keras logs for it."""

    def __init__(self) -> None:
        super().__init__()
        self.steps: list[tuple[list, list, float]] = []

    def weights(self) -> list[np.ndarray]:
        return [keras.ops.convert_to_numpy(keras.ops.copy(v)) for v in self.model.trainable_variables]

    def on_train_batch_begin(self, batch, logs=None):
        self._before = self.weights()

    def on_train_batch_end(self, batch, logs=None):
        self.steps.append((self._before, self.weights(), float(logs["loss"])))


@pytest.mark.parametrize("optimizer, learning_rate", [("adam", 1e-3), ("sgd", 0.05)])
def test_probe_measures_the_batch_and_update_of_the_next_step(tmp_path, optimizer, learning_rate):
    """The probe's loss is Keras' loss of the step that follows (at an epoch's first step Keras'
    running mean is that one batch's loss), and its per-layer step is the one the optimizer takes."""
    train, test = split(200, 1), split(100, 2)
    train_params = dataclasses.replace(PARAMS.train, epochs=2, batch_size=50, optimizer=optimizer,
                                       learning_rate=learning_rate)
    seed_everything(5, train_params.deterministic)
    model = build_model(PARAMS.model, "before", pixel_statistics(train.images, "global"))
    orders = epoch_orders(len(train.labels), train_params.epochs, 5)
    probe = LandscapeProbe(train, orders, dataclasses.replace(PARAMS.landscape, every_steps=2),
                           train_params)
    recorder = StepRecorder()
    with Live(str(tmp_path / "live"), dvcyaml=False, save_dvc_exp=False) as live:
        fit(model, train, test, train_params, orders, live, [probe, recorder])
    layers = [layer_of(v) for v in model.trainable_variables]
    steps_per_epoch = steps_for(len(train.labels), train_params.batch_size)
    assert [record["step"] for record in probe.records] == [0, 2, 4, 6]
    for record in probe.records:
        before, after, logged_loss = recorder.steps[record["step"]]
        if record["step"] % steps_per_epoch == 0:
            assert record["loss"] == pytest.approx(logged_loss, rel=1e-5)
        for layer in dict.fromkeys(layers):
            moved = math.sqrt(sum(np.sum((a - b) ** 2) for a, b, name in zip(after, before, layers)
                                  if name == layer))
            size = math.sqrt(sum(np.sum(b**2) for b, name in zip(before, layers) if name == layer))
            assert record[f"effective_step/{layer}"] == pytest.approx(moved / size, rel=1e-4), layer


def test_rescaled_variant_is_initialized_on_the_first_training_batch(tmp_path, monkeypatch):
    seen = []
    real_init = experiment.data_dependent_init
    monkeypatch.setattr(experiment, "data_dependent_init",
                        lambda model, images: seen.append(images) or real_init(model, images))
    train, test = split(200, 1), split(100, 2)
    train_params = dataclasses.replace(PARAMS.train, epochs=1, batch_size=50)
    with Live(str(tmp_path / "live"), dvcyaml=False, save_dvc_exp=False) as live:
        _, record, _ = train_variant(PARAMS.model, train_params, "rescaled", 7,
                                     pixel_statistics(train.images, "global"), train, test, None, live)
    (images,) = seen
    first_batch = epoch_orders(len(train.labels), 1, seed=7)[0, :50]
    np.testing.assert_array_equal(images, train.images[first_batch])
    assert list(record["initialization"]) == ["conv1", "conv2", "conv3"]
    assert all(layer["std_min_after"] == pytest.approx(1.0, rel=1e-4)
               for layer in record["initialization"].values())


def test_batch_indices_follow_the_epoch_orders():
    orders = epoch_orders(10, 2, seed=0)
    assert sorted(orders[0]) == list(range(10)) and not np.array_equal(orders[0], orders[1])
    assert batch_indices(orders, 0, 4).tolist() == orders[0, :4].tolist()
    assert batch_indices(orders, 2, 4).tolist() == orders[0, 8:].tolist()  # The short last batch.
    assert batch_indices(orders, 3, 4).tolist() == orders[1, :4].tolist()


def test_measures_match_closed_form_on_a_quadratic():
    """L(w) = 1/2 w'Aw: grad = Aw, the gradient moves by eta*A*g, so beta = ||Ag|| / ||g||."""
    generator = np.random.default_rng(0)
    root = generator.normal(size=(5, 5))
    a = root @ root.T + np.eye(5)
    w = generator.normal(size=5)
    step_sizes = [0.01, 0.02, 0.04]
    matrix = tf.constant(a)

    def loss_and_gradient(weights):
        (vector,) = weights
        return 0.5 * tf.tensordot(vector, tf.linalg.matvec(matrix, vector), 1), [tf.linalg.matvec(matrix, vector)]

    got = {k: float(v) for k, v in measure(loss_and_gradient, [tf.constant(w)], step_sizes).items()}
    g = a @ w
    losses = [0.5 * (w - eta * g) @ a @ (w - eta * g) for eta in step_sizes]
    changes = [eta * np.linalg.norm(a @ g) for eta in step_sizes]
    assert got["loss"] == pytest.approx(0.5 * w @ a @ w)
    assert got["loss_min"] == pytest.approx(min(losses)) and got["loss_max"] == pytest.approx(max(losses))
    assert got["grad_change_min"] == pytest.approx(min(changes))
    assert got["grad_change_max"] == pytest.approx(max(changes))
    assert got["beta"] == pytest.approx(np.linalg.norm(a @ g) / np.linalg.norm(g))
