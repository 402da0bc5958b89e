"""A stage's DVC-tracked inputs, checked against dvc.lock before the stage reads them.

DVC's `verify true` re-hashes each file a pull downloads against the name it is stored under, but
not a directory's listing (its `.dir` object): a remote whose listing of data/prepared points
train.npz at another stored file passes, DVC checks that file out, and its own cache of hashes then
reports the directory as unchanged, so `dvc repro` would train on it. So a stage re-hashes what it
is about to read, from the bytes (no cache of hashes), and compares with what dvc.lock records for
the stage that wrote it: a file's md5, a directory's listing (the md5 of its files' md5s, as DVC 3
computes it). DVC writes a stage's lock entry as soon as that stage ends, so inside `dvc repro` or
`dvc exp run` the inputs always match it unless something other than DVC put them there.

A stage run without DVC, or before its producer has a lock entry, has nothing to compare with and
is not checked. `tools/verify_pull.py` runs the same check over every output of every pipeline.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from stages.trainer.errors import InputFileError

LOCK = Path("dvc.lock")  # The main pipeline's, where `normalize` and `train` record their outputs.


def md5_file(path: Path) -> str:
    """The md5 DVC 3 records for a file: the md5 of its bytes (tools/verify_pull.py's test checks
    this against dvc_data's own function)."""
    hasher = hashlib.md5()
    with Path(path).open("rb") as file:
        for block in iter(lambda: file.read(1 << 20), b""):
            hasher.update(block)
    return hasher.hexdigest()


def listing(folder: Path) -> list[dict]:
    """The folder's files as DVC 3 lists a directory: md5 and relative path, by path."""
    return sorted(({"md5": md5_file(path), "relpath": path.relative_to(folder).as_posix()}
                   for path in folder.rglob("*") if path.is_file()), key=lambda entry: entry["relpath"])


def listing_md5(entries: list[dict]) -> str:
    """What dvc_data's Tree.digest computes: the md5 of the sorted listing as JSON, plus `.dir`."""
    return hashlib.md5(json.dumps(entries, sort_keys=True).encode("utf-8")).hexdigest() + ".dir"


def mismatch(path: Path, expected: str) -> str | None:
    """None if `path` holds what dvc.lock's `expected` md5 says; else why not, in one line."""
    if not expected.endswith(".dir"):
        found = md5_file(path)
        return None if found == expected else f"{path}: md5 {found}, but dvc.lock records {expected}"
    entries = listing(path)
    found = listing_md5(entries)
    if found == expected:
        return None
    # DVC keeps no pulled listing to compare with, so name what a swapped entry leaves behind: a
    # file with the very bytes of another file of the same directory.
    first_with = {}
    for entry in entries:
        if entry["md5"] in first_with:
            return (f"{path / entry['relpath']}: holds the same bytes (md5 {entry['md5']}) as "
                    f"{path / first_with[entry['md5']]}, and {path}'s files hash to {found}, not the "
                    f"{expected} dvc.lock records, so the listing DVC pulled for it was altered")
        first_with[entry["md5"]] = entry["relpath"]
    files = ", ".join(f"{entry['relpath']} {entry['md5']}" for entry in entries)
    return f"{path}: its files ({files}) hash to {found}, but dvc.lock records {expected}, so one of them was replaced"


def locked_outputs(producer: str, lock: Path = LOCK) -> dict[str, str]:
    """{output path: md5} that dvc.lock records for the stage `producer`; empty without one."""
    from stages.trainer.params import read_yaml

    if not lock.is_file():
        return {}
    stage = ((read_yaml(lock) or {}).get("stages") or {}).get(producer) or {}
    return {out["path"]: out["md5"] for out in stage.get("outs") or [] if isinstance(out, dict) and "md5" in out}


def verify(producer: str, *inputs: Path) -> None:
    """Refuse, in one line, an input that is not what dvc.lock records for `producer`'s output."""
    expected = locked_outputs(producer)
    for path in inputs:
        if path.as_posix() in expected and path.exists():
            problem = mismatch(path, expected[path.as_posix()])
            if problem:
                raise InputFileError(
                    f"{problem}; it is not what `{producer}` wrote or what was pulled for it, so nothing "
                    f"was read; rebuild it with `dvc repro -f -s {producer}`, or pull it again from a "
                    f"remote you trust")
