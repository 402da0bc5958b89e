"""BatchNormalization on TensorFlow's fused kernel: the Keras layer's maths and weights, ~3x faster.

Keras 3's BatchNormalization computes batch moments and the normalization with a dozen generic
ops, each a pass over the activations; on the 2-core CPU they took 11 of 38 ms per training step
of the reference net (bench/). FusedBatchNormV3 does the forward and the backward pass in one
oneDNN (CPU) or cuDNN (GPU) kernel each, and reads bfloat16 activations directly while keeping its
statistics in float32. This subclass keeps every weight, config key and moving-average rule of
the Keras layer, so parameter counts and saved models look the same; where the fused kernel does
not apply it falls back to the Keras code.

FreezableBatchNormalization and FreezeBatchNorm are bn=frozen's: BatchNorm for the first steps of
training, then a per-channel affine map with the training set's statistics of that moment.
"""

from __future__ import annotations

import time

import keras
import numpy as np

# FusedBatchNormV3 rejects smaller epsilons; the Keras code handles those.
FUSED_MIN_EPSILON = 1.001e-5


@keras.saving.register_keras_serializable(package="bnlab")
class FusedBatchNormalization(keras.layers.BatchNormalization):
    def _can_fuse(self, inputs, mask) -> bool:
        return (keras.backend.backend() == "tensorflow" and mask is None and len(inputs.shape) == 4
                and self.axis in (-1, 3) and self.center and self.scale and not self.renorm
                and not self.synchronized and self.epsilon >= FUSED_MIN_EPSILON)

    def call(self, inputs, training=None, mask=None):
        if not self._can_fuse(inputs, mask):
            return super().call(inputs, training=training, mask=mask)
        import tensorflow as tf

        if not (training and self.trainable):
            outputs, _, _ = tf.compat.v1.nn.fused_batch_norm(
                inputs, self.gamma, self.beta, mean=self.moving_mean, variance=self.moving_variance,
                epsilon=self.epsilon, is_training=False)
            return outputs
        outputs, mean, variance = tf.compat.v1.nn.fused_batch_norm(
            inputs, self.gamma, self.beta, epsilon=self.epsilon, is_training=True)
        # The kernel returns the Bessel-corrected batch variance; Keras averages the biased one.
        count = tf.cast(tf.reduce_prod(tf.shape(inputs)[:3]), "float32")
        variance = variance * (count - 1.0) / count
        self.moving_mean.assign(self.moving_mean * self.momentum + mean * (1.0 - self.momentum))
        self.moving_variance.assign(
            self.moving_variance * self.momentum + variance * (1.0 - self.momentum))
        return outputs


@keras.saving.register_keras_serializable(package="bnlab")
class FreezableBatchNormalization(FusedBatchNormalization):
    """bn=frozen's layer: BatchNormalization until `freeze_batch_norm` freezes it; from then on it
    normalizes with fixed statistics (its moving mean and variance, which the freeze sets to the
    training set's) in training as in inference, and no longer updates them, while gamma and beta
    still learn: a per-channel affine map. A saved model needs no flag: inference always used the
    moving statistics."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.frozen = False

    def call(self, inputs, training=None, mask=None):
        return super().call(inputs, training=training and not self.frozen, mask=mask)


class FreezeBatchNorm(keras.callbacks.Callback):
    """Before training step `after_steps` (0-based, counted over all epochs), set every
    FreezableBatchNormalization's statistics to those of the training set under the weights
    of that moment, freeze it, and have Keras trace the training step again."""

    record_key = "freeze"  # Where the run record keeps `summary`.

    def __init__(self, after_steps: int, images) -> None:
        super().__init__()
        self.after_steps, self.images = after_steps, images
        self.summary: dict | None = None  # What the freeze found; None if training ended first.
        self._step = 0

    def on_train_batch_begin(self, batch, logs=None):
        if self._step == self.after_steps:
            start = time.perf_counter()
            self.summary = {"step": self._step, **freeze_batch_norm(self.model, self.images)}
            # The compiled step has the layers' behaviour traced in: trace it again.
            self.model.make_train_function(force=True)
            self.summary["seconds"] = round(time.perf_counter() - start, 3)
            gaps = self.summary["layers"].values()
            print(f"train: BatchNorm frozen before step {self._step} with the training set's "
                  f"statistics ({self.summary['seconds']:.1f} s); the moving averages were off by up to "
                  f"{max(g['mean_gap_in_stds'] for g in gaps):.3g} std in mean and "
                  f"{max(g['log_variance_ratio'] for g in gaps):.3g} in log variance", flush=True)
        self._step += 1


# Images per forward pass while measuring the statistics: a few hundred MB of activations at most.
STATISTICS_BATCH = 1000


def freeze_batch_norm(model: keras.Model, images) -> dict:
    """Freeze the model's FreezableBatchNormalization layers, in order, each with the per-channel
    mean and (biased) variance of its input over `images`, computed in inference mode (dropout
    off) with the layers before it already frozen: the statistics that BN in training mode would
    see on the whole training set at these weights. Returns, per layer, how far the moving
    averages it replaced were from them (largest over channels): |mean gap| / std, and
    |log(variance ratio)|; zero for both would mean that the moving averages had converged."""
    if hasattr(model, "jax_state_sync"):  # JAX keeps the training state outside the variables.
        model.jax_state_sync()
    gaps = {}
    for layer in [layer for layer in model.layers if isinstance(layer, FreezableBatchNormalization)]:
        mean, variance = _input_moments(model, layer, images)
        moving_mean = keras.ops.convert_to_numpy(layer.moving_mean).astype(np.float64)
        moving_variance = keras.ops.convert_to_numpy(layer.moving_variance).astype(np.float64)
        gaps[layer.name] = {
            "mean_gap_in_stds": float(np.max(np.abs(moving_mean - mean) / np.sqrt(variance + layer.epsilon))),
            "log_variance_ratio": float(np.max(np.abs(np.log((moving_variance + layer.epsilon)
                                                             / (variance + layer.epsilon)))))}
        layer.moving_mean.assign(mean.astype("float32"))
        layer.moving_variance.assign(variance.astype("float32"))
        layer.frozen = True
    return {"layers": gaps}


def _input_moments(model: keras.Model, target: keras.layers.Layer, images) -> tuple[np.ndarray, np.ndarray]:
    """Per channel mean and biased variance of `target`'s input over `images`, batch by batch,
    combined exactly in float64 (Chan et al.'s pairwise update)."""
    count, mean, m2 = 0, 0.0, 0.0
    for start in range(0, len(images), STATISTICS_BATCH):
        outputs = keras.ops.convert_to_tensor(images[start:start + STATISTICS_BATCH])
        for layer in model.layers:
            if layer is target:
                break
            outputs = layer(outputs, training=False)
        values = keras.ops.convert_to_numpy(keras.ops.cast(outputs, "float32")).astype(np.float64)
        values = values.reshape(-1, values.shape[-1])
        batch_mean, batch_m2 = values.mean(axis=0), values.var(axis=0) * len(values)
        total = count + len(values)
        delta = batch_mean - mean
        mean = mean + delta * len(values) / total
        m2 = m2 + batch_m2 + delta**2 * count * len(values) / total
        count = total
    return np.asarray(mean), np.asarray(m2 / count)
