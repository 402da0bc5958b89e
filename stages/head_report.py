"""Stage `head_report` (head/dvc.yaml): the SGD head intervention's table, beside its sweep twins.

Reads the record of every cell of params.yaml's `head` grid that has run, and the sweep's cells at
the same points (the same runs without the intervention), and writes, under reports/head/:
metrics.json and head.md (which lists the cells not yet run).
"""

import argparse
from pathlib import Path

from stages.lib.cli import stage_main
from stages.lib.params import load_params

OUT = Path("reports/head")


def parse_args(argv=None) -> argparse.Namespace:
    return argparse.ArgumentParser(description=__doc__).parse_args(argv)


def params_used(args: argparse.Namespace) -> tuple[str, ...]:
    return ("head",)


@stage_main("head_report")
def main(argv=None) -> None:
    params = load_params(params_used(parse_args(argv)))
    from stages.lib.atomic import write_json, write_text
    from stages.lib.head import collect, render_markdown, summarize, twins
    from stages.lib.placement import environments
    from stages.lib.records import fit_seconds

    cells, missing = collect(params.head)
    summary = summarize(cells, twins(params.head))
    write_json(OUT / "metrics.json", summary)
    minutes = sum(fit_seconds(cell.run) for cell in cells) / 60
    write_text(OUT / "head.md", render_markdown(summary, params.head, missing,
                                                environments({"all": cells}), minutes))
    print(f"head_report: {len(cells)} cells ({len(missing)} not yet run) -> {OUT}/head.md")


if __name__ == "__main__":
    main()
