"""The real training path (`fit` as `train` runs it) on tiny fake data, and the landscape probe."""

import dataclasses
import functools
import math
import os
import subprocess
import sys
from pathlib import Path

import keras
import numpy as np
import pytest
from dvclive import Live

from conftest import easy_split, tensorflow_only
from float32 import UNIT_ROUNDOFF, gradient_sums, kernels_rtol, network_sums
from stages.trainer import experiment
from stages.trainer.cifar import Split, pixel_statistics
from stages.trainer.landscape import LandscapeProbe, layer_of, measure, model_loss_and_gradient
from stages.trainer.model import build_model
from stages.grids.sections import read_all as read_params
from stages.trainer.experiment import train_variant
from stages.trainer.backend import seed_everything
from stages.trainer.training import batch_indices, epoch_orders, execution_steps, fit, steps_for

PARAMS = read_params()


def split(count, seed):
    labels, images = easy_split(count, seed)
    return Split(images, labels.astype(np.uint8))


def train_once(tmp_path, seed=0, epochs=1, bn="before", probe=False, name="run", precision="float32",
               test=None, **train_settings):
    """Train exactly as the `train` and `cell` stages do; return (model, DVCLive summary, probes)."""
    train, test = split(200, 1), test or split(100, 2)
    train_params = dataclasses.replace(PARAMS.train, epochs=epochs, batch_size=50, precision=precision,
                                       **train_settings)
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
    # Validation images of the easy classes, labelled one class off: learning shows as predicting the
    # true class, and the logged validation accuracy must be the one against these (wrong) labels.
    unseen = split(100, 2)
    shifted = Split(unseen.images, ((unseen.labels + 1) % 10).astype(np.uint8))
    model, logged, _ = train_once(tmp_path, epochs=6, precision=precision, test=shifted)
    predicted = model.predict(unseen.images, verbose=0).argmax(axis=1)
    assert np.mean(predicted == unseen.labels) >= 0.6  # Chance is 0.1.
    assert logged["val"]["accuracy"] == pytest.approx(np.mean(predicted == shifted.labels), abs=1e-6)


@tensorflow_only
@pytest.mark.parametrize("setting, expected", [(None, ("1", "True")), ("0", ("0", "False"))])
def test_stages_turn_onednn_on_unless_told_otherwise(setting, expected):
    """A fresh process, as a stage is: importing `stages` before TensorFlow decides oneDNN."""
    env = {key: value for key, value in os.environ.items() if key != "TF_ENABLE_ONEDNN_OPTS"}
    if setting is not None:
        env["TF_ENABLE_ONEDNN_OPTS"] = setting
    code = ("import os; from stages.trainer.device import onednn_enabled; "
            "print(os.environ['TF_ENABLE_ONEDNN_OPTS'], onednn_enabled())")
    done = subprocess.run([sys.executable, "-c", code], env=env, cwd=Path(__file__).parents[1],
                          capture_output=True, text=True, check=True)
    assert tuple(done.stdout.split()[-2:]) == expected


def test_probing_does_not_disturb_training(tmp_path):
    plain, plain_logged, _ = train_once(tmp_path, seed=5, epochs=2, name="plain")
    probed, probed_logged, (probe,) = train_once(tmp_path, seed=5, epochs=2, probe=True, name="probed")
    assert len(probe.records) == 4  # 8 steps, every 2nd step.
    assert plain_logged["val"] == probed_logged["val"] and plain_logged["fit"] == probed_logged["fit"]
    # Weights, BN moving statistics and the dropout RNG state are bit-identical.
    for a, b in zip(plain.variables, probed.variables):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    summary = probe.summary()
    assert summary["probes"] == 4
    # Medians over the probes; a loss range is the highest loss seen minus the lowest.
    per_probe = {"beta": lambda r: r["beta"], "update_beta": lambda r: r["update_beta"],
                 "loss_range": lambda r: r["loss_max"] - r["loss_min"],
                 "update_loss_range": lambda r: r["update_loss_max"] - r["update_loss_min"]}
    for name, value in per_probe.items():
        expected = float(np.median([value(record) for record in probe.records]))
        assert summary[f"{name}_median"] == pytest.approx(expected, rel=1e-5), name
    assert summary["diverged"] is False and summary["final_loss"] < summary["initial_loss"]
    assert set(summary["effective_step_median"]) == {"conv1", "bn1", "conv2", "bn2", "conv3", "bn3",
                                                     "dense", "probabilities"}


class StepRecorder(keras.callbacks.Callback):
    """The weights before and after every training step, and Keras' running mean of the loss."""

    def __init__(self) -> None:
        super().__init__()
        self.steps: list[tuple[list, list, float]] = []

    def weights(self) -> list[np.ndarray]:
        return [keras.ops.convert_to_numpy(keras.ops.copy(v)) for v in self.model.trainable_variables]

    def on_train_batch_begin(self, batch, logs=None):
        self._before = self.weights()

    def on_train_batch_end(self, batch, logs=None):
        self.steps.append((self._before, self.weights(), float(logs["loss"])))

    def step_losses(self, batch_sizes: list[int], steps_per_epoch: int) -> list[float]:
        """Each step's own loss, from Keras' running mean over the epoch (weighted by batch size)."""
        losses, seen, previous = [], 0, 0.0
        for step, (_, _, mean) in enumerate(self.steps):
            if step % steps_per_epoch == 0:
                seen, previous = 0, 0.0
            size = batch_sizes[step]
            losses.append((mean * (seen + size) - previous * seen) / size)
            seen, previous = seen + size, mean
        return losses


class PaperMeasureAtFirstStep(keras.callbacks.Callback):
    """After the probe at step 0: the paper's measures on the first batch of the epoch order, at
    step sizes that are the given multiples of the learning rate."""

    def __init__(self, images, labels, step_sizes: list[float]) -> None:
        super().__init__()
        self.images, self.labels, self.step_sizes, self.values = images, labels, step_sizes, None

    def on_train_batch_begin(self, batch, logs=None):
        if self.values is None:
            weights = [v.value for v in self.model.trainable_variables]
            non_trainable = [v.value for v in self.model.non_trainable_variables]
            loss_and_gradient = model_loss_and_gradient(self.model, non_trainable, self.images, self.labels)
            measured = measure(loss_and_gradient, weights, self.step_sizes)
            self.values = {name: float(value) for name, value in measured.items()}


@pytest.mark.float32
@pytest.mark.parametrize("optimizer, learning_rate, weight_norms", [("adam", 1e-3, True), ("sgd", 0.05, False)])
def test_probe_measures_the_batch_and_update_of_the_next_step(tmp_path, optimizer, learning_rate, weight_norms):
    """The probe's loss is Keras' loss of the step that follows, dropout masks included, at every
    probed step; its step sizes are multiples of the learning rate; its per-layer step is the
    one the optimizer takes; and, where asked (the norms grid), its per-layer weight norm is that
    of the weights the step starts from, and elsewhere there is no such column."""
    # 180 images in batches of 50: 50, 50, 50 and a short 30 per epoch. Probing every 3rd step
    # meets the short batch (step 3) and the second epoch's third batch (step 6).
    train, test = split(180, 1), split(100, 2)
    train_params = dataclasses.replace(PARAMS.train, epochs=2, batch_size=50, optimizer=optimizer,
                                       learning_rate=learning_rate)
    landscape = dataclasses.replace(PARAMS.landscape, every_steps=3, step_sizes=[0.5, 2.0])
    seed_everything(5, train_params.deterministic)
    model = build_model(PARAMS.model, "before", pixel_statistics(train.images, "global"))
    orders = epoch_orders(len(train.labels), train_params.epochs, 5)
    probe = LandscapeProbe(train, orders, landscape, train_params, weight_norms=weight_norms)
    first = orders[0, :50]
    paper = PaperMeasureAtFirstStep(train.images[first], train.labels[first].astype(np.int32),
                                    [0.5 * learning_rate, 2.0 * learning_rate])
    recorder = StepRecorder()
    with Live(str(tmp_path / "live"), dvcyaml=False, save_dvc_exp=False) as live:
        fit(model, train, test, train_params, orders, live, [probe, paper, recorder])
    layers = [layer_of(v) for v in model.trainable_variables]
    assert [record["step"] for record in probe.records] == [0, 3, 6]
    step_losses = recorder.step_losses([50, 50, 50, 30] * 2, steps_per_epoch=4)
    # The probe and the training step compute the same loss and gradient in separate compiled
    # functions, whose kernels may sum in other orders: tolerances from float32 rounding
    # (tests/float32.py). Keras keeps the loss as a float32 running mean over the epoch; taking
    # one step's loss back out of it multiplies that mean's rounding (4 u: the mean and its
    # running total, at two steps) by up to the epoch's 180 images over the shortest batch's 30.
    loss_rtol = kernels_rtol(*network_sums(PARAMS.model, 50)) + 4 * UNIT_ROUNDOFF * 180 / 30
    gradient_rtol = kernels_rtol(*gradient_sums(PARAMS.model, 50))
    for record in probe.records:
        before, after, _ = recorder.steps[record["step"]]
        assert record["loss"] == pytest.approx(step_losses[record["step"]], rel=loss_rtol)
        for layer in dict.fromkeys(layers):
            moved = math.sqrt(sum(np.sum((a - b) ** 2) for a, b, name in zip(after, before, layers)
                                  if name == layer))
            size = math.sqrt(sum(np.sum(b**2) for b, name in zip(before, layers) if name == layer))
            # The step is the optimizer's function of the gradient; its norm (a sum of squares)
            # does not cancel, so the gradient's tolerance carries over.
            assert record[f"effective_step/{layer}"] == pytest.approx(moved / size, rel=gradient_rtol), layer
            if weight_norms:
                terms = sum(b.size for b, name in zip(before, layers) if name == layer)
                assert record[f"weight_norm/{layer}"] == pytest.approx(size, rel=kernels_rtol(terms)), layer
        assert any(key.startswith("weight_norm/") for key in record) == weight_norms
    # The paper's measures: losses along -g as forward passes; gradient changes (and beta, their
    # ratio to the step) are differences of two gradients, whose rounding is relative to the
    # gradient, not to the change: condition |g| / |change|, from the record itself.
    first = probe.records[0]
    condition = first["gradient_norm"] / first["grad_change_min"]
    for name, value in paper.values.items():
        rtol = loss_rtol if name.startswith("loss") else kernels_rtol(*gradient_sums(PARAMS.model, 50),
                                                                        condition=condition)
        assert first[name] == pytest.approx(value, rel=rtol), name


def test_the_seed_decides_the_initial_weights_and_the_data_order(monkeypatch):
    """What `train` and every study cell run (train_variant), stopped where fitting would begin."""
    started = []
    monkeypatch.setattr(experiment, "fit", lambda model, train, validation, params, orders, live, callbacks:
                        started.append((model.get_weights(), orders)) or ({"total_seconds": 0.0}, {}))
    train, test = split(200, 1), split(100, 2)
    for seed in (1, 1, 2):
        train_variant(PARAMS.model, PARAMS.train, "before", seed, pixel_statistics(train.images, "global"),
                      train, test, None, live=None)
    (weights, orders), (same_weights, same_orders), (other_weights, other_orders) = started
    assert all(np.array_equal(a, b) for a, b in zip(weights, same_weights))
    assert np.array_equal(orders, same_orders)
    assert not any(np.array_equal(a, b) for a, b in zip(weights, other_weights) if a.ndim > 1)  # Kernels.
    assert not np.array_equal(orders, other_orders)


@pytest.mark.float32
def test_rescaled_variant_is_initialized_on_the_first_training_batch(tmp_path, monkeypatch):
    seen = []
    from stages.variants import rescaled  # The variant's own module runs the initialization.

    real_init = rescaled.data_dependent_init
    monkeypatch.setattr(rescaled, "data_dependent_init",
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
    # The init's float32 std of each channel sums over the batch's positions (50 x 32 x 32 at most):
    # within float32's rounding of such a sum (tests/float32.py).
    assert all(layer["std_min_after"] == pytest.approx(1.0, rel=kernels_rtol(50 * 32 * 32))
               for layer in record["initialization"].values())


def assert_same_training(first, second):
    (first_model, first_logged, _), (second_model, second_logged, _) = first, second
    assert first_logged["fit"] == second_logged["fit"] and first_logged["val"] == second_logged["val"]
    for a, b in zip(first_model.variables, second_model.variables):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


def test_several_steps_per_execution_train_exactly_as_one(tmp_path):
    one = train_once(tmp_path, seed=6, epochs=2, name="one", precision="float32")
    two = train_once(tmp_path, seed=6, epochs=2, name="two", precision="float32", steps_per_execution=2)
    assert_same_training(one, two)


def test_steps_per_execution_must_divide_the_steps_per_epoch():
    params = dataclasses.replace(PARAMS.train, steps_per_execution=3)
    with pytest.raises(ValueError, match=r"^params.yaml: train.steps_per_execution = 3 does not divide the 200 steps "
                                         r"per epoch; choose one of 1, 2, 4, 5, 8, 10, 20, 25, 40, 50, 100, 200$"):
        execution_steps(params, 200, per_step_callbacks=False)
    assert execution_steps(dataclasses.replace(params, steps_per_execution=8), 200, False) == 8


def test_the_landscape_probe_gets_one_step_per_execution(capsys):
    params = dataclasses.replace(PARAMS.train, steps_per_execution=8)
    assert execution_steps(params, 200, per_step_callbacks=True) == 1
    assert "steps_per_execution 8 -> 1" in capsys.readouterr().out


@tensorflow_only
def test_xla_under_determinism_compiles_and_reproduces(tmp_path):
    """Keras drops XLA whenever TensorFlow's determinism is on; with the pairwise pooling the
    compiled step is deterministic, so bnlab keeps it (training.compile_model)."""
    first = train_once(tmp_path, seed=7, name="a", precision="float32", jit_compile=True)
    second = train_once(tmp_path, seed=7, name="b", precision="float32", jit_compile=True)
    assert first[0].jit_compile and second[0].jit_compile
    assert_same_training(first, second)


@tensorflow_only
def test_xla_under_determinism_fails_with_keras_max_pooling(tmp_path, monkeypatch):
    """Why the pooling is rewritten: XLA has no deterministic MaxPool gradient."""
    import keras
    import tensorflow as tf

    from stages.trainer import model as model_module

    monkeypatch.setattr(model_module, "PairwiseMaxPooling2D", keras.layers.MaxPooling2D)
    with pytest.raises(tf.errors.UnimplementedError, match="deterministic"):
        train_once(tmp_path, seed=7, precision="float32", jit_compile=True)


def test_batch_indices_follow_the_epoch_orders():
    orders = epoch_orders(10, 2, seed=0)
    assert sorted(orders[0]) == list(range(10)) and not np.array_equal(orders[0], orders[1])
    assert np.array_equal(epoch_orders(10, 2, seed=0), orders)
    assert not np.array_equal(epoch_orders(10, 2, seed=1), orders)  # The seed decides the data order.
    assert batch_indices(orders, 0, 4).tolist() == orders[0, :4].tolist()
    assert batch_indices(orders, 2, 4).tolist() == orders[0, 8:].tolist()  # The short last batch.
    assert batch_indices(orders, 3, 4).tolist() == orders[1, :4].tolist()


@pytest.mark.float32
def test_measures_match_closed_form_on_a_quadratic():
    """L(w) = 1/2 w'Aw: grad = Aw, the gradient moves by eta*A*g, so beta = ||Ag|| / ||g||."""
    generator = np.random.default_rng(0)
    root = generator.normal(size=(5, 5))
    a = root @ root.T + np.eye(5)
    w = generator.normal(size=5)
    step_sizes = [0.01, 0.02, 0.04]
    matrix = keras.ops.convert_to_tensor(a, "float32")

    def loss_and_gradient(weights):
        (vector,) = weights
        gradient = keras.ops.matmul(matrix, vector)
        return 0.5 * keras.ops.sum(vector * gradient), [gradient]

    weights = [keras.ops.convert_to_tensor(w, "float32")]
    close = functools.partial(pytest.approx, rel=1e-4)  # float32 on every backend.
    got = {k: float(v) for k, v in measure(loss_and_gradient, weights, step_sizes).items()}
    g = a @ w
    losses = [0.5 * (w - eta * g) @ a @ (w - eta * g) for eta in step_sizes]
    changes = [eta * np.linalg.norm(a @ g) for eta in step_sizes]
    assert got["loss"] == close(0.5 * w @ a @ w)
    assert got["loss_min"] == close(min(losses)) and got["loss_max"] == close(max(losses))
    assert got["grad_change_min"] == close(min(changes))
    assert got["grad_change_max"] == close(max(changes))
    assert got["beta"] == close(np.linalg.norm(a @ g) / np.linalg.norm(g))
