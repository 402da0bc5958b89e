"""The answer's verdicts in the cases the committed reports do not show (stages/analysis/claims.py
decides, stages/analysis/answer.py words): arms of unequal size, one BN placement detected and the
other not, a diverged run among the records, a lead smaller than one seed's spread."""

import runpy
from pathlib import Path

import pytest

from stages.analysis import answer, claims

ROOT = Path(__file__).resolve().parents[1]


def pair(difference=0.02, p_holm=0.001, sizes=(5, 5)):
    return {"test": "paired", "difference": difference, "ci_low": difference - 0.01, "ci_high": difference + 0.01,
            "p_value": p_holm / 3, "p_holm": p_holm, "minimum_detectable": 0.01, "sizes": list(sizes)}


def test_an_arm_with_fewer_than_three_runs_is_not_tested_whatever_the_other_has():
    assert claims.verdict(pair(sizes=(2, 5))) == claims.verdict(pair(sizes=(5, 2))) == "not_tested"
    assert claims.verdict(pair(sizes=(3, 5))) == "detected"
    assert answer.judgement(claims.judged(pair(sizes=(5, 2)))).endswith("not tested: fewer than 3 runs per arm")


def test_bn_helps_only_when_both_placements_gain_detectably(monkeypatch):
    """The README's first line says 'BN helps.' only if BN before and after the activation both
    gain detectably over `none`; here the committed study with `after` − `none` not detected."""
    real = claims.bn_helps

    def after_not_detected(study):
        comparisons = {**study["comparisons"], "after_vs_none": {**study["comparisons"]["after_vs_none"], "p_holm": 0.2}}
        return real({**study, "comparisons": comparisons})

    monkeypatch.setattr(claims, "bn_helps", after_not_detected)
    text = runpy.run_path(str(ROOT / "tools" / "answer.py"))["readme_answer"]()
    assert "- **Does BN help?** Over the same net without BN, BN before the activation: " in text
    assert "detected (Holm p = 0.0055); after it: +3.36 points ([+2.94, +3.77]), no difference detected" in text


def record(bn, seed, accuracy, diverged=False):
    return {"bn": bn, "seed": seed, "metrics": {"test": {"accuracy": accuracy}},
            "history": {"fit/loss": [2.0, float("nan") if diverged else 1.0]}}


def test_a_diverged_run_is_left_out_of_the_per_seed_accuracies_and_of_the_high_rate_family():
    records = [record("before", 0, 0.70), record("before", 1, 0.1, diverged=True), record("none", 0, 0.6)]
    assert claims.accuracy_by_seed(records) == {"before": {0: 0.70}, "none": {0: 0.6}}
    records = [record(bn, seed, base + seed / 100) for bn, base in (("none", 0.62), ("frozen", 0.72))
               for seed in range(3)]
    records += [record("before", 0, 0.70), record("before", 1, 0.71), record("before", 2, 0.1, diverged=True)]
    pooled = claims.frozen_at_high_rate(records)
    assert pooled["family"] == ["none", "frozen"]  # `before` diverged once: counted, not compared.
    assert [(p["first"], p["second"]) for p in pooled["pairs"]] == [("frozen", "none")]
    assert [(v["variant"], v["diverged"]) for v in pooled["variants"]] == [("none", 0), ("frozen", 0)]


@pytest.mark.parametrize("difference, scale, words, ahead", [
    (0.002, "under_half", "less than half one seed's spread", 61),
    (0.004, "about", "about one seed's spread", 71),  # Φ(0.4 / hypot(0.5, 0.5)): both runs vary.
    (0.025, "times", "5 times one seed's spread", 100)], ids=["under_half", "about", "times"])
def test_the_placements_lead_is_measured_in_seeds_spreads(difference, scale, words, ahead):
    row = {"n": 35, "std": 0.005}
    summary = {"verdict": "after", "variants": {"before": row, "after": row},
               "comparison": {"test": "paired", "difference": -difference, "ci_low": -difference - 0.001,
                              "ci_high": -difference + 0.001, "p_value": 1e-4}}
    claim = claims.placement(summary)
    assert (claim["higher"], claim["scale"]) == ("after", scale)
    assert answer.placement_answer(claim).endswith(
        f"detected; {words} (std 0.50–0.50 points): one run of each, on different seeds, puts `after` ahead "
        f"{ahead}% of the time")


@pytest.mark.parametrize("difference, words", [(-3.28, "frozen − none at adam 0.001 (+3.28 points"),
                                               (3.28, "none − frozen at adam 0.001 (+3.28 points")])
def test_a_detected_sweep_difference_names_the_higher_arm_first(difference, words):
    """docs/why.md's 'Detected differences': the sign its words imply, whichever order the report
    named the pair in (before: 'none − frozen … -3.28')."""
    found = {"name": "none_vs_frozen", "optimizer": "adam", "rate": "0.001",
             "pair": {"difference": difference / 100, "p_holm": 0.00054}}
    assert answer.higher_first(found).startswith(words)


def test_the_placement_answer_states_how_far_numerics_alone_moved_a_rerun_cell():
    assert answer.reproducibility(None) == answer.reproducibility([]) == ""
    rows = [{"bn": "before", "seed": 5, "difference": -0.0003}, {"bn": "after", "seed": 5, "difference": -0.0032}]
    assert answer.reproducibility(rows) == (
        "; trained again on another machine or code version, with the same params and seed, 2 reference cells "
        "landed -0.03 and -0.32 points from their records, which numerics alone do "
        "([reports/rerun/rerun.md](reports/rerun/rerun.md))")


def test_the_rerun_report_pairs_each_rerun_with_its_original_and_names_where_each_ran():
    import numpy as np

    from stages.analysis.cells import Cell
    from stages.grids import rerun

    def cell(accuracy, loss, device, commit):
        environment = {"device": device, "cpu_features": ["avx2"], "tensorflow": "2.21.0", "git_commit": commit}
        return Cell("after", 5, {"test": {"accuracy": accuracy}}, {"fit/loss": np.array([loss, 1.0])}, None,
                    {"environment": environment}, {})

    summary = rerun.summarize([(cell(0.7548, 1.713642, "CPU: A", "c55393e40075aa"),
                                cell(0.7516, 1.713323, "CPU: B", "4e72dc38f9f6bb"))])
    assert summary["largest_difference"] == pytest.approx(0.0032)
    markdown = rerun.render_markdown(summary, ["grids/rerun/dvc.yaml:cell@before-5"])
    assert "| after, seed 5 | 0.7548 | 0.7516 | -0.32 | 1.713642, 1.713323 |" in markdown
    assert "Largest distance from an original: 0.32 points, over 1 reruns" in markdown
    assert "original on CPU: A [avx2], TensorFlow 2.21.0, code c55393e40075, no fingerprint (older record)" in markdown
    assert "`grids/rerun/dvc.yaml:cell@before-5`" in markdown
