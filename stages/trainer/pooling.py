"""2x2/2 max-pooling that XLA can compile under determinism: the Keras layer's values and gradients.

TensorFlow's XLA bridge refuses the MaxPool gradient whenever op determinism is on, and XLA on a
GPU has no deterministic form of it (select-and-scatter), so a net with MaxPooling2D cannot be
compiled with XLA and still be reproducible. A 2x2 window with stride 2 needs no pooling kernel:
split the feature map into its four interleaved quarters (a reshape) and take elementwise maxima.
Each maximum is a `where(a >= b, a, b)`, so on a tie the whole gradient goes to the earlier
element in row-major order, exactly as MaxPooling2D's gradient does (a plain `maximum` splits it
on JAX, and `reduce_max` splits it on every backend).

The layer computes this where XLA compiles (always on JAX, under jit_compile on TensorFlow).
Elsewhere the backend's pooling kernel is faster (2-3x per training step with TensorFlow on the
CPU, docs/performance.md), and it computes the same numbers, so it is used there, as it is for other windows.
"""

from __future__ import annotations

import keras
from keras import ops


@keras.saving.register_keras_serializable(package="bnlab")
class PairwiseMaxPooling2D(keras.layers.MaxPooling2D):
    def call(self, inputs):
        if (tuple(self.pool_size), tuple(self.strides)) == ((2, 2), (2, 2)) and \
                self.data_format == "channels_last" and compiled_by_xla():
            return pairwise_max_pool(inputs, self.padding)
        return super().call(inputs)


def compiled_by_xla() -> bool:
    backend = keras.backend.backend()
    if backend == "jax":
        return True
    if backend != "tensorflow":
        return False
    import tensorflow as tf
    from tensorflow.python.ops import control_flow_util  # What TensorFlow's own layers ask.

    return bool(control_flow_util.GraphOrParentsInXlaContext(tf.compat.v1.get_default_graph()))


def pairwise_max_pool(inputs, padding: str):
    """MaxPooling2D(pool_size=2, strides=2, padding=padding) on channels-last maps, as maxima."""
    _, height, width, channels = inputs.shape
    if height % 2 or width % 2:
        if padding == "valid":  # "valid" drops the odd last row and column.
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
