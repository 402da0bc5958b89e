"""Inference-mode scores of a trained model: what `evaluate` reports."""

from __future__ import annotations

import keras
import numpy as np

from stages.trainer.batch_norm import FusedBatchNormalization
from stages.trainer.cifar import CLASS_NAMES, Split
from stages.trainer.pooling import PairwiseMaxPooling2D

BATCH_SIZE = 1000  # Inference only: any size gives the same numbers; larger is faster.


def load_model(path) -> keras.Model:
    """A model that `train` saved, with bnlab's own layers (fused BatchNorm, pairwise pooling)."""
    return keras.models.load_model(path, custom_objects={
        "FusedBatchNormalization": FusedBatchNormalization, "PairwiseMaxPooling2D": PairwiseMaxPooling2D})


def evaluate(model: keras.Model, train: Split, test: Split) -> tuple[dict, np.ndarray]:
    """Loss and accuracy on both splits, per-class test accuracy; and the test predictions."""
    metrics = {}
    for name, split in (("train", train), ("test", test)):
        probabilities = model.predict(split.images, batch_size=BATCH_SIZE, verbose=0)
        metrics[name] = split_scores(split.labels, probabilities)
        if name == "test":
            predicted = probabilities.argmax(axis=1)
    correct = predicted == test.labels
    metrics["test"]["per_class_accuracy"] = {
        name: round(float(correct[test.labels == label].mean()), 6)
        for label, name in enumerate(CLASS_NAMES) if np.any(test.labels == label)
    }
    return metrics, predicted


def split_scores(labels: np.ndarray, probabilities: np.ndarray) -> dict:
    # Mean cross-entropy in float64, clipped as Keras clips, so it matches model.evaluate.
    picked = probabilities[np.arange(len(labels)), labels].astype(np.float64)
    loss = float(-np.log(np.clip(picked, keras.backend.epsilon(), 1.0)).mean())
    accuracy = float((probabilities.argmax(axis=1) == labels).mean())
    return {"loss": round(loss, 6), "accuracy": round(accuracy, 6)}


def predictions_csv(labels: np.ndarray, predicted: np.ndarray) -> str:
    rows = ["actual,predicted"]
    rows += [f"{CLASS_NAMES[a]},{CLASS_NAMES[p]}" for a, p in zip(labels, predicted)]
    return "\n".join(rows) + "\n"
