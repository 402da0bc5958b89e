"""What `evaluate` reports, against numbers worked out by hand from a model with known outputs."""

import math

import numpy as np
import pytest

from stages.trainer.cifar import Split
from stages.trainer.evaluation import evaluate, predictions_csv, split_scores


class TableModel:
    """Stands in for a trained model: image i (its first pixel holds i) gets row i of `table`."""

    def __init__(self, table: list[list[float]]) -> None:
        self.table = np.asarray(table, dtype=np.float32)

    def predict(self, images, batch_size=None, verbose=None):
        return self.table[images[:, 0, 0, 0]]


def row(predicted: int, p_predicted: float, true: int, p_true: float) -> list[float]:
    """Probabilities over the 10 classes: `p_predicted` on the argmax, `p_true` on the label."""
    probabilities = [0.0] * 10
    probabilities[true] = p_true
    probabilities[predicted] = p_predicted
    rest = 1.0 - sum(probabilities)
    spare = [c for c in range(10) if c not in (true, predicted)]
    for c in spare:
        probabilities[c] = rest / len(spare)
    return probabilities


def split_of(labels: list[int], first_index: int) -> Split:
    images = np.zeros((len(labels), 32, 32, 3), np.uint8)
    images[:, 0, 0, 0] = np.arange(first_index, first_index + len(labels))
    return Split(images, np.asarray(labels, np.uint8))


# Train: labels 0 1 2 3, predicted 0 1 2 0 (3 of 4 right). Test: labels 1 1 2 3 3, predicted
# 1 2 2 3 0 (3 of 5 right). The probability on the true class is what the loss reads.
TRAIN_LABELS, TRAIN_PREDICTED, TRAIN_P_TRUE = [0, 1, 2, 3], [0, 1, 2, 0], [0.9, 0.8, 0.6, 0.3]
TEST_LABELS, TEST_PREDICTED, TEST_P_TRUE = [1, 1, 2, 3, 3], [1, 2, 2, 3, 0], [0.7, 0.2, 0.5, 0.4, 0.1]


def table_model() -> tuple[TableModel, Split, Split]:
    rows = []
    for labels, predicted, p_true in ((TRAIN_LABELS, TRAIN_PREDICTED, TRAIN_P_TRUE),
                                      (TEST_LABELS, TEST_PREDICTED, TEST_P_TRUE)):
        for label, guess, p in zip(labels, predicted, p_true):
            rows.append(row(guess, p if guess == label else 0.75, label, p))
    return TableModel(rows), split_of(TRAIN_LABELS, 0), split_of(TEST_LABELS, len(TRAIN_LABELS))


def test_evaluate_scores_each_split_and_per_class_recall_on_test():
    model, train, test = table_model()
    metrics, predicted = evaluate(model, train, test)
    train_loss = -(math.log(0.9) + math.log(0.8) + math.log(0.6) + math.log(0.3)) / 4
    test_loss = -(math.log(0.7) + math.log(0.2) + math.log(0.5) + math.log(0.4) + math.log(0.1)) / 5
    assert metrics["train"] == {"loss": pytest.approx(train_loss, abs=1e-6), "accuracy": 0.75}
    # Per class: of the test images of that class, the share predicted right (absent classes left out).
    assert metrics["test"] == {"loss": pytest.approx(test_loss, abs=1e-6), "accuracy": 0.6,
                               "per_class_accuracy": {"automobile": 0.5, "bird": 1.0, "cat": 0.5}}
    assert predicted.tolist() == TEST_PREDICTED


def test_loss_clips_a_zero_probability_as_keras_does():
    labels = np.array([0, 1])
    probabilities = np.zeros((2, 10), np.float32)
    probabilities[0, 0] = 1.0  # Certain and right: no loss.
    probabilities[1, 2] = 1.0  # Certain and wrong: log(0) is clipped to log(1e-7).
    scores = split_scores(labels, probabilities)
    assert scores == {"loss": pytest.approx(-math.log(1e-7) / 2, abs=1e-6), "accuracy": 0.5}


def test_predictions_file_names_actual_then_predicted_class():
    assert predictions_csv(np.array([1, 3, 9]), np.array([2, 3, 0])) == (
        "actual,predicted\nautomobile,bird\ncat,cat\ntruck,airplane\n")
