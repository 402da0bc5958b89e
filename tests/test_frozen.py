"""bn=frozen: BatchNorm for the first steps of training, then fixed statistics (batch_norm.py)."""

import dataclasses

import keras
import numpy as np
import pytest
from dvclive import Live

from conftest import easy_split
from stages.trainer import batch_norm
from stages.trainer.batch_norm import FreezableBatchNormalization
from stages.trainer.cifar import Split, pixel_statistics
from stages.trainer.experiment import train_variant
from stages.trainer.landscape import model_loss_and_gradient
from stages.trainer.model import batch_norm_layers
from stages.grids.sections import read_all as read_params

PARAMS = read_params()
STEPS = 8  # 200 images in batches of 50, for 2 epochs.


def split(count, seed):
    labels, images = easy_split(count, seed)
    return Split(images, labels.astype(np.uint8))


def train(tmp_path, bn, freeze_after_steps, probe=False, name="run"):
    """Train exactly as `train` and the cells do; return (model, run record, probe, training split)."""
    images, test = split(200, 1), split(100, 2)
    model_params = dataclasses.replace(PARAMS.model, bn_freeze_after_steps=freeze_after_steps)
    train_params = dataclasses.replace(PARAMS.train, epochs=2, batch_size=50)
    # One step size: the probe's loss is what is checked here, not its measures along the step,
    # whose passes over the net (one per step size, twice along the update) make most of the
    # probe's compiled program, compiled again at the freeze (minutes under JAX with four).
    landscape = dataclasses.replace(PARAMS.landscape, every_steps=1, step_sizes=[1.0]) if probe else None
    with Live(str(tmp_path / name), dvcyaml=False, save_dvc_exp=False) as live:
        model, record, probe_callback = train_variant(
            model_params, train_params, bn, 3, pixel_statistics(images.images, "global"),
            images, test, landscape, live)
    return model, record, probe_callback, images


def test_until_the_freeze_frozen_is_before_bit_for_bit(tmp_path):
    """A freeze after the last step never happens: then bn=frozen is bn=before, step for step."""
    before, _, _, _ = train(tmp_path, "before", STEPS, name="before")
    frozen, record, _, _ = train(tmp_path, "frozen", STEPS, name="frozen")
    assert record["freeze"] is None
    assert [v.path.split("/", 1)[1] for v in before.variables] == \
        [v.path.split("/", 1)[1] for v in frozen.variables]
    for a, b in zip(before.variables, frozen.variables):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


def input_moments(model, layer, images) -> tuple[np.ndarray, np.ndarray]:
    """The layer's input over `images` by Keras' own route (a sub-model's predict), in float64."""
    inputs = keras.ops.convert_to_numpy(
        keras.Model(model.inputs, layer.input).predict(images, batch_size=64, verbose=0))
    values = inputs.astype(np.float64).reshape(-1, inputs.shape[-1])
    return values.mean(axis=0), values.var(axis=0)


@pytest.mark.float32
def test_the_freeze_sets_the_training_sets_statistics_and_then_only_gamma_and_beta_learn(tmp_path, monkeypatch):
    at_freeze = {}
    real_freeze = batch_norm.freeze_batch_norm

    def freeze_and_check(model, images):
        found = real_freeze(model, images)
        for layer in batch_norm_layers(model):
            # Each layer with the statistics of its input, under the layers before it frozen.
            mean, variance = input_moments(model, layer, images)
            np.testing.assert_allclose(np.asarray(layer.moving_mean), mean, rtol=1e-4, atol=1e-5)
            np.testing.assert_allclose(np.asarray(layer.moving_variance), variance, rtol=1e-4)
            at_freeze[layer.name] = [keras.ops.convert_to_numpy(w) for w in layer.weights]  # gamma, beta, mean, variance
        return found

    monkeypatch.setattr(batch_norm, "freeze_batch_norm", freeze_and_check)
    model, record, _, images = train(tmp_path, "frozen", 4)
    assert record["freeze"]["step"] == 4 and list(record["freeze"]["layers"]) == ["bn1", "bn2", "bn3"]
    # Four steps of momentum 0.99 leave the moving averages near their start (0 and 1): far off.
    assert all(gap["mean_gap_in_stds"] > 0.01 for gap in record["freeze"]["layers"].values())
    pixels = keras.ops.convert_to_tensor(images.images[:16])
    outputs = pixels
    for layer in model.layers:
        if isinstance(layer, FreezableBatchNormalization):
            gamma, beta, mean, variance = layer.weights
            np.testing.assert_array_equal(np.asarray(mean), at_freeze[layer.name][2])
            np.testing.assert_array_equal(np.asarray(variance), at_freeze[layer.name][3])
            assert not np.array_equal(np.asarray(gamma), at_freeze[layer.name][0])
            assert not np.array_equal(np.asarray(beta), at_freeze[layer.name][1])
            # Frozen, training mode normalizes as inference does: with the fixed statistics.
            np.testing.assert_array_equal(np.asarray(layer(outputs, training=True)),
                                          np.asarray(layer(outputs, training=False)))
        outputs = layer(outputs, training=False)


def test_the_probe_measures_the_frozen_loss_after_the_freeze(tmp_path):
    model, record, probe, images = train(tmp_path, "frozen", 2, probe=True)
    assert record["freeze"]["step"] == 2 and len(probe.records) == STEPS
    weights = [v.value for v in model.trainable_variables]
    non_trainable = [v.value for v in model.non_trainable_variables]
    pixels = keras.ops.convert_to_tensor(images.images[:50])
    labels = keras.ops.convert_to_tensor(images.labels[:50].astype(np.int32))
    expected, _ = model_loss_and_gradient(model, non_trainable, pixels, labels)(weights)
    probed, _ = probe._gradient(weights, non_trainable, pixels, labels)
    # The probe's compiled loss is the frozen network's (traced again at the freeze), not BN's.
    np.testing.assert_allclose(float(probed), float(expected), rtol=1e-5)


def test_the_freeze_sets_each_layers_exact_input_statistics_and_reports_the_gaps(monkeypatch):
    """freeze_batch_norm on a net small enough to work by hand: the first BN sees the images
    themselves, so its statistics must be theirs, per channel, mean and biased variance (what BN
    in training mode computes), combined exactly over several statistics batches (here of 2
    images); the second BN's are those of its input under the first one frozen. The gaps it
    reports are the replaced moving averages' distance from them: in the statistics' standard
    deviations for the mean, as |log| of the ratio for the variance (docs/why.md quotes both)."""
    monkeypatch.setattr(batch_norm, "STATISTICS_BATCH", 2)
    images = np.random.default_rng(0).normal(3.0, 2.0, (5, 2, 2, 3)).astype(np.float32)  # Batches 2, 2, 1.
    first = FreezableBatchNormalization(epsilon=1e-3, name="first")
    second = FreezableBatchNormalization(epsilon=1e-3, name="second")
    model = keras.Sequential([keras.Input((2, 2, 3)), first, keras.layers.Dense(2, name="mix"), second])
    moving_mean, moving_variance = np.array([0.5, 1.0, 2.0]), np.array([1.0, 2.0, 4.0])
    first.moving_mean.assign(moving_mean.astype("float32"))
    first.moving_variance.assign(moving_variance.astype("float32"))
    found = batch_norm.freeze_batch_norm(model, images)
    values = images.astype(np.float64).reshape(-1, 3)
    mean, variance = values.mean(axis=0), values.var(axis=0)
    np.testing.assert_allclose(np.asarray(first.moving_mean), mean, rtol=1e-6)
    np.testing.assert_allclose(np.asarray(first.moving_variance), variance, rtol=1e-6)
    assert found["layers"]["first"] == pytest.approx({
        "mean_gap_in_stds": np.max(np.abs(moving_mean - mean) / np.sqrt(variance + 1e-3)),
        "log_variance_ratio": np.max(np.abs(np.log((moving_variance + 1e-3) / (variance + 1e-3))))}, rel=1e-5)
    mixed = keras.ops.convert_to_numpy(model.get_layer("mix")(first(images, training=False))).astype(np.float64)
    np.testing.assert_allclose(np.asarray(second.moving_variance), mixed.reshape(-1, 2).var(axis=0), rtol=1e-5)
    assert first.frozen and second.frozen and list(found["layers"]) == ["first", "second"]
