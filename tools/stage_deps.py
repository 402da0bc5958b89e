"""The code each DVC stage must declare, derived from the code: `python tools/stage_deps.py`.

A training stage (`train`, every grid's `cell`) runs stages/trainer, the package of everything
that can change a number, plus its own variant's module: it declares exactly
[its entry module, stages/trainer, stages/variants/<bn>.py] and must import nothing else of the
project. Any other stage declares the project files it runs (its entry module and every module it
imports, followed transitively, function-level imports included), with stages/trainer as one
folder where it runs any of it. tests/test_dvc_graph.py checks every stage of every dvc.yaml
against this; this command prints what each stage should list, and with --write rewrites the
code lines of every stage that is not a training stage in place (a training stage's three lines
are fixed by hand, the same in every grid).
"""

from __future__ import annotations

import argparse
import ast
import importlib
import re
import shlex
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = "stages/trainer"
VARIANTS = "stages/variants"
TRAINING_ENTRIES = ("stages.train", "stages.cell")


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


def code_run_by(*modules: str) -> set[str]:
    """Project files (relative paths) that importing `modules` executes, empty files left out."""
    seen: set[Path] = set()
    pending = list(modules)
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


GATE = ("stages.check", "--gate")


def entry_points(command: str | list[str], gates: bool = False) -> list[tuple[str, list[str]]]:
    """(module, argv) of every `python -m stages.X ...` in a stage's command (a string, or DVC's
    list of commands). A gate (`python -m stages.check ... --gate`, a training stage's first
    command) is left out unless `gates`: its code and params are the check stage's, declared
    there, and the stage depends on that stage's marker; they decide no number of the stage."""
    calls = []
    for part in ([command] if isinstance(command, str) else command):
        words = shlex.split(part)
        if words[:2] != ["python", "-m"] or not words[2].startswith("stages."):
            raise ValueError(f"unexpected stage command {part!r}: stages run `python -m stages.X`")
        if gates or not (words[2] == GATE[0] and GATE[1] in words):
            calls.append((words[2], words[3:]))
    return calls


def in_package(path: str) -> bool:
    return path.startswith(PACKAGE + "/")


def declared_form(files: set[str]) -> set[str]:
    """Files as a stage declares them: stages/trainer's as the one folder."""
    return {path for path in files if not in_package(path)} | ({PACKAGE} if any(map(in_package, files)) else set())


def expected_code(command: str, bn: str | None = None) -> set[str]:
    """What a stage with this (expanded) command must declare; `bn` is the variant it trains."""
    expected = set()
    for module_name, argv in entry_points(command):
        module = importlib.import_module(module_name)
        if module_name in TRAINING_ENTRIES:
            expected |= {module_file(module_name).relative_to(ROOT).as_posix(), PACKAGE,
                         f"{VARIANTS}/{bn}.py"}
            continue
        extra = module.modules_used(module.parse_args(argv)) if hasattr(module, "modules_used") else []
        expected |= declared_form(code_run_by(module_name, *extra))
    return expected


def outside_package(module_name: str, bn: str) -> set[str]:
    """Files a training stage runs outside stages/trainer besides its entry and its variant."""
    allowed = {module_file(module_name).relative_to(ROOT).as_posix(), f"{VARIANTS}/{bn}.py"}
    return {path for path in code_run_by(module_name, f"stages.variants.{bn}")
            if not in_package(path) and path not in allowed}


def rewrite(path: Path) -> bool:
    """Replace the `stages/...` lines of each non-training stage's deps in one dvc.yaml; True if
    the file changed. Its commands are one line each (`python -m stages.X ...`)."""
    lines, out, command = path.read_text().splitlines(keepends=True), [], None
    index = 0
    while index < len(lines):
        line = lines[index]
        if match := re.match(r"    cmd: (python -m stages\.\S+.*)$", line):
            command = match.group(1).strip()
        elif line == "    cmd:\n":  # A list: only training stages have one (their gate first).
            command = TRAINING_ENTRIES[0]
        if line == "    deps:\n" and command and not any(entry in command for entry in TRAINING_ENTRIES):
            out.append(line)
            index += 1
            others = []  # The stage's other dependencies (data, markers), after its code, in their order.
            while index < len(lines) and lines[index].startswith("      - "):
                if not lines[index].startswith("      - stages/"):
                    others.append(lines[index])
                index += 1
            out += [f"      - {code}\n" for code in sorted(expected_code(command))] + others
            command = None
            continue
        out.append(line)
        index += 1
    text = "".join(out)
    changed = text != path.read_text()
    if changed:
        path.write_text(text)
    return changed


def main() -> None:
    sys.path.insert(0, str(ROOT))
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--write", action="store_true", help="rewrite the code lines of every dvc.yaml")
    if parser.parse_args().write:
        for path in [ROOT / "dvc.yaml", *sorted(ROOT.glob("grids/*/dvc.yaml"))]:
            if rewrite(path):
                print(f"stage_deps: rewrote {path.relative_to(ROOT)}")
        return
    from dvc.repo import Repo

    with Repo(str(ROOT)) as repo:
        for stage in repo.index.stages:
            bn = None
            calls = dict(entry_points(stage.cmd))
            if "stages.cell" in calls:
                bn = calls["stages.cell"][calls["stages.cell"].index("--bn") + 1]
            elif "stages.train" in calls:
                bn = "${bn}"
            print(stage.addressing)
            for path in sorted(expected_code(stage.cmd, bn)):
                print(f"      - {path}")


if __name__ == "__main__":
    main()
