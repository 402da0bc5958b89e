"""Read CIFAR-10's binary archive safely, and the compact prepared arrays the pipeline passes on.

The archive is read member by member straight from the gzip stream: nothing is extracted to disk
and nothing is unpickled. Every member is checked (name, type, size, labels) before its bytes are
trusted, because the archive may come from anywhere `data.url` points.
"""

from __future__ import annotations

import tarfile
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from stages.lib.atomic import atomic_write
from stages.lib.errors import BnlabError

CLASS_NAMES = ("airplane", "automobile", "bird", "cat", "deer",
               "dog", "frog", "horse", "ship", "truck")
IMAGE_SHAPE = (32, 32, 3)
RECORD_BYTES = 1 + 32 * 32 * 3  # One label byte, then the red, green and blue planes.
RECORDS_PER_FILE = 10_000
FOLDER = "cifar-10-batches-bin"
TRAIN_MEMBERS = tuple(f"{FOLDER}/data_batch_{i}.bin" for i in range(1, 6))
TEST_MEMBER = f"{FOLDER}/test_batch.bin"
META_MEMBER = f"{FOLDER}/batches.meta.txt"
# The official archive also ships these; they are allowed but not read (the class names are checked).
OPTIONAL_MEMBERS = (FOLDER, META_MEMBER, f"{FOLDER}/readme.html")


class ArchiveError(BnlabError, ValueError):
    """The archive is not a well-formed CIFAR-10 binary archive."""


@dataclass(frozen=True)
class Split:
    """One split as the pipeline stores it: raw uint8 pixels (N, 32, 32, 3) and int labels (N,)."""

    images: np.ndarray
    labels: np.ndarray

    def __post_init__(self):
        if self.images.dtype != np.uint8 or self.images.shape[1:] != IMAGE_SHAPE:
            raise ValueError(f"images must be uint8 of shape (N, 32, 32, 3), got "
                             f"{self.images.dtype} {self.images.shape}")
        if self.labels.shape != self.images.shape[:1]:
            raise ValueError(f"{len(self.labels)} labels for {len(self.images)} images")


def read_archive(path: Path, records_per_file: int = RECORDS_PER_FILE) -> tuple[Split, Split]:
    """Parse and validate the archive; return (train, test). Raises ArchiveError naming the problem."""
    contents = {}
    try:
        with tarfile.open(path, mode="r:gz") as archive:
            for member in archive:
                _check_member(member, records_per_file)
                if member.isfile():
                    contents[member.name] = archive.extractfile(member).read()
            # tarfile stops at the end-of-archive block and never reads the gzip trailer: drain the
            # stream so its CRC-32 and length are checked (else some corruption goes unnoticed).
            while archive.fileobj.read(1 << 20):
                pass
    except (tarfile.TarError, EOFError, OSError, zlib.error) as error:
        raise ArchiveError(f"{path}: not a readable .tar.gz archive ({error}); "
                           "the download is probably truncated or corrupt: delete it and fetch again")
    missing = [name for name in (*TRAIN_MEMBERS, TEST_MEMBER) if name not in contents]
    if missing:
        raise ArchiveError(f"{path}: missing member {missing[0]}; a CIFAR-10 binary archive has "
                           f"{', '.join(TRAIN_MEMBERS + (TEST_MEMBER,))}")
    if META_MEMBER in contents:
        _check_class_names(contents[META_MEMBER])
    train = _concatenate([_parse_records(name, contents[name]) for name in TRAIN_MEMBERS])
    test = _parse_records(TEST_MEMBER, contents[TEST_MEMBER])
    return train, test


def _check_member(member: tarfile.TarInfo, records_per_file: int) -> None:
    name = member.name
    if name.startswith("/") or ".." in Path(name).parts:
        raise ArchiveError(f"member {name!r} has an absolute or '..' path; refusing the archive")
    if member.issym() or member.islnk():
        raise ArchiveError(f"member {name!r} is a link; a CIFAR-10 archive holds only regular files")
    if name.rstrip("/") not in (*TRAIN_MEMBERS, TEST_MEMBER, *OPTIONAL_MEMBERS):
        raise ArchiveError(f"unexpected member {name!r}; a CIFAR-10 binary archive holds only "
                           f"{FOLDER}/data_batch_1..5.bin, test_batch.bin and batches.meta.txt")
    if name == FOLDER or name == FOLDER + "/":
        if not member.isdir():
            raise ArchiveError(f"member {name!r} should be a directory")
        return
    if not member.isfile():
        raise ArchiveError(f"member {name!r} is not a regular file")
    expected = records_per_file * RECORD_BYTES
    if name in (*TRAIN_MEMBERS, TEST_MEMBER) and member.size != expected:
        raise ArchiveError(f"member {name!r} has {member.size} bytes; expected {expected} "
                           f"({records_per_file} records of {RECORD_BYTES} bytes)")


def _check_class_names(raw: bytes) -> None:
    names = tuple(line.strip() for line in raw.decode("ascii", "replace").splitlines() if line.strip())
    if names != CLASS_NAMES:
        raise ArchiveError(f"member {META_MEMBER!r} lists classes {names}; expected {CLASS_NAMES}")


def _parse_records(name: str, raw: bytes) -> Split:
    records = np.frombuffer(raw, dtype=np.uint8).reshape(-1, RECORD_BYTES)
    labels = records[:, 0]
    if labels.max(initial=0) > 9:
        bad = int(np.argmax(labels > 9))
        raise ArchiveError(f"member {name!r}: record {bad} has label {labels[bad]}; labels are 0-9")
    # Each record stores channel planes (3, 32, 32); Keras wants channels last (32, 32, 3).
    images = records[:, 1:].reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1)
    return Split(np.ascontiguousarray(images), labels.copy())


def _concatenate(splits: list[Split]) -> Split:
    return Split(np.concatenate([s.images for s in splits]), np.concatenate([s.labels for s in splits]))


def pixel_statistics(images: np.ndarray, mode: str) -> dict:
    """Mean and std of pixel values on the 0-255 scale, over all pixels or per channel.

    Computed from a 256-bin histogram: exact, in integer arithmetic, and far faster than
    converting 150 million pixels to float.
    """
    if mode not in ("global", "per_channel"):
        raise ValueError(f"normalize mode {mode!r} is not allowed; expected global or per_channel")
    channels = images.reshape(-1, 3)
    columns = [channels.ravel()] if mode == "global" else [channels[:, c] for c in range(3)]
    means, stds = [], []
    levels = np.arange(256, dtype=np.float64)
    for column in columns:
        counts = np.bincount(column, minlength=256).astype(np.float64)
        mean = counts @ levels / counts.sum()
        stds.append(float(np.sqrt(counts @ (levels - mean) ** 2 / counts.sum())))
        means.append(float(mean))
    return {"mode": mode, "mean": means, "std": stds, "count": int(images.shape[0])}


def save_split(split: Split, path: Path) -> None:
    """Uncompressed .npz: uint8 pixels load in a fraction of a second and cost 1.0x the raw bytes."""
    with atomic_write(path) as out:
        np.savez(out, images=split.images, labels=split.labels)


def load_split(path: Path) -> Split:
    with np.load(path, allow_pickle=False) as arrays:
        return Split(arrays["images"], arrays["labels"])
