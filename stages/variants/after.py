"""`after`: Conv2D (no bias) -> activation -> BatchNorm -> MaxPool, the reference notebook's variant
(there the activation is the convolution's own; here it is its own layer, the same function)."""

from stages.trainer.batch_norm import FusedBatchNormalization

CONV_BIAS = False
BATCH_NORM = FusedBatchNormalization


def block(conv, norm, activation, pool, pool_first: bool) -> list:
    return [conv, activation, norm, pool]
