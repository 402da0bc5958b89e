"""Loss-landscape probes: the paper's measure along the gradient, and the same along the step the
optimizer really takes.

The paper's measure (Santurkar et al. 2018, Sec. 3.1, Fig. 4). At a training step with weights w
and mini-batch gradient g = grad L(w), for each step size eta: move to w - eta*g (in a copy: the
model is never changed), and on the same mini-batch compute

    loss landscape           L(w - eta*g)                                    -> min and max over eta
    gradient predictiveness  ||grad L(w - eta*g) - g||                       -> min and max over eta
    effective beta-smoothness max over eta of ||grad L(w - eta*g) - g|| / ||eta*g||

A smoother landscape (what the paper credits BatchNorm with) shows as a narrower loss range, a
smaller gradient change and a smaller beta.

Along the real update. Adam does not step along -g, nor by lr*||g||, so the same questions are also
asked about the update D that the optimizer is about to apply (computed by a copy of it, see
PlannedUpdate): the loss and gradient change at w + k*D (beta along D), the loss along -g at the
real step length ||D||/||g||, the per-layer effective step ||D_l||/||w_l||, cos(D, -g), and the
realized loss change L(w + D) - L(w) against its first-order prediction g.D.
"""

from __future__ import annotations

import math
import statistics as stats
import time
from typing import Callable, Iterable, Sequence

import keras
import numpy as np
from keras import ops

from stages.trainer import backend
from stages.trainer.atomic import atomic_write
from stages.trainer.cifar import Split
from stages.trainer.params import LandscapeParams, TrainParams
from stages.trainer.training import batch_indices

LossAndGradient = backend.LossAndGradient
COLUMNS = ("step", "loss", "loss_min", "loss_max", "grad_change_min", "grad_change_max", "beta")
# Along the real update D (see measure_update), then the same along -g at the real step length.
UPDATE_COLUMNS = ("gradient_norm", "update_norm", "step_length", "cos_update_gradient",
                  "loss_change", "predicted_change", "decrease_ratio",
                  "update_loss_min", "update_loss_max", "update_grad_change_max", "update_beta",
                  "real_length_loss_min", "real_length_loss_max", "real_length_grad_change_max",
                  "real_length_beta")
# Summarized by their medians over training (LandscapeProbe.summary), the paper's first.
SUMMARIZED = ("beta", "loss_range", "grad_change_max", "update_beta", "update_loss_range",
              "update_grad_change_max", "real_length_beta", "real_length_loss_range", "step_length",
              "cos_update_gradient", "decrease_ratio")
# Per-variable squared norms from measure_update, summed per layer by the probe.
SQUARED_NORMS = ("update_squares", "weight_squares", "gradient_squares")


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


def global_norm(tensors) -> keras.KerasTensor:
    return keras.ops.sqrt(sum(keras.ops.sum(keras.ops.square(t)) for t in tensors))


def dot(first, second) -> keras.KerasTensor:
    """The inner product of two lists of tensors, as if each list were one flat vector."""
    return sum(keras.ops.sum(a * b) for a, b in zip(first, second))


def measure_update(loss_and_gradient: LossAndGradient, weights: list, loss, gradient: list,
                   update: list, multiples: Sequence[float]) -> dict:
    """The landscape along the update D that the optimizer takes from `weights`, whose loss and
    gradient g are given (already computed for D). For each k in `multiples`, and k = 1 always:

        along D            L(w + k*D), ||grad L(w + k*D) - g||, beta = max_k of that / ||k*D||
        along -g, at the   the same at w - k*eta*g with eta = ||D|| / ||g||: the paper's direction
        real step length   at the distance the optimizer really moves
        first order        L(w + D) - L(w) against its prediction g.D, and cos(D, -g)

    plus the squared norms of D, w and g per variable (the caller sums them per layer).
    """
    ops = keras.ops
    multiples = sorted(set(multiples) | {1.0})  # k = 1 is the real step: loss_change needs it.
    gradient_norm, update_norm = global_norm(gradient), global_norm(update)
    step_length = update_norm / ops.maximum(gradient_norm, 1e-12)
    along_update = _along(loss_and_gradient, weights, gradient, update, multiples)
    along_gradient = _along(loss_and_gradient, weights, gradient,
                            [-step_length * g for g in gradient], multiples)
    predicted_change = dot(gradient, update)
    loss_change = along_update["losses"][multiples.index(1.0)] - loss
    return {
        "gradient_norm": gradient_norm, "update_norm": update_norm, "step_length": step_length,
        "cos_update_gradient": -predicted_change / ops.maximum(update_norm * gradient_norm, 1e-12),
        "loss_change": loss_change, "predicted_change": predicted_change,
        **{f"update_{name}": value for name, value in _extremes(along_update).items()},
        **{f"real_length_{name}": value for name, value in _extremes(along_gradient).items()},
        "update_squares": ops.stack([ops.sum(ops.square(d)) for d in update]),
        "weight_squares": ops.stack([ops.sum(ops.square(w)) for w in weights]),
        "gradient_squares": ops.stack([ops.sum(ops.square(g)) for g in gradient]),
    }


def _along(loss_and_gradient: LossAndGradient, weights: list, gradient: list, direction: list,
           multiples: Sequence[float]) -> dict[str, list]:
    """Loss, gradient change and beta at w + k*direction for each k."""
    length = keras.ops.maximum(global_norm(direction), 1e-12)
    losses, changes, betas = [], [], []
    for k in multiples:
        moved_loss, moved_gradient = loss_and_gradient([w + k * d for w, d in zip(weights, direction)])
        change = global_norm([a - b for a, b in zip(moved_gradient, gradient)])
        losses.append(moved_loss)
        changes.append(change)
        betas.append(change / (k * length))
    return {"losses": losses, "changes": changes, "betas": betas}


def _extremes(along: dict[str, list]) -> dict:
    ops = keras.ops
    return {"loss_min": ops.min(ops.stack(along["losses"])), "loss_max": ops.max(ops.stack(along["losses"])),
            "grad_change_max": ops.max(ops.stack(along["changes"])),
            "beta": ops.max(ops.stack(along["betas"]))}


class PlannedUpdate:
    """The update D = w_next - w that `optimizer` will apply at its next step for a gradient.

    A copy of the optimizer (same class, config and state) applies the gradient to copies of the
    weights: Keras' own update rule, so D is exact for Adam, SGD and any other optimizer, while
    neither the model nor the real optimizer is written. (Keras' `stateless_apply` would need no
    copies, but its TensorFlow backend refuses it.)
    """

    def __init__(self, optimizer: keras.optimizers.Optimizer) -> None:
        self.optimizer = optimizer
        self._shadow: keras.optimizers.Optimizer | None = None
        self._copies: list[keras.Variable] = []

    def __call__(self, weights: list, gradient: list) -> list:
        # Values, not variables: a keras.Variable made from a TensorFlow variable shares its storage.
        weights = [keras.ops.copy(weight) for weight in weights]
        if self._shadow is None or not self.optimizer.built:
            # An optimizer is built at its first step; until then its state is the initial one,
            # which is exactly what a freshly built copy holds.
            self._copies = [keras.Variable(w, name=f"planned_{i}") for i, w in enumerate(weights)]
            self._shadow = self.optimizer.__class__.from_config(self.optimizer.get_config())
            self._shadow.build(self._copies)
        for copy, value in zip(self._copies, weights):
            copy.assign(value)
        if self.optimizer.built:
            if [v.shape for v in self._shadow.variables] != [v.shape for v in self.optimizer.variables]:
                raise ValueError("the optimizer's state does not match the weights it was given; "
                                 "pass the model's trainable weights in their order")
            for mine, theirs in zip(self._shadow.variables, self.optimizer.variables):
                mine.assign(theirs)
        self._shadow.apply(gradient, self._copies)
        return [keras.ops.convert_to_tensor(copy) - value for copy, value in zip(self._copies, weights)]


def has_diverged(initial_loss: float, losses: Iterable[float], final_loss: float) -> bool:
    """A run diverged if any loss it saw is not finite, or it ends above the loss it started from."""
    seen = [initial_loss, *losses, final_loss]
    return not all(math.isfinite(value) for value in seen) or final_loss > initial_loss


def layer_of(variable: keras.Variable) -> str:
    """'convnet_bn_before/conv1/kernel' -> 'conv1': the layer a weight belongs to."""
    return variable.path.split("/")[-2]


class LandscapeProbe(keras.callbacks.Callback):
    """Every `every_steps` training steps, measure the landscape on the step's own mini-batch,
    before the optimizer moves the weights: along -g (the paper's measure) and along the update D
    the optimizer is about to take. Records stay in memory and go to CSVs at the end."""

    def __init__(self, train: Split, orders: np.ndarray, landscape: LandscapeParams,
                 train_params: TrainParams, weight_norms: bool = False) -> None:
        super().__init__()
        # Each layer's weight norm ||w_l|| as a column too (the norms grid's cells): off elsewhere,
        # so that the study's and sweep's records keep the columns they were cached with.
        self.weight_norms = weight_norms
        self.images, self.labels, self.orders = train.images, train.labels.astype(np.int32), orders
        self.every_steps = landscape.every_steps
        self.batch_size = train_params.batch_size
        # The paper's step sizes are multiples of the learning rate: the scale of one SGD update.
        self.step_sizes = [m * train_params.learning_rate for m in landscape.step_sizes]
        # Along the real update the same numbers are multiples of the update itself.
        self.multiples = list(landscape.step_sizes)
        self.records: list[dict] = []
        self.final_loss = math.nan
        self._step = 0
        self.seconds = 0.0  # Wall time spent probing: part of the epochs' time, not training.
        self._planned_update: PlannedUpdate | None = None
        self._traced_for = None  # The training step the probe's compiled functions match.

    # The variables' values are arguments, not captured: a compiled JAX function would otherwise
    # keep the values of its first call.
    def _gradient_batch(self, weights, non_trainable, images, labels):
        return model_loss_and_gradient(self.model, non_trainable, images, labels)(weights)

    def _measure_batch(self, weights, non_trainable, images, labels, loss, gradient, update):
        loss_and_gradient = model_loss_and_gradient(self.model, non_trainable, images, labels)
        return {**measure(loss_and_gradient, weights, self.step_sizes),
                **measure_update(loss_and_gradient, weights, loss, gradient, update, self.multiples)}

    def on_train_begin(self, logs=None):
        self.layers = [layer_of(v) for v in self.model.trainable_variables]
        self._planned_update = PlannedUpdate(self.model.optimizer)

    def on_train_batch_begin(self, batch, logs=None):
        if self._step % self.every_steps == 0:
            start = time.perf_counter()
            if self._traced_for is not self.model.train_function:
                # The probe measures the loss that the training step optimizes: when Keras traces
                # that step again (bn=frozen's freeze changes what BatchNorm computes), so does it.
                self._gradient = backend.compile_function(self._gradient_batch)
                self._measure = backend.compile_function(self._measure_batch)
                self._traced_for = self.model.train_function
            index = batch_indices(self.orders, self._step, self.batch_size)
            weights = [v.value for v in self.model.trainable_variables]
            non_trainable = [v.value for v in self.model.non_trainable_variables]
            images = ops.convert_to_tensor(self.images[index])
            labels = ops.convert_to_tensor(self.labels[index])
            loss, gradient = self._gradient(weights, non_trainable, images, labels)
            update = self._planned_update(weights, gradient)
            self.records.append(self._record(
                self._measure(weights, non_trainable, images, labels, loss, gradient, update)))
            self.seconds += time.perf_counter() - start
        self._step += 1

    def on_epoch_end(self, epoch, logs=None):
        self.final_loss = float(logs["loss"])  # The last epoch's mean training loss, once fit ends.

    def _record(self, values: dict) -> dict:
        record = {"step": self._step}
        record.update({name: float(value) for name, value in values.items() if name not in SQUARED_NORMS})
        predicted = record["predicted_change"]
        record["decrease_ratio"] = record["loss_change"] / predicted if predicted else math.nan
        for prefix in ("", "update_", "real_length_"):
            record[f"{prefix}loss_range"] = record[f"{prefix}loss_max"] - record[f"{prefix}loss_min"]
        squares = {name: np.asarray(values[name], np.float64) for name in SQUARED_NORMS}
        for layer in dict.fromkeys(self.layers):  # Unique layer names, in model order.
            mask = np.array([name == layer for name in self.layers])
            update, weight = (math.sqrt(squares[n][mask].sum()) for n in ("update_squares", "weight_squares"))
            record[f"effective_step/{layer}"] = update / weight if weight else math.nan
            record[f"gradient_norm/{layer}"] = math.sqrt(squares["gradient_squares"][mask].sum())
            if self.weight_norms:
                record[f"weight_norm/{layer}"] = weight
        return record

    def layer_columns(self) -> list[str]:
        """step, then the per-layer effective step and gradient norm (and weight norm, if recorded)
        columns, in model order."""
        return ["step", *(key for key in self.records[0] if "/" in key)] if self.records else ["step"]

    def summary(self) -> dict:
        """Medians over training (of the finite values: a diverged run has others) for metrics and
        the study table, and whether the run diverged."""
        if not self.records:
            return {}
        def median(key):
            finite = [record[key] for record in self.records if math.isfinite(record[key])]
            return _rounded(stats.median(finite)) if finite else None
        layers = dict.fromkeys(self.layers)
        initial_loss = self.records[0]["loss"]
        return {**{f"{key}_median": median(key) for key in SUMMARIZED},
                **{f"{measure}_median": {layer: median(f"{measure}/{layer}") for layer in layers}
                   for measure in ("effective_step", "gradient_norm")},
                "initial_loss": _rounded(initial_loss), "final_loss": _rounded(self.final_loss),
                "diverged": has_diverged(initial_loss, [r["loss"] for r in self.records], self.final_loss),
                "probes": len(self.records)}

    def columns(self) -> dict[str, list[float]]:
        """The probes column by column (a JSON object of lists, as the study's records keep them)."""
        names = self.records[0] if self.records else COLUMNS
        return {name: [record[name] for record in self.records] for name in names}

    def write_csv(self, path, columns: Sequence[str] = COLUMNS + UPDATE_COLUMNS) -> None:
        with atomic_write(path) as out:
            lines = [",".join(columns)]
            lines += [",".join(f"{r[c]:.6g}" for c in columns) for r in self.records]
            out.write(("\n".join(lines) + "\n").encode())


def _rounded(value: float) -> float | None:
    """Six significant digits for the summary (effective steps are ~1e-4); None for a non-finite
    value, which JSON cannot hold."""
    return float(f"{value:.6g}") if math.isfinite(value) else None
