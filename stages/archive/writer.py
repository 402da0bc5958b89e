"""Write CIFAR-10-format archives, for tests and benchmarks that must not need the real data.

The pipeline never imports this: it only reads archives (cifar.py), so no stage depends on it.
"""

from __future__ import annotations

import io
import tarfile
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from stages.trainer.atomic import atomic_write
from stages.trainer.cifar import CLASS_NAMES, FOLDER, META_MEMBER, TEST_MEMBER, TRAIN_MEMBERS, Split


def encode_records(split: Split) -> bytes:
    """CIFAR binary records, the inverse of parsing: a label byte, then the R, G and B planes."""
    planes = split.images.transpose(0, 3, 1, 2).reshape(len(split.labels), -1)
    return np.concatenate([split.labels.astype(np.uint8)[:, None], planes], axis=1).tobytes()


def write_archive(path: Path, train_parts: Sequence[Split], test: Split) -> None:
    """An archive laid out like the official one: class names, five training files, a test file."""
    members = {META_MEMBER: ("\n".join(CLASS_NAMES) + "\n").encode()}
    members.update({name: encode_records(part) for name, part in zip(TRAIN_MEMBERS, train_parts, strict=True)})
    members[TEST_MEMBER] = encode_records(test)
    write_members(path, members)


def write_members(path: Path, members: dict[str, bytes]) -> None:
    """A tar.gz holding CIFAR-10's folder entry and then `members` (name -> bytes), verbatim."""
    with atomic_write(path) as out, tarfile.open(fileobj=out, mode="w:gz") as archive:
        directory = tarfile.TarInfo(FOLDER)
        directory.type = tarfile.DIRTYPE
        archive.addfile(directory)
        for name, payload in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(payload)
            archive.addfile(info, io.BytesIO(payload))


def random_split(count: int, generator: np.random.Generator) -> Split:
    """Uniform noise images with random labels: the real data's shapes and dtypes, nothing to learn."""
    return Split(generator.integers(0, 256, (count, 32, 32, 3), dtype=np.uint8),
                 generator.integers(0, 10, count).astype(np.uint8))
