"""The fused BatchNormalization computes, learns and saves exactly like Keras' own layer."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from stages.lib.batch_norm import FusedBatchNormalization

SHAPE = (6, 5, 5, 4)


def pair(epsilon=1e-3, dtype="float32"):
    """A Keras BatchNormalization and a fused one with the same non-trivial weights."""
    layers = [cls(momentum=0.9, epsilon=epsilon, dtype=dtype) for cls in
              (keras.layers.BatchNormalization, FusedBatchNormalization)]
    generator = np.random.default_rng(0)
    weights = [generator.uniform(0.5, 1.5, 4), generator.normal(size=4), generator.normal(size=4),
               generator.uniform(0.5, 2.0, 4)]
    for layer in layers:
        layer.build(SHAPE)
        layer.set_weights(weights)
    return layers


# Per-element weights: with per-channel ones the gradient for gamma would be exactly zero.
LOSS_WEIGHTS = tf.constant(np.random.default_rng(9).normal(size=SHAPE), "float32")


def run(layer, inputs, training):
    with tf.GradientTape() as tape:
        tape.watch(inputs)
        outputs = layer(inputs, training=training)
        loss = tf.reduce_sum(tf.cast(outputs, "float32") * LOSS_WEIGHTS)
    gradients = tape.gradient(loss, [inputs, *layer.trainable_variables])
    return outputs, gradients, [w.numpy() for w in layer.weights]


@pytest.mark.parametrize("training", [True, False])
@pytest.mark.parametrize("epsilon", [1e-3, 1e-6])  # 1e-6 is below the fused kernel's minimum.
def test_fused_matches_keras(training, epsilon):
    inputs = tf.constant(np.random.default_rng(1).normal(2.0, 3.0, SHAPE), "float32")
    (keras_out, keras_grads, keras_weights), (fused_out, fused_grads, fused_weights) = (
        run(layer, inputs, training) for layer in pair(epsilon))
    np.testing.assert_allclose(fused_out, keras_out, rtol=1e-5, atol=1e-5)
    for fused, expected in zip(fused_grads, keras_grads):
        np.testing.assert_allclose(fused, expected, rtol=1e-4, atol=1e-5)
    # gamma, beta, and the moving mean and variance (updated only in training).
    for fused, expected in zip(fused_weights, keras_weights):
        np.testing.assert_allclose(fused, expected, rtol=1e-6, atol=1e-6)


def test_bfloat16_inputs_keep_float32_statistics():
    keras_layer, fused_layer = pair(dtype="mixed_bfloat16")
    inputs = tf.constant(np.random.default_rng(2).normal(2.0, 3.0, SHAPE), "float32")
    expected = keras_layer(inputs, training=True)
    outputs = fused_layer(tf.cast(inputs, "bfloat16"), training=True)
    assert outputs.dtype == "bfloat16"
    assert all(weight.dtype == "float32" for weight in fused_layer.weights)
    # bfloat16 keeps 8 bits of mantissa: agreement to ~1% of the unit-scale outputs.
    np.testing.assert_allclose(tf.cast(outputs, "float32"), tf.cast(expected, "float32"), atol=0.05)
    np.testing.assert_allclose(fused_layer.moving_mean, keras_layer.moving_mean, rtol=0.02, atol=0.02)


def test_saved_model_loads_back_fused(tmp_path):
    _, layer = pair()
    model = keras.Sequential([keras.Input(SHAPE[1:]), layer])
    model.save(tmp_path / "model.keras")
    loaded = keras.models.load_model(tmp_path / "model.keras")
    assert isinstance(loaded.layers[0], FusedBatchNormalization)
    inputs = np.random.default_rng(3).normal(size=SHAPE).astype("float32")
    np.testing.assert_array_equal(keras.ops.convert_to_numpy(loaded(inputs, training=False)),
                                  keras.ops.convert_to_numpy(model(inputs, training=False)))
