"""Check the pulled data and models against dvc.lock: `python tools/verify_pull.py` after `dvc pull`.

DVC's `verify true` re-hashes each file a pull downloads against the name it is stored under, but
not a directory's listing (its `.dir` object): a remote whose listing of data/prepared points
train.npz at another stored file passes it, and DVC checks that file out. This re-hashes, from
the bytes in the workspace and without DVC's cache of hashes, every DVC-cached output of every
pipeline (dvc.yaml and grids/*/dvc.yaml) that is present: a file's md5 against its dvc.lock
entry, a directory's files as DVC lists them (the md5 of that listing) against its entry. The
first mismatch is one line naming the file and exit 1. DVC keeps no pulled listing to compare a
directory's files with, so a directory that does not match names the file that holds another
file's bytes (what a listing pointed at a sibling leaves), else every file with its md5. Outputs not pulled are named
as such, not failed. Cell records (`cache: false`, in git) are bound to the lock by each report
(stages/analysis/binding.py).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from stages.trainer.inputs import mismatch


def cached_outputs(root: Path) -> list[tuple[Path, str]]:
    """(path, md5 in dvc.lock) of every DVC-cached output of every pipeline in `root`."""
    from dvc.repo import Repo

    with Repo(str(root)) as repo:
        return [(Path(out.fs_path).relative_to(root), out.hash_info.value) for stage in repo.index.stages
                for out in stage.outs if out.use_cache and out.hash_info and out.hash_info.value]


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.parse_args(argv)
    root = Path.cwd()
    if not (root / ".dvc").is_dir():
        raise SystemExit(f"verify_pull: error: {root} is not a DVC project; run it from the project's root")
    from dvc.exceptions import DvcException

    try:
        outputs = cached_outputs(root)
    except DvcException as error:
        raise SystemExit(f"verify_pull: error: {' '.join(str(error).split())}") from None
    checked, absent = [], []
    for path, expected in outputs:
        if not path.exists():
            absent.append(str(path))
            continue
        problem = mismatch(path, expected)
        if problem:
            raise SystemExit(f"verify_pull: error: {problem}; do not use it: pull again from a remote you trust "
                             "(`dvc pull --force`), or rebuild it (`dvc repro`)")
        checked.append(str(path))
    print(f"verify_pull: {len(checked)} outputs match dvc.lock ({', '.join(checked) or 'none present'})"
          + (f"; not pulled: {', '.join(absent)}" if absent else ""), file=sys.stderr)


if __name__ == "__main__":
    main()
