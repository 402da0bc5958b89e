"""`dvc push --run-cache`, plus the outputs that DVC 3 leaves behind: `python tools/push_run_cache.py`.

The study's cells keep their records in git (`cache: false`), so a clone that never ran the study
has nothing of it to fetch. DVC still records each cell's run in the run-cache and copies the
record into the local cache, but `dvc push` uploads only outputs that are `cache: true`: another
machine's `dvc repro --pull` then finds the run and cannot restore it (DVC PR #8738 discusses the
trade-off). This pushes what `dvc push --run-cache` pushes, then the objects of every local run.
"""

import argparse
import os
from pathlib import Path

from dvc.exceptions import DvcException
from dvc.repo import Repo
from dvc.scm import SCMError

from stages.trainer.inputs import md5_file


def run_entries(runs: str) -> list[tuple[str, str]]:
    """(key, value) of every run in the local run-cache, laid out as runs/<key[:2]>/<key>/<value>."""
    if not os.path.isdir(runs):
        return []
    return [(key, value) for prefix in os.listdir(runs)
            for key in os.listdir(os.path.join(runs, prefix))
            for value in os.listdir(os.path.join(runs, prefix, key))]


def check_objects(repo, outputs) -> None:
    """Refuse to upload a run's output whose object in the local cache is not the bytes its name
    (its md5) says: a collector would restore it as that run's output. A directory's object is its
    listing, whose md5 is its name without `.dir`."""
    for hash_info in outputs:
        value = getattr(hash_info, "value", None) or ""
        path = repo.cache.local.oid_to_path(value)
        if not os.path.isfile(path):
            raise SystemExit(f"push_run_cache: the run-cache names object {value}, which the local cache lacks; "
                             "re-run the cell that made it (`dvc repro <cell>`), then push again; nothing was uploaded")
        found = md5_file(Path(path))
        if found != value.removesuffix(".dir"):
            raise SystemExit(f"push_run_cache: {path}: its bytes hash to {found}, not the {value} it is "
                             "stored as, so it was altered in the local cache; nothing was uploaded: delete that file and "
                             "re-run the cell that made it (`dvc repro <cell>`)")


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("-r", "--remote", help="remote name (default: the default remote)")
    args = parser.parse_args(argv)
    try:
        push(args.remote)
    except (DvcException, SCMError, OSError) as error:
        # No remote, an unknown one, one that is a file or cannot be reached: DVC's own message,
        # on one line, with what to check.
        raise SystemExit(f"push_run_cache: {' '.join(str(error).split())}; check `dvc remote list` "
                         "and that the remote is reachable") from None


def push(remote: str | None) -> None:
    with Repo() as repo:
        entries = run_entries(repo.stage_cache.cache_dir)
        outputs = set().union(*repo.stage_cache.get_used_objs(entries).values())
        check_objects(repo, outputs)  # Before anything, run records included, is uploaded.
        pushed = repo.push(remote=remote, run_cache=True)
        result = repo.cloud.push(outputs, remote=remote)
        if result.failed:
            raise SystemExit(f"push_run_cache: {len(result.failed)} run outputs failed to upload; "
                             "check the remote and run it again")
        print(f"push_run_cache: {pushed} files and run records pushed, "
              f"{len(result.transferred)} run outputs uploaded ({len(entries)} runs)")


if __name__ == "__main__":
    main()
