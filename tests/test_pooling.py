"""The pairwise max-pooling computes, and differentiates, exactly as keras.layers.MaxPooling2D, and
the layer uses it exactly where XLA compiles."""

import keras
import numpy as np
import pytest

from conftest import output_and_input_gradient
from conftest import BACKEND, tensorflow_only
from stages.trainer import pooling
from stages.trainer.pooling import PairwiseMaxPooling2D, pairwise_max_pool


# The net's maps are 32, 16 and 8 wide (even); odd sizes matter with more blocks (..., 2, 1).
SHAPES_AND_PADDINGS = [((3, 32, 32, 16), "same"), ((2, 8, 8, 4), "same"), ((2, 5, 7, 3), "same"),
                       ((1, 1, 1, 2), "same"), ((2, 8, 8, 4), "valid"), ((2, 5, 7, 3), "valid")]


@pytest.mark.parametrize("shape, padding", SHAPES_AND_PADDINGS)
def test_values_and_gradients_equal_max_pooling_2d(shape, padding):
    """Values in {0, 1, 2} make ties common: the gradient must go to the same element of the tie."""
    generator = np.random.default_rng(sum(shape))
    inputs = generator.integers(0, 3, shape).astype("float32")
    reference = keras.layers.MaxPooling2D(pool_size=2, strides=2, padding=padding)
    loss_weights = generator.normal(size=reference.compute_output_shape(shape)).astype("float32")
    expected, expected_gradient = output_and_input_gradient(reference, inputs, loss_weights)
    got, gradient = output_and_input_gradient(lambda x: pairwise_max_pool(x, padding), inputs, loss_weights)
    assert got.shape == expected.shape == loss_weights.shape
    np.testing.assert_array_equal(got, expected)
    np.testing.assert_array_equal(gradient, expected_gradient)
    # Every window passes its whole gradient to exactly one element, ties or not.
    assert np.count_nonzero(gradient) == np.count_nonzero(loss_weights)


def test_the_layer_takes_the_pairwise_form_where_xla_compiles(monkeypatch):
    calls = []
    monkeypatch.setattr(pooling, "pairwise_max_pool", lambda inputs, padding: calls.append(padding) or
                        keras.layers.MaxPooling2D(2, 2, padding=padding)(inputs))
    inputs = np.zeros((1, 4, 4, 1), "float32")
    PairwiseMaxPooling2D(2, 2, padding="same")(inputs)
    assert calls == (["same"] if BACKEND == "jax" else [])


@tensorflow_only
def test_on_tensorflow_only_an_xla_function_takes_the_pairwise_form():
    import tensorflow as tf

    layer = PairwiseMaxPooling2D(2, 2)
    seen = {}

    def forward(inputs):
        seen[len(seen)] = pooling.compiled_by_xla()
        return layer(inputs)

    inputs = tf.zeros((1, 4, 4, 1))
    tf.function(forward)(inputs)
    tf.function(forward, jit_compile=True)(inputs)
    assert seen == {0: False, 1: True}


def test_other_windows_fall_back_to_the_keras_code():
    inputs = np.random.default_rng(0).normal(size=(2, 9, 9, 3)).astype("float32")
    for settings in ({"pool_size": 3, "strides": 2}, {"pool_size": 2, "strides": 1}):
        reference, ours = keras.layers.MaxPooling2D(**settings), PairwiseMaxPooling2D(**settings)
        np.testing.assert_array_equal(keras.ops.convert_to_numpy(ours(inputs)),
                                      keras.ops.convert_to_numpy(reference(inputs)))


def test_saved_and_loaded_with_its_settings(tmp_path):
    model = keras.Sequential([keras.Input((4, 4, 1)), PairwiseMaxPooling2D(2, 2, padding="same")])
    model.save(tmp_path / "pool.keras")
    loaded = keras.models.load_model(tmp_path / "pool.keras")
    assert type(loaded.layers[0]) is PairwiseMaxPooling2D
    assert loaded.layers[0].get_config() == model.layers[0].get_config()
