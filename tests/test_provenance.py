"""What a record says about its code, git state and numerics (stages/trainer/provenance.py)."""

from __future__ import annotations

import itertools
import json
import os
import subprocess
import sys

from conftest import ROOT, tensorflow_only
from stages.trainer import provenance


def git(root, *args):
    subprocess.run(["git", *args], cwd=root, check=True, capture_output=True,
                   env={**os.environ, "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@t",
                        "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@t"})


def test_git_state_says_whether_the_code_differs_and_ignores_params_edits(tmp_path):
    code = tmp_path / "stages" / "trainer" / "model.py"
    code.parent.mkdir(parents=True)
    code.write_text("x = 1\n")
    (tmp_path / "params.yaml").write_text("bn: before\n")
    git(tmp_path, "init", "-q")
    git(tmp_path, "add", "-A")
    git(tmp_path, "commit", "-q", "-m", "c")
    head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=tmp_path, capture_output=True, text=True).stdout.strip()
    (tmp_path / "params.yaml").write_text("bn: after\n")  # What `dvc exp run -S bn=after` does.
    assert provenance.git_state([code], tmp_path) == {"commit": head, "code_differs": False}
    code.write_text("x = 2\n")
    assert provenance.git_state([code], tmp_path) == {"commit": head, "code_differs": True}
    assert provenance.git_state([code], tmp_path / "stages")["commit"] == head  # Any folder inside.


def test_the_code_digest_changes_with_any_package_file_and_only_its_variant():
    before, after = provenance.code("before", "cell"), provenance.code("after", "cell")
    assert before["trainer"] == after["trainer"] and before["variant"] != after["variant"]
    files = provenance.code_files("before", "cell")
    assert ROOT / "stages/trainer/model.py" in files and ROOT / "stages/variants/before.py" in files
    assert not any("variants/after" in str(path) or "stages/analysis" in str(path) for path in files)


def test_the_code_digest_names_each_file_so_moved_code_is_other_code(tmp_path, monkeypatch):
    """The same bytes under another name (code moved between modules, a variant's module copied
    to another variant's name) are other code: the digest covers each file's path with its bytes."""
    monkeypatch.setattr(provenance, "ROOT", tmp_path)
    first, second = tmp_path / "before.py", tmp_path / "after.py"
    first.write_text("GAMMA = 1\n")
    second.write_text("GAMMA = 1\n")
    assert provenance.digest([first]) != provenance.digest([second])
    assert provenance.digest([first]) == provenance.digest([first])


FINGERPRINT = """
import json, sys
import numpy as np
from stages.trainer import backend, provenance
from stages.grids.sections import read_all
params = read_all()
statistics = {"mode": "global", "mean": [120.7], "std": [64.2]}
first = provenance.numerics_fingerprint(params.model, statistics, "float32")
again = provenance.numerics_fingerprint(params.model, statistics, "float32")
# One training step's loss from a fixed start: what a result's numbers depend on.
import dataclasses, keras
from stages.trainer.model import build_model
backend.seed_everything(0, True)
model = build_model(dataclasses.replace(params.model, dropout_rate=0.0), "before", statistics)
model.compile(optimizer=keras.optimizers.SGD(0.1), loss=keras.losses.SparseCategoricalCrossentropy())
generator = np.random.default_rng(1)
images = generator.integers(0, 256, size=(64, 32, 32, 3), dtype=np.uint8)
labels = np.arange(64) % 10
model.train_on_batch(images, labels)
loss = float(model.train_on_batch(images, labels))
print(json.dumps({"first": first, "again": again, "loss": loss.hex()}))
"""


@tensorflow_only
def test_the_numerics_fingerprint_is_stable_and_differs_where_results_differ():
    """Under three kernel choices (oneDNN's, oneDNN capped at SSE4.1, TensorFlow's own) the
    fingerprint and a training step's loss change together: equal fingerprints, equal results.
    Some of the three must differ (on the AVX2 and AVX-512 machines this project runs on, oneDNN's
    and TensorFlow's own kernels give different losses), so the fingerprint is seen to change
    where the loss does, not only to stay put where nothing changed."""
    runs = {}
    for name, settings in (("onednn", {"TF_ENABLE_ONEDNN_OPTS": "1"}),
                           ("sse41", {"TF_ENABLE_ONEDNN_OPTS": "1", "ONEDNN_MAX_CPU_ISA": "SSE41"}),
                           ("eigen", {"TF_ENABLE_ONEDNN_OPTS": "0"})):
        done = subprocess.run([sys.executable, "-c", FINGERPRINT], cwd=ROOT, capture_output=True, text=True,
                              env={**os.environ, **settings, "PYTHONPATH": str(ROOT)})
        assert done.returncode == 0, done.stderr[-2000:]
        runs[name] = json.loads(done.stdout.strip().splitlines()[-1])
        assert runs[name]["first"] == runs[name]["again"]
        assert len(runs[name]["first"]) == 17 and runs[name]["first"][8] == "-"
    for one, other in itertools.combinations(runs.values(), 2):
        assert (one["first"] == other["first"]) == (one["loss"] == other["loss"]), runs
    assert len({run["loss"] for run in runs.values()}) >= 2, runs  # Some kernels differ, and it shows.


def test_a_stage_whose_code_changed_while_it_ran_publishes_nothing(tmp_path):
    """DVC hashes a stage's code when the stage ends: an edit during training would be recorded
    as the code that trained. The stage's snapshot of its code refuses to publish then."""
    import shutil

    import pytest

    from stages.trainer.guard import ConcurrentChangeError, Snapshot
    from stages.trainer.params import load_params

    shutil.copy(ROOT / "params.yaml", tmp_path / "params.yaml")
    code = tmp_path / "model.py"
    code.write_text("x = 1\n")
    snapshot = Snapshot(load_params(("train",), tmp_path / "params.yaml"), [], code=[code])
    snapshot.check()  # Nothing changed: publishes.
    code.write_text("x = 2\n")
    with pytest.raises(ConcurrentChangeError, match=r"model.py changed while this stage ran, so the code DVC "
                                                     r"would record is not the code that trained; nothing was published"):
        snapshot.check()


def test_the_code_snapshot_compares_content_as_dvc_hashes_it(tmp_path):
    """DVC records code by content: an edit in place that keeps the file's size, inode and
    modification time is still another code; a touch that changes only the time is not."""
    import os
    import shutil

    import pytest

    from stages.trainer.guard import ConcurrentChangeError, Snapshot
    from stages.trainer.params import load_params

    shutil.copy(ROOT / "params.yaml", tmp_path / "params.yaml")
    code = tmp_path / "model.py"
    code.write_text("x = 1\n")
    status = os.stat(code)
    snapshot = Snapshot(load_params(("train",), tmp_path / "params.yaml"), [], code=[code])
    os.utime(code, ns=(status.st_atime_ns, status.st_mtime_ns + 10**9))
    snapshot.check()  # Same bytes, another time: the code DVC records is the code that ran.
    with code.open("r+") as handle:  # Same inode, same size, time put back afterwards.
        handle.write("x = 2\n")
    os.utime(code, ns=(status.st_atime_ns, status.st_mtime_ns))
    assert os.stat(code).st_ino == status.st_ino and os.stat(code).st_size == status.st_size
    with pytest.raises(ConcurrentChangeError, match=r"model.py changed while this stage ran"):
        snapshot.check()
