"""Shared test helpers: tiny CIFAR-format archives, and a throwaway copy of the project for DVC runs.

No test touches the network or ../shared: every archive here is built from known bytes.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import keras
import numpy as np
import pytest
import yaml

from stages.archive.writer import encode_records, write_archive, write_members
from stages.trainer.cifar import Split

ROOT = Path(__file__).resolve().parents[1]
RECORDS_PER_FILE = 40  # 200 training and 40 test images: enough to train for a step in seconds.
# The suite runs under TensorFlow; tests/test_backends.py reruns the backend-neutral files under JAX.
BACKEND = keras.backend.backend()
tensorflow_only = pytest.mark.skipif(BACKEND != "tensorflow", reason="TensorFlow-specific")
# How long a test waits for a subprocess to finish, or for an event, before calling it hung. Tests
# wait on the event itself (a process's exit, a file appearing), so a working run ends long before
# this; the bound is generous because a machine shared with a training can take tens of seconds
# to start Python and TensorFlow.
PATIENCE_SECONDS = 600


class PytestSession:
    """Another pytest session in a fresh process, over `arguments` with `env` (another Keras
    backend, other CPU kernels), whose result a test checks. Such a test is marked `session`: it
    runs first, so that with several workers (pyproject.toml's `-n`) the minutes it takes, most
    of them one process compiling, pass beside the rest of the suite instead of after it."""

    def __init__(self, arguments: list[str], env: dict) -> None:
        self.arguments, self.env = arguments, env

    def run(self) -> subprocess.CompletedProcess:
        # Its own scratch folder: the session's tmp_path base (so that it never cleans up the
        # outer session's), and JAX's compilation cache (so that the programs its tests compile
        # alike, the same model's training step above all, are compiled once). One process
        # (`-n 0`): it is one of the outer run's workers' tests already.
        with tempfile.TemporaryDirectory(prefix="bnlab-session-") as scratch:
            env = {**self.env, "JAX_COMPILATION_CACHE_DIR": str(Path(scratch) / "jax-cache"),
                   "JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS": "0",
                   "JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES": "0"}
            command = [sys.executable, "-m", "pytest", "-n", "0", "-p", "no:cacheprovider",
                       f"--basetemp={Path(scratch) / 'tmp'}", *self.arguments]
            return subprocess.run(command, cwd=ROOT, env=env, text=True, capture_output=True,
                                  timeout=SESSION_PATIENCE_SECONDS)


# A whole session: bounded like any wait in the suite, if far more loosely.
SESSION_PATIENCE_SECONDS = 3 * PATIENCE_SECONDS


@pytest.hookimpl(tryfirst=True)  # Before xdist's own, which reads the groups set here.
def pytest_collection_modifyitems(session, config, items):
    """Longest first, so that no worker is left with a long test at the end: the whole-session
    reruns, then the tests that share one session's trained project (each such group on one
    worker, which builds that project once: pyproject.toml's `--dist loadgroup`), then the rest.
    The sort is stable: within each kind, the collection order."""
    def kind(item: pytest.Item) -> int:
        if item.get_closest_marker("session"):
            return 0
        for order, fixture in enumerate(SHARED_PROJECTS, start=1):
            if fixture in item.fixturenames:
                item.add_marker(pytest.mark.xdist_group(fixture))
                return order
        return len(SHARED_PROJECTS) + 1
    items.sort(key=kind)


def output_and_input_gradient(function, inputs: np.ndarray, loss_weights: np.ndarray):
    """function(inputs) and the gradient of sum(function(inputs) * loss_weights) with respect to
    `inputs`, as NumPy arrays, with the current backend's own differentiation."""
    if BACKEND == "jax":
        import jax

        outputs, pullback = jax.vjp(function, inputs)
        return np.asarray(outputs), np.asarray(pullback(loss_weights)[0])
    if BACKEND == "torch":
        import torch

        tensor = torch.tensor(inputs, requires_grad=True)
        outputs = function(tensor)
        outputs.backward(torch.tensor(loss_weights))
        return outputs.detach().numpy(), tensor.grad.numpy()
    import tensorflow as tf

    tensor = tf.constant(inputs)
    with tf.GradientTape() as tape:
        tape.watch(tensor)
        outputs = function(tensor)
    return outputs.numpy(), tape.gradient(outputs, tensor, output_gradients=tf.constant(loss_weights)).numpy()


def records(labels: np.ndarray, images: np.ndarray) -> bytes:
    return encode_records(Split(images, labels.astype(np.uint8)))


def easy_split(count: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Images whose class is easy to tell: class c is bright in a band at row 3c, plus noise."""
    generator = np.random.default_rng(seed)
    labels = np.arange(count) % 10
    images = generator.integers(0, 60, size=(count, 32, 32, 3), dtype=np.uint8)
    for index, label in enumerate(labels):
        images[index, 3 * label:3 * label + 3, :, label % 3] = 250
    return labels, images


def build_archive(path: Path, records_per_file: int = RECORDS_PER_FILE, seed: int = 0,
                  members: dict[str, bytes] | None = None) -> str:
    """Write a well-formed tiny CIFAR-10 archive (or `members` verbatim); return its md5."""
    if members is None:
        parts = [Split(images, labels.astype(np.uint8)) for labels, images in
                 (easy_split(records_per_file, seed + offset) for offset in range(6))]
        write_archive(path, parts[:5], parts[5])
    else:
        write_members(path, members)
    return hashlib.md5(Path(path).read_bytes()).hexdigest()


@pytest.fixture
def tiny_archive(tmp_path) -> tuple[Path, str]:
    path = tmp_path / "cifar-10-binary.tar.gz"
    return path, build_archive(path)


def merge_sections(params: dict, sections: dict) -> dict:
    """`params` with each of `sections` merged in: a dict updates that section, a value replaces it."""
    for key, value in sections.items():
        if isinstance(value, dict):
            params.setdefault(key, {}).update(value)
        else:
            params[key] = value
    return params


class Project:
    """A copy of the tracked project in its own git repository, with params for tiny data."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.first_repro: str | None = None  # A trained_project's: what its first `dvc repro` printed.
        bin_dir = str(Path(sys.executable).parent)  # So dvc's `python -m stages.X` is this venv.
        self.env = {**os.environ, "PATH": bin_dir + os.pathsep + os.environ["PATH"],
                    "DVC_NO_ANALYTICS": "1", "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@t",
                    "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@t"}

    def run(self, *command: str, check: bool = True) -> subprocess.CompletedProcess:
        result = subprocess.run(command, cwd=self.root, env=self.env, text=True, capture_output=True)
        if check and result.returncode != 0:
            raise AssertionError(f"{' '.join(command)} failed ({result.returncode}):\n"
                                 f"{result.stdout}\n{result.stderr}")
        return result

    def dvc(self, *arguments: str, check: bool = True) -> subprocess.CompletedProcess:
        return self.run(sys.executable, "-m", "dvc", *arguments, check=check)

    def set_params(self, **sections) -> None:
        # In one rename, as an editor saves: a stage reading it meanwhile sees old or new.
        path = self.root / "params.yaml"
        text = yaml.safe_dump(merge_sections(yaml.safe_load(path.read_text()), sections), sort_keys=False)
        temp = path.with_name(".params.yaml.tmp")
        temp.write_text(text)
        os.replace(temp, path)

    def commit(self, message: str) -> None:
        self.run("git", "add", "-A")
        self.run("git", "commit", "-q", "-m", message)


# The tiny project's net and probe: two blocks of few filters, a small head, two step sizes. The
# DVC tests check the pipeline (which stages run, what they write and refuse), not the net, which
# tests/test_model.py and tests/test_training.py check as committed; most of a trained stage's
# time is TensorFlow tracing the net and, in a probed cell, the probe's passes over it (one per
# step size and along the update), so this makes each trained stage of the suite about a fifth
# cheaper.
TINY_MODEL = {"filters": [8, 16], "dense_units": 32}
TINY_MODEL_LAYERS = ("conv1", "bn1", "conv2", "bn2", "dense", "probabilities")  # Its layers with weights.
TINY_STEP_SIZES = [0.5, 2.0]


def new_project(root: Path, archive: Path, md5: str) -> Project:
    """The project (tracked files only) in a fresh git repo at `root`, set up for a 1-epoch run on
    the tiny `archive`."""
    tracked = subprocess.run(["git", "ls-files", "-co", "--exclude-standard"], cwd=ROOT, text=True,
                             capture_output=True, check=True).stdout.split()
    for name in tracked:
        source = ROOT / name
        # Outputs and lock files stay behind (their folders' .gitignore files come along): the
        # copy is a fresh clone of a project that has not run yet.
        outputs = name.startswith(("reports/", "data/", "models/")) and not name.endswith(".gitignore")
        if source.is_file() and not outputs and not name.endswith("dvc.lock"):
            (root / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, root / name)
    project = Project(root)
    project.run("git", "init", "-q")
    project.set_params(data={"url": str(archive), "md5": md5},
                       normalize={"records_per_file": RECORDS_PER_FILE},
                       model=TINY_MODEL,
                       train={"epochs": 1, "batch_size": 50},
                       landscape={"every_steps": 2, "step_sizes": TINY_STEP_SIZES},
                       study={"variants": ["before", "none"], "seeds": [0, 1]},
                       batch={"batch_sizes": [25], "variants": ["before", "none"], "seeds": [0]})
    project.commit("project copy")
    return project


@pytest.fixture
def project(tmp_path, tiny_archive) -> Project:
    """The project (tracked files only) in a fresh git repo, set up for a 1-epoch run on tiny data."""
    return new_project(tmp_path / "project", *tiny_archive)


def copy_of(source: Project, first_repro: str, root: Path) -> Project:
    """A copy of its own of a session's prepared project (git history and DVC cache included)."""
    shutil.copytree(source.root, root, symlinks=True)
    project = Project(root)
    project.first_repro = first_repro
    return project


@pytest.fixture(scope="session")
def trained(tmp_path_factory) -> tuple[Project, str]:
    """A `project` in which `dvc repro` has run the main pipeline, and what that run printed: built
    once for the tests that start from trained results, which each take a copy (trained_project)."""
    folder = tmp_path_factory.mktemp("trained")
    archive = folder / "cifar-10-binary.tar.gz"
    project = new_project(folder / "project", archive, build_archive(archive))
    return project, project.dvc("repro").stdout


# The session-scoped projects tests copy, largest first (see pytest_collection_modifyitems).
SHARED_PROJECTS = ("studied_project", "trained_project")


@pytest.fixture
def trained_project(trained, tmp_path) -> Project:
    """A copy of its own of the `trained` project: `project` after its first `dvc repro`, the
    results not yet committed. `first_repro` is what that `dvc repro` printed."""
    return copy_of(*trained, tmp_path / "project")


# The study as the grid tests need it: the variants the other grids compare with it (placement's
# after, the batch grid's and the sweep's before and none), two seeds each.
TINY_STUDY = {"variants": ["before", "after", "none"], "seeds": [0, 1]}


@pytest.fixture(scope="session")
def studied(tmp_path_factory) -> tuple[Project, str]:
    """A `project` in which `dvc repro grids/study/dvc.yaml` has trained the study's cells
    (TINY_STUDY), committed, and what that run printed. The grids that read the study's records
    (sweep, batch, placement) start from a copy (studied_project) instead of each training the
    same six cells again; tests/test_dvc_graph.py checks that a fresh clone trains them first."""
    folder = tmp_path_factory.mktemp("studied")
    archive = folder / "cifar-10-binary.tar.gz"
    project = new_project(folder / "project", archive, build_archive(archive))
    project.set_params(study=TINY_STUDY)
    output = project.dvc("repro", "grids/study/dvc.yaml").stdout
    project.commit("the study's cells")
    return project, output


@pytest.fixture
def studied_project(studied, tmp_path) -> Project:
    """A copy of its own of the `studied` project; `first_repro` is what its study run printed."""
    return copy_of(*studied, tmp_path / "project")
