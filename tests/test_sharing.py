"""Sharing results the DVC way, for real: a local-directory remote stands in for S3/SSH/NFS.

One machine runs and pushes, a fresh clone pulls and finds nothing to re-run; two machines split
the study's cells and a third collects them from the run-cache without training anything.
"""

import hashlib
import json
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor

import pytest

from conftest import Project
from test_pipeline import stages_run

pytestmark = pytest.mark.dvc


def clone(source: Project, destination) -> Project:
    subprocess.run(["git", "clone", "-q", str(source.root), str(destination)], check=True)
    return Project(destination)


def quiet(result: subprocess.CompletedProcess) -> None:
    """A command that neither failed nor complained."""
    assert result.returncode == 0, result.stdout + result.stderr
    assert "ERROR" not in result.stdout + result.stderr, result.stdout + result.stderr
    assert "WARNING" not in result.stdout + result.stderr, result.stdout + result.stderr


def add_remote(project: Project, tmp_path) -> Project:
    """`project` with a default remote in a shared folder, as the README says (not committed)."""
    project.dvc("remote", "add", "-d", "team", str(tmp_path / "remote"))
    return project


@pytest.fixture
def shared(project, tmp_path) -> Project:
    """The project with a default remote in a shared folder, committed as the README says."""
    add_remote(project, tmp_path).commit("team remote")
    return project


def test_a_fresh_clone_pulls_the_results_and_reruns_nothing(trained_project, tmp_path):
    shared = add_remote(trained_project, tmp_path)  # After `dvc repro`: the results of every stage.
    shared.commit("results and the team remote")
    shared.dvc("push", "--run-cache")

    collaborator = clone(shared, tmp_path / "collaborator")
    quiet(collaborator.dvc("pull"))
    assert "Data and pipelines are up to date" in collaborator.dvc("status", "dvc.yaml").stdout
    assert stages_run(collaborator.dvc("repro").stdout) == []
    # The study never ran on either machine: its cells are pending, and nothing errs or warns.
    quiet(collaborator.dvc("status", "grids/study/dvc.yaml"))
    quiet(collaborator.dvc("checkout"))
    # The pulled model scores exactly what the first machine measured.
    score = collaborator.run("python", "-c", (
        "import json; from stages.trainer import paths; from stages.trainer.cifar import load_split; "
        "from stages.trainer.evaluation import evaluate, load_model; "
        "m, _ = evaluate(load_model(paths.MODEL), load_split(paths.TRAIN_SPLIT), "
        "load_split(paths.TEST_SPLIT)); print(json.dumps(m))"))
    assert json.loads(score.stdout.splitlines()[-1]) == json.loads(
        (shared.root / "reports/metrics.json").read_text())

    # An experiment is applied and checked out without a word about the (absent) study.
    experiment = collaborator.dvc("exp", "run", "-S", "bn=none")
    # The params check first (bn changed), then the stages that depend on bn.
    assert stages_run(experiment.stdout) == ["check", "train", "evaluate", "report"]
    (name,) = collaborator.dvc("exp", "list", "--name-only").stdout.split()
    collaborator.run("git", "checkout", "-q", "--", ".")
    quiet(collaborator.dvc("checkout"))
    quiet(collaborator.dvc("exp", "apply", name))
    assert json.loads((collaborator.root / "reports/train/run.json").read_text())["bn"] == "none"
    quiet(collaborator.dvc("plots", "diff", "HEAD", "-o", str(tmp_path / "plots")))


def test_two_machines_split_the_study_and_a_third_only_compares(shared, tmp_path):
    shared.dvc("repro", "normalize")  # Everyone trains on the same prepared data.
    shared.commit("prepared data")
    shared.dvc("push")

    def train(machine: str, variant: str) -> tuple[Project, list[str], list[str]]:
        """One machine's share: its clone trains `variant`'s cells. The clone, the stages that
        ran, and the cells that should have."""
        worker = clone(shared, tmp_path / machine)
        worker.dvc("pull", "--with-deps", "normalize")
        cells = [f"grids/study/dvc.yaml:cell@{variant}-{seed}" for seed in (0, 1)]
        return worker, stages_run(worker.dvc("repro", *cells).stdout), cells

    # The two machines train at the same time, as two machines would (each clone has its own
    # workspace), then push to the run-cache.
    with ThreadPoolExecutor(max_workers=2) as machines:
        shares = [machines.submit(train, machine, variant) for machine, variant in (("a", "before"), ("b", "none"))]
        for share in shares:
            worker, ran, cells = share.result()
            # Each cell, after its grid's check (stages/check.py), which DVC runs first.
            assert sorted(stage for stage in ran if "@" in stage) == cells
            worker.run(sys.executable, "tools/push_run_cache.py")

    collector = clone(shared, tmp_path / "collector")
    collector.dvc("pull", "--run-cache", "--with-deps", "normalize")
    result = collector.dvc("repro", "--pull", "grids/study/dvc.yaml")
    assert [stage for stage in stages_run(result.stdout) if not stage.endswith("check")] == \
        ["grids/study/dvc.yaml:report"], result.stdout
    assert result.stdout.count("is cached - skipping run") == 4
    table = json.loads((collector.root / "reports/study/metrics.json").read_text())
    assert table["before"]["test_accuracy"]["n"] == table["none"]["test_accuracy"]["n"] == 2


def test_a_corrupted_remote_object_is_refused_on_pull(tmp_path):
    """With the remote's `verify` on (docs/sharing.md), a pull re-hashes what it downloads: one
    flipped bit in a pushed object fails the pull and leaves that output out, while an output whose
    object arrived intact is still checked out (as docs/sharing.md says)."""
    source = Project(tmp_path / "source")
    source.root.mkdir()
    source.run("git", "init", "-q")
    source.dvc("init", "-q")
    (source.root / "train.npz").write_bytes(b"the prepared training split\n" * 100)
    (source.root / "test.npz").write_bytes(b"the prepared test split\n" * 100)
    source.dvc("add", "-q", "train.npz", "test.npz")
    source.dvc("remote", "add", "-d", "team", str(tmp_path / "remote"))
    source.dvc("remote", "modify", "team", "verify", "true")
    source.commit("data and a verified remote")
    source.dvc("push", "-q")
    train_md5 = hashlib.md5((source.root / "train.npz").read_bytes()).hexdigest()
    (stored,) = [path for path in (tmp_path / "remote").rglob("*") if path.is_file()
                 and path.parent.name + path.name == train_md5]
    stored.chmod(0o644)
    content = bytearray(stored.read_bytes())
    content[10] ^= 1
    stored.write_bytes(bytes(content))

    copy = clone(source, tmp_path / "copy")
    result = copy.dvc("pull", check=False)
    assert result.returncode != 0
    assert "failed to pull" in result.stderr
    assert not (copy.root / "train.npz").exists()
    assert (copy.root / "test.npz").read_bytes() == (source.root / "test.npz").read_bytes()

