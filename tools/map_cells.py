"""Run the placement map's cells seed by seed: `python tools/map_cells.py [PART ...] [--commit]`.

`dvc repro grids/map/dvc.yaml` runs a matrix variant by variant (every `before`, then every
`after`), so an interrupted run leaves unpaired cells, and cells of one pair may end up on two
machines, whose float32 numerics differ by up to ~0.3 points a cell. This runs each part's cells
in the order of its seeds, both variants of a seed one after the other (`dvc repro` of each cell,
which runs the grid's check and prepares the data first where needed), skipping the cells that
one `dvc status` of the grid finds done, and so resumes a stopped run where it stopped; the parts in
the order given (default: params.yaml's). With --commit, each finished cell's record and lock
entry are committed at once. The report says which pairs ran on one machine (their records'
numerics fingerprints).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from stages.grids.map import PIPELINE, record_path, stage  # noqa: E402
from stages.grids.sections import map_design, read_all  # noqa: E402
from stages.trainer.errors import BnlabError  # noqa: E402


def cells_in_order(parts: dict, names: list[str]) -> list[tuple[str, Path]]:
    """(DVC stage, record) of every cell of the named parts: per part, seed by seed, pairs together."""
    order = []
    for name in names:
        part = parts[name]
        for seed in part.seeds:
            for rate in part.learning_rates or [None]:
                for bn in part.variants:
                    order.append((stage(name, bn, seed, rate), record_path(name, bn, seed, rate)))
    return order


def stale_stages() -> set[str]:
    """The grid's stages that `dvc status` finds not done, from one call: asking per cell costs a
    DVC start-up (seconds) for each of the grid's cells on every resume."""
    status = subprocess.run([sys.executable, "-m", "dvc", "status", "--json", PIPELINE], cwd=ROOT,
                            capture_output=True, text=True)
    if status.returncode != 0:
        said = (status.stderr or status.stdout).strip().splitlines()
        raise BnlabError(f"`dvc status {PIPELINE}` failed ({said[-1] if said else f'exit {status.returncode}'}); "
                         "run it to see why, then run this again")
    return set(json.loads(status.stdout or "{}"))


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("parts", nargs="*", help="parts of params.yaml's map to run, in this order (default: all)")
    parser.add_argument("--commit", action="store_true", help="git commit each record and lock entry as it is made")
    args = parser.parse_args(argv)
    try:
        params = read_all(ROOT / "params.yaml")
        _, parts = map_design(params.map, params.model, params.train)
        if unknown := [name for name in args.parts if name not in parts]:
            raise BnlabError(f"{unknown[0]} is not a part of params.yaml's map ({', '.join(parts)})")
        stale = stale_stages()
    except BnlabError as error:
        print(f"map_cells: error: {error}", file=sys.stderr)
        return 2
    for name, record in cells_in_order(parts, args.parts or list(parts)):
        if record.is_file() and name not in stale:
            continue
        print(f"map_cells: {name}", flush=True)
        done = subprocess.run([sys.executable, "-m", "dvc", "repro", name], cwd=ROOT)
        if done.returncode != 0:
            print(f"map_cells: error: {name} failed (exit {done.returncode}); run again to resume", file=sys.stderr)
            return done.returncode
        if args.commit:
            lock = ROOT / PIPELINE.replace("dvc.yaml", "dvc.lock")
            subprocess.run(["git", "add", str(record), str(lock)], cwd=ROOT, check=True)
            if subprocess.run(["git", "diff", "--cached", "--quiet"], cwd=ROOT).returncode:  # Else nothing new.
                subprocess.run(["git", "commit", "-q", "-m", f"Map grid on real CIFAR-10: cell {name.split(':')[1]} "
                                "(record and lock entry)"], cwd=ROOT, check=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
