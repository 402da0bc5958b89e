"""Loss-landscape smoothness along the gradient, as in Santurkar et al. 2018 (Sec. 3.1, Fig. 4).

At a training step with weights w and mini-batch gradient g = grad L(w), for each step size eta:
move to w - eta*g (in a copy: the model is never changed), and on the same mini-batch compute

    loss landscape           L(w - eta*g)                                    -> min and max over eta
    gradient predictiveness  ||grad L(w - eta*g) - g||                       -> min and max over eta
    effective beta-smoothness max over eta of ||grad L(w - eta*g) - g|| / ||eta*g||

A smoother landscape (what the paper credits BatchNorm with) shows as a narrower loss range, a
smaller gradient change and a smaller beta.
"""

from __future__ import annotations

import statistics as stats
from typing import Callable, Sequence

import keras
import numpy as np
from keras import ops

from stages.lib import backend
from stages.lib.atomic import atomic_write
from stages.lib.cifar import Split
from stages.lib.params import LandscapeParams, TrainParams
from stages.lib.training import batch_indices

LossAndGradient = backend.LossAndGradient
COLUMNS = ("step", "loss", "loss_min", "loss_max", "grad_change_min", "grad_change_max", "beta")


def measure(loss_and_gradient: LossAndGradient, weights: list,
            step_sizes: Sequence[float]) -> dict:
    """The paper's three measures at `weights`, for any differentiable loss (a pure function)."""
    loss, gradient = loss_and_gradient(weights)
    gradient_norm = _global_norm(gradient)
    losses, changes, betas = [], [], []
    for eta in step_sizes:
        moved = [w - eta * g for w, g in zip(weights, gradient)]
        moved_loss, moved_gradient = loss_and_gradient(moved)
        change = _global_norm([a - b for a, b in zip(moved_gradient, gradient)])
        losses.append(moved_loss)
        changes.append(change)
        # Divide by the distance actually moved, eta * ||g||.
        betas.append(change / ops.maximum(eta * gradient_norm, 1e-12))
    return {"loss": loss, "loss_min": ops.min(ops.stack(losses)), "loss_max": ops.max(ops.stack(losses)),
            "grad_change_min": ops.min(ops.stack(changes)), "grad_change_max": ops.max(ops.stack(changes)),
            "beta": ops.max(ops.stack(betas))}


def _global_norm(tensors: list):
    return ops.sqrt(sum(ops.sum(ops.square(tensor)) for tensor in tensors))


def model_loss_and_gradient(model: keras.Model, non_trainable: list, images, labels) -> LossAndGradient:
    """L(weights) on one mini-batch, computed statelessly with the backend's own gradients:
    BN in training mode, as the optimized loss is, but its moving statistics, the dropout RNG and
    the weights are never written (see backend.loss_and_gradient)."""
    return backend.loss_and_gradient(model, non_trainable, images, labels)


class LandscapeProbe(keras.callbacks.Callback):
    """Every `every_steps` training steps, measure the landscape on the step's own mini-batch,
    before the optimizer moves the weights. Records stay in memory and go to a CSV at the end."""

    def __init__(self, train: Split, orders: np.ndarray, landscape: LandscapeParams,
                 train_params: TrainParams) -> None:
        super().__init__()
        self.images, self.labels, self.orders = train.images, train.labels.astype(np.int32), orders
        self.every_steps = landscape.every_steps
        self.batch_size = train_params.batch_size
        # Step sizes are given as multiples of the learning rate: the scale of one real update.
        self.step_sizes = [m * train_params.learning_rate for m in landscape.step_sizes]
        self.records: list[dict] = []
        self._step = 0
        self._measure = backend.compile_function(self._measure_batch)

    def _measure_batch(self, weights, non_trainable, images, labels):
        # The variables' values are arguments, not captured: a compiled JAX function would
        # otherwise keep the values of its first call.
        loss_and_gradient = model_loss_and_gradient(self.model, non_trainable, images, labels)
        return measure(loss_and_gradient, weights, self.step_sizes)

    def on_train_batch_begin(self, batch, logs=None):
        if self._step % self.every_steps == 0:
            index = batch_indices(self.orders, self._step, self.batch_size)
            values = self._measure([v.value for v in self.model.trainable_variables],
                                   [v.value for v in self.model.non_trainable_variables],
                                   ops.convert_to_tensor(self.images[index]),
                                   ops.convert_to_tensor(self.labels[index]))
            self.records.append({"step": self._step, **{k: float(v) for k, v in values.items()}})
        self._step += 1

    def summary(self) -> dict:
        """Medians over training: one number per measure for metrics and the study table."""
        if not self.records:
            return {}
        def median(key):
            return round(stats.median(r[key] for r in self.records), 6)
        return {"beta_median": median("beta"),
                "loss_range_median": round(stats.median(r["loss_max"] - r["loss_min"]
                                                        for r in self.records), 6),
                "grad_change_max_median": median("grad_change_max"),
                "probes": len(self.records)}

    def columns(self) -> dict[str, list[float]]:
        """The probes column by column (a JSON object of lists, as the study's records keep them)."""
        return {column: [record[column] for record in self.records] for column in COLUMNS}

    def write_csv(self, path) -> None:
        with atomic_write(path) as out:
            lines = [",".join(COLUMNS)]
            lines += [",".join(f"{r[c]:.6g}" for c in COLUMNS) for r in self.records]
            out.write(("\n".join(lines) + "\n").encode())

