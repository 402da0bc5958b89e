"""The speed benchmark's two trainers still run on tiny data, and its reference net has bnlab's parameters.
The GPU benchmark runs a tiny epoch on every installed backend with only what bench/gpu_speed.sh provides."""

from __future__ import annotations

import importlib.util
import os
import re
import subprocess
import sys

import numpy as np

from conftest import ROOT, easy_split
from stages.trainer.cifar import Split
from stages.trainer.model import build_model, non_trainable_count
from test_model import MODEL, STATISTICS

spec = importlib.util.spec_from_file_location("train_speed", ROOT / "bench" / "train_speed.py")
train_speed = importlib.util.module_from_spec(spec)
sys.modules[spec.name] = train_speed  # Its dataclasses look their module up there.
spec.loader.exec_module(train_speed)


def tiny_splits() -> tuple[Split, Split]:
    (train_labels, train_images), (test_labels, test_images) = easy_split(200, 0), easy_split(40, 1)
    return Split(train_images, train_labels.astype(np.uint8)), Split(test_images, test_labels.astype(np.uint8))


def test_reference_model_has_bnlabs_parameters():
    """The notebook's 553,850/224 are checked once, on bnlab's model (test_model.py)."""
    reference, ours = train_speed.reference_model(), build_model(MODEL, "before", STATISTICS)
    assert (reference.count_params(), non_trainable_count(reference)) == (
        ours.count_params(), non_trainable_count(ours))


def test_both_approaches_train_and_report_per_epoch_times():
    train, test = tiny_splits()
    for run in (train_speed.run_reference, train_speed.run_ours):
        result = run(train, test, 2, "float32")
        assert len(result["epoch_seconds"]) == 2 and all(s > 0 for s in result["epoch_seconds"])
        assert result["total_seconds"] >= sum(result["epoch_seconds"])
        assert result["precision"] == "float32" and 0.0 <= result["accuracy"] <= 1.0


# What a GPU machine has before bench/gpu_speed.sh runs (the list in its opening comment), as import
# names; what the script carries is read from its download list, so that dropping a wheel there
# fails here. The project's own code (stages, bench) travels as the checkout.
GPU_SPEED_SH = ROOT / "bench" / "gpu_speed.sh"
EXPECTED_ON_A_GPU_MACHINE = ("torch", "jax", "jaxlib", "numpy", "h5py", "ml_dtypes", "rich", "absl", "yaml")

# Installed as sitecustomize for the benchmark and the workers it spawns: an import that the project,
# the benchmark or a carried package makes of anything else fails as it would on that machine. The
# installed packages' own imports (JAX's scipy, TensorFlow's protobuf) are theirs and pass.
ONLY_WHAT_GPU_SPEED_SH_PROVIDES = '''
import os
import sys

AVAILABLE = set(os.environ["GPU_SPEED_AVAILABLE"].split(",")) | set(sys.stdlib_module_names)
CHECKED = set(os.environ["GPU_SPEED_CHECKED"].split(","))
# A worker runs on one backend (TensorFlow only here, where it is installed; such a machine has
# none); the driver, which only asks which ones are installed, sees them all.
BACKEND = os.environ.get("KERAS_BACKEND")
AVAILABLE |= {BACKEND} if BACKEND else {"jax", "torch", "tensorflow"}


def importer():
    frame = sys._getframe(2)
    while frame and (frame.f_code.co_filename.startswith("<frozen")
                     or frame.f_globals.get("__name__", "").startswith("importlib")):
        frame = frame.f_back
    return (frame.f_globals.get("__name__") or "?").partition(".")[0] if frame else "?"


class NotOnTheGpuMachine:
    def find_spec(self, name, path=None, target=None):
        top = name.partition(".")[0]
        if top in AVAILABLE or importer() not in CHECKED:
            return None
        with open(os.environ["GPU_SPEED_REFUSED"], "a") as refused:
            refused.write(f"{top} (imported by {importer()})\\n")
        raise ModuleNotFoundError(f"No module named {top!r} where bench/gpu_speed.sh ran", name=top)


sys.meta_path.insert(0, NotOnTheGpuMachine())
'''


def carried_imports() -> list[str]:
    """The import names of the wheels `bench/gpu_speed.sh download` fetches (ruamel.yaml -> ruamel)."""
    wheels = re.search(r"for wheel in (.*?); do", GPU_SPEED_SH.read_text(), re.S).group(1)
    return [wheel.split("==")[0].split(".")[0].replace("-", "_") for wheel in wheels.replace("\\\n", " ").split()]


def test_gpu_speed_sh_carries_what_the_project_code_needs():
    assert {"keras", "ruamel", "optree", "namex"} <= set(carried_imports())


def test_gpu_speed_runs_a_tiny_epoch_on_every_installed_backend_with_only_what_gpu_speed_sh_provides(tmp_path):
    backends = [name for name in ("jax", "torch", "tensorflow") if importlib.util.find_spec(name)]
    (tmp_path / "sitecustomize.py").write_text(ONLY_WHAT_GPU_SPEED_SH_PROVIDES)
    refused = tmp_path / "refused.txt"
    carried = carried_imports()
    environment = {key: value for key, value in os.environ.items() if key != "KERAS_BACKEND"}
    environment.update({
        "PYTHONPATH": os.pathsep.join([str(tmp_path), *filter(None, [os.environ.get("PYTHONPATH")])]),
        "GPU_SPEED_AVAILABLE": ",".join(["stages", "bench", *EXPECTED_ON_A_GPU_MACHINE, *carried]),
        "GPU_SPEED_CHECKED": ",".join(["__main__", "stages", "bench", *carried]),
        "GPU_SPEED_REFUSED": str(refused),
    })
    done = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "gpu_speed.py"), "--epochs", "2", "--train-images", "500",
         "--steps-per-execution", "1", "--backends", ",".join(backends), "--timeout", "120"],
        cwd=ROOT, env=environment, capture_output=True, text=True, timeout=300)
    refusals = refused.read_text() if refused.exists() else "none"
    assert done.returncode == 0, done.stderr[-2000:]
    rows = {line.split()[1]: line for line in done.stdout.splitlines() if line.startswith("| ") and
            line.split()[1] in backends}
    # Optional imports their packages do without (Keras' dm-tree, ruamel's C parser) are refused too.
    assert sorted(rows) == sorted(backends), f"{done.stdout}\nrefused imports: {refusals}"
    for backend, row in rows.items():
        cells = [cell.strip() for cell in row.strip("|").split("|")]
        assert not cells[5].startswith(("failed", "stopped")), f"{row}\nrefused imports: {refusals}"
        assert float(cells[5]) > 0 and cells[1] != "–", row


def test_every_planted_bug_of_the_mutation_benchmark_still_matches_the_code():
    """bench/mutations.py plants each bug by replacing an exact snippet; `--list` checks that every
    snippet is still in its file once, so that an edit to the code cannot silently retire a mutation."""
    done = subprocess.run([sys.executable, "bench/mutations.py", "--list"], cwd=ROOT, capture_output=True, text=True)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    assert len(done.stdout.splitlines()) >= 140
