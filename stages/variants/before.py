"""`before`: Conv2D (no bias) -> BatchNorm -> activation -> MaxPool, the reference notebook's main model."""

from stages.trainer.batch_norm import FusedBatchNormalization

CONV_BIAS = False
BATCH_NORM = FusedBatchNormalization


def block(conv, norm, activation, pool, pool_first: bool) -> list:
    return [conv, norm, *((pool, activation) if pool_first else (activation, pool))]
