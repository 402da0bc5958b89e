"""`rescaled`: the `none` block, whose kernels and biases are rescaled once, before training, so that on
the first training batch every conv channel has mean 0 and std 1 (model.data_dependent_init):
BatchNorm's first step without BatchNorm. Nothing normalizes after that; same parameters as `none`."""

from stages.trainer.model import data_dependent_init

CONV_BIAS = True
BATCH_NORM = None


def block(conv, norm, activation, pool, pool_first: bool) -> list:
    return [conv, *((pool, activation) if pool_first else (activation, pool))]


def initialize(model, images) -> dict:
    return data_dependent_init(model, images)
