"""The experiments side by side in an 80-column terminal: `python tools/runs.py`.

`dvc exp show` lists every param and metric; trimmed with --drop/--keep it still spends most of
80 columns on its tree of experiment names and cuts the last column. This prints the six columns
that say which placement, which seed, which numerics and how good: for the workspace, the current
commit and that commit's experiments, newest first.

It reads each run's params.yaml and reports/metrics.json straight from git, where `dvc exp` keeps
an experiment (a commit under refs/exps/<commit>/<name>), rather than through dvc.api.exp_show(),
which parses every pipeline's dvc.lock once per run: 15 s for three experiments on 2 cores, against
well under a second here. Queued and running experiments have no results yet: `dvc queue status`
lists them.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

PARAMS, METRICS = "params.yaml", "reports/metrics.json"
COLUMNS = (  # (file, key, header, least width, format); a column widens to its longest value.
    (PARAMS, "bn", "bn", 8, "{}"),  # Every variant's name (rescaled is the longest).
    (PARAMS, "seed", "seed", 4, "{:.0f}"),
    (PARAMS, "train.precision", "precision", 14, "{}"),
    (METRICS, "test.accuracy", "test acc", 8, "{:.4f}"),
    (METRICS, "test.loss", "test loss", 9, "{:.4f}"),
)
NAME_WIDTH = 26


class NotAProject(Exception):
    """No DVC project here: said in one line."""


def git(root: Path, *arguments: str) -> subprocess.CompletedProcess:
    return subprocess.run(["git", *arguments], cwd=root, capture_output=True, text=True)


def project_root(start: Path) -> Path:
    """The nearest folder at or above `start` with DVC's .dvc/, inside a git work tree."""
    root = next((folder for folder in (start, *start.parents) if (folder / ".dvc").is_dir()), None)
    if root is None:
        raise NotAProject("no .dvc folder here or above")
    if git(root, "rev-parse", "--verify", "-q", "HEAD").returncode != 0:
        raise NotAProject("not a git repository with a commit")
    return root


def parsed(path: str, text: str | None) -> dict:
    """A params or metrics file's content as a dict; {} when that run has no such file. params.yaml
    is read with the parser DVC uses (ruamel, YAML 1.2), so a value reads as DVC shows it."""
    if text is None:
        return {}
    if path.endswith(".json"):
        return json.loads(text)
    from ruamel.yaml import YAML  # Only here: `--help` and errors need no YAML parser.

    return YAML(typ="safe").load(text) or {}


def lookup(content: dict, key: str):
    """`content`'s value at a dotted key ("train.precision"), or None when a level is missing."""
    for part in key.split("."):
        if not isinstance(content, dict) or part not in content:
            return None
        content = content[part]
    return content


def run_row(root: Path, name: str, commit: str | None) -> dict:
    """One run's columns, from its commit, or from the files on disk when `commit` is None."""
    files = {}
    for path in (PARAMS, METRICS):
        if commit is None:
            text = (root / path).read_text(encoding="utf-8") if (root / path).is_file() else None
        else:
            shown = git(root, "show", f"{commit}:./{path}")
            text = shown.stdout if shown.returncode == 0 else None
        files[path] = parsed(path, text)
    return {"name": name, **{key: lookup(files[path], key) for path, key, *_ in COLUMNS}}


def collect_rows(root: Path) -> list[dict]:
    """The workspace, the current commit (named by its branch) and its experiments, newest first."""
    head = git(root, "rev-parse", "HEAD").stdout.strip()
    branch = git(root, "symbolic-ref", "--short", "-q", "HEAD").stdout.strip()
    rows = [run_row(root, "workspace", None), run_row(root, branch or head[:7], head)]
    experiments = git(root, "for-each-ref", "--sort=-committerdate", "--format=%(objectname) %(refname)",
                      f"refs/exps/{head[:2]}/{head[2:]}/").stdout.split("\n")
    for line in filter(None, experiments):
        commit, reference = line.split(" ", 1)
        rows.append(run_row(root, "  " + reference.rsplit("/", 1)[-1], commit))  # Indented under its commit.
    return rows


def cell(text: str, width: int, template: str) -> str:
    """Numbers right-aligned, text left-aligned, as in `dvc exp show`."""
    return text.rjust(width) if template != "{}" else text.ljust(width)


def shown(value, template: str) -> str:
    """A value as `template` formats it; "-" where the run has none (not evaluated yet)."""
    if value is None:
        return "-"
    return template.format(value) if isinstance(value, (int, float)) else str(value)


def table(rows: list[dict]) -> list[str]:
    """The header and one line per row, every column as wide as its widest cell, so they align."""
    cells = [[shown(row[key], template) for _, key, _, _, template in COLUMNS] for row in rows]
    widths = [max([width, len(header), *(len(line[index]) for line in cells)])
              for index, (_, _, header, width, _) in enumerate(COLUMNS)]
    templates = [template for *_, template in COLUMNS]
    lines = [[header for _, _, header, _, _ in COLUMNS], *cells]
    names = ["experiment", *(row["name"][:NAME_WIDTH] for row in rows)]
    return [" ".join([name.ljust(NAME_WIDTH)] + [cell(text, width, template)
                                                 for text, width, template in zip(line, widths, templates)])
            for name, line in zip(names, lines)]


def main(arguments: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="tools/runs.py", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.parse_args(arguments)
    try:
        rows = collect_rows(project_root(Path.cwd()))
    except NotAProject as error:
        sys.exit(f"runs: no DVC experiments here ({error}); run it inside the bnlab project")
    print("\n".join(table(rows)))


if __name__ == "__main__":
    main()
