"""The fused BatchNormalization computes, learns and saves exactly like Keras' own layer."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from float32 import assert_kernels_agree, variance_condition
from stages.trainer.batch_norm import FUSED_MIN_EPSILON, FusedBatchNormalization

SHAPE = (6, 5, 5, 4)
# BN's statistics sum over the batch and positions; the backward pass sums as long again.
TERMS = SHAPE[0] * SHAPE[1] * SHAPE[2]
pytestmark = pytest.mark.float32


def pair(epsilon=1e-3, dtype="float32"):
    """A Keras BatchNormalization and a fused one with the same non-trivial weights.

    Momentum 0.7, not Keras' 0.99: one training call then moves the moving statistics visibly."""
    layers = [cls(momentum=0.7, epsilon=epsilon, dtype=dtype) for cls in
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


def kernels(layer, inputs, training) -> set[str]:
    """The TensorFlow ops one call of `layer` runs."""
    traced = tf.function(lambda x: layer(x, training=training))
    return {op.type for op in traced.get_concrete_function(inputs).graph.get_operations()}


# Epsilons the fused kernel accepts: its minimum, and one as large as the inputs' variance (1), so
# that passing the wrong epsilon anywhere changes the outputs well beyond the tolerance. Inputs of
# mean 0.5 and std 1: off centre, and still of small condition for a one-pass variance (1.25), so
# the float32 tolerance stays far below what a wrong statistic moves (the unbiased variance's
# 150/149 moves the moving variance by 0.2%).
@pytest.mark.parametrize("training", [True, False])
@pytest.mark.parametrize("epsilon", [FUSED_MIN_EPSILON, 1.0])
def test_fused_matches_keras(training, epsilon):
    inputs = tf.constant(np.random.default_rng(1).normal(0.5, 1.0, SHAPE), "float32")
    keras_layer, fused_layer = pair(epsilon)
    assert "FusedBatchNormV3" in kernels(fused_layer, inputs, training)
    (keras_out, keras_grads, keras_weights), (fused_out, fused_grads, fused_weights) = (
        run(layer, inputs, training) for layer in (keras_layer, fused_layer))
    # Different kernels (FusedBatchNormV3 against Keras' moments): float32 tolerances for sums of
    # TERMS terms (tests/float32.py), with the cancellation a one-pass variance may have here.
    condition = variance_condition(inputs)
    assert_kernels_agree(fused_out, keras_out, TERMS, condition=condition)
    for fused, expected in zip(fused_grads, keras_grads):
        assert_kernels_agree(fused, expected, TERMS, TERMS, condition=condition)
    # gamma, beta, and the moving mean and variance (updated only in training).
    for fused, expected in zip(fused_weights, keras_weights):
        assert_kernels_agree(fused, expected, TERMS, condition=condition)


def test_an_epsilon_below_the_kernels_minimum_falls_back_to_keras():
    """FusedBatchNormV3 rejects it, so the layer must not call the kernel (and still works)."""
    inputs = tf.constant(np.random.default_rng(1).normal(2.0, 0.3, SHAPE), "float32")
    keras_layer, fused_layer = pair(FUSED_MIN_EPSILON / 10)
    assert "FusedBatchNormV3" not in kernels(fused_layer, inputs, True)
    assert_kernels_agree(run(fused_layer, inputs, True)[0], run(keras_layer, inputs, True)[0], TERMS,
                         condition=variance_condition(inputs))


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
