"""The words of the results quoted in README.md and docs/: each function takes what
stages/analysis/claims.py computed (or a report's summary, for a table that shows it as it is) and
returns one generated block, markdown without its markers.

Numbers are points of accuracy with a sign (+2.84) and 95% CIs in brackets; which verdict a
sentence says is the claim's, never decided here, so that wording can change without a number
moving.
"""

from __future__ import annotations

from stages.analysis.cells import accuracy_text, pairs_of, setting_text
from stages.analysis import claims
from stages.analysis.statistics import ALPHA, FAMILY, POWER
from stages.grids import batch as batch_grid
from stages.grids import head as head_grid


TEST_NAMES = {"paired": "paired t-test on seed", "welch": "Welch's test"}


def begin(name: str) -> str:
    return f"<!-- {name}: written by `python tools/answer.py --write` from reports/; tests/test_docs.py checks it -->"


def end(name: str) -> str:
    return f"<!-- /{name} -->"


def replace_block(text: str, name: str, block: str, path) -> str:
    """`text` with its `name` block (between the markers) replaced; the command's one-line error
    naming the markers to add where the file lacks them."""
    start, stop = text.find(begin(name)), text.find(end(name))
    if start < 0 or stop < start:
        raise SystemExit(f"answer: {path} has no {name} markers; add the lines\n{begin(name)}\n{end(name)}")
    return text[:start] + begin(name) + "\n" + block + "\n" + text[stop:]


def points(value: float) -> str:
    return f"{value * 100:+.2f}"


def interval(row: dict) -> str:
    return f"[{points(row['ci_low'])}, {points(row['ci_high'])}]"


def at_rates(found: list[tuple[str, dict]]) -> str:
    return ", ".join(f"{points(pair['difference'])} at {rate}" for rate, pair in found)


def detectable_points(pair: dict) -> str:
    return "–" if pair["minimum_detectable"] is None else f"{pair['minimum_detectable'] * 100:.2f}"


def spread(row: dict, digits: int = 4) -> str:
    return f"{row['mean']:.{digits}f} ± {row['std']:.{digits}f}"


def judgement(pair: dict) -> str:
    """A judged comparison (claims.judged) in the fixed vocabulary, its wording decided by its
    verdict alone: the difference and its interval, then what the test says."""
    number = f"{points(pair['difference'])} points ({interval(pair)})"
    kind = pair["verdict"]
    if kind == "not_tested":
        return f"{points(pair['difference'])} points, not tested: fewer than {claims.MIN_RUNS} runs per arm"
    if kind == "detected":
        return f"{number}, detected (Holm p = {pair['p_holm']:.2g})"
    if kind == "equivalent":
        return f"{number}, equivalent within ±{pair['equivalence']['margin'] * 100:.2g} points"
    could = ("" if pair["minimum_detectable"] is None
             else f" — the test could have detected ≥ {pair['minimum_detectable'] * 100:.2f} points")
    return f"{number}, no difference detected{could}"


def judged_at_rates(found: list[tuple[str, dict]]) -> str:
    return "; ".join(f"at {rate} {judgement(pair)}" for rate, pair in found)


def readme_answer(answer: dict, machines: list[dict]) -> str:
    """README.md's answer, from claims.answer and claims.provenance: every verdict worded from its
    test (claims.VERDICTS), every quantifier only where each case it covers passes."""
    helps, where, rows, setting = answer["helps"], answer["where"], answer["placement"]["seeds"], answer["setting"]
    where_text = []
    for name, label in (("adam", "Adam"), ("sgd", "plain SGD")):
        if where[name]:
            every = "detected at every learning rate: " if where["every"][name] else ""
            where_text.append(f"with {label}, {every}{judged_at_rates(where[name])}")
    why = [f"*Where the gain appears* (`before` − `none`): {'; '.join(where_text)}.",
           rescaled_sentence(answer["rescaled"], setting)]
    why += [line for line in (frozen_sentence(answer["frozen"]), scale_sentence(answer["scale"]),
                              head_sentence(answer["head"]), batch_sentence(answer["batch"])) if line]
    before, after = helps["before"], helps["after"]
    fewest, most = helps["seeds"]
    seeds = f"{fewest}" if fewest == most else f"{fewest} to {most}"
    lines = [
        f"On CIFAR-10, with the reference notebook's net and training ({setting_text(setting)}), test accuracy. "
        f"Every comparison is paired on seed where both arms ran the same seeds (else Welch's), with p "
        f"Holm-adjusted over {FAMILY}; a verdict is *detected*, *equivalent*, *no difference detected* (with what "
        f"the test could have detected: {POWER:.0%} power at α over the family's number of pairs) or *not tested* (fewer than {claims.MIN_RUNS} runs per arm).",
        "",
        f"- **{'BN helps.' if helps['detected'] else 'Does BN help?'}** Over "
        f"the same net without BN, BN before the activation: {judgement(before)}; after it: {judgement(after)} "
        f"({seeds} seeds per variant, {TEST_NAMES[before['test']]}).",
        f"- **Before or after the activation?** {placement_answer(answer['placement'])} "
        f"({rows['before']} seeds of `before`, {rows['after']} of `after`; "
        "[reports/placement/placement.md](reports/placement/placement.md))" + reproducibility(answer.get("reruns")) + ".",
        *([map_sentence(answer["map"])] if answer.get("map") else []),
        "- **Why?** ([docs/why.md](docs/why.md))",
        *(f"  - {line}" for line in why),
        "",
        "![every seed's test accuracy, before and after](reports/placement/figures/placement.png)",
        *(["", "![after − before and BN's gain per setting: the placement map](reports/map/figures/map.png)"]
          if answer.get("map") else []),
        "",
        "Where and when these cells ran: " + "; ".join(provenance(machines)) + ".",
    ]
    return "\n".join(lines)


def reproducibility(reruns: list[dict] | None) -> str:
    """How far numerics alone move one cell (the rerun grid's reference cells against their
    records): the spread a reader should expect between two machines; empty before that report."""
    if not reruns:
        return ""
    moved = " and ".join(f"{row['difference'] * 100:+.2f}" for row in reruns)
    return (f"; trained again on another machine or code version, with the same params and seed, "
            f"{len(reruns)} reference cells landed {moved} points from their records, which numerics alone "
            "do ([reports/rerun/rerun.md](reports/rerun/rerun.md))")


def map_sentence(settings: list[dict]) -> str:
    """The placement map's line: each setting's after − before as its sequential rule words it."""
    from stages.grids.map import EARLY_DETECTION, wording

    parts, early = [], False
    for entry in settings:
        look = entry["look"]
        value = "" if look["look"] is None else f"{points(look['mean'])} points ({interval({'ci_low': look['low'], 'ci_high': look['high']})}), "
        text = f"{entry['label']}: {value}{wording(look, entry['looks'], entry['margin'])}"
        if entry["diverged_pairs"]:  # The verdict is over the pairs where both arms trained.
            text += f" ({pairs_of(entry['diverged_pairs'])} left out: a run diverged)"
        if entry["uncertain"]:
            text += f", its size uncertain: {entry['uncertain']}"
        # A setting detected before the last look stopped because its mean looked large then.
        early |= look["verdict"] == "detected" and look["look"] < len(entry["looks"])
        parts.append(text)
    return ("- **Does it hold elsewhere?** `after` − `before`, paired on seed under a sequential design "
            "([docs/map.md](docs/map.md), [reports/map/map.md](reports/map/map.md)): " + "; ".join(parts) + "."
            + (f" {EARLY_DETECTION}" if early else ""))


def rescaled_sentence(rescaled: dict, setting: dict) -> str:
    """`rescaled`'s share of BN's gain with its bootstrap interval; "less (more) than half" only if
    the whole interval is."""
    share = f"{rescaled['share']:.0%} of BN's gain (95% bootstrap CI {rescaled['ci_low']:.0%} to {rescaled['ci_high']:.0%})"
    if not rescaled["tested"]:
        reading = f"not tested: fewer than {claims.MIN_RUNS} runs per arm"
    elif rescaled["under_half"]:
        reading = "less than half"
    elif rescaled["over_half"]:
        reading = "more than half"
    else:
        reading = "whether less or more than half is not settled: the interval spans one half"
    return (f"*Where the net starts:* rescaling the net once at the start, without BN (`rescaled`), recovers "
            f"{share} at {setting['optimizer'].capitalize()} {setting['learning_rate']:g}: {reading}.")


def placement_answer(placement: dict) -> str:
    """The answer to "before or after?" once the placement report detects a difference; the
    report's own words otherwise (interim, undecided)."""
    if not placement["settled"]:
        return placement["verdict"][0].upper() + placement["verdict"][1:] + "."
    higher, lower = placement["higher"], placement["lower"]
    found = (f"{higher.capitalize()}: `{higher}` − `{lower}` = "
             f"{points(placement['difference'])} points (95% CI {interval(placement)}, "
             f"{placement['test']} p = {placement['p_value']:.2g}), detected")
    if placement.get("uncertain"):
        # The direction holds in every group; the pooled size does not, so no size-based reading.
        return (f"{found}; its size is uncertain: {placement['uncertain']}, so "
                f"{points(placement['difference'])} is not one settled number")
    scale = {"under_half": "less than half", "about": "about", "times": f"{placement['ratio']:.0f} times"}
    return (f"{found}; {scale[placement['scale']]} one seed's "
            f"spread (std {placement['std_low'] * 100:.2f}–{placement['std_high'] * 100:.2f} points): one run of each, "
            f"on different seeds, puts `{higher}` ahead {placement['ahead']:.0%} of the time")


def frozen_sentence(frozen: dict | None) -> str:
    """`frozen` against `none` and `before`; "the first epoch of normalizing is enough" only where
    `before` − `frozen` is equivalent within the margin; empty before the study has `frozen` cells."""
    if frozen is None:
        return ""
    gain, against = frozen["gain"], frozen["against"]
    enough = ": BN's gain needs the first epoch of normalizing only" if against["verdict"] == "equivalent" else ""
    return (f"*Normalizing during training:* BN that stops normalizing by the batch after the first epoch "
            f"(`frozen`) against `none`: {judgement(gain)}; `before` − `frozen`: {judgement(against)} "
            f"(equivalence within ±{against['equivalence']['margin'] * 100:.2g} points: TOST p = "
            f"{against['equivalence']['p_value']:.2g}){enough}.")


def scale_sentence(scale: dict | None) -> str:
    """Scale invariance, from the norms grid: BN's kernel growth and end-of-training effective step
    against `none`'s, at each rate; a reading only with MIN_RUNS seeds per variant; empty before
    that report exists."""
    if scale is None:
        return ""
    found = [f"×{rate['growth']['before']:.2f} at Adam {rate['rate']} (`none`: ×{rate['growth']['none']:.2f}), "
             f"ending with {rate['step_ratio']:.2f}× `none`'s effective step" for rate in scale["rates"]]
    seeds = scale["seeds"]
    runs = f"{seeds} seed{'s' if seeds > 1 else ''} per variant"
    if not scale["tested"]:
        return (f"*Scale invariance:* over training, BN's convolution kernels grow {'; '.join(found)} ({runs}: "
                f"{'one run' if seeds == 1 else f'{seeds} runs'}, not tested).")
    # The rates named one by one, never "at every rate": no test stands behind the means, so no
    # quantifier may (the claim rules, docs/why.md).
    yes = [rate["rate"] for rate in scale["rates"] if rate["holds"]]
    no = [rate["rate"] for rate in scale["rates"] if not rate["holds"]]
    if yes:
        reading = (f"they outgrow `none`'s and take smaller relative steps at {', '.join(yes)}"
                   + (f", not at {', '.join(no)}" if no else ""))
    else:
        reading = f"they do not both outgrow `none`'s and take smaller relative steps at {', '.join(no)}"
    return (f"*Scale invariance:* over training, BN's convolution kernels grow {'; '.join(found)} ({runs}): "
            f"in the means over seeds {reading} (not tested).")


def head_sentence(rates: list[dict]) -> str:
    """The SGD head intervention: divergence with and without it (Fisher's exact test), and
    `before` − `none` with it, judged; empty before that report exists."""
    parts = []
    for rate in rates:
        entry, twin, pair, pooled = rate["with"], rate["without"], rate["pair"], rate["pooled"]
        text = f"at SGD {rate['rate']} `before` diverged in {entry['diverged']} of {entry['runs']} runs"
        if twin is not None:
            text += f" ({twin['diverged']} of {twin['runs']} without)"
        if pooled is not None and pooled["with"] + pooled["without"]:
            change = "detected" if pooled["p"] < ALPHA else "no difference detected"
            text += (f", the BN variants together {pooled['with']} of {pooled['with_runs']} ({pooled['without']} of "
                     f"{pooled['without_runs']} without, Fisher exact p = {pooled['p']:.2g}: {change})")
        if pair is not None:
            text += f"; with it, `before` − `none` {judgement(pair)}"
        parts.append(text)
    if not parts:
        return ""
    return ("*The SGD head:* with every variant's dense-head input scaled to one RMS at the start, "
            + "; ".join(parts) + ".")


def batch_sentence(batch: dict | None) -> str:
    """BN's gain at each batch size, judged, split into fitting and the gap (unadjusted 95% CIs);
    "the gain is fitting" only where every detected gain has a detected fitting part and no
    narrower gap; empty before the batch report compares `before` with `none` at a batch size
    other than the study's."""
    if batch is None:
        return ""
    split = batch["split"]
    gains = "; ".join(f"at {size} {judgement(split[size]['test_accuracy'])}" for size in split)
    parts = "; ".join(f"at {size} train accuracy {points(split[size]['train_accuracy']['difference'])} "
                      f"({interval(split[size]['train_accuracy'])}), gap {points(split[size]['gap']['difference'])} "
                      f"({interval(split[size]['gap'])})" for size in split)
    gap = (f"the gap narrows (CI below 0) at {', '.join(batch['narrowed']) or 'no batch size'} and widens (CI above 0) "
           f"at {', '.join(batch['widened']) or 'no batch size'}")
    detected = batch["detected"]
    fitting = bool(detected) and all(size in batch["fitting"] and size not in batch["narrowed"] for size in detected)
    reading = (f"; where the gain is detected ({', '.join(detected)}), it is fitting: train accuracy gains "
               "detectably and the gap does not narrow" if fitting else "")
    return (f"*The batch:* `before` − `none` in test accuracy {gains}. Split (unadjusted 95% CIs): {parts}; "
            f"{gap}{reading}.")


def provenance(machines: list[dict]) -> list[str]:
    """Per machine, the cells' count, dates and code versions (claims.provenance)."""
    lines = []
    for machine in machines:
        when = machine["first"] if machine["first"] == machine["last"] else f"{machine['first']} to {machine['last']}"
        backend = f"TensorFlow {machine['tensorflow']}"
        if machine["recorded"]:
            versions = machine["versions"]
            lines.append(f"{machine['cells']} cells on {machine['device']} [{machine['features']}], {backend}, {when}, code "
                         + (" and ".join(versions) if len(versions) <= 3 else
                            f"{versions[0]} and {len(versions) - 1} later versions"))
        else:
            lines.append(f"{machine['cells']} cells on {machine['device']}, {backend}, committed {when} (these records "
                         "do not name their date, code version or instruction sets)")
    return lines


def study_block(study: dict) -> str:
    """docs/results.md: the study's table and every comparison, from its report's summary."""
    lines = ["| bn | seeds | test accuracy | train accuracy | β along −g (paper) | β along Δ | cos(Δ, −g) | fit s per cell |",
             "|---|---|---|---|---|---|---|---|"]
    for variant in (key for key in study if key != "comparisons"):
        row = study[variant]
        lines.append(f"| {variant} | {row['test_accuracy']['n']} | {spread(row['test_accuracy'])} | "
                     f"{spread(row['train_accuracy'])} | {row['beta_median']['min']:.0f} – {row['beta_median']['max']:.0f} | "
                     f"{row['update_beta_median']['min']:.1f} – {row['update_beta_median']['max']:.1f} | "
                     f"{row['cos_update_gradient_median']['min']:.3f} – {row['cos_update_gradient_median']['max']:.3f} | "
                     f"{row['fit_seconds']['mean']:.0f} ± {row['fit_seconds']['std']:.0f} |")
    lines += ["", "Test accuracy mean ± std over seeds; the landscape columns give each cell's median over "
              "training, min – max over the seeds. Differences of mean test accuracy (points), 95% CI of "
              "the paired t-test on seed (every variant ran the same seeds), Holm-adjusted over all pairs, "
              f"and the smallest difference these seeds detect with {POWER:.0%} power:", "",
              "| pair | difference | 95% CI | Holm p | minimum detectable |", "|---|---|---|---|---|"]
    for name, pair in study["comparisons"].items():
        lines.append(f"| {name.replace('_vs_', ' − ')} | {points(pair['difference'])} | {interval(pair)} | "
                     f"{pair['p_holm']:.2g} | {detectable_points(pair)} |")
    return "\n".join(lines)


def higher_first(found: dict) -> str:
    """One detected sweep difference as every comparison is printed elsewhere: the higher arm
    first, so that the words and the + sign agree."""
    first, second = found["name"].split("_vs_")
    difference = found["pair"]["difference"]
    if difference < 0:
        first, second, difference = second, first, -difference
    return (f"{first} − {second} at {found['optimizer']} {found['rate']} ({points(difference)} points, "
            f"Holm p = {found['pair']['p_holm']:.2g})")


def sweep_block(sweep: dict, findings: dict) -> str:
    """docs/why.md: the sweep's accuracy table (its report's summary) and what it says
    (claims.sweep_findings)."""
    variants = findings["variants"]
    lines = ["| optimizer, rate | " + " | ".join(variants) + " |", "|---|" + "---|" * len(variants)]
    for optimizer, rates in sweep.items():
        for rate, cell in rates.items():
            lines.append(f"| {optimizer} {rate} | "
                         + " | ".join(accuracy_text(cell.get(variant)) for variant in variants) + " |")

    def gain(optimizer: str, variant: str) -> str:
        return judged_at_rates([(rate, claims.judged(pair)) for rate, pair in findings["gains"][optimizer, variant]])

    def shares(variant: str) -> str:
        return ", ".join(f"{share:.0%} at {rate}" for rate, share in findings["shares"][variant])

    significant = [higher_first(found) for found in findings["significant"]]
    diverged = [f"{variant} {count} of {seeds}" for variant, count, seeds in findings["diverged"]]
    beta = "; ".join(f"{rate}: " + ", ".join(f"{variant} {mean:.1f}" for variant, mean in means)
                     for rate, means in findings["update_beta"])
    sgd_gains = dict(findings["gains"]["sgd", "before"])
    sgd_lower = [f"{found['lower']:.1%} lower at {found['rate']} ({found['before']:.1f} vs {found['none']:.1f}; "
                 "accuracy, `before` − `none`: "
                 + (judgement(claims.judged(sgd_gains[found["rate"]])) if found["rate"] in sgd_gains else "not compared")
                 + ")" for found in findings["sgd_lower"]]
    lines += ["", "Test accuracy after 10 epochs, mean ± std over n seeds. What the numbers say:", "",
              f"- **Adam, BN − `none` at each rate**, `before`: {gain('adam', 'before')}; "
              f"`after`: {gain('adam', 'after')}.",
              f"- **Detected differences** (Holm p < 0.05 over {FAMILY}, {claims.MIN_RUNS} runs per arm or more; "
              "pairs with fewer runs are not tested): " + "; ".join(significant) + ".",
              f"- **Plain SGD**, `before` − `none`: {gain('sgd', 'before')}; runs that "
              f"diverged: {', '.join(diverged)} (at {findings['worst_sgd']} no comparison is made).",
              f"- **`rescaled`'s share of BN's gain** ((`rescaled` − `none`) / (`before` − `none`), a ratio of "
              "means with no interval here, so no test; the README's answer gives 0.001's with its bootstrap "
              f"CI): {shares('rescaled')}.",
              *([f"- **`frozen`'s share of BN's gain** (the same ratio, no interval): {shares('frozen')}."]
                if findings["shares"]["frozen"] else []),
              "- **Placement:** `before` − `after` "
              + judged_at_rates([(rate, claims.judged(pair)) for rate, pair in findings["placement"]])
              + " (the placement study answers it at 1e-3 with more seeds: "
                "[reports/placement/placement.md](../reports/placement/placement.md)).",
              f"- **β along the real update Δ** (median over training, mean over seeds; Adam) {beta}.",
              f"- **SGD, where Δ = −lr·g and β along Δ is the paper's β:** BN's β is {'; '.join(sgd_lower)}."]
    return "\n".join(lines)


def frozen_block(frozen: dict | None) -> str:
    """docs/why.md: bn=frozen (BN that stops normalizing by the batch after one epoch) against
    `before`, `rescaled` and `none` at the study's setting (claims.frozen_findings)."""
    if frozen is None:
        return "No `frozen` cells in the study's report yet: run `dvc repro grids/study/dvc.yaml`."
    lines = ["| bn | normalizes with batch statistics | seeds | test accuracy | train accuracy | share of `before`'s gain over `none` |",
             "|---|---|---|---|---|---|"]
    when = {"none": "never", "rescaled": "never (rescaled once, at step 0)",
            "frozen": "for the first epoch, then fixed statistics", "before": "throughout"}
    for row in frozen["rows"]:
        lines.append(f"| {row['variant']} | {when[row['variant']]} | {row['test']['n']} | {spread(row['test'])} | "
                     f"{spread(row['train'])} | {row['share']:.0%}"
                     + (f" (95% bootstrap CI {row['share_ci'][0]:.0%} to {row['share_ci'][1]:.0%})" if "share_ci" in row
                        else "") + " |")
    lines += ["", "| pair | difference (points) | 95% CI | Holm p | minimum detectable |", "|---|---|---|---|---|"]
    for first, second, pair in frozen["pairs"]:
        lines.append(f"| {first} − {second} | {points(pair['difference'])} | {interval(pair)} | "
                     f"{pair['p_holm']:.2g} | {detectable_points(pair)} |")
    lines += frozen_at_high_rate(frozen["high_rate"])
    if frozen["freeze"] is not None:
        freeze = frozen["freeze"]
        lines += ["", f"At the freeze (step {freeze['step']}), BN's moving averages were off from the "
                  f"training set's statistics by up to {freeze['mean_gap']:.2f} standard deviations "
                  f"in mean and {freeze['log_variance']:.2f} in log variance (largest over channels and "
                  f"layers; over {freeze['seeds']} seeds): the freeze measures the statistics rather than "
                  "taking the averages."]
    return "\n".join(lines)


def frozen_at_high_rate(pooled: dict | None) -> list[str]:
    """`frozen` at a high Adam rate over every seed trained there (claims.frozen_at_high_rate)."""
    if pooled is None:
        return []
    text = [f"{pair['first']} − {pair['second']} {points(pair['difference'])} [{points(pair['ci_low'])}, "
            f"{points(pair['ci_high'])}], Holm p = {pair['p_holm']:.2g}" for pair in pooled["pairs"]]
    described = ", ".join(f"{entry['variant']} {spread(entry['accuracy'])} (n={entry['accuracy']['n']}"
                          + (f", {entry['diverged']} more diverged" if entry["diverged"] else "") + ")"
                          for entry in pooled["variants"])
    return ["", f"At Adam {pooled['rate']}, every seed trained there (the sweep's and the norms grid's, same "
            f"training): {described}; {'; '.join(text)} (points, {TEST_NAMES[pooled['pairs'][0]['test']]}, 95% CI, "
            f"Holm over {FAMILY}, all {len(pooled['family'])} of them)."]


def norms_block(rows: list[dict] | None) -> str:
    """docs/why.md: the convolution kernels' norm growth and effective steps per variant and Adam
    rate (claims.norms_rows)."""
    if rows is None:
        return "No norms cells in a report yet: run `dvc repro grids/norms/dvc.yaml`."
    lines = ["| rate | bn | seeds | test accuracy | conv ‖w‖ growth | conv effective step, start → last epoch | vs `none` at the end | head ‖w‖ growth |",
             "|---|---|---|---|---|---|---|---|"]
    for row in rows:
        start = f"| {row['rate']} | {row['variant']} | {row['seeds']} | {accuracy_text(row['accuracy'])} |"
        if row["end"] is None:  # Every seed diverged.
            lines.append(f"{start} diverged | – | – | – |")
            continue
        versus = "–" if row["versus"] is None else f"{row['versus']:.2f}×"
        lines.append(f"{start} ×{row['growth']:.2f} | {row['start']:.3g} → {row['end']:.3g} | {versus} | "
                     f"×{row['head']:.2f} |")
    return "\n".join(lines)


def head_block(summary: dict | None, head) -> str:
    """docs/why.md: the SGD head intervention beside its sweep twins, from the head report's
    summary and params.yaml's `head` section, in the head report's own words."""
    if summary is None:
        return "No head cells in a report yet: run `dvc repro grids/head/dvc.yaml`."
    lines = [f"| {head.optimizer} rate | bn | head input RMS at init | without (the sweep's twins) | "
             f"with the head's input at RMS {head.head_input_rms:g} |", "|---|---|---|---|---|"]
    for rate, variants in summary["with"].items():
        for bn, entry in variants.items():
            if bn != "comparisons":
                lines.append(f"| {rate} | {bn} | {summary['paired'][rate][bn]['rms_before']:.2f} | "
                             f"{accuracy_text(summary['without'].get(rate, {}).get(bn))} | "
                             f"{accuracy_text(entry)} |")
    return "\n".join(lines + ["", *(f"- {line}" for line in head_grid.verdicts(summary, head))])


def batch_block(summary: dict | None) -> str:
    """docs/why.md: train and test accuracy and the gap per batch size and variant, and BN's gain
    split into fitting and the gap, in the batch report's own words."""
    if summary is None:
        return "No batch cells in a report yet: run `dvc repro grids/batch/dvc.yaml`."
    return "\n".join([*batch_grid.variant_table(summary), "", *(f"- {line}" for line in batch_grid.verdicts(summary))])


def main_run_block(run: dict) -> str:
    """docs/results.md: the main run's scores and where it ran (claims.main_run)."""
    known = {key: "?" if run[key] is None else run[key] for key in ("device", "tensorflow", "date", "git_commit")}
    return "\n".join([
        "| bn | train accuracy | test accuracy | test loss | fit time | machine | date, code |",
        "|---|---|---|---|---|---|---|",
        f"| before | {run['train_accuracy']:.4f} | {run['test_accuracy']:.4f} | "
        f"{run['test_loss']:.4f} | {'not recorded' if run['fit'] is None else run['fit']} | {known['device']} "
        f"[{'/'.join(run['features']) or 'instruction sets not recorded'}], TensorFlow "
        f"{known['tensorflow']} | {known['date'][:10]}, "
        f"{known['git_commit'][:12]} |"])
