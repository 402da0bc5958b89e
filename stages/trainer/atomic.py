"""Write outputs so that readers only ever see a complete file or none at all, and leave no trash.

An output is written to a temporary name beside it, `.<stem>.<8 hex digits>.partial<suffix>`, and
renamed over it only on success. A process killed mid-write (SIGKILL, power loss) cannot delete its
temporary file, so every write first removes the stale temporaries of the same output: the next
run of the stage cleans up. Until then they are invisible to git and DVC, whose ignore files
(.gitignore, .dvcignore) list the pattern `.*.partial*`. A writer holds an exclusive flock on its
temporary while it uses it, so that clean-up never removes the temporary of a writer that is
still running (two runs in one workspace); the kernel drops the lock when the writer dies.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import re
import secrets
import shutil
from pathlib import Path
from typing import BinaryIO, Iterator

from stages.trainer.cli import raise_if_terminated

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
        raise_if_terminated()  # A SIGTERM whose exception C code swallowed: publish nothing.
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
    handle = os.open(folder, os.O_RDONLY)
    try:
        fcntl.flock(handle, fcntl.LOCK_EX)
        yield folder
    finally:
        shutil.rmtree(folder, ignore_errors=True)
        os.close(handle)


def replace_folder(source: Path, target: Path) -> None:
    """Move folder `source` to `target`, replacing any folder there. A rename cannot replace a
    folder that has files, so the old one is renamed aside first and then deleted."""
    raise_if_terminated()  # A SIGTERM whose exception C code swallowed: publish nothing.
    target.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_temps(target)  # A folder set aside by a replacement that was killed halfway.
    if target.exists():
        old = _temp_name(target)
        os.replace(target, old)
        os.replace(source, target)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.replace(source, target)


def remove_stale_temps(path: Path) -> None:
    """Delete temporaries of `path` (files, or folders of temporary_folder) that a killed writer
    left behind; a temporary whose writer still runs is locked, and stays."""
    pattern = re.compile(rf"\.{re.escape(path.stem)}\.[0-9a-f]{{8}}{TEMP_MARK}{re.escape(path.suffix)}")
    for entry in path.parent.iterdir():
        if pattern.fullmatch(entry.name) and not _in_use(entry):
            if entry.is_dir() and not entry.is_symlink():
                shutil.rmtree(entry, ignore_errors=True)
            else:
                entry.unlink(missing_ok=True)


def _in_use(entry: Path) -> bool:
    """Whether a live writer holds `entry`'s lock (see the module's docstring)."""
    try:
        handle = os.open(entry, os.O_RDONLY | os.O_NOFOLLOW)
    except FileNotFoundError:
        return True  # Gone meanwhile: nothing to remove.
    except OSError:  # A link, or unreadable: no writer of ours holds it.
        return False
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        return False
    except BlockingIOError:
        return True
    finally:
        os.close(handle)


@contextlib.contextmanager
def _temporary(path: Path) -> Iterator[Path]:
    path.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_temps(path)
    while True:
        temp = _temp_name(path)
        try:
            handle = os.open(temp, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600)
            break
        except FileExistsError:  # 2**32 names: only ever a coincidence, so draw again.
            continue
    try:
        fcntl.flock(handle, fcntl.LOCK_EX)
        yield temp
    except OSError as error:
        if error.errno is not None and error.filename is None:
            raise OSError(error.errno, error.strerror, str(path)) from error
        raise
    finally:
        os.close(handle)
        if temp.exists():
            temp.unlink()


def _temp_name(path: Path) -> Path:
    return path.parent / f".{path.stem}.{secrets.token_hex(4)}{TEMP_MARK}{path.suffix}"


def _current_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask
