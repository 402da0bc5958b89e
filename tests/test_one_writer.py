"""One writer per workspace, stages that stop with DVC, grids checked before any training, and
TensorFlow's start-up notices: what several runs at once, a killed `dvc` or a hostile grid do.

Each test here failed on the code before these guards (the reason is in its docstring).
"""

from __future__ import annotations

import contextlib
import os
import resource
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import yaml

from conftest import PATIENCE_SECONDS, ROOT, easy_split, merge_sections
from stages.trainer.atomic import write_json
from stages.trainer.cifar import Split, save_split
from stages.trainer.guard import ConcurrentChangeError, Snapshot
from stages.trainer.notices import HARMLESS, filtered_stderr
from stages.trainer.params import load_params

STATISTICS = {"mode": "global", "mean": [120.0], "std": [60.0], "count": 200}


def workdir(tmp_path: Path, statistics: dict | None = STATISTICS, splits: bool = True, **sections) -> Path:
    """A folder with params.yaml (the project's, with `sections` merged in), and tiny prepared
    data (200 training, 40 test images) unless left out."""
    params = merge_sections(yaml.safe_load((ROOT / "params.yaml").read_text()),
                            {"train": {"epochs": 1, "batch_size": 50}})
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(merge_sections(params, sections), sort_keys=False))
    if splits:
        for name, count, seed in (("train", 200, 0), ("test", 40, 1)):
            labels, images = easy_split(count, seed)
            save_split(Split(images, labels.astype(np.uint8)), tmp_path / "data" / "prepared" / f"{name}.npz")
    if statistics is not None:
        write_json(tmp_path / "data" / "stats.json", statistics)
    return tmp_path


def stage(name: str, cwd: Path, *arguments: str, **options) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(ROOT), **options.pop("env", {})}
    return subprocess.Popen([sys.executable, "-m", f"stages.{name}", *arguments], cwd=cwd, env=env,
                            text=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE, **options)


def run_stage(name: str, cwd: Path, *arguments: str, **options) -> subprocess.CompletedProcess:
    process = stage(name, cwd, *arguments, **options)
    stdout, stderr = process.communicate(timeout=PATIENCE_SECONDS)
    return subprocess.CompletedProcess(process.args, process.returncode, stdout, stderr)


def wait_for(condition, process: subprocess.Popen, what: str) -> None:
    deadline = time.monotonic() + PATIENCE_SECONDS
    while not condition():
        if process.poll() is not None:
            raise AssertionError(f"exited ({process.returncode}) before {what}: {process.communicate()}")
        if time.monotonic() > deadline:
            process.kill()
            raise AssertionError(f"never {what}")
        time.sleep(0.02)


# --- one writer: params and inputs checked again before publishing -------------------------------

def test_a_snapshot_notices_a_changed_declared_param_and_a_replaced_input(tmp_path, monkeypatch):
    monkeypatch.chdir(workdir(tmp_path))
    snapshot = Snapshot(load_params(["bn", "train"]), [Path("data/prepared"), Path("data/stats.json")])
    snapshot.check()  # Nothing changed.

    params = yaml.safe_load(Path("params.yaml").read_text())
    Path("params.yaml").write_text(yaml.safe_dump({**params, "seed": 7, "study": {"seeds": [0]}}))
    snapshot.check()  # Neither is declared (nor need they be valid): this stage does not use them.

    Path("params.yaml").write_text(yaml.safe_dump({**params, "train": {**params["train"], "epochs": 11}}))
    with pytest.raises(ConcurrentChangeError, match=r"\(train.epochs: 1 -> 11\)"):
        snapshot.check()

    Path("params.yaml").write_text(yaml.safe_dump({**params, "bn": "none"}))
    with pytest.raises(ConcurrentChangeError, match=r"^params.yaml changed while this stage ran "
                                                     r"\(bn: 'before' -> 'none'\), .*nothing was "
                                                     r"published; .*`dvc queue start`"):
        snapshot.check()
    Path("params.yaml").write_text(yaml.safe_dump(params))
    snapshot.check()

    write_json("data/stats.json", STATISTICS)  # The same content, written anew (by normalize).
    with pytest.raises(ConcurrentChangeError, match=r"^data/stats.json changed while this stage ran"):
        snapshot.check()


@pytest.mark.dvc
def test_a_run_whose_params_change_under_it_publishes_nothing_and_dvc_records_nothing(project):
    """Two `dvc exp run -S bn=...` in one workspace: the second rewrites params.yaml while the
    first trains. Before: the first published its `before` model and dvc.lock recorded it as
    bn: none (and the run-cache kept that). Now it publishes nothing, and the stage stays due."""
    project.set_params(train={"epochs": 200})  # Seconds of training: time to change params.yaml.
    project.commit("long enough to change params.yaml mid-run")
    project.dvc("repro", "normalize")
    process = subprocess.Popen([sys.executable, "-m", "dvc", "repro", "train"], cwd=project.root,
                               env=project.env, text=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    reports = project.root / "reports"
    wait_for(lambda: reports.is_dir() and list(reports.glob(".train.*.partial")), process,
             "started training")
    project.set_params(bn="none")  # What the second `dvc exp run -S bn=none` did.
    _, stderr = process.communicate(timeout=PATIENCE_SECONDS)
    assert process.returncode != 0
    assert ("train: error: params.yaml changed while this stage ran (bn: 'before' -> 'none'), so its "
            "result would be recorded under params it did not use; nothing was published") in stderr
    assert not (project.root / "models" / "model.keras").exists()
    assert not {"metrics.json", "run.json", "plots"} & set(os.listdir(reports / "train"))
    assert not list(reports.glob(".train.*"))
    assert "train" not in yaml.safe_load((project.root / "dvc.lock").read_text())["stages"]
    assert "train" in project.dvc("status", "train").stdout  # Still due, not "up to date".


def test_a_train_stage_that_fails_to_save_leaves_no_metrics_behind(tmp_path):
    """A full disk (here: a file-size limit below the model's size) when saving the model.
    Before: reports/train/metrics.json, written while training, described the failed run."""
    cwd = workdir(tmp_path)

    def small_files() -> None:
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # So the write fails with EFBIG instead.
        resource.setrlimit(resource.RLIMIT_FSIZE, (1 << 20, resource.RLIM_INFINITY))

    result = run_stage("train", cwd, preexec_fn=small_files)
    assert result.returncode == 1, result.stderr
    assert result.stderr.splitlines()[-1].startswith("train: error: ")
    assert result.stderr.splitlines()[-1] == ("train: error: models/model.keras: File too large; the "
                                              "file system or a resource limit (ulimit -f) refuses "
                                              "a file this large")
    assert not (cwd / "models" / "model.keras").exists()
    assert sorted(os.listdir(cwd / "reports")) == []  # No metrics.json, plots or temp folder.


# --- SIGTERM and a dying parent -------------------------------------------------------------------

def test_sigterm_stops_a_cell_like_ctrl_c(tmp_path):
    """Before: the cell died at once and left its /tmp/bnlab-cell-* folder behind."""
    cwd = workdir(tmp_path, train={"epochs": 200}, study={"variants": ["before"], "seeds": [0, 1]})
    scratch = tmp_path / "tmp"
    scratch.mkdir()
    process = stage("cell", cwd, "--grid", "study", "--bn", "before", "--seed", "0", "--no-probes",
                    "--record", "runs/before-0.json", env={"TMPDIR": str(scratch)})
    wait_for(lambda: list(scratch.glob("bnlab-cell-*/metrics.json")), process, "finished an epoch")
    process.send_signal(signal.SIGTERM)
    _, stderr = process.communicate(timeout=PATIENCE_SECONDS)
    assert process.returncode == 128 + signal.SIGTERM
    assert stderr.splitlines()[-1] == ("cell: stopped (SIGTERM, or the process that started it "
                                       "died); outputs are only replaced once complete, so run it "
                                       "again to finish; if DVC ran it, DVC had removed its committed "
                                       "outputs first: `git checkout -- reports/` puts back committed records "
                                       "and reports, `dvc checkout` the model and data")
    assert "Traceback" not in stderr
    assert os.listdir(scratch) == []
    assert not (cwd / "runs").exists()


def test_a_stage_stops_when_the_process_that_started_it_dies(tmp_path):
    """A stand-in for `dvc` (a Python process) starts a cell and is killed with SIGKILL.
    Before: the cell ran on, re-parented, and would have published its record."""
    cwd = workdir(tmp_path, train={"epochs": 200}, study={"variants": ["before"], "seeds": [0, 1]})
    scratch = tmp_path / "tmp"
    scratch.mkdir()
    parent = subprocess.Popen(
        [sys.executable, "-c", "import subprocess, sys, time; child = subprocess.Popen(sys.argv[1:]); "
         "print(child.pid, flush=True); time.sleep(3600)",
         sys.executable, "-m", "stages.cell", "--grid", "study", "--bn", "before", "--seed", "0",
         "--no-probes", "--record", "runs/before-0.json"],
        cwd=cwd, env={**os.environ, "PYTHONPATH": str(ROOT), "TMPDIR": str(scratch)},
        text=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    child = int(parent.stdout.readline())
    handle = os.pidfd_open(child)  # Signals through it reach this process, never a reused pid.
    try:
        wait_for(lambda: list(scratch.glob("bnlab-cell-*/metrics.json")), parent, "finished an epoch")
        parent.kill()
        parent.wait(timeout=PATIENCE_SECONDS)
        deadline = time.monotonic() + PATIENCE_SECONDS
        while _state(child) != "Z" and time.monotonic() < deadline:
            time.sleep(0.05)
        assert _state(child) == "Z", "the cell outlived its parent"
    finally:
        with contextlib.suppress(ProcessLookupError):
            signal.pidfd_send_signal(handle, signal.SIGKILL)
        os.close(handle)
    assert os.listdir(scratch) == []
    assert not (cwd / "runs").exists()


def _state(pid: int) -> str:
    """The process's state letter; "Z" (a zombie: done) also when it is gone altogether."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError):
        return "Z"


# --- grids: a cell checks it is one point of its grid, before any data is read -------------------

THROUGH = "cells run through DVC: `dvc repro grids/{}/dvc.yaml`"


@pytest.mark.parametrize("sections, arguments, message", [
    ({"placement": {"seeds": list(range(5, 605))}},
     ("--grid", "placement", "--bn", "before", "--seed", "5", "--no-probes"),
     "params.yaml: the placement grid has 1,200 cells; at most 1,000 are allowed (each trains for "
     "minutes): list fewer seeds or values in placement"),
    ({}, ("--grid", "study", "--bn", "before", "--seed", "99"),
     "this cell (before, 99) is not in the study grid: study.seeds lists [0, 1, 2, 3, 4]; " + THROUGH.format("study")),
    ({}, ("--grid", "sweep", "--bn", "after", "--seed", "0", "--optimizer", "sgd", "--learning-rate", "0.1"),
     "this cell (after, 0, 0.1) is not in the sweep grid: sweep.sgd.variants lists ['before', 'none', "
     "'rescaled']; " + THROUGH.format("sweep")),
    ({}, ("--grid", "sweep", "--bn", "before", "--seed", "0", "--optimizer", "sgd"),
     "a sweep cell needs --learning-rate (its point of the grid), which sweep.sgd.learning_rates lists; "
     + THROUGH.format("sweep")),
    ({}, ("--grid", "study", "--bn", "before", "--seed", "0", "--learning-rate", "0.01"),
     "--learning-rate is not a setting of the study grid (study lists no learning_rates or learning_rate); "
     + THROUGH.format("study")),
    ({"batch": {"batch_sizes": [100]}},
     ("--grid", "batch", "--bn", "before", "--seed", "0", "--batch-size", "100", "--optimizer", "sgd"),
     "--optimizer is not a setting of the batch grid (batch lists no optimizers or optimizer); "
     + THROUGH.format("batch")),
    ({"batch": {"batch_sizes": [100]}}, ("--grid", "batch", "--bn", "before", "--seed", "0", "--batch-size", "250"),
     "this cell (before, 0, 250) is not in the batch grid: batch.batch_sizes lists [100]; " + THROUGH.format("batch")),
])
def test_a_cell_refuses_a_bad_grid_before_reading_any_data(tmp_path, sections, arguments, message):
    """No data in the folder: a cell that got past its checks would fail on the missing data.
    Before: the oversized grid trained for minutes, per cell."""
    cwd = workdir(tmp_path, statistics=None, splits=False, **sections)
    result = run_stage("cell", cwd, *arguments, "--record", "runs/x.json")
    assert result.returncode == 1
    assert result.stderr == f"cell: error: {message}\n"


# The rules that span sections (a rate or seed another grid already trains) are the grid's check
# stage's, which every cell depends on (stages/check.py): DVC runs it before any cell.
@pytest.mark.parametrize("sections, grid, message", [
    ({"sweep": {"adam": {"variants": ["before"], "learning_rates": [0.001, 0.01]}}}, "sweep",
     "params.yaml: sweep.adam.learning_rates lists 0.001, the study's own rate (train.learning_rate): "
     "the study's cells cover it; remove it from the sweep"),
    ({"placement": {"seeds": [4, 5]}}, "placement",
     "params.yaml: placement.seeds repeats study seed 4; the study already ran that cell, so remove "
     "it from placement.seeds"),
    ({"batch": {"batch_sizes": [50, 100]}}, "batch",
     "params.yaml: batch.batch_sizes lists 50, the study's own batch size (train.batch_size): the "
     "study's cells cover it; remove it from batch.batch_sizes"),
    ({"study": {"seeds": [0]}}, "study",
     "params.yaml: study.seeds = [0] is not allowed; expected a list of at least 2 entries"),
])
def test_a_grids_check_refuses_what_spans_sections(tmp_path, sections, grid, message):
    cwd = workdir(tmp_path, statistics=None, splits=False, **sections)
    result = run_stage("check", cwd, "--grid", grid)
    assert result.returncode == 1
    assert result.stderr == (f"check: error: {message}; nothing was run or removed; fix params.yaml, or put "
                             "back the committed one with `git checkout params.yaml`\n")
    assert not (cwd / "grids").exists()  # No marker: the cells stay blocked.


@pytest.mark.dvc
def test_grid_values_reach_no_shell_even_under_single_item(project):
    """A seed that is a string with a shell command in it, and `dvc repro --single-item`, which
    skips the grid's check stage. Before: DVC's command line ran it (quoting stopped only values
    without a quote). Now each cell's first command is the check, which holds no value."""
    project.set_params(study={"variants": ["before"], "seeds": ["1 --record x; touch PWNED #"]})
    project.commit("a hostile seed")
    for path in ("data/prepared/train.npz", "data/stats.json"):  # DVC checks that deps exist.
        (project.root / path).parent.mkdir(parents=True, exist_ok=True)
        (project.root / path).write_text("never read")
    result = project.dvc("repro", "--single-item", "grids/study/dvc.yaml:cell", check=False)
    assert result.returncode != 0
    assert not (project.root / "PWNED").exists() and not (project.root / "x").exists()
    assert ("check: error: params.yaml: study.seeds[0] = '1 --record x; touch PWNED #' holds ' ', which a shell "
            "acts on") in result.stderr, result.stderr


@pytest.mark.parametrize("command", ["train", "cell"])
def test_steps_per_execution_is_checked_before_the_data_is_read(tmp_path, command):
    """Before: refused only after loading the data (46 s and 933 MB on CIFAR-10)."""
    cwd = workdir(tmp_path, statistics={**STATISTICS, "count": 50_000}, splits=False,
                  train={"epochs": 1, "batch_size": 250, "steps_per_execution": 3},
                  study={"variants": ["before"], "seeds": [0, 1]})
    arguments = ("--grid", "study", "--bn", "before", "--seed", "0", "--no-probes",
                 "--record", "x.json") if command == "cell" else ()
    result = run_stage(command, cwd, *arguments)
    assert result.returncode == 1
    assert result.stderr == (f"{command}: error: params.yaml: train.steps_per_execution = 3 does not "
                             "divide the 200 steps per epoch; choose one of 1, 2, 4, 5, 8, 10, 20, "
                             "25, 40, 50, 100, 200\n")


# --- TensorFlow's start-up notices ------------------------------------------------------------------

@pytest.mark.skipif(os.path.exists("/dev/nvidiactl"), reason="filtered only without an NVIDIA driver")
def test_tensorflow_starts_without_notices_on_a_machine_without_a_gpu(tmp_path):
    """Before: every stage printed five lines twice, one of them `failed call to cuInit`."""
    script = ("import stages.trainer, keras, tensorflow as tf; tf.config.list_physical_devices('GPU'); "
              "import sys; print('our own line', file=sys.stderr)")
    env = {key: value for key, value in os.environ.items() if not key.startswith("TF_CPP")}
    result = subprocess.run([sys.executable, "-c", script], cwd=tmp_path, text=True,
                            capture_output=True, env={**env, "PYTHONPATH": str(ROOT)},
                            timeout=PATIENCE_SECONDS)
    assert result.returncode == 0, result.stderr
    assert "our own line\n" in result.stderr
    assert not [line for line in result.stderr.splitlines() if HARMLESS.search(line.encode())]


def test_what_a_crash_prints_during_the_filtered_import_still_shows():
    """The filter is a process of its own: a crash (here an abort) loses none of its lines."""
    script = ("import os; from stages.trainer.notices import filtered_stderr\n"
              "with filtered_stderr():\n"
              "    os.write(2, b'fatal: this CPU lacks an instruction\\n'); os.abort()")
    result = subprocess.run([sys.executable, "-c", script], text=True, capture_output=True,
                            env={**os.environ, "PYTHONPATH": str(ROOT)}, timeout=PATIENCE_SECONDS)
    assert result.returncode == -signal.SIGABRT
    assert "fatal: this CPU lacks an instruction" in result.stderr


def test_only_the_known_notices_are_filtered(capfd):
    notices = [b"WARNING: All log messages before absl::InitializeLog() is called are written to STDERR",
               b"I0000 00:00:1796122341.776637   18364 cudart_stub.cc:31] Could not find cuda drivers "
               b"on your machine, GPU will not be used.",
               b"I0000 00:00:1796122341.772503   18364 port.cc:153] oneDNN custom operations are on. "
               b"You may see slightly different numerical results",
               b"E0000 00:00:1796122357.180393   18382 cuda_platform.cc:52] failed call to cuInit: "
               b"INTERNAL: CUDA error: Failed call to cuInit: UNKNOWN ERROR (303)"]
    assert all(HARMLESS.search(notice) for notice in notices)
    others = [b"E0000 cuda_platform.cc:52] failed call to cuInit: CUDA_ERROR_OUT_OF_MEMORY (2)",
              b"W0000 some_kernel.cc:1] a real warning"]
    with filtered_stderr():
        for line in notices + others:
            os.write(2, line + b"\n")
    assert capfd.readouterr().err == "".join(line.decode() + "\n" for line in others)
