"""Write outputs so that readers only ever see a complete file or none at all, and leave no trash.

An output is written to a temporary name beside it, `.<stem>.<8 hex digits>.partial<suffix>`, and
renamed over it only on success. A process killed mid-write (SIGKILL, power loss) cannot delete its
temporary file, so every write first removes the stale temporaries of the same output: the next
run of the stage cleans up. Until then they are invisible to git and DVC, whose ignore files
(.gitignore, .dvcignore) list the pattern `.*.partial*`.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import secrets
import shutil
from pathlib import Path
from typing import BinaryIO, Iterator

TEMP_MARK = ".partial"


@contextlib.contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a new empty temp file beside `path` (same suffix); rename it over `path` on success.

    On any exception the temp file is deleted and `path` is left untouched. An OSError without a
    file name (a failed write to an open handle, such as a full disk) is given `path` as its name.
    """
    path = Path(path)
    with _temporary(path) as temp:
        yield temp
        os.chmod(temp, 0o666 & ~_current_umask())  # Created 0600; outputs are shared.
        os.replace(temp, path)


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


@contextlib.contextmanager
def temporary_folder(path: str | Path) -> Iterator[Path]:
    """Yield a new empty folder beside `path`, named as its temporaries are; removed on the way
    out with whatever is still in it. What should survive is moved out first (replace_folder,
    os.replace), within one file system."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_temps(path)
    folder = _temp_name(path)
    folder.mkdir()
    try:
        yield folder
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def replace_folder(source: Path, target: Path) -> None:
    """Move folder `source` to `target`, replacing any folder there. A rename cannot replace a
    folder that has files, so the old one is renamed aside first and then deleted."""
    target.parent.mkdir(parents=True, exist_ok=True)
    if target.exists():
        old = _temp_name(target)
        os.replace(target, old)
        os.replace(source, target)
        shutil.rmtree(old)
    else:
        os.replace(source, target)


def remove_stale_temps(path: Path) -> None:
    """Delete temporaries of `path` (files, or folders of temporary_folder) that a killed writer
    left behind."""
    pattern = re.compile(rf"\.{re.escape(path.stem)}\.[0-9a-f]{{8}}{TEMP_MARK}{re.escape(path.suffix)}")
    for entry in path.parent.iterdir():
        if pattern.fullmatch(entry.name):
            if entry.is_dir() and not entry.is_symlink():
                shutil.rmtree(entry)
            else:
                entry.unlink()


@contextlib.contextmanager
def _temporary(path: Path) -> Iterator[Path]:
    path.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_temps(path)
    while True:
        temp = _temp_name(path)
        try:
            os.close(os.open(temp, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600))
            break
        except FileExistsError:  # 2**32 names: only ever a coincidence, so draw again.
            continue
    try:
        yield temp
    except OSError as error:
        if error.errno is not None and error.filename is None:
            raise OSError(error.errno, error.strerror, str(path)) from error
        raise
    finally:
        if temp.exists():
            temp.unlink()


def _temp_name(path: Path) -> Path:
    return path.parent / f".{path.stem}.{secrets.token_hex(4)}{TEMP_MARK}{path.suffix}"


def _current_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask
