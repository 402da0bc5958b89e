"""The results quoted in README.md and docs/, written from the committed reports, so that their
numbers cannot drift.

    python tools/answer.py           # print every generated block
    python tools/answer.py --write   # put each block into its file, between its markers

Every number comes from a report stage's output (reports/**/metrics.json) or from the cells'
records (reports/**/runs/*.json). tests/test_docs.py fails when a file's block differs from what
this writes, so after `dvc repro` of a report, run this with --write and commit both.
"""

# What the reports support is computed in stages/analysis/claims.py (plain data) and worded in
# stages/analysis/answer.py; this command reads the reports, records and git history they need,
# and prints or writes the blocks. (This docstring is the command's --help.)

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# This project's code, whatever else is installed or wherever the command runs from.
sys.path.insert(0, str(ROOT))

from stages.analysis import answer, claims  # noqa: E402
from stages.analysis.answer import begin, end, replace_block  # noqa: E402 tests/test_docs.py reads the markers here.
from stages.analysis.records import read_json  # noqa: E402
from stages.grids import map as placement_map  # noqa: E402
from stages.grids.sections import read_all as read_params  # noqa: E402
from stages.trainer.errors import BnlabError  # noqa: E402

README = ROOT / "README.md"
REPORTS = ROOT / "reports"


def load(path: str) -> dict:
    """A report stage's output; a one-line error if it is missing or not JSON."""
    return read_json(ROOT / path, "report")


def optional(grid: str) -> dict | None:
    """A grid's report summary, None before that report exists (the answer leaves it out)."""
    path = REPORTS / grid / "metrics.json"
    return read_json(path, "report") if path.is_file() else None


def records(grid: str, pattern: str = "*.json") -> list[tuple[Path, dict]]:
    """The grid's cell records whose names match `pattern`, in name order."""
    return [(path, read_json(path, "cell")) for path in sorted((REPORTS / grid / "runs").glob(pattern))]


def readme_answer() -> str:
    """README.md's answer: the claims of the study, placement and sweep reports (and of the norms,
    head and batch reports once they exist), and where every cell ran: its record's environment,
    or for a record that predates dating itself, the commit that added it."""
    reports = (load("reports/study/metrics.json"), load("reports/placement/metrics.json"),
               load("reports/sweep/metrics.json"), optional("norms"), optional("head"), optional("batch"))
    params = read_params(ROOT / "params.yaml")
    setting = {key: getattr(params.train, key) for key in ("epochs", "batch_size", "optimizer", "learning_rate",
                                                          "precision")}
    found = claims.answer(*reports,
                          claims.accuracy_by_seed(record for _, record in records("study")),
                          {**setting, "equivalence_margin": params.placement.equivalence_margin})
    runs = []
    for grid in claims.PROVENANCE_GRIDS:
        for path, record in records(grid):
            environment = record.get("environment", {})
            runs.append({"environment": environment, "added": None if "date" in environment else added_by(path)})
    commits = {run["environment"].get("git_commit", "")[:7] for run in runs if run["added"] is None}
    history = {commit: tree for commit in sorted(commits - {""}) if (tree := stages_tree(commit)) is not None}
    reruns = (optional("rerun") or {}).get("cells") or []
    return answer.readme_answer({**found, "map": claims.map_settings(optional("map")), "reruns": reruns},
                                claims.provenance(runs, history))


def stages_tree(commit: str) -> tuple[str, str] | None:
    """The commit's `stages/` tree and commit date; None if it is not in this clone's history."""
    try:
        tree, date = (subprocess.run(["git", *command], cwd=ROOT, capture_output=True, text=True,
                                     check=True, timeout=60).stdout.strip()
                      for command in (["rev-parse", f"{commit}:stages"],
                                      ["log", "-1", "--format=%cI", commit, "--"]))
    except (OSError, subprocess.SubprocessError):
        return None
    return tree, date


def added_by(path: Path) -> tuple[str, str]:
    """The short commit and date (YYYY-MM-DD) that last changed `path` in git."""
    try:
        out = subprocess.run(["git", "log", "-1", "--format=%h %as", "--", str(path)], cwd=ROOT,
                             capture_output=True, text=True, check=True, timeout=60).stdout.split()
    except (OSError, subprocess.SubprocessError):
        return "", ""
    return (out[0], out[1]) if len(out) == 2 else ("", "")


def study_block() -> str:
    return answer.study_block(load("reports/study/metrics.json"))


def sweep_block() -> str:
    sweep = load("reports/sweep/metrics.json")
    return answer.sweep_block(sweep, claims.sweep_findings(sweep))


def frozen_block() -> str:
    freezes = [record.get("freeze") or {} for _, record in records("study", "frozen-*.json")]
    # The sweep's and the norms grid's: the same training (the norms grid's probes record weight norms too).
    high_rate = [record for grid in ("sweep", "norms") for _, record in records(grid, f"adam-{claims.HIGH_RATE}-*.json")]
    accuracy = claims.accuracy_by_seed(record for _, record in records("study"))
    return answer.frozen_block(claims.frozen_findings(load("reports/study/metrics.json"), freezes, high_rate, accuracy))


def norms_block() -> str:
    return answer.norms_block(claims.norms_rows(optional("norms")))


def head_block() -> str:
    summary = optional("head")
    return answer.head_block(summary, read_params(ROOT / "params.yaml").head if summary is not None else None)


def batch_block() -> str:
    return answer.batch_block(optional("batch"))


def map_published_block() -> str:
    """The map beside the published single runs and the convention, as the map's report has it."""
    summary = optional("map")
    return "The map's report has not run yet." if summary is None else "\n".join(placement_map.published(summary))


def main_run_block() -> str:
    """The main run's scores, and the environment that reports/report.md lists from its record."""
    environment = dict(line[2:].split(": ", 1) for line in
                       (REPORTS / "report.md").read_text(encoding="utf-8").splitlines()
                       if line.startswith("- ") and ": " in line)
    return answer.main_run_block(claims.main_run(load("reports/metrics.json"), environment))


BLOCKS = {  # name -> (file, renderer)
    "answer": (README, readme_answer),
    "main-run": (ROOT / "docs" / "results.md", main_run_block),
    "study-results": (ROOT / "docs" / "results.md", study_block),
    "sweep-results": (ROOT / "docs" / "why.md", sweep_block),
    "frozen-results": (ROOT / "docs" / "why.md", frozen_block),
    "norms-results": (ROOT / "docs" / "why.md", norms_block),
    "head-results": (ROOT / "docs" / "why.md", head_block),
    "batch-results": (ROOT / "docs" / "why.md", batch_block),
    "map-published": (ROOT / "docs" / "map.md", map_published_block),
}


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--write", action="store_true", help="write each block into its file")
    args = parser.parse_args(argv)
    for name, (path, render) in BLOCKS.items():
        try:
            block = render()
        except (BnlabError, OSError) as error:  # A report, record or params.yaml missing or corrupt.
            raise SystemExit(f"answer: error: {error}") from None
        except (KeyError, TypeError, IndexError, AttributeError) as error:
            # A report or record that parses but lacks what the answer quotes: older than the code.
            raise SystemExit(f"answer: error: the {name} block's reports lack {error!s} ({error.__class__.__name__}); "
                             "re-run the report stages (`dvc repro grids/<name>/dvc.yaml`) and try again") from None
        if not args.write:
            print(f"{begin(name)}\n{block}\n{end(name)}\n")
            continue
        path.write_text(replace_block(path.read_text(encoding="utf-8"), name, block, path), encoding="utf-8")
        print(f"answer: wrote {name} into {path.relative_to(ROOT)}", file=sys.stderr)


if __name__ == "__main__":
    main()
