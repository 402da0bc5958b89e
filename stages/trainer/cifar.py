"""Read CIFAR-10's binary archive safely, and the compact prepared arrays the pipeline passes on.

The archive is read member by member straight from the gzip stream: nothing is extracted to disk
and nothing is unpickled. Because the archive may come from anywhere `data.url` points, every
member's name, type and declared size is checked before any of its bytes are read, batches are
parsed a chunk at a time into arrays allocated once, and the decompressed stream as a whole may
not exceed what a CIFAR-10 archive holds: a decompression bomb fails in seconds, in bounded memory.

What `normalize` wrote is checked again when read (`load_split`, `load_statistics`), so a
truncated, edited or foreign file fails in one line that names it and the stage that rebuilds it.
"""

from __future__ import annotations

import gzip
import json
import math
import tarfile
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import numpy as np

from stages.trainer import paths
from stages.trainer.atomic import atomic_write
from stages.trainer.errors import ArchiveError, InputFileError, quoted, shorten
from stages.trainer.params import check_steps_per_execution, steps_for

CLASS_NAMES = ("airplane", "automobile", "bird", "cat", "deer",
               "dog", "frog", "horse", "ship", "truck")
IMAGE_SHAPE = (32, 32, 3)
RECORD_BYTES = 1 + 32 * 32 * 3  # One label byte, then the red, green and blue planes.
RECORDS_PER_FILE = 10_000
FOLDER = "cifar-10-batches-bin"
TRAIN_MEMBERS = tuple(f"{FOLDER}/data_batch_{i}.bin" for i in range(1, 6))
TEST_MEMBER = f"{FOLDER}/test_batch.bin"
META_MEMBER = f"{FOLDER}/batches.meta.txt"
README_MEMBER = f"{FOLDER}/readme.html"
# The official archive also ships these; they are allowed but capped (its own are 61 and 88
# bytes), and only the class names are read.
SMALL_MEMBER_CAPS = {META_MEMBER: 4096, README_MEMBER: 65_536}
# Tar headers, padding and the end-of-archive blocks on top of the members' own bytes.
TAR_OVERHEAD_BYTES = 1 << 20
# The largest read the parser or tarfile may make at once: a chunk of records, a drain step, or
# tarfile's extended headers (long names, pax), which it reads whole before we see the member.
MAX_READ_BYTES = 4 << 20
CHUNK_RECORDS = 1000  # Records parsed at a time: about 3 MB.
# Channels of the statistics per normalize mode.
STATISTICS_CHANNELS = {"global": 1, "per_channel": 3}
MAX_STATISTICS_BYTES = 65_536
REBUILD_PREPARED = "rebuild it with `dvc repro normalize`"


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
    batch_bytes = records_per_file * RECORD_BYTES
    caps = {**dict.fromkeys((*TRAIN_MEMBERS, TEST_MEMBER), batch_bytes), **SMALL_MEMBER_CAPS}
    train = _empty_split(len(TRAIN_MEMBERS) * records_per_file)
    test = _empty_split(records_per_file)
    slots = {name: (train, index * records_per_file) for index, name in enumerate(TRAIN_MEMBERS)}
    slots[TEST_MEMBER] = (test, 0)
    seen: set[str] = set()
    try:
        with gzip.open(path, "rb") as decompressed:
            stream = _BoundedStream(decompressed, sum(caps.values()) + TAR_OVERHEAD_BYTES, path)
            with tarfile.open(fileobj=stream, mode="r:") as archive:
                for member in archive:
                    name = _check_member(member, caps, seen, records_per_file)
                    if name in slots:
                        _read_batch(archive.extractfile(member), name, *slots[name], records_per_file)
                    elif name == META_MEMBER:
                        _check_class_names(archive.extractfile(member).read(member.size))
            # tarfile stops at the end-of-archive block and never reads the gzip trailer: drain
            # the stream so its CRC-32 and length are checked (else some corruption goes unnoticed).
            while stream.read(1 << 20):
                pass
    except (tarfile.TarError, EOFError, OSError, zlib.error, RecursionError) as error:
        raise ArchiveError(f"{path}: not a readable .tar.gz archive ({shorten(str(error))}); "
                           "the download is probably truncated or corrupt: delete it and fetch again")
    missing = [name for name in (*TRAIN_MEMBERS, TEST_MEMBER) if name not in seen]
    if missing:
        raise ArchiveError(f"{path}: missing member {missing[0]}; a CIFAR-10 binary archive has "
                           f"{', '.join(TRAIN_MEMBERS + (TEST_MEMBER,))}")
    return train, test


class _BoundedStream:
    """The decompressed stream, refusing any read past `limit` bytes or larger than MAX_READ_BYTES."""

    def __init__(self, inner: BinaryIO, limit: int, path: Path) -> None:
        self.inner, self.limit, self.path = inner, limit, path

    def read(self, size: int) -> bytes:
        if size > MAX_READ_BYTES:
            raise ArchiveError(f"{self.path}: a tar header asks to read {size:,} bytes at once, more "
                               "than any part of a CIFAR-10 archive holds; refusing the archive")
        room = self.limit - self.inner.tell()
        data = self.inner.read(min(size, room + 1))  # One byte past the limit shows a bomb.
        if len(data) > room:
            raise ArchiveError(f"{self.path}: decompresses to more than {self.limit:,} bytes, more "
                               "than a CIFAR-10 archive of this size holds; refusing the archive")
        return data

    def seek(self, offset: int, whence: int = 0) -> int:
        if whence != 0 or offset > self.limit:  # tarfile only seeks to absolute offsets.
            raise ArchiveError(f"{self.path}: a tar header points past the end a CIFAR-10 archive "
                               "can have; refusing the archive")
        return self.inner.seek(offset)

    def tell(self) -> int:
        return self.inner.tell()


def _check_member(member: tarfile.TarInfo, caps: dict[str, int], seen: set[str],
                  records_per_file: int) -> str:
    """Refuse the member unless it is one CIFAR-10 has, once, of a sane type and size; its name."""
    name = member.name.rstrip("/")
    shown = quoted(member.name)
    if name.startswith("/") or ".." in Path(name).parts:
        raise ArchiveError(f"member {shown} has an absolute or '..' path; refusing the archive")
    # `tar czf x.tar.gz ./cifar-10-batches-bin` names the members ./cifar-10-batches-bin/...: the
    # same files, so the same checks; a repeat under the other spelling still counts as a repeat.
    # `tar czf x.tar.gz -C folder .` adds the folder itself as "./" first.
    while name.startswith("./"):
        name = name[2:]
    if name in (".", "") and member.isdir():
        return "."
    if member.issym() or member.islnk():
        raise ArchiveError(f"member {shown} is a link; a CIFAR-10 archive holds only regular files")
    if name != FOLDER and name not in caps:
        raise ArchiveError(f"unexpected member {shown}; a CIFAR-10 binary archive holds only "
                           f"{FOLDER}/data_batch_1..5.bin, test_batch.bin and batches.meta.txt")
    if name in seen:  # tarfile would let the last copy win; which one is meant is unknowable.
        raise ArchiveError(f"member {shown} appears twice; refusing the archive")
    seen.add(name)
    if name == FOLDER:
        if not member.isdir():
            raise ArchiveError(f"member {shown} should be a directory")
        return name
    if member.type not in (tarfile.REGTYPE, tarfile.AREGTYPE) or member.sparse is not None:
        raise ArchiveError(f"member {shown} is not a regular file")
    if name in SMALL_MEMBER_CAPS and member.size > caps[name]:
        raise ArchiveError(f"member {shown} has {member.size:,} bytes; at most {caps[name]:,} "
                           "are allowed (the official one is under 100)")
    if name not in SMALL_MEMBER_CAPS and member.size != caps[name]:
        raise ArchiveError(f"member {shown} has {member.size} bytes; expected {caps[name]} "
                           f"({records_per_file} records of {RECORD_BYTES} bytes)")
    return name


def _read_batch(source: BinaryIO, name: str, split: Split, start: int, records_per_file: int) -> None:
    """Parse one batch member into split[start:start + records_per_file], a chunk at a time."""
    for first in range(0, records_per_file, CHUNK_RECORDS):
        count = min(CHUNK_RECORDS, records_per_file - first)
        raw = source.read(count * RECORD_BYTES)
        if len(raw) != count * RECORD_BYTES:
            raise ArchiveError(f"member {quoted(name)} ends after {first * RECORD_BYTES + len(raw)} "
                               "bytes; the archive is truncated: delete it and fetch again")
        images, labels = _parse_records(name, raw, first)
        split.images[start + first:start + first + count] = images
        split.labels[start + first:start + first + count] = labels


def _check_class_names(raw: bytes) -> None:
    names = tuple(line.strip() for line in raw.decode("ascii", "replace").splitlines() if line.strip())
    if names != CLASS_NAMES:
        raise ArchiveError(f"member {META_MEMBER!r} lists classes {quoted(names)}; "
                           f"expected {CLASS_NAMES}")


def _parse_records(name: str, raw: bytes, first_record: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """(images (N, 32, 32, 3), labels (N,)) of whole records; `first_record` numbers them in errors."""
    records = np.frombuffer(raw, dtype=np.uint8).reshape(-1, RECORD_BYTES)
    labels = records[:, 0]
    if labels.max(initial=0) > 9:
        bad = int(np.argmax(labels > 9))
        raise ArchiveError(f"member {quoted(name)}: record {first_record + bad} has label "
                           f"{labels[bad]}; labels are 0-9")
    # Each record stores channel planes (3, 32, 32); Keras wants channels last (32, 32, 3).
    return records[:, 1:].reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1), labels


def _empty_split(count: int) -> Split:
    return Split(np.empty((count, *IMAGE_SHAPE), np.uint8), np.empty(count, np.uint8))


def pixel_statistics(images: np.ndarray, mode: str) -> dict:
    """Mean and std of pixel values on the 0-255 scale, over all pixels or per channel.

    Computed from 256-bin histograms: exact, in integer arithmetic, and far faster than
    converting 150 million pixels to float. They are counted a chunk of images at a time, because
    np.bincount widens its input to 64-bit integers (1.2 GB for the whole training set at once).
    """
    if mode not in STATISTICS_CHANNELS:
        raise ValueError(f"normalize mode {mode!r} is not allowed; expected global or per_channel")
    per_channel = np.zeros((3, 256), np.int64)
    for start in range(0, len(images), CHUNK_RECORDS):
        pixels = images[start:start + CHUNK_RECORDS].reshape(-1, 3)
        for channel in range(3):
            per_channel[channel] += np.bincount(pixels[:, channel], minlength=256)
    histograms = [per_channel.sum(axis=0)] if mode == "global" else list(per_channel)
    means, stds = [], []
    levels = np.arange(256, dtype=np.float64)
    for histogram in histograms:
        counts = histogram.astype(np.float64)
        mean = counts @ levels / counts.sum()
        stds.append(float(np.sqrt(counts @ (levels - mean) ** 2 / counts.sum())))
        means.append(float(mean))
    return {"mode": mode, "mean": means, "std": stds, "count": int(images.shape[0])}


def save_split(split: Split, path: Path) -> None:
    """Uncompressed .npz: uint8 pixels load in a fraction of a second and cost 1.0x the raw bytes."""
    with atomic_write(path) as out:
        np.savez(out, images=split.images, labels=split.labels)


def load_split(path: Path) -> Split:
    """A split `normalize` wrote, checked; any problem is an InputFileError naming the file."""
    path = Path(path)

    def fail(problem: str) -> InputFileError:
        return InputFileError(f"{path}: {problem}; {REBUILD_PREPARED}")

    try:
        loaded = np.load(path, allow_pickle=False)  # Pickles can run code: never load them.
        if not isinstance(loaded, np.lib.npyio.NpzFile):
            raise fail("is a single .npy array, not the .npz file of images and labels")
        with loaded as arrays:
            missing = [name for name in ("images", "labels") if name not in arrays.files]
            if missing:
                raise fail(f"has no {missing[0]!r} array")
            images, labels = arrays["images"], arrays["labels"]
    except InputFileError:
        raise
    except FileNotFoundError:
        raise fail("missing") from None
    except ValueError:  # numpy's message would suggest allow_pickle=True: not for a data file.
        raise fail("is not an .npz file of plain arrays (random bytes, or pickled objects)") from None
    except (OSError, EOFError, zipfile.BadZipFile, zlib.error) as error:
        raise fail(f"is truncated or corrupt ({shorten(str(error))})") from None
    if images.dtype != np.uint8 or images.ndim != 4 or images.shape[1:] != IMAGE_SHAPE:
        raise fail(f"images are {images.dtype} {images.shape}; expected uint8 (N, 32, 32, 3)")
    if len(images) == 0:
        raise fail("holds no images")
    if labels.ndim != 1 or labels.dtype.kind not in "iu" or len(labels) != len(images):
        raise fail(f"labels are {labels.dtype} {labels.shape}; expected {len(images)} integers")
    if labels.min() < 0 or labels.max() > 9:
        bad = int(np.argmax((labels < 0) | (labels > 9)))
        raise fail(f"label {labels[bad]} at index {bad}; labels are 0-9")
    return Split(images, labels)


def load_statistics(path: Path) -> dict:
    """The training-set statistics `normalize` wrote, checked: finite means, positive stds."""
    path = Path(path)

    def fail(problem: str) -> InputFileError:
        return InputFileError(f"{path}: {problem}; {REBUILD_PREPARED}")

    try:
        size = path.stat().st_size
        if size <= MAX_STATISTICS_BYTES:
            statistics = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise fail("missing") from None
    except ValueError as error:  # Not JSON, or not UTF-8.
        raise fail(f"is not valid JSON ({shorten(str(error))})") from None
    if size > MAX_STATISTICS_BYTES:
        raise fail(f"{size:,} bytes is far more than statistics take")
    if not isinstance(statistics, dict):
        raise fail(f"holds {quoted(statistics)}; expected an object with mode, mean, std, count")
    missing = [key for key in ("mode", "mean", "std", "count") if key not in statistics]
    if missing:
        raise fail(f"has no {missing[0]!r}")
    mode = statistics["mode"]
    if mode not in STATISTICS_CHANNELS:
        raise fail(f"mode is {quoted(mode)}; expected one of: {', '.join(STATISTICS_CHANNELS)}")
    channels = STATISTICS_CHANNELS[mode]
    for key, least in (("mean", -math.inf), ("std", 0)):
        values = statistics[key]
        if (not isinstance(values, list) or len(values) != channels
                or not all(_is_number(v) and math.isfinite(v) and v > least for v in values)):
            rule = "each finite" if key == "mean" else "each finite and > 0"
            raise fail(f"{key} is {quoted(values)}; expected a list of {channels} (mode {mode}), {rule}")
    count = statistics["count"]
    if not isinstance(count, int) or isinstance(count, bool) or count <= 0:
        raise fail(f"count is {quoted(count)}; expected a positive integer")
    return statistics


def load_prepared(train_params, probing: bool) -> tuple[dict, Split, Split]:
    """What `train` and every cell read of `normalize`'s outputs: the statistics, then the train and
    test splits. In between, steps_per_execution is checked against the epoch's steps, which the
    statistics' count gives, before the larger files are read; not when probing, because the probe
    runs one step per call whatever steps_per_execution says. First, both are checked against
    what dvc.lock records for `normalize` (inputs.verify: a tampered pull is refused)."""
    from stages.trainer.inputs import verify

    verify("normalize", paths.PREPARED, paths.STATISTICS)
    statistics = load_statistics(paths.STATISTICS)
    if not probing:
        check_steps_per_execution(train_params.steps_per_execution,
                                  steps_for(statistics["count"], train_params.batch_size))
    return statistics, load_split(paths.TRAIN_SPLIT), load_split(paths.TEST_SPLIT)


def _is_number(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)
