"""The results quoted in README.md and docs/, written from the committed reports, so that their
numbers cannot drift.

    python tools/answer.py           # print every generated block
    python tools/answer.py --write   # put each block into its file, between its markers

Every number comes from a report stage's output (reports/**/metrics.json) or from the cells'
records (reports/**/runs/*.json). tests/test_docs.py fails when a file's block differs from what
this writes, so after `dvc repro` of a report, run this with --write and commit both.
"""

from __future__ import annotations

import argparse
import json
import math
import re
import subprocess
import sys
from pathlib import Path

import scipy.stats

from stages.analysis.figures import VARIANT_ORDER
from stages.analysis.cells import oriented

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"

def begin(name: str) -> str:
    return f"<!-- {name}: written by `python tools/answer.py --write` from reports/; tests/test_docs.py checks it -->"


def end(name: str) -> str:
    return f"<!-- /{name} -->"


def load(path: str) -> dict:
    return json.loads((ROOT / path).read_text(encoding="utf-8"))


def points(value: float) -> str:
    return f"{value * 100:+.2f}"


def interval(row: dict) -> str:
    return f"[{points(row['ci_low'])}, {points(row['ci_high'])}]"


def gains(sweep: dict, optimizer: str, first: str, second: str) -> list[tuple[str, dict]]:
    """(rate, comparison first − second) at each rate of the sweep where both were compared."""
    found = []
    for rate, cell in sweep[optimizer].items():
        pair = (cell.get("comparisons") or {}).get(f"{first}_vs_{second}")
        if pair is not None:
            found.append((rate, pair))
    return found


def placement_answer(placement: dict) -> str:
    """The placement report's verdict, said as the answer to "before or after?" once every planned
    cell has run and the difference is detected; its own words otherwise (interim, undecided)."""
    verdict, comparison = placement["verdict"], placement["comparison"]
    detected = comparison is not None and not (comparison["ci_low"] <= 0 <= comparison["ci_high"])
    if verdict.startswith("interim") or not detected:
        return verdict[0].upper() + verdict[1:] + "."
    higher, lower = ("after", "before") if comparison["difference"] < 0 else ("before", "after")
    sign = -1 if higher == "after" else 1
    low, high = sorted((sign * comparison["ci_low"], sign * comparison["ci_high"]))
    stds = [placement["variants"][variant]["std"] for variant in ("before", "after")]
    # How often one run of each, same setting, different seeds, puts the higher variant ahead:
    # P(X_higher > X_lower) for independent normals with the observed means and spreads.
    ahead = scipy.stats.norm.cdf(abs(comparison["difference"]) / math.hypot(*stds))
    ratio = abs(comparison["difference"]) / max(stds)
    scale = "less than half" if ratio < 0.5 else "about" if ratio <= 2 else f"{ratio:.0f} times"
    return (f"{higher.capitalize()}, by a little: `{higher}` − `{lower}` = "
            f"{points(sign * comparison['difference'])} points (95% CI [{points(low)}, {points(high)}], "
            f"Welch p = {comparison['p_value']:.2g}), {scale} one seed's spread (std "
            f"{min(stds) * 100:.2f}–{max(stds) * 100:.2f} points): one run of each puts `{higher}` "
            f"ahead only {ahead:.0%} of the time")


def readme_answer() -> str:
    study, placement, sweep = (load(f"reports/{name}/metrics.json") for name in ("study", "placement", "sweep"))
    comparisons = study["comparisons"]
    before, after = comparisons["before_vs_none"], comparisons["after_vs_none"]
    seeds = {variant: study[variant]["test_accuracy"]["n"] for variant in ("before", "after", "none")}
    rows = placement["variants"]
    adam = gains(sweep, "adam", "before", "none")
    sgd = gains(sweep, "sgd", "before", "none")
    sgd_verdict = ("no detectable gain" if all(pair["ci_low"] <= 0 <= pair["ci_high"] for _, pair in sgd)
                   else "a gain at some rates")
    share = oriented(comparisons, "rescaled", "none")["difference"] / before["difference"]
    why = [f"*Where the gain appears:* with Adam, at every learning rate ("
           + ", ".join(f"{points(pair['difference'])} at {rate}" for rate, pair in adam)
           + f" points, `before` − `none`); with plain SGD, {sgd_verdict} ("
           + ", ".join(f"{points(pair['difference'])} at {rate}" for rate, pair in sgd) + ").",
           f"*Where the net starts:* rescaling the net once at the start, without BN (`rescaled`), "
           f"recovers {share:.0%} of BN's gain at 1e-3: {'less' if share < 0.5 else 'more'} than half."]
    if oriented(comparisons, "frozen", "none") is not None:
        frozen, against = oriented(comparisons, "frozen", "none"), oriented(comparisons, "before", "frozen")
        relation = ("no detectable difference from" if against["ci_low"] <= 0 <= against["ci_high"] else
                    "less than" if against["ci_low"] > 0 else "more than")
        why.append(f"*Normalizing during training:* BN that stops normalizing by the batch after the "
                   f"first epoch (`frozen`) gains {points(frozen['difference'])} points over `none` "
                   f"({interval(frozen)}), {relation} `before` (before − frozen "
                   f"{points(against['difference'])}, {interval(against)})"
                   + (": the first epoch of normalizing is enough." if relation.startswith("no detectable") else "."))
    why += [line for line in (norms_sentence(), head_sentence(), batch_sentence()) if line]
    lines = [
        "On CIFAR-10, with the reference notebook's net and training (10 epochs, batch 250, Adam 1e-3, "
        "float32), test accuracy:",
        "",
        f"- **{'BN helps.' if min(before['ci_low'], after['ci_low']) > 0 else 'Does BN help?'}** Over "
        f"the same net without BN: {points(before['difference'])} "
        f"points with BN before the activation (95% CI {interval(before)}), {points(after['difference'])} "
        f"after it ({interval(after)}); {seeds['before']} seeds per variant, Welch's test, Holm-adjusted "
        f"p = {before['p_holm']:.2g} and {after['p_holm']:.2g}.",
        f"- **Before or after the activation?** {placement_answer(placement)} "
        f"({rows['before']['n']} seeds of `before`, {rows['after']['n']} of `after`; "
        "[reports/placement/placement.md](reports/placement/placement.md)).",
        "- **Why?** ([docs/why.md](docs/why.md))",
        *(f"  - {line}" for line in why),
        "",
        "![every seed's test accuracy, before and after](reports/placement/figures/placement.png)",
        "",
        "Where and when these cells ran: " + "; ".join(provenance()) + ".",
    ]
    return "\n".join(lines)


def norms_sentence() -> str:
    """Scale invariance, from the norms grid: BN's kernel growth and end-of-training effective step
    against `none`'s, at each rate (reports/norms/metrics.json); empty before that report exists."""
    from stages.grids.norms import mean_over_seeds
    path = ROOT / "reports" / "norms" / "metrics.json"
    if not path.is_file():
        return ""
    summary = json.loads(path.read_text(encoding="utf-8"))
    found, holds = [], []
    for rate, variants in summary.items():
        if not {"before", "none"} <= set(variants):
            continue
        growth = {bn: mean_over_seeds(variants[bn], "conv", "norm_growth") for bn in ("before", "none")}
        step = {bn: mean_over_seeds(variants[bn], "conv", "effective_step_end") for bn in ("before", "none")}
        if None in growth.values() or None in step.values():
            continue
        ratio = step["before"] / step["none"]
        found.append(f"×{growth['before']:.2f} at Adam {rate} (`none`: ×{growth['none']:.2f}), ending "
                     f"with {ratio:.2f}× `none`'s effective step")
        holds.append((rate, growth["before"] > growth["none"] and ratio < 1))
    if not found:
        return ""
    seeds = len(next(iter(next(iter(summary.values())).values())))
    yes = [rate for rate, ok in holds if ok]
    no = [rate for rate, ok in holds if not ok]
    where = ("at every rate" if not no else "at no rate" if not yes
             else f"at {', '.join(yes)}, not at {', '.join(no)}")
    return (f"*Scale invariance:* over training, BN's convolution kernels grow {'; '.join(found)} "
            f"({seeds} seed{'s' if seeds > 1 else ''} per variant): they outgrow `none`'s and take "
            f"smaller relative steps {where}.")


def head_sentence() -> str:
    """The SGD head intervention, from reports/head/metrics.json; empty before that report exists."""
    path = ROOT / "reports" / "head" / "metrics.json"
    if not path.is_file():
        return ""
    summary = json.loads(path.read_text(encoding="utf-8"))
    parts = []
    for rate, variants in summary["with"].items():
        entry, twin = variants.get("before"), summary["without"].get(rate, {}).get("before")
        if entry is None:
            continue
        text = f"at SGD {rate} `before` diverged in {entry['diverged']} of {entry['n']} runs"
        if twin is not None:
            text += f" ({twin['diverged']} of {twin['n']} without)"
        pair = oriented(variants.get("comparisons") or {}, "before", "none")
        if pair is not None:
            text += f", `before` − `none` {points(pair['difference'])} points ({interval(pair)})"
        parts.append(text)
    if not parts:
        return ""
    return ("*The SGD head:* with every variant's dense-head input scaled to one RMS at the start, "
            + "; ".join(parts) + ".")


def batch_sentence() -> str:
    """BN's gain at each batch size, split into fitting and the gap (reports/batch/metrics.json);
    empty before that report compares `before` with `none` at a batch size other than the study's."""
    path = ROOT / "reports" / "batch" / "metrics.json"
    if not path.is_file():
        return ""
    summary = json.loads(path.read_text(encoding="utf-8"))
    split = {size: entry["split"]["before"] for size, entry in summary.items()
             if "before" in entry.get("split", {})}
    if len(split) < 2:
        return ""
    sizes = list(split)

    def listed(name: str, intervals: bool = False) -> str:
        return ", ".join(points(split[size][name]["difference"])
                         + (f" ({interval(split[size][name])})" if intervals else "") for size in sizes)

    narrowed = [size for size in sizes if split[size]["gap"]["ci_high"] < 0]
    verdict = (f"`before` narrows the train − test gap detectably at batch {', '.join(narrowed)}" if narrowed else
               "`before` narrows the train − test gap detectably at no batch size: where it gains, it gains by fitting")
    return (f"*The batch:* `before` − `none` at batch {', '.join(sizes)}: test accuracy "
            f"{listed('test_accuracy', intervals=True)} points, train accuracy {listed('train_accuracy')}, "
            f"gap {listed('gap')}; {verdict}.")


def provenance() -> list[str]:
    """Per machine, the cells' count, dates and code versions, from their records. Records made
    before runs recorded their date and commit say neither; for those, the date they were
    committed to git."""
    groups: dict[tuple, list[tuple[str, str]]] = {}
    for folder in ("study", "placement", "sweep", "norms", "head", "batch"):
        for path in sorted((ROOT / "reports" / folder / "runs").glob("*.json")):
            environment = json.loads(path.read_text(encoding="utf-8")).get("environment", {})
            recorded = "date" in environment
            date, commit = environment.get("date", "")[:10], environment.get("git_commit", "")[:7]
            if not recorded:
                commit, date = _added_by(path)
            features = "/".join(environment.get("cpu_features", []))
            key = (environment.get("device", "unknown device"), features,
                   f"TensorFlow {environment.get('tensorflow', '?')}", recorded)
            groups.setdefault(key, []).append((date, commit))
    lines = []
    for (device, features, backend, recorded), runs in groups.items():
        dates = sorted(date for date, _ in runs if date)
        when = dates[0] if dates[0] == dates[-1] else f"{dates[0]} to {dates[-1]}"
        commits = sorted({commit for _, commit in runs if commit})
        if recorded:
            versions = code_versions(commits)
            lines.append(f"{len(runs)} cells on {device} [{features}], {backend}, {when}, code "
                         + (" and ".join(versions) if len(versions) <= 3 else
                            f"{versions[0]} and {len(versions) - 1} later versions"))
        else:
            lines.append(f"{len(runs)} cells on {device}, {backend}, committed {when} (these records "
                         "predate recording the date, code version and instruction sets)")
    return lines


def code_versions(commits: list[str]) -> list[str]:
    """The commits that stand for distinct versions of the code (the `stages/` tree), oldest
    first: cells are committed one by one, so most of their commits change records, not code."""
    firsts: dict[str, tuple[str, str]] = {}
    for commit in commits:
        try:
            tree, date = (subprocess.run(["git", *command], cwd=ROOT, capture_output=True, text=True,
                                         check=True, timeout=60).stdout.strip()
                          for command in (["rev-parse", f"{commit}:stages"],
                                          ["log", "-1", "--format=%cI", commit, "--"]))
        except (OSError, subprocess.SubprocessError):  # Not in this clone's history.
            tree, date = commit, ""
        if tree not in firsts or date < firsts[tree][0]:
            firsts[tree] = (date, commit)
    return [commit for _, commit in sorted(firsts.values())]


def _added_by(path: Path) -> tuple[str, str]:
    """The short commit and date (YYYY-MM-DD) that last changed `path` in git."""
    try:
        out = subprocess.run(["git", "log", "-1", "--format=%h %as", "--", str(path)], cwd=ROOT,
                             capture_output=True, text=True, check=True, timeout=60).stdout.split()
    except (OSError, subprocess.SubprocessError):
        return "", ""
    return (out[0], out[1]) if len(out) == 2 else ("", "")


def study_block() -> str:
    """docs/results.md: the study's table and every comparison, from reports/study/metrics.json."""
    study = load("reports/study/metrics.json")
    variants = [key for key in study if key != "comparisons"]

    def spread(row: dict, digits: int = 4) -> str:
        return f"{row['mean']:.{digits}f} ± {row['std']:.{digits}f}"

    lines = ["| bn | seeds | test accuracy | train accuracy | β along −g (paper) | β along Δ | cos(Δ, −g) | fit s per cell |",
             "|---|---|---|---|---|---|---|---|"]
    for variant in variants:
        row = study[variant]
        lines.append(f"| {variant} | {row['test_accuracy']['n']} | {spread(row['test_accuracy'])} | "
                     f"{spread(row['train_accuracy'])} | {row['beta_median']['min']:.0f} – {row['beta_median']['max']:.0f} | "
                     f"{row['update_beta_median']['min']:.1f} – {row['update_beta_median']['max']:.1f} | "
                     f"{row['cos_update_gradient_median']['min']:.3f} – {row['cos_update_gradient_median']['max']:.3f} | "
                     f"{row['fit_seconds']['mean']:.0f} ± {row['fit_seconds']['std']:.0f} |")
    lines += ["", "Test accuracy mean ± std over seeds; the landscape columns give each cell's median over "
              "training, min – max over the seeds. Differences of mean test accuracy (points), Welch's "
              "95% CI, Holm-adjusted over all pairs, and the smallest difference these seeds detect "
              "with 80% power:", "",
              "| pair | difference | 95% CI | Holm p | minimum detectable |", "|---|---|---|---|---|"]
    for name, pair in study["comparisons"].items():
        detectable = "–" if pair["minimum_detectable"] is None else f"{pair['minimum_detectable'] * 100:.2f}"
        lines.append(f"| {name.replace('_vs_', ' − ')} | {points(pair['difference'])} | {interval(pair)} | "
                     f"{pair['p_holm']:.2g} | {detectable} |")
    return "\n".join(lines)


def sweep_block() -> str:
    """docs/why.md: the sweep's accuracy table and what it says, from reports/sweep/metrics.json."""
    sweep = load("reports/sweep/metrics.json")
    variants = [variant for variant in VARIANT_ORDER  # Those the sweep has, in the figures' order.
                if any(variant in cell for rates in sweep.values() for cell in rates.values())]
    lines = ["| optimizer, rate | " + " | ".join(variants) + " |", "|---|" + "---|" * len(variants)]
    for optimizer, rates in sweep.items():
        for rate, cell in rates.items():
            row = []
            for variant in variants:
                if variant not in cell:
                    row.append("–")
                    continue
                entry = cell[variant]
                text = f"{entry['mean']:.4f} ± {entry['std']:.4f} (n={entry['n']})"
                row.append(text + (f", {entry['diverged']} of {entry['n']} diverged" if entry["diverged"] else ""))
            lines.append(f"| {optimizer} {rate} | " + " | ".join(row) + " |")

    def gain(optimizer: str, first: str, second: str = "none") -> str:
        found = gains(sweep, optimizer, first, second)
        return ", ".join(f"{points(pair['difference'])} at {rate}" for rate, pair in found)

    significant = [f"{name.replace('_vs_', ' − ')} at {optimizer} {rate} ({points(pair['difference'])} points, "
                   f"Holm p = {pair['p_holm']:.2g})"
                   for optimizer, rates in sweep.items() for rate, cell in rates.items()
                   for name, pair in (cell.get("comparisons") or {}).items() if pair["p_holm"] < 0.05]
    def shares(variant: str) -> str:
        """The variant's share of BN's gain, (variant − none) / (before − none), at each Adam rate."""
        found = []
        for rate, cell in sweep["adam"].items():
            pairs = cell.get("comparisons") or {}
            gained = oriented(pairs, variant, "none")
            if "before_vs_none" in pairs and gained is not None:
                found.append(f"{gained['difference'] / pairs['before_vs_none']['difference']:.0%} at {rate}")
        return ", ".join(found)

    placement = [(rate, cell["comparisons"]["before_vs_after"]) for rate, cell in sweep["adam"].items()
                 if "before_vs_after" in (cell.get("comparisons") or {})]
    detectable = [pair["minimum_detectable"] for _, pair in placement if pair["minimum_detectable"] is not None]
    diverged = [f"{variant} {cell[variant]['diverged']} of {cell[variant]['n']}"
                for cell in sweep["sgd"].values() for variant in variants
                if variant in cell and cell[variant]["diverged"]]
    worst_sgd = max(sweep["sgd"], key=float)

    def beta(optimizer: str, key: str) -> str:
        return "; ".join(f"{rate}: " + ", ".join(f"{variant} {cell[variant]['landscape'][key]['mean']:.1f}"
                                                for variant in variants if key in cell.get(variant, {}).get("landscape", {}))
                         for rate, cell in sweep[optimizer].items())

    sgd_lower = []
    for rate, cell in sweep["sgd"].items():
        land = {v: cell[v]["landscape"].get("beta_median", {}).get("mean") for v in ("before", "none") if v in cell}
        if all(land.get(v) for v in ("before", "none")):
            sgd_lower.append(f"{1 - land['before'] / land['none']:.1%} lower at {rate} ({land['before']:.1f} vs {land['none']:.1f})")
    lines += ["", "Test accuracy after 10 epochs, mean ± std over n seeds. What the numbers say:", "",
              f"- **Adam, BN − `none` at each rate**, `before`: {gain('adam', 'before')} points; "
              f"`after`: {gain('adam', 'after')}.",
              "- **Holm-significant differences** (α = 0.05, within each rate): " + "; ".join(significant) + ".",
              f"- **Plain SGD**, `before` − `none`: {gain('sgd', 'before')} points; runs that "
              f"diverged: {', '.join(diverged)} (at {worst_sgd} no comparison is made).",
              f"- **`rescaled` recovers a part of BN's gain** (its share of `before` − `none`): {shares('rescaled')}.",
              *([f"- **`frozen` keeps** (its share of `before` − `none`): {shares('frozen')}."]
                if shares("frozen") else []),
              "- **Placement:** `before` − `after` " + ", ".join(f"{points(pair['difference'])} at {rate} (Holm p = {pair['p_holm']:.2g})"
                                                             for rate, pair in placement)
              + f"; the smallest difference these seeds detect is {min(detectable) * 100:.2f} to "
                f"{max(detectable) * 100:.2f} points (the placement study settles it at 1e-3: "
                "[reports/placement/placement.md](../reports/placement/placement.md)).",
              f"- **β along the real update Δ** (median over training, mean over seeds; Adam) {beta('adam', 'update_beta_median')}.",
              f"- **SGD, where Δ = −lr·g and β along Δ is the paper's β:** BN's β is {'; '.join(sgd_lower)}, "
              "with no accuracy gain."]
    return "\n".join(lines)


def frozen_block() -> str:
    """docs/why.md: bn=frozen (BN that stops normalizing by the batch after one epoch) against
    `before`, `rescaled` and `none` at the study's setting, from reports/study and the records."""
    study = load("reports/study/metrics.json")
    needed = ("before", "none", "rescaled", "frozen")
    if not all(variant in study for variant in needed):
        return "No `frozen` cells in the study's report yet: run `dvc repro grids/study/dvc.yaml`."
    comparisons = study["comparisons"]
    gain = study["before"]["test_accuracy"]["mean"] - study["none"]["test_accuracy"]["mean"]
    lines = ["| bn | normalizes with batch statistics | seeds | test accuracy | train accuracy | share of `before`'s gain over `none` |",
             "|---|---|---|---|---|---|"]
    when = {"none": "never", "rescaled": "never (rescaled once, at step 0)",
            "frozen": "for the first epoch, then fixed statistics", "before": "throughout"}
    for variant in ("none", "rescaled", "frozen", "before"):
        test, train = study[variant]["test_accuracy"], study[variant]["train_accuracy"]
        lines.append(f"| {variant} | {when[variant]} | {test['n']} | {test['mean']:.4f} ± {test['std']:.4f} | "
                     f"{train['mean']:.4f} ± {train['std']:.4f} | {(test['mean'] - study['none']['test_accuracy']['mean']) / gain:.0%} |")
    lines += ["", "| pair | difference (points) | 95% CI | Holm p | minimum detectable |", "|---|---|---|---|---|"]
    for first, second in (("frozen", "none"), ("frozen", "rescaled"), ("before", "frozen")):
        pair = oriented(comparisons, first, second)
        detectable = "–" if pair["minimum_detectable"] is None else f"{pair['minimum_detectable'] * 100:.2f}"
        lines.append(f"| {first} − {second} | {points(pair['difference'])} | {interval(pair)} | "
                     f"{pair['p_holm']:.2g} | {detectable} |")
    gaps = [json.loads(path.read_text(encoding="utf-8")).get("freeze") or {}
            for path in sorted((ROOT / "reports" / "study" / "runs").glob("frozen-*.json"))]
    worst = [(max(layer["mean_gap_in_stds"] for layer in gap["layers"].values()),
              max(layer["log_variance_ratio"] for layer in gap["layers"].values())) for gap in gaps if gap]
    lines += frozen_at_high_rate()
    if worst:
        lines += ["", f"At the freeze (step {gaps[0]['step']}), BN's moving averages were off from the "
                  f"training set's statistics by up to {max(m for m, _ in worst):.2f} standard deviations "
                  f"in mean and {max(v for _, v in worst):.2f} in log variance (largest over channels and "
                  f"layers; over {len(worst)} seeds): the freeze measures the statistics rather than "
                  "taking the averages."]
    return "\n".join(lines)


def norms_block() -> str:
    """docs/why.md: the convolution kernels' norm growth and effective steps per variant and Adam
    rate, from reports/norms/metrics.json (the norms grid: weight norms recorded by the probe)."""
    from stages.grids.norms import mean_over_seeds
    path = ROOT / "reports" / "norms" / "metrics.json"
    if not path.is_file():
        return "No norms cells in a report yet: run `dvc repro grids/norms/dvc.yaml`."
    summary = json.loads(path.read_text(encoding="utf-8"))
    lines = ["| rate | bn | seeds | test accuracy | conv ‖w‖ growth | conv effective step, start → last epoch | vs `none` at the end | head ‖w‖ growth |",
             "|---|---|---|---|---|---|---|---|"]
    for rate, variants in summary.items():
        reference = mean_over_seeds(variants["none"], "conv", "effective_step_end") if "none" in variants else None
        for variant, entry in variants.items():
            end = mean_over_seeds(entry, "conv", "effective_step_end")
            start = mean_over_seeds(entry, "conv", "effective_step_start")
            growth = mean_over_seeds(entry, "conv", "norm_growth")
            head = mean_over_seeds(entry, "head", "norm_growth")
            accuracy = sum(seed["test_accuracy"] for seed in entry.values()) / len(entry)
            if end is None:  # Every seed diverged.
                lines.append(f"| {rate} | {variant} | {len(entry)} | {accuracy:.4f} | diverged | – | – | – |")
                continue
            versus = f"{end / reference:.2f}×" if reference else "–"
            lines.append(f"| {rate} | {variant} | {len(entry)} | {accuracy:.4f} | ×{growth:.2f} | "
                         f"{start:.3g} → {end:.3g} | {versus} | ×{head:.2f} |")
    return "\n".join(lines)


def head_block() -> str:
    """docs/why.md: the SGD head intervention beside its sweep twins, from reports/head/metrics.json."""
    from stages.grids.head import accuracy_text, verdicts
    from stages.grids.sections import read_all as read_params
    path = ROOT / "reports" / "head" / "metrics.json"
    if not path.is_file():
        return "No head cells in a report yet: run `dvc repro grids/head/dvc.yaml`."
    summary = json.loads(path.read_text(encoding="utf-8"))
    head = read_params(ROOT / "params.yaml").head
    lines = [f"| {head.optimizer} rate | bn | head input RMS at init | without (the sweep's twins) | "
             f"with the head's input at RMS {head.head_input_rms:g} |", "|---|---|---|---|---|"]
    for rate, variants in summary["with"].items():
        for bn, entry in variants.items():
            if bn != "comparisons":
                lines.append(f"| {rate} | {bn} | {summary['paired'][rate][bn]['rms_before']:.2f} | "
                             f"{accuracy_text(summary['without'].get(rate, {}).get(bn))} | {accuracy_text(entry)} |")
    return "\n".join(lines + ["", *(f"- {line}" for line in verdicts(summary, head))])


def batch_block() -> str:
    """docs/why.md: train and test accuracy and the gap per batch size and variant, and BN's gain
    split into fitting and the gap, from reports/batch/metrics.json."""
    from stages.grids.batch import variant_table, verdicts
    path = ROOT / "reports" / "batch" / "metrics.json"
    if not path.is_file():
        return "No batch cells in a report yet: run `dvc repro grids/batch/dvc.yaml`."
    summary = json.loads(path.read_text(encoding="utf-8"))
    return "\n".join([*variant_table(summary), "", *(f"- {line}" for line in verdicts(summary))])


def frozen_at_high_rate(rate: str = "0.01") -> list[str]:
    """`frozen` at Adam 1e-2 over every seed trained there with these settings: the sweep's, and the
    norms grid's (the same training; its probes record weight norms too), from the records."""
    from stages.analysis.statistics import compare_all, describe
    runs: dict[str, list[float]] = {}
    diverged: dict[str, int] = {}
    for folder in ("sweep", "norms"):
        for path in sorted((ROOT / "reports" / folder / "runs").glob(f"adam-{rate}-*.json")):
            record = json.loads(path.read_text(encoding="utf-8"))
            if record["bn"] in ("before", "none", "rescaled", "frozen"):
                if (record.get("landscape") or {}).get("diverged"):
                    diverged[record["bn"]] = diverged.get(record["bn"], 0) + 1
                else:
                    runs.setdefault(record["bn"], []).append(record["metrics"]["test"]["accuracy"])
    if len(runs.get("frozen", [])) < 3:
        return []
    variants = [bn for bn in ("none", "rescaled", "frozen", "before") if len(runs.get(bn, [])) >= 2]
    pairs = {f"{c.first}_vs_{c.second}": c for c in compare_all({bn: runs[bn] for bn in variants})}
    text = []
    for first, second in (("frozen", "none"), ("frozen", "rescaled"), ("before", "frozen")):
        pair = pairs.get(f"{first}_vs_{second}") or pairs.get(f"{second}_vs_{first}")
        if pair is None:
            continue
        sign = 1 if pair.first == first else -1
        low, high = sorted((sign * pair.ci_low, sign * pair.ci_high))
        text.append(f"{first} − {second} {points(sign * pair.difference)} [{points(low)}, {points(high)}], "
                    f"Holm p = {pair.p_holm:.2g}")
    spread = ", ".join(f"{bn} {describe(runs[bn])['mean']:.4f} ± {describe(runs[bn])['std']:.4f} (n={len(runs[bn])}"
                       + (f", {diverged[bn]} more diverged" if diverged.get(bn) else "") + ")" for bn in variants)
    return ["", f"At Adam {rate}, every seed trained there (the sweep's and the norms grid's, same "
            f"training): {spread}; {'; '.join(text)} (points, Welch 95% CI, Holm over the pairs of these variants)."]


def main_run_block() -> str:
    """docs/results.md: the main run's scores (reports/metrics.json) and where it ran (the
    environment that reports/report.md lists from the run's record)."""
    metrics = load("reports/metrics.json")
    environment = dict(line[2:].split(": ", 1) for line in
                       (ROOT / "reports" / "report.md").read_text(encoding="utf-8").splitlines()
                       if line.startswith("- ") and ": " in line)
    fit = environment.get("fit time (sum of the epochs)", "not recorded").split(" (")[0]
    # report.md lists the record's values as Python writes them: a list as ['avx2', 'fma'].
    features = "/".join(re.findall(r"'([^']+)'", environment.get("cpu_features", ""))) or "instruction sets not recorded"
    return "\n".join([
        "| bn | train accuracy | test accuracy | test loss | fit time | machine | date, code |",
        "|---|---|---|---|---|---|---|",
        f"| before | {metrics['train']['accuracy']:.4f} | {metrics['test']['accuracy']:.4f} | "
        f"{metrics['test']['loss']:.4f} | {fit} | {environment.get('device', '?')} "
        f"[{features}], TensorFlow "
        f"{environment.get('tensorflow', '?')} | {environment.get('date', '?')[:10]}, "
        f"{environment.get('git_commit', '?')[:12]} |"])


BLOCKS = {  # name -> (file, renderer)
    "answer": (README, readme_answer),
    "main-run": (ROOT / "docs" / "results.md", main_run_block),
    "study-results": (ROOT / "docs" / "results.md", study_block),
    "sweep-results": (ROOT / "docs" / "why.md", sweep_block),
    "frozen-results": (ROOT / "docs" / "why.md", frozen_block),
    "norms-results": (ROOT / "docs" / "why.md", norms_block),
    "head-results": (ROOT / "docs" / "why.md", head_block),
    "batch-results": (ROOT / "docs" / "why.md", batch_block),
}


def replace_block(text: str, name: str, block: str, path: Path) -> str:
    start, stop = text.find(begin(name)), text.find(end(name))
    if start < 0 or stop < start:
        raise SystemExit(f"answer: {path} has no {name} markers; add the lines\n{begin(name)}\n{end(name)}")
    return text[:start] + begin(name) + "\n" + block + "\n" + text[stop:]


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--write", action="store_true", help="write each block into its file")
    args = parser.parse_args(argv)
    for name, (path, render) in BLOCKS.items():
        block = render()
        if not args.write:
            print(f"{begin(name)}\n{block}\n{end(name)}\n")
            continue
        path.write_text(replace_block(path.read_text(encoding="utf-8"), name, block, path), encoding="utf-8")
        print(f"answer: wrote {name} into {path.relative_to(ROOT)}", file=sys.stderr)


if __name__ == "__main__":
    main()
