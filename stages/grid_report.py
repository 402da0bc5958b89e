"""Stage `grid_report`, every grid's `report` (grids/<name>/dvc.yaml): `python -m stages.grid_report <name>`.

Checks the grid's params, reads its records (and those of the grids it builds on), and writes its
report under reports/<name>/. What differs per grid (which cells, which tables, which figures,
which params) is the grid's module, stages/grids/<name>.py: `PARAMS` and `report(params)`. A
report trains nothing and re-runs in seconds; no cell depends on anything it runs.
"""

import argparse
import importlib

from stages.trainer.cli import stage_main

from stages.grids.sections import GRIDS


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("grid", choices=GRIDS, help="the grid whose report to write")
    return parser.parse_args(argv)


def modules_used(args: argparse.Namespace) -> list[str]:
    """The grid's own module, imported by name: tests/test_dvc_graph.py follows it as an import."""
    return [f"stages.grids.{args.grid}"]


def params_used(args: argparse.Namespace) -> tuple[str, ...]:
    return importlib.import_module(modules_used(args)[0]).PARAMS


@stage_main("grid_report")
def main(argv=None) -> None:
    args = parse_args(argv)
    from stages.grids.sections import load_all

    grid = importlib.import_module(modules_used(args)[0])
    params = load_all(params_used(args))
    print(f"{args.grid} report: {grid.report(params)}")


if __name__ == "__main__":
    main()
