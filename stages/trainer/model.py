"""The one model builder. `bn` picks the convolution block, from the variant's own module
(stages/variants/<bn>.py: before, after, none, rescaled, frozen, ...); everything else comes from
ModelParams. Each block is a convolution, maybe a BatchNorm, the activation and max-pooling, in
the order the variant says; then Dropout -> Flatten -> Dense -> Dropout -> Dense(10, softmax).
The model takes raw uint8 pixels; its first layer normalizes them with the training-set
statistics from `normalize`. With `head_input_rms` > 0, a constant scale after Flatten (set by
`scale_head_input` on the first training batch) hands the dense head features of that RMS in
every variant.

A variant is a module, `bn: <name>` picks stages/variants/<name>.py, and each cell of a grid
declares only its own variant's module (beside the package stages/trainer), so adding a variant
leaves every cached cell as it is. A variant module says:

    CONV_BIAS      whether the convolution has a bias (a bias right before BatchNorm is redundant:
                   BN's beta plays its role)
    BATCH_NORM     the BatchNormalization class of the block, or None
    block(conv, norm, activation, pool, pool_first) -> the block's layers, in order; pool_first
                   says that pooling may come before the activation (a monotonic activation:
                   max(f(a), f(b)) == f(max(a, b)), so pooling first activates 4x fewer values)

and optionally
    initialize(model, images) -> dict   a data-dependent initialization on the first training batch
    callbacks(params, train_images) -> list of Keras callbacks run during training (each with
                   `record_key` and `summary`, which the run record keeps)

A new variant is a new module with these names; nothing else changes (tests/test_layout.py adds
one). stages/variants/__init__.py stays empty: every cell runs it, so a word there would re-key all.

Four choices make it fast without changing what it computes (bench/train_speed.py measures them):
- BatchNorm runs on TensorFlow's fused kernel (batch_norm.py; the Keras code on other backends).
- Max-pooling is elementwise maxima (pooling.py), which XLA can compile under determinism.
- The activation is its own layer, and with a monotonic activation max-pooling and the activation
  commute exactly, so `before` and `none` pool first and activate 4x fewer values.
- `precision: mixed_bfloat16` (train.precision, never chosen silently) runs convolution, BatchNorm
  and pooling in bfloat16 with float32 weights; activations, the dense head and the softmax stay
  float32. The default, float32, computes the same numbers on every CPU.
"""

from __future__ import annotations

import importlib
import types

import keras
import numpy as np

from stages.trainer.params import BN_PLACEMENTS, PRECISIONS, ModelParams
from stages.trainer.pooling import PairwiseMaxPooling2D

NUM_CLASSES = 10
INPUT_SHAPE = (32, 32, 3)
# Non-decreasing activations: max(f(a), f(b)) == f(max(a, b)), so pooling may come first.
MONOTONIC_ACTIVATIONS = ("elu", "relu", "selu", "tanh")


def variant(bn: str) -> types.ModuleType:
    """The module of variant `bn` (stages/variants/<bn>.py), imported only when it is used: a
    cell runs its own variant's code and no other's."""
    if bn not in BN_PLACEMENTS:
        raise ValueError(f"bn = {bn!r} is not allowed; expected one of: {', '.join(BN_PLACEMENTS)}")
    return importlib.import_module(f"stages.variants.{bn}")


def build_model(params: ModelParams, bn: str, statistics: dict,
                precision: str = "float32") -> keras.Sequential:
    """Build (uncompiled) the reference ConvNet with BatchNormalization placed as `bn` says."""
    block = variant(bn)
    if precision not in PRECISIONS:
        raise ValueError(f"precision = {precision!r} is not allowed; expected one of: "
                         f"{', '.join(PRECISIONS)}")
    model = keras.Sequential(name=f"convnet_bn_{bn}")
    model.add(keras.Input(shape=INPUT_SHAPE, dtype="uint8", name="pixels"))
    model.add(input_normalization(statistics))
    for index, filters in enumerate(params.filters, start=1):
        for layer in conv_block(params, block, filters, index, precision):
            model.add(layer)
    model.add(keras.layers.Dropout(params.dropout_rate, name="dropout1"))
    model.add(keras.layers.Flatten(name="flatten"))
    if params.head_input_rms > 0:
        # A constant, not a weight: scale_head_input sets it once; nothing learns it.
        model.add(keras.layers.Rescaling(1.0, name="head_scale"))
    model.add(keras.layers.Dense(params.dense_units, activation=params.activation, name="dense"))
    model.add(keras.layers.Dropout(params.dropout_rate, name="dropout2"))
    # Softmax in float32 even under a mixed-precision policy, so probabilities and the loss stay exact.
    model.add(keras.layers.Dense(NUM_CLASSES, activation="softmax", dtype="float32", name="probabilities"))
    return model


def conv_block(params: ModelParams, block: types.ModuleType, filters: int, index: int,
               precision: str = "float32") -> list[keras.layers.Layer]:
    """One convolution block of the variant module `block`, its layers named conv<index>, bn<index>,
    act<index> and pool<index>."""
    conv = keras.layers.Conv2D(filters, params.kernel_size, padding="same", use_bias=block.CONV_BIAS,
                               dtype=precision, name=f"conv{index}")
    pool = PairwiseMaxPooling2D(pool_size=2, strides=2, padding="same", dtype=precision,
                                name=f"pool{index}")
    # Its own float32 layer in every variant: elementwise maths in bfloat16 is slow on CPU.
    activation = keras.layers.Activation(params.activation, name=f"act{index}")
    # axis=-1 normalizes per channel (channels last), as the BN paper prescribes for convolutions:
    # 4 parameters per filter (gamma, beta, moving mean, moving variance).
    norm = None if block.BATCH_NORM is None else \
        block.BATCH_NORM(axis=-1, momentum=params.bn_momentum, epsilon=params.bn_epsilon,
                         dtype=precision, name=f"bn{index}")
    return block.block(conv, norm, activation, pool, params.activation in MONOTONIC_ACTIVATIONS)


def initialize(bn: str, model: keras.Model, images) -> dict | None:
    """The variant's data-dependent initialization on `images` (bn=rescaled), or None."""
    hook = getattr(variant(bn), "initialize", None)
    return hook(model, images) if hook else None


def variant_callbacks(params: ModelParams, bn: str, train_images) -> list[keras.callbacks.Callback]:
    """What a variant does during training besides the steps themselves (bn=frozen: the freeze)."""
    hook = getattr(variant(bn), "callbacks", None)
    return hook(params, train_images) if hook else []


def data_dependent_init(model: keras.Model, images) -> dict[str, dict[str, float]]:
    """Rescale each convolution's kernel and bias, in order, so that on `images` (one batch of raw
    pixels) every output channel has mean 0 and std 1 over the batch and positions, as BatchNorm in
    training mode would make it. Returns, per convolution, its channels' statistics before and
    after: the largest |mean| and the smallest and largest std.

    Layer by layer, because each layer's input depends on the rescaling of the ones before. With
    z = conv(x) = W*x + b, per channel: W <- W / std(z), b <- (b - mean(z)) / std(z). A channel that
    is constant on the batch cannot be given std 1, so it is only centred. Dropout, the only random
    layer, comes after the convolutions and is off here: the initialization uses no randomness.
    """
    outputs = keras.ops.convert_to_tensor(images)
    statistics = {}
    for layer in model.layers:
        if isinstance(layer, keras.layers.Conv2D):
            before = channel_moments(layer(outputs))
            std = np.where(before["std"] > 0, before["std"], 1.0)
            kernel, bias = layer.kernel.numpy(), layer.bias.numpy()
            layer.kernel.assign((kernel / std).astype(kernel.dtype))
            layer.bias.assign(((bias - before["mean"]) / std).astype(bias.dtype))
            after = channel_moments(layer(outputs))
            statistics[layer.name] = {f"{name}_{when}": value
                                      for when, moments in (("before", before), ("after", after))
                                      for name, value in _extremes(moments).items()}
        outputs = layer(outputs, training=False)
    return statistics


def scale_head_input(model: keras.Model, images, target_rms: float) -> dict[str, float]:
    """Set the `head_scale` constant so that the features entering the dense head have RMS
    `target_rms` on `images` (one batch of raw pixels), and return the RMS before and the scale.

    The features are computed as training computes them at its first step, BatchNorm normalizing
    by the batch's statistics, but without dropout's random masks (off, as in inference), so the
    initialization uses no randomness. BatchNorm updates its moving averages when it normalizes by
    the batch: they are put back afterwards, so that training starts from the same state as
    without the intervention.
    """
    saved = [variable.numpy() for variable in model.non_trainable_variables]
    outputs = keras.ops.convert_to_tensor(images)
    for layer in model.layers:
        if layer.name == "head_scale":
            break
        if not isinstance(layer, keras.layers.Dropout):
            outputs = layer(outputs, training=isinstance(layer, keras.layers.BatchNormalization))
    else:
        raise ValueError("the model has no head_scale layer: build it with head_input_rms > 0")
    for variable, value in zip(model.non_trainable_variables, saved):
        variable.assign(value)
    features = keras.ops.convert_to_numpy(keras.ops.cast(outputs, "float32")).astype(np.float64)
    rms = float(np.sqrt(np.mean(features**2)))
    layer.scale = target_rms / rms if rms > 0 else 1.0
    return {"rms_before": rms, "scale": float(layer.scale), "target_rms": target_rms}


def channel_moments(outputs) -> dict[str, np.ndarray]:
    """Per channel (channels last) mean and std over every other axis, as BatchNorm computes them."""
    values = keras.ops.convert_to_numpy(keras.ops.cast(outputs, "float32")).astype(np.float64)
    axes = tuple(range(values.ndim - 1))
    return {"mean": values.mean(axis=axes), "std": values.std(axis=axes)}


def _extremes(moments: dict[str, np.ndarray]) -> dict[str, float]:
    return {"largest_abs_mean": float(np.abs(moments["mean"]).max()),
            "std_min": float(moments["std"].min()), "std_max": float(moments["std"].max())}


def input_normalization(statistics: dict) -> keras.layers.Layer:
    """(pixels - mean) / std with the training-set statistics, as constants: no weights, no params."""
    mean = np.asarray(statistics["mean"], dtype="float32")
    std = np.asarray(statistics["std"], dtype="float32")
    if statistics["mode"] == "global":
        return keras.layers.Normalization(axis=None, mean=float(mean[0]), variance=float(std[0]) ** 2,
                                          name="normalize")
    return keras.layers.Normalization(axis=-1, mean=mean, variance=std**2, name="normalize")


def batch_norm_layers(model: keras.Model) -> list[keras.layers.BatchNormalization]:
    return [layer for layer in model.layers if isinstance(layer, keras.layers.BatchNormalization)]


def non_trainable_count(model: keras.Model) -> int:
    return sum(int(np.prod(weight.shape)) for weight in model.non_trainable_weights)
