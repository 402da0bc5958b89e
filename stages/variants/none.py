"""`none`: Conv2D (with bias) -> activation -> MaxPool, the control without BatchNorm."""

CONV_BIAS = True
BATCH_NORM = None


def block(conv, norm, activation, pool, pool_first: bool) -> list:
    return [conv, *((pool, activation) if pool_first else (activation, pool))]
