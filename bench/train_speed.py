"""Training speed: the reference notebook's approach vs bnlab's training path, side by side.

    python bench/train_speed.py [--epochs 3] [--archive PATH] [--pipeline]

Each approach trains the reference net (default params, bn=before) in a fresh Python process, so
that no TensorFlow setting leaks from one into the next:
  (1) reference (notebook): model.fit on NumPy float64 arrays normalized in NumPy, one-hot labels,
      Keras and TensorFlow defaults, as the notebook did;
  (2) reference + oneDNN: the same, with TensorFlow's oneDNN CPU kernels asked for, which shows how
      much of our lead is that switch alone;
  (3) bnlab train: stages.trainer.training.fit exactly as `train` runs it (train.precision: float32),
      and with --bfloat16 (4) the same in mixed_bfloat16 (fast only on CPUs with native bfloat16);
  (5) bnlab train under JAX (KERAS_BACKEND=jax, float32), where JAX is installed: the same code
      on another Keras backend (--no-jax skips it).
Prints median seconds per epoch (first epoch excluded), images per second, the whole fit's wall
time and the final test accuracy, then `speedup_vs_reference: X.XX` ((1) / (3), median epochs).
Uses the real archive when it exists, synthetic data of the same shape otherwise (accuracy is
then chance). --pipeline also times the DVC workflow (first `dvc repro`, a no-op `dvc repro`,
`dvc exp run -S bn=after` per stage) in a scratch clone of this repository's HEAD, leaving this
workspace and its experiments alone.
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import importlib.util
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
ONEDNN = "TF_ENABLE_ONEDNN_OPTS"
# Read before `stages` is imported: importing stages.trainer sets a default for this variable (stages/trainer/__init__.py).
USER_ONEDNN = os.environ.get(ONEDNN)

import numpy as np  # noqa: E402

from stages.archive.writer import random_split, write_archive  # noqa: E402
from stages.trainer.cifar import Split, read_archive  # noqa: E402

DEFAULT_ARCHIVE = ROOT.parent / "shared" / "cifar10" / "cifar-10-binary.tar.gz"
SEED = 0
RESULT_PREFIX = "bench-result: "


@dataclasses.dataclass(frozen=True)
class Approach:
    name: str
    worker: str  # "reference" or "ours"
    # "tensorflow-default", "on", or "as-train": the user's TF_ENABLE_ONEDNN_OPTS, else bnlab's default.
    onednn: str
    precision: str = "float32"  # Only for "ours": train.precision.
    backend: str = "tensorflow"  # KERAS_BACKEND; the reference approaches run on TensorFlow.


REFERENCE = Approach("reference (notebook)", "reference", onednn="tensorflow-default")
REFERENCE_ONEDNN = Approach("reference + oneDNN", "reference", onednn="on")
OURS = Approach("bnlab train", "ours", onednn="as-train")
OURS_BFLOAT16 = dataclasses.replace(OURS, name="bnlab train, mixed_bfloat16", precision="mixed_bfloat16")
OURS_JAX = dataclasses.replace(OURS, backend="jax")


def load_data(archive: Path) -> tuple[Split, Split, str]:
    if archive.is_file():
        train, test = read_archive(archive)
        return train, test, f"real CIFAR-10 ({archive})"
    generator = np.random.default_rng(SEED)
    return random_split(50_000, generator), random_split(10_000, generator), "synthetic (archive not found)"


# ---- Workers: one approach, one process. TensorFlow is imported here only, after the environment is set.

def run_worker(approach: Approach, archive: Path, epochs: int) -> dict:
    train, test, source = load_data(archive)
    if approach.onednn == "tensorflow-default":
        os.environ.pop(ONEDNN, None)
    elif approach.onednn == "on":
        os.environ[ONEDNN] = "1"
    run = run_reference if approach.worker == "reference" else run_ours
    result = run(train, test, epochs, approach.precision)
    from stages.trainer.device import environment
    return {**result, "images": len(train.labels), "data": source,
            "environment": environment(approach.precision)}


def run_reference(train: Split, test: Split, epochs: int, precision: str) -> dict:
    import keras

    from stages.trainer.backend import seed_everything

    seed_everything(SEED, deterministic=False)
    raw_train, raw_test = train.images.astype(np.float64), test.images.astype(np.float64)
    x_train = (raw_train - raw_train.mean()) / raw_train.std()
    x_test = (raw_test - raw_train.mean()) / raw_train.std()
    y_train, y_test = (keras.utils.to_categorical(s.labels, 10) for s in (train, test))
    model, timer = reference_model(), epoch_timer()
    start = time.perf_counter()
    model.fit(x_train, y_train, batch_size=250, epochs=epochs, validation_data=(x_test, y_test),
              verbose=0, callbacks=[timer])
    return {"epoch_seconds": timer.seconds, "total_seconds": time.perf_counter() - start,
            "precision": "float32", "accuracy": model.evaluate(x_test, y_test, batch_size=250, verbose=0)[1]}


def reference_model():
    """The notebook's 'BN before activation' net, layer for layer, with Keras defaults."""
    import keras

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


def epoch_timer():
    import keras

    class EpochTimer(keras.callbacks.Callback):
        def on_train_begin(self, logs=None):
            self.seconds = []

        def on_epoch_begin(self, epoch, logs=None):
            self._start = time.perf_counter()

        def on_epoch_end(self, epoch, logs=None):
            self.seconds.append(time.perf_counter() - self._start)

    return EpochTimer()


def run_ours(train: Split, test: Split, epochs: int, precision: str) -> dict:
    from dvclive import Live

    from stages.trainer.cifar import pixel_statistics
    from stages.trainer.model import build_model
    from stages.grids.sections import read_all as read_params
    from stages.trainer.backend import seed_everything
    from stages.trainer.device import configure_device
    from stages.trainer.training import epoch_orders, fit

    params = read_params(ROOT / "params.yaml")
    train_params = dataclasses.replace(params.train, epochs=epochs, precision=precision)
    seed_everything(SEED, train_params.deterministic)
    configure_device(train_params.device, train_params.tf32)
    model = build_model(params.model, "before", pixel_statistics(train.images, params.normalize.mode),
                        precision)
    with tempfile.TemporaryDirectory() as folder, Live(folder, dvcyaml=False, save_dvc_exp=False) as live:
        timings, history = fit(model, train, test, train_params,
                               epoch_orders(len(train.labels), epochs, SEED), live)
    return {**timings, "epoch_seconds": history["epoch_seconds"], "precision": precision,
            "accuracy": history["val/accuracy"][-1]}


# ---- The driver: spawn the workers, then time the pipeline.

def spawn(approach: Approach, archive: Path, epochs: int) -> dict:
    env = {key: value for key, value in os.environ.items() if key != ONEDNN}
    if USER_ONEDNN is not None:
        env[ONEDNN] = USER_ONEDNN
    env["TF_CPP_MIN_LOG_LEVEL"] = "2"
    env["KERAS_BACKEND"] = approach.backend
    command = [sys.executable, __file__, "--worker", json.dumps(dataclasses.asdict(approach)),
               "--archive", str(archive), "--epochs", str(epochs)]
    print(f"bench: training '{approach.name}' on {approach.backend} for {epochs} epochs ...", flush=True)
    done = subprocess.run(command, env=env, capture_output=True, text=True)
    lines = [line for line in done.stdout.splitlines() if line.startswith(RESULT_PREFIX)]
    if done.returncode != 0 or not lines:
        raise SystemExit(f"bench: worker '{approach.name}' failed:\n{done.stderr[-3000:]}")
    return json.loads(lines[-1][len(RESULT_PREFIX):])


def pipeline_overhead(archive: Path) -> list[tuple[str, str]]:
    """Time the DVC workflow in a scratch clone of HEAD: a cold run-cache, this workspace untouched."""
    with tempfile.TemporaryDirectory() as folder:
        repo = Path(folder) / "bnlab"
        subprocess.run(["git", "clone", "-q", str(ROOT), str(repo)], check=True)
        if not archive.is_file():
            archive = Path(folder) / "cifar-10-binary.tar.gz"
            train, test, _ = load_data(archive)
            parts = [Split(images, labels) for images, labels in
                     zip(np.split(train.images, 5), np.split(train.labels, 5))]
            write_archive(archive, parts, test)
        md5 = hashlib.md5(archive.read_bytes()).hexdigest()
        env = {**os.environ, "DVC_NO_ANALYTICS": "1",
               "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
        for role in ("AUTHOR", "COMMITTER"):  # Experiments are git commits; a bare machine has no identity.
            env.setdefault(f"GIT_{role}_NAME", "bench")
            env.setdefault(f"GIT_{role}_EMAIL", "bench@localhost")
        git = lambda *args: subprocess.run(["git", *args], cwd=repo, env=env, check=True)  # noqa: E731
        dvc = lambda *args: _stage_seconds([sys.executable, "-m", "dvc", *args], repo, env)  # noqa: E731
        params = (repo / "params.yaml").read_text()
        params = re.sub(r"(?m)^(  url:).*$", rf"\1 {archive}", params)
        (repo / "params.yaml").write_text(re.sub(r"(?m)^(  md5:).*$", rf"\1 {md5}", params))
        git("commit", "-qam", "bench: local archive")
        rows = [(f"`dvc repro` (cold), stage {stage}", f"{seconds:.1f} s") for stage, seconds in dvc("repro")]
        git("add", "-A")
        git("commit", "-qm", "bench: baseline")
        start = time.perf_counter()
        dvc("repro")
        rows.append(("no-op `dvc repro`", f"{time.perf_counter() - start:.2f} s"))
        start = time.perf_counter()
        stages = dvc("exp", "run", "-S", "bn=after")
        rows += [(f"`dvc exp run -S bn=after`, stage {stage}", f"{seconds:.1f} s") for stage, seconds in stages]
        rows.append(("`dvc exp run -S bn=after`, total", f"{time.perf_counter() - start:.1f} s"))
        for label, path in (("prepared data", repo / "data/prepared"), ("DVC cache", repo / ".dvc/cache")):
            size = sum(f.stat().st_size for f in path.rglob("*") if f.is_file())
            rows.append((label, f"{size / 1e6:.1f} MB"))
        return rows


def _stage_seconds(command: list[str], cwd: Path, env: dict) -> list[tuple[str, float]]:
    """Run a DVC command; return (stage, wall seconds) for each stage it ran, from its output."""
    stages, marks, output = [], [], []
    with subprocess.Popen(command, cwd=cwd, env=env, text=True, stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT) as process:
        for line in process.stdout:
            output.append(line)
            match = re.match(r"Running stage '([^']+)'", line)
            if match:
                stages.append(match.group(1))
                marks.append(time.perf_counter())
    marks.append(time.perf_counter())
    if process.returncode != 0:
        raise SystemExit(f"bench: {' '.join(command[2:])} failed in the scratch clone:\n{''.join(output[-20:])}")
    return [(stage, marks[i + 1] - marks[i]) for i, stage in enumerate(stages)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--epochs", type=int, default=3, help="epochs per approach (first is excluded)")
    parser.add_argument("--archive", type=Path, default=DEFAULT_ARCHIVE)
    parser.add_argument("--pipeline", action="store_true", help="also time the DVC workflow")
    parser.add_argument("--bfloat16", action="store_true",
                        help="also time train.precision: mixed_bfloat16 (other numerics; fast only with native bfloat16)")
    parser.add_argument("--no-jax", action="store_true",
                        help="skip the JAX row (skipped anyway where JAX is not installed)")
    parser.add_argument("--worker", help=argparse.SUPPRESS)  # Internal: run one approach, print its result.
    args = parser.parse_args()
    if args.epochs < 2:
        raise SystemExit("bench: --epochs must be at least 2 (the first epoch is excluded)")
    archive = args.archive.resolve()
    if args.worker:
        result = run_worker(Approach(**json.loads(args.worker)), archive, args.epochs)
        print(RESULT_PREFIX + json.dumps(result), flush=True)
        return

    approaches = (REFERENCE, REFERENCE_ONEDNN, OURS) + ((OURS_BFLOAT16,) if args.bfloat16 else ())
    if not args.no_jax and importlib.util.find_spec("jax"):
        approaches += (OURS_JAX,)
    results = {approach: spawn(approach, archive, args.epochs) for approach in approaches}
    environment = results[OURS]["environment"]
    print(f"\ndata: {results[OURS]['data']}")
    print(f"device: {environment['device']}; tensorflow {environment['tensorflow']}, "
          f"keras {environment['keras']}, python {environment['python']}")
    print(f"\n| approach | backend | oneDNN | precision | median s/epoch | images/s | fit wall s "
          f"| test accuracy after {args.epochs} epochs |")
    print("|---|---|---|---|---|---|---|---|")
    medians = {}
    for approach, result in results.items():
        medians[approach] = statistics.median(result["epoch_seconds"][1:])
        print(f"| {approach.name} | {approach.backend} | {'on' if result['environment']['onednn'] else 'off'} "
              f"| {result['precision']} | {medians[approach]:.2f} | {result['images'] / medians[approach]:,.0f} "
              f"| {result['total_seconds']:.1f} | {result['accuracy']:.4f} |")
    if args.pipeline:
        print("\n| pipeline (scratch clone of HEAD, 10-epoch defaults) | wall time / size |\n|---|---|")
        for label, value in pipeline_overhead(archive):
            print(f"| {label} | {value} |")
    print(f"\nspeedup_vs_reference: {medians[REFERENCE] / medians[OURS]:.2f}")


if __name__ == "__main__":
    main()
