"""The grids' figures: each function takes plain data and writes one PNG."""

from __future__ import annotations

import warnings
from pathlib import Path

import matplotlib.ticker
import numpy as np

from stages.analysis.cells import diverged_history
from stages.analysis.plotting import plt, save, variant_color
from stages.analysis.statistics import MIN_RUNS


def _by(runs: list[dict], key: str) -> dict:
    """Runs grouped by `key`, groups in order of first appearance."""
    groups: dict = {}
    for run in runs:
        groups.setdefault(run[key], []).append(run)
    return groups


def _seed_offsets(count: int) -> np.ndarray:
    """Small multiplicative offsets on a log axis, so that variants at one learning rate do not overlap."""
    return 10 ** (np.linspace(-0.06, 0.06, count) if count > 1 else np.zeros(1))


def _label_rates(axis, rates) -> None:
    """Ticks at the rates the sweep ran, written as in params.yaml: over less than a decade, a log
    axis's own minor labels (3×10⁻², 4×10⁻², ...) run into each other."""
    rates = sorted(rates)
    axis.set_xticks(rates, [f"{rate:g}" for rate in rates])
    axis.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())


def accuracy_vs_learning_rate(runs: list[dict], path: Path) -> None:
    """Test accuracy against learning rate (log x), one panel per optimizer: every seed a dot,
    diverged runs a cross, the mean over the seeds that trained a line. A run: {"optimizer", "bn",
    "learning_rate", "seed", "test_accuracy", "diverged"}."""
    optimizers = _by(runs, "optimizer")
    figure, axes = plt.subplots(1, len(optimizers), figsize=(6 * len(optimizers), 4.6), squeeze=False,
                                sharey=True)
    for axis, (optimizer, optimizer_runs) in zip(axes[0], optimizers.items()):
        variants = _by(optimizer_runs, "bn")
        for (variant, variant_runs), offset in zip(variants.items(), _seed_offsets(len(variants))):
            color = variant_color(variant)
            rates = sorted({run["learning_rate"] for run in variant_runs})
            # The line joins the means of the runs that trained; a rate where every run diverged
            # has no mean (NaN: a gap in the line), and its crosses show the runs.
            trained = [[r["test_accuracy"] for r in variant_runs if r["learning_rate"] == rate and not r["diverged"]]
                       for rate in rates]
            means = [np.mean(values) if values else np.nan for values in trained]
            axis.plot(np.multiply(rates, offset), means, "-", color=color, alpha=0.7, label=f"bn={variant}")
            for diverged, marker in ((False, "o"), (True, "x")):
                chosen = [r for r in variant_runs if bool(r["diverged"]) is diverged]
                axis.scatter([r["learning_rate"] * offset for r in chosen], [r["test_accuracy"] for r in chosen],
                             marker=marker, color=color, s=30 if diverged else 18, zorder=3)
        axis.axhline(0.1, color="grey", linestyle=":", linewidth=1, label="chance (10 classes)")
        axis.scatter([], [], marker="x", color="black", label="diverged run")
        axis.set(xscale="log", xlabel="learning rate (log scale)", ylabel="final test accuracy",
                 title=f"{optimizer}: dots = seeds, line = mean over the seeds that trained")
        _label_rates(axis, {run["learning_rate"] for run in optimizer_runs})
        axis.grid(alpha=0.3)
        axis.legend(fontsize=8)
    figure.suptitle("Diverged: a non-finite training loss, or a last epoch's no lower than the first's.\n"
                    "Variants are shifted slightly along x so that their dots do not overlap", fontsize=9)
    save(figure, path)


def effective_step_vs_learning_rate(runs: list[dict], path: Path) -> None:
    """Per layer, the median over training of the effective step ||D_l|| / ||w_l|| against the
    learning rate (both log): colour = variant, solid/dots = first optimizer, dashed/squares =
    second, and so on. A run: {"optimizer", "bn", "learning_rate", "seed", "effective_step":
    {layer: median}, "diverged"}; runs without a value for a layer (no such layer), and diverged runs
    (whose medians describe the blow-up), are left out."""
    layers = list(dict.fromkeys(layer for run in runs for layer in run["effective_step"]))
    columns = min(4, len(layers))
    rows = -(-len(layers) // columns)
    figure, axes = plt.subplots(rows, columns, figsize=(4.2 * columns, 3.5 * rows), squeeze=False)
    styles = [("-", "o"), ("--", "s"), (":", "^")]
    for axis, layer in zip(axes.flat, layers):
        for (optimizer, optimizer_runs), (line, marker) in zip(_by(runs, "optimizer").items(), styles):
            for variant, variant_runs in _by(optimizer_runs, "bn").items():
                values = [(r["learning_rate"], r["effective_step"].get(layer)) for r in variant_runs
                          if not r["diverged"]]
                values = [(rate, value) for rate, value in values if value is not None and np.isfinite(value)]
                if not values:
                    continue
                rates = sorted({rate for rate, _ in values})
                means = [np.mean([v for r, v in values if r == rate]) for rate in rates]
                color = variant_color(variant)
                axis.scatter(*zip(*values), marker=marker, color=color, s=12, alpha=0.6)
                axis.plot(rates, means, line, marker=marker, color=color, markersize=4,
                          label=f"{optimizer}, bn={variant}")
        axis.set(xscale="log", yscale="log", xlabel="learning rate (log scale)",
                 ylabel="effective step ‖Δ_l‖ / ‖w_l‖", title=f"layer {layer}")
        axis.grid(alpha=0.3)
    for axis in axes.flat[len(layers):]:
        axis.axis("off")
    legend = {}  # One entry per (optimizer, variant), wherever it first appears.
    for axis in axes.flat:
        for handle, label in zip(*axis.get_legend_handles_labels()):
            legend.setdefault(label, handle)
    labels = list(legend)
    figure.legend(list(legend.values()), labels, loc="lower center", ncol=min(len(labels), 4),
                  fontsize=8, bbox_to_anchor=(0.5, 0))
    figure.suptitle("Effective step per layer: median over training of ‖Δ_l‖ / ‖w_l‖ (Δ: the update "
                    "the optimizer applied). Small dots: seeds; line: mean over seeds", fontsize=9)
    figure.tight_layout(rect=(0, 0.06 + 0.02 * (len(labels) // 4), 1, 1))
    save(figure, path, layout=False)


def update_beta_over_training(runs: list[dict], path: Path) -> None:
    """beta along the real update D over training, small multiples per (optimizer, learning rate):
    per variant the median over seeds as a line, min to max over seeds as a band. A run:
    {"optimizer", "bn", "learning_rate", "seed", "steps", "update_beta", "diverged"} (per probe
    arrays; all seeds of a cell probe the same steps). Diverged runs are left out, as from every
    landscape measure (their values describe the blow-up); the label counts them."""
    optimizers = _by(runs, "optimizer")
    rates = {optimizer: sorted({r["learning_rate"] for r in group})
             for optimizer, group in optimizers.items()}
    columns = max(len(values) for values in rates.values())
    figure, axes = plt.subplots(len(optimizers), columns, squeeze=False, sharey=True,
                                figsize=(3.8 * columns, 3.4 * len(optimizers)))
    for row, (optimizer, optimizer_runs) in enumerate(optimizers.items()):
        for column, rate in enumerate(rates[optimizer]):
            axis = axes[row, column]
            for variant, all_runs in _by([r for r in optimizer_runs if r["learning_rate"] == rate],
                                         "bn").items():
                variant_runs = [r for r in all_runs if not r["diverged"]]
                color = variant_color(variant)
                diverged = len(all_runs) - len(variant_runs)
                note = f", {diverged} of {len(all_runs)} diverged" if diverged else ""
                if not variant_runs:
                    axis.plot([], [], color=color, label=f"bn={variant} (all {len(all_runs)} diverged)")
                    continue
                steps = np.asarray(variant_runs[0]["steps"])
                values = np.stack([np.asarray(r["update_beta"], dtype=float) for r in variant_runs])
                values[~np.isfinite(values)] = np.nan  # A missing probe value leaves a gap.
                with warnings.catch_warnings():
                    # A step where every seed had diverged has a NaN median: not drawn, no warning.
                    warnings.simplefilter("ignore", RuntimeWarning)
                    median, low, high = (reduce(values, axis=0)
                                         for reduce in (np.nanmedian, np.nanmin, np.nanmax))
                axis.plot(steps, median, color=color, label=f"bn={variant} (n={len(variant_runs)}{note})")
                axis.fill_between(steps, low, high, color=color, alpha=0.2)
            axis.set(yscale="log", xlabel="training step", ylabel="β along Δ",
                     title=f"{optimizer}, learning rate {rate:g}")
            axis.grid(alpha=0.3)
            axis.legend(fontsize=7)
        for axis in axes[row, len(rates[optimizer]):]:
            axis.axis("off")
    # Two lines: one would be wider than a figure of two or three panels.
    figure.suptitle("β along the update Δ = max over k of ‖∇L(w + kΔ) − ∇L(w)‖ / ‖kΔ‖ at each probe\n"
                    "Line: median over seeds; band: min to max over seeds", fontsize=9)
    save(figure, path)


CURVE_NAMES = {"val/accuracy": "validation accuracy (test split)", "val/loss": "validation loss (test split)"}


def study_curves(histories: dict[str, list[dict[str, np.ndarray]]], path: Path, setting: str) -> None:
    """Validation accuracy and loss per epoch: per variant the mean over the seeds that trained,
    +-1 std band; a diverged run (cells.diverged_history) is counted in the legend, never averaged.
    `setting` names the training (optimizer, rate, batch, epochs) in the title."""
    figure, axes = plt.subplots(1, 2, figsize=(12, 4.4))
    for axis, metric in zip(axes, CURVE_NAMES):
        for variant, runs in histories.items():
            trained = [run for run in runs if not diverged_history(run)]
            note = f", {len(runs) - len(trained)} of {len(runs)} diverged" if len(trained) < len(runs) else ""
            if not trained:
                axis.plot([], [], color=variant_color(variant), label=f"bn={variant} (all {len(runs)} diverged)")
                continue
            values = np.stack([run[metric] for run in trained])
            epochs = np.arange(1, values.shape[1] + 1)
            mean = values.mean(axis=0)
            std = values.std(axis=0, ddof=1) if len(trained) > 1 else np.zeros_like(mean)
            line, = axis.plot(epochs, mean, "-o", markersize=3, color=variant_color(variant),
                              label=f"bn={variant} ({len(trained)} seeds{note})")
            axis.fill_between(epochs, mean - std, mean + std, color=line.get_color(), alpha=0.2)
        axis.set(xlabel="epoch", ylabel=CURVE_NAMES[metric], title=f"{CURVE_NAMES[metric].capitalize()} per epoch")
        axis.grid(alpha=0.3)
        axis.legend(fontsize=8)
    figure.suptitle(f"Every variant at {setting}: mean over the seeds that trained, band ±1 std", fontsize=10)
    save(figure, path)


LANDSCAPE_PANELS = (("loss_min", "loss_max", "loss landscape", "loss L(w − ηg), min to max over η"),
                    ("grad_change_min", "grad_change_max", "gradient predictiveness",
                     "‖∇L(w − ηg) − g‖, min to max over η"),
                    (None, "beta", "effective β-smoothness", "max over η of ‖∇L(w − ηg) − g‖ / ‖ηg‖"))


def landscape_by_variant(records: dict[str, dict[str, np.ndarray]], path: Path, setting: str) -> None:
    """The paper's Figure 4 as small multiples: one row per variant (`records`: variant -> its
    seed-averaged landscape columns), one column per measure, axes shared down each column, so
    that no band hides another and the variants compare row against row."""
    figure, axes = plt.subplots(len(records), 3, figsize=(14, 2.3 * len(records) + 0.8), squeeze=False,
                                sharex=True, sharey="col")
    for row, (variant, columns) in enumerate(records.items()):
        color = variant_color(variant)
        for axis, (low, high, title, ylabel) in zip(axes[row], LANDSCAPE_PANELS):
            if low:
                axis.fill_between(columns["step"], columns[low], columns[high], alpha=0.35, color=color,
                                  linewidth=0, label=f"bn={variant}: range over η")
            else:
                axis.plot(columns["step"], columns[high], color=color, label=f"bn={variant}")
            axis.set(yscale="log", title=f"{title}, bn={variant}", ylabel=ylabel if row == len(records) // 2 else "")
            axis.grid(alpha=0.3)
            axis.legend(fontsize=7, loc="upper right")
    for axis in axes[-1]:
        axis.set(xlabel="training step")
    figure.suptitle(f"Every variant at {setting}. Along the gradient g = ∇L(w) of each probed step's mini-batch, η ∈ step "
                    "sizes × learning rate; each row one variant, averaged over its seeds that trained", fontsize=9)
    save(figure, path)


def per_seed_points(values: dict[str, list[float]], path: Path, ylabel: str, title: str) -> None:
    """One dot per seed per variant, with the mean as a bar: spread and centre at a glance."""
    figure, axis = plt.subplots(figsize=(6, 4))
    for position, (variant, points) in enumerate(values.items()):
        jitter = np.linspace(-0.12, 0.12, len(points)) if len(points) > 1 else np.zeros(1)
        axis.scatter(position + jitter, points, zorder=3, color=variant_color(variant), label=f"bn={variant}: one seed")
        axis.hlines(np.mean(points), position - 0.25, position + 0.25, color="black", zorder=4,
                    label="mean over seeds" if position == 0 else None)
    axis.set_xticks(range(len(values)), [f"bn={v}" for v in values])
    axis.set(ylabel=ylabel, title=title)
    axis.grid(alpha=0.3, axis="y")
    axis.legend(fontsize=7)
    save(figure, path)


TEST_LABELS = {"paired": "paired t", "welch": "Welch"}


def placement(accuracy: dict[str, list[float]], summary: dict, path: Path) -> None:
    """Left: every seed's test accuracy per variant, with the mean and its 95% CI. Right: the
    difference of means with its 95% CI (the comparison's own test: paired on seed where the seeds
    are shared, else Welch's) and 90% CI (inside ±margin ⇔ equivalent, TOST)."""
    figure, (points, difference) = plt.subplots(1, 2, figsize=(10, 4.2), width_ratios=[3, 2])
    for position, (variant, values) in enumerate(accuracy.items()):
        jitter = np.random.default_rng(position).uniform(-0.15, 0.15, len(values))  # Fixed: same figure each run.
        row = summary["variants"][variant]
        points.scatter(position + jitter, values, s=14, alpha=0.7, color=variant_color(variant),
                       label=f"bn={variant}: one seed (n={len(values)})")
        if row.get("ci_low") is not None:
            points.errorbar(position + 0.3, row["mean"], yerr=[[row["mean"] - row["ci_low"]], [row["ci_high"] - row["mean"]]],
                            fmt="o", color="black", capsize=4, label="mean, 95% CI" if position == 0 else None)
    points.set_xticks(range(len(accuracy)), [f"bn={v}" for v in accuracy])
    points.set(ylabel="test accuracy", title="Test accuracy of every seed")
    points.grid(alpha=0.3, axis="y")
    points.legend(fontsize=8, loc="best")
    comparison, test = summary["comparison"], summary["equivalence"]
    if comparison:
        margin = test["margin"] * 100
        difference.axvspan(-margin, margin, color="tab:green", alpha=0.15, label=f"equivalence margin ±{margin:.2g}")
        difference.axvline(0, color="gray", linewidth=1)
        center = comparison["difference"] * 100
        for y, (low, high, label) in enumerate(((test["ci_low"], test["ci_high"], "90% CI (TOST)"),
                                                (comparison["ci_low"], comparison["ci_high"],
                                                 "95% CI (" + TEST_LABELS.get(comparison.get("test"), "Welch") + ")"))):
            difference.errorbar(center, y, xerr=[[center - low * 100], [high * 100 - center]], fmt="o",
                                capsize=5, color="black" if y else "tab:green", label=label)
        difference.set_yticks([0, 1], ["90% CI", "95% CI"])
        difference.set_ylim(-0.8, 1.8)
        difference.legend(fontsize=8, loc="upper right")
    else:
        difference.text(0.5, 0.5, summary["verdict"], ha="center", va="center", wrap=True, fontsize=9,
                        transform=difference.transAxes)
        difference.set_yticks([])
    first, second = accuracy
    difference.set(xlabel=f"{first} − {second}, test accuracy points", title="Difference of means")
    difference.grid(alpha=0.3, axis="x")
    save(figure, path)


def weight_norms(runs: list[dict], path: Path, optimizer: str) -> None:
    """Per learning rate (rows): the convolution kernels' norm and their effective step over
    training, one line per variant (median over its seeds that did not diverge). A run:
    {"bn", "learning_rate", "seed", "diverged", "step", "conv_norm", "conv_effective_step"}."""
    rates = sorted({run["learning_rate"] for run in runs})
    figure, axes = plt.subplots(len(rates), 2, squeeze=False, figsize=(10, 3.4 * len(rates)))
    for row, rate in enumerate(rates):
        for variant, all_runs in _by([r for r in runs if r["learning_rate"] == rate], "bn").items():
            kept = [r for r in all_runs if not r["diverged"]]
            note = f", {len(all_runs) - len(kept)} of {len(all_runs)} diverged" if len(kept) < len(all_runs) else ""
            for axis, key in zip(axes[row], ("conv_norm", "conv_effective_step")):
                if not kept:
                    axis.plot([], [], color=variant_color(variant), label=f"bn={variant} (diverged)")
                    continue
                values = np.median(np.stack([np.asarray(r[key], dtype=float) for r in kept]), axis=0)
                axis.plot(kept[0]["step"], values, color=variant_color(variant),
                          label=f"bn={variant} (n={len(kept)}{note})")
        setting = f"{optimizer.capitalize()} {rate:g}"
        axes[row, 0].set(ylabel="‖w‖ of the conv kernels", title=f"Kernel norm, {setting}")
        axes[row, 1].set(yscale="log", ylabel="‖Δ‖ / ‖w‖", title=f"Effective step, {setting}")
        for axis in axes[row]:
            axis.set(xlabel="training step")
            axis.grid(alpha=0.3)
        for axis in axes[row]:
            axis.legend(fontsize=7)
    figure.suptitle("The three convolutions' kernels together: their norm and the effective step of "
                    "the update applied to them, at every probe", fontsize=9)
    save(figure, path)


def accuracy_vs_batch_size(runs: list[dict], path: Path) -> None:
    """Left: train (dashed) and test (solid) accuracy against batch size (log x), every seed a dot,
    the mean over seeds a line, per variant. Right: the gap (train − test). Diverged runs are left
    out (the report counts them). A run: {"bn", "batch_size", "seed", "diverged", "train_accuracy",
    "test_accuracy"}."""
    figure, (accuracy_axis, gap_axis) = plt.subplots(1, 2, figsize=(11, 4.4))
    variants = _by([run for run in runs if not run["diverged"]], "bn")
    for (variant, variant_runs), offset in zip(variants.items(), _seed_offsets(len(variants))):
        color = variant_color(variant)
        sizes = sorted({run["batch_size"] for run in variant_runs})
        for axis, key, style in ((accuracy_axis, "train_accuracy", "--"), (accuracy_axis, "test_accuracy", "-"),
                                 (gap_axis, "gap", "-")):
            def value(run):
                return run["train_accuracy"] - run["test_accuracy"] if key == "gap" else run[key]
            means = [np.mean([value(r) for r in variant_runs if r["batch_size"] == size]) for size in sizes]
            label = f"bn={variant}" + {"train_accuracy": ", train", "test_accuracy": ", test", "gap": ""}[key]
            axis.plot(np.multiply(sizes, offset), means, style, color=color, alpha=0.8, label=label)
            axis.scatter([r["batch_size"] * offset for r in variant_runs], [value(r) for r in variant_runs],
                         color=color, s=12, zorder=3)
    accuracy_axis.set(ylabel="accuracy (inference mode)", title="train (dashed) and test (solid) accuracy")
    gap_axis.set(ylabel="train − test accuracy", title="generalization gap")
    sizes = {run["batch_size"] for run in runs}
    for axis in (accuracy_axis, gap_axis):
        axis.set(xscale="log", xlabel="batch size (log scale)")
        axis.set_xticks(sorted(sizes), [str(size) for size in sorted(sizes)])
        axis.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
        axis.grid(alpha=0.3)
        axis.legend(fontsize=7)
    figure.suptitle("Dots: seeds; lines: means over seeds. Variants are shifted slightly along x so that "
                    "their dots do not overlap", fontsize=9)
    save(figure, path)


def placement_map(summary: dict, path: Path) -> None:
    """Left: after − before per setting, with its interval (the reference's 95% CI; each map
    setting's look-adjusted CI at the look it reached). Right: BN's gain per setting (before − none
    and after − none, paired 95% CIs from MIN_RUNS pairs on). Settings without a pair yet are listed,
    not drawn."""
    rows = [("reference", summary["reference"]["placement"], "mean", "ci_low", "ci_high", summary["reference"]["gain"])]
    rows += [(name, row["placement"], "mean", "low", "high", row["gain"]) for name, row in summary["settings"].items()]
    figure, (placement, gain) = plt.subplots(1, 2, figsize=(11, 1.2 + 0.6 * len(rows)), sharey=True)
    labels = []
    for y, (name, row, mean, low, high, gains) in enumerate(rows):
        drawn = row.get(low) is not None
        labels.append(f"{name} ({row['pairs']} pairs)" if drawn else f"{name} (no interval yet)")
        if drawn:
            center = row[mean] * 100
            placement.errorbar(center, y, xerr=[[center - row[low] * 100], [row[high] * 100 - center]], fmt="o",
                               capsize=4, color="black")
        for offset, (key, variant) in enumerate((("before_vs_none", "before"), ("after_vs_none", "after"))):
            entry = gains.get(key)
            if entry and entry["pairs"] >= MIN_RUNS:  # Below: "not tested" (the table's words), so no interval.
                center = entry["mean"] * 100
                gain.errorbar(center, y + (offset - 0.5) * 0.25, fmt="o", capsize=3, color=variant_color(variant),
                              xerr=[[center - entry["ci_low"] * 100], [entry["ci_high"] * 100 - center]],
                              label=f"{variant} − none" if y == 0 else None)
    margin = summary["design"]["equivalence_margin"] * 100
    placement.axvspan(-margin, margin, color="tab:green", alpha=0.15, label=f"equivalence margin ±{margin:g}")
    placement.axvline(0, color="gray", linewidth=1)
    placement.set_yticks(range(len(rows)), labels)
    placement.set_ylim(len(rows) - 0.5, -0.5)  # Top row first, with room for its two gain bars.
    placement.set(xlabel="after − before, test accuracy points",
                  title="Before or after the activation, per setting\n(reference: 95% CI; map: look-adjusted CI)")
    placement.legend(fontsize=8, loc="lower right")
    placement.grid(alpha=0.3, axis="x")
    gain.axvline(0, color="gray", linewidth=1)
    gain.set(xlabel="variant − none, test accuracy points", title="BN's gain per setting (paired 95% CI)")
    if gain.get_legend_handles_labels()[0]:
        gain.legend(fontsize=8, loc="best")  # Rows are added per setting: let matplotlib find the empty corner.
    gain.grid(alpha=0.3, axis="x")
    save(figure, path)


def head_intervention(runs: list[dict], path: Path) -> None:
    """The SGD head: per SGD rate (panels), each variant's test accuracy per seed with the dense
    head's input scaled (filled) and without (hollow, the sweep's twin); diverged runs are
    counted at the bottom, never drawn as an accuracy. A run: {"bn",
    "learning_rate", "seed", "test_accuracy", "diverged", "scaled"}."""
    rates = sorted({run["learning_rate"] for run in runs})
    variants = list(dict.fromkeys(run["bn"] for run in runs))
    figure, axes = plt.subplots(1, len(rates), figsize=(5.5 * len(rates), 4.2), squeeze=False, sharey=True)
    for axis, rate in zip(axes[0], rates):
        for position, variant in enumerate(variants):
            for offset, scaled in ((-0.15, False), (0.15, True)):
                group = [run for run in runs if run["learning_rate"] == rate and run["bn"] == variant
                         and run["scaled"] == scaled]
                trained = [run["test_accuracy"] for run in group if not run["diverged"]]
                diverged = len(group) - len(trained)
                x = np.full(len(trained), position + offset)
                style = {"color": variant_color(variant), "s": 28}
                axis.scatter(x, trained, **(style if scaled else {**style, "facecolors": "none"}),
                             label=(f"{'scaled' if scaled else 'as is'}" if position == 0 else None))
                if diverged:  # Counted under the axis: a diverged run has no accuracy to draw.
                    axis.annotate(f"{'scaled' if scaled else 'as is'}:\n{diverged} of {len(group)}\ndiverged",
                                  (position + offset, 0.02),
                                  xycoords=("data", "axes fraction"), ha="center", fontsize=7, color="black")
        axis.set_xticks(range(len(variants)), [f"bn={variant}" for variant in variants])
        axis.set_xlim(-0.6, len(variants) - 0.4)  # Room for the outer arms' counts.
        axis.set(title=f"SGD, learning rate {rate:g}", ylabel="test accuracy", xlabel="variant")
        axis.set_ylim(axis.get_ylim()[0] - 0.02, axis.get_ylim()[1])  # Room for the counts.
        axis.grid(alpha=0.3, axis="y")
        axis.legend(fontsize=7, loc="best")
    figure.suptitle("The dense head's input scaled to one RMS in every variant (filled) or not (hollow): "
                    "one point per seed", fontsize=9)
    save(figure, path)
