"""One writer per workspace: a training stage publishes only if what it read is still in place.

DVC reads params.yaml and hashes a stage's inputs when the stage *ends*, and records those in
dvc.lock and its run-cache. Two runs in one workspace (two `dvc exp run` started together) can
change params.yaml or the prepared data while a stage trains; the stage would then publish a
model that dvc.lock attributes to params it never used, and the run-cache would hand that model
out again later. So a training stage notes the params it declares and its input files when it
reads them, and checks both once more just before it writes any output.
"""

from __future__ import annotations

import os
from pathlib import Path

from stages.lib.errors import BnlabError, quoted
from stages.lib.params import ParamsView, load_params

QUEUE_HINT = ("run experiments one at a time in a workspace, or in parallel through `dvc exp run "
              "--queue ...` and `dvc queue start` (docs/pipeline.md)")


class ConcurrentChangeError(BnlabError):
    """Something this stage read changed while it ran; it published nothing."""


class Snapshot:
    """The declared params and the input files (a file or every file under a folder) as read."""

    def __init__(self, params: ParamsView, inputs: list[Path]) -> None:
        self.params, self.inputs = params, [Path(path) for path in inputs]
        self.values = params.declared_values()
        self.files = _fingerprints(self.inputs)

    def check(self) -> None:
        """Raise ConcurrentChangeError if params.yaml or an input differs from the snapshot."""
        source = self.params.source
        try:
            now = load_params(self.values, source).declared_values()
        except BnlabError as error:
            raise ConcurrentChangeError(f"{source} changed while this stage ran and is now invalid "
                                        f"({error}); nothing was published; {QUEUE_HINT}") from None
        changed = [key for key in self.values if now[key] != self.values[key]]
        if changed:
            key = changed[0]
            raise ConcurrentChangeError(
                f"{source} changed while this stage ran ({key}: {quoted(_plain(self.values[key]))} -> "
                f"{quoted(_plain(now[key]))}), so its result would be recorded under params it did not "
                f"use; nothing was published; {QUEUE_HINT}")
        files = _fingerprints(self.inputs)
        if files != self.files:
            name = next(name for name in sorted(set(files) | set(self.files))
                        if files.get(name) != self.files.get(name))
            raise ConcurrentChangeError(f"{name} changed while this stage ran; nothing was "
                                        f"published; {QUEUE_HINT}")


def _plain(value: object) -> object:
    """A section's values as a dict, so the message shows them rather than a class name."""
    return vars(value) if hasattr(value, "__dataclass_fields__") else value


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
