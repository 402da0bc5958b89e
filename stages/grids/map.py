"""Beyond one net: the placement map (grids/map). Does "after, by about 0.6 points" hold with ReLU,
with SGD + momentum, and when training runs for 30 epochs?

Each setting is a part of params.yaml's `map` (its `_none` part adds `none` for BN's gain on the
first seeds); `momentum_pilot` picks the momentum setting's rate. after - before is paired on seed
(one seed, one data order and initializer stream for both), under the sequential design that
params.yaml declares (stages/analysis/sequential.py); BN's gain (before - none, after - none) is
paired too, with a plain 95% t interval. Diverged runs are counted and kept out of every mean,
interval and figure point, with their pair. The reference setting's row comes from the placement
grid (study and placement cells, 35 pairs, fixed in advance rather than sequential).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from stages.analysis import consistency
from stages.analysis.binding import Recipe
from stages.analysis.cells import Cell, diverged, load_cell, pairs_of
from stages.analysis.records import fit_seconds
from stages.analysis.sequential import analyse, design
from stages.analysis.statistics import MIN_RUNS, POWER, describe
from stages.grids.sections import map_design
from stages.grids.study import RUNS as STUDY_RUNS

OUT = Path("reports/map")  # The report and its records (runs/).
RUNS = OUT / "runs"
PIPELINE = "grids/map/dvc.yaml"
PILOT = "momentum_pilot"
GAIN_SUFFIX = "_none"  # A setting's part with `none` for BN's gain.
# The paired sd of after - before the design's arithmetic assumed before any map cell ran: the
# placement grid's (0.57 points). The report also gives each setting's own spread and what the
# looks can see with it, since a setting's sd can be well above the placement grid's.
DESIGN_SD = 0.0057
PLACEMENT_RUNS = Path("reports/placement/runs")


def setting_of(part: str) -> str:
    return part[:-len(GAIN_SUFFIX)] if part.endswith(GAIN_SUFFIX) else part


def record_path(part: str, bn: str, seed: int, rate: float | None = None) -> Path:
    """reports/map/runs/<setting>-<bn>-<seed>.json; a pilot's records name their rate too."""
    if rate is not None:  # As DVC's matrix writes the rate into the record's name: str().
        return RUNS / f"{part}-{rate}-{bn}-{seed}.json"
    return RUNS / f"{setting_of(part)}-{bn}-{seed}.json"


def stage(part: str, bn: str, seed: int, rate: float | None = None) -> str:
    return f"{PIPELINE}:{part}@{bn}-{rate}-{seed}" if rate is not None else f"{PIPELINE}:{part}@{bn}-{seed}"


def collect(parts: dict) -> tuple[dict[str, dict[tuple[str, int, float | None], Cell]], list[str]]:
    """Every record of every part that has run, by setting and (bn, seed, pilot rate), each checked
    against its part's settings; and the DVC stages of the cells not yet run."""
    cells: dict[str, dict] = {}
    missing = []
    for name, part in parts.items():
        for rate in part.learning_rates or [None]:
            for bn in part.variants:
                for seed in part.seeds:
                    path = record_path(name, bn, seed, rate)
                    if not path.is_file():
                        missing.append(stage(name, bn, seed, rate))
                        continue
                    expected = {"bn": bn, "seed": seed, "epochs": part.train.epochs,
                                "optimizer": part.train.optimizer, "momentum": part.train.momentum,
                                "learning_rate": rate if rate is not None else part.train.learning_rate,
                                "activation": part.model.activation}
                    cell = load_cell(path, PIPELINE, Recipe.of(part.model, part.train), **expected)
                    cells.setdefault(setting_of(name), {})[(bn, seed, rate)] = cell
    return cells, missing


def accuracy(cell: Cell) -> float:
    return float(cell.metrics["test"]["accuracy"])


def paired(cells: dict, first: str, second: str, order: list[int] | None = None) -> tuple[list[float], list[int], int]:
    """first - second test accuracy over the seeds both have run, in `order` (params.yaml's, so that
    a seed added later never joins an earlier look; else by number), leaving out a pair where
    either run diverged; and those seeds, and the number of such diverged pairs."""
    both = {seed for (bn, seed, _) in cells if bn == first} & {seed for (bn, seed, _) in cells if bn == second}
    seeds = [seed for seed in order if seed in both] if order is not None else sorted(both)
    kept, differences, dropped = [], [], 0
    for seed in seeds:
        one, other = cells[(first, seed, None)], cells[(second, seed, None)]
        if diverged(one) or diverged(other):
            dropped += 1
            continue
        kept.append(seed)
        differences.append(accuracy(one) - accuracy(other))
    return differences, kept, dropped


def interval(differences: list[float]) -> dict:
    """Mean paired difference with its 95% t interval (statistics.describe's; None below two pairs)."""
    if not differences:
        return {"pairs": 0, "mean": None, "ci_low": None, "ci_high": None}
    described = describe(differences)
    return {"pairs": described["n"], **{key: described[key] for key in ("mean", "ci_low", "ci_high")}}


def same_machine(cells: dict, seeds: list[int]) -> dict:
    """How many pairs (before and after of one seed) ran on one machine and software: the same
    numerics fingerprint (record schema 2), else the same CPU, instruction sets and libraries;
    `unknown`: pairs whose records do not say (older records name no instruction sets)."""
    def machine(cell: Cell) -> tuple | None:
        environment = cell.run.get("environment", {})
        if "numerics_fingerprint" in environment:
            return (environment["numerics_fingerprint"],)
        if "cpu_features" not in environment:
            return None
        return (environment.get("device"), tuple(environment["cpu_features"]), environment.get("tensorflow"),
                environment.get("keras"))
    pairs = [(machine(cells[("before", seed, None)]), machine(cells[("after", seed, None)])) for seed in seeds]
    return {"same": sum(one is not None and one == other for one, other in pairs),
            "unknown": sum(one is None or other is None for one, other in pairs), "pairs": len(pairs)}


def agreeing(cells: dict, seeds: list[int]) -> dict:
    """Whether the pairs that ran apart (numerics, day, code, run order) agree on after − before."""
    return consistency.check(((cells[("after", seed, None)], cells[("before", seed, None)]) for seed in seeds),
                             "after − before")


def machines(row: dict) -> str:
    text = f"{row['same']} of {row['pairs']}"
    return text + (f" ({row['unknown']} not recorded)" if row["unknown"] else "")


def summarize_setting(cells: dict, looks: list[int], alpha: float, margin: float,
                      order: list[int] | None = None) -> dict:
    differences, seeds, dropped = paired(cells, "after", "before", order)
    look = analyse(differences, looks, alpha, margin)
    gains = {f"{bn}_vs_none": interval(paired(cells, bn, "none")[0]) for bn in ("before", "after")
             if any(key[0] == "none" for key in cells)}
    runs = list(cells.values())
    own_sd = float(np.std(differences, ddof=1)) if len(differences) > 1 else None
    return {"placement": look.as_dict(), "consistency": agreeing(cells, seeds), "paired_sd_all": own_sd,
            "pairs_trained": len(differences),
            # What each look can see with this setting's own spread (from MIN_RUNS pairs on; the
            # design itself stays the one fixed in advance).
            "own_per_look": design(looks, alpha, margin, own_sd) if len(differences) >= MIN_RUNS and own_sd else None,
            "pairs_same_machine": same_machine(cells, seeds), "diverged": sum(diverged(cell) for cell in runs),
            "diverged_pairs": dropped, "runs": len(runs), "gain": gains,
            "cell_minutes": round(sum(fit_seconds(cell.run) for cell in runs) / 60, 1),
            "minutes_per_cell": round(float(np.median([fit_seconds(cell.run) for cell in runs])) / 60, 2) if runs else None}


def reference(placement_seeds: list[int], study_seeds: list[int], recipe: Recipe) -> dict:
    """The reference setting (ELU, Adam 1e-3, 10 epochs): the placement grid's pairs and the
    study's `none`, paired on seed, with plain 95% intervals (a fixed number of seeds)."""
    cells = {}
    for bn in ("before", "after"):
        for runs, seeds, pipeline in ((STUDY_RUNS, study_seeds, "grids/study/dvc.yaml"),
                                      (PLACEMENT_RUNS, placement_seeds, "grids/placement/dvc.yaml")):
            for seed in seeds:
                path = runs / f"{bn}-{seed}.json"
                if path.is_file():
                    cells[(bn, seed, None)] = load_cell(path, pipeline, recipe, bn=bn, seed=seed)
    for seed in study_seeds:
        path = STUDY_RUNS / f"none-{seed}.json"
        if path.is_file():
            cells[("none", seed, None)] = load_cell(path, "grids/study/dvc.yaml", recipe, bn="none", seed=seed)
    differences, seeds, dropped = paired(cells, "after", "before")
    return {"placement": interval(differences), "diverged_pairs": dropped, "consistency": agreeing(cells, seeds),
            "gain": {f"{bn}_vs_none": interval(paired(cells, bn, "none")[0]) for bn in ("before", "after")},
            "pairs_same_machine": same_machine(cells, seeds)}


def pilot(cells: dict) -> dict:
    """The momentum pilot: per rate, each variant's test accuracy and whether it diverged, and
    the rate the momentum setting takes: the largest at which every variant trained."""
    rates = sorted({rate for (_, _, rate) in cells})
    table = {f"{rate:g}": {bn: {"test_accuracy": accuracy(cell), "diverged": diverged(cell)}
                           for (bn, _, cell_rate), cell in cells.items() if cell_rate == rate} for rate in rates}
    variants = {bn for (bn, _, _) in cells}
    trained = [rate for rate in rates if all(bn in table[f"{rate:g}"] and not table[f"{rate:g}"][bn]["diverged"]
                                             for bn in variants)]
    return {"rates": table, "chosen": trained[-1] if trained else None,
            "cell_minutes": round(sum(fit_seconds(cell.run) for cell in cells.values()) / 60, 1)}


def summarize(cells: dict, design_params, reference_row: dict, settings: dict[str, list[int]]) -> dict:
    """The design, the reference row, every declared setting (`settings`, in params.yaml's order,
    those without a cell yet included) and the pilot."""
    looks, alpha, margin = design_params.looks, design_params.alpha, design_params.equivalence_margin
    return {"design": {"looks": looks, "alpha": alpha, "equivalence_margin": margin, "boundary": "O'Brien-Fleming (classic)",
                       "assumed_paired_sd": DESIGN_SD, "per_look": design(looks, alpha, margin, DESIGN_SD)},
            "reference": reference_row,
            "settings": {name: summarize_setting(cells.get(name, {}), looks, alpha, margin, order)
                         for name, order in settings.items()},
            "pilot": pilot(cells[PILOT]) if PILOT in cells else None}


# Published single runs of BN before vs after the activation (one run per arm, ImageNet at 128 px,
# LSUV or orthogonal init, ReLU): github.com/ducha-aiki/caffenet-benchmark, batchnorm.md. The
# differences are after - before in points of top-1 accuracy, as published; single runs, so each
# is within its own seed noise of anything.
PUBLISHED = (
    {"net": "CaffeNet128, ReLU", "before": 0.474, "after": 0.499, "setting": "relu"},
    {"net": "GoogLeNet128, ReLU (before: orthogonal init, after: LSUV)", "before": 0.607, "after": 0.596,
     "setting": "relu"},
)


def lead(row: dict) -> str | None:
    """The placement a row detects ahead, "after" or "before" (after − before's sign); None where it
    detects none. A map setting's look row by its sequential verdict; the reference's row (a fixed
    number of pairs, no verdict) by its 95% interval excluding 0."""
    if "verdict" in row:
        detected = row["verdict"] == "detected"
    else:
        detected = row["ci_low"] is not None and (row["ci_low"] > 0 or row["ci_high"] < 0)
    return ("after" if row["mean"] > 0 else "before") if detected else None


def agreement(published: dict, row: dict | None) -> str:
    """Whether our verdict in the published result's setting agrees with its sign."""
    if row is not None and row["verdict"] == "equivalent":
        return f"cannot compare: ours is equivalent within the margin; one run of each, theirs, " \
               f"cannot tell its {abs(published['after'] - published['before']) * 100:.1f} points from seed noise"
    ours = None if row is None else lead(row)
    if ours is None:  # Neither detected nor equivalent: not decided yet.
        return "cannot tell yet (our setting is not decided)"
    theirs = "after" if published["after"] > published["before"] else "before"
    return "agrees" + f" ({ours} ahead)" if ours == theirs else f"disagrees (ours: {ours} ahead; theirs: {theirs})"


def published(summary: dict) -> list[str]:
    """The map beside published results: the single runs (a table) and the convention (a line); in
    this report and in docs/map.md (tools/answer.py)."""
    lines = ["| published (one run per arm) | after − before | our setting | ours |", "|---|---|---|---|"]
    for entry in PUBLISHED:
        row = summary["settings"].get(entry["setting"], {}).get("placement")
        lines.append(f"| {entry['net']} | {(entry['after'] - entry['before']) * 100:+.1f} | `{entry['setting']}` | "
                     f"{agreement(entry, row)} |")
    return lines + ["", "These single runs differ from ours in data (ImageNet), net and training, so agreement in "
                        "sign is all they can show. " + convention(summary)]


def convention(summary: dict) -> str:
    """The map beside the convention (BN before the activation): which settings detect which
    placement ahead, and which are not decided, from each row's own verdict."""
    found = {"before": [], "after": [], None: []}
    found[lead(summary["reference"]["placement"])].append("the reference")
    for name, row in summary["settings"].items():
        found[lead(row["placement"])].append(f"`{name}`")
    parts = [f"`{placement}` detected ahead in {', '.join(found[placement])}" for placement in ("before", "after") if found[placement]]
    parts += [f"neither detected in {', '.join(found[None])}"] if found[None] else []
    return ("Beside the convention of BN before the activation (the original BN paper, most ResNets; a "
            f"convention, not a paired test), our settings: {'; '.join(parts)}.")


def points(value: float | None) -> str:
    return "–" if value is None else f"{value * 100:+.2f}"


def ci(row: dict, low: str = "ci_low", high: str = "ci_high") -> str:
    if row.get(low) is None:  # Below two pairs (interval) or before a setting's first look (Look.as_dict).
        return "–"
    return f"[{points(row[low])}, {points(row[high])}]"


def gain_text(gain: dict) -> str:
    """BN's gain in a setting: with its CI from MIN_RUNS pairs on, else "not tested" (the claim rules)."""
    pairs = gain["pairs"]
    if pairs < MIN_RUNS:
        return f"{points(gain['mean'])} ({pairs_of(pairs)}: not tested)"
    return f"{points(gain['mean'])} {ci(gain)} (n={pairs})"


# Said wherever a detected setting's mean is quoted (this report; the README's map line when a
# setting stopped before the last look): a sequential design stops when the difference looks large.
EARLY_DETECTION = ("A setting detected before the last look stopped because its difference looked large at "
                   "that look, so its mean there tends to overstate the size: what the detection establishes "
                   "is the sign.")

VERDICTS = {
    "detected": "detected at look {look}, `{ahead}` ahead: the look-adjusted CI excludes 0",
    "equivalent": "equivalent within ±{margin} points at look {look}: the look-adjusted CI lies inside the margin",
    "undecided": "undecided after the last look ({look}): neither rule stopped it",
    "continue": "not yet decided at look {look}: the next look needs {next} pairs that trained",
    "not yet at look 1": "not tested yet: {pairs} of the {first} pairs look 1 needs",
}


def wording(row: dict, looks: list[int], margin: float) -> str:
    look = row["look"]
    # Which placement leads, named, so no reader has to decode after − before's sign.
    return VERDICTS[row["verdict"]].format(look=look, margin=f"{margin * 100:g}", pairs=row["pairs"], first=looks[0],
                                           next=looks[look] if look is not None and look < len(looks) else "–",
                                           ahead=lead(row))


def own_spread(settings: dict, looks: list[int], margin: float) -> list[str]:
    """What each look can see with each setting's own paired sd (from MIN_RUNS pairs that trained):
    how far a setting is from a verdict. The design stays the one fixed in advance."""
    rows = {name: row for name, row in settings.items() if row["own_per_look"]}
    if not rows:
        return []
    lines = ["With each setting's own spread so far (paired sd of after − before over the pairs that trained), "
             f"each look's CI half-width at no difference and the difference it detects with {POWER:.0%} power:", "",
             "| setting | pairs | paired sd | " + " | ".join(f"look {index} ({pairs} pairs)" for index, pairs in
                                                      enumerate(looks, start=1)) + " | equivalence possible |",
             "|---|---|---|" + "---|" * len(looks) + "---|"]
    for name, row in rows.items():
        per_look = row["own_per_look"]
        possible = [index for index, entry in enumerate(per_look, start=1) if entry["equivalence_possible"]]
        lines.append(f"| `{name}` | {row['pairs_trained']} | {row['paired_sd_all'] * 100:.2f} | "
                     + " | ".join(f"±{entry['half_width'] * 100:.2f}, detects {entry['detectable'] * 100:.2f}"
                                  for entry in per_look)
                     + f" | {f'from look {possible[0]}' if possible else f'at no look (half-width never below ±{margin * 100:g})'} |")
    return lines + [""]


def render_markdown(summary: dict, missing: list[str], parts: dict) -> str:
    design_row = summary["design"]
    looks, margin = design_row["looks"], design_row["equivalence_margin"]
    lines = ["# The placement map: does BN after the activation stay ahead beyond one net?", "",
             "after − before test accuracy, paired on seed, in each setting; BN's gain beside it. Points "
             "are percentage points of test accuracy. Settings: " +
             "; ".join(f"`{name}` ({', '.join(f'{key} {value}' for key, value in part.settings.items())})"
                       for name, part in parts.items() if not name.endswith(GAIN_SUFFIX) and name != PILOT) + ".", ""]
    if missing:
        lines += [f"**Incomplete: {len(missing)} cells have not run yet** (`python tools/map_cells.py`, or "
                  f"`dvc repro {PIPELINE}`).", ""]
    lines += ["| setting | pairs | after − before | CI | look | verdict | before − none | after − none | diverged | pairs on one machine | cells run apart | min/cell |",
              "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    ref = summary["reference"]
    lines.append(f"| reference (ELU, Adam 1e-3, 10 epochs; placement grid) | {ref['placement']['pairs']} | "
                 f"{points(ref['placement']['mean'])} | {ci(ref['placement'])} (95%) | fixed | "
                 f"{'no difference detected' if lead(ref['placement']) is None else 'detected'} | "
                 f"{points(ref['gain']['before_vs_none']['mean'])} {ci(ref['gain']['before_vs_none'])} | "
                 f"{points(ref['gain']['after_vs_none']['mean'])} {ci(ref['gain']['after_vs_none'])} | "
                 f"{ref['diverged_pairs']} pairs | {machines(ref['pairs_same_machine'])} | "
                 f"{consistency.in_a_word(ref['consistency'])} | – |")
    for name, row in summary["settings"].items():
        look = row["placement"]
        gain = row["gain"]
        # A look uses its first n pairs; between looks, more have trained than it uses.
        pairs = (str(look["pairs"]) if look["pairs"] == row["pairs_trained"]
                 else f"{look['pairs']} of {row['pairs_trained']} (look {look['look']} uses the first {look['pairs']})")
        left_out = f"; {pairs_of(row['diverged_pairs'])} left out" if row["diverged_pairs"] else ""
        lines.append(
            f"| `{name}` | {pairs} | {points(look['mean'])} | {ci(look, 'low', 'high')} (look-adjusted) | "
            f"{look['look'] or '–'} | {wording(look, looks, margin)} | "
            + " | ".join(gain_text(gain[key]) if key in gain else "not run" for key in ("before_vs_none", "after_vs_none"))
            + f" | {row['diverged']} of {row['runs']} runs{left_out} | {machines(row['pairs_same_machine'])} | "
            f"{consistency.in_a_word(row['consistency'])} | {row['minutes_per_cell'] if row['minutes_per_cell'] is not None else '–'} |")
    lines += ["", "## The sequential design (fixed before any map cell ran)", "",
              f"Looks at {', '.join(map(str, looks))} seed pairs per setting, two-sided α = {design_row['alpha']}, "
              f"classic O'Brien–Fleming boundaries for equal looks (not a spending function). Each boundary z "
              f"is applied to the paired t of its look by keeping its nominal two-sided p: the look-adjusted "
              f"interval is mean ± t·sd/√n with that p's t quantile at n − 1 degrees of freedom. A setting "
              f"stops at the first look whose interval excludes 0 (detected) or lies within ±{margin * 100:g} "
              f"points (equivalent); after the last look without either it is undecided.", "",
              f"What each look can see, with a paired sd of {design_row['assumed_paired_sd'] * 100:.2f} points "
              f"(the placement grid's):", "",
              f"| look | pairs | z | nominal p | t | CI half-width at no difference | detectable with {POWER:.0%} power | equivalence possible |",
              "|---|---|---|---|---|---|---|---|"]
    for index, row in enumerate(design_row["per_look"], start=1):
        lines.append(f"| {index} | {row['pairs']} | {row['z']:.3f} | {row['nominal_p']:.4f} | {row['t']:.3f} | "
                     f"±{row['half_width'] * 100:.2f} | {row['detectable'] * 100:.2f} | {'yes' if row['equivalence_possible'] else 'no'} |")
    lines += ["", "Look 1 can detect only large differences, and no setting can be called equivalent before "
              "look 2 unless its own sd is well below the assumed one; BN's gain (`none`, first seeds only) "
              "is a plain paired 95% interval.", ""]
    lines += own_spread(summary["settings"], looks, margin)
    lines += [EARLY_DETECTION, ""]
    lines += ["## Beside the published single runs", "", *published(summary), ""]
    if summary["pilot"]:
        table = summary["pilot"]
        lines += ["## The momentum pilot", "",
                  "SGD with momentum 0.9, one seed, 10 epochs, every variant at each rate; the momentum setting "
                  "takes the largest rate at which every variant trained.", "",
                  "| rate | " + " | ".join(sorted({bn for row in table["rates"].values() for bn in row})) + " |",
                  "|---|" + "---|" * len({bn for row in table["rates"].values() for bn in row})]
        for rate, row in table["rates"].items():
            lines.append(f"| {rate} | " + " | ".join(
                ("diverged" if row[bn]["diverged"] else f"{row[bn]['test_accuracy']:.4f}") if bn in row else "not run"
                for bn in sorted({bn for r in table["rates"].values() for bn in r})) + " |")
        lines += ["", f"Chosen: {table['chosen']:g}." if table["chosen"] else "No rate yet at which every variant trained.",
                  f"Pilot compute: {table['cell_minutes']} cell-minutes.", ""]
    lines += ["## Compute", "", "| setting | runs | cell-minutes (fit) | minutes per cell (median) |", "|---|---|---|---|"]
    for name, row in summary["settings"].items():
        lines.append(f"| `{name}` | {row['runs']} | {row['cell_minutes']} | {row['minutes_per_cell'] if row['minutes_per_cell'] is not None else '–'} |")
    return "\n".join(lines) + "\n"


# The report (grids/map/dvc.yaml's `report` stage, stages/grid_report.py): the params it reads,
# and what it writes.
PARAMS = ("map", "model", "train", "placement.seeds", "study.seeds")


def report(params) -> str:
    from stages.analysis import figures
    from stages.trainer.atomic import write_json, write_text

    design_params, parts = map_design(params.map, params.model, params.train)
    cells, missing = collect(parts)
    settings = {name: part.seeds for name, part in parts.items() if name != PILOT and not name.endswith(GAIN_SUFFIX)}
    summary = summarize(cells, design_params, reference(params.placement.seeds, params.study.seeds,
                                                        Recipe.of(params.model, params.train)), settings)
    markdown = render_markdown(summary, missing, parts)  # Everything computed before anything is written.
    write_json(OUT / "metrics.json", summary)
    figures.placement_map(summary, OUT / "figures" / "map.png")
    write_text(OUT / "map.md", markdown)
    return f"{sum(len(setting) for setting in cells.values())} cells ({len(missing)} not yet run) -> {OUT}/map.md"
