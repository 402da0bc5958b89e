"""Hostile and broken inputs: what each must produce (one line naming the file and the fix) and
what it must leave (nothing partial, nothing lost, bounded memory and time).

Archives here are assembled from raw tar headers and gzip members, so a "bomb" costs kilobytes to
build: gzip members concatenate into one stream, so a megabyte of zeros compressed once and
repeated N times decompresses to N MiB.
"""

from __future__ import annotations

import errno
import gzip
import hashlib
import io
import json
import os
import resource
import signal
import subprocess
import sys
import tarfile
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import yaml

from conftest import PATIENCE_SECONDS, RECORDS_PER_FILE, build_archive, easy_split, records
from stages.trainer.atomic import atomic_write, remove_stale_temps, temporary_folder, write_json
from stages.trainer.cifar import (CLASS_NAMES, FOLDER, META_MEMBER, README_MEMBER, RECORD_BYTES,
                              TEST_MEMBER, TRAIN_MEMBERS, Split, load_split, load_statistics,
                              read_archive, save_split)
from stages.trainer.cli import stage_main
from stages.trainer.errors import ArchiveError, InputFileError, ParamsError
from stages.analysis.records import check_model_file, read_json

ROOT = Path(__file__).resolve().parents[1]
MIB = 1 << 20
ZEROS_MIB = gzip.compress(bytes(MIB), mtime=0)  # One gzip member: 1 MiB of zeros in ~1 kB.
META = ("\n".join(CLASS_NAMES) + "\n").encode()
REBUILD = "rebuild it with `dvc repro normalize`"


# --- building archives piece by piece -----------------------------------------------------------

def header(name: str, size: int = 0, kind: bytes = tarfile.REGTYPE) -> bytes:
    info = tarfile.TarInfo(name)
    info.size, info.type = size, kind
    return info.tobuf(tarfile.GNU_FORMAT)


def member(name: str, payload: bytes) -> bytes:
    return header(name, len(payload)) + payload + bytes(-len(payload) % tarfile.BLOCKSIZE)


def valid_tar(records_per_file: int = RECORDS_PER_FILE) -> bytes:
    """A complete, well-formed tiny CIFAR-10 tar (uncompressed), end-of-archive blocks included."""
    parts = [header(FOLDER, kind=tarfile.DIRTYPE), member(META_MEMBER, META)]
    parts += [member(name, records(*easy_split(records_per_file, seed)))
              for seed, name in enumerate((*TRAIN_MEMBERS, TEST_MEMBER))]
    return b"".join(parts) + bytes(2 * tarfile.BLOCKSIZE)


def write_gzip(path: Path, *parts: bytes | int) -> Path:
    """A .tar.gz of `parts` in order: bytes are compressed as they are, an int N is N MiB of zeros."""
    with path.open("wb") as out:
        for part in parts:
            out.write(ZEROS_MIB * part if isinstance(part, int) else gzip.compress(part, mtime=0))
    return path


def refusal(path: Path, records_per_file: int = RECORDS_PER_FILE) -> str:
    with pytest.raises(ArchiveError) as caught:
        read_archive(path, records_per_file)
    return str(caught.value)


# --- archives: every member capped before it is read, whatever its name --------------------------

@pytest.mark.parametrize("name, size, message", [
    (META_MEMBER, 1 << 30, f"member '{META_MEMBER}' has 1,073,741,824 bytes; at most 4,096 are "
                           "allowed (the official one is under 100)"),
    (README_MEMBER, 3_250_000_000, f"member '{README_MEMBER}' has 3,250,000,000 bytes; at most "
                                   "65,536 are allowed (the official one is under 100)"),
    (TRAIN_MEMBERS[0], 1 << 30, f"member '{TRAIN_MEMBERS[0]}' has 1073741824 bytes; expected "
                                f"{40 * RECORD_BYTES} (40 records of {RECORD_BYTES} bytes)"),
])
def test_member_size_is_checked_before_reading(tmp_path, name, size, message):
    """Only the header is there: the refusal must come before any of the claimed bytes are read."""
    path = write_gzip(tmp_path / "a.tar.gz", header(FOLDER, kind=tarfile.DIRTYPE) + header(name, size))
    assert refusal(path) == message


@pytest.mark.parametrize("kind", [tarfile.XHDTYPE, tarfile.GNUTYPE_LONGNAME])
def test_extended_header_bomb_is_refused(tmp_path, kind):
    """tarfile reads pax headers and GNU long names whole before yielding the member: capped too."""
    path = write_gzip(tmp_path / "a.tar.gz", header("././@LongLink", 1 << 30, kind), 4)
    assert refusal(path) == (f"{path}: a tar header asks to read 1,073,741,824 bytes at once, more "
                             "than any part of a CIFAR-10 archive holds; refusing the archive")


def test_data_after_the_archive_is_bounded(tmp_path):
    """Gigabytes of zeros after the end-of-archive blocks: the drain stops at what CIFAR-10 holds."""
    path = write_gzip(tmp_path / "a.tar.gz", valid_tar(), 1024)
    limit = 6 * 40 * RECORD_BYTES + 4096 + 65_536 + MIB
    # CPU seconds, which other jobs on the machine do not add to, unlike wall time.
    start = time.process_time()
    assert refusal(path) == (f"{path}: decompresses to more than {limit:,} bytes, more than a "
                             "CIFAR-10 archive of this size holds; refusing the archive")
    assert time.process_time() - start < 5  # Inflating the 1 GiB takes several CPU seconds.


@pytest.mark.parametrize("duplicate", [TRAIN_MEMBERS[0], META_MEMBER, FOLDER])
def test_duplicate_member_is_refused(tmp_path, duplicate):
    """A second copy (different content) would silently win in tarfile: refused instead."""
    tar = valid_tar()[:-2 * tarfile.BLOCKSIZE]
    if duplicate == FOLDER:
        tar += header(FOLDER, kind=tarfile.DIRTYPE)
    else:
        tar += member(duplicate, bytes(40 * RECORD_BYTES) if duplicate != META_MEMBER else META)
    path = write_gzip(tmp_path / "a.tar.gz", tar + bytes(2 * tarfile.BLOCKSIZE))
    assert refusal(path) == f"member '{duplicate}' appears twice; refusing the archive"


def test_a_member_repeated_under_its_dot_slash_name_is_refused(tmp_path):
    tar = valid_tar()[:-2 * tarfile.BLOCKSIZE] + member(f"./{TEST_MEMBER}", bytes(40 * RECORD_BYTES))
    path = write_gzip(tmp_path / "a.tar.gz", tar + bytes(2 * tarfile.BLOCKSIZE))
    assert refusal(path) == f"member './{TEST_MEMBER}' appears twice; refusing the archive"


def test_sparse_member_is_refused(tmp_path):
    path = write_gzip(tmp_path / "a.tar.gz", header(TEST_MEMBER, 0, tarfile.GNUTYPE_SPARSE))
    assert refusal(path) == f"member '{TEST_MEMBER}' is not a regular file"


def test_quoted_values_are_shortened(tmp_path):
    """A 100,000-character member name or class list is quoted in a couple of hundred characters."""
    long_name = f"{FOLDER}/{'x' * 100_000}"
    path = write_gzip(tmp_path / "a.tar.gz", member(long_name, b"x"))
    message = refusal(path)
    assert message.startswith(f"unexpected member '{FOLDER}/xxx") and len(message) < 400

    class_names = b"\n".join([b"y" * 300] * 12)  # Within the 4 kB cap, but not CIFAR-10's names.
    tar = valid_tar()[:-2 * tarfile.BLOCKSIZE].replace(member(META_MEMBER, META), b"")
    path = write_gzip(tmp_path / "b.tar.gz", tar + member(META_MEMBER, class_names) + bytes(1024))
    message = refusal(path)
    assert message.startswith(f"member '{META_MEMBER}' lists classes ('yyy") and len(message) < 800


def run_measured(command: list[str], cwd: Path) -> tuple[subprocess.CompletedProcess, float, float]:
    """Run `command` in a fresh Python that reports its child's peak RSS (MB) and wall seconds."""
    probe = ("import resource, subprocess, sys, time; start = time.perf_counter(); "
             "result = subprocess.run(sys.argv[1:], capture_output=True, text=True); "
             "sys.stdout.write(result.stderr); "
             "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024, "
             "time.perf_counter() - start, result.returncode)")
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    result = subprocess.run([sys.executable, "-c", probe, *command], cwd=cwd, env=env, text=True,
                            capture_output=True, timeout=PATIENCE_SECONDS)
    *lines, figures = result.stdout.splitlines()
    peak_mb, seconds, returncode = figures.split()
    return (subprocess.CompletedProcess(command, int(returncode), "", "\n".join(lines) + "\n"),
            float(peak_mb), float(seconds))


@pytest.mark.parametrize("bomb", ["meta", "readme", "trailing"])
def test_normalize_on_a_bomb_fails_fast_in_bounded_memory(tmp_path, bomb):
    """The real stage with the real records_per_file (10,000): 1 GiB hidden in a 1 MB archive
    fails within seconds under 300 MB peak RSS, writes nothing, and says why in one line."""
    folder = header(FOLDER, kind=tarfile.DIRTYPE)
    archive = tmp_path / "data" / "raw" / "cifar-10-binary.tar.gz"
    archive.parent.mkdir(parents=True)
    if bomb == "meta":
        write_gzip(archive, folder + header(META_MEMBER, 1 << 30), 1024)
    elif bomb == "readme":
        write_gzip(archive, folder + header(README_MEMBER, 1 << 30), 1024)
    else:  # A valid archive of 40-record files (so records_per_file 40 here) with 1 GiB after it.
        write_gzip(archive, valid_tar(), 1024)
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    if bomb == "trailing":
        params["normalize"]["records_per_file"] = RECORDS_PER_FILE
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    assert archive.stat().st_size < 2 * MIB
    result, peak_mb, seconds = run_measured([sys.executable, "-m", "stages.normalize"], tmp_path)
    assert result.returncode == 1
    assert len(result.stderr.splitlines()) == 1 and result.stderr.startswith("normalize: error: ")
    assert peak_mb < 300 and seconds < 20, (peak_mb, seconds)
    assert sorted(os.listdir(tmp_path / "data")) == ["raw"]


# --- prepared data and statistics: validated when read -------------------------------------------

def npz_bytes(**arrays) -> bytes:
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    return buffer.getvalue()


GOOD_IMAGES = np.zeros((4, 32, 32, 3), np.uint8)
GOOD_LABELS = np.array([0, 1, 2, 9], np.uint8)
GOOD_NPZ = npz_bytes(images=GOOD_IMAGES, labels=GOOD_LABELS)
NPY = io.BytesIO()
np.save(NPY, GOOD_IMAGES)

BROKEN_SPLITS = {
    "truncated": (GOOD_NPZ[:len(GOOD_NPZ) // 2], "is truncated or corrupt (File is not a zip file)"),
    "empty file": (b"", "is truncated or corrupt (No data left in file)"),
    "random bytes": (np.random.default_rng(0).bytes(5000),
                     "is not an .npz file of plain arrays (random bytes, or pickled objects)"),
    "a single .npy": (NPY.getvalue(), "is a single .npy array, not the .npz file of images and labels"),
    "no labels": (npz_bytes(images=GOOD_IMAGES), "has no 'labels' array"),
    "label 200": (npz_bytes(images=GOOD_IMAGES, labels=np.array([0, 1, 200, 3], np.uint8)),
                  "label 200 at index 2; labels are 0-9"),
    "label -1": (npz_bytes(images=GOOD_IMAGES, labels=np.array([-1, 1, 2, 3])),
                 "label -1 at index 0; labels are 0-9"),
    "zero images": (npz_bytes(images=GOOD_IMAGES[:0], labels=GOOD_LABELS[:0]), "holds no images"),
    "float labels": (npz_bytes(images=GOOD_IMAGES, labels=GOOD_LABELS.astype(float)),
                     "labels are float64 (4,); expected 4 integers"),
    "label count": (npz_bytes(images=GOOD_IMAGES, labels=GOOD_LABELS[:3]),
                    "labels are uint8 (3,); expected 4 integers"),
    "float images": (npz_bytes(images=GOOD_IMAGES.astype(np.float32), labels=GOOD_LABELS),
                     "images are float32 (4, 32, 32, 3); expected uint8 (N, 32, 32, 3)"),
}


@pytest.mark.parametrize("content, problem", BROKEN_SPLITS.values(), ids=BROKEN_SPLITS.keys())
def test_broken_prepared_split_names_file_and_fix(tmp_path, content, problem):
    path = tmp_path / "train.npz"
    path.write_bytes(content)
    with pytest.raises(InputFileError) as caught:
        load_split(path)
    assert str(caught.value) == f"{path}: {problem}; {REBUILD}"


def test_missing_prepared_split(tmp_path):
    with pytest.raises(InputFileError, match=f"^{tmp_path}/test.npz: missing; rebuild it with "):
        load_split(tmp_path / "test.npz")


GOOD_STATISTICS = {"mode": "global", "mean": [120.7], "std": [64.1], "count": 50000}
BROKEN_STATISTICS = {
    "std 0": ({"std": [0.0]}, "std is [0.0]; expected a list of 1 (mode global), each finite and > 0"),
    "std negative": ({"std": [-64.1]},
                     "std is [-64.1]; expected a list of 1 (mode global), each finite and > 0"),
    "std NaN": ('{"mode": "global", "mean": [120.7], "std": [NaN], "count": 5}',
                "std is [nan]; expected a list of 1 (mode global), each finite and > 0"),
    "std inf": ('{"mode": "global", "mean": [120.7], "std": [Infinity], "count": 5}',
                "std is [inf]; expected a list of 1 (mode global), each finite and > 0"),
    "mean NaN": ('{"mode": "global", "mean": [NaN], "std": [64.1], "count": 5}',
                 "mean is [nan]; expected a list of 1 (mode global), each finite"),
    "mean as text": ({"mean": ["120.7"]},
                     "mean is ['120.7']; expected a list of 1 (mode global), each finite"),
    "per-channel of one": ({"mode": "per_channel"},
                           "mean is [120.7]; expected a list of 3 (mode per_channel), each finite"),
    "missing key": ({"std": None}, "has no 'std'"),
    "unknown mode": ({"mode": "median"}, "mode is 'median'; expected one of: global, per_channel"),
    "count 0": ({"count": 0}, "count is 0; expected a positive integer"),
    "count true": ({"count": True}, "count is True; expected a positive integer"),
    "not an object": ("[1, 2]", "holds [1, 2]; expected an object with mode, mean, std, count"),
    "truncated": ('{"mode": "glo', "is not valid JSON (Unterminated string starting at: "
                                   "line 1 column 10 (char 9))"),
}


@pytest.mark.parametrize("change, problem", BROKEN_STATISTICS.values(), ids=BROKEN_STATISTICS.keys())
def test_broken_statistics_name_file_and_fix(tmp_path, change, problem):
    path = tmp_path / "stats.json"
    if isinstance(change, dict):
        statistics = {**GOOD_STATISTICS, **change}
        path.write_text(json.dumps({k: v for k, v in statistics.items() if v is not None}))
    else:
        path.write_text(change)
    with pytest.raises(InputFileError) as caught:
        load_statistics(path)
    assert str(caught.value) == f"{path}: {problem}; {REBUILD}"


def test_good_statistics_load(tmp_path):
    path = tmp_path / "stats.json"
    path.write_text(json.dumps(GOOD_STATISTICS))
    assert load_statistics(path) == GOOD_STATISTICS


def prepared_workdir(tmp_path: Path, statistics: str) -> Path:
    """A folder where `train` finds params (1 epoch), tiny prepared splits and these statistics."""
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    params["train"].update(epochs=1, batch_size=50)
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    for name, seed in (("train", 0), ("test", 1)):
        labels, images = easy_split(20, seed)
        split = Split(images, labels.astype(np.uint8))
        save_split(split, tmp_path / "data" / "prepared" / f"{name}.npz")
    (tmp_path / "data" / "stats.json").write_text(statistics)
    return tmp_path


def run_stage(name: str, workdir: Path, *arguments: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run([sys.executable, "-m", f"stages.{name}", *arguments], cwd=workdir,
                          env=env, text=True, capture_output=True, timeout=PATIENCE_SECONDS)


def test_train_refuses_nan_statistics_in_one_line(tmp_path):
    """Before: NaN std trained to completion (exit 0) into a chance-level model."""
    workdir = prepared_workdir(tmp_path, '{"mode": "global", "mean": [30], "std": [NaN], "count": 20}')
    result = run_stage("train", workdir)
    assert result.returncode == 1
    assert result.stderr == ("train: error: data/stats.json: std is [nan]; expected a list of 1 "
                             f"(mode global), each finite and > 0; {REBUILD}\n")
    assert not (workdir / "models").exists() and not (workdir / "reports").exists()


# --- saved models and JSON records ---------------------------------------------------------------

def keras_like(path: Path, members: dict[str, bytes]) -> Path:
    import zipfile
    with zipfile.ZipFile(path, "w") as archive:
        for name, payload in members.items():
            archive.writestr(name, payload)
    return path


MODEL_MEMBERS = {"metadata.json": b"{}", "config.json": b"{}", "model.weights.h5": b"h" * 5000}


def test_model_file_checks(tmp_path):
    fix = "re-run the `train` stage that writes it (`dvc repro`)"
    good = keras_like(tmp_path / "good.keras", MODEL_MEMBERS)
    check_model_file(good)  # Passes: a complete archive of the three members Keras writes.
    cases = {
        "truncated": (good.read_bytes()[:3000],
                      "is truncated or not a .keras file (File is not a zip file)"),
        "random": (np.random.default_rng(1).bytes(3000),
                   "is truncated or not a .keras file (File is not a zip file)"),
    }
    for name, (content, problem) in cases.items():
        path = tmp_path / f"{name}.keras"
        path.write_bytes(content)
        with pytest.raises(InputFileError) as caught:
            check_model_file(path)
        assert str(caught.value) == f"{path}: {problem}; {fix}"
    partial = keras_like(tmp_path / "partial.keras", {"metadata.json": b"{}"})
    with pytest.raises(InputFileError, match="has no config.json, so it is not a Keras model file"):
        check_model_file(partial)
    flipped = bytearray(good.read_bytes())
    flipped[flipped.find(b"hhhh") + 10] ^= 1  # Stored uncompressed: only the CRC-32 can tell.
    (tmp_path / "flipped.keras").write_bytes(bytes(flipped))
    with pytest.raises(InputFileError, match=r"member model.weights.h5 is corrupt \(CRC mismatch\)"):
        check_model_file(tmp_path / "flipped.keras")
    with pytest.raises(InputFileError) as caught:
        check_model_file(tmp_path / "none.keras")
    assert str(caught.value) == f"{tmp_path}/none.keras: missing; {fix}"


def test_evaluate_refuses_a_corrupt_model_in_one_line(tmp_path):
    """Before: Keras said "File not found" for a file that is there but truncated."""
    workdir = prepared_workdir(tmp_path, json.dumps(GOOD_STATISTICS))
    (workdir / "models").mkdir()
    (workdir / "models" / "model.keras").write_bytes(b"PK\x03\x04 truncated")
    result = run_stage("evaluate", workdir)
    assert result.returncode == 1
    assert result.stderr == ("evaluate: error: models/model.keras: is truncated or not a .keras "
                             "file (File is not a zip file); re-run the `train` stage that writes it "
                             "(`dvc repro`)\n")
    assert not (workdir / "reports").exists()


def test_json_record_checks(tmp_path):
    path = tmp_path / "metrics.json"
    path.write_text('{"test": {"accuracy": 0.7')
    with pytest.raises(InputFileError, match=r"metrics.json: is not valid JSON \(Expecting "):
        read_json(path, "evaluate")
    path.write_text("[]")
    with pytest.raises(InputFileError, match=r"metrics.json: is not a JSON object; re-run the "
                                             r"`evaluate` stage that writes it"):
        read_json(path, "evaluate")


# --- one line for what users cause, tracebacks for bugs ------------------------------------------

def run_decorated(error: BaseException):
    @stage_main("demo")
    def main():
        raise error

    return main()


@pytest.mark.parametrize("error, line, code", [
    (ParamsError("params.yaml: bn = 'middle' is not allowed"),
     "demo: error: params.yaml: bn = 'middle' is not allowed", 1),
    (OSError(errno.ENOSPC, "No space left on device", "models/model.keras"),
     "demo: error: models/model.keras: No space left on device; free some disk space and run it "
     "again", 1),
    (PermissionError(errno.EACCES, "Permission denied", "reports/train"),
     "demo: error: reports/train: Permission denied; check the permissions of that path", 1),
    (OSError(errno.EROFS, "Read-only file system", "data/stats.json"),
     "demo: error: data/stats.json: Read-only file system; the file system is read-only; run from "
     "a writable copy of the project", 1),
    (KeyboardInterrupt(),
     "demo: interrupted (Ctrl-C); outputs are only replaced once complete, so run it again to finish; if DVC "
     "ran it, DVC had removed its committed outputs first: `git checkout -- reports/` puts back committed "
     "records and reports, `dvc checkout` the model and data",
     130),
])
def test_expected_errors_become_one_line(capsys, error, line, code):
    with pytest.raises(SystemExit) as caught:
        run_decorated(error)
    assert caught.value.code == code
    assert capsys.readouterr().err == line + "\n"


@pytest.mark.parametrize("error", [ValueError("a bug inside Keras"), KeyError("units"),
                                   FileNotFoundError("no errno: a library's own message"),
                                   TypeError("bug")])
def test_unexpected_errors_keep_their_traceback(error):
    """Not ours, or an OSError without an errno: propagates unchanged, so Python prints the trace."""
    with pytest.raises(type(error)) as caught:
        run_decorated(error)
    assert caught.value is error


def test_a_failed_write_names_the_output(tmp_path):
    """A full disk surfaces as an OSError without a file name from a write(); it gains the output's."""
    target = tmp_path / "out" / "model.keras"
    with pytest.raises(OSError) as caught, atomic_write(target):
        raise OSError(errno.ENOSPC, "No space left on device")
    assert (caught.value.errno, caught.value.filename) == (errno.ENOSPC, str(target))
    assert os.listdir(target.parent) == []


def limit_file_size() -> None:
    """In the child: files may not exceed 64 kB, and exceeding it is an error, not a signal."""
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_FSIZE, (64 * 1024, 64 * 1024))


def test_file_too_large_is_one_line_and_leaves_nothing(tmp_path):
    """A real OS refusal mid-write (ulimit -f, like a full disk): one line, no partial output."""
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    params["normalize"]["records_per_file"] = RECORDS_PER_FILE
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    build_archive(tmp_path / "data" / "raw" / "cifar-10-binary.tar.gz")
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    result = subprocess.run([sys.executable, "-m", "stages.normalize"], cwd=tmp_path, env=env,
                            text=True, capture_output=True, timeout=PATIENCE_SECONDS, preexec_fn=limit_file_size)
    assert result.returncode == 1
    assert result.stderr == ("normalize: error: data/prepared/train.npz: File too large; the file "
                             "system or a resource limit (ulimit -f) refuses a file this large\n")
    assert os.listdir(tmp_path / "data" / "prepared") == []


def test_a_file_in_the_way_of_an_output_folder(tmp_path):
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    params["normalize"]["records_per_file"] = RECORDS_PER_FILE
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    build_archive(tmp_path / "data" / "raw" / "cifar-10-binary.tar.gz")
    (tmp_path / "data" / "prepared").write_text("not a folder")
    result = run_stage("normalize", tmp_path)
    assert result.returncode == 1
    assert result.stderr == ("normalize: error: data/prepared: File exists; something else is in "
                             "the way at that path; move it aside\n")


# --- temporaries: cleaned by the next write, never seen by git or DVC -----------------------------

def test_stale_temporaries_of_the_same_output_are_removed(tmp_path):
    """What a killed writer left is removed by the next write of that output, and nothing else is."""
    stale = [tmp_path / ".before-1.0123abcd.partial.keras",
             tmp_path / ".before-1.deadbeef.partial.keras"]
    others = [tmp_path / ".before-10.0123abcd.partial.keras", tmp_path / "before-1.keras.bak",
              tmp_path / ".before-1.keras", tmp_path / ".before-1.0123abcd.partial.json"]
    for path in stale + others:
        path.write_bytes(b"x")
    with atomic_write(tmp_path / "before-1.keras") as out:
        out.write(b"model")
    assert sorted(os.listdir(tmp_path)) == sorted([p.name for p in others] + ["before-1.keras"])
    remove_stale_temps(tmp_path / "before-10.keras")
    assert not others[0].exists()


def test_the_temporary_of_a_writer_still_running_is_left_alone(tmp_path):
    """Two runs in one workspace: the second's clean-up must not delete the first's live temporary
    (a file, or a folder of DVCLive's files). A killed writer's lock is gone, so its temporary goes."""
    with atomic_write(tmp_path / "model.keras") as out, temporary_folder(tmp_path / "train") as folder:
        out.write(b"half a model")
        (folder / "metrics.json").write_text("{}")
        live = sorted(os.listdir(tmp_path))
        remove_stale_temps(tmp_path / "model.keras")
        remove_stale_temps(tmp_path / "train")
        assert sorted(os.listdir(tmp_path)) == live and (folder / "metrics.json").is_file()
    assert sorted(os.listdir(tmp_path)) == ["model.keras"]
    killed = subprocess.run([sys.executable, "-c", "import os, sys; from stages.trainer.atomic import "
                             "temporary_folder\nwith temporary_folder(sys.argv[1]): os._exit(9)",
                             str(tmp_path / "train")], env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert killed.returncode == 9 and len(os.listdir(tmp_path)) == 2  # Left behind, unlocked.
    remove_stale_temps(tmp_path / "train")
    assert sorted(os.listdir(tmp_path)) == ["model.keras"]


def test_temporaries_are_ignored_by_git_and_dvc(project):
    for path in ("data/raw/.cifar-10-binary.tar.0123abcd.partial.gz",
                 "models/.model.0123abcd.partial.keras", "reports/train/.run.0123abcd.partial.json",
                 "data/.stats.0123abcd.partial.json"):
        (project.root / path).parent.mkdir(parents=True, exist_ok=True)
        (project.root / path).write_text("partial")
    assert project.run("git", "status", "--porcelain", "--untracked-files=all").stdout == ""
    ignored = project.dvc("check-ignore", "data/prepared/.train.0123abcd.partial.npz")
    assert ignored.stdout.strip() == "data/prepared/.train.0123abcd.partial.npz"


# --- a typo never costs results (real DVC) -------------------------------------------------------

def output_hashes(root: Path) -> dict[str, str]:
    """md5 of every file DVC's main pipeline wrote up to `train`, by path."""
    files = [root / "data/raw/cifar-10-binary.tar.gz", root / "data/stats.json",
             root / "models/model.keras", *sorted((root / "data/prepared").iterdir()),
             *sorted(p for p in (root / "reports/train").rglob("*") if p.is_file())]
    return {str(p.relative_to(root)): hashlib.md5(p.read_bytes()).hexdigest() for p in files}


@pytest.mark.dvc
def test_a_refused_run_costs_nothing(trained_project):
    """`dvc repro` with `bn: middle` and `dvc exp run -S bn=sideways`: the check stage, which
    `train` depends on, refuses the value before DVC removes any output (before the check, DVC
    had deleted the trained model by then). `git checkout params.yaml` puts the params back, and
    nothing runs again."""
    project = trained_project  # Trained by `dvc repro`: every stage's results.
    project.commit("results")
    before = output_hashes(project.root)
    assert len(before) >= 9

    project.set_params(bn="middle")
    failed = project.dvc("repro", check=False)
    assert failed.returncode != 0
    assert "check: error: params.yaml: bn = 'middle' is not allowed" in failed.stderr + failed.stdout
    assert output_hashes(project.root) == before  # Every output as it was.
    project.run("git", "checkout", "params.yaml")
    assert "Running" not in project.dvc("repro", "train").stdout
    assert output_hashes(project.root) == before

    failed = project.dvc("exp", "run", "-S", "bn=sideways", check=False)
    assert failed.returncode != 0
    assert "bn: sideways" in (project.root / "params.yaml").read_text()  # DVC leaves the edit.
    assert output_hashes(project.root) == before
    project.run("git", "checkout", "params.yaml")
    assert "Running" not in project.dvc("repro", "train").stdout
    assert output_hashes(project.root) == before
    assert project.dvc("status", "train").stdout.strip().endswith("up to date.")

    # data.url at the fetch output: refused, and the archive (your only copy, say) survives it.
    archive = project.root / "data/raw/cifar-10-binary.tar.gz"
    project.set_params(data={"url": "data/raw/cifar-10-binary.tar.gz"})
    failed = project.dvc("repro", "fetch", check=False)
    assert failed.returncode != 0
    assert ("fetch: error: data.url = 'data/raw/cifar-10-binary.tar.gz' is data/raw/"
            "cifar-10-binary.tar.gz, the file this stage writes") in failed.stderr + failed.stdout
    assert hashlib.md5(archive.read_bytes()).hexdigest() == before["data/raw/cifar-10-binary.tar.gz"]
    project.run("git", "checkout", "params.yaml")
    assert project.run("git", "status", "--porcelain").stdout == ""


def test_the_orphan_watchdog_ends_with_the_stage():
    """Each stage run starts a thread that watches for a dead parent; it must not outlive the run
    (where a stage runs many times in one process, as in these tests, they would pile up)."""
    @stage_main("demo")
    def main():
        return [thread.name for thread in threading.enumerate()]

    assert "stop-when-orphaned" in main()
    assert "stop-when-orphaned" not in [thread.name for thread in threading.enumerate()]


@pytest.mark.skipif(not Path("/proc/self/stat").exists() or not Path("/bin/sh").exists(),
                    reason="reads /proc and starts /bin/sh")
def test_the_watchdog_looks_past_a_shell_that_stays():
    """Under `sh -c` that does not exec the command (Debian's dash), the shell's parent is watched
    too: it is the process (DVC) whose death must stop the stage."""
    probe = ("from stages.trainer.cli import _lineage; import os; "
             "print(_lineage(), os.getppid())")
    # `; true` keeps every shell (bash too) from replacing itself with Python.
    result = subprocess.run(["/bin/sh", "-c", f"{sys.executable} -c '{probe}'; true"],
                            capture_output=True, text=True, check=True)
    lineage, shell = result.stdout.rsplit(" ", 1)
    assert lineage.startswith("[(") and f"({int(shell)}, {os.getpid()})" in lineage, result.stdout


def test_a_sigterm_that_c_code_swallows_still_stops_the_stage(tmp_path, capsys):
    """The SIGTERM handler raises in whatever runs at that moment: inside a TensorFlow call that
    can be a callback from C code that prints the exception and goes on (protobuf's did, in 1 of 15
    SIGTERMs sent to a training cell). Before: the stage trained on and published its outputs, with
    a traceback on stderr. Now nothing is published, nothing is printed but the stage's one line,
    and it exits 143."""
    target = tmp_path / "record.json"

    @stage_main("demo")
    def main():
        try:  # What the C code does: catch, print through sys.excepthook, carry on.
            signal.raise_signal(signal.SIGTERM)
        except BaseException:
            sys.excepthook(*sys.exc_info())
        write_json(target, {"published": True})

    with pytest.raises(SystemExit) as stopped:
        main()
    assert stopped.value.code == 128 + signal.SIGTERM
    assert not target.exists() and list(tmp_path.iterdir()) == []
    assert capsys.readouterr().err == ("demo: stopped (SIGTERM, or the process that started it died); "
                                       "outputs are only replaced once complete, so run it again to finish; "
                                       "if DVC ran it, DVC had removed its committed outputs first: `git "
                                       "checkout -- reports/` puts back committed records and reports, `dvc "
                                       "checkout` the model and data\n")
    # The next stage in this process starts afresh, and the hooks are the interpreter's again.
    assert sys.excepthook is sys.__excepthook__

    @stage_main("demo")
    def quiet():
        write_json(target, {"published": True})

    quiet()
    assert target.exists()


def test_training_stops_at_the_end_of_the_epoch_in_which_a_sigterm_was_swallowed(tmp_path):
    import dataclasses

    import keras
    from dvclive import Live

    from stages.trainer.cifar import Split, pixel_statistics
    from stages.trainer.model import build_model
    from stages.grids.sections import read_all as read_params
    from stages.trainer.training import epoch_orders, fit

    params = read_params()
    labels, images = easy_split(100, 0)
    train = Split(images, labels.astype(np.uint8))
    epochs = []

    class SwallowOnce(keras.callbacks.Callback):
        def on_train_batch_end(self, batch, logs=None):
            if not epochs and batch == 0:
                try:
                    signal.raise_signal(signal.SIGTERM)
                except BaseException:
                    pass

        def on_epoch_end(self, epoch, logs=None):
            epochs.append(epoch)

    @stage_main("demo")
    def main():
        model = build_model(dataclasses.replace(params.model, filters=[4], dense_units=8), "before",
                            pixel_statistics(train.images, "global"))
        settings = dataclasses.replace(params.train, epochs=3, batch_size=25)
        with Live(str(tmp_path / "live"), dvcyaml=False, save_dvc_exp=False, report=None) as live:
            fit(model, train, train, settings, epoch_orders(100, 3, 0), live, [SwallowOnce()])

    with pytest.raises(SystemExit) as stopped:
        main()
    assert stopped.value.code == 128 + signal.SIGTERM
    assert epochs == []  # EpochLog, first among the callbacks, stopped the first epoch's end.
