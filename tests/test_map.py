"""The placement map: its sequential design, its parts, and the verdict each setting gets."""

from __future__ import annotations

import copy
import dataclasses
import json
import re
from pathlib import Path

import numpy as np
import pytest
import yaml

from stages.analysis.sequential import analyse, design, obrien_fleming
from stages.grids import map as placement_map
from stages.grids.sections import map_design, parse_all
from stages.trainer.errors import ParamsError
from stages.trainer.grid import check_cell
from locks import bind

COMMITTED = yaml.safe_load((Path(__file__).parents[1] / "params.yaml").read_text())
LOOKS, ALPHA, MARGIN = [10, 20, 30], 0.05, 0.005


def test_obrien_fleming_matches_the_published_boundaries():
    """Three equal looks, two-sided 0.05: z = 3.471, 2.454, 2.004 (Jennison and Turnbull, table 2.3)."""
    assert np.round(obrien_fleming(LOOKS, ALPHA), 3).tolist() == [3.471, 2.454, 2.004]
    assert np.round(obrien_fleming([10, 20], ALPHA), 3).tolist() == [2.797, 1.977]


def shifted(mean: float, count: int, sd: float = 0.0057, seed: int = 0) -> list[float]:
    """`count` paired differences with exactly this mean and sd."""
    values = np.random.default_rng(seed).standard_normal(count)
    values = (values - values.mean()) / values.std(ddof=1)
    return (mean + sd * values).tolist()


@pytest.mark.parametrize("differences, look, verdict", [
    (shifted(0.006, 7), None, "not yet at look 1"),
    (shifted(0.006, 10), 1, "continue"),  # 0.6 points: look 1's CI (±0.95) still holds 0.
    (shifted(0.02, 10), 1, "detected"),  # 2 points: look 1 already excludes 0.
    (shifted(0.006, 20), 2, "detected"),
    (shifted(0.0, 20, sd=0.003), 2, "equivalent"),  # Within ±0.5 at look 2 with a small sd.
    (shifted(0.0, 20), 2, "equivalent"),  # sd 0.57: look 2's half-width 0.34 fits inside ±0.5 at 0,
    (shifted(0.002, 20), 2, "continue"),  # but not at 0.2 points: [-0.14, +0.54].
    (shifted(0.003, 30), 3, "detected"),  # 0.3 points: [+0.08, +0.52] at look 3.
    (shifted(0.001, 30, sd=0.015), 3, "undecided"),  # sd 1.5 points: [-0.47, +0.67], neither rule.
])
def test_the_sequential_rule_stops_where_the_design_says(differences, look, verdict):
    result = analyse(differences, LOOKS, ALPHA, MARGIN)
    assert (result.look, result.verdict) == (look, verdict)


def test_the_rule_looks_at_the_first_pairs_only_at_each_look():
    """20 pairs whose first 10 already exclude 0 stop at look 1: later seeds do not change it."""
    result = analyse(shifted(0.03, 10) + shifted(-0.03, 10, seed=1), LOOKS, ALPHA, MARGIN)
    assert (result.look, result.verdict, result.pairs) == (1, "detected", 10)


def test_the_designs_arithmetic():
    rows = design(LOOKS, ALPHA, MARGIN, 0.0057)
    assert [row["equivalence_possible"] for row in rows] == [False, True, True]
    assert rows[0]["detectable"] > 0.01 > rows[1]["detectable"] > rows[2]["detectable"]


def test_map_parts_are_checked_by_the_sections_they_override():
    params = parse_all(COMMITTED)
    design_params, parts = map_design(params.map, params.model, params.train)
    assert design_params.looks == LOOKS and parts["relu"].model.activation == "relu"
    assert parts["long"].train.epochs == 30 and parts["momentum_pilot"].train.momentum == 0.9
    broken = copy.deepcopy(COMMITTED["map"])
    broken["relu"]["activation"] = "swish"
    with pytest.raises(ParamsError, match=r"model.activation = 'swish' is not allowed"):
        map_design(broken, params.model, params.train)
    broken = copy.deepcopy(COMMITTED["map"])
    broken["long"]["momentum"] = 0.9  # Adam: momentum is SGD's.
    with pytest.raises(ParamsError, match=r"train.momentum = 0.9 is SGD's"):
        map_design(broken, params.model, params.train)
    broken = copy.deepcopy(COMMITTED["map"])
    broken["relu"]["dropout"] = 0.1
    with pytest.raises(ParamsError, match=r"unknown key map.relu.dropout"):
        map_design(broken, params.model, params.train)


def test_a_map_cell_is_one_point_of_its_part():
    check_cell(COMMITTED, "map", "after", 100, {"activation": "relu"}, part="relu")
    with pytest.raises(ParamsError, match=r"a map cell needs --activation"):
        check_cell(COMMITTED, "map", "after", 100, {}, part="relu")
    with pytest.raises(ParamsError, match=r"this cell \(none, 107\) is not in the map grid: map.relu_none.seeds"):
        check_cell(COMMITTED, "map", "none", 107, {"activation": "relu"}, part="relu_none")
    with pytest.raises(ParamsError, match=r"--part relu2 is not a part of the map grid"):
        check_cell(COMMITTED, "map", "after", 100, {"activation": "relu"}, part="relu2")
    with pytest.raises(ParamsError, match=r"--epochs 20 is not map.long.epochs \(30\)"):
        check_cell(COMMITTED, "map", "after", 100, {"epochs": 20}, part="long")


def write(path: Path, bn: str, seed: int, accuracy: float, part, diverged: bool = False) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    record = {"schema": 2, "bn": bn, "seed": seed, "model": dataclasses.asdict(part.model),
              "train": dataclasses.asdict(part.train),
              "metrics": {"test": {"accuracy": accuracy, "loss": 1.0}, "train": {"accuracy": 0.8, "loss": 0.5}},
              "history": {"fit/loss": [2.0, float("nan") if diverged else 1.0]}, "probes": None,
              "fit_seconds": 120.0, "environment": {"numerics_fingerprint": "3f000000-3f000000"}}
    path.write_text(json.dumps(record))
    bind(path)  # As `dvc repro` records it in grids/map/dvc.lock.


def test_the_report_pairs_on_seed_keeps_diverged_runs_out_and_words_each_verdict(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    params = parse_all(COMMITTED)
    _, parts = map_design(params.map, params.model, params.train)
    # relu: `after` 2 points ahead on 10 seeds, one `before` run diverged; long: 7 pairs so far.
    for seed in parts["relu"].seeds:
        write(placement_map.record_path("relu", "before", seed), "before", seed, 0.70 + seed / 1000, parts["relu"],
              diverged=seed == 109)
        write(placement_map.record_path("relu", "after", seed), "after", seed, 0.72 + seed / 1000, parts["relu"])
    for seed in parts["relu_none"].seeds:
        write(placement_map.record_path("relu_none", "none", seed), "none", seed, 0.68, parts["relu_none"])
    for seed in parts["long"].seeds[:7]:
        for bn in ("before", "after"):
            write(placement_map.record_path("long", bn, seed), bn, seed, 0.78, parts["long"])
    cells, missing = placement_map.collect(parts)
    declared = sum(len(part.variants) * len(part.seeds) * len(part.learning_rates or [None]) for part in parts.values())
    assert len(missing) == declared - 25 - 14
    rows = {name: placement_map.summarize_setting(setting, LOOKS, ALPHA, MARGIN) for name, setting in cells.items()}
    relu = rows["relu"]
    assert relu["diverged"] == 1 and relu["diverged_pairs"] == 1
    # 9 pairs left: not yet at look 1, though every one of them says +2 points.
    assert relu["placement"]["verdict"] == "not yet at look 1" and relu["placement"]["pairs"] == 9
    assert relu["gain"]["after_vs_none"]["pairs"] == 5 and relu["pairs_same_machine"]["same"] == 9
    assert rows["long"]["placement"]["pairs"] == 7 and "before_vs_none" not in rows["long"]["gain"]
    # The tenth pair trains: look 1 is reached and detects it.
    write(placement_map.record_path("relu", "before", 109), "before", 109, 0.70 + 109 / 1000, parts["relu"])
    cells, _ = placement_map.collect(parts)
    look = placement_map.summarize_setting(cells["relu"], LOOKS, ALPHA, MARGIN)["placement"]
    assert (look["look"], look["verdict"]) == (1, "detected")
    assert placement_map.wording(look, LOOKS, MARGIN).startswith("detected at look 1, `after` ahead")
    assert placement_map.agreement(placement_map.PUBLISHED[0], look) == "agrees (after ahead)"
    assert placement_map.agreement(placement_map.PUBLISHED[1], look).startswith("disagrees")


def test_a_record_with_other_settings_than_its_part_is_refused(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    params = parse_all(COMMITTED)
    _, parts = map_design(params.map, params.model, params.train)
    write(placement_map.record_path("long", "after", 100), "after", 100, 0.78, parts["relu"])  # 10 epochs, relu.
    with pytest.raises(Exception, match=r"long-after-100.json: records .*epochs=10.*not the .*epochs=30"):
        placement_map.collect(parts)


def test_the_momentum_setting_takes_the_rate_its_pilot_chose():
    """params.yaml's momentum rate is the committed pilot's choice: the largest rate at which every
    variant trained (reports/map/metrics.json, written by the map's report from the pilot's cells)."""
    summary = json.loads((Path(__file__).parents[1] / "reports/map/metrics.json").read_text())
    assert summary["pilot"]["chosen"] == COMMITTED["map"]["momentum"]["learning_rate"]
    assert COMMITTED["map"]["momentum_none"]["learning_rate"] == COMMITTED["map"]["momentum"]["learning_rate"]


def test_the_pilot_chooses_the_largest_rate_at_which_every_variant_trained():
    from stages.analysis.cells import Cell

    def pilot_cell(bn, rate, diverged=False):
        losses = [2.0, float("nan") if diverged else 1.0]
        return Cell(bn, 99, {"test": {"accuracy": 0.1 if diverged else 0.7}}, {"fit/loss": np.array(losses)}, None,
                    {"fit_seconds": 90.0, "history": {"fit/loss": losses}}, {})

    # 0.01 and 0.03 train every variant; at 0.1 `before` diverges.
    cells = {(bn, 99, rate): pilot_cell(bn, rate, diverged=(bn, rate) == ("before", 0.1))
             for rate in (0.01, 0.03, 0.1) for bn in ("before", "after", "none")}
    table = placement_map.pilot(cells)
    assert table["chosen"] == 0.03 and table["cell_minutes"] == 13.5
    assert table["rates"]["0.1"]["before"] == {"test_accuracy": 0.1, "diverged": True}


def test_bns_gain_in_a_setting_is_not_tested_below_three_pairs():
    from stages.grids.map import gain_text, interval

    assert gain_text(interval([0.0029])) == "+0.29 (one pair: not tested)"
    assert gain_text(interval([0.0029, 0.0031])) == "+0.30 (2 pairs: not tested)"
    assert gain_text(interval([0.01, 0.02, 0.03])).startswith("+2.00 [") and gain_text(interval([0.01, 0.02, 0.03])).endswith("(n=3)")


def test_a_negative_difference_is_detected_for_before_and_compared_with_the_published_runs():
    look = analyse(shifted(-0.02, 10), LOOKS, ALPHA, MARGIN).as_dict()
    assert (look["look"], look["verdict"]) == (1, "detected") and look["high"] < 0
    assert placement_map.agreement(placement_map.PUBLISHED[0], look) == "disagrees (ours: before ahead; theirs: after)"
    assert placement_map.agreement(placement_map.PUBLISHED[1], look) == "agrees (before ahead)"


@pytest.mark.parametrize("count, look, pairs", [(15, 1, 10), (29, 2, 20), (35, 3, 30)])
def test_between_looks_the_rule_stays_at_the_last_look_reached_and_uses_its_first_pairs(count, look, pairs):
    """0.2 points with sd 1 point: no look decides it; the last look stops it whatever follows."""
    result = analyse(shifted(0.002, count, sd=0.01), LOOKS, ALPHA, MARGIN)
    assert (result.look, result.pairs) == (look, pairs)
    assert result.verdict == ("undecided" if look == 3 else "continue")


@pytest.mark.parametrize("verdict, look, words", [
    ("continue", 1, "not yet decided at look 1: the next look needs 20 pairs that trained"),
    ("continue", 2, "not yet decided at look 2: the next look needs 30 pairs that trained"),
    ("equivalent", 2, "equivalent within ±0.5 points at look 2: the look-adjusted CI lies inside the margin"),
    ("undecided", 3, "undecided after the last look (3): neither rule stopped it"),
    ("not yet at look 1", None, "not tested yet: 4 of the 10 pairs look 1 needs"),
    ("detected", 2, "detected at look 2, `before` ahead: the look-adjusted CI excludes 0"),
])
def test_each_verdict_is_worded_by_the_claim_rules(verdict, look, words):
    row = {"verdict": verdict, "look": look, "pairs": 4, "mean": -0.01}
    assert placement_map.wording(row, LOOKS, MARGIN) == words


@pytest.mark.parametrize("row, words", [
    (None, "cannot tell yet (our setting is not decided)"),
    ({"verdict": "not yet at look 1", "mean": None}, "cannot tell yet (our setting is not decided)"),
    ({"verdict": "continue", "mean": 0.02}, "cannot tell yet (our setting is not decided)"),
    ({"verdict": "undecided", "mean": -0.02}, "cannot tell yet (our setting is not decided)"),
    ({"verdict": "equivalent", "mean": 0.001}, "cannot compare: ours is equivalent within the margin; one run of "
                                               "each, theirs, cannot tell its 2.5 points from seed noise"),
    ({"verdict": "detected", "mean": -0.01}, "disagrees (ours: before ahead; theirs: after)"),
])
def test_a_published_run_is_compared_only_with_a_decided_setting(row, words):
    assert placement_map.agreement(placement_map.PUBLISHED[0], row) == words  # CaffeNet: after ahead by 2.5.


def test_the_convention_line_names_each_settings_lead_from_its_own_verdict():
    summary = {"reference": {"placement": {"pairs": 35, "mean": 0.006, "ci_low": 0.004, "ci_high": 0.008}},
               "settings": {"relu": {"placement": {"verdict": "detected", "mean": 0.017}},
                            "momentum": {"placement": {"verdict": "continue", "mean": 0.009}},
                            "long": {"placement": {"verdict": "detected", "mean": -0.010}}}}
    assert placement_map.convention(summary).endswith(
        "our settings: `before` detected ahead in `long`; `after` detected ahead in the reference, `relu`; "
        "neither detected in `momentum`.")
    # The reference has no sequential verdict: its 95% interval holding 0 detects neither.
    summary["reference"]["placement"]["ci_low"] = -0.001
    assert placement_map.convention(summary).endswith(
        "`after` detected ahead in `relu`; neither detected in the reference, `momentum`.")


def test_published_numbers_in_the_docs_are_the_reports():
    """docs/map.md quotes the published single runs; the report computes from map.PUBLISHED."""
    text = (Path(__file__).parents[1] / "docs/map.md").read_text()
    for entry in placement_map.PUBLISHED:
        net = entry["net"].split("128")[0]
        ahead, behind = sorted((entry["before"], entry["after"]), reverse=True)
        assert re.search(rf"{net}[^()]*\({ahead:.3f} vs {behind:.3f}", text), net


def setting_cells(differences: dict[int, float], diverged_after: tuple[int, ...] = ()) -> dict:
    """A map setting's cells: after − before = `differences[seed]`; `after` diverged at those seeds."""
    from stages.analysis.cells import Cell

    def cell(bn, seed, accuracy, bad=False):
        losses = [2.0, float("nan") if bad else 1.0]
        run = {"fit_seconds": 60.0, "history": {"fit/loss": losses},
               "environment": {"numerics_fingerprint": "3f000000-3f000000", "date": f"2026-12-07T00:{seed % 60:02d}:00"}}
        return Cell(bn, seed, {"test": {"accuracy": accuracy}}, {"fit/loss": np.array(losses)}, None, run, {})

    cells = {}
    for seed, difference in differences.items():
        cells[("before", seed, None)] = cell("before", seed, 0.75)
        cells[("after", seed, None)] = cell("after", seed, 0.75 + difference, bad=seed in diverged_after)
    return cells


def test_a_diverged_after_run_leaves_its_pair_out_and_every_text_says_so():
    from stages.analysis import claims
    from stages.analysis.answer import map_sentence

    differences = {seed: 0.03 + seed / 10000 for seed in range(11)}
    row = placement_map.summarize_setting(setting_cells(differences, diverged_after=(4,)), LOOKS, ALPHA, MARGIN)
    assert row["diverged_pairs"] == 1 and row["pairs_trained"] == 10 and row["placement"]["verdict"] == "detected"
    summary = {"design": {"looks": LOOKS, "equivalence_margin": MARGIN}, "settings": {"relu": row}}
    sentence = map_sentence(claims.map_settings(summary))
    assert "ReLU: +3.05 points" in sentence and "(one pair left out: a run diverged)" in sentence
    assert sentence.endswith(f". {placement_map.EARLY_DETECTION}")  # Detected at look 1 of 3: an early stop.
    undecided = placement_map.summarize_setting(setting_cells({seed: (-1) ** seed * 0.01 for seed in range(10)}),
                                                LOOKS, ALPHA, MARGIN)
    summary["settings"] = {"relu": undecided}
    assert undecided["placement"]["verdict"] == "continue"
    assert placement_map.EARLY_DETECTION not in map_sentence(claims.map_settings(summary))  # No detection: no caveat.


def test_a_seed_added_later_joins_no_earlier_look():
    """params.yaml's order decides which pairs a look uses: seed 0, listed last, is left out of look 1."""
    differences = {seed: 0.03 for seed in range(1, 11)} | {0: -0.5}
    cells = setting_cells(differences)
    in_order = placement_map.summarize_setting(cells, LOOKS, ALPHA, MARGIN, order=list(range(1, 11)) + [0])
    assert in_order["placement"]["pairs"] == 10 and in_order["placement"]["mean"] == pytest.approx(0.03)
    by_number = placement_map.summarize_setting(cells, LOOKS, ALPHA, MARGIN)
    assert by_number["placement"]["mean"] < 0


def test_the_report_shows_pairs_run_between_looks_and_each_settings_own_spread():
    params = parse_all(COMMITTED)
    _, parts = map_design(params.map, params.model, params.train)
    row = placement_map.summarize_setting(setting_cells({seed: 0.002 + (seed % 2) * 0.03 for seed in range(15)}),
                                          LOOKS, ALPHA, MARGIN)
    assert row["placement"]["verdict"] == "continue" and row["paired_sd_all"] == pytest.approx(0.0155, abs=1e-4)
    summary = {"design": {"looks": LOOKS, "alpha": ALPHA, "equivalence_margin": MARGIN, "assumed_paired_sd": 0.0057,
                          "per_look": design(LOOKS, ALPHA, MARGIN, 0.0057)},
               "reference": {"placement": {"pairs": 2, "mean": 0.006, "ci_low": None, "ci_high": None},
                             "gain": {key: {"pairs": 0, "mean": None, "ci_low": None, "ci_high": None}
                                      for key in ("before_vs_none", "after_vs_none")},
                             "diverged_pairs": 0, "pairs_same_machine": {"same": 2, "unknown": 0, "pairs": 2},
                             "consistency": row["consistency"]},
               "settings": {"long": row}, "pilot": None}
    text = placement_map.render_markdown(summary, [], parts)
    assert "| `long` | 10 of 15 (look 1 uses the first 10) |" in text
    own = next(line for line in text.splitlines() if line.startswith("| `long` | 15 |"))
    assert own.endswith("| at no look (half-width never below ±0.5) |")  # sd 1.55 points: ±0.59 at look 3.


def test_a_setting_before_its_first_look_is_written_as_strict_json():
    """No interval before look 1: null in reports/map/metrics.json, not NaN, which strict readers refuse."""
    look = analyse([0.01], LOOKS, ALPHA, MARGIN).as_dict()
    assert (look["low"], look["high"], look["sd"]) == (None, None, None)
    json.dumps(look, allow_nan=False)
