"""Stage `norms_report` (norms/dvc.yaml): weight norms and effective steps, per variant and rate.

Reads the record of every cell of params.yaml's `norms` grid that has run and writes, under
reports/norms/: metrics.json (per learning rate, variant and seed), norms.md (which lists the cells
not yet run) and figures/weight_norms.png.
"""

import argparse
from pathlib import Path

from stages.lib.cli import stage_main
from stages.lib.params import load_params

OUT = Path("reports/norms")


def parse_args(argv=None) -> argparse.Namespace:
    return argparse.ArgumentParser(description=__doc__).parse_args(argv)


def params_used(args: argparse.Namespace) -> tuple[str, ...]:
    return ("norms",)


@stage_main("norms_report")
def main(argv=None) -> None:
    params = load_params(params_used(parse_args(argv)))
    from stages.lib import figures
    from stages.lib.atomic import write_json, write_text
    from stages.lib.norms import collect, render_markdown, summarize, trajectories
    from stages.lib.placement import environments
    from stages.lib.study_report import diverged

    cells, missing = collect(params.norms)
    summary = summarize(cells)
    write_json(OUT / "metrics.json", summary)
    runs = [{"bn": cell.variant, "learning_rate": cell.run["train"]["learning_rate"], "seed": cell.seed,
             "diverged": diverged(cell), **trajectories(cell)} for cell in cells]
    figures.weight_norms(runs, OUT / "figures" / "weight_norms.png")
    write_text(OUT / "norms.md", render_markdown(summary, params.norms, cells, missing,
                                                 environments({"all": cells})))
    print(f"norms_report: {len(cells)} cells ({len(missing)} not yet run) -> {OUT}/norms.md")


if __name__ == "__main__":
    main()
