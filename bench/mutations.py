"""Plant realistic one-line bugs in the experiment's code, one at a time, and see which tests catch them.

    python bench/mutations.py                 # every mutation; prints a markdown table
    python bench/mutations.py --only batch_norm --only landscape   # those whose area or name match
    python bench/mutations.py --area batch --area head   # those of these areas (exactly)
    python bench/mutations.py --list          # the mutations, without running anything

Each mutation is an exact snippet of one source file and its replacement. Before planting anything
the script checks that every snippet occurs exactly once, and stops with the list of those that do
not: a code change must update this file rather than quietly shrink what it measures.

The tests run in a temporary copy of the tree (tracked and untracked files, without data/ and
models/; with reports/, whose committed records and reports some tests recompute, and a git clone
that shares this repository's history, which the README's provenance line reads), with
`python -m pytest -n 0 -x -m "not dvc"` on the tests named for the mutation's area. The unmutated copy must pass those tests first. A mutation is caught when a test fails;
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
OUTPUTS = ("data/", "models/")  # DVC outputs: large, and no test reads them.
TIMEOUT_SECONDS = 600


def committed(grid: str) -> str:
    """The test that the grid's committed report is what the code writes from its records."""
    return f"tests/test_reports_guards.py::test_every_committed_report_is_what_the_code_writes_from_its_records[{grid}]"


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
    "frozen": ("tests/test_frozen.py",),
    "head": ("tests/test_head.py", committed("head"), "tests/test_docs.py"),
    "norms": ("tests/test_norms.py", committed("norms"), "tests/test_docs.py"),
    "batch": ("tests/test_batch.py", committed("batch"), "tests/test_docs.py"),
    "tables": ("tests/test_tables_guards.py", "tests/test_study.py::test_one_divergence_rule_for_every_record",
               "tests/test_sweep.py", "tests/test_study_report.py", "tests/test_head.py",
               "tests/test_reports_guards.py"),
    "answer": ("tests/test_answer_guards.py", "tests/test_docs.py"),
    "map": ("tests/test_map.py", committed("map")),
    "honesty": ("tests/test_consistency.py", "tests/test_answer_guards.py", "tests/test_provenance.py",
                "tests/test_study.py", committed("placement"), committed("rerun"), committed("study"),
                committed("sweep"), "tests/test_docs.py"),
    "integrity": ("tests/test_integrity.py", "tests/test_provenance.py", "tests/test_dvc_graph.py"),
    "timings": ("tests/test_timings_guards.py", "tests/test_report.py", "tests/test_study_report.py",
                "tests/test_reports_guards.py", "tests/test_docs.py"),
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
             ("non-monotonic activation pooled first",
              "block.block(conv, norm, activation, pool, params.activation in MONOTONIC_ACTIVATIONS)",
              "block.block(conv, norm, activation, pool, True)"),
             ("per-channel input scaled by the variance",
              "variance=std**2",
              "variance=std"),
             ),
    *planted("model", "stages/variants/before.py",
             ("convolution bias kept in front of BN",
              "CONV_BIAS = False",
              "CONV_BIAS = True"),
             ),
    *planted("model", "stages/variants/after.py",
             ("bn=after normalizes before the activation",
              "return [conv, activation, norm, pool]",
              "return [conv, norm, activation, pool]"),
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
              "optimizers[params.optimizer](learning_rate=params.learning_rate, **extra)",
              "optimizers[params.optimizer](**extra)"),
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
             ("step -> (epoch, batch) swapped",
              "epoch, batch = divmod(step, steps_per_epoch)",
              "batch, epoch = divmod(step, steps_per_epoch)"),
             ),
    *planted("training", "stages/trainer/params.py",
             ("short last batch dropped",
              "return -(-examples // batch_size)",
              "return examples // batch_size"),
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
              '"train": ("epochs", "optimizer", "learning_rate", "momentum", "batch_size")}',
              '"train": ("epochs", "optimizer", "momentum", "batch_size")}'),
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
             ("Bonferroni instead of Holm",
              'multipletests(list(p_values), alpha=ALPHA, method="holm")',
              'multipletests(list(p_values), alpha=ALPHA, method="bonferroni")'),
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
              'accuracy = {v: {run.seed: run.metrics["test"]["accuracy"]',
              'accuracy = {v: {run.seed: run.metrics["train"]["accuracy"]'),
             ("table columns swapped",
              'f"{cell(v, \'test_loss\')} | {cell(v, \'train_accuracy\')} |"',
              'f"{cell(v, \'train_accuracy\')} | {cell(v, \'test_loss\')} |"'),
             ("HTML table cells not escaped",
              "cells = [html.escape(c.strip()) for c in",
              "cells = [c.strip() for c in"),
             ),
    *planted("study", "stages/grids/study.py",
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
    # --- bn=frozen: BN that normalizes by the batch, then with the statistics of the freeze ----------
    *planted("frozen", "stages/variants/frozen.py",
             ("frozen normalizes after the activation",
              "return [conv, norm, *((pool, activation) if pool_first else (activation, pool))]",
              "return [conv, activation, norm, pool]"),
             ("frozen keeps the convolution bias",
              "CONV_BIAS = False",
              "CONV_BIAS = True"),
             ("freeze one step late",
              "FreezeBatchNorm(params.bn_freeze_after_steps, train_images)",
              "FreezeBatchNorm(params.bn_freeze_after_steps + 1, train_images)"),
             ),
    *planted("frozen", "stages/trainer/batch_norm.py",
             ("frozen again at every later step",
              "if self._step == self.after_steps:",
              "if self._step >= self.after_steps:"),
             ("a frozen layer still normalizes by the batch",
              "training=training and not self.frozen",
              "training=training"),
             ("training step not traced again at the freeze",
              "self.model.make_train_function(force=True)",
              "self.model.make_train_function()"),
             ("freeze sets the Bessel-corrected variance",
              "return np.asarray(mean), np.asarray(m2 / count)",
              "return np.asarray(mean), np.asarray(m2 / (count - 1))"),
             ("statistics batches combined without the between-batch term",
              "m2 = m2 + batch_m2 + delta**2 * count * len(values) / total",
              "m2 = m2 + batch_m2"),
             ("mean gap in variances, not standard deviations",
              "np.abs(moving_mean - mean) / np.sqrt(variance + layer.epsilon)",
              "np.abs(moving_mean - mean) / (variance + layer.epsilon)"),
             ),
    # --- the SGD head grid, and what the answer says of it ---------------------------------------
    *planted("head", "stages/grids/head.py",
             ("paired difference kept where the twin diverged",
              'if other is not None and not run["diverged"] and not other["diverged"]:',
              'if other is not None and not run["diverged"]:'),
             ("paired difference as without − with",
              'entry["differences"].append(run["test_accuracy"] - other["test_accuracy"])',
              'entry["differences"].append(other["test_accuracy"] - run["test_accuracy"])'),
             ("head input RMS: the largest seed's, not the mean",
              '"rms_before": float(np.mean(entry["rms_before"]))',
              '"rms_before": float(np.max(entry["rms_before"]))'),
             ("pooled divergence counts `none` too",
              'names = [bn for bn in variants if bn not in (reference, "comparisons") and bn in without]',
              'names = [bn for bn in variants if bn != "comparisons" and bn in without]'),
             ("pooled 'without' counts the intervention's runs",
              '("without", without, "diverged")',
              '("without", variants, "diverged")'),
             ("BN − none worded from none − BN",
              'pair = oriented(variants.get("comparisons") or {}, bn, "none")',
              'pair = oriented(variants.get("comparisons") or {}, "none", bn)'),
             ),
    *planted("head", "stages/analysis/claims.py",
             ("the answer's twin is `none`'s",
              '"without": head["without"].get(rate, {}).get("before")',
              '"without": head["without"].get(rate, {}).get("none")'),
             ),
    *planted("head", "stages/analysis/answer.py",
             ("pooled divergence 'detected' above alpha",
              'change = "detected" if pooled["p"] < ALPHA else "no difference detected"',
              'change = "detected" if pooled["p"] > ALPHA else "no difference detected"'),
             ),
    # --- the norms grid (scale invariance), and what the answer says of it -------------------------
    *planted("norms", "stages/grids/norms.py",
             ("joint norm summed, not root of the summed squares",
              "norm = np.sqrt((weights ** 2).sum(axis=0))",
              "norm = weights.sum(axis=0)"),
             ("last epoch's window two epochs long",
              'window = series["step"] > series["step"][-1] * (epochs - 1) / epochs',
              'window = series["step"] > series["step"][-1] * (epochs - 2) / epochs'),
             ("growth from the last probe, not the last epoch's median",
              '"norm_growth": _rounded(end_norm / norm[0])',
              '"norm_growth": _rounded(norm[-1] / norm[0])'),
             ("diverged seeds averaged",
              'if not seed["diverged"] and seed[group][key] is not None]',
              'if seed[group][key] is not None]'),
             ("step ratio inverted in the verdict",
              "({step / base_step:.2f}× bn={reference}'s",
              "({base_step / step:.2f}× bn={reference}'s"),
             ),
    *planted("norms", "stages/analysis/claims.py",
             ("scale invariance holds on either sign",
              '"holds": growth["before"] > growth["none"] and ratio < 1',
              '"holds": growth["before"] > growth["none"] or ratio < 1'),
             ("one seed counts as tested",
              'return {"rates": rates, "seeds": seeds, "tested": seeds >= MIN_RUNS}',
              'return {"rates": rates, "seeds": seeds, "tested": seeds >= 1}'),
             ("effective step vs `none` inverted",
              '"versus": end / reference if end is not None and reference else None',
              '"versus": reference / end if end is not None and reference else None'),
             ),
    *planted("norms", "stages/analysis/answer.py",
             ("the rates where the reading fails left unnamed",
              '+ (f", not at {\', \'.join(no)}" if no else ""))',
              ')'),
             ),
    # --- the batch grid (fitting or generalization), and what the answer says of it ----------------
    *planted("batch", "stages/grids/batch.py",
             ("gap as test − train",
              '"gap": train - test}',
              '"gap": test - train}'),
             ("diverged runs averaged",
              "kept = [values(cell) for cell in runs if not diverged(cell)]",
              "kept = [values(cell) for cell in runs]"),
             ("Holm's family only the shown variants",
              "for bn, runs in comparable.items()})",
              "for bn, runs in comparable.items() if bn in kept_variants})"),
             ("gain split as none − BN",
              'comparison = compare("first", first, "second", second)',
              'comparison = compare("second", second, "first", first)'),
             ("compared although `none` diverged",
              'if entry[bn]["diverged"] or entry.get(REFERENCE, {}).get("diverged"):',
              'if entry[bn]["diverged"]:'),
             ),
    *planted("batch", "stages/analysis/claims.py",
             ("'narrows' from the interval's lower end",
              '"narrowed": [size for size in split if split[size]["gap"]["ci_high"] < 0]',
              '"narrowed": [size for size in split if split[size]["gap"]["ci_low"] < 0]'),
             ("fitting from the train gain's sign, not its interval",
              '"fitting": [size for size in split if split[size]["train_accuracy"]["ci_low"] > 0]',
              '"fitting": [size for size in split if split[size]["train_accuracy"]["difference"] > 0]'),
             ("a split at one batch size",
              "if len(split) < 2:",
              "if len(split) < 1:"),
             ),
    *planted("batch", "stages/analysis/answer.py",
             ("'it is fitting' where any detected gain is",
              'fitting = bool(detected) and all(size in batch["fitting"]',
              'fitting = bool(detected) and any(size in batch["fitting"]'),
             ),
    # --- the tables every grid report shares (stages/analysis/cells.py) ------------------------
    *planted("tables", "stages/analysis/cells.py",
             ("oriented flips the difference, not its interval",
              '"ci_low": -pair["ci_high"], "ci_high": -pair["ci_low"]',
              '"ci_low": -pair["ci_low"], "ci_high": -pair["ci_high"]'),
             ("n counts the diverged runs",
              "else f\"{entry['mean']:.4f} ± {entry['std']:.4f} (n={entry['n']})\")",
              "else f\"{entry['mean']:.4f} ± {entry['std']:.4f} (n={entry['runs']})\")"),
             ("runs leaves out the diverged ones",
              '"runs": len(values) + diverged_runs',
              '"runs": len(values)'),
             ("pairs table in fractions, not points",
              "{100 * c['difference']:+.2f}",
              "{c['difference']:+.2f}"),
             ("Holm p kept as the raw p",
              '"p_value": c.p_value, "p_holm": c.p_holm,',
              '"p_value": c.p_value, "p_holm": c.p_value,'),
             ("a run stuck at its first loss is not diverged",
              "losses[-1] >= losses[0]",
              "losses[-1] > losses[0]"),
             ("a variant with a diverged run compared",
              "if len(runs) == len(cells[v]) and len(runs) >= 2}",
              "if len(runs) >= 2}"),
             ),
    *planted("tables", "stages/grids/sweep.py",
             ("sweep compares a variant with a diverged run",
              'if len(values) >= 2 and not entry[bn]["diverged"]}',
              "if len(values) >= 2}"),
             ),
    # --- the answer's wording: claims.py decides, answer.py words ------------------------------
    *planted("answer", "stages/analysis/statistics.py",
             ("two runs per arm tested",
              "MIN_RUNS = 3",
              "MIN_RUNS = 2"),
             ),
    *planted("answer", "stages/analysis/claims.py",
             ("'not tested' decided by the larger arm",
              'if min(pair["sizes"]) < MIN_RUNS:',
              'if max(pair["sizes"]) < MIN_RUNS:'),
             ("detected on the unadjusted p",
              'if pair["p_holm"] < ALPHA:',
              'if pair["p_value"] < ALPHA:'),
             ("'BN helps' when either gain is detected",
              '"detected": before["verdict"] == after["verdict"] == "detected"}',
              '"detected": "detected" in (before["verdict"], after["verdict"])}'),
             ("'at every rate' when any rate is detected",
              'all(pair["verdict"] == "detected" for _, pair in rates)',
              'any(pair["verdict"] == "detected" for _, pair in rates)'),
             ("'less than half' from the interval's lower end",
              '"under_half": seeds >= MIN_RUNS and high < 0.5',
              '"under_half": seeds >= MIN_RUNS and low < 0.5'),
             ("bootstrap interval at 90%",
              "np.percentile(ratios, [100 * (1 - CONFIDENCE) / 2, 100 * (1 + CONFIDENCE) / 2])",
              "np.percentile(ratios, [100 * (1 - CONFIDENCE), 100 * CONFIDENCE])"),
             ("before − frozen compared the other way round",
              'against = oriented(study["comparisons"], "before", "frozen")',
              'against = oriented(study["comparisons"], "frozen", "before")'),
             ("TOST with a one-sided margin",
              "-margin, margin)",
              "0, margin)"),
             ("diverged study runs in the per-seed accuracies",
              'if not diverged_history(record["history"]):\n            accuracy.setdefault(',
              'if True:\n            accuracy.setdefault('),
             ("placement's lead 'under half a spread' below one spread",
              'scale = "under_half" if ratio < 0.5 else',
              'scale = "under_half" if ratio < 1 else'),
             ("'ahead' from one arm's spread",
              'ahead = scipy.stats.norm.cdf(abs(comparison["difference"]) / math.hypot(*stds))',
              'ahead = scipy.stats.norm.cdf(abs(comparison["difference"]) / max(stds))'),
             ("high-rate family keeps a variant that diverged",
              'if len(runs.get(bn, [])) >= 2 and not diverged.get(bn)]',
              'if len(runs.get(bn, [])) >= 2]'),
             ("freeze gap: the smallest seed's",
              '"mean_gap": max(mean for mean, _ in worst)',
              '"mean_gap": min(mean for mean, _ in worst)'),
             ),
    *planted("answer", "stages/analysis/answer.py",
             ("'detected' quotes the raw p as Holm's",
              "detected (Holm p = {pair['p_holm']:.2g})",
              "detected (Holm p = {pair['p_value']:.2g})"),
             ("'enough' without equivalence",
              'if against["verdict"] == "equivalent" else ""',
              'if against["verdict"] != "detected" else ""'),
             ("'BN helps.' from `before` alone",
              "'BN helps.' if helps['detected'] else",
              "'BN helps.' if helps['before']['verdict'] == 'detected' else"),
             ),
    # --- the placement map (sequential, paired on seed) --------------------------------------------
    *planted("map", "stages/grids/map.py",
             ("a pair kept where `before` diverged",
              "if diverged(one) or diverged(other):",
              "if diverged(one):"),
             ("placement as before − after",
              'differences, seeds, dropped = paired(cells, "after", "before", order)',
              'differences, seeds, dropped = paired(cells, "before", "after", order)'),
             ("the pilot chooses the smallest rate that trained",
              '"chosen": trained[-1] if trained else None',
              '"chosen": trained[0] if trained else None'),
             ("the placement ahead read from the wrong sign",
              'return ("after" if row["mean"] > 0 else "before") if detected else None',
              'return ("after" if row["mean"] < 0 else "before") if detected else None'),
             ("the reference detected when its interval holds 0 below",
              'detected = row["ci_low"] is not None and (row["ci_low"] > 0 or row["ci_high"] < 0)',
              'detected = row["ci_low"] is not None and (row["ci_low"] > 0 or row["ci_low"] < 0)'),
             ),
    *planted("map", "stages/analysis/sequential.py",
             ("equivalent when one end is inside the margin",
              "elif -margin < low and high < margin:",
              "elif -margin < low or high < margin:"),
             ),
    # --- honesty: pooled numerics checked, paired tests, reruns, provenance, claim wording -----------
    *planted("honesty", "stages/analysis/consistency.py",
             ("heterogeneity with equal variances",
              'anova = anova_oneway(testable, use_var="unequal")',
              'anova = anova_oneway(testable, use_var="equal")'),
             ("a drift accepted at any p",
              'for name in ("numerics", "batches", "order"))\n    return result',
              'for name in ("numerics", "batches"))\n    return result'),
             ("arms on different numerics never reported",
              "if len(set(labels.values())) <= 1:",
              "if len(set(labels.values())) <= 2:"),
             ),
    *planted("honesty", "stages/analysis/statistics.py",
             ("paired test on unpaired values",
              "test = stats.ttest_rel(a, b)",
              "test = stats.ttest_ind(a, b, equal_var=False)"),
             ),
    *planted("honesty", "stages/grids/rerun.py",
             ("rerun − original read the other way",
              '"difference": again.metrics["test"]["accuracy"] - first.metrics["test"]["accuracy"],',
              '"difference": first.metrics["test"]["accuracy"] - again.metrics["test"]["accuracy"],'),
             ("largest distance without its absolute value",
              'largest = max((abs(row["difference"]) for row in rows), default=None)',
              'largest = max((row["difference"] for row in rows), default=None)'),
             ),
    *planted("honesty", "stages/trainer/provenance.py",
             ("code digest blind to file names",
              'hasher.update(str(path.relative_to(ROOT)).encode() + b"\\0" + path.read_bytes() + b"\\0")',
              'hasher.update(path.read_bytes() + b"\\0")'),
             ("code_differs always false",
              'return {"commit": commit, "code_differs": bool(changed)}',
              'return {"commit": commit, "code_differs": False}'),
             ),
    *planted("honesty", "stages/analysis/answer.py",
             ("a detected sweep difference printed as the report ordered it",
              "    if difference < 0:\n        first, second, difference = second, first, -difference\n",
              ""),
             ("numerics' reach quoted as the absolute distance",
              'moved = " and ".join(f"{row[\'difference\'] * 100:+.2f}" for row in reruns)',
              'moved = " and ".join(f"{abs(row[\'difference\']) * 100:+.2f}" for row in reruns)'),
             ),
    # --- timings: fit time per cell, cell-minutes, the main run's fit time ------------------------
    *planted("timings", "stages/trainer/training.py",
             ("fit time includes model.fit's set-up",
              '"fit_seconds": round(sum(log.epoch_seconds), 3)',
              '"fit_seconds": round(time.perf_counter() - start, 3)'),
             ("epoch timer started once, at the start of training",
              "def on_epoch_begin(self, epoch, logs=None):\n        self._start",
              "def on_train_begin(self, logs=None):\n        self._start"),
             ),
    *planted("timings", "stages/analysis/records.py",
             ("fit time read as model.fit's total",
              'return run["fit_seconds"] if "fit_seconds" in run else',
              'return run["total_seconds"] if "fit_seconds" in run else'),
             ("older records' fit time: the longest epoch",
              'round(sum(run["history"]["epoch_seconds"]), 3)',
              'round(max(run["history"]["epoch_seconds"]), 3)'),
             ),
    *planted("timings", "stages/analysis/cells.py",
             ("study's fit time in hours, labelled minutes",
              "for runs in cells.values() for run in runs) / 60",
              "for runs in cells.values() for run in runs) / 3600"),
             ),
    *planted("timings", "stages/grids/map.py",
             ("minutes per cell: the mean, not the median",
              '"minutes_per_cell": round(float(np.median([fit_seconds(cell.run) for cell in runs])) / 60, 2)',
              '"minutes_per_cell": round(float(np.mean([fit_seconds(cell.run) for cell in runs])) / 60, 2)'),
             ("cell-minutes in hours",
              '"cell_minutes": round(sum(fit_seconds(cell.run) for cell in runs) / 60, 1)',
              '"cell_minutes": round(sum(fit_seconds(cell.run) for cell in runs) / 3600, 1)'),
             ),
    *planted("timings", "stages/grids/head.py",
             ("head cells' minutes counted in hours",
              "minutes = sum(fit_seconds(cell.run) for cell in cells) / 60",
              "minutes = sum(fit_seconds(cell.run) for cell in cells) / 3600"),
             ),
    *planted("timings", "stages/analysis/answer.py",
             ("fit s per cell: mean ± min",
              "{row['fit_seconds']['mean']:.0f} ± {row['fit_seconds']['std']:.0f}",
              "{row['fit_seconds']['mean']:.0f} ± {row['fit_seconds']['min']:.0f}"),
             ),
    *planted("timings", "stages/report.py",
             ("main run's fit time: model.fit's total",
              'f"- fit time (sum of the epochs): {fit_seconds(run):.1f} s "',
              'f"- fit time (sum of the epochs): {run[\'total_seconds\']:.1f} s "'),
             ),
    # --- integrity: records bound to their cell, no value in a shell, refusals delete nothing ----------
    *planted("integrity", "stages/analysis/binding.py",
             ("an edited record accepted",
              "    if entry.md5 != md5:\n",
              "    if entry.md5 != md5 and False:\n"),
             ("a record's seed not compared with its lock entry's",
              'if ran is None or ran.group(1) != str(record.get("seed")):',
              "if ran is None:"),
             ("a setting compared by value only (10.0 for 10)",
              "return type(recorded) is int and recorded == wanted",
              "return recorded == wanted"),
             ),
    *planted("integrity", "stages/check.py",
             ("a shell-active string let through",
              "elif isinstance(value, str) and not SHELL_SAFE.fullmatch(value):",
              "elif isinstance(value, str) and not SHELL_SAFE.search(value):"),
             ),
    *planted("integrity", "stages/trainer/grid.py",
             ("a grid one cell over the limit accepted",
              "    if count > MAX_CELLS:",
              "    if count > MAX_CELLS + 1:"),
             ),
    *planted("integrity", "stages/trainer/recovery.py",
             ("a removed output put back whatever its bytes",
              "if data is not None and hashlib.md5(data).hexdigest() == md5:",
              "if data is not None:"),
             ),
    *planted("integrity", "stages/trainer/guard.py",
             ("code compared by size, not content",
              "digests[str(file)] = hashlib.sha256(Path(file).read_bytes()).hexdigest()",
              "digests[str(file)] = str(len(Path(file).read_bytes()))"),
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
    """The working tree as it is (uncommitted changes included) in `destination`, a clone that
    shares this repository's objects: HEAD and the history are this one's, the files the tree's."""
    def git(*args: str, cwd: Path = ROOT) -> str:
        return subprocess.run(["git", *args], cwd=cwd, text=True, capture_output=True, check=True).stdout

    git("clone", "-q", "--shared", "--no-checkout", str(ROOT), str(destination))
    for name in git("ls-files", "-co", "--exclude-standard").splitlines():
        source = ROOT / name
        if source.is_file() and not name.startswith(OUTPUTS):
            (destination / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, destination / name)
    git("reset", "-q", cwd=destination)  # The index at HEAD, the files as copied.


def run_tests(root: Path, tests: tuple[str, ...]) -> tuple[str, str]:
    """('passed' | 'failed' | 'timeout', first failing test or '')."""
    # No bytecode: a restored file must never be shadowed by its mutant's cached .pyc.
    env = {**os.environ, "PYTHONDONTWRITEBYTECODE": "1"}
    # One process (`-n 0`, not pyproject's one worker per core): `-x` stops at the first failure
    # at once, and a few test files do not pay for starting workers.
    command = [sys.executable, "-m", "pytest", "-n", "0", "-x", "-q", "-rfE", "-p", "no:cacheprovider",
               "-m", "not dvc", *tests]
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
    parser.add_argument("--area", action="append", default=[], choices=sorted(TESTS),
                        help="run the mutations of this area (its exact name)")
    parser.add_argument("--list", action="store_true", help="list the mutations and exit")
    parser.add_argument("--tests", nargs="+", help="run these test files instead of each area's")
    args = parser.parse_args()
    mutations = [m for m in MUTATIONS if (not args.only or any(o in f"{m.area} {m.name}" for o in args.only))
                 and (not args.area or m.area in args.area)]
    if not mutations:
        raise SystemExit(f"mutations: none matches --only {' '.join(args.only)} --area {' '.join(args.area)}; "
                         "see --list")
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
