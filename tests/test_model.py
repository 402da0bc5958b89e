"""The one model builder: layer order per BN variant, per-channel BN, the reference's param counts."""

import keras
import pytest

from stages.lib.model import batch_norm_layers, build_model, non_trainable_count
from stages.lib.params import load_params

STATISTICS = {"mode": "global", "mean": [120.7], "std": [64.2]}
MODEL = load_params().model  # The committed defaults: the reference experiment's network.


def kinds(model) -> list[str]:
    return [type(layer).__name__ for layer in model.layers]


@pytest.mark.parametrize("bn, block", [
    ("before", ["Conv2D", "BatchNormalization", "Activation", "MaxPooling2D"]),
    ("after", ["Conv2D", "BatchNormalization", "MaxPooling2D"]),
    ("none", ["Conv2D", "MaxPooling2D"]),
])
def test_layer_order(bn, block):
    model = build_model(MODEL, bn, STATISTICS)
    head = ["Dropout", "Flatten", "Dense", "Dropout", "Dense"]
    assert kinds(model) == ["Normalization", *block * 3, *head]
    convs = [layer for layer in model.layers if isinstance(layer, keras.layers.Conv2D)]
    assert [c.filters for c in convs] == [16, 32, 64]
    # The bias is redundant in front of BN, so only the control keeps it.
    assert [c.use_bias for c in convs] == [bn == "none"] * 3
    expected_activation = "linear" if bn == "before" else "elu"
    assert [c.activation.__name__ for c in convs] == [expected_activation] * 3


@pytest.mark.parametrize("bn", ["before", "after"])
def test_reference_parameter_counts(bn):
    model = build_model(MODEL, bn, STATISTICS)
    assert model.count_params() == 553_850
    assert non_trainable_count(model) == 224
    for layer, filters in zip(batch_norm_layers(model), [16, 32, 64]):
        assert layer.axis in (-1, 3)  # Per channel, channels last.
        assert layer.count_params() == 4 * filters


def test_control_has_no_batch_norm_but_conv_biases():
    model = build_model(MODEL, "none", STATISTICS)
    assert batch_norm_layers(model) == []
    assert model.count_params() == 553_850 - 448 + (16 + 32 + 64)
    assert non_trainable_count(model) == 0


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
    with pytest.raises(ValueError, match="bn = 'middle' is not allowed; expected one of: before, after, none"):
        build_model(MODEL, "middle", STATISTICS)
