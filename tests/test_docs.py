"""README.md and docs/: results that cannot drift from the committed reports, links that resolve,
and a README a newcomer reads in minutes with the answer on its first screen."""

import re
import runpy
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
ANSWER = runpy.run_path(str(ROOT / "tools" / "answer.py"))
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]


@pytest.mark.parametrize("name", ANSWER["BLOCKS"])
def test_every_generated_block_matches_the_committed_reports(name):
    path, render = ANSWER["BLOCKS"][name]
    text = path.read_text(encoding="utf-8")
    begin, end = ANSWER["begin"](name), ANSWER["end"](name)
    assert text.count(begin) == 1 and text.count(end) == 1, f"{path.name}: the {name} markers"
    written = text[text.index(begin) + len(begin):text.index(end)].strip("\n")
    assert written == render(), (f"{path.name}'s {name} block differs from reports/: run "
                                 "`python tools/answer.py --write` and commit")


def outside_blocks(text: str) -> str:
    return re.sub(r"<!-- (\S+): written by .*?<!-- /\1 -->", "", text, flags=re.S)


# docs/performance.md quotes benchmarks (bench/*.py, each table with its command, machine and
# date), whose accuracy column is a sanity check of the timed runs, not a result of the study.
RESULT_DOCS = [path for path in DOCS if path.name != "performance.md"]


@pytest.mark.parametrize("path", RESULT_DOCS, ids=lambda p: p.name)
def test_no_accuracy_is_typed_by_hand(path):
    """Accuracies and losses are quoted only inside generated blocks (four decimals, 0.xxxx),
    apart from the reference notebook's own three-decimal numbers."""
    assert re.findall(r"\b0\.\d{4}\b", outside_blocks(path.read_text(encoding="utf-8"))) == []


def test_the_claims_decide_and_the_words_follow():
    """stages/analysis/claims.py says which verdict applies, stages/analysis/answer.py only words
    it: an interim placement report keeps its own words, and a settled one is answered from its
    numbers, whichever variant they put ahead."""
    from stages.analysis import answer, claims
    row = {"n": 5, "std": 0.005}
    interim = {"verdict": "interim: 3 of 5 seeds", "comparison": None, "variants": {"before": row, "after": row}}
    assert claims.placement(interim) == {"settled": False, "verdict": "interim: 3 of 5 seeds",
                                         "seeds": {"before": 5, "after": 5}}
    assert answer.placement_answer(claims.placement(interim)) == "Interim: 3 of 5 seeds."
    settled = {**interim, "verdict": "before", "comparison": {"test": "paired", "difference": 0.006, "ci_low": 0.003,
                                                              "ci_high": 0.009, "p_value": 1e-4}}
    claim = claims.placement(settled)
    assert (claim["settled"], claim["higher"], claim["scale"]) == (True, "before", "about")
    assert answer.placement_answer(claim).startswith(
        "Before, by a little: `before` − `after` = +0.60 points (95% CI [+0.30, +0.90], paired p = 0.0001)")


def test_a_missing_report_is_one_line(tmp_path):
    (tmp_path / "tools").mkdir()
    shutil.copy(ROOT / "tools" / "answer.py", tmp_path / "tools")  # Its project: tmp_path, with no reports.
    done = subprocess.run([sys.executable, str(tmp_path / "tools" / "answer.py")], cwd=tmp_path,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 1 and "Traceback" not in done.stderr
    assert done.stderr.strip() == (f"answer: error: {tmp_path}/reports/study/metrics.json: missing; re-run the "
                                   "`report` stage that writes it (`dvc repro`)")


@pytest.mark.parametrize("path", DOCS, ids=lambda p: p.name)
def test_every_local_link_resolves(path):
    for target in re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", path.read_text(encoding="utf-8")):
        if "://" not in target:
            assert (path.parent / target).exists(), f"{path.name} links to {target}"


def test_the_readme_is_short_and_answers_first():
    lines = (ROOT / "README.md").read_text(encoding="utf-8").splitlines()
    assert len(lines) <= 250
    start = next(i for i, line in enumerate(lines) if line.startswith("<!-- answer:"))
    assert start < 15, "the answer should be on the first screen"
    commands = "\n".join(lines)
    assert ("python3 -m venv .venv && . .venv/bin/activate && pip install -q -e '.[test]' && python -m pytest"
            in commands)
    assert (ROOT / ".ci" / "run").read_text().rstrip().endswith(
        "python3 -m venv .venv && . .venv/bin/activate && pip install -q -e '.[test]' && python -m pytest")
