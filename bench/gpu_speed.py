"""Training speed of bnlab's `train` path on every Keras backend this machine has, meant for a GPU.

    python bench/gpu_speed.py [--epochs 10] [--train-images 50000] [--steps-per-execution 1,8]
    python bench/gpu_speed.py --epochs 2 --train-images 500 --steps-per-execution 1   # a CPU check

Written for machines that have PyTorch and/or JAX with CUDA but no TensorFlow, no package index
and no room for the CIFAR-10 archive: bench/gpu_speed.sh installs the few wheels they lack (Keras,
its small dependencies and ruamel.yaml) and runs this. The data is synthetic, of the real shape
(50,000 training and 10,000 validation uint8 images 32x32x3, 10 classes), so the accuracy is
chance and only the timings mean something. Each backend (and each steps_per_execution) trains the
reference net (params.yaml, bn=before, seed 0) through stages.trainer.training.fit, in its own process
under a time limit, and prints: device, TF32, median seconds per epoch (first epoch excluded),
the whole fit's wall time (compilation included) and images per second.
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib.util
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
BACKENDS = ("jax", "torch", "tensorflow")
RESULT_PREFIX = "gpu-speed-result: "
SEED = 0


class PrintOnly:
    """What fit() needs of a DVCLive Live (DVCLive is not installed on such machines)."""

    def __init__(self) -> None:
        self.summary: dict = {}

    def log_metric(self, name: str, value: float) -> None:
        self.summary[name] = value

    def next_step(self) -> None:
        pass


def run_worker(epochs: int, train_images: int, steps_per_execution: int, jit_compile: bool) -> dict:
    """One backend (KERAS_BACKEND, set by the driver), one configuration: train and time it."""
    import numpy as np

    from stages.archive.writer import random_split
    from stages.trainer.backend import seed_everything
    from stages.trainer.cifar import pixel_statistics
    from stages.trainer.device import configure_device, environment
    from stages.trainer.model import build_model
    from stages.trainer.params import load_params
    from stages.trainer.training import epoch_orders, fit

    params = load_params(("model", "train"), ROOT / "params.yaml")  # The keys this worker reads.
    train_params = dataclasses.replace(params.train, epochs=epochs, precision="float32",
                                       steps_per_execution=steps_per_execution, jit_compile=jit_compile)
    generator = np.random.default_rng(SEED)
    train, validation = random_split(train_images, generator), random_split(train_images // 5, generator)
    seed_everything(SEED, train_params.deterministic)
    fallback = configure_device(train_params.device, train_params.tf32)
    model = build_model(params.model, "before", pixel_statistics(train.images, "global"), "float32")
    start = time.perf_counter()
    timings, history = fit(model, train, validation, train_params,
                           epoch_orders(train_images, epochs, SEED), PrintOnly())
    return {**timings, "epoch_seconds": history["epoch_seconds"],
            "fit_wall_seconds": time.perf_counter() - start, "images": train_images,
            "device_fallback": fallback, "environment": environment(train_params.precision)}


def spawn(backend: str, args: argparse.Namespace, steps_per_execution: int) -> dict | str:
    env = {**os.environ, "KERAS_BACKEND": backend, "TF_CPP_MIN_LOG_LEVEL": "2"}
    command = [sys.executable, __file__, "--worker", "--epochs", str(args.epochs),
               "--train-images", str(args.train_images), "--steps-per-execution", str(steps_per_execution),
               *(["--jit-compile"] if args.jit_compile else [])]
    print(f"gpu-speed: {backend}, steps_per_execution {steps_per_execution}, {args.epochs} epochs ...",
          flush=True)
    try:
        done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=args.timeout)
    except subprocess.TimeoutExpired:
        return f"stopped after {args.timeout} s"
    lines = [line for line in done.stdout.splitlines() if line.startswith(RESULT_PREFIX)]
    if done.returncode != 0 or not lines:
        return "failed: " + (done.stderr.strip().splitlines() or ["no output"])[-1][:300]
    return json.loads(lines[-1][len(RESULT_PREFIX):])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--train-images", type=int, default=50_000)
    parser.add_argument("--steps-per-execution", default="1,8",
                        help="comma-separated; each must divide the steps per epoch (200 at 50,000 images)")
    parser.add_argument("--backends", default=",".join(BACKENDS), help="those not installed are skipped")
    parser.add_argument("--jit-compile", action="store_true",
                        help="TensorFlow: XLA-compile the step (train.jit_compile); JAX always does")
    parser.add_argument("--timeout", type=int, default=240, help="seconds per backend and setting")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.epochs < 2:
        raise SystemExit("gpu-speed: --epochs must be at least 2 (the first epoch is excluded)")
    if args.worker:
        result = run_worker(args.epochs, args.train_images, int(args.steps_per_execution), args.jit_compile)
        print(RESULT_PREFIX + json.dumps(result), flush=True)
        return

    print(f"gpu-speed: python {sys.version.split()[0]}; synthetic data, {args.train_images:,} training "
          f"images; bn=before, float32, batch 250, deterministic as params.yaml says", flush=True)
    rows = []
    for backend in args.backends.split(","):
        if not importlib.util.find_spec(backend):
            print(f"gpu-speed: {backend} is not installed here, skipped", flush=True)
            continue
        for steps in [int(value) for value in args.steps_per_execution.split(",")]:
            if backend == "torch" and steps != 1:
                continue  # Keras runs one step per call on PyTorch.
            rows.append((backend, steps, spawn(backend, args, steps)))
    print("\n| backend | device | TF32 | XLA | steps/execution | median s/epoch | fit wall s "
          "(compilation included) | images/s |\n|---|---|---|---|---|---|---|---|")
    for backend, steps, result in rows:
        if isinstance(result, str):
            print(f"| {backend} | – | – | – | {steps} | {result} | – | – |")
            continue
        environment = result["environment"]
        median = statistics.median(result["epoch_seconds"][1:])
        print(f"| {backend} {environment[backend]} | {environment['device']} | {environment['tf32']} "
              f"| {'on' if result['xla'] else 'off'} | {result['steps_per_execution']} | {median:.3f} "
              f"| {result['fit_wall_seconds']:.1f} | {result['images'] / median:,.0f} |")


if __name__ == "__main__":
    main()
