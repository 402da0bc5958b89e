"""Seeding, the input pipeline, and `fit` with per-epoch logging: the training path `train` runs."""

from __future__ import annotations

import os
import platform
import time

import keras
import numpy as np
import tensorflow as tf

from stages.lib.cifar import Split
from stages.lib.params import TrainParams


def seed_everything(seed: int, deterministic: bool) -> None:
    """Same params + same seed + same machine -> same weights, batches, dropout masks and metrics."""
    keras.utils.set_random_seed(seed)  # Python, NumPy and TensorFlow generators.
    if deterministic:
        # Picks deterministic kernels (notably on GPU) at a small cost in speed.
        tf.config.experimental.enable_op_determinism()


def device_description() -> str:
    gpus = tf.config.list_physical_devices("GPU")
    if gpus:
        details = tf.config.experimental.get_device_details(gpus[0])
        return f"GPU: {details.get('device_name', gpus[0].name)} (x{len(gpus)})"
    return f"CPU: {_cpu_model()} ({os.cpu_count()} cores)"


def _cpu_model() -> str:
    return _cpuinfo("model name") or platform.processor() or "unknown"


def _cpuinfo(field: str) -> str:
    """A field of the first processor in /proc/cpuinfo ('' where there is none, as on macOS)."""
    try:
        with open("/proc/cpuinfo") as handle:
            for line in handle:
                if line.split(":", 1)[0].strip() == field:
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return ""


def environment(precision: str) -> dict:
    """What the numbers depend on besides params and seed: recorded next to every result."""
    return {
        "device": device_description(),
        "precision": precision,
        "onednn": onednn_enabled(),
        "tensorflow": tf.__version__,
        "keras": keras.__version__,
        "numpy": np.__version__,
        "python": platform.python_version(),
        "platform": platform.platform(),
    }


def onednn_enabled() -> bool | None:
    """Whether TensorFlow runs its oneDNN CPU kernels (see stages/__init__.py); None if unknown."""
    try:
        from tensorflow.python.util import _pywrap_util_port  # Private, hence the fallback.
        return bool(_pywrap_util_port.IsMklEnabled())
    except (ImportError, AttributeError):
        return None


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


def steps_for(num_examples: int, batch_size: int) -> int:
    return -(-num_examples // batch_size)


def training_dataset(split: Split, orders: np.ndarray, batch_size: int) -> tf.data.Dataset:
    """uint8 batches in the precomputed order; the model casts and normalizes them itself."""
    images = tf.constant(split.images)
    labels = tf.constant(split.labels.astype(np.int32))
    batches = tf.data.Dataset.from_tensor_slices(orders).flat_map(
        lambda order: tf.data.Dataset.from_tensor_slices(order).batch(batch_size))
    return batches.map(lambda index: (tf.gather(images, index), tf.gather(labels, index)),
                       num_parallel_calls=tf.data.AUTOTUNE, deterministic=True).prefetch(2)


def evaluation_dataset(split: Split, batch_size: int) -> tf.data.Dataset:
    return tf.data.Dataset.from_tensor_slices(
        (split.images, split.labels.astype(np.int32))).batch(batch_size).prefetch(2)


def compile_model(model: keras.Model, params: TrainParams) -> None:
    optimizers = {"adam": keras.optimizers.Adam, "sgd": keras.optimizers.SGD}
    # Sparse cross-entropy on integer labels equals the reference's categorical cross-entropy on
    # one-hot labels, without materializing the one-hot matrix.
    model.compile(optimizer=optimizers[params.optimizer](learning_rate=params.learning_rate),
                  loss=keras.losses.SparseCategoricalCrossentropy(),
                  metrics=[keras.metrics.SparseCategoricalAccuracy(name="accuracy")],
                  jit_compile=False)  # XLA made this net 2-3x slower on CPU (bench/).


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

    The validation split is only watched, never used to decide anything (no early stopping, no
    checkpoint choice), which is why the reference's use of the test set here is harmless.
    """
    compile_model(model, params)
    log = EpochLog(live)
    start = time.perf_counter()
    model.fit(training_dataset(train, orders, params.batch_size), epochs=params.epochs,
              steps_per_epoch=steps_for(len(train.labels), params.batch_size),
              validation_data=evaluation_dataset(validation, params.batch_size),
              callbacks=[log, *(callbacks or [])], shuffle=False, verbose=0)
    return {"total_seconds": round(time.perf_counter() - start, 3)}, log.history
