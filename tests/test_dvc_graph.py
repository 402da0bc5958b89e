"""Every pipeline declares exactly the code and params each stage runs, derived here from the code.

The code a stage must declare is what tools/stage_deps.py derives: for a training stage (`train`,
every grid's cell) its entry module, the package stages/trainer and its own variant's module, and
nothing else of the project may run; for any other stage, every project file it runs (imports
inside functions included), with stages/trainer as one folder. The params are what the module's
`params_used()` returns for the stage's own command line, and `load_params` refuses to give a
stage any other key (tests/test_params.py). So a stage can neither read an undeclared param nor
run undeclared code without this test failing, and `dvc status` never calls a stale result fresh.
"""

from __future__ import annotations

import importlib
import os
import subprocess
import sys
from pathlib import Path

import networkx
import pytest
import yaml
from dvc.dependency.param import ParamsDependency
from dvc.repo import Repo

from tools.stage_deps import (PACKAGE, TRAINING_ENTRIES, code_run_by, entry_points, expected_code,
                               outside_package)

ROOT = Path(__file__).resolve().parents[1]


def declared(stage) -> tuple[set[str], set[str]]:
    code, params = set(), set()
    for dependency in stage.deps:
        if isinstance(dependency, ParamsDependency):
            params.update(dependency.params)
        elif dependency.def_path.startswith("stages/"):
            code.add(str(Path(dependency.fs_path).relative_to(ROOT)))
    return code, params


def variant_of(command: str | list[str]) -> str | None:
    return next((argv[argv.index("--bn") + 1] for _, argv in entry_points(command) if "--bn" in argv), None)


def all_stages():
    """Each stage with what it declares, and each stage's upstream: the stages `dvc repro` of it
    runs first (in DVC's graph, an edge goes from a stage to the stage whose output it reads)."""
    with Repo(str(ROOT)) as repo:
        bn = yaml.safe_load((ROOT / "params.yaml").read_text())["bn"]  # The main pipeline's variant.
        graph = repo.index.graph
        upstream = {stage.addressing: {found.addressing for found in networkx.descendants(graph, stage)}
                    for stage in repo.index.stages}
        return [(stage.addressing, stage.cmd, *declared(stage), variant_of(stage.cmd) or bn)
                for stage in repo.index.stages], upstream


STAGES, UPSTREAM = all_stages()
GRIDS = ("study", "sweep", "placement", "norms", "head", "batch", "map", "rerun")


def test_every_pipeline_is_covered():
    names = {name for name, *_ in STAGES}
    assert {"fetch", "normalize", "train", "evaluate", "report"} <= names
    for grid in GRIDS:
        assert f"grids/{grid}/dvc.yaml:report" in names
        assert any(name.startswith(f"grids/{grid}/dvc.yaml:") and "@" in name for name in names), grid


@pytest.mark.parametrize("name, command, code, params, bn", STAGES, ids=[s[0] for s in STAGES])
def test_stage_declares_exactly_the_code_and_params_it_runs(name, command, code, params, bn):
    expected_params = set()
    for module_name, argv in entry_points(command):
        module = importlib.import_module(module_name)
        expected_params |= set(module.params_used(module.parse_args(argv)))
        if module_name in TRAINING_ENTRIES:  # The package boundary: nothing else can change a number.
            assert outside_package(module_name, bn) == set(), f"{name} runs code outside {PACKAGE}"
    assert sorted(code) == sorted(expected_code(command, bn)), \
        f"{name}: code deps (`python tools/stage_deps.py` prints them)"
    assert sorted(params) == sorted(expected_params), f"{name}: params"


@pytest.mark.parametrize("name, command", [(name, command) for name, command, *_ in STAGES
                                           if any(module in TRAINING_ENTRIES for module, _ in entry_points(command))])
def test_every_training_stage_runs_its_pipelines_check_first(name, command):
    """`dvc repro -s` skips the check stage: the check, with no params value in its command, must
    then be the stage's own first command (stages/check.py), or a value reaches a shell."""
    pipeline = name.rpartition(":")[0]
    grid = ["--grid", Path(pipeline).parent.name] if pipeline.startswith("grids/") else []
    assert isinstance(command, list) and len(command) == 2, name
    assert entry_points(command[0], gates=True) == [("stages.check", [*grid, "--gate"])], name
    assert "$" not in command[0] and "'" not in command[0], name


@pytest.mark.parametrize("grid", ["sweep", "batch", "placement", "map", "rerun"])
def test_a_report_that_reads_the_studys_records_has_every_study_cell_upstream(grid):
    """So `dvc repro grids/<grid>/dvc.yaml` in a fresh clone trains the study's cells first. The
    grid tests start from a project whose study has run (conftest's `studied`): this is where
    the dependency itself is checked, on the graph DVC runs."""
    study_cells = {name for name, *_ in STAGES if name.startswith("grids/study/dvc.yaml:cell@")}
    assert len(study_cells) > 10
    assert study_cells <= UPSTREAM[f"grids/{grid}/dvc.yaml:report"]
    assert not study_cells & UPSTREAM["grids/norms/dvc.yaml:report"]  # Reads no study record.


def test_the_import_walk_finds_nested_and_function_level_imports():
    files = code_run_by("stages.report")  # Imports keras, figures, model... inside main().
    assert {"stages/report.py", "stages/analysis/run_figures.py", "stages/trainer/__init__.py",
            "stages/trainer/model.py", "stages/trainer/batch_norm.py", "stages/trainer/cifar.py"} <= files
    assert "stages/__init__.py" not in files  # Empty: no code runs.
    assert "stages/archive/download.py" not in code_run_by("stages.analysis.figures")
    # The grids' figures are not the main report's: editing them never re-runs it.
    assert "stages/analysis/figures.py" not in files


def test_a_cell_runs_only_the_package_and_its_own_variant():
    files = code_run_by("stages.cell", "stages.variants.rescaled")
    assert "stages/variants/rescaled.py" in files and "stages/variants/none.py" not in files
    assert all(path.startswith((PACKAGE + "/", "stages/variants/rescaled.py")) or path == "stages/cell.py"
               for path in files), sorted(files)


@pytest.mark.parametrize("module", sorted({module for _, command, *_ in STAGES
                                           for module, _ in entry_points(command)}))
def test_every_stage_prints_usage_for_help_and_does_nothing_else(module, tmp_path):
    """In an empty folder: no params.yaml, no data. Any work at all would fail or leave files."""
    done = subprocess.run([sys.executable, "-m", module, "--help"], cwd=tmp_path, text=True,
                          capture_output=True, env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("usage: ") and f"Stage `{module.split('.')[-1]}`" in done.stdout
    assert list(tmp_path.iterdir()) == []
