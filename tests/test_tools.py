"""tools/runs.py: the comparison table, read from git as `dvc exp` keeps the runs; tools/push_run_cache.py;
tools/map_cells.py's order and resume."""

import hashlib
import importlib.util
import json
import re
import runpy
import socket
import subprocess
import sys
from pathlib import Path

import pytest

RUNS = Path(__file__).resolve().parents[1] / "tools" / "runs.py"
RUNS_TOOL = runpy.run_path(str(RUNS))  # Its functions; run as a script only in a subprocess.


def test_runs_table_fits_80_columns_and_shows_what_dvc_has():
    rows = [
        {"name": "workspace", "bn": "before", "seed": 0, "train.precision": "float32",
         "test.accuracy": None, "test.loss": None},  # Not evaluated yet.
        {"name": "  a-rather-long-experiment-name-here", "bn": "after", "seed": 3,
         "train.precision": "mixed_bfloat16", "test.accuracy": 0.76321, "test.loss": 0.68061},
    ]
    lines = RUNS_TOOL["table"](rows)
    assert max(len(line) for line in lines) <= 80
    assert lines[1].split() == ["workspace", "before", "0", "float32", "-", "-"]
    assert lines[2].split() == ["a-rather-long-experiment", "after", "3", "mixed_bfloat16",
                                "0.7632", "0.6806"]


@pytest.mark.parametrize("variants", [("before", "after", "none", "rescaled", "frozen"),
                                      ("before", "a-longer-variant")], ids=["bnlab's", "a longer name"])
def test_runs_table_columns_align_for_every_variant(variants):
    rows = [{"name": f"exp-{bn}", "bn": bn, "seed": 1, "train.precision": "float32",
             "test.accuracy": 0.7, "test.loss": 0.8} for bn in variants]
    lines = RUNS_TOOL["table"](rows)
    # Every cell is padded to its column's width, so aligned columns make lines of one length.
    assert len({len(line) for line in lines}) == 1, lines


def git(root, *arguments):
    return subprocess.run(["git", "-c", "user.name=t", "-c", "user.email=t@t", *arguments], cwd=root,
                          check=True, capture_output=True, text=True).stdout.strip()


def write_run(root, bn, accuracy):
    (root / "params.yaml").write_text(f"seed: 0\nbn: {bn}\ntrain:\n  precision: float32\n")
    (root / "reports").mkdir(exist_ok=True)
    (root / "reports/metrics.json").write_text(json.dumps({"test": {"accuracy": accuracy, "loss": 0.5}}))


def test_runs_reads_the_workspace_the_commit_and_its_experiments_from_git(tmp_path):
    """Where `dvc exp` keeps an experiment: a commit under refs/exps/<baseline commit>/<name>."""
    git(tmp_path, "init", "-q", "-b", "main")
    (tmp_path / ".dvc").mkdir()
    write_run(tmp_path, "before", 0.75)
    git(tmp_path, "add", "-A")
    git(tmp_path, "commit", "-q", "-m", "baseline")
    baseline = git(tmp_path, "rev-parse", "HEAD")
    write_run(tmp_path, "after", 0.76)
    git(tmp_path, "commit", "-q", "-am", "experiment")
    git(tmp_path, "update-ref", f"refs/exps/{baseline[:2]}/{baseline[2:]}/my-experiment", "HEAD")
    git(tmp_path, "reset", "-q", "--hard", baseline)
    (tmp_path / "reports/metrics.json").unlink()  # The workspace's run, not evaluated yet.
    done = subprocess.run([sys.executable, str(RUNS)], cwd=tmp_path, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert [line.split() for line in done.stdout.splitlines()[1:]] == [
        ["workspace", "before", "0", "float32", "-", "-"],
        ["main", "before", "0", "float32", "0.7500", "0.5000"],
        ["my-experiment", "after", "0", "float32", "0.7600", "0.5000"]]


def test_runs_outside_a_project_is_one_line(tmp_path):
    done = subprocess.run([sys.executable, str(RUNS)], cwd=tmp_path, capture_output=True, text=True)
    assert done.returncode == 1 and done.stdout == ""
    assert done.stderr == ("runs: no DVC experiments here (no .dvc folder here or above); run it inside "
                           "the bnlab project\n")


def test_runs_help_prints_usage_and_runs_nothing(tmp_path):
    done = subprocess.run([sys.executable, str(RUNS), "--help"], cwd=tmp_path, capture_output=True, text=True)
    assert done.returncode == 0 and done.stderr == ""
    assert done.stdout.startswith("usage: tools/runs.py [-h]") and "80-column" in done.stdout
    assert list(tmp_path.iterdir()) == []  # Wrote nothing.


@pytest.mark.parametrize("remote, arguments, message", [
    (None, [], r"^push_run_cache: .*no remote.*; check `dvc remote list`"),
    (None, ["-r", "nowhere"], r"^push_run_cache: .*'nowhere'.*; check `dvc remote list`"),
    ("a-file", [], r"^push_run_cache: .*Not a directory.*; check `dvc remote list` and that the "
                   r"remote is reachable$"),
    ("http://127.0.0.1:{port}/store", [], r"^push_run_cache: 1 files failed to upload; check"),
], ids=["no remote", "unknown remote", "remote is a file", "unreachable remote"])
def test_push_run_cache_failures_are_one_line(tmp_path, monkeypatch, remote, arguments, message):
    subprocess.run(["git", "init", "-q"], cwd=tmp_path, check=True)
    subprocess.run([sys.executable, "-m", "dvc", "init", "-q"], cwd=tmp_path, check=True)
    if remote:  # Something to push, and a remote that cannot take it.
        (tmp_path / "tracked.txt").write_text("data")
        (tmp_path / "a-file").write_text("not a folder")
        with socket.socket() as probe:  # A port nothing listens on.
            probe.bind(("127.0.0.1", 0))
            port = probe.getsockname()[1]
        for command in (["add", "-q", "tracked.txt"], ["remote", "add", "-d", "team", remote.format(port=port)]):
            subprocess.run([sys.executable, "-m", "dvc", *command], cwd=tmp_path, check=True)
    monkeypatch.chdir(tmp_path)
    main = runpy.run_path(str(RUNS.parent / "push_run_cache.py"))["main"]
    with pytest.raises(SystemExit) as caught:
        main(arguments)
    assert re.search(message, str(caught.value), re.I), caught.value
    assert "\n" not in str(caught.value)


def test_push_run_cache_refuses_an_object_that_is_missing_or_altered_in_the_local_cache(tmp_path, monkeypatch):
    """check_objects, which push() runs before uploading anything: an object named by a run-cache
    entry must be in the local cache with the bytes its name says (DVC's own cache, real objects)."""
    from dvc.repo import Repo
    from dvc_data.hashfile.hash_info import HashInfo

    subprocess.run(["git", "init", "-q"], cwd=tmp_path, check=True)
    subprocess.run([sys.executable, "-m", "dvc", "init", "-q"], cwd=tmp_path, check=True)
    (tmp_path / "tracked.txt").write_text("data")
    subprocess.run([sys.executable, "-m", "dvc", "add", "-q", "tracked.txt"], cwd=tmp_path, check=True)
    monkeypatch.chdir(tmp_path)
    check_objects = runpy.run_path(str(RUNS.parent / "push_run_cache.py"))["check_objects"]
    value = hashlib.md5(b"data").hexdigest()
    with Repo(str(tmp_path)) as repo:
        check_objects(repo, [HashInfo("md5", value)])  # Intact: nothing refused.
        with pytest.raises(SystemExit, match=rf"^push_run_cache: the run-cache names object {'0' * 32}, which the "
                                             r"local cache lacks; .*nothing was uploaded$"):
            check_objects(repo, [HashInfo("md5", "0" * 32)])
        path = Path(repo.cache.local.oid_to_path(value))
        path.chmod(0o644)
        path.write_text("tampered")
        with pytest.raises(SystemExit, match=rf"^push_run_cache: .*{value[2:]}: its bytes hash to "
                                             rf"{hashlib.md5(b'tampered').hexdigest()}, not the {value} it is stored "
                                             r"as, so it was altered in the local cache; nothing was uploaded"):
            check_objects(repo, [HashInfo("md5", value)])


def map_cells_tool():
    """tools/map_cells.py as a module, so a test can stand in for the DVC it runs."""
    spec = importlib.util.spec_from_file_location("map_cells", RUNS.parent / "map_cells.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_map_cells_runs_seed_by_seed_pairs_together_and_resumes_from_one_dvc_status(tmp_path, monkeypatch):
    tool = map_cells_tool()
    params = tool.read_all(tool.ROOT / "params.yaml")
    _, parts = tool.map_design(params.map, params.model, params.train)
    order = tool.cells_in_order(parts, ["relu"])
    seeds = parts["relu"].seeds
    assert [name for name, _ in order[:4]] == [tool.stage("relu", bn, seed) for seed in seeds[:2]
                                               for bn in ("before", "after")]
    # Records of the first three cells exist; DVC finds the second one stale (say, its params changed).
    monkeypatch.chdir(tmp_path)
    for _, record in order[:3]:
        record.parent.mkdir(parents=True, exist_ok=True)
        record.write_text("{}")
    calls = []

    def dvc(command, **_):
        calls.append(command[3:])
        stdout = json.dumps({order[1][0]: [{"changed deps": {"params.yaml": "modified"}}]}) if command[3] == "status" else ""
        return subprocess.CompletedProcess(command, 0, stdout=stdout, stderr="")

    monkeypatch.setattr(tool.subprocess, "run", dvc)
    assert tool.main(["relu"]) == 0
    assert calls[0] == ["status", "--json", tool.PIPELINE]
    assert [call for call in calls[1:] if call[0] == "status"] == []  # One status for the whole grid.
    assert [call[1] for call in calls[1:]] == [order[1][0]] + [name for name, _ in order[3:]]


def test_map_cells_stops_with_one_line_when_dvc_status_fails_and_runs_nothing(tmp_path, monkeypatch, capsys):
    tool = map_cells_tool()
    calls = []

    def dvc(command, **_):
        calls.append(command[3])
        return subprocess.CompletedProcess(command, 255, stdout="", stderr="ERROR: unexpected error - lock busy\n")

    monkeypatch.setattr(tool.subprocess, "run", dvc)
    assert tool.main(["relu"]) == 2
    assert calls == ["status"]
    error = capsys.readouterr().err
    assert error.count("\n") == 1 and error.startswith(
        "map_cells: error: `dvc status grids/map/dvc.yaml` failed (ERROR: unexpected error - lock busy)")
