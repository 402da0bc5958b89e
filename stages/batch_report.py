"""Stage `batch_report` (batch/dvc.yaml): BN's gain at each batch size, split into fitting and the gap.

Reads the record of every cell of params.yaml's `batch` grid that has run, and the study's cells of
the same variants (the grid's point at train.batch_size), and writes, under reports/batch/:
metrics.json, batch.md (which lists the cells not yet run) and figures/accuracy_vs_batch_size.png.
"""

import argparse
from pathlib import Path

from stages.lib.cli import stage_main
from stages.lib.params import load_params

OUT = Path("reports/batch")


def parse_args(argv=None) -> argparse.Namespace:
    return argparse.ArgumentParser(description=__doc__).parse_args(argv)


def params_used(args: argparse.Namespace) -> tuple[str, ...]:
    # The study's seeds and the train settings name the study's cells that stand at train.batch_size.
    return ("batch", "study.variants", "study.seeds", "train.batch_size", "train.optimizer",
            "train.learning_rate", "train.epochs")


@stage_main("batch_report")
def main(argv=None) -> None:
    params = load_params(params_used(parse_args(argv)))
    from stages.lib import figures
    from stages.lib.atomic import write_json, write_text
    from stages.lib.batch import collect, render_markdown, summarize, values
    from stages.lib.placement import environments
    from stages.lib.records import fit_seconds
    from stages.lib.study_report import diverged

    cells, missing = collect(params.batch, params.study, params.train)
    summary = summarize(cells)
    write_json(OUT / "metrics.json", summary)
    figures.accuracy_vs_batch_size([{"bn": cell.variant, "batch_size": cell.run["train"]["batch_size"],
                                     "seed": cell.seed, "diverged": diverged(cell),
                                     **{key: value for key, value in values(cell).items() if key != "gap"}}
                                    for cell in cells], OUT / "figures" / "accuracy_vs_batch_size.png")
    minutes = sum(fit_seconds(cell.run) for cell in cells) / 60
    write_text(OUT / "batch.md", render_markdown(summary, params.batch, params.study, params.train, missing,
                                                 environments({"all": cells}), minutes))
    print(f"batch_report: {len(cells)} cells ({len(missing)} not yet run) -> {OUT}/batch.md")


if __name__ == "__main__":
    main()
