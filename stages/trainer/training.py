"""The input pipeline, compilation and `fit` with per-epoch logging: the training path `train` runs.

Seeding and the backend's own pieces live in backend.py, the choice of device in device.py.
"""

from __future__ import annotations

import time
import warnings

import keras
import numpy as np

from stages.trainer import backend
from stages.trainer.cifar import Split
from stages.trainer.cli import raise_if_terminated
from stages.trainer.errors import ParamsError
from stages.trainer.params import TrainParams, check_steps_per_execution, steps_for


def epoch_orders(num_examples: int, epochs: int, seed: int) -> np.ndarray:
    """The shuffled example order of every epoch, (epochs, num_examples), drawn up front.

    Knowing the order in Python lets a callback (the landscape probe) see exactly the mini-batch
    that the next training step will use, and makes the data order independent of everything else.
    """
    generator = np.random.default_rng(seed)
    return np.stack([generator.permutation(num_examples) for _ in range(epochs)]).astype(np.int32)


def batch_indices(orders: np.ndarray, step: int, batch_size: int) -> np.ndarray:
    """Indices of the examples in global training step `step` (0-based, counted over all epochs)."""
    steps_per_epoch = steps_for(orders.shape[1], batch_size)
    epoch, batch = divmod(step, steps_per_epoch)
    return orders[epoch, batch * batch_size:(batch + 1) * batch_size]


def training_data(split: Split, orders: np.ndarray, batch_size: int):
    """uint8 batches in the precomputed order, all epochs in one sequence; the model casts and
    normalizes them itself. tf.data on TensorFlow (it prefetches in parallel), a Keras PyDataset
    of NumPy batches on the other backends, which may have no TensorFlow at all."""
    if backend.name() == "tensorflow":
        return _tensorflow_training_dataset(split, orders, batch_size)
    return EpochOrderBatches(split, orders, batch_size)


class EpochOrderBatches(keras.utils.PyDataset):
    """Batch `index` (counted over all epochs) of the precomputed orders, as NumPy arrays."""

    def __init__(self, split: Split, orders: np.ndarray, batch_size: int) -> None:
        super().__init__()
        self.images, self.labels = split.images, split.labels.astype(np.int32)
        self.orders, self.batch_size = orders, batch_size

    def __len__(self) -> int:
        return len(self.orders) * steps_for(self.orders.shape[1], self.batch_size)

    def __getitem__(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        examples = batch_indices(self.orders, index, self.batch_size)
        return self.images[examples], self.labels[examples]


def _tensorflow_training_dataset(split: Split, orders: np.ndarray, batch_size: int):
    import tensorflow as tf

    images = tf.constant(split.images)
    labels = tf.constant(split.labels.astype(np.int32))
    batches = tf.data.Dataset.from_tensor_slices(orders).flat_map(
        lambda order: tf.data.Dataset.from_tensor_slices(order).batch(batch_size))
    return batches.map(lambda index: (tf.gather(images, index), tf.gather(labels, index)),
                       num_parallel_calls=tf.data.AUTOTUNE, deterministic=True).prefetch(2)


def validation_data(split: Split, batch_size: int):
    if backend.name() != "tensorflow":
        return EpochOrderBatches(split, np.arange(len(split.labels))[None], batch_size)
    import tensorflow as tf

    return tf.data.Dataset.from_tensor_slices(
        (split.images, split.labels.astype(np.int32))).batch(batch_size).prefetch(2)


def execution_steps(params: TrainParams, steps_per_epoch: int, per_step_callbacks: bool) -> int:
    """How many training steps each compiled call runs: params.steps_per_execution, checked.

    Keras calls batch-level callbacks once per execution, so per-step observers (the landscape
    probe) need 1; and an execution that does not divide the epoch would run into the next
    epoch's batches, shifting every epoch boundary.
    """
    wanted = params.steps_per_execution
    if per_step_callbacks and wanted != 1:
        print(f"train: steps_per_execution {wanted} -> 1, because the landscape probe observes "
              "every step", flush=True)
        return 1
    if wanted != 1 and backend.name() == "torch":
        raise ParamsError(f"train.steps_per_execution = {wanted}: Keras runs one step per call on "
                         "PyTorch; set it to 1 there")
    check_steps_per_execution(wanted, steps_per_epoch)
    return wanted


def compile_model(model: keras.Model, params: TrainParams, steps_per_execution: int = 1) -> None:
    optimizers = {"adam": keras.optimizers.Adam, "sgd": keras.optimizers.SGD}
    # XLA: TensorFlow's is a choice (4x slower on a CPU, bench/); JAX always compiles with XLA
    # (its uncompiled mode runs op by op); PyTorch's torch.compile is not used.
    jit_compile = {"tensorflow": params.jit_compile, "jax": True}.get(backend.name(), False)
    # Sparse cross-entropy on integer labels equals the reference's categorical cross-entropy on
    # one-hot labels, without materializing the one-hot matrix.
    with warnings.catch_warnings():
        # Keras refuses XLA on TensorFlow whenever op determinism is on, because XLA's MaxPool
        # gradient has no deterministic form, and warns. Our pooling (pooling.py) needs no such
        # gradient, and with it the compiled step is deterministic (tests/test_training.py).
        warnings.filterwarnings("ignore", message="Model doesn't support `jit_compile=True`")
        # Momentum only where it is SGD's (params refuse it with Adam); 0 is Keras' default.
        extra = {"momentum": params.momentum} if params.optimizer == "sgd" else {}
        model.compile(optimizer=optimizers[params.optimizer](learning_rate=params.learning_rate, **extra),
                      loss=keras.losses.SparseCategoricalCrossentropy(),
                      metrics=[keras.metrics.SparseCategoricalAccuracy(name="accuracy")],
                      jit_compile=jit_compile, steps_per_execution=steps_per_execution)
    if jit_compile and not model.jit_compile:
        model._jit_compile = True


class EpochLog(keras.callbacks.Callback):
    """Per epoch: loss and accuracy while fitting and on the validation split, and wall seconds,
    to DVCLive, stdout and `history`.

    `fit/*` are Keras' running averages over the epoch's batches in training mode (dropout on, BN
    on batch statistics); `evaluate` reports the trained model's own `train.*` and `test.*`
    scores, so no two metrics share a name. Ours rather than DVCLive's Keras callback because that
    one names them `train/*` and `eval/*` and records neither wall times nor a log line per epoch.
    """

    def __init__(self, live) -> None:
        super().__init__()
        self.live = live
        self.epoch_seconds: list[float] = []
        self.history: dict[str, list[float]] = {}

    def on_epoch_begin(self, epoch, logs=None):
        self._start = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        raise_if_terminated()  # A SIGTERM whose exception C code swallowed stops training here.
        self.epoch_seconds.append(time.perf_counter() - self._start)
        values = {
            "fit/loss": logs["loss"], "fit/accuracy": logs["accuracy"],
            "val/loss": logs["val_loss"], "val/accuracy": logs["val_accuracy"],
            "epoch_seconds": self.epoch_seconds[-1],
        }
        for name, value in values.items():
            self.live.log_metric(name, round(float(value), 6))
            self.history.setdefault(name, []).append(round(float(value), 6))
        self.live.next_step()
        print(f"train: epoch {epoch + 1}: " + " ".join(f"{k}={v:.4f}" for k, v in values.items()),
              flush=True)


def fit(model: keras.Model, train: Split, validation: Split, params: TrainParams,
        orders: np.ndarray, live, callbacks: list | None = None) -> tuple[dict, dict]:
    """Train `model` (compiled here) on `orders` (see epoch_orders); return timings and history.

    `callbacks` observe every training step (the landscape probe), so with any of them each
    compiled call runs one step (see execution_steps).

    The validation split is only watched, never used to decide anything (no early stopping, no
    checkpoint choice), which is why the reference's use of the test set here is harmless.
    """
    steps_per_epoch = steps_for(len(train.labels), params.batch_size)
    steps_per_execution = execution_steps(params, steps_per_epoch, per_step_callbacks=bool(callbacks))
    compile_model(model, params, steps_per_execution)
    log = EpochLog(live)
    start = time.perf_counter()
    model.fit(training_data(train, orders, params.batch_size), epochs=params.epochs,
              steps_per_epoch=steps_per_epoch,
              validation_data=validation_data(validation, params.batch_size),
              callbacks=[log, *(callbacks or [])], shuffle=False, verbose=0)
    # fit_seconds: the epochs themselves (training steps, per-step callbacks such as the probes,
    # validation); total_seconds: all of model.fit, which adds building the input pipeline and
    # the per-epoch logging and callbacks around the epochs.
    return {"fit_seconds": round(sum(log.epoch_seconds), 3),
            "total_seconds": round(time.perf_counter() - start, 3),
            "steps_per_execution": steps_per_execution, "xla": bool(model.jit_compile)}, log.history
