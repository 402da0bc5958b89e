"""tools/runs.py: the comparison table, on rows as `dvc.api.exp_show` returns them."""

import runpy
from pathlib import Path

import dvc.api

RUNS = Path(__file__).resolve().parents[1] / "tools" / "runs.py"


def test_runs_table_fits_80_columns_and_shows_what_dvc_has(monkeypatch, capsys):
    rows = [
        {"Experiment": None, "rev": "workspace", "typ": "baseline", "bn": "before", "seed": 0.0,
         "train.precision": "float32", "test.accuracy": "!", "test.loss": "!"},  # Not run yet.
        {"Experiment": "a-rather-long-experiment-name-here", "rev": "1a2b3c4", "typ": "branch_commit",
         "bn": "after", "seed": 3.0, "train.precision": "mixed_bfloat16", "test.accuracy": 0.76321,
         "test.loss": 0.68061},
    ]
    monkeypatch.setattr(dvc.api, "exp_show", lambda: rows)
    runpy.run_path(str(RUNS), run_name="__main__")
    lines = capsys.readouterr().out.splitlines()
    assert max(len(line) for line in lines) <= 80
    assert lines[1].split() == ["workspace", "before", "0", "float32", "!", "!"]
    assert lines[2].split() == ["a-rather-long-experiment", "after", "3", "mixed_bfloat16",
                                "0.7632", "0.6806"]
