"""Both pipelines declare exactly the code and params each stage runs, derived here from the code.

The code a stage runs is its entry module plus everything it imports inside `stages/`, followed
transitively (imports inside functions included); the params are what the module's
`params_used()` returns for the stage's own command line, and `load_params` refuses to give a
stage any other key (tests/test_params.py). So a stage can neither read an undeclared param nor
run undeclared code without this test failing, and `dvc status` never calls a stale result fresh.
"""

from __future__ import annotations

import ast
import importlib
import os
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
from dvc.dependency.param import ParamsDependency
from dvc.repo import Repo

ROOT = Path(__file__).resolve().parents[1]


def module_file(name: str) -> Path | None:
    """The file that `import name` runs, if it is part of this project."""
    base = ROOT.joinpath(*name.split("."))
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


def imported_modules(path: Path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
            names.update(f"{node.module}.{alias.name}" for alias in node.names)  # Submodules.
    return {name for name in names if name == "stages" or name.startswith("stages.")}


def code_run_by(module: str) -> set[str]:
    """Project files (relative paths) that `python -m module` executes, empty files left out."""
    seen: set[Path] = set()
    pending = [module]
    while pending:
        name = pending.pop()
        parts = name.split(".")
        # Importing a.b.c first runs the packages a and a.b.
        for depth in range(1, len(parts) + 1):
            path = module_file(".".join(parts[:depth]))
            if path is not None and path not in seen:
                seen.add(path)
                pending.extend(imported_modules(path))
    return {str(path.relative_to(ROOT)) for path in seen if path.read_text().strip()}


def stage_entry_points(command: str) -> list[tuple[str, list[str]]]:
    """(module, argv) of every `python -m stages.X ...` in a stage's command."""
    calls = []
    for part in command.split("&&"):
        words = shlex.split(part)
        if words[:2] != ["python", "-m"] or not words[2].startswith("stages."):
            raise AssertionError(f"unexpected stage command {part!r}: stages run `python -m stages.X`")
        calls.append((words[2], words[3:]))
    return calls


def declared(stage) -> tuple[set[str], set[str]]:
    code, params = set(), set()
    for dependency in stage.deps:
        if isinstance(dependency, ParamsDependency):
            params.update(dependency.params)
        elif dependency.def_path.endswith(".py"):
            code.add(str(Path(dependency.fs_path).relative_to(ROOT)))
    return code, params


def all_stages():
    with Repo(str(ROOT)) as repo:
        return [(stage.addressing, stage.cmd, *declared(stage)) for stage in repo.index.stages]


STAGES = all_stages()


def test_both_pipelines_are_covered():
    names = {name for name, *_ in STAGES}
    assert {"fetch", "normalize", "train", "evaluate", "report", "study/dvc.yaml:compare"} <= names
    assert any(name.startswith("study/dvc.yaml:cell@") for name in names)
    assert {"sweep/dvc.yaml:report"} <= names and any(name.startswith("sweep/dvc.yaml:sgd@") for name in names)
    assert {"placement/dvc.yaml:report"} <= names and any(name.startswith("placement/dvc.yaml:cell@") for name in names)


@pytest.mark.parametrize("name, command, code, params", STAGES, ids=[s[0] for s in STAGES])
def test_stage_declares_exactly_the_code_and_params_it_runs(name, command, code, params):
    expected_code, expected_params = set(), set()
    for module_name, argv in stage_entry_points(command):
        module = importlib.import_module(module_name)
        expected_code |= code_run_by(module_name)
        expected_params |= set(module.params_used(module.parse_args(argv)))
    assert sorted(code) == sorted(expected_code), f"{name}: code deps"
    assert sorted(params) == sorted(expected_params), f"{name}: params"


def test_the_import_walk_finds_nested_and_function_level_imports():
    files = code_run_by("stages.report")  # Imports keras, figures, model... inside main().
    assert {"stages/__init__.py", "stages/report.py", "stages/lib/figures.py",
            "stages/lib/model.py", "stages/lib/batch_norm.py", "stages/lib/cifar.py"} <= files
    assert "stages/lib/__init__.py" not in files  # Empty: no code runs.
    assert "stages/lib/download.py" not in code_run_by("stages.lib.figures")


@pytest.mark.parametrize("module", sorted({module for _, command, *_ in STAGES
                                           for module, _ in stage_entry_points(command)}))
def test_every_stage_prints_usage_for_help_and_does_nothing_else(module, tmp_path):
    """In an empty folder: no params.yaml, no data. Any work at all would fail or leave files."""
    done = subprocess.run([sys.executable, "-m", module, "--help"], cwd=tmp_path, text=True,
                          capture_output=True, env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("usage: ") and f"Stage `{module.split('.')[-1]}`" in done.stdout
    assert list(tmp_path.iterdir()) == []
