"""Test helper: record a hand-written cell record in its grid's dvc.lock, as `dvc repro` does after
the cell ran, so that a report binds it (stages/analysis/binding.py)."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import yaml


def bind(path: Path, pipeline: str | None = None) -> None:
    """Lock `path` (reports/<grid>/runs/<name>.json, relative to the working directory) as the
    output of a cell of `pipeline` (by default grids/<grid>/dvc.yaml) that ran its record's seed."""
    path = Path(path)
    pipeline = pipeline or f"grids/{path.parts[-3]}/dvc.yaml"
    lock = Path(pipeline).with_name("dvc.lock")
    lock.parent.mkdir(parents=True, exist_ok=True)
    content = yaml.safe_load(lock.read_text()) if lock.is_file() else {"schema": "2.0", "stages": {}}
    seed = json.loads(path.read_text()).get("seed")
    content["stages"][f"cell@{path.stem}"] = {
        "cmd": f"python -m stages.cell --seed '{seed}' --record '{path.as_posix()}'",
        "outs": [{"path": path.as_posix(), "hash": "md5", "md5": hashlib.md5(path.read_bytes()).hexdigest()}]}
    lock.write_text(yaml.safe_dump(content))


def write_bound(path: Path, record: dict) -> None:
    """Write `record` as JSON at `path` and lock it (bind)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(record))
    bind(path)


def recipe(params):
    """The training settings params.yaml (`params`, parsed) gives a grid's cells."""
    from stages.analysis.binding import Recipe

    return Recipe.of(params.model, params.train)
