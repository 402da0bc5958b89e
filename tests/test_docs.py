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
        "Before: `before` − `after` = +0.60 points (95% CI [+0.30, +0.90], paired p = 0.0001), detected")


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


def test_the_readme_says_where_every_cell_it_quotes_ran():
    """The answer quotes every grid's report (the map and the reruns included), so its "where and
    when" line counts every grid's cell records."""
    line = next(line for line in (ROOT / "README.md").read_text(encoding="utf-8").splitlines()
                if line.startswith("Where and when these cells ran:"))
    records = sum(len(list((ROOT / "reports" / grid.name / "runs").glob("*.json"))) for grid in (ROOT / "grids").iterdir())
    assert sum(int(count) for count in re.findall(r"(\d+) cells on", line)) == records


def test_the_readme_is_short_and_answers_first():
    lines = (ROOT / "README.md").read_text(encoding="utf-8").splitlines()
    assert len(lines) <= 250
    start = next(i for i, line in enumerate(lines) if line.startswith("<!-- answer:"))
    assert start < 15, "the answer should be on the first screen"
    end = lines.index("<!-- /answer -->")
    figures = [line for line in lines[start:end] if line.startswith("![")]
    assert [re.search(r"\((.+)\)", line).group(1) for line in figures] == [
        "reports/placement/figures/placement.png", "reports/map/figures/map.png"]  # The answer and its map.
    commands = "\n".join(lines)
    assert ("python3 -m venv .venv && . .venv/bin/activate && pip install -q -e '.[test]' && python -m pytest"
            in commands)
    assert (ROOT / ".ci" / "run").read_text().rstrip().endswith(
        "python3 -m venv .venv && . .venv/bin/activate && pip install -q -e '.[test]' && python -m pytest")


def study_cells(seeds=None, shift=None):
    """The committed study's cells (or some of their seeds), with `shift` {variant: points} added
    to those variants' test accuracies: a perturbed study whose summary claims can judge."""
    import dataclasses
    from stages.analysis.binding import Recipe
    from stages.analysis.cells import collect
    from stages.grids.sections import read_all
    params = read_all(ROOT / "params.yaml")
    study = params.study
    cells = collect(ROOT / "reports" / "study" / "runs", study.variants, seeds or study.seeds,
                    Recipe.of(params.model, params.train))
    for variant, points in (shift or {}).items():
        cells[variant] = [dataclasses.replace(cell, metrics={**cell.metrics, "test": {
            **cell.metrics["test"], "accuracy": cell.metrics["test"]["accuracy"] + points / 100}})
            for cell in cells[variant]]
    return cells


def perturbed_claims(seeds=None, shift=None):
    from stages.analysis import claims
    from stages.analysis.cells import summarize
    from stages.grids.study import MEASURES
    cells = study_cells(seeds, shift)
    summary, _ = summarize(cells, MEASURES)
    accuracy = {variant: {cell.seed: cell.metrics["test"]["accuracy"] for cell in runs} for variant, runs in cells.items()}
    return summary, accuracy, claims


def test_the_wording_flips_with_the_evidence_detected_no_difference_not_tested():
    """Every verdict is its test's: the committed study says BN's gain is detected; with `none`
    shifted up by 2.5 points it is no longer (and says what the test could have detected); with
    two seeds it is not tested."""
    from stages.analysis import answer
    summary, _, claims = perturbed_claims()
    helps = claims.bn_helps(summary)
    assert helps["detected"] and ", detected (Holm p = " in answer.judgement(helps["before"])
    summary, _, claims = perturbed_claims(shift={"none": 2.5})
    before = claims.bn_helps(summary)["before"]
    assert before["verdict"] == "no_difference" and not claims.bn_helps(summary)["detected"]
    assert ", no difference detected — the test could have detected ≥ " in answer.judgement(before)
    summary, _, claims = perturbed_claims(seeds=[0, 1])
    before = claims.bn_helps(summary)["before"]
    assert answer.judgement(before).endswith("not tested: fewer than 3 runs per arm")


def test_less_than_half_only_when_the_ratios_interval_is_below_one_half():
    from stages.analysis import answer
    setting = {"optimizer": "adam", "learning_rate": 0.001}
    summary, accuracy, claims = perturbed_claims()
    share = claims.rescaled_share(summary, accuracy)
    assert share["ci_low"] < 0.5 < share["ci_high"]  # The committed 44%: its interval spans one half.
    assert "less than half" not in answer.rescaled_sentence(share, setting)
    summary, accuracy, claims = perturbed_claims(shift={"rescaled": -1.0})
    share = claims.rescaled_share(summary, accuracy)
    assert share["ci_high"] < 0.5 and answer.rescaled_sentence(share, setting).endswith(": less than half.")
    summary, accuracy, claims = perturbed_claims(seeds=[0, 1])
    assert "not tested" in answer.rescaled_sentence(claims.rescaled_share(summary, accuracy), setting)


def test_enough_only_when_equivalent_within_the_margin():
    """`frozen`: "needs the first epoch of normalizing only" only where before − frozen passes its
    TOST; the committed seeds do not (no difference detected is not equivalence)."""
    from stages.analysis import answer
    summary, accuracy, claims = perturbed_claims()
    frozen = claims.frozen_gain(summary, accuracy, 0.005)
    assert frozen["against"]["verdict"] == "no_difference" and "first epoch" not in answer.frozen_sentence(frozen).split("(`frozen`)")[1]
    # Frozen's accuracies made before's, seed by seed, plus a hair: equivalent within ±0.5 points.
    summary, accuracy, claims = perturbed_claims()
    accuracy["frozen"] = {seed: value + 0.0001 * (seed % 2) for seed, value in accuracy["before"].items()}
    summary["comparisons"]["before_vs_frozen"] = {**summary["comparisons"]["before_vs_frozen"], "p_holm": 1.0}
    frozen = claims.frozen_gain(summary, accuracy, 0.005)
    assert frozen["against"]["verdict"] == "equivalent"
    assert answer.frozen_sentence(frozen).endswith("BN's gain needs the first epoch of normalizing only.")


def test_at_every_rate_only_when_every_rate_is_detected():
    from stages.analysis import answer, claims
    detected = {"difference": 0.03, "ci_low": 0.01, "ci_high": 0.05, "p_holm": 0.001, "minimum_detectable": 0.01,
                "sizes": [3, 3]}
    sweep = {"adam": {rate: {"comparisons": {"before_vs_none": detected}} for rate in ("0.001", "0.01")}, "sgd": {}}
    where = claims.where_gain(sweep)
    assert where["every"]["adam"]
    sweep["adam"]["0.01"]["comparisons"]["before_vs_none"] = {**detected, "sizes": [2, 2]}  # Drop a seed.
    where = claims.where_gain(sweep)
    assert not where["every"]["adam"] and where["adam"][1][1]["verdict"] == "not_tested"
    assert "every" not in answer.judged_at_rates(where["adam"])


def test_params_comments_quote_no_measured_result():
    """params.yaml's comments say where a result is (a report), never its number: a std, a
    detectable difference or a gain typed there would drift from the reports (as "35 seeds, enough
    to detect 0.3 points, std ~0.4" once did). A comment may restate its own key's value."""
    comments = [line.split("#", 1)[1] for line in (ROOT / "params.yaml").read_text(encoding="utf-8").splitlines()
                if "#" in line]
    quoted = [comment for comment in comments if re.search(r"~\s*\d|std ~|detect \d|\d+(\.\d+)? points", comment)
              and "+-" not in comment]
    assert quoted == []
