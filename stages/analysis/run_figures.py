"""The main run's figures (the `report` stage): each function takes plain data and writes one PNG.
Apart from the grids' figures (figures.py), so that editing those never re-runs the main report."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from stages.analysis.plotting import plt, save, variant_color
from stages.trainer.cifar import CLASS_NAMES

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
    figure.suptitle(f"The first {per_class} training images of each class", fontsize=10)
    save(figure, path)

def training_curves(history: dict[str, np.ndarray], path: Path, setting: str) -> None:
    """Loss and accuracy per epoch, while fitting vs on the validation split. `history` maps
    'fit/loss', 'val/accuracy' etc. to arrays (see training.EpochLog); `setting` names the run
    (variant, seed, training) in the title."""
    figure, axes = plt.subplots(1, 2, figsize=(10, 4.1))
    for axis, metric in zip(axes, ("loss", "accuracy")):
        for split, label, style in (("fit", "training (running, dropout on)", "-o"),
                                    ("val", "validation (test split)", "--s")):
            values = history[f"{split}/{metric}"]
            axis.plot(np.arange(1, len(values) + 1), values, style, label=label, markersize=4)
        axis.set(xlabel="epoch", ylabel=metric, title=f"{metric.capitalize()} per epoch")
        axis.grid(alpha=0.3)
        axis.legend()
    figure.suptitle(setting, fontsize=10)
    save(figure, path)


def confusion_matrix(actual: np.ndarray, predicted: np.ndarray, path: Path, setting: str) -> None:
    """Test images by actual and predicted class; `setting` names the run (variant, seed) in the title."""
    counts = np.zeros((len(CLASS_NAMES),) * 2, dtype=int)
    np.add.at(counts, (actual, predicted), 1)
    figure, axis = plt.subplots(figsize=(7, 6))
    image = axis.imshow(counts, cmap="Blues")
    figure.colorbar(image, ax=axis, fraction=0.046, label="test images")
    ticks = np.arange(len(CLASS_NAMES))
    axis.set(xticks=ticks, yticks=ticks, xlabel="predicted", ylabel="actual",
             title=f"Test confusion matrix, {setting}")
    axis.set_xticklabels(CLASS_NAMES, rotation=45, ha="right")
    axis.set_yticklabels(CLASS_NAMES)
    for (row, column), count in np.ndenumerate(counts):
        color = "white" if count > counts.max() / 2 else "black"
        axis.text(column, row, count, ha="center", va="center", fontsize=7, color=color)
    save(figure, path)

def per_class_accuracy(accuracy: dict[str, float], path: Path, setting: str) -> None:
    """Test accuracy per class; `setting` names the run (variant, seed) in the title."""
    figure, axis = plt.subplots(figsize=(8, 3.5))
    names = list(accuracy)
    bars = axis.bar(names, [accuracy[n] for n in names], color="tab:blue")
    axis.bar_label(bars, fmt="%.2f", fontsize=8)
    axis.set(ylim=(0, 1), xlabel="class", ylabel="test accuracy", title=f"Test accuracy per class, {setting}")
    axis.tick_params(axis="x", rotation=45)
    save(figure, path)

def landscape_bands(records: dict[str, dict[str, np.ndarray]], path: Path) -> None:
    """The paper's Figure 4: per variant, the loss range and gradient-change range as bands over
    training steps, and effective beta-smoothness. `records` maps a label to landscape columns."""
    figure, axes = plt.subplots(1, 3, figsize=(15, 4.4))
    for label, columns in records.items():
        color = variant_color(label.removeprefix("bn="))
        steps = columns["step"]
        # Faint fills with solid edges: overlapping bands stay readable, each in its own colour.
        for axis, low, high in ((axes[0], "loss_min", "loss_max"), (axes[1], "grad_change_min", "grad_change_max")):
            axis.fill_between(steps, columns[low], columns[high], alpha=0.12, color=color, linewidth=0)
            axis.plot(steps, columns[low], color=color, linewidth=0.9, label=label)
            axis.plot(steps, columns[high], color=color, linewidth=0.9)
        axes[2].plot(steps, columns["beta"], color=color, label=label)
    labels = (("loss landscape", "loss L(w − ηg), min to max over η"),
              ("gradient predictiveness", "‖∇L(w − ηg) − g‖, min to max over η"),
              ("effective β-smoothness", "max over η of ‖∇L(w − ηg) − g‖ / ‖ηg‖"))
    for axis, (title, ylabel) in zip(axes, labels):
        axis.set(xlabel="training step", ylabel=ylabel, title=title, yscale="log")
        axis.grid(alpha=0.3)
        axis.legend()
    figure.suptitle("Along the gradient g = ∇L(w) of each probed step's mini-batch, η ∈ step sizes × "
                    "learning rate. Band: the range over η at each probe (over several seeds, between "
                    "the seed-averaged min and max)", fontsize=9)
    save(figure, path)
