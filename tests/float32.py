"""Tolerances for comparing two float32 computations of one quantity that may run different
kernels: oneDNN's AVX2, AVX-512 or AMX code, Eigen, XLA, or another backend. Derived from float32
rounding, not tuned on one machine, so that a test passes on every CPU our users have.

Kernels differ in how they order and block their sums. A sum of n terms computed in any order is
within gamma(n) * sum(|x_i|) of the exact sum; the worst case gives gamma(n) = n u / (1 - n u),
with u = 2**-24 float32's unit roundoff (Higham, Accuracy and Stability of Numerical Algorithms,
2nd ed., eq. 4.4). That worst case assumes every rounding error points the same way; with errors
that are independent and of mean zero, the error stays below lambda * sqrt(n) * u except with
probability at most 2 exp(-lambda**2 / 2) (Higham and Mary, SIAM J. Sci. Comput. 41(5), 2019,
Theorem 2.8). We use that bound with lambda = 6, a failure probability below 1e-7 per sum.

A computation that chains several sums (a forward pass, a gradient) accumulates, to first order,
the relative errors of each sum along the chain. Two kernels may err in opposite directions, so
they differ by up to twice one computation's error. A result that cancels (a sum of terms of both
signs much larger than the sum) is relatively less accurate by its condition number
sum(|x_i|) / |sum(x_i)|; where a test compares such a result, it passes that condition, which the
test computes or bounds, and says how.
"""

from __future__ import annotations

import math

import numpy as np

UNIT_ROUNDOFF = 2.0**-24  # float32: the largest relative error of one rounding.
LAMBDA = 6.0  # Higham and Mary's confidence parameter: P(exceeding the bound) <= 2 exp(-18).


def sum_error(terms: int) -> float:
    """Relative error bound (of sum |x_i|) of one float32 sum of `terms` terms, in any order."""
    return LAMBDA * math.sqrt(terms) * UNIT_ROUNDOFF + UNIT_ROUNDOFF  # + u: the final rounding.


def kernels_rtol(*sums: int, condition: float = 1.0) -> float:
    """Relative tolerance between two float32 computations of one result that chains sums of
    these lengths, run by kernels that may order each sum differently."""
    return 2 * condition * sum(sum_error(terms) for terms in sums)


def assert_kernels_agree(actual, expected, *sums: int, condition: float = 1.0, err_msg: str = "") -> None:
    """Every entry of `actual` within kernels_rtol of `expected`, relative to the largest entry:
    a sum's rounding error scales with its terms, not with its result, so an entry that happens
    to be near zero (common in a gradient) cannot be held to its own relative bound."""
    expected = np.asarray(expected, np.float64)
    tolerance = kernels_rtol(*sums, condition=condition)
    scale = float(np.max(np.abs(expected))) if expected.size else 0.0
    np.testing.assert_allclose(np.asarray(actual, np.float64), expected, rtol=tolerance,
                               atol=tolerance * scale, err_msg=err_msg)


def network_sums(model, batch: int, side: int = 32, channels: int = 3, classes: int = 10,
                 batch_statistics: bool = True) -> list[int]:
    """The lengths of the sums one forward pass of bnlab's net chains (model: params.yaml's
    `model`): per block a convolution (kernel_size² × input channels terms) and, in training,
    BN's batch statistics (batch × height × width terms; counted for every variant, an upper
    bound for `none`); the dense layers' fan-ins; the softmax's normalizer; the mean loss over
    `batch` examples. In inference (batch_statistics=False) BN uses its moving statistics."""
    sums = []
    for filters in model.filters:
        sums += [model.kernel_size**2 * channels] + ([batch * side * side] if batch_statistics else [])
        channels, side = filters, side // 2
    return sums + [channels * side * side, model.dense_units, classes, batch]


def gradient_sums(model, batch: int) -> list[int]:
    """A gradient chains the forward pass's sums, then backwards the input gradients' (each as
    long as a forward fan-out, bounded here by the same lengths) and the weight gradients' (over
    batch × positions, as BN's statistics): three times the forward sums, to first order."""
    return 3 * network_sums(model, batch)


def variance_condition(values) -> float:
    """How much a one-pass variance, E[x²] − E[x]², can cancel on these values (channels last):
    the largest (mean² + variance) / variance over channels. A kernel may compute BN's variance
    that way, and its rounding error then grows by this factor."""
    values = np.asarray(values, np.float64)
    values = values.reshape(-1, values.shape[-1])
    variance = values.var(axis=0)
    return float(max(1.0, np.max((values.mean(axis=0) ** 2 + variance) / variance)))


def batch_norm_condition(model, pixels) -> float:
    """variance_condition over the inputs of every BN layer of `model` on `pixels` (1 without BN)."""
    import keras

    from stages.trainer.model import batch_norm_layers

    norms = batch_norm_layers(model)
    if not norms:
        return 1.0
    inputs = keras.Model(model.inputs, [layer.input for layer in norms])(pixels)
    inputs = inputs if isinstance(inputs, (list, tuple)) else [inputs]
    return max(variance_condition(keras.ops.convert_to_numpy(values)) for values in inputs)
