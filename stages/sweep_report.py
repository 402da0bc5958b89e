"""Stage `sweep_report` (sweep/dvc.yaml): the learning-rate sweep's table and figures.

Reads the record of every cell of params.yaml's `sweep` grid that has run, and the study's cells
at the study's own optimizer and learning rate, and writes, under reports/sweep/: metrics.json (per
optimizer, learning rate and variant), sweep.md (which lists the cells not yet run) and figures/.
"""

import argparse
from pathlib import Path

from stages.lib.cli import stage_main
from stages.lib.params import load_params

OUT = Path("reports/sweep")


def parse_args(argv=None) -> argparse.Namespace:
    return argparse.ArgumentParser(description=__doc__).parse_args(argv)


def params_used(args: argparse.Namespace) -> tuple[str, ...]:
    return ("sweep", "study", "train.optimizer", "train.learning_rate")


@stage_main("sweep_report")
def main(argv=None) -> None:
    params = load_params(params_used(parse_args(argv)))
    from stages.lib import figures, paths
    from stages.lib.atomic import write_json, write_text
    from stages.lib.records import fit_seconds
    from stages.lib.study_report import figure_run
    from stages.lib.sweep import collect, render_markdown, summarize

    cells, missing = collect(params.sweep, params.study, params.train, paths.STUDY_RUNS)
    runs = [figure_run(cell) for cell in cells]
    summary = summarize(runs)
    write_json(OUT / "metrics.json", summary)
    figures.accuracy_vs_learning_rate(runs, OUT / "figures" / "accuracy_vs_learning_rate.png")
    figures.effective_step_vs_learning_rate(runs, OUT / "figures" / "effective_step_vs_learning_rate.png")
    figures.update_beta_over_training(runs, OUT / "figures" / "update_beta_over_training.png")
    minutes = sum(fit_seconds(cell.run) for cell in cells) / 60
    write_text(OUT / "sweep.md", render_markdown(summary, cells[0].run["environment"], minutes, missing))
    print(f"sweep_report: {len(cells)} cells ({len(missing)} not yet run) -> {OUT}/sweep.md")


if __name__ == "__main__":
    main()
