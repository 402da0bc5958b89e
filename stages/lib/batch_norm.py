"""BatchNormalization on TensorFlow's fused kernel: the Keras layer's maths and weights, ~3x faster.

Keras 3's BatchNormalization computes batch moments and the normalization with a dozen generic
ops, each a pass over the activations; on the 2-core CPU they took 11 of 38 ms per training step
of the reference net (bench/). FusedBatchNormV3 does the forward and the backward pass in one
oneDNN (CPU) or cuDNN (GPU) kernel each, and reads bfloat16 activations directly while keeping its
statistics in float32. This subclass keeps every weight, config key and moving-average rule of
the Keras layer, so parameter counts and saved models look the same; where the fused kernel does
not apply it falls back to the Keras code.
"""

from __future__ import annotations

import keras

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
