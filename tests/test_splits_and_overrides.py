"""`train`, `evaluate` and the study's `cell` end to end, on tiny data built so that a wiring
mistake changes a number.

The test split is a copy of 40 training images whose labels are mostly wrong on purpose: every
4th keeps its class, the others are shifted by 5. A model trained on the training split therefore
scores about 1.0 on train and about 0.25 on test; one trained on the test split, validated or
scored on the wrong split, shows a different number. A cell's command-line settings (--bn, --seed,
--optimizer, --learning-rate, --batch-size) must give bit for bit the run that the same values in
params.yaml give.
"""

import contextlib
import json
import shutil
from pathlib import Path

import keras
import numpy as np
import pytest
import yaml

from conftest import ROOT, easy_split, merge_sections
from float32 import kernels_rtol, network_sums
from stages import cell as cell_stage
from stages import evaluate as evaluate_stage
from stages import normalize as normalize_stage
from stages import train as train_stage
from stages.trainer import paths
from stages.archive.writer import write_archive
from stages.trainer.batch_norm import FusedBatchNormalization
from stages.trainer.cifar import CLASS_NAMES, Split, load_split
from stages.trainer.params import ModelParams

# The module's trained fixtures (`base`, `overridden`, `batch_sized`) are built once per process:
# its tests share one xdist worker (pyproject.toml's `--dist loadgroup`) so that no other builds them.
pytestmark = pytest.mark.xdist_group("splits_and_overrides")

RECORDS_PER_FILE = 40
SETTINGS = {
    "model": {"filters": [8, 16], "kernel_size": 5, "activation": "relu", "dense_units": 32,
              "dropout_rate": 0.1, "bn_momentum": 0.8, "bn_epsilon": 0.01, "bn_freeze_after_steps": 200,
              "head_input_rms": 0},
    "train": {"epochs": 3, "batch_size": 25, "optimizer": "adam", "learning_rate": 0.003,
              "deterministic": True, "precision": "float32"},
    "landscape": {"enabled": False, "every_steps": 8, "step_sizes": [2.0]},  # One cheap probe per run.
}
STEPS = 3 * 8  # 3 epochs of 200 training images in batches of 25.


def write_params(folder: Path, **changes) -> None:
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    params["normalize"]["records_per_file"] = RECORDS_PER_FILE
    merge_sections(params, SETTINGS)
    (folder / "params.yaml").write_text(yaml.safe_dump(merge_sections(params, changes), sort_keys=False))


def designed_splits() -> tuple[list[Split], Split]:
    """Five training files of easy classes; a test file that copies the first, mostly mislabelled."""
    parts = []
    for part in range(5):
        labels, images = easy_split(RECORDS_PER_FILE, seed=10 + part)
        parts.append(Split(images, labels.astype(np.uint8)))
    kept = np.arange(RECORDS_PER_FILE) % 4 == 0
    test_labels = np.where(kept, parts[0].labels, (parts[0].labels + 5) % 10).astype(np.uint8)
    return parts, Split(parts[0].images.copy(), test_labels)


@pytest.fixture(scope="module")
def base(tmp_path_factory) -> Path:
    """normalize, train and evaluate with params.yaml's bn=before, seed 0 and SETTINGS."""
    folder = tmp_path_factory.mktemp("base")
    parts, test = designed_splits()
    write_archive(folder / paths.ARCHIVE, parts, test)
    write_params(folder)
    with contextlib.chdir(folder):
        normalize_stage.main([])
        train_stage.main([])
        evaluate_stage.main([])
    return folder


# The cells' and the comparison run's settings: one epoch of plain SGD.
OVERRIDDEN = {"bn": "after", "seed": 1, "optimizer": "sgd", "learning_rate": 0.0123}
COMPARISON_TRAIN = {"epochs": 1, "optimizer": "sgd", "learning_rate": 0.0123}


def copy_with_data(base: Path, name: str, **params) -> Path:
    """A folder with base's prepared data and its own params.yaml (one epoch)."""
    folder = base.parent / name
    shutil.copytree(base / "data", folder / "data")
    write_params(folder, **{"train": {"epochs": 1}, **params})
    return folder


def run_cell(folder: Path, *argv: str) -> dict:
    record = folder / "cell.json"
    with contextlib.chdir(folder):
        cell_stage.main([*argv, "--record", str(record)])
    return json.loads(record.read_text())


@pytest.fixture(scope="module")
def overridden(base) -> dict:
    """Cells whose settings come from the command line, over params.yaml's bn=before, seed 0 and
    Adam at 0.003; and `train` + `evaluate` with the same settings written in params.yaml."""
    by_params = copy_with_data(base, "params", bn="after", seed=1, train=COMPARISON_TRAIN,
                               landscape={"enabled": True})
    with contextlib.chdir(by_params):
        train_stage.main([])
        evaluate_stage.main([])
    # A sweep whose grid holds these cells (every cell checks that it is one of its grid's).
    cells = copy_with_data(base, "cells", sweep={"seeds": [0, 1],
                                                 "adam": {"variants": ["after"], "learning_rates": [0.01]},
                                                 "sgd": {"variants": ["after"], "learning_rates": [0.0123]}})
    sgd = ["--grid", "sweep", "--optimizer", "sgd", "--learning-rate", "0.0123"]
    return {"params": by_params,
            "cell": run_cell(cells, "--bn", "after", "--seed", "1", *sgd),
            "seed_0": run_cell(cells, "--bn", "after", "--seed", "0", *sgd)}


def saved_model(folder: Path) -> keras.Model:
    return keras.models.load_model(folder / paths.MODEL,
                                   custom_objects={"FusedBatchNormalization": FusedBatchNormalization})


def logged(folder: Path, name: str) -> list[float]:
    """One per-epoch curve as `train` recorded it, e.g. logged(folder, "val/accuracy")."""
    return json.loads((folder / paths.RUN_RECORD).read_text())["history"][name]


def inference_rtol(examples: int) -> float:
    """The stage and this test run the trained net in separate calls, in batches of other sizes,
    whose kernels may sum in other orders: float32 tolerance for its forward pass in inference
    and the mean over the split (tests/float32.py)."""
    return kernels_rtol(*network_sums(ModelParams(**SETTINGS["model"]), examples, batch_statistics=False))


def scores(model: keras.Model, split: Split) -> tuple[np.ndarray, float, float]:
    """Predicted classes, mean cross-entropy (probabilities clipped at 1e-7) and accuracy."""
    probabilities = np.asarray(model.predict(split.images, verbose=0), np.float64)
    picked = np.clip(probabilities[np.arange(len(split.labels)), split.labels], 1e-7, 1.0)
    predicted = probabilities.argmax(axis=1)
    return predicted, -float(np.mean(np.log(picked))), float(np.mean(predicted == split.labels))


@pytest.mark.float32
def test_the_model_learns_the_training_split_and_validation_watches_the_test_split(base):
    model = saved_model(base)
    train, test = load_split(base / paths.TRAIN_SPLIT), load_split(base / paths.TEST_SPLIT)
    _, _, train_accuracy = scores(model, train)
    test_predicted, _, test_accuracy = scores(model, test)
    # Trained on the training split: it recognizes the copied images and so gets the mislabelled
    # ones "wrong". Trained on the test split, it would score high on test instead.
    assert train_accuracy >= 0.9
    copied_from = train.labels[:RECORDS_PER_FILE]  # The test images' true classes.
    assert np.mean(test_predicted == copied_from) >= 0.9
    assert test_accuracy <= 0.35
    # Each epoch's validation is the model of that moment on the test split: the last is the saved one.
    assert len(logged(base, "val/accuracy")) == SETTINGS["train"]["epochs"]
    assert logged(base, "val/accuracy")[-1] == pytest.approx(test_accuracy, abs=1e-6)
    # Keras' own loss here: on these very confident mistakes it differs from evaluate's clipped one.
    keras_loss, _ = model.evaluate(test.images, test.labels.astype(np.int32), verbose=0)
    assert logged(base, "val/loss")[-1] == pytest.approx(keras_loss, rel=inference_rtol(len(test.labels)))


@pytest.mark.float32
def test_evaluate_scores_each_split_with_the_saved_model(base):
    model = saved_model(base)
    train, test = load_split(base / paths.TRAIN_SPLIT), load_split(base / paths.TEST_SPLIT)
    metrics = json.loads((base / paths.METRICS).read_text())
    _, train_loss, train_accuracy = scores(model, train)
    predicted, test_loss, test_accuracy = scores(model, test)
    assert metrics["train"]["accuracy"] == pytest.approx(train_accuracy, abs=1e-6)
    # The mean of -log p: each p within the forward pass's float32 tolerance, relatively, moves
    # -log p by at most that much, absolutely.
    assert metrics["train"]["loss"] == pytest.approx(train_loss, abs=inference_rtol(len(train.labels)))
    assert metrics["test"]["loss"] == pytest.approx(test_loss, abs=inference_rtol(len(test.labels)))
    assert metrics["test"]["accuracy"] == pytest.approx(test_accuracy, abs=1e-6)
    assert abs(train_accuracy - test_accuracy) > 0.5  # So scoring the wrong split shows.
    per_class = {CLASS_NAMES[c]: float(np.mean(predicted[test.labels == c] == c)) for c in range(10)}
    assert metrics["test"]["per_class_accuracy"] == pytest.approx(per_class, abs=1e-6)
    rows = (base / paths.PREDICTIONS).read_text().splitlines()
    assert rows == ["actual,predicted"] + [f"{CLASS_NAMES[a]},{CLASS_NAMES[p]}"
                                           for a, p in zip(test.labels, predicted)]


def test_training_settings_reach_the_optimizer(base, overridden):
    adam, sgd = saved_model(base).optimizer, saved_model(overridden["params"]).optimizer
    assert isinstance(adam, keras.optimizers.Adam)
    assert float(adam.learning_rate) == pytest.approx(0.003)
    # Every epoch of every batch of 25 was one optimizer step.
    assert int(adam.iterations) == STEPS
    assert isinstance(sgd, keras.optimizers.SGD) and not isinstance(sgd, keras.optimizers.Adam)
    assert float(sgd.learning_rate) == pytest.approx(0.0123)
    assert int(sgd.iterations) == 8


def test_cell_settings_act_as_the_same_params_would(overridden):
    cell, seed_0 = overridden["cell"], overridden["seed_0"]
    by_params = json.loads((overridden["params"] / paths.RUN_RECORD).read_text())
    recorded = {"bn": cell["bn"], "seed": cell["seed"], "optimizer": cell["train"]["optimizer"],
                "learning_rate": cell["train"]["learning_rate"]}
    assert recorded == OVERRIDDEN
    kinds = [type(layer).__name__ for layer in saved_model(overridden["params"]).layers]
    assert kinds[1:5] == ["Conv2D", "Activation", "FusedBatchNormalization", "PairwiseMaxPooling2D"]  # after.

    # Bit for bit the same run: the settings reached the model, its initialization, the data order
    # and the optimizer; and the cell scores its model as `evaluate` does.
    def curves(record):
        return {name: values for name, values in record["history"].items() if name != "epoch_seconds"}

    assert curves(cell) == curves(by_params)
    assert cell["landscape"] == by_params["landscape"] and cell["landscape"]["probes"] == 1
    assert cell["metrics"] == json.loads((overridden["params"] / paths.METRICS).read_text())
    # Another seed, all else equal: another run.
    assert curves(seed_0)["fit/loss"] != curves(cell)["fit/loss"]


@pytest.fixture(scope="module")
def batch_sized(base) -> dict:
    """A batch cell (--batch-size 40 over params.yaml's 25), and `train` + `evaluate` with batch
    size 40 written in params.yaml; neither probes."""
    by_params = copy_with_data(base, "batch_params", bn="after", seed=1, train={"epochs": 1, "batch_size": 40})
    with contextlib.chdir(by_params):
        train_stage.main([])
        evaluate_stage.main([])
    cells = copy_with_data(base, "batch_cells", batch={"batch_sizes": [40], "variants": ["after"], "seeds": [1]})
    return {"params": by_params,
            "cell": run_cell(cells, "--grid", "batch", "--bn", "after", "--seed", "1", "--batch-size", "40",
                             "--no-probes")}


def test_a_batch_cell_trains_as_the_same_batch_size_in_params_would(batch_sized):
    cell, by_params = batch_sized["cell"], json.loads((batch_sized["params"] / paths.RUN_RECORD).read_text())
    assert cell["train"]["batch_size"] == 40 and cell["train"]["optimizer"] == "adam"
    assert int(saved_model(batch_sized["params"]).optimizer.iterations) == 5  # 200 images / 40.
    assert {name: values for name, values in cell["history"].items() if name != "epoch_seconds"} == \
        {name: values for name, values in by_params["history"].items() if name != "epoch_seconds"}
    assert cell["metrics"] == json.loads((batch_sized["params"] / paths.METRICS).read_text())
