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
import keras
from dvclive import Live

from conftest import easy_split, tensorflow_only
from stages.lib import experiment
from stages.lib.cifar import Split, pixel_statistics
from stages.lib.landscape import LandscapeProbe, layer_of, measure
from stages.lib.model import build_model
from stages.lib.params import read_params
from stages.lib.experiment import train_variant
from stages.lib.backend import seed_everything
from stages.lib.training import batch_indices, epoch_orders, execution_steps, fit, steps_for

PARAMS = read_params()


def split(count, seed):
    labels, images = easy_split(count, seed)
    return Split(images, labels.astype(np.uint8))


def train_once(tmp_path, seed=0, epochs=1, bn="before", probe=False, name="run", precision="float32",
               **train_settings):
    """Train exactly as the `train` and `cell` stages do; return (model, DVCLive summary, probes)."""
    train, test = split(200, 1), split(100, 2)
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
    _, logged, _ = train_once(tmp_path, epochs=6, precision=precision)
    assert logged["val"]["accuracy"] >= 0.6  # Chance is 0.1.


@tensorflow_only
@pytest.mark.parametrize("setting, expected", [(None, ("1", "True")), ("0", ("0", "False"))])
def test_stages_turn_onednn_on_unless_told_otherwise(setting, expected):
    """A fresh process, as a stage is: importing `stages` before TensorFlow decides oneDNN."""
    env = {key: value for key, value in os.environ.items() if key != "TF_ENABLE_ONEDNN_OPTS"}
    if setting is not None:
        env["TF_ENABLE_ONEDNN_OPTS"] = setting
    code = ("import os; from stages.lib.device import onednn_enabled; "
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
    with pytest.raises(ValueError, match=r"^train.steps_per_execution = 3 does not divide the 200 steps "
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

    from stages.lib import model as model_module

    monkeypatch.setattr(model_module, "PairwiseMaxPooling2D", keras.layers.MaxPooling2D)
    with pytest.raises(tf.errors.UnimplementedError, match="deterministic"):
        train_once(tmp_path, seed=7, precision="float32", jit_compile=True)


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
