"""Every model setting in params.yaml reaches the layer that uses it, in every `bn` variant.

Each setting is set away from its default, so a builder that ignores it (or hard-codes the
default) fails here. BatchNorm's momentum and epsilon are checked by what the built model computes,
against Keras' own BatchNormalization with the same weights, in training and in inference.
"""

import dataclasses

import keras
import numpy as np
import pytest
import tensorflow as tf

from conftest import ROOT
from float32 import assert_kernels_agree, batch_norm_condition, network_sums
from stages.trainer.batch_norm import FUSED_MIN_EPSILON
from stages.trainer.model import batch_norm_layers, build_model
from stages.trainer.params import BN_PLACEMENTS, read_params

DEFAULTS = read_params(ROOT / "params.yaml").model
SETTINGS = dataclasses.replace(DEFAULTS, filters=[3, 5], kernel_size=5, activation="tanh", dense_units=7,
                               dropout_rate=0.45, bn_momentum=0.7, bn_epsilon=0.1)
STATISTICS = {"mode": "global", "mean": [120.0], "std": [60.0]}
pytestmark = pytest.mark.float32


def layers_of(model, kind) -> list:
    return [layer for layer in model.layers if isinstance(layer, kind)]


def test_the_settings_differ_from_the_defaults():
    for setting in ("filters", "kernel_size", "activation", "dense_units", "dropout_rate", "bn_momentum",
                    "bn_epsilon"):
        assert getattr(SETTINGS, setting) != getattr(DEFAULTS, setting), setting
    assert SETTINGS.bn_epsilon >= FUSED_MIN_EPSILON  # So BN below runs on the fused kernel.


@pytest.mark.parametrize("activation", ["tanh", "gelu"])  # Pooled first, and not (model.py).
@pytest.mark.parametrize("bn", BN_PLACEMENTS)
def test_every_model_setting_reaches_its_layer(bn, activation):
    settings = dataclasses.replace(SETTINGS, activation=activation)
    model = build_model(settings, bn, STATISTICS)
    convolutions = layers_of(model, keras.layers.Conv2D)
    assert [c.filters for c in convolutions] == [3, 5]
    assert [c.kernel_size for c in convolutions] == [(5, 5)] * 2
    *hidden, output = layers_of(model, keras.layers.Dense)
    assert [d.units for d in hidden] == [7] and output.units == 10
    assert [d.rate for d in layers_of(model, keras.layers.Dropout)] == [0.45, 0.45]
    # Wherever the activation sits (its own layer or inside another), one per block and the dense layer.
    applied = [layer.activation.__name__ for layer in model.layers[:-1] if hasattr(layer, "activation")]
    assert sorted(name for name in applied if name != "linear") == [activation] * 3
    assert output.activation.__name__ == "softmax"
    norms = batch_norm_layers(model)
    assert len(norms) == (2 if bn in ("before", "after", "frozen") else 0)
    assert [(n.momentum, n.epsilon, n.trainable) for n in norms] == [(0.7, 0.1, True)] * len(norms)


def randomize_batch_norm(model, generator) -> None:
    """Non-trivial gamma, beta and moving statistics, so every one of them shows in the outputs."""
    for layer in batch_norm_layers(model):
        channels = layer.gamma.shape[0]
        layer.set_weights([generator.uniform(0.5, 1.5, channels), generator.normal(0, 0.5, channels),
                           generator.normal(0, 0.5, channels), generator.uniform(0.2, 2.0, channels)])


def with_keras_batch_norm(model, settings):
    """The same network and weights with Keras' own BatchNormalization, configured from `settings`."""
    def clone(layer):
        if isinstance(layer, keras.layers.BatchNormalization):
            return keras.layers.BatchNormalization(axis=-1, momentum=settings.bn_momentum,
                                                   epsilon=settings.bn_epsilon, name=layer.name)
        return layer.__class__.from_config(layer.get_config())

    reference = keras.models.clone_model(model, clone_function=clone)
    reference.set_weights(model.get_weights())
    return reference


@pytest.mark.parametrize("bn", ["before", "after", "frozen"])  # frozen: not frozen yet, it is BN.
def test_batch_norm_settings_act_in_training_and_inference(bn):
    # Dropout off, so that a training call is deterministic and the two networks can be compared.
    settings = dataclasses.replace(SETTINGS, dropout_rate=0.0)
    generator = np.random.default_rng(0)
    model = build_model(settings, bn, STATISTICS)
    randomize_batch_norm(model, generator)
    reference = with_keras_batch_norm(model, settings)
    pixels = tf.constant(generator.integers(0, 256, (6, 32, 32, 3)), "uint8")
    # The fused kernel against Keras' BN: float32 tolerances for the net's chain of sums, with
    # the cancellation a one-pass variance may have on these BN inputs (tests/float32.py).
    sums = network_sums(settings, batch=6)
    condition = batch_norm_condition(model, pixels)

    def agree(ours, theirs):
        assert_kernels_agree(ours, theirs, *sums, condition=condition)

    agree(model(pixels, training=False), reference(pixels, training=False))
    agree(model(pixels, training=True), reference(pixels, training=True))
    # The training call moved the moving statistics by momentum 0.7 (the default 0.99 barely would).
    for ours, keras_layer in zip(batch_norm_layers(model), batch_norm_layers(reference)):
        for name in ("moving_mean", "moving_variance"):
            agree(getattr(ours, name), getattr(keras_layer, name))
    agree(model(pixels, training=False), reference(pixels, training=False))

