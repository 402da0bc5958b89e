"""Plant realistic one-line bugs in the experiment's code, one at a time, and see which tests catch them.

    python bench/mutations.py                 # every mutation; prints a markdown table
    python bench/mutations.py --only batch_norm --only landscape   # those whose area or name match
    python bench/mutations.py --list          # the mutations, without running anything

Each mutation is an exact snippet of one source file and its replacement. Before planting anything
the script checks that every snippet occurs exactly once, and stops with the list of those that do
not: a code change must update this file rather than quietly shrink what it measures.

The tests run in a temporary copy of the tree (tracked and untracked files, without data/, models/
and reports/), with `python -m pytest -x -m "not dvc"` on the test files named for the mutation's
area. The unmutated copy must pass those tests first. A mutation is caught when a test fails;
the table names the first one. Exit status 1 if any mutation survived.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
OUTPUTS = ("data/", "models/", "reports/")  # DVC outputs: large, and no test reads them.
TIMEOUT_SECONDS = 600

# The tests that guard each area of the experiment.
TESTS = {
    "model": ("tests/test_wiring.py", "tests/test_model.py"),
    "batch_norm": ("tests/test_batch_norm.py", "tests/test_wiring.py"),
    "training": ("tests/test_training.py", "tests/test_landscape_probe.py", "tests/test_splits_and_overrides.py"),
    "train_stage": ("tests/test_splits_and_overrides.py",),
    "evaluation": ("tests/test_evaluation.py", "tests/test_splits_and_overrides.py"),
    "study": ("tests/test_study.py", "tests/test_study_report.py"),
    "landscape": ("tests/test_landscape_probe.py", "tests/test_training.py"),
    "report": ("tests/test_report.py",),
}


@dataclass(frozen=True)
class Mutation:
    area: str  # A key of TESTS.
    name: str
    path: str
    snippet: str
    replacement: str


MUTATIONS = [
    # --- the model ------------------------------------------------------------------------------
    Mutation("model", "kernel size hard-coded", "stages/lib/model.py",
             "keras.layers.Conv2D(filters, params.kernel_size,", "keras.layers.Conv2D(filters, 3,"),
    Mutation("model", "second dropout rate hard-coded", "stages/lib/model.py",
             'keras.layers.Dropout(params.dropout_rate, name="dropout2")',
             'keras.layers.Dropout(0.3, name="dropout2")'),
    Mutation("model", "dense units hard-coded", "stages/lib/model.py",
             'keras.layers.Dense(params.dense_units, activation=params.activation, name="dense")',
             'keras.layers.Dense(512, activation=params.activation, name="dense")'),
    Mutation("model", "dense activation hard-coded", "stages/lib/model.py",
             'keras.layers.Dense(params.dense_units, activation=params.activation, name="dense")',
             'keras.layers.Dense(params.dense_units, activation="elu", name="dense")'),
    Mutation("model", "block activation hard-coded", "stages/lib/model.py",
             'keras.layers.Activation(params.activation, name=f"act{index}")',
             'keras.layers.Activation("elu", name=f"act{index}")'),
    Mutation("model", "BN momentum not passed on", "stages/lib/model.py",
             "momentum=params.bn_momentum", "momentum=0.99"),
    Mutation("model", "BN epsilon not passed on", "stages/lib/model.py",
             "epsilon=params.bn_epsilon", "epsilon=1e-3"),
    Mutation("model", "convolution bias kept in front of BN", "stages/lib/model.py",
             'use_bias=bn == "none"', "use_bias=True"),
    Mutation("model", "bn=after normalizes before the activation", "stages/lib/model.py",
             "return [conv, activation, norm, pool]", "return [conv, norm, activation, pool]"),
    Mutation("model", "non-monotonic activation pooled first", "stages/lib/model.py",
             "pool_first = params.activation in MONOTONIC_ACTIVATIONS", "pool_first = True"),
    Mutation("model", "per-channel input scaled by the variance", "stages/lib/model.py",
             "variance=std**2", "variance=std"),
    # --- the fused BatchNorm ----------------------------------------------------------------------
    Mutation("batch_norm", "inference ignores epsilon", "stages/lib/batch_norm.py",
             "epsilon=self.epsilon, is_training=False", "epsilon=1e-3, is_training=False"),
    Mutation("batch_norm", "training ignores epsilon", "stages/lib/batch_norm.py",
             "epsilon=self.epsilon, is_training=True", "epsilon=1e-3, is_training=True"),
    Mutation("batch_norm", "momentum weights swapped (moving mean)", "stages/lib/batch_norm.py",
             "self.moving_mean * self.momentum + mean * (1.0 - self.momentum)",
             "self.moving_mean * (1.0 - self.momentum) + mean * self.momentum"),
    Mutation("batch_norm", "moving variance averages the mean", "stages/lib/batch_norm.py",
             "self.moving_variance * self.momentum + variance * (1.0 - self.momentum)",
             "self.moving_variance * self.momentum + mean * (1.0 - self.momentum)"),
    Mutation("batch_norm", "Bessel-corrected variance averaged", "stages/lib/batch_norm.py",
             "variance = variance * (count - 1.0) / count", "variance = variance"),
    Mutation("batch_norm", "inference runs on batch statistics", "stages/lib/batch_norm.py",
             "if not (training and self.trainable):", "if not (training or self.trainable):"),
    # --- training -------------------------------------------------------------------------------
    Mutation("training", "learning rate ignored", "stages/lib/training.py",
             "optimizers[params.optimizer](learning_rate=params.learning_rate)",
             "optimizers[params.optimizer]()"),
    Mutation("training", "optimizer ignored", "stages/lib/training.py",
             "optimizer=optimizers[params.optimizer](", 'optimizer=optimizers["adam"]('),
    Mutation("training", "validation watches the training split", "stages/lib/training.py",
             "validation_data=evaluation_dataset(validation, params.batch_size)",
             "validation_data=evaluation_dataset(train, params.batch_size)"),
    Mutation("training", "validation curve logs the training loss", "stages/lib/training.py",
             '"val/loss": logs["val_loss"], "val/accuracy": logs["val_accuracy"]',
             '"val/loss": logs["loss"], "val/accuracy": logs["accuracy"]'),
    Mutation("training", "same data order every epoch", "stages/lib/training.py",
             "np.stack([generator.permutation(num_examples) for _ in range(epochs)])",
             "np.stack([generator.permutation(num_examples)] * epochs)"),
    Mutation("training", "data order ignores the seed", "stages/lib/training.py",
             "generator = np.random.default_rng(seed)", "generator = np.random.default_rng(0)"),
    Mutation("training", "short last batch dropped", "stages/lib/training.py",
             "return -(-num_examples // batch_size)", "return num_examples // batch_size"),
    Mutation("training", "step -> (epoch, batch) swapped", "stages/lib/training.py",
             "epoch, batch = divmod(step, steps_per_epoch)", "batch, epoch = divmod(step, steps_per_epoch)"),
    # --- the train stage: overrides -------------------------------------------------------------
    Mutation("train_stage", "--seed misses the data order", "stages/train.py",
             "epoch_orders(len(train.labels), params.train.epochs, seed)",
             "epoch_orders(len(train.labels), params.train.epochs, params.seed)"),
    Mutation("train_stage", "--seed misses the initial weights", "stages/train.py",
             "seed_everything(seed, params.train.deterministic)",
             "seed_everything(params.seed, params.train.deterministic)"),
    Mutation("train_stage", "--bn misses the model", "stages/train.py",
             "build_model(params.model, bn, statistics, precision)",
             "build_model(params.model, params.bn, statistics, precision)"),
    Mutation("train_stage", "run record names params' bn", "stages/train.py",
             '{"bn": bn, "seed": seed,', '{"bn": params.bn, "seed": seed,'),
    Mutation("train_stage", "validation on the training split", "stages/train.py",
             "fit(model, train, test, params.train", "fit(model, train, train, params.train"),
    Mutation("train_stage", "--landscape ignored", "stages/train.py",
             'params.landscape.enabled if args.landscape is None else args.landscape == "on"',
             "params.landscape.enabled"),
    # --- evaluation -----------------------------------------------------------------------------
    Mutation("evaluation", "loss clipped at 1e-12, not Keras' 1e-7", "stages/lib/evaluation.py",
             "np.clip(picked, keras.backend.epsilon(), 1.0)", "np.clip(picked, 1e-12, 1.0)"),
    Mutation("evaluation", "loss reads the predicted class", "stages/lib/evaluation.py",
             "picked = probabilities[np.arange(len(labels)), labels]",
             "picked = probabilities.max(axis=1)"),
    Mutation("evaluation", "per-class accuracy by predicted class", "stages/lib/evaluation.py",
             "correct[test.labels == label]", "correct[predicted == label]"),
    Mutation("evaluation", "predictions file columns swapped", "stages/lib/evaluation.py",
             "for a, p in zip(labels, predicted)]", "for a, p in zip(predicted, labels)]"),
    Mutation("evaluation", "evaluate stage swaps the splits", "stages/evaluate.py",
             "evaluate(model, train, test)", "evaluate(model, test, train)"),
    # --- study statistics and report ------------------------------------------------------------
    Mutation("study", "std without Bessel's correction", "stages/lib/study.py",
             "array.std(ddof=1)", "array.std()"),
    Mutation("study", "one-sided t quantile for a two-sided CI", "stages/lib/study.py",
             "stats.t.ppf(0.5 + CONFIDENCE / 2, dof)", "stats.t.ppf(CONFIDENCE, dof)"),
    Mutation("study", "Welch dof: n instead of n - 1", "stages/lib/study.py",
             "variance_a**2 / (len(a) - 1)", "variance_a**2 / len(a)"),
    Mutation("study", "one-sided p-value", "stages/lib/study.py",
             "p_value = float(2 * stats.t.sf(", "p_value = float(stats.t.sf("),
    Mutation("study", "verdict names the lower variant", "stages/lib/study.py",
             "if self.difference > 0 else", "if self.difference < 0 else"),
    Mutation("study", "only positive differences detectable", "stages/lib/study.py",
             "return not (self.ci_low <= 0.0 <= self.ci_high)", "return self.ci_low > 0.0"),
    Mutation("study", "variants compared on train accuracy", "stages/lib/study_report.py",
             'accuracy = {v: [run.metrics["test"]["accuracy"]', 'accuracy = {v: [run.metrics["train"]["accuracy"]'),
    Mutation("study", "table columns swapped", "stages/lib/study_report.py",
             "f\"{cell(v, 'test_loss')} | {cell(v, 'train_accuracy')} |\"",
             "f\"{cell(v, 'train_accuracy')} | {cell(v, 'test_loss')} |\""),
    Mutation("study", "HTML table cells not escaped", "stages/lib/study_report.py",
             "cells = [html.escape(c.strip()) for c in", "cells = [c.strip() for c in"),
    Mutation("study", "landscape curves averaged over steps, not seeds", "stages/compare.py",
             "np.mean([run[name] for run in runs], axis=0)", "np.mean([run[name] for run in runs], axis=1)"),
    # --- landscape ------------------------------------------------------------------------------
    Mutation("landscape", "step sizes not scaled by the learning rate", "stages/lib/landscape.py",
             "[m * train_params.learning_rate for m in landscape.step_sizes]",
             "[m for m in landscape.step_sizes]"),
    Mutation("landscape", "probe measures the following batch", "stages/lib/landscape.py",
             "batch_indices(self.orders, self._step, self.batch_size)",
             "batch_indices(self.orders, self._step + 1, self.batch_size)"),
    Mutation("landscape", "probe counts batches within the epoch", "stages/lib/landscape.py",
             "batch_indices(self.orders, self._step, self.batch_size)",
             "batch_indices(self.orders, batch, self.batch_size)"),
    Mutation("landscape", "probe runs BN in inference mode", "stages/lib/landscape.py",
             "images, training=True)", "images, training=False)"),
    Mutation("landscape", "beta divided by the gradient norm, not eta times it", "stages/lib/landscape.py",
             "change / tf.maximum(eta * gradient_norm, 1e-12)", "change / tf.maximum(gradient_norm, 1e-12)"),
    Mutation("landscape", "loss range measured from the current loss", "stages/lib/landscape.py",
             'r["loss_max"] - r["loss_min"]', 'r["loss_max"] - r["loss"]'),
    # --- the one-run report -----------------------------------------------------------------------
    Mutation("report", "title shows params' bn, not the run's", "stages/report.py",
             "bnlab report: bn={run['bn']}", "bnlab report: bn={params.bn}"),
    Mutation("report", "loss and accuracy columns swapped", "stages/report.py",
             "{metrics[s]['loss']:.4f} | {metrics[s]['accuracy']:.4f}",
             "{metrics[s]['accuracy']:.4f} | {metrics[s]['loss']:.4f}"),
]


def check_snippets(root: Path, mutations: list[Mutation]) -> None:
    problems = []
    for mutation in mutations:
        path = root / mutation.path
        count = path.read_text().count(mutation.snippet) if path.is_file() else 0
        if count != 1:
            problems.append(f"  {mutation.area}: {mutation.name}: {mutation.path} has the snippet "
                            f"{count} times, expected once: {mutation.snippet!r}")
    if problems:
        raise SystemExit("mutations: the code changed under these mutations; update bench/mutations.py:\n"
                         + "\n".join(problems))


def copy_tree(destination: Path) -> None:
    listed = subprocess.run(["git", "ls-files", "-co", "--exclude-standard"], cwd=ROOT, text=True,
                            capture_output=True, check=True).stdout.splitlines()
    for name in listed:
        source = ROOT / name
        if source.is_file() and not name.startswith(OUTPUTS):
            (destination / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, destination / name)


def run_tests(root: Path, tests: tuple[str, ...]) -> tuple[str, str]:
    """('passed' | 'failed' | 'timeout', first failing test or '')."""
    # No bytecode: a restored file must never be shadowed by its mutant's cached .pyc.
    env = {**os.environ, "PYTHONDONTWRITEBYTECODE": "1"}
    command = [sys.executable, "-m", "pytest", "-x", "-q", "-rfE", "-p", "no:cacheprovider", "-m", "not dvc",
               *tests]
    try:
        done = subprocess.run(command, cwd=root, env=env, text=True, capture_output=True,
                              timeout=TIMEOUT_SECONDS)
    except subprocess.TimeoutExpired:
        return "timeout", ""
    if done.returncode == 0:
        return "passed", ""
    if done.returncode not in (1, 2):
        raise SystemExit(f"mutations: pytest exited {done.returncode}:\n{done.stdout[-2000:]}")
    failed = re.search(r"^(?:FAILED|ERROR) (\S+)", done.stdout, re.MULTILINE)
    return "failed", failed[1] if failed else "(see pytest output)"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--only", action="append", default=[], help="run mutations whose area or name contains this")
    parser.add_argument("--list", action="store_true", help="list the mutations and exit")
    parser.add_argument("--tests", nargs="+", help="run these test files instead of each area's")
    args = parser.parse_args()
    mutations = [m for m in MUTATIONS if not args.only or any(o in f"{m.area} {m.name}" for o in args.only)]
    check_snippets(ROOT, mutations)
    if args.list:
        for mutation in mutations:
            print(f"{mutation.area:12} {mutation.name}  ({mutation.path})")
        return

    with tempfile.TemporaryDirectory(prefix="bnlab-mutations-") as scratch:
        root = Path(scratch)
        copy_tree(root)
        def tests_for(mutation):
            return tuple(args.tests) if args.tests else TESTS[mutation.area]

        all_tests = tuple(dict.fromkeys(t for m in mutations for t in tests_for(m)))
        outcome, failing = run_tests(root, all_tests)
        if outcome != "passed":
            raise SystemExit(f"mutations: the unmutated tree fails its tests ({failing}); fix that first")
        print("| # | area | planted bug | file | caught | first failing test | s |")
        print("|---|---|---|---|---|---|---|")
        caught = 0
        for number, mutation in enumerate(mutations, start=1):
            path = root / mutation.path
            original = path.read_text()
            path.write_text(original.replace(mutation.snippet, mutation.replacement))
            start = time.perf_counter()
            try:
                outcome, failing = run_tests(root, tests_for(mutation))
            finally:
                path.write_text(original)
            caught += outcome != "passed"
            verdict = {"failed": "yes", "timeout": "yes (timeout)", "passed": "**NO**"}[outcome]
            print(f"| {number} | {mutation.area} | {mutation.name} | {mutation.path} | {verdict} | "
                  f"{failing or '-'} | {time.perf_counter() - start:.0f} |", flush=True)
    print(f"\ncaught {caught}/{len(mutations)}")
    if caught < len(mutations):
        raise SystemExit(1)


if __name__ == "__main__":
    main()
