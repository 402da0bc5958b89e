"""`dvc push --run-cache`, plus the outputs that DVC 3 leaves behind: `python tools/push_run_cache.py`.

The study's cells keep their records in git (`cache: false`), so a clone that never ran the study
has nothing of it to fetch. DVC still records each cell's run in the run-cache and copies the
record into the local cache, but `dvc push` uploads only outputs that are `cache: true`: another
machine's `dvc repro --pull` then finds the run and cannot restore it (DVC PR #8738 discusses the
trade-off). This pushes what `dvc push --run-cache` pushes, then the objects of every local run.
"""

import argparse
import os

from dvc.exceptions import DvcException
from dvc.repo import Repo
from dvc.scm import SCMError


def run_entries(runs: str) -> list[tuple[str, str]]:
    """(key, value) of every run in the local run-cache, laid out as runs/<key[:2]>/<key>/<value>."""
    if not os.path.isdir(runs):
        return []
    return [(key, value) for prefix in os.listdir(runs)
            for key in os.listdir(os.path.join(runs, prefix))
            for value in os.listdir(os.path.join(runs, prefix, key))]


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
        pushed = repo.push(remote=remote, run_cache=True)
        entries = run_entries(repo.stage_cache.cache_dir)
        outputs = set().union(*repo.stage_cache.get_used_objs(entries).values())
        result = repo.cloud.push(outputs, remote=remote)
        if result.failed:
            raise SystemExit(f"push_run_cache: {len(result.failed)} run outputs failed to upload; "
                             "check the remote and run it again")
        print(f"push_run_cache: {pushed} files and run records pushed, "
              f"{len(result.transferred)} run outputs uploaded ({len(entries)} runs)")


if __name__ == "__main__":
    main()
