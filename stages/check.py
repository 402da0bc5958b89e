"""Stage `check` (dvc.yaml, and every grids/<name>/dvc.yaml): params.yaml, checked before DVC runs
any stage that could lose an output or put a value into a shell command.

    python -m stages.check                  # the main pipeline's params
    python -m stages.check --grid placement # a grid's section, and what its cells read

Why a stage of its own: DVC removes a stage's outputs before it starts the stage's command, and it
puts a grid's values into its cells' commands, which a shell then parses, before any code of ours
runs. A stage refusing its own params therefore comes too late twice over: the trained model, or
a cell's committed record, is already gone, and a value such as `0'; touch PWNED; echo '` has
already run. DVC runs a stage's dependencies first and stops at the first failure, so a stage that
every training stage and cell depends on refuses a bad value before either happens. Its command
holds no params value, so nothing can reach a shell through it.

It refuses, in one line that says how to put params.yaml back: any string in the checked sections
with a character a shell acts on (the commands quote every value, so a quote or newline could end
the quoting), then every rule of those sections (stages/trainer/params.py, stages/grids/sections.py).
When all pass it writes its marker (MARKER below), always the same bytes, so a training stage
that depends on it re-runs only for its own reasons. The marker is `persist: true`: DVC leaves it
in place when the check runs again, so a refused check removes nothing either.

    python -m stages.check --grid map --gate  # the first command of each cell (and of `train`)

`dvc repro -s <stage>` runs that one stage without its dependencies, the check stage included, so
each cell's (and `train`'s) command is a list whose first command is this check with `--gate`:
DVC runs the next command only if it passes, and the first holds no params value, so no value
reaches a shell. DVC has removed the stage's outputs by then, so a refusing gate puts back the
ones dvc.lock records, as every stage does when it refuses under DVC (stages/trainer/recovery.py).
A gate writes no marker. Its code and params are declared by the check stage, whose marker the
stage depends on; they decide no number of the stage.
"""

from __future__ import annotations

import argparse
import re
import subprocess
import tempfile
from pathlib import Path

from stages.grids.sections import GRIDS
from stages.trainer.cli import stage_main
from stages.trainer.errors import ParamsError, quoted
from stages.trainer.grid import check_size

# What a value in a command may hold: numbers, names, paths. No quote, $, `, ;, |, &, space, newline.
SHELL_SAFE = re.compile(r"[A-Za-z0-9_.+\-/:=]*")
MAIN_SECTIONS = ("seed", "bn", "data", "normalize", "model", "train", "landscape")
# Per grid: the other sections its rules read (stages/grids/sections.check_grid), besides its own
# section and how every cell trains (model, train, landscape); a grid that reads none needs no entry.
SPANS = {"study": (), "sweep": ("study",), "placement": ("study",), "norms": ("study", "sweep", "placement"),
         "head": (), "batch": ("study",), "map": ("placement", "study"), "rerun": ("placement", "study")}
TRAINING = ("model", "train", "landscape")
MARKER_TEXT = ("params.yaml passed `python -m stages.check{}`; every stage that could lose an output "
               "depends on this file (stages/check.py)\n")
# How to go back after a refusal. A gated check (a cell's first command) runs after DVC has removed
# the cell's outputs, which recovery.py puts back, so it says only that nothing was run.
HOW_BACK = "fix params.yaml, or put back the committed one with `git checkout params.yaml`"


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--grid", choices=GRIDS, help="check this grid (grids/<grid>/dvc.yaml)")
    parser.add_argument("--gate", action="store_true",
                        help="as a stage's first command: write no marker; on refusal put back the "
                             "outputs DVC removed from that stage")
    return parser.parse_args(argv)


def params_used(args: argparse.Namespace) -> tuple[str, ...]:
    if args.grid is None:
        return MAIN_SECTIONS
    return tuple(dict.fromkeys((args.grid, *SPANS.get(args.grid, ()), *TRAINING)))


def marker(args: argparse.Namespace) -> Path:
    """The file every training stage of the checked pipeline depends on."""
    return Path("grids", args.grid, "params.checked") if args.grid else Path("reports/params.checked")


def check_shell_safe(document: object, sections: tuple[str, ...], source: str = "params.yaml") -> None:
    """Refuse a string anywhere in `sections` of `document` that a shell would act on."""
    def walk(value: object, where: str) -> None:
        if isinstance(value, dict):
            for key, item in value.items():
                walk(key, f"{where} (a key)")
                walk(item, f"{where}.{key}")
        elif isinstance(value, list):
            for index, item in enumerate(value):
                walk(item, f"{where}[{index}]")
        elif isinstance(value, str) and not SHELL_SAFE.fullmatch(value):
            bad = next(character for character in value if not SHELL_SAFE.fullmatch(character))
            raise ParamsError(f"{source}: {where} = {quoted(value)} holds {bad!r}, which a shell acts on, and "
                              "dvc.yaml puts such values into shell commands; use letters, digits and . _ - + / : = only")

    if isinstance(document, dict):
        for section in sections:
            walk(document.get(section), section)


def committed_difference(path: Path = Path("params.yaml")) -> str:
    """The first value of params.yaml that differs from the last commit's, as ` (bn: 'before' in
    the last commit, 'After' now)`; empty outside git or where nothing differs."""
    from stages.trainer.params import read_yaml

    try:
        text = subprocess.run(["git", "show", f"HEAD:{path.as_posix()}"], capture_output=True, text=True,
                              check=True, timeout=30).stdout
        # Parsed from a file outside the working tree: a refusal writes nothing into the project.
        with tempfile.TemporaryDirectory() as folder:
            before_path = Path(folder) / path.name
            before_path.write_text(text, encoding="utf-8")
            before, now = read_yaml(before_path), read_yaml(path)
    except (OSError, subprocess.SubprocessError, ParamsError):
        return ""
    found = _first_difference(before, now, "")
    return f" ({found[0]}: {quoted(found[1])} in the last commit, {quoted(found[2])} now)" if found else ""


def _first_difference(before: object, now: object, where: str) -> tuple | None:
    if isinstance(before, dict) and isinstance(now, dict):
        for key in dict.fromkeys([*before, *now]):
            found = _first_difference(before.get(key), now.get(key), f"{where}.{key}" if where else str(key))
            if found:
                return found
        return None
    if isinstance(before, list) and isinstance(now, list) and len(before) == len(now):
        for index, (first, second) in enumerate(zip(before, now)):
            if found := _first_difference(first, second, f"{where}[{index}]"):
                return found
        return None
    return None if before == now else (where, before, now)


@stage_main("check")
def main(argv=None) -> None:
    args = parse_args(argv)
    from stages.grids.sections import AllParams, check_grid
    from stages.trainer.atomic import write_text
    from stages.trainer.params import Params, load_params, read_document

    sections = params_used(args)
    try:
        if args.grid:  # Only a grid's own section reaches commands (its dvc.yaml's `vars`).
            document = read_document("params.yaml")
            check_shell_safe(document, (args.grid,))
            check_size(document.get(args.grid) if isinstance(document, dict) else None, args.grid)
        params = load_params(sections, schema=AllParams if args.grid else Params)
        if args.grid:
            check_grid(params, args.grid)
    except ParamsError as error:
        # A gate's stage has lost its outputs to DVC by now: stage_main puts them back (recovery.py).
        done = "nothing was run" if args.gate else "nothing was run or removed"
        raise ParamsError(f"{error}; {done}; {HOW_BACK}{committed_difference()}") from None
    if args.gate:
        print(f"check: params.yaml passes ({', '.join(sections)})")
        return
    text = MARKER_TEXT.format(f" --grid {args.grid}" if args.grid else "")
    path = marker(args)
    if not path.is_file() or path.read_text(encoding="utf-8") != text:
        write_text(path, text)
    print(f"check: params.yaml passes ({', '.join(sections)}) -> {path}")


if __name__ == "__main__":
    main()
