"""A stage that refuses under DVC puts back the committed outputs DVC removed before running it.

DVC removes a stage's outputs before it starts the stage's command, and records nothing when the
command fails: a stage that refuses bad params, a tampered input or a malformed record would leave
the workspace without the outputs that dvc.lock still records, and a record not yet in git would be
gone. The check stage refuses bad params before that happens, but `dvc repro -s <stage>` skips it,
and some refusals need what only the stage reads (the data's size, a record's fields). So every
stage's one-line refusal (cli.stage_main) first puts back, when DVC runs it ($DVC_STAGE, which DVC
sets for every command), the outputs that dvc.lock records for it and that are missing: the
workspace is then as before the run, which is what the lock says.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
from pathlib import Path


def restore_for_refusal() -> str:
    """restore_removed_outputs for the stage DVC is running, if any; the sentence for the refusal."""
    stage = os.environ.get("DVC_STAGE", "")
    return restore_removed_outputs(stage) if stage else ""


def restore_removed_outputs(stage: str) -> str:
    """Put back the outputs of `stage` (DVC's address: `train`, `grids/map/dvc.yaml:relu@after-3`)
    that are missing now, as its dvc.lock records them: a file from the last commit (a record, a
    metric) or from DVC's cache (a model), taken only if its md5 is the lock's; a folder from the
    last commit, only if dvc.lock is the committed one (the commit then holds what the lock
    records). Returns what it did, as the end of the refusal's line."""
    import yaml

    dvcfile, _, name = stage.rpartition(":")
    # The address is relative to the project's root; the lock's paths, to the stage's folder (ours).
    lock = Path(os.environ.get("DVC_ROOT", "."), dvcfile or "dvc.yaml").with_name("dvc.lock")
    try:
        entry = ((yaml.safe_load(lock.read_text(encoding="utf-8")) or {}).get("stages") or {}).get(name) or {}
        outputs = [(str(out["path"]), str(out.get("md5", ""))) for out in entry.get("outs") or []]
    except (OSError, yaml.YAMLError, AttributeError, TypeError, KeyError):
        return ""
    missing = [(path, md5) for path, md5 in outputs if not Path(path).exists()]
    if not missing:
        return ""
    restored, lost = [], []
    for path, md5 in missing:
        if md5.endswith(".dir"):
            done = _lock_is_committed(lock) and _git("checkout", "HEAD", "--", path) is not None
        else:
            done = _restore_file(Path(path), md5)
        (restored if done else lost).append(path)
    said = []
    if restored:
        said.append(f"DVC had removed this stage's outputs before running it; put back as dvc.lock records "
                    f"them: {', '.join(restored)}")
    if lost:
        said.append(f"not put back: {', '.join(lost)} (`dvc checkout {stage}` or `git checkout -- <path>`)")
    return "; " + "; ".join(said) if said else ""


def _restore_file(path: Path, md5: str) -> bool:
    from stages.trainer.atomic import atomic_write

    candidates = [lambda: _git("show", f"HEAD:./{path.as_posix()}"), lambda: _cached(md5)]
    for candidate in candidates:
        data = candidate()
        if data is not None and hashlib.md5(data).hexdigest() == md5:
            path.parent.mkdir(parents=True, exist_ok=True)
            with atomic_write(path) as out:
                out.write(data)
            return True
    return False


def _cached(md5: str) -> bytes | None:
    """A file's bytes from DVC's local cache, found through DVC's own API (its layout is DVC's)."""
    try:
        from dvc.repo import Repo

        with Repo(".") as repo:
            return Path(repo.cache.local.oid_to_path(md5)).read_bytes()
    except Exception:  # noqa: BLE001 - no DVC repo, no cache, no object: nothing to put back from.
        return None


def _lock_is_committed(lock: Path) -> bool:
    return _git("diff", "--quiet", "HEAD", "--", lock.as_posix()) is not None


def _git(*args: str) -> bytes | None:
    """git's standard output, or None where git fails (outside a repository, an unknown path)."""
    try:
        return subprocess.run(["git", *args], capture_output=True, check=True, timeout=60).stdout
    except (OSError, subprocess.SubprocessError):
        return None
