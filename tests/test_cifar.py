"""stages.trainer.cifar: parsing CIFAR-10's binary layout, pixel statistics, the prepared .npz files,
and refusing broken or hostile archives with an ArchiveError that names the offending member.

The archives here are written byte by byte from the format's definition (a label byte, then the
1024 red, 1024 green and 1024 blue values of a 32x32 image, each plane row by row), so the tests
do not depend on the code under test (or on conftest's `records`) to know where a pixel lands.
"""

from __future__ import annotations

import gzip
import io
import json
import os
import subprocess
import sys
import tarfile
from pathlib import Path

import numpy as np
import pytest
import yaml

from conftest import PATIENCE_SECONDS, RECORDS_PER_FILE, build_archive, easy_split, records
from stages.trainer.cifar import (CLASS_NAMES, FOLDER, META_MEMBER, RECORD_BYTES, TEST_MEMBER,
                              TRAIN_MEMBERS, ArchiveError, Split, load_split, pixel_statistics,
                              read_archive, save_split)
from stages.trainer.errors import InputFileError

ROOT = Path(__file__).resolve().parents[1]
META = ("\n".join(CLASS_NAMES) + "\n").encode()


def pixel(record: int, row: int, col: int, channel: int, file: int = 0) -> int:
    """The value written at image `record`, (row, col), channel 0=R 1=G 2=B of file number `file`."""
    return (record * 3 + row * 5 + col * 7 + channel * 50 + file * 11) % 256


def file_bytes(file: int, labels: list[int]) -> bytes:
    """One batch file in CIFAR's layout, written in file order with plain loops."""
    out = bytearray()
    for record, label in enumerate(labels):
        out.append(label)
        for channel in range(3):  # R plane, then G, then B.
            for row in range(32):
                out.extend(pixel(record, row, col, channel, file) for col in range(32))
    return bytes(out)


def expected_images(file: int, count: int) -> np.ndarray:
    """What the parser must return for `file_bytes(file, ...)`: (N, 32, 32, 3), channels last."""
    return np.fromfunction(lambda i, r, c, ch: pixel(i, r, c, ch, file), (count, 32, 32, 3),
                           dtype=np.int64).astype(np.uint8)


def valid_members(records_per_file: int = RECORDS_PER_FILE) -> dict[str, bytes]:
    """A well-formed archive's members (from conftest's generator), to be broken one at a time."""
    members = {META_MEMBER: META}
    for offset, name in enumerate((*TRAIN_MEMBERS, TEST_MEMBER)):
        members[name] = records(*easy_split(records_per_file, offset))
    return members


def write_tar(path: Path, entries: list[tuple[tarfile.TarInfo, bytes | None]]) -> Path:
    """A .tar.gz of exactly these entries (for links and other types build_archive cannot make)."""
    with tarfile.open(path, "w:gz") as archive:
        for info, payload in entries:
            if payload is not None:
                info.size = len(payload)
            archive.addfile(info, io.BytesIO(payload) if payload is not None else None)
    return path


def _archive(tmp_path: Path, members: dict[str, bytes]) -> Path:
    """build_archive of exactly these members, at tmp_path/cifar-10-binary.tar.gz."""
    path = tmp_path / "cifar-10-binary.tar.gz"
    build_archive(path, members=members)
    return path


def tar_entry(name: str, kind: bytes = tarfile.REGTYPE, linkname: str = "") -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type = kind
    info.linkname = linkname
    return info


# --- parsing ------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def known_archive(tmp_path_factory) -> Path:
    """Train files 1..5 have labels 1..5 (test: 0, 9, 0, 9...), pixels given by `pixel()`."""
    members = {META_MEMBER: META}
    for number, name in enumerate(TRAIN_MEMBERS, start=1):
        members[name] = file_bytes(number, [number] * RECORDS_PER_FILE)
    members[TEST_MEMBER] = file_bytes(0, [9 * (i % 2) for i in range(RECORDS_PER_FILE)])
    path = tmp_path_factory.mktemp("known") / "cifar-10-binary.tar.gz"
    build_archive(path, members=members)
    return path


def test_records_land_channels_last_in_row_major_order(known_archive):
    """Byte 1 + 1024*c + 32*row + col of record i becomes images[i, row, col, c]."""
    train, test = read_archive(known_archive, RECORDS_PER_FILE)
    assert test.images.shape == (RECORDS_PER_FILE, 32, 32, 3)
    assert test.images.dtype == np.uint8
    for i, row, col, channel in [(0, 0, 0, 0), (0, 0, 1, 0), (0, 1, 0, 0), (3, 5, 7, 1),
                                 (39, 31, 31, 2), (12, 31, 0, 2), (7, 0, 31, 1)]:
        assert test.images[i, row, col, channel] == pixel(i, row, col, channel)
    np.testing.assert_array_equal(test.images, expected_images(0, RECORDS_PER_FILE))


def test_one_marked_byte_lands_in_the_green_channel(tmp_path):
    """A single non-zero byte in the G plane at row 5, col 7 shows up exactly at [5, 7, 1]."""
    record = bytearray(RECORD_BYTES)
    record[0] = 3
    record[1 + 1024 * 1 + 32 * 5 + 7] = 200
    members = {name: bytes(RECORD_BYTES) for name in (*TRAIN_MEMBERS, TEST_MEMBER)}
    members[TEST_MEMBER] = bytes(record)
    _, test = read_archive(_archive(tmp_path, members), 1)
    expected = np.zeros((1, 32, 32, 3), np.uint8)
    expected[0, 5, 7, 1] = 200
    np.testing.assert_array_equal(test.images, expected)
    assert test.labels.tolist() == [3]


@pytest.mark.parametrize("packing", [["tar", "czf", "{out}", f"./{FOLDER}"],
                                     ["tar", "czf", "{out}", "-C", "{folder}", "."]],
                         ids=["./folder", "-C folder ."])
def test_an_archive_packed_with_dot_slash_names_reads_the_same(known_archive, tmp_path, packing):
    """`tar czf x.tar.gz ./cifar-10-batches-bin` names its members ./cifar-10-batches-bin/...
    (a common way to pack), and `-C folder .` adds "./" itself. Before: refused as unexpected."""
    with tarfile.open(known_archive) as archive:
        archive.extractall(tmp_path / "unpacked", filter="data")
    repacked = tmp_path / "repacked.tar.gz"
    command = [word.format(out=repacked, folder=tmp_path / "unpacked") for word in packing]
    subprocess.run(command, cwd=tmp_path / "unpacked", check=True)
    with tarfile.open(repacked) as archive:
        assert all(name.startswith(".") for name in archive.getnames())
    for ours, theirs in zip(read_archive(known_archive, RECORDS_PER_FILE),
                            read_archive(repacked, RECORDS_PER_FILE), strict=True):
        np.testing.assert_array_equal(ours.images, theirs.images)
        np.testing.assert_array_equal(ours.labels, theirs.labels)


def test_labels_round_trip(known_archive):
    train, test = read_archive(known_archive, RECORDS_PER_FILE)
    assert test.labels.tolist() == [9 * (i % 2) for i in range(RECORDS_PER_FILE)]
    assert train.labels.shape == (5 * RECORDS_PER_FILE,)
    assert np.issubdtype(train.labels.dtype, np.integer)


def test_train_is_data_batches_1_to_5_in_order(known_archive):
    """Train concatenates data_batch_1..5 in that order; test is test_batch alone."""
    train, _ = read_archive(known_archive, RECORDS_PER_FILE)
    assert train.labels.tolist() == [n for n in range(1, 6) for _ in range(RECORDS_PER_FILE)]
    expected = np.concatenate([expected_images(n, RECORDS_PER_FILE) for n in range(1, 6)])
    np.testing.assert_array_equal(train.images, expected)
    assert train.images.flags["C_CONTIGUOUS"]


def test_conftest_records_helper_matches_the_format():
    """archive_writer.encode_records (behind every test archive) writes the bytes of the spec."""
    labels = np.array([1, 2, 3])
    assert records(labels, expected_images(4, 3)) == file_bytes(4, [1, 2, 3])


def test_archive_member_order_does_not_matter(tmp_path):
    """Train order comes from the member names, not from where they sit in the tar."""
    members = {name: file_bytes(n, [n] * 2) for n, name in enumerate(TRAIN_MEMBERS, start=1)}
    members[TEST_MEMBER] = file_bytes(0, [0, 0])
    shuffled = dict(reversed(list(members.items())))
    train, _ = read_archive(_archive(tmp_path, shuffled), 2)
    assert train.labels.tolist() == [1, 1, 2, 2, 3, 3, 4, 4, 5, 5]


def test_readme_member_is_allowed(tmp_path):
    members = {**valid_members(), f"{FOLDER}/readme.html": b"<html></html>"}
    train, test = read_archive(_archive(tmp_path, members), RECORDS_PER_FILE)
    assert len(train.labels) == 5 * RECORDS_PER_FILE and len(test.labels) == RECORDS_PER_FILE


# --- statistics ---------------------------------------------------------------------------------

def test_global_statistics_half_black_half_white():
    images = np.zeros((4, 32, 32, 3), np.uint8)
    images[2:] = 255
    assert pixel_statistics(images, "global") == {"mode": "global", "mean": [127.5],
                                                  "std": [127.5], "count": 4}


def test_per_channel_statistics_by_hand():
    """R all 0, G all 255, B half 0 / half 255: means (0, 255, 127.5), stds (0, 0, 127.5)."""
    images = np.zeros((2, 32, 32, 3), np.uint8)
    images[..., 1] = 255
    images[1, :, :, 2] = 255
    stats = pixel_statistics(images, "per_channel")
    assert stats == {"mode": "per_channel", "mean": [0.0, 255.0, 127.5], "std": [0.0, 0.0, 127.5],
                     "count": 2}


@pytest.mark.parametrize("mode", ["global", "per_channel"])
def test_statistics_match_numpy_float64(mode):
    """On random pixels the histogram method agrees with numpy's float64 mean and (population) std."""
    images = np.random.default_rng(7).integers(0, 256, size=(37, 32, 32, 3), dtype=np.uint8)
    images[..., 0] //= 3  # Make the channels differ.
    stats = pixel_statistics(images, mode)
    pixels = images.astype(np.float64)
    axes = None if mode == "global" else (0, 1, 2)
    np.testing.assert_allclose(stats["mean"], np.atleast_1d(pixels.mean(axis=axes)), rtol=0, atol=1e-9)
    np.testing.assert_allclose(stats["std"], np.atleast_1d(pixels.std(axis=axes)), rtol=0, atol=1e-9)
    assert len(stats["mean"]) == (1 if mode == "global" else 3)
    assert json.loads(json.dumps(stats)) == stats  # Plain floats: stats.json is written as is.


def test_statistics_reject_an_unknown_mode():
    with pytest.raises(ValueError, match=r"^normalize mode 'median' is not allowed; "
                                         r"expected global or per_channel$"):
        pixel_statistics(np.zeros((1, 32, 32, 3), np.uint8), "median")


# --- prepared splits ----------------------------------------------------------------------------

def test_save_and_load_round_trip(tmp_path):
    labels, images = easy_split(30, seed=3)
    path = tmp_path / "prepared" / "train.npz"
    save_split(Split(images, labels), path)
    loaded = load_split(path)
    np.testing.assert_array_equal(loaded.images, images)
    np.testing.assert_array_equal(loaded.labels, labels)
    assert loaded.images.dtype == np.uint8
    assert os.listdir(path.parent) == ["train.npz"]  # No temporary file left behind.


def test_load_refuses_pickled_objects(tmp_path):
    """load_split uses allow_pickle=False: an .npz holding an object array does not load."""
    path = tmp_path / "evil.npz"
    objects = np.empty(2, dtype=object)
    objects[:] = [{"a": 1}, "b"]
    np.savez(path, images=objects, labels=np.zeros(2, np.int64))
    with pytest.raises(InputFileError) as caught:
        load_split(path)
    assert str(caught.value) == (f"{path}: is not an .npz file of plain arrays (random bytes, or "
                                 "pickled objects); rebuild it with `dvc repro normalize`")


def test_load_checks_the_shape(tmp_path):
    path = tmp_path / "wrong.npz"
    np.savez(path, images=np.zeros((2, 32, 32), np.uint8), labels=np.zeros(2, np.int64))
    with pytest.raises(InputFileError, match=r"images are uint8 \(2, 32, 32\); expected uint8 "
                                             r"\(N, 32, 32, 3\); rebuild it with `dvc repro "):
        load_split(path)


# --- broken and hostile archives ----------------------------------------------------------------

def with_label(member: str, index: int, label: int) -> bytes:
    raw = bytearray(valid_members()[member])
    raw[index * RECORD_BYTES] = label
    return bytes(raw)


SWAPPED_META = META.replace(b"cat", b"CAT").replace(b"dog", b"cat").replace(b"CAT", b"dog")
BATCH_3 = TRAIN_MEMBERS[2]

HOSTILE_MEMBERS = {
    "record size": (
        {BATCH_3: valid_members()[BATCH_3] + b"\0"},
        f"member '{BATCH_3}' has {40 * RECORD_BYTES + 1} bytes; expected {40 * RECORD_BYTES} "
        f"(40 records of {RECORD_BYTES} bytes)"),
    "label 10": (
        {TEST_MEMBER: with_label(TEST_MEMBER, 7, 10)},
        f"member '{TEST_MEMBER}': record 7 has label 10; labels are 0-9"),
    "label 255": (
        {TRAIN_MEMBERS[4]: with_label(TRAIN_MEMBERS[4], 0, 255)},
        f"member '{TRAIN_MEMBERS[4]}': record 0 has label 255; labels are 0-9"),
    "extra member": (
        {f"{FOLDER}/evil.sh": b"#!/bin/sh\nrm -rf ~\n"},
        f"unexpected member '{FOLDER}/evil.sh'; a CIFAR-10 binary archive holds only "),
    "dot-dot member": (
        {f"{FOLDER}/../evil.sh": b"x"},
        f"member '{FOLDER}/../evil.sh' has an absolute or '..' path; refusing the archive"),
    "absolute member": (
        {"/tmp/evil.sh": b"x"},
        "member '/tmp/evil.sh' has an absolute or '..' path; refusing the archive"),
    "wrong class names": (
        {META_MEMBER: SWAPPED_META},
        f"member '{META_MEMBER}' lists classes ('airplane', 'automobile', 'bird', 'dog', "),
}


@pytest.mark.parametrize("changes, message", HOSTILE_MEMBERS.values(), ids=HOSTILE_MEMBERS.keys())
def test_hostile_member_is_refused(tmp_path, changes, message):
    """Each broken member raises ArchiveError with a message naming that member."""
    with pytest.raises(ArchiveError) as caught:
        read_archive(_archive(tmp_path, {**valid_members(), **changes}), RECORDS_PER_FILE)
    assert message in str(caught.value)


def test_missing_member_is_named(tmp_path):
    members = valid_members()
    del members[TEST_MEMBER]
    with pytest.raises(ArchiveError, match=f"missing member {TEST_MEMBER}; a CIFAR-10 binary "):
        read_archive(_archive(tmp_path, members), RECORDS_PER_FILE)


def test_wrong_records_per_file_is_named(tiny_archive):
    """The real archive's 10000 records per file, expected of a 40-record archive: a clear error."""
    path, _ = tiny_archive
    with pytest.raises(ArchiveError, match=rf"member '{TRAIN_MEMBERS[0]}' has {40 * RECORD_BYTES} "
                                           rf"bytes; expected {10_000 * RECORD_BYTES} "):
        read_archive(path, 10_000)


@pytest.mark.parametrize("kind, word", [(tarfile.SYMTYPE, "symlink"), (tarfile.LNKTYPE, "hardlink")])
def test_link_member_is_refused(tmp_path, kind, word):
    """A link in place of a batch file (it could point at /etc/passwd) is refused by name."""
    members = valid_members()
    entries = [(tar_entry(FOLDER, tarfile.DIRTYPE), None)]
    entries += [(tar_entry(name), payload) for name, payload in members.items() if name != TEST_MEMBER]
    entries.append((tar_entry(TEST_MEMBER, kind, linkname="/etc/passwd"), None))
    path = write_tar(tmp_path / f"{word}.tar.gz", entries)
    with pytest.raises(ArchiveError, match=f"^member '{TEST_MEMBER}' is a link; "):
        read_archive(path, RECORDS_PER_FILE)


def test_directory_in_place_of_a_batch_is_refused(tmp_path):
    entries = [(tar_entry(name), payload) for name, payload in valid_members().items()
               if name != BATCH_3]
    entries.append((tar_entry(BATCH_3, tarfile.DIRTYPE), None))
    with pytest.raises(ArchiveError, match=f"^member '{BATCH_3}' is not a regular file$"):
        read_archive(write_tar(tmp_path / "a.tar.gz", entries), RECORDS_PER_FILE)


def test_folder_as_a_file_is_refused(tmp_path):
    entries = [(tar_entry(FOLDER), b"not a directory")]
    entries += [(tar_entry(name), payload) for name, payload in valid_members().items()]
    with pytest.raises(ArchiveError, match=f"^member '{FOLDER}' should be a directory$"):
        read_archive(write_tar(tmp_path / "a.tar.gz", entries), RECORDS_PER_FILE)


def test_truncated_gzip_is_refused(tiny_archive):
    """Half an archive (an interrupted download) names the file and says to fetch it again."""
    path, _ = tiny_archive
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    with pytest.raises(ArchiveError) as caught:
        read_archive(path, RECORDS_PER_FILE)
    assert str(caught.value).startswith(f"{path}: not a readable .tar.gz archive (")
    assert "fetch again" in str(caught.value)


def test_missing_gzip_trailer_is_refused(tiny_archive):
    """Only the last bytes cut (CRC-32 and length): every member reads fine, yet it is refused."""
    path, _ = tiny_archive
    path.write_bytes(path.read_bytes()[:-4])
    with pytest.raises(ArchiveError, match=f"^{path}: not a readable .tar.gz archive"):
        read_archive(path, RECORDS_PER_FILE)


def test_not_a_gzip_is_refused(tmp_path):
    path = tmp_path / "cifar-10-binary.tar.gz"
    path.write_text("<html>Sorry, the page you requested was not found</html>")
    with pytest.raises(ArchiveError, match=f"^{path}: not a readable .tar.gz archive"):
        read_archive(path, RECORDS_PER_FILE)


def test_corrupt_gzip_checksum_is_refused(tmp_path):
    """Flipped pixel bytes in an uncompressed-deflate archive are only caught by gzip's CRC-32.

    tarfile stops reading at the end-of-archive block and never reaches the gzip trailer, so
    the reader must drain the stream to have the CRC checked.
    """
    tar_bytes = io.BytesIO()
    with tarfile.open(fileobj=tar_bytes, mode="w") as archive:
        for name, payload in valid_members().items():
            info = tar_entry(name)
            info.size = len(payload)
            archive.addfile(info, io.BytesIO(payload))
    raw = bytearray(gzip.compress(tar_bytes.getvalue(), compresslevel=0, mtime=0))
    found = raw.find(valid_members()[TEST_MEMBER][:200])
    assert found > 0  # Stored blocks: the test set's bytes sit in the file as they are.
    raw[found + 100] ^= 0xFF  # A test-set pixel: the deflate stream itself stays valid.
    path = tmp_path / "cifar-10-binary.tar.gz"
    path.write_bytes(bytes(raw))
    with pytest.raises(ArchiveError, match=f"^{path}: not a readable .tar.gz archive"):
        read_archive(path, RECORDS_PER_FILE)


# --- the normalize stage ------------------------------------------------------------------------

def run_normalize_stage(workdir: Path, archive_members: dict[str, bytes]) -> subprocess.CompletedProcess:
    """`python -m stages.normalize` in `workdir`, on an archive of these members (40 per file)."""
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    params["normalize"]["records_per_file"] = RECORDS_PER_FILE
    (workdir / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    (workdir / "data" / "raw").mkdir(parents=True)
    build_archive(workdir / "data" / "raw" / "cifar-10-binary.tar.gz", members=archive_members)
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run([sys.executable, "-m", "stages.normalize"], cwd=workdir, env=env,
                          text=True, capture_output=True, timeout=PATIENCE_SECONDS)


def test_normalize_stage_refuses_a_hostile_archive(tmp_path):
    """The stage exits 1 with one `normalize: error:` line and writes no prepared data."""
    members = {**valid_members(), f"{FOLDER}/evil.sh": b"#!/bin/sh\n"}
    result = run_normalize_stage(tmp_path, members)
    assert result.returncode == 1
    assert result.stderr.startswith(f"normalize: error: unexpected member '{FOLDER}/evil.sh'")
    assert "Traceback" not in result.stderr and len(result.stderr.splitlines()) == 1
    assert list((tmp_path / "data").rglob("*.npz")) == []
    assert not (tmp_path / "data" / "stats.json").exists()


def test_normalize_stage_writes_splits_and_statistics(tmp_path):
    result = run_normalize_stage(tmp_path, valid_members())
    assert result.returncode == 0, result.stderr
    train = load_split(tmp_path / "data" / "prepared" / "train.npz")
    test = load_split(tmp_path / "data" / "prepared" / "test.npz")
    assert (len(train.labels), len(test.labels)) == (5 * RECORDS_PER_FILE, RECORDS_PER_FILE)
    assert np.bincount(train.labels).tolist() == [5 * RECORDS_PER_FILE // 10] * 10
    stats = json.loads((tmp_path / "data" / "stats.json").read_text())
    assert stats == pixel_statistics(train.images, "global")
