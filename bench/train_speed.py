"""Training speed: the reference notebook's approach vs bnlab's training path, side by side.

    python bench/train_speed.py [--epochs 3] [--archive PATH] [--pipeline]

(1) reference: model.fit on NumPy float64 arrays normalized in NumPy, one-hot labels, Keras
    defaults, as the notebook did; (2) ours: stages.lib.training.fit exactly as `train` runs it.
Prints median seconds per epoch (first epoch excluded), images per second and final test
accuracy, then `speedup_vs_reference: X.XX`. Uses the real archive when it exists, synthetic
data of the same shape otherwise. --pipeline adds DVC overhead figures (no-op `dvc repro`,
prepared-data and cache sizes).
"""

from __future__ import annotations

import argparse
import dataclasses
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import keras  # noqa: E402
import numpy as np  # noqa: E402
from dvclive import Live  # noqa: E402

from stages.lib.cifar import Split, pixel_statistics, read_archive  # noqa: E402
from stages.lib.model import build_model  # noqa: E402
from stages.lib.params import load_params  # noqa: E402
from stages.lib.training import (compute_precision, device_description, epoch_orders, fit,  # noqa: E402
                                 seed_everything)

DEFAULT_ARCHIVE = ROOT.parent / "shared" / "cifar10" / "cifar-10-binary.tar.gz"


class EpochTimer(keras.callbacks.Callback):
    def on_train_begin(self, logs=None):
        self.seconds = []

    def on_epoch_begin(self, epoch, logs=None):
        self._start = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        self.seconds.append(time.perf_counter() - self._start)


def reference_model() -> keras.Sequential:
    """The notebook's 'BN before activation' net, layer for layer, with Keras defaults."""
    layers = keras.layers
    model = keras.Sequential([keras.Input(shape=(32, 32, 3))])
    for filters in (16, 32, 64):
        model.add(layers.Conv2D(filters, 3, padding="same", activation=None, use_bias=False))
        model.add(layers.BatchNormalization())
        model.add(layers.Activation("elu"))
        model.add(layers.MaxPooling2D(pool_size=2, strides=2, padding="same"))
    for layer in (layers.Dropout(0.3), layers.Flatten(), layers.Dense(512, activation="elu"),
                  layers.Dropout(0.3), layers.Dense(10, activation="softmax")):
        model.add(layer)
    model.compile(optimizer="adam", loss="categorical_crossentropy", metrics=["accuracy"])
    return model


def run_reference(train: Split, test: Split, epochs: int, seed: int) -> tuple[list[float], float]:
    seed_everything(seed, deterministic=False)
    raw_train, raw_test = train.images.astype(np.float64), test.images.astype(np.float64)
    x_train = (raw_train - raw_train.mean()) / raw_train.std()
    x_test = (raw_test - raw_train.mean()) / raw_train.std()
    y_train, y_test = (keras.utils.to_categorical(s.labels, 10) for s in (train, test))
    model, timer = reference_model(), EpochTimer()
    model.fit(x_train, y_train, batch_size=250, epochs=epochs, validation_data=(x_test, y_test),
              verbose=0, callbacks=[timer])
    return timer.seconds, model.evaluate(x_test, y_test, batch_size=250, verbose=0)[1]


def run_ours(train: Split, test: Split, epochs: int, seed: int) -> tuple[list[float], float]:
    params = load_params(ROOT / "params.yaml")
    train_params = dataclasses.replace(params.train, epochs=epochs)
    seed_everything(seed, train_params.deterministic)
    statistics = pixel_statistics(train.images, params.normalize.mode)
    model = build_model(params.model, "before", statistics, compute_precision(train_params.precision))
    with tempfile.TemporaryDirectory() as folder, Live(folder, dvcyaml=False, save_dvc_exp=False) as live:
        timings = fit(model, train, test, train_params, epoch_orders(len(train.labels), epochs, seed), live)
        accuracy = live.summary["val"]["accuracy"]
    return timings["epoch_seconds"], accuracy


def load_data(archive: Path) -> tuple[Split, Split, str]:
    if archive.is_file():
        train, test = read_archive(archive)
        return train, test, f"real CIFAR-10 ({archive})"
    generator = np.random.default_rng(0)
    def fake(count):
        return Split(generator.integers(0, 256, (count, 32, 32, 3), dtype=np.uint8),
                     generator.integers(0, 10, count).astype(np.uint8))
    return fake(50_000), fake(10_000), "synthetic (archive not found)"


def pipeline_overhead() -> list[tuple[str, str]]:
    status = subprocess.run([sys.executable, "-m", "dvc", "status", "--json"], cwd=ROOT,
                            capture_output=True, text=True)
    rows = []
    if status.returncode == 0 and status.stdout.strip() in ("{}", ""):
        start = time.perf_counter()
        subprocess.run([sys.executable, "-m", "dvc", "repro"], cwd=ROOT, check=True, capture_output=True)
        rows.append(("no-op dvc repro", f"{time.perf_counter() - start:.2f} s"))
    else:
        rows.append(("no-op dvc repro", "skipped: pipeline not up to date (run dvc repro first)"))
    for label, path in (("prepared data", ROOT / "data/prepared"), ("DVC cache", ROOT / ".dvc/cache")):
        size = sum(f.stat().st_size for f in path.rglob("*") if f.is_file()) if path.exists() else 0
        rows.append((label, f"{size / 1e6:.1f} MB"))
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--epochs", type=int, default=3, help="epochs per approach (first is excluded)")
    parser.add_argument("--archive", type=Path, default=DEFAULT_ARCHIVE)
    parser.add_argument("--pipeline", action="store_true", help="also measure DVC overhead")
    args = parser.parse_args()
    if args.epochs < 2:
        raise SystemExit("bench: --epochs must be at least 2 (the first epoch is excluded)")
    train, test, source = load_data(args.archive)
    print(f"data: {source}; device: {device_description()}; keras {keras.__version__}")
    results = {"reference (notebook)": run_reference(train, test, args.epochs, 0),
               "bnlab train": run_ours(train, test, args.epochs, 0)}
    print(f"\n| approach | median s/epoch | images/s | test accuracy after {args.epochs} epochs |")
    print("|---|---|---|---|")
    medians = {}
    for name, (seconds, accuracy) in results.items():
        medians[name] = statistics.median(seconds[1:])
        print(f"| {name} | {medians[name]:.2f} | {len(train.labels) / medians[name]:,.0f} | {accuracy:.4f} |")
    if args.pipeline:
        print("\n| pipeline | value |\n|---|---|")
        for label, value in pipeline_overhead():
            print(f"| {label} | {value} |")
    print(f"\nspeedup_vs_reference: {medians['reference (notebook)'] / medians['bnlab train']:.2f}")


if __name__ == "__main__":
    main()
