"""tools/runs.py: the comparison table, on rows as `dvc.api.exp_show` returns them."""

import re
import runpy
import socket
import subprocess
import sys
from pathlib import Path

import dvc.api
import pytest

RUNS = Path(__file__).resolve().parents[1] / "tools" / "runs.py"


def test_runs_table_fits_80_columns_and_shows_what_dvc_has(monkeypatch, capsys):
    rows = [
        {"Experiment": None, "rev": "workspace", "typ": "baseline", "bn": "before", "seed": 0.0,
         "train.precision": "float32", "test.accuracy": "!", "test.loss": "!"},  # Not run yet.
        {"Experiment": "a-rather-long-experiment-name-here", "rev": "1a2b3c4", "typ": "branch_commit",
         "bn": "after", "seed": 3.0, "train.precision": "mixed_bfloat16", "test.accuracy": 0.76321,
         "test.loss": 0.68061},
    ]
    monkeypatch.setattr(dvc.api, "exp_show", lambda: rows)
    runpy.run_path(str(RUNS), run_name="__main__")
    lines = capsys.readouterr().out.splitlines()
    assert max(len(line) for line in lines) <= 80
    assert lines[1].split() == ["workspace", "before", "0", "float32", "!", "!"]
    assert lines[2].split() == ["a-rather-long-experiment", "after", "3", "mixed_bfloat16",
                                "0.7632", "0.6806"]


def test_runs_table_columns_align_for_every_variant(monkeypatch, capsys):
    rows = [{"Experiment": f"exp-{bn}", "rev": "abc1234", "typ": "branch_commit", "bn": bn, "seed": 1.0,
             "train.precision": "float32", "test.accuracy": 0.7, "test.loss": 0.8}
            for bn in ("before", "after", "none", "rescaled")]
    monkeypatch.setattr(dvc.api, "exp_show", lambda: rows)
    runpy.run_path(str(RUNS), run_name="__main__")
    lines = capsys.readouterr().out.splitlines()
    # Every cell is padded to its column's width, so aligned columns make lines of one length.
    assert len({len(line) for line in lines}) == 1, lines


def test_runs_outside_a_project_is_one_line(monkeypatch):
    from dvc.scm import SCMError

    def outside():
        raise SCMError("SCM error")

    monkeypatch.setattr(dvc.api, "exp_show", outside)
    with pytest.raises(SystemExit) as caught:
        runpy.run_path(str(RUNS), run_name="__main__")
    assert str(caught.value) == "runs: no DVC experiments here (SCM error); run it inside the bnlab project"


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
