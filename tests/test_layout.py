"""The layout is the cache boundary: a new variant module or a new grid re-keys no cached cell.

With real DVC on tiny data: a study cell is committed (its record written by hand: what matters
here is which dependencies DVC hashes, not what the cell trains), then a variant module and,
separately, a grid with its own params section and dvc.yaml are added; `dvc status` of the
committed cell stays clean each time. An edit to the package stages/trainer does re-key it.
"""

from __future__ import annotations

import json

import pytest

pytestmark = pytest.mark.dvc

CELL = "grids/study/dvc.yaml:cell@before-0"
DUMMY_VARIANT = '''"""`dummy`: the `none` block, for tests/test_layout.py."""

CONV_BIAS = True
BATCH_NORM = None


def block(conv, norm, activation, pool, pool_first):
    return [conv, activation, pool]
'''
DUMMY_GRID = """vars:
  - ../../params.yaml:dummy

stages:
  cell:
    matrix:
      bn: ${dummy.variants}
      seed: ${dummy.seeds}
    wdir: ../..
    cmd: >-
      python -m stages.cell --grid dummy --bn '${item.bn}' --seed '${item.seed}' --no-probes
      --record 'reports/dummy/runs/${item.bn}-${item.seed}.json'
    deps:
      - stages/cell.py
      - stages/trainer
      - stages/variants/${item.bn}.py
      - data/prepared
      - data/stats.json
    params:
      - model
      - train
    plots:
      - reports/dummy/runs/${item.bn}-${item.seed}.json:
          cache: false
"""


def committed_cell(project):
    project.dvc("repro", "normalize")
    record = project.root / "reports/study/runs/before-0.json"
    record.parent.mkdir(parents=True, exist_ok=True)
    record.write_text(json.dumps({"bn": "before", "seed": 0}))
    project.dvc("commit", "-f", CELL)
    assert "up to date" in project.dvc("status", CELL).stdout


def test_a_new_variant_module_or_grid_leaves_every_cached_cell_cached(project):
    committed_cell(project)
    (project.root / "stages/variants/dummy.py").write_text(DUMMY_VARIANT)
    assert "up to date" in project.dvc("status", CELL).stdout, "a new variant re-keyed a cell"

    project.set_params(dummy={"variants": ["dummy"], "seeds": [0]})
    (project.root / "grids/dummy").mkdir()
    (project.root / "grids/dummy/dvc.yaml").write_text(DUMMY_GRID)
    assert "grids/dummy/dvc.yaml:cell@dummy-0" in project.dvc("status", "grids/dummy/dvc.yaml").stdout
    assert "up to date" in project.dvc("status", CELL).stdout, "a new grid re-keyed a cell"

    # The package is what can change a number: an edit there re-keys the cell.
    with (project.root / "stages/trainer/training.py").open("a") as code:
        code.write("\n# an edit\n")
    assert "modified:           stages/trainer" in project.dvc("status", CELL).stdout
