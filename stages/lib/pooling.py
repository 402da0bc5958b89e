"""2x2/2 max-pooling as elementwise maxima: the Keras layer's values and gradients, on every backend
and under XLA with determinism.

TensorFlow's XLA bridge refuses the MaxPool gradient whenever op determinism is on, so a net with
keras.layers.MaxPooling2D cannot be compiled with XLA and still be reproducible. A 2x2 window
with stride 2 needs no pooling kernel: split the feature map into its four interleaved quarters
(reshape) and take the elementwise maximum. Each maximum is a `where(a >= b, a, b)`, so on a tie
the whole gradient goes to the earlier element in row-major order, exactly as MaxPooling2D's
gradient does (a plain `maximum` would split it on JAX, and TensorFlow's `reduce_max` splits it
on every backend). Other pool sizes, strides or layouts fall back to the Keras code.
"""

from __future__ import annotations

import keras
from keras import ops


@keras.saving.register_keras_serializable(package="bnlab")
class PairwiseMaxPooling2D(keras.layers.MaxPooling2D):
    def _can_rewrite(self) -> bool:
        return (tuple(self.pool_size) == (2, 2) and tuple(self.strides) == (2, 2)
                and self.data_format == "channels_last")

    def call(self, inputs):
        if not self._can_rewrite():
            return super().call(inputs)
        _, height, width, channels = inputs.shape
        if height % 2 or width % 2:
            if self.padding == "valid":  # "valid" drops the odd last row and column.
                inputs = inputs[:, :height - height % 2, :width - width % 2, :]
            else:  # "same" pads them at the end with -inf, which never wins a window.
                inputs = ops.pad(inputs, [[0, 0], [0, height % 2], [0, width % 2], [0, 0]],
                                 constant_values=float("-inf"))
            _, height, width, channels = inputs.shape
        quarters = ops.reshape(inputs, (-1, height // 2, 2, width // 2, 2, channels))
        top = _first_wins_maximum(quarters[:, :, 0, :, 0, :], quarters[:, :, 0, :, 1, :])
        bottom = _first_wins_maximum(quarters[:, :, 1, :, 0, :], quarters[:, :, 1, :, 1, :])
        return _first_wins_maximum(top, bottom)


def _first_wins_maximum(first, second):
    return ops.where(ops.greater_equal(first, second), first, second)
