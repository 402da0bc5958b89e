"""Stage `placement_report` (placement/dvc.yaml): before or after the activation, settled.

Pools the study's cells of placement.variants (study.seeds) with the placement pipeline's own
(placement.seeds) and writes, under reports/placement/: metrics.json (per variant, the Welch
comparison, the equivalence test and the verdict), placement.md (which lists the cells not yet
run) and figures/placement.png (every seed's test accuracy, and the difference's intervals).
"""

import argparse

from stages.lib.cli import stage_main
from stages.lib.params import load_params


def parse_args(argv=None) -> argparse.Namespace:
    return argparse.ArgumentParser(description=__doc__).parse_args(argv)


def params_used(args: argparse.Namespace) -> tuple[str, ...]:
    return ("placement", "study.variants", "study.seeds")


@stage_main("placement_report")
def main(argv=None) -> None:
    params = load_params(params_used(parse_args(argv)))
    placement = params.placement
    from stages.lib.params import check_placement

    check_placement(placement, params.study)
    from stages.lib import figures, paths
    from stages.lib.atomic import write_json, write_text
    from stages.lib.placement import collect, environments, render_markdown, summarize

    cells, missing = collect(placement.variants, params.study.seeds, placement.seeds,
                             paths.STUDY_RUNS, paths.PLACEMENT / "runs")
    summary = summarize(cells, placement.equivalence_margin, len(missing))
    # Everything is computed before anything is written, so a bad record leaves the old report.
    write_json(paths.PLACEMENT / "metrics.json", summary)
    figures.placement({variant: [c.metrics["test"]["accuracy"] for c in runs] for variant, runs in cells.items()},
                      summary, paths.PLACEMENT / "figures" / "placement.png")
    write_text(paths.PLACEMENT / "placement.md", render_markdown(summary, environments(cells), missing))
    print(f"placement_report: {summary['verdict']}")


if __name__ == "__main__":
    main()
