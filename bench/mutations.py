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
    "training": ("tests/test_training.py", "tests/test_splits_and_overrides.py"),
    "stages": ("tests/test_splits_and_overrides.py", "tests/test_training.py"),
    "evaluation": ("tests/test_evaluation.py", "tests/test_splits_and_overrides.py"),
    "study": ("tests/test_study.py", "tests/test_study_report.py"),
    "landscape": ("tests/test_training.py", "tests/test_landscape.py"),
    "report": ("tests/test_report.py",),
}


@dataclass(frozen=True)
class Mutation:
    area: str  # A key of TESTS.
    name: str
    path: str
    snippet: str
    replacement: str


def planted(area: str, path: str, *bugs: tuple[str, str, str]) -> list[Mutation]:
    """The mutations of one file, each given as (name, exact snippet, replacement)."""
    return [Mutation(area, name, path, snippet, replacement) for name, snippet, replacement in bugs]


MUTATIONS = [
    # --- the model -------------------------------------------------------------------------------
    *planted("model", "stages/trainer/model.py",
             ("kernel size hard-coded",
              "keras.layers.Conv2D(filters, params.kernel_size,",
              "keras.layers.Conv2D(filters, 3,"),
             ("second dropout rate hard-coded",
              'keras.layers.Dropout(params.dropout_rate, name="dropout2")',
              'keras.layers.Dropout(0.3, name="dropout2")'),
             ("dense units hard-coded",
              'keras.layers.Dense(params.dense_units, activation=params.activation, name="dense")',
              'keras.layers.Dense(512, activation=params.activation, name="dense")'),
             ("dense activation hard-coded",
              'keras.layers.Dense(params.dense_units, activation=params.activation, name="dense")',
              'keras.layers.Dense(params.dense_units, activation="elu", name="dense")'),
             ("block activation hard-coded",
              'keras.layers.Activation(params.activation, name=f"act{index}")',
              'keras.layers.Activation("elu", name=f"act{index}")'),
             ("BN momentum not passed on",
              "momentum=params.bn_momentum",
              "momentum=0.99"),
             ("BN epsilon not passed on",
              "epsilon=params.bn_epsilon",
              "epsilon=1e-3"),
             ("convolution bias kept in front of BN",
              "use_bias=bn in WITHOUT_BN",
              "use_bias=True"),
             ("bn=after normalizes before the activation",
              "return [conv, activation, norm, pool]",
              "return [conv, norm, activation, pool]"),
             ("non-monotonic activation pooled first",
              "pool_first = params.activation in MONOTONIC_ACTIVATIONS",
              "pool_first = True"),
             ("per-channel input scaled by the variance",
              "variance=std**2",
              "variance=std"),
             ),
    # --- the fused BatchNorm ---------------------------------------------------------------------
    *planted("batch_norm", "stages/trainer/batch_norm.py",
             ("inference ignores epsilon",
              "epsilon=self.epsilon, is_training=False",
              "epsilon=1e-3, is_training=False"),
             ("training ignores epsilon",
              "epsilon=self.epsilon, is_training=True",
              "epsilon=1e-3, is_training=True"),
             ("momentum weights swapped (moving mean)",
              "self.moving_mean * self.momentum + mean * (1.0 - self.momentum)",
              "self.moving_mean * (1.0 - self.momentum) + mean * self.momentum"),
             ("moving variance averages the mean",
              "self.moving_variance * self.momentum + variance * (1.0 - self.momentum)",
              "self.moving_variance * self.momentum + mean * (1.0 - self.momentum)"),
             ("Bessel-corrected variance averaged",
              "variance = variance * (count - 1.0) / count",
              "variance = variance"),
             ("inference runs on batch statistics",
              "if not (training and self.trainable):",
              "if not (training or self.trainable):"),
             ),
    # --- training --------------------------------------------------------------------------------
    *planted("training", "stages/trainer/training.py",
             ("learning rate ignored",
              "optimizers[params.optimizer](learning_rate=params.learning_rate)",
              "optimizers[params.optimizer]()"),
             ("optimizer ignored",
              "optimizer=optimizers[params.optimizer](",
              'optimizer=optimizers["adam"]('),
             ("validation watches the training split",
              "validation_data=validation_data(validation, params.batch_size)",
              "validation_data=validation_data(train, params.batch_size)"),
             ("validation curve logs the training loss",
              '"val/loss": logs["val_loss"], "val/accuracy": logs["val_accuracy"]',
              '"val/loss": logs["loss"], "val/accuracy": logs["accuracy"]'),
             ("same data order every epoch",
              "np.stack([generator.permutation(num_examples) for _ in range(epochs)])",
              "np.stack([generator.permutation(num_examples)] * epochs)"),
             ("data order ignores the seed",
              "generator = np.random.default_rng(seed)",
              "generator = np.random.default_rng(0)"),
             ("short last batch dropped",
              "return -(-num_examples // batch_size)",
              "return num_examples // batch_size"),
             ("step -> (epoch, batch) swapped",
              "epoch, batch = divmod(step, steps_per_epoch)",
              "batch, epoch = divmod(step, steps_per_epoch)"),
             ),
    # --- what train and every study cell run, and the stages' settings ------------------------
    *planted("stages", "stages/trainer/experiment.py",
             ("the seed misses the initial weights",
              "seed_everything(seed, train_params.deterministic)",
              "seed_everything(0, train_params.deterministic)"),
             ("the seed misses the data order",
              "epoch_orders(len(train.labels), train_params.epochs, seed)",
              "epoch_orders(len(train.labels), train_params.epochs, 0)"),
             ("validation on the training split",
              "fit(model, train, validation, train_params,",
              "fit(model, train, train, train_params,"),
             ),
    *planted("stages", "stages/cell.py",
             ("--learning-rate not taken from the command line",
              'OVERRIDABLE = ("optimizer", "learning_rate")',
              'OVERRIDABLE = ("optimizer",)'),
             ("cell scores the splits swapped",
              "metrics, _ = evaluate(model, train, test)",
              "metrics, _ = evaluate(model, test, train)"),
             ),
    *planted("stages", "stages/train.py",
             ("landscape.enabled ignored",
              "landscape = params.landscape if params.landscape.enabled else None",
              "landscape = None"),
             ),
    # --- evaluation ------------------------------------------------------------------------------
    *planted("evaluation", "stages/trainer/evaluation.py",
             ("loss clipped at 1e-12, not Keras' 1e-7",
              "np.clip(picked, keras.backend.epsilon(), 1.0)",
              "np.clip(picked, 1e-12, 1.0)"),
             ("loss reads the predicted class",
              "picked = probabilities[np.arange(len(labels)), labels]",
              "picked = probabilities.max(axis=1)"),
             ("per-class accuracy by predicted class",
              "correct[test.labels == label]",
              "correct[predicted == label]"),
             ("predictions file columns swapped",
              "for a, p in zip(labels, predicted)]",
              "for a, p in zip(predicted, labels)]"),
             ),
    *planted("evaluation", "stages/evaluate.py",
             ("evaluate stage swaps the splits",
              "evaluate(model, train, test)",
              "evaluate(model, test, train)"),
             ),
    # --- study statistics and report -------------------------------------------------------------
    *planted("study", "stages/analysis/statistics.py",
             ("std without Bessel's correction",
              "float(array.std(ddof=1)) if n > 1",
              "float(array.std()) if n > 1"),
             ("interval of the mean with n degrees of freedom",
              "stats.t.ppf(0.5 + CONFIDENCE / 2, n - 1)",
              "stats.t.ppf(0.5 + CONFIDENCE / 2, n)"),
             ("Student's pooled t-test instead of Welch's",
              "stats.ttest_ind(a, b, equal_var=False)",
              "stats.ttest_ind(a, b, equal_var=True)"),
             ("Holm multiplies by the rank",
              "min(1.0, (len(p_values) - rank) * p_values[index])",
              "min(1.0, (rank + 1) * p_values[index])"),
             ("detection ignores Holm's correction",
              "return self.p_holm < ALPHA",
              "return self.p_value < ALPHA"),
             ("verdict names the lower variant",
              "if self.difference > 0 else",
              "if self.difference < 0 else"),
             ("Welch dof: n instead of n - 1",
              "variance_a**2 / (n_a - 1)",
              "variance_a**2 / n_a"),
             ),
    *planted("study", "stages/analysis/cells.py",
             ("variants compared on train accuracy",
              'accuracy = {v: [run.metrics["test"]["accuracy"]',
              'accuracy = {v: [run.metrics["train"]["accuracy"]'),
             ("table columns swapped",
              'f"{cell(v, \'test_loss\')} | {cell(v, \'train_accuracy\')} |"',
              'f"{cell(v, \'train_accuracy\')} | {cell(v, \'test_loss\')} |"'),
             ("HTML table cells not escaped",
              "cells = [html.escape(c.strip()) for c in",
              "cells = [c.strip() for c in"),
             ),
    *planted("study", "stages/compare.py",
             ("landscape curves averaged over steps, not seeds",
              "np.mean([run[name] for run in runs], axis=0)",
              "np.mean([run[name] for run in runs], axis=1)"),
             ),
    # --- landscape -------------------------------------------------------------------------------
    *planted("landscape", "stages/trainer/landscape.py",
             ("step sizes not scaled by the learning rate",
              "[m * train_params.learning_rate for m in landscape.step_sizes]",
              "[m for m in landscape.step_sizes]"),
             ("probe measures the following batch",
              "batch_indices(self.orders, self._step, self.batch_size)",
              "batch_indices(self.orders, self._step + 1, self.batch_size)"),
             ("probe counts batches within the epoch",
              "batch_indices(self.orders, self._step, self.batch_size)",
              "batch_indices(self.orders, batch, self.batch_size)"),
             ("beta divided by the gradient norm, not eta times it",
              "change / ops.maximum(eta * gradient_norm, 1e-12)",
              "change / ops.maximum(gradient_norm, 1e-12)"),
             ("loss range measured from the current loss",
              'record[f"{prefix}loss_max"] - record[f"{prefix}loss_min"]',
              'record[f"{prefix}loss_max"] - record["loss"]'),
             ),
    *planted("landscape", "stages/trainer/backend.py",
             ("probe runs BN in inference mode",
              "model.stateless_call(weights, non_trainable, images, training=True)",
              "model.stateless_call(weights, non_trainable, images, training=False)"),
             ),
    # --- the one-run report ----------------------------------------------------------------------
    *planted("report", "stages/report.py",
             ("BN check expects 2 parameters per filter",
              "if layer.count_params() == 4 * layer.input.shape[-1] else",
              "if layer.count_params() == 2 * layer.input.shape[-1] else"),
             ("loss and accuracy columns swapped",
              "{metrics[s]['loss']:.4f} | {metrics[s]['accuracy']:.4f}",
              "{metrics[s]['accuracy']:.4f} | {metrics[s]['loss']:.4f}"),
             ),
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
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--only", action="append", default=[],
                        help="run the mutations whose area or name contains this")
    parser.add_argument("--list", action="store_true", help="list the mutations and exit")
    parser.add_argument("--tests", nargs="+", help="run these test files instead of each area's")
    args = parser.parse_args()
    mutations = [m for m in MUTATIONS if not args.only or any(o in f"{m.area} {m.name}" for o in args.only)]
    if not mutations:
        raise SystemExit(f"mutations: none matches --only {' '.join(args.only)}; see --list")
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
