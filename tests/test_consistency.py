"""Do cells that ran apart agree? The numerics groups, the heterogeneity and drift tests, and the
answer's wording when they fail (stages/analysis/consistency.py)."""

import json
from pathlib import Path

import numpy as np
import pytest

from stages.analysis import answer, claims, consistency
from stages.analysis.cells import Cell
from stages.grids.placement import render_markdown, summarize

ROOT = Path(__file__).resolve().parents[1]
AMD = {"device": "CPU: AMD EPYC (2 cores)", "cpu_features": ["avx2", "fma"], "tensorflow": "2.21.0", "keras": "3.15.1"}


def cell(variant: str, seed: int, accuracy: float, environment: dict | None = None, code: str | None = None) -> Cell:
    run = {"environment": environment or {}, **({"code": {"trainer": code}} if code else {})}
    return Cell(variant, seed, {"test": {"accuracy": accuracy}}, {"fit/loss": np.array([1.0, 0.5])}, None, run, {})


def test_a_records_numerics_are_its_fingerprint_else_its_cpu_else_unknown():
    fingerprinted = {**AMD, "numerics_fingerprint": "4013d146-3ed2fb0b"}
    assert consistency.numerics({"environment": fingerprinted}).endswith("fingerprint 4013d146-3ed2fb0b")
    assert consistency.numerics({"environment": AMD}) == (
        "CPU: AMD EPYC (2 cores) [avx2, fma], tensorflow 2.21.0, keras 3.15.1, fingerprint not recorded")
    assert consistency.numerics({"environment": {"device": "CPU: AMD EPYC (2 cores)"}}) == consistency.UNKNOWN
    # A batch is numerics, day and the training code's digest: another day or code is another batch.
    day_one = {"environment": {**AMD, "date": "2026-12-01T08:00:00Z"}, "code": {"trainer": "ad80be5f1a4f"}}
    day_two = {"environment": {**AMD, "date": "2026-12-02T08:00:00Z"}, "code": {"trainer": "ad80be5f1a4f"}}
    other_code = {**day_one, "code": {"trainer": "0123456789ab"}}
    assert len({consistency.batch(run) for run in (day_one, day_two, other_code)}) == 3


def test_groups_that_agree_pass_and_a_shifted_group_fails_the_heterogeneity_test():
    rng = np.random.default_rng(0)
    agree = {"a": list(rng.normal(0.006, 0.005, 12)), "b": list(rng.normal(0.006, 0.005, 12))}
    assert consistency.heterogeneity(agree)["p_value"] > 0.05
    shifted = {**agree, "b": [value + 0.02 for value in agree["b"]]}
    assert consistency.heterogeneity(shifted)["p_value"] < 0.05
    # One group, or groups of one pair each: nothing to test, but every group is listed.
    alone = consistency.heterogeneity({"a": agree["a"], "b": [0.1]})
    assert alone["p_value"] is None and alone["groups"]["b"] == {"pairs": 1, "mean": 0.1}


def test_a_drift_in_run_order_is_found_and_a_shuffled_order_is_not():
    rng = np.random.default_rng(1)
    noise = rng.normal(0, 0.002, 20)
    rising = [(f"2026-12-01T{hour:02d}:00:00Z", 0.0005 * hour + noise[hour]) for hour in range(20)]
    found = consistency.drift(rising)
    assert found["p_value"] < 0.05 and found["slope"] > 0
    # The same values in another order (the drift scrambled): the slope is no longer detected.
    scrambled = [(date, value) for (date, _), value in zip(rising, np.array([v for _, v in rising])[rng.permutation(20)])]
    assert consistency.drift(scrambled)["p_value"] > 0.05
    assert consistency.drift(rising[:2])["p_value"] is None


def placement_cells(shift_unknown: float = 0.0, drift: float = 0.0) -> dict[str, list[Cell]]:
    """Ten pairs without recorded numerics (like the study's) and twenty dated ones on one CPU
    (like the placement grid's); `after` ahead by about 0.6 points with 0.5 points of spread;
    `shift_unknown` moves the undated group's after, `drift` adds a slope over run order."""
    rng = np.random.default_rng(2)
    cells = {"before": [], "after": []}
    for seed in range(30):
        before = 0.76 + rng.normal(0, 0.005)
        difference = 0.006 + rng.normal(0, 0.005)
        if seed < 10:
            environment, difference = {}, difference + shift_unknown
        else:
            environment = {**AMD, "date": f"2026-12-01T{seed - 10:02d}:00:00Z"}
            difference += drift * (seed - 10)
        cells["before"].append(cell("before", seed, before, environment))
        cells["after"].append(cell("after", seed, before + difference, environment))
    return cells


@pytest.mark.parametrize("change, failed", [({"shift_unknown": 0.02}, "cells on different numerics disagree"),
                                            ({"drift": 0.001}, "changed with the order the pairs ran in")])
def test_the_answer_says_the_size_is_uncertain_exactly_when_a_check_fails(change, failed):
    """The same records pass every check; shifted for one numerics group, or drifting with run
    order, the placement report and the README line say the size is uncertain, and why."""
    steady = summarize(placement_cells(), margin=0.005)
    assert steady["consistency"]["consistent"]
    steady_words = answer.placement_answer(claims.placement(steady))
    assert "uncertain" not in steady_words and "one seed's spread" in steady_words

    moved = summarize(placement_cells(**change), margin=0.005)
    assert not moved["consistency"]["consistent"]
    words = answer.placement_answer(claims.placement(moved))
    assert words.startswith("After: `after` − `before` = ") and "detected; its size is uncertain: " in words
    assert failed in words and "one seed's spread" not in words
    report = render_markdown(moved, [], [])
    assert "**the size of the effect is uncertain**" in report and "its size is uncertain" in moved["verdict"]


def test_the_committed_placement_report_carries_the_check_and_the_readme_follows_it():
    metrics = json.loads((ROOT / "reports/placement/metrics.json").read_text())
    checked = metrics["consistency"]
    assert set(checked) >= {"numerics", "batches", "order", "consistent"}
    readme = (ROOT / "README.md").read_text()
    line = next(line for line in readme.splitlines() if line.startswith("- **Before or after the activation?**"))
    assert ("its size is uncertain" in line) == (not checked["consistent"])


def test_a_report_says_where_its_arms_ran_on_different_numerics():
    """Arms with no numerics in common cannot be checked for agreement: the report says so, per
    setting, and says nothing where every arm ran alike."""
    from stages.analysis.cells import Cell
    from stages.analysis.consistency import mixed_numerics

    def cell(variant, features):
        environment = {"device": "CPU: X", "tensorflow": "2.21.0", "keras": "3.15.1", "cpu_features": features}
        return Cell(variant, 0, {}, {}, None, {"environment": environment}, {})

    alike = {"before": [cell("before", ["avx2"])], "none": [cell("none", ["avx2"])]}
    apart = {"before": [cell("before", [])], "frozen": [cell("frozen", ["avx2"])]}
    assert mixed_numerics({"adam 0.001": alike}) == []
    (line,) = mixed_numerics({"adam 0.001": alike, "adam 0.01": apart})
    assert line.startswith("**Arms on different numerics at adam 0.01:** `before` on numerics unknown")
    assert "`frozen` on CPU: X [avx2], tensorflow 2.21.0, keras 3.15.1, fingerprint not recorded" in line
    assert line.endswith("whether their cells agree cannot be tested.")


def test_a_grouping_that_splits_nothing_further_says_so():
    from stages.analysis.consistency import heterogeneity, render

    def result(batches):
        return {"contrast": "before − after", "consistent": True, "order": {"pairs": 0, "slope": None, "p_value": None},
                "numerics": heterogeneity({"A": [0.01, 0.02], "B": [0.0, 0.01]}), "batches": heterogeneity(batches)}

    same = "\n".join(render(result({"A; day 1": [0.01, 0.02], "B; day 1": [0.0, 0.01]})))
    assert "the pairs fall into the same groups as by numerics, so that check adds nothing here" in same
    finer = "\n".join(render(result({"A; day 1": [0.01, 0.02], "B; day 1": [0.0], "B; day 2": [0.01]})))
    assert "same groups as by numerics" not in finer
