"""Every committed grid report is what the current code writes from the committed records.

The reports under reports/<grid>/ (metrics.json and the markdown) are what README.md and docs/
quote, and each was written by its `report` stage from the records beside it. Running every
grid's report again, here, in memory (nothing is written, no figure drawn), must give the same
numbers and words: a change to a report's code that moves any published number or word on the
real records fails here, whichever branch of the code the hand-made records of the grid's own
tests miss. A deliberate change re-runs the report stages (`dvc repro`) and commits the outputs.
"""

from __future__ import annotations

import importlib
import json
import math
from pathlib import Path

import pytest

from stages.analysis import figures
from stages.grids.sections import GRIDS, load_all
from stages.trainer import atomic

ROOT = Path(__file__).resolve().parents[1]


def same(written, committed, where: str = "") -> list[str]:
    """Where two JSON values differ: numbers to 1e-9 relative (another CPU's kernels may move the
    last digits of a float; no printed number moves that little), everything else exactly."""
    if isinstance(written, dict) and isinstance(committed, dict):
        if list(written) != list(committed):
            return [f"{where}: keys {list(written)} != {list(committed)}"]
        return [found for key in written for found in same(written[key], committed[key], f"{where}.{key}")]
    if isinstance(written, list) and isinstance(committed, list):
        if len(written) != len(committed):
            return [f"{where}: {len(written)} items != {len(committed)}"]
        return [found for index, pair in enumerate(zip(written, committed))
                for found in same(*pair, f"{where}[{index}]")]
    numbers = all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in (written, committed))
    if numbers and (math.isclose(written, committed, rel_tol=1e-9, abs_tol=1e-15)
                    or (math.isnan(written) and math.isnan(committed))):
        return []
    return [] if written == committed and type(written) is type(committed) else [f"{where}: {written!r} != {committed!r}"]


@pytest.mark.parametrize("grid", GRIDS)
def test_every_committed_report_is_what_the_code_writes_from_its_records(grid, monkeypatch):
    monkeypatch.chdir(ROOT)  # The reports read their records and dvc.lock files by relative paths.
    module = importlib.import_module(f"stages.grids.{grid}")
    written: dict[Path, object] = {}

    def keep(path, content):
        written[Path(path)] = content

    for owner in (atomic, module):  # A module may have imported them by name.
        for name in ("write_json", "write_text"):
            if hasattr(owner, name):
                monkeypatch.setattr(owner, name, keep)
    for name, value in vars(figures).items():
        if callable(value) and getattr(value, "__module__", None) == figures.__name__:
            monkeypatch.setattr(figures, name, lambda *args, **kwargs: None)
    module.report(load_all(module.PARAMS))
    assert Path("reports") / grid / "metrics.json" in written, f"the {grid} report wrote no metrics.json"
    for path, content in written.items():
        committed = (ROOT / path).read_text(encoding="utf-8")
        if path.suffix == ".json":
            differences = same(json.loads(json.dumps(content)), json.loads(committed))
            assert differences == [], f"{path} differs from what the code computes: {differences[:5]}"
        else:
            assert content == committed, f"{path} differs from what the code writes"
