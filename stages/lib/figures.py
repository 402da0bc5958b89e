"""Matplotlib figures for the report: each function takes plain data and writes one PNG."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # Files only; no display is needed or wanted on servers and in CI.
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from stages.lib.atomic import atomic_path  # noqa: E402
from stages.lib.cifar import CLASS_NAMES  # noqa: E402


def save(figure, path: Path) -> None:
    figure.tight_layout()
    with atomic_path(path) as temp:
        figure.savefig(temp, dpi=110, format="png")
    plt.close(figure)


def sample_grid(images: np.ndarray, labels: np.ndarray, path: Path, per_class: int = 2) -> None:
    """The first `per_class` training images of every class, titled with the class name."""
    figure, axes = plt.subplots(per_class, len(CLASS_NAMES), figsize=(1.3 * len(CLASS_NAMES), 1.5 * per_class))
    axes = np.atleast_2d(axes)
    for label, name in enumerate(CLASS_NAMES):
        indices = np.flatnonzero(labels == label)[:per_class]
        for row in range(per_class):
            axis = axes[row, label]
            axis.axis("off")
            if row < len(indices):
                axis.imshow(images[indices[row]])
                axis.set_title(name, fontsize=8)
    save(figure, path)


def training_curves(history: dict[str, np.ndarray], path: Path, title: str) -> None:
    """Loss and accuracy per epoch, while fitting vs on the validation split. `history` maps
    'fit/loss', 'val/accuracy' etc. to arrays (see training.EpochLog)."""
    figure, axes = plt.subplots(1, 2, figsize=(10, 3.8))
    for axis, metric in zip(axes, ("loss", "accuracy")):
        for split, label, style in (("fit", "training (running, dropout on)", "-o"),
                                    ("val", "validation (test split)", "--s")):
            values = history[f"{split}/{metric}"]
            axis.plot(np.arange(1, len(values) + 1), values, style, label=label, markersize=4)
        axis.set(xlabel="epoch", ylabel=metric, title=f"{metric} ({title})")
        axis.grid(alpha=0.3)
        axis.legend()
    save(figure, path)


def confusion_matrix(actual: np.ndarray, predicted: np.ndarray, path: Path) -> None:
    counts = np.zeros((len(CLASS_NAMES),) * 2, dtype=int)
    np.add.at(counts, (actual, predicted), 1)
    figure, axis = plt.subplots(figsize=(7, 6))
    image = axis.imshow(counts, cmap="Blues")
    figure.colorbar(image, ax=axis, fraction=0.046)
    ticks = np.arange(len(CLASS_NAMES))
    axis.set(xticks=ticks, yticks=ticks, xlabel="predicted", ylabel="actual", title="test confusion matrix")
    axis.set_xticklabels(CLASS_NAMES, rotation=45, ha="right")
    axis.set_yticklabels(CLASS_NAMES)
    for (row, column), count in np.ndenumerate(counts):
        color = "white" if count > counts.max() / 2 else "black"
        axis.text(column, row, count, ha="center", va="center", fontsize=7, color=color)
    save(figure, path)


def per_class_accuracy(accuracy: dict[str, float], path: Path) -> None:
    figure, axis = plt.subplots(figsize=(8, 3.5))
    names = list(accuracy)
    bars = axis.bar(names, [accuracy[n] for n in names], color="tab:blue")
    axis.bar_label(bars, fmt="%.2f", fontsize=8)
    axis.set(ylim=(0, 1), ylabel="test accuracy", title="per-class test accuracy")
    axis.tick_params(axis="x", rotation=45)
    save(figure, path)


def landscape_bands(records: dict[str, dict[str, np.ndarray]], path: Path) -> None:
    """The paper's Figure 4: per variant, the loss range and gradient-change range as bands over
    training steps, and effective beta-smoothness. `records` maps a label to landscape columns."""
    figure, axes = plt.subplots(1, 3, figsize=(15, 4))
    for (label, columns), color in zip(records.items(), plt.rcParams["axes.prop_cycle"].by_key()["color"]):
        steps = columns["step"]
        axes[0].fill_between(steps, columns["loss_min"], columns["loss_max"], alpha=0.35, color=color, label=label)
        axes[1].fill_between(steps, columns["grad_change_min"], columns["grad_change_max"], alpha=0.35,
                             color=color, label=label)
        axes[2].plot(steps, columns["beta"], color=color, label=label)
    titles = ("loss landscape: L(w - eta g) over eta", "gradient predictiveness: ||grad L(w - eta g) - g||",
              "effective beta-smoothness")
    for axis, title in zip(axes, titles):
        axis.set(xlabel="training step", title=title)
        axis.grid(alpha=0.3)
        axis.legend()
    axes[0].set_yscale("log")
    axes[1].set_yscale("log")
    axes[2].set_yscale("log")
    save(figure, path)


def study_curves(histories: dict[str, list[dict[str, np.ndarray]]], path: Path) -> None:
    """Validation accuracy and loss per epoch: per variant the mean over seeds, +-1 std band."""
    figure, axes = plt.subplots(1, 2, figsize=(11, 4))
    for axis, metric in zip(axes, ("val/accuracy", "val/loss")):
        for variant, runs in histories.items():
            values = np.stack([run[metric] for run in runs])
            epochs = np.arange(1, values.shape[1] + 1)
            mean = values.mean(axis=0)
            std = values.std(axis=0, ddof=1) if len(runs) > 1 else np.zeros_like(mean)
            line, = axis.plot(epochs, mean, "-o", markersize=3, label=f"bn={variant} (n={len(runs)})")
            axis.fill_between(epochs, mean - std, mean + std, color=line.get_color(), alpha=0.2)
        axis.set(xlabel="epoch", ylabel=metric, title=f"{metric}: mean +- 1 std over seeds")
        axis.grid(alpha=0.3)
        axis.legend()
    save(figure, path)


def per_seed_points(values: dict[str, list[float]], path: Path, ylabel: str, title: str) -> None:
    """One dot per seed per variant, with the mean as a bar: spread and centre at a glance."""
    figure, axis = plt.subplots(figsize=(6, 4))
    for position, (variant, points) in enumerate(values.items()):
        jitter = np.linspace(-0.12, 0.12, len(points)) if len(points) > 1 else np.zeros(1)
        axis.scatter(position + jitter, points, zorder=3, label=f"bn={variant}")
        axis.hlines(np.mean(points), position - 0.25, position + 0.25, color="black", zorder=4)
    axis.set_xticks(range(len(values)), [f"bn={v}" for v in values])
    axis.set(ylabel=ylabel, title=title)
    axis.grid(alpha=0.3, axis="y")
    save(figure, path)
