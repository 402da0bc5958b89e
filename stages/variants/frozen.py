"""`frozen`: the `before` block, whose BatchNorm normalizes with batch statistics for the first
`model.bn_freeze_after_steps` training steps and then with the training set's statistics of that
moment, fixed (batch_norm.FreezeBatchNorm): between `rescaled` (normalized once) and `before`
(normalized throughout); same parameters as `before`."""

from stages.trainer.batch_norm import FreezableBatchNormalization, FreezeBatchNorm

CONV_BIAS = False
BATCH_NORM = FreezableBatchNormalization


def block(conv, norm, activation, pool, pool_first: bool) -> list:
    return [conv, norm, *((pool, activation) if pool_first else (activation, pool))]


def callbacks(params, train_images) -> list:
    return [FreezeBatchNorm(params.bn_freeze_after_steps, train_images)]
