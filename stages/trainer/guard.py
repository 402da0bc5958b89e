"""One writer per workspace: a training stage publishes only if what it read is still in place.

DVC reads params.yaml and hashes a stage's inputs when the stage *ends*, and records those in
dvc.lock and its run-cache. Two runs in one workspace (two `dvc exp run` started together) can
change params.yaml or the prepared data while a stage trains; the stage would then publish a
model that dvc.lock attributes to params it never used, and the run-cache would hand that model
out again later. So a training stage notes the params it declares and its input files when it
reads them, and checks both once more just before it writes any output.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

from stages.trainer.errors import BnlabError, ParamsError, quoted
from stages.trainer.params import ParamsView, read_yaml

QUEUE_HINT = ("run experiments one at a time in a workspace, or in parallel through `dvc exp run "
              "--queue ...` and `dvc queue start` (docs/pipeline.md)")
MISSING = "(missing)"


class ConcurrentChangeError(BnlabError):
    """Something this stage read changed while it ran; it published nothing."""


class Snapshot:
    """The declared params (as params.yaml spells them, which is what DVC records) and the input
    files (a file, or every file under a folder), as they were when the stage read them."""

    def __init__(self, params: ParamsView, inputs: list[Path], code: list[Path] = ()) -> None:
        self.source, self.keys = params.source, params.declared_keys()
        self.inputs = [Path(path) for path in inputs]
        self.values = self._declared_leaves()
        self.files = _fingerprints(self.inputs)
        # The code that runs, as it was at the start: DVC hashes it when the stage ends, so an
        # edit during training would be recorded as the code that trained (provenance.code_files).
        # By content, as DVC hashes it: an edit that keeps size and time still counts.
        self.code = [Path(path) for path in code]
        self.code_files = _digests(self.code)

    def check(self) -> None:
        """Raise ConcurrentChangeError if a declared param or an input differs from the snapshot.
        Keys the stage does not declare may change: its result does not depend on them."""
        try:
            now = self._declared_leaves()
        except (ParamsError, OSError) as error:
            raise ConcurrentChangeError(f"{self.source} changed while this stage ran and cannot be "
                                        f"read now ({error}); nothing was published; {QUEUE_HINT}") from None
        changed = sorted(key for key in set(now) | set(self.values)
                         if now.get(key, MISSING) != self.values.get(key, MISSING))
        if changed:
            key = changed[0]
            raise ConcurrentChangeError(
                f"{self.source} changed while this stage ran ({key}: "
                f"{quoted(self.values.get(key, MISSING))} -> {quoted(now.get(key, MISSING))}), so its "
                f"result would be recorded under params it did not use; nothing was published; {QUEUE_HINT}")
        code = _digests(self.code)
        if code != self.code_files:
            name = next(name for name in sorted(code) if code.get(name) != self.code_files.get(name))
            raise ConcurrentChangeError(f"{name} changed while this stage ran, so the code DVC would record "
                                        f"is not the code that trained; nothing was published; run the "
                                        f"stage again once the code is as you want it")
        files = _fingerprints(self.inputs)
        if files != self.files:
            name = next(name for name in sorted(set(files) | set(self.files))
                        if files.get(name) != self.files.get(name))
            raise ConcurrentChangeError(f"{name} changed while this stage ran; nothing was "
                                        f"published; {QUEUE_HINT}")

    def _declared_leaves(self) -> dict[str, object]:
        """Every scalar under the declared keys, by its dotted name ("train.epochs": 10)."""
        document = read_yaml(Path(self.source))
        leaves: dict[str, object] = {}
        for key in self.keys:
            value = document
            for name in key.split("."):
                value = value.get(name, MISSING) if isinstance(value, dict) else MISSING
            _flatten(key, value, leaves)
        return leaves


def _flatten(key: str, value: object, leaves: dict[str, object]) -> None:
    if isinstance(value, dict):
        for name, item in value.items():
            _flatten(f"{key}.{name}", item, leaves)
    else:
        leaves[key] = value


def _fingerprints(inputs: list[Path]) -> dict[str, tuple[int, int, int] | None]:
    """Path -> (inode, size, modification time in ns) of each file; None if it is missing. Every
    writer in this project replaces a file by renaming a new one over it, which changes the inode
    even when size and time agree."""
    files: dict[str, tuple[int, int, int] | None] = {}
    for path in inputs:
        for file in (sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]):
            try:
                status = os.stat(file)
                files[str(file)] = (status.st_ino, status.st_size, status.st_mtime_ns)
            except FileNotFoundError:
                files[str(file)] = None
    return files


def _digests(files: list[Path]) -> dict[str, str | None]:
    """Path -> sha256 of each file's bytes; None if it is missing. Code is small (about 150 KB)."""
    digests: dict[str, str | None] = {}
    for file in files:
        try:
            digests[str(file)] = hashlib.sha256(Path(file).read_bytes()).hexdigest()
        except FileNotFoundError:
            digests[str(file)] = None
    return digests
