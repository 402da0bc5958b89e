"""The one model builder: layer order per BN variant, per-channel BN, the reference's param counts."""

import dataclasses

import keras
import numpy as np
import pytest

from conftest import tensorflow_only
from float32 import assert_kernels_agree, batch_norm_condition, gradient_sums, network_sums, sum_error
from stages.trainer.model import (batch_norm_layers, build_model, channel_moments, data_dependent_init,
                               scale_head_input,
                               non_trainable_count)
from stages.grids.sections import read_all as read_params

STATISTICS = {"mode": "global", "mean": [120.7], "std": [64.2]}
MODEL = read_params().model  # The committed defaults: the reference experiment's network.


def kinds(model) -> list[str]:
    return [type(layer).__name__ for layer in model.layers]


# ELU is monotonic, so "before" and "none" pool first (see model.py); the maths is the reference's.
@pytest.mark.parametrize("bn, block", [
    ("before", ["Conv2D", "FusedBatchNormalization", "PairwiseMaxPooling2D", "Activation"]),
    ("after", ["Conv2D", "Activation", "FusedBatchNormalization", "PairwiseMaxPooling2D"]),
    ("none", ["Conv2D", "PairwiseMaxPooling2D", "Activation"]),
    ("rescaled", ["Conv2D", "PairwiseMaxPooling2D", "Activation"]),
    ("frozen", ["Conv2D", "FreezableBatchNormalization", "PairwiseMaxPooling2D", "Activation"]),
])
def test_layer_order(bn, block):
    model = build_model(MODEL, bn, STATISTICS)
    head = ["Dropout", "Flatten", "Dense", "Dropout", "Dense"]
    assert kinds(model) == ["Normalization", *block * 3, *head]
    convs = [layer for layer in model.layers if isinstance(layer, keras.layers.Conv2D)]
    assert [c.filters for c in convs] == [16, 32, 64]
    # The bias is redundant in front of BN, so only the nets without BN keep it.
    assert [c.use_bias for c in convs] == [bn in ("none", "rescaled")] * 3
    activations = [layer for layer in model.layers if isinstance(layer, keras.layers.Activation)]
    assert [a.activation.__name__ for a in activations] == ["elu"] * 3


def test_a_non_monotonic_activation_is_applied_before_pooling():
    model = build_model(dataclasses.replace(MODEL, activation="gelu"), "before", STATISTICS)
    assert kinds(model)[1:5] == ["Conv2D", "FusedBatchNormalization", "Activation", "PairwiseMaxPooling2D"]


def reference_order(model) -> list:
    """The model's layers in the reference's order: activation, then pooling."""
    layers = list(model.layers)
    for index in range(len(layers) - 1):
        if isinstance(layers[index], keras.layers.MaxPooling2D) and \
                isinstance(layers[index + 1], keras.layers.Activation):
            layers[index], layers[index + 1] = layers[index + 1], layers[index]
    return layers


@tensorflow_only
@pytest.mark.float32
@pytest.mark.parametrize("bn", ["before", "none"])
def test_pooling_first_computes_exactly_what_the_reference_order_does(bn):
    import tensorflow as tf

    model = build_model(MODEL, bn, STATISTICS)
    pixels = tf.constant(np.random.default_rng(0).integers(0, 256, (8, 32, 32, 3)), "uint8")

    def loss_and_gradients(layers):
        with tf.GradientTape() as tape:
            outputs = pixels
            for layer in layers:
                # Dropout off so both orders see the same network; BN in training mode (batch stats).
                outputs = layer(outputs, training=not isinstance(layer, keras.layers.Dropout))
            loss = tf.reduce_sum(outputs * tf.range(10, dtype="float32"))
        return outputs, tape.gradient(loss, model.trainable_variables)

    ours, ours_gradients = loss_and_gradients(model.layers)
    reference, reference_gradients = loss_and_gradients(reference_order(model))
    # The two orders build different graphs, which TensorFlow may fuse into different kernels:
    # float32 tolerances for the net's chains of sums (tests/float32.py), with the cancellation
    # a one-pass BN variance may have on these inputs.
    condition = batch_norm_condition(model, pixels)
    assert_kernels_agree(ours, reference, *network_sums(MODEL, 8), condition=condition)
    for a, b in zip(ours_gradients, reference_gradients):
        assert_kernels_agree(a, b, *gradient_sums(MODEL, 8), condition=condition)


@pytest.mark.parametrize("bn", ["before", "after", "frozen"])
def test_reference_parameter_counts(bn):
    model = build_model(MODEL, bn, STATISTICS)
    assert model.count_params() == 553_850
    assert non_trainable_count(model) == 224
    for layer, filters in zip(batch_norm_layers(model), [16, 32, 64]):
        assert layer.axis in (-1, 3)  # Per channel, channels last.
        assert layer.count_params() == 4 * filters


@pytest.mark.parametrize("bn", ["none", "rescaled"])
def test_control_has_no_batch_norm_but_conv_biases(bn):
    model = build_model(MODEL, bn, STATISTICS)
    assert batch_norm_layers(model) == []
    assert model.count_params() == 553_850 - 448 + (16 + 32 + 64)
    assert non_trainable_count(model) == 0


def conv_outputs(model, pixels) -> dict:
    """Each convolution's output on `pixels`, running the layers in order as the model does."""
    outputs, found = pixels, {}
    for layer in model.layers:
        outputs = layer(outputs, training=False)
        if isinstance(layer, keras.layers.Conv2D):
            found[layer.name] = outputs
    return found


@pytest.mark.float32
def test_data_dependent_init_standardizes_every_channel_on_its_batch():
    pixels = np.random.default_rng(0).integers(0, 256, (32, 32, 32, 3)).astype("uint8")
    keras.utils.set_random_seed(1)
    model = build_model(MODEL, "rescaled", STATISTICS)
    untouched = [w.numpy() for w in model.weights]
    statistics = data_dependent_init(model, pixels)
    assert list(statistics) == ["conv1", "conv2", "conv3"]
    for name, outputs in conv_outputs(model, pixels).items():
        moments = channel_moments(outputs)
        # The init's float32 moments sum over the batch's positions: within float32's rounding of
        # such a sum (tests/float32.py), relative to the values' size, which after the init is
        # about 1 (every channel standardized), and to the convolution's own sum.
        terms = outputs.shape[0] * outputs.shape[1] * outputs.shape[2]
        rounding = 2 * (sum_error(terms) + sum_error(MODEL.kernel_size**2 * 64))
        np.testing.assert_allclose(moments["mean"], 0.0, atol=rounding)
        np.testing.assert_allclose(moments["std"], 1.0, rtol=rounding)
        # The returned record says the same, and the Glorot init was far from it before.
        assert statistics[name]["largest_abs_mean_after"] < rounding
        assert statistics[name]["std_min_after"] == pytest.approx(1.0, rel=rounding)
        assert statistics[name]["std_max_after"] == pytest.approx(1.0, rel=rounding)
        assert abs(statistics[name]["std_max_before"] - 1.0) > 0.05
    # Only the convolutions change: the dense head keeps its initial weights.
    for weight, before in zip(model.weights, untouched):
        changed = not np.array_equal(weight.numpy(), before)
        assert changed == weight.path.split("/")[-2].startswith("conv"), weight.path
    # Another batch is not standardized exactly: the init depends on the batch it saw.
    other = np.random.default_rng(1).integers(0, 256, (32, 32, 32, 3)).astype("uint8")
    assert abs(channel_moments(conv_outputs(model, other)["conv3"])["mean"]).max() > 1e-3


def test_model_takes_raw_pixels_and_normalizes_them():
    model = build_model(MODEL, "before", STATISTICS)
    assert model.inputs[0].dtype == "uint8"
    normalize = model.layers[0]
    pixels = keras.ops.convert_to_tensor([[[[120.7, 184.9, 56.5]]]])
    assert keras.ops.convert_to_numpy(normalize(pixels)).ravel() == pytest.approx([0, 1, -1], abs=1e-3)


def test_per_channel_statistics():
    statistics = {"mode": "per_channel", "mean": [125.3, 123.0, 113.9], "std": [63.0, 62.1, 66.7]}
    normalize = build_model(MODEL, "after", statistics).layers[0]
    pixels = keras.ops.convert_to_tensor([[[[125.3, 123.0 + 62.1, 113.9 - 66.7]]]])
    assert keras.ops.convert_to_numpy(normalize(pixels)).ravel() == pytest.approx([0, 1, -1], abs=1e-3)


def test_unknown_bn_placement_is_a_clear_error():
    with pytest.raises(ValueError, match="bn = 'middle' is not allowed; expected one of: after, before, frozen, none, rescaled"):
        build_model(MODEL, "middle", STATISTICS)


def test_unknown_precision_is_a_clear_error():
    with pytest.raises(ValueError, match="precision = 'auto' is not allowed; expected one of: float32, mixed_bfloat16"):
        build_model(MODEL, "before", STATISTICS, precision="auto")


def test_bfloat16_convolution_blocks_keep_float32_weights_activations_and_softmax():
    model = build_model(MODEL, "after", STATISTICS, precision="mixed_bfloat16")
    for layer in model.layers:
        in_block = isinstance(layer, (keras.layers.Conv2D, keras.layers.BatchNormalization,
                                      keras.layers.MaxPooling2D))
        assert layer.compute_dtype == ("bfloat16" if in_block else "float32"), layer.name
        assert all(weight.dtype == "float32" for weight in layer.weights), layer.name
    assert model.count_params() == build_model(MODEL, "after", STATISTICS).count_params()
    probabilities = model(np.zeros((2, 32, 32, 3), "uint8"), training=False)
    assert probabilities.dtype == "float32"
    np.testing.assert_allclose(np.sum(probabilities, axis=1), 1.0, rtol=1e-6)


@pytest.mark.float32
@pytest.mark.parametrize("bn", ["before", "none", "frozen"])
def test_the_head_input_scale_hands_the_head_features_of_the_set_rms(bn):
    """model.head_input_rms: one constant after Flatten, set on the first batch so that the dense
    head's input has that RMS with BN normalizing by the batch (dropout off), in every variant; it
    adds no weight, changes no initial weight, and leaves BN's moving averages where they were."""
    pixels = np.random.default_rng(0).integers(0, 256, (32, 32, 32, 3)).astype("uint8")
    keras.utils.set_random_seed(1)
    plain = build_model(MODEL, bn, STATISTICS)
    keras.utils.set_random_seed(1)
    model = build_model(dataclasses.replace(MODEL, head_input_rms=0.3), bn, STATISTICS)
    assert kinds(model) == [*kinds(plain)[:-3], "Rescaling", *kinds(plain)[-3:]]
    assert model.count_params() == plain.count_params()
    untouched = [w.numpy() for w in model.weights]
    assert all(np.array_equal(a, b.numpy()) for a, b in zip(untouched, plain.weights))
    found = scale_head_input(model, pixels, 0.3)
    assert all(np.array_equal(w.numpy(), before) for w, before in zip(model.weights, untouched))
    # What the first Dense layer receives, as in training's first step but without dropout.
    head_index = [layer.name for layer in model.layers].index("dense")
    outputs = keras.ops.convert_to_tensor(pixels)
    for layer in model.layers[:head_index]:
        if not isinstance(layer, keras.layers.Dropout):
            outputs = layer(outputs, training=isinstance(layer, keras.layers.BatchNormalization))
    rms = float(np.sqrt(np.mean(keras.ops.convert_to_numpy(outputs).astype(np.float64) ** 2)))
    assert rms == pytest.approx(0.3, rel=1e-5)
    assert found["scale"] == pytest.approx(0.3 / found["rms_before"]) and found["target_rms"] == 0.3
    # The record says how far the variant's own scale was from the target.
    assert abs(found["rms_before"] - 0.3) > 0.01


def test_without_a_head_input_scale_there_is_nothing_to_set():
    with pytest.raises(ValueError, match="no head_scale layer: build it with head_input_rms > 0"):
        scale_head_input(build_model(MODEL, "none", STATISTICS), np.zeros((2, 32, 32, 3), "uint8"), 0.3)
