"""The probes along the real update: closed forms on a quadratic, the planned update against the
optimizer's own step, and the divergence flag. (Probing a real training run: test_training.py.)"""

import math

import keras
import numpy as np
import pytest
import tensorflow as tf

from stages.trainer.landscape import PlannedUpdate, has_diverged, measure_update

MULTIPLES = [0.5, 1.0, 2.0, 4.0]


def quadratic(matrix: np.ndarray, sizes: tuple[int, ...]):
    """L(w) = 1/2 w'Aw with w split into variables of `sizes`: the gradient is Aw, piece by piece."""
    a = tf.constant(matrix)

    def loss_and_gradient(weights):
        vector = tf.concat(weights, axis=0)
        gradient = tf.linalg.matvec(a, vector)
        return 0.5 * tf.tensordot(vector, gradient, 1), list(tf.split(gradient, sizes))

    return loss_and_gradient


def test_measures_along_any_direction_match_the_closed_form():
    """Along D: grad L(w + kD) - g = kAD, so beta = ||AD|| / ||D|| for every k, and
    L(w + kD) = L(w) + k g.D + k^2/2 D'AD; along -g at length eta = ||D|| / ||g||, beta = ||Ag|| / ||g||."""
    generator = np.random.default_rng(0)
    root = generator.normal(size=(5, 5))
    a = root @ root.T + np.eye(5)
    w, d = generator.normal(size=5), generator.normal(size=5) * 0.1
    sizes = (3, 2)
    loss_and_gradient = quadratic(a, sizes)
    weights = [tf.constant(part) for part in np.split(w, [3])]
    loss, gradient = loss_and_gradient(weights)
    update = [tf.constant(part) for part in np.split(d, [3])]
    got = measure_update(loss_and_gradient, weights, loss, gradient, update, MULTIPLES)
    got = {name: np.asarray(value) for name, value in got.items()}

    g = a @ w
    along_update = [0.5 * (w + k * d) @ a @ (w + k * d) for k in MULTIPLES]
    eta = np.linalg.norm(d) / np.linalg.norm(g)
    along_gradient = [0.5 * (w - k * eta * g) @ a @ (w - k * eta * g) for k in MULTIPLES]
    expected = {
        "gradient_norm": np.linalg.norm(g), "update_norm": np.linalg.norm(d), "step_length": eta,
        "cos_update_gradient": -(g @ d) / (np.linalg.norm(g) * np.linalg.norm(d)),
        "predicted_change": g @ d, "loss_change": g @ d + 0.5 * d @ a @ d,
        "update_loss_min": min(along_update), "update_loss_max": max(along_update),
        "update_grad_change_max": 4 * np.linalg.norm(a @ d),
        "update_beta": np.linalg.norm(a @ d) / np.linalg.norm(d),
        "real_length_loss_min": min(along_gradient), "real_length_loss_max": max(along_gradient),
        "real_length_grad_change_max": 4 * eta * np.linalg.norm(a @ g),
        "real_length_beta": np.linalg.norm(a @ g) / np.linalg.norm(g),
        "update_squares": [d[:3] @ d[:3], d[3:] @ d[3:]],
        "weight_squares": [w[:3] @ w[:3], w[3:] @ w[3:]],
        "gradient_squares": [g[:3] @ g[:3], g[3:] @ g[3:]],
    }
    assert set(got) == set(expected)
    for name, value in expected.items():
        np.testing.assert_allclose(got[name], value, rtol=1e-10, err_msg=name)


def test_the_real_step_is_always_measured():
    """loss_change needs L(w + D): k = 1 is added when the multiples leave it out."""
    a = np.diag([1.0, 3.0])
    loss_and_gradient = quadratic(a, (2,))
    w, d = np.array([1.0, -1.0]), np.array([-0.2, 0.1])
    loss, gradient = loss_and_gradient([tf.constant(w)])
    got = measure_update(loss_and_gradient, [tf.constant(w)], loss, gradient, [tf.constant(d)], [2.0])
    assert float(got["loss_change"]) == pytest.approx((a @ w) @ d + 0.5 * d @ a @ d)


def dense_model(optimizer) -> keras.Model:
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3, name="first"),
                              keras.layers.Dense(2, name="second")])
    model.compile(optimizer=optimizer, loss="mse")
    return model


def snapshot(variables) -> list[np.ndarray]:
    return [keras.ops.convert_to_numpy(keras.ops.copy(v)) for v in variables]


@pytest.mark.parametrize("make_optimizer", [
    lambda: keras.optimizers.Adam(learning_rate=0.01),
    lambda: keras.optimizers.SGD(learning_rate=0.1),
    lambda: keras.optimizers.SGD(learning_rate=0.1, momentum=0.9),
], ids=["adam", "sgd", "sgd-momentum"])
def test_planned_update_is_the_step_the_optimizer_then_takes(make_optimizer):
    """Before the first step (the optimizer not built yet) and after a few (Adam's moments set)."""
    model = dense_model(make_optimizer())
    optimizer, variables = model.optimizer, model.trainable_variables
    planned_update = PlannedUpdate(optimizer)
    generator = np.random.default_rng(1)
    for step in range(4):
        gradient = [tf.constant(generator.normal(size=v.shape), "float32") for v in variables]
        weights, state = snapshot(variables), snapshot(optimizer.variables)
        planned = planned_update([v.value for v in variables], gradient)
        # Planning wrote nothing: not the weights, not the optimizer's state or step count.
        for value, variable in zip(weights, variables):
            np.testing.assert_array_equal(value, keras.ops.convert_to_numpy(keras.ops.copy(variable)))
        assert all(np.array_equal(a, b) for a, b in zip(state, snapshot(optimizer.variables)))
        optimizer.apply(gradient, variables)
        for delta, before, after in zip(planned, weights, snapshot(variables)):
            np.testing.assert_allclose(keras.ops.convert_to_numpy(delta), after - before, rtol=1e-6,
                                       atol=1e-9, err_msg=f"step {step}")
    assert int(optimizer.iterations.numpy()) == 4


def test_sgd_steps_along_minus_the_gradient_by_the_learning_rate():
    """Keras' SGD defaults to momentum 0: the plain SGD of the paper, where D = -lr * g."""
    assert keras.optimizers.SGD().momentum == 0.0
    model = dense_model(keras.optimizers.SGD(learning_rate=0.05))
    gradient = [tf.ones_like(v.value) for v in model.trainable_variables]
    planned = PlannedUpdate(model.optimizer)([v.value for v in model.trainable_variables], gradient)
    for delta in planned:
        np.testing.assert_allclose(keras.ops.convert_to_numpy(delta), -0.05, rtol=1e-5)


@pytest.mark.parametrize("initial, losses, final, expected", [
    (2.3, [1.9, 1.2], 0.9, False),
    (2.3, [1.9, math.nan], 0.9, True),   # A non-finite loss on the way.
    (2.3, [1.9, 2.0], math.inf, True),  # Non-finite at the end.
    (2.3, [1.9, 2.2], 2.4, True),       # Ends above where it started.
    (2.3, [], 2.3, False),              # Ends where it started: no progress, but no divergence.
])
def test_divergence_flag(initial, losses, final, expected):
    assert has_diverged(initial, losses, final) is expected
