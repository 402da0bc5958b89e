"""Write outputs so that readers only ever see a complete file or none at all."""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from pathlib import Path
from typing import BinaryIO, Iterator


@contextlib.contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temp path beside `path` (same suffix); rename it over `path` only on success.

    On any exception the temp file is deleted and `path` is left untouched, so an interrupted
    stage never leaves a half-written output that DVC or a later stage could mistake for valid.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temp_name = tempfile.mkstemp(prefix=f".{path.stem}.", suffix=f".partial{path.suffix}",
                                         dir=path.parent)
    os.close(handle)
    try:
        yield Path(temp_name)
        os.chmod(temp_name, 0o666 & ~_current_umask())  # mkstemp makes 0600; outputs are shared.
        os.replace(temp_name, path)
    finally:
        if os.path.exists(temp_name):
            os.unlink(temp_name)


@contextlib.contextmanager
def atomic_write(path: str | Path) -> Iterator[BinaryIO]:
    """A binary handle whose content replaces `path` only if the block completes."""
    with atomic_path(path) as temp, temp.open("wb") as out:
        yield out


def write_json(path: str | Path, data: object) -> None:
    write_text(path, json.dumps(data, indent=2) + "\n")


def write_text(path: str | Path, text: str) -> None:
    with atomic_write(path) as out:
        out.write(text.encode())


def _current_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask
