"""Stage `cell` (study/, sweep/, placement/, norms/, head/ and batch/dvc.yaml): one cell of the BN
study, the learning-rate sweep, the placement study, the weight-norm grid, the head intervention or
the batch-size grid, trained with landscape probes unless --no-probes (a norms cell's probes record
each layer's weight norm too).

Trains exactly as `train` does (stages/lib/experiment.py), scores the model as `evaluate` does,
and keeps one small JSON record: the run record (settings, per-epoch history, probes, timings,
numerics) plus the evaluated metrics. The model itself lives only in a temporary folder: the
study needs its scores, not its weights, so a fresh clone has nothing of the study to fetch.
"""

import argparse
import dataclasses
import tempfile
import time
from pathlib import Path

from stages.lib import paths
from stages.lib.cli import stage_main
from stages.lib.errors import ParamsError
from stages.lib.guard import Snapshot
from stages.lib.cifar import load_prepared
from stages.lib.params import (BN_PLACEMENTS, GRIDS, OPTIMIZERS, RATE_GRIDS, Params, TrainParams,
                               check_grid, load_params, train_with_overrides)

# The train settings a grid's cells take from the command line (their point of the grid) instead
# of params.yaml's train section; the other grids' cells train at params.yaml's train settings.
OVERRIDES = {**{grid: ("optimizer", "learning_rate") for grid in RATE_GRIDS}, "batch": ("batch_size",)}
OVERRIDABLE = ("optimizer", "learning_rate", "batch_size")


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--grid", choices=GRIDS, required=True,
                        help="the grid of cells (a section of params.yaml, a folder with its dvc.yaml) "
                             "this cell is in")
    parser.add_argument("--bn", choices=BN_PLACEMENTS, required=True)
    parser.add_argument("--seed", type=int, required=True)
    parser.add_argument("--record", type=Path, required=True, help="the JSON record to write")
    parser.add_argument("--optimizer", choices=OPTIMIZERS, help="instead of train.optimizer")
    parser.add_argument("--learning-rate", type=float, help="instead of train.learning_rate")
    parser.add_argument("--batch-size", type=int, help="instead of train.batch_size (the batch grid's axis)")
    parser.add_argument("--head-input-rms", type=float,
                        help="instead of model.head_input_rms (the head grid's intervention)")
    # The placement study needs accuracies only. Probes never change training (a test checks this
    # bit for bit), so cells with and without them pool; leaving them out saves their time.
    parser.add_argument("--probes", action=argparse.BooleanOptionalAction, default=True,
                        help="measure the loss landscape while training (default: on)")
    return parser.parse_args(argv)


def flags(names) -> str:
    return " and ".join(f"--{name.replace('_', '-')}" for name in names)


def check_cell(params: Params, args: argparse.Namespace) -> None:
    """The grid passes its rules, and this cell is one of its cells."""
    check_grid(params, args.grid)
    swept = [name for name in OVERRIDABLE if getattr(args, name) is not None]
    needed = OVERRIDES.get(args.grid, ())
    if (args.head_input_rms is not None) != (args.grid == "head"):
        raise ParamsError("--head-input-rms is the head grid's, and a head cell needs it; cells run "
                          f"through DVC: `dvc repro {args.grid}/dvc.yaml`")
    if set(needed) - set(swept):
        raise ParamsError(f"a {args.grid} cell needs {flags(needed)} (its point of the grid); cells run "
                          f"through DVC: `dvc repro {args.grid}/dvc.yaml`")
    if extra := [name for name in swept if name not in needed]:
        owners = ", ".join(grid for grid, names in OVERRIDES.items() if extra[0] in names)
        raise ParamsError(f"{flags(extra[:1])} sets a point of another grid ({owners}); a {args.grid} cell "
                          f"trains at params.yaml's train settings" + (f" but {flags(needed)}" if needed else ""))
    if args.grid in RATE_GRIDS:
        if args.grid == "sweep":
            part, seeds = getattr(params.sweep, args.optimizer), params.sweep.seeds
            listed = f"sweep.{args.optimizer}.variants x learning_rates x sweep.seeds"
        else:
            part = getattr(params, args.grid)
            seeds, listed = part.seeds, f"{args.grid}.variants x learning_rates x seeds"
            settings = {"optimizer": part.optimizer,
                        **({"head_input_rms": part.head_input_rms} if args.grid == "head" else {})}
            for name, value in settings.items():
                if getattr(args, name) != value:
                    raise ParamsError(f"--{name.replace('_', '-')} {getattr(args, name)} is not "
                                      f"{args.grid}.{name} ({value}); cells run through DVC: "
                                      f"`dvc repro {args.grid}/dvc.yaml`")
        cells = {(bn, seed, rate) for bn in part.variants for seed in seeds for rate in part.learning_rates}
        this = (args.bn, args.seed, args.learning_rate)
    elif args.grid == "batch":
        batch = params.batch
        cells = {(bn, seed, size) for bn in batch.variants for seed in batch.seeds for size in batch.batch_sizes}
        this = (args.bn, args.seed, args.batch_size)
        listed = "batch.variants x seeds x batch_sizes"
    else:
        grid = getattr(params, args.grid)
        cells = {(bn, seed) for bn in grid.variants for seed in grid.seeds}
        this = (args.bn, args.seed)
        listed = f"{args.grid}.variants x {args.grid}.seeds"
    if this not in cells:
        raise ParamsError(f"this cell ({', '.join(map(str, this))}) is not in the {args.grid} grid "
                          f"({listed}); cells run through DVC: `dvc repro {args.grid}/dvc.yaml`")


def overrides(args: argparse.Namespace) -> dict:
    return {name: getattr(args, name) for name in OVERRIDABLE if getattr(args, name) is not None}


def params_used(args: argparse.Namespace) -> tuple[str, ...]:
    # bn and seed come from the command line, and --probes decides whether a cell probes:
    # landscape.enabled (the main run's switch) is not read, so toggling it leaves the cells
    # cached, and a cell without probes reads no landscape key at all. Nor is a train setting the
    # command line overrides, so the sweep's cells ignore its value in params.yaml.
    replaced = overrides(args)
    train = (("train",) if not replaced else
             tuple(f"train.{field.name}" for field in dataclasses.fields(TrainParams)
                   if field.name not in replaced))
    landscape = ("landscape.every_steps", "landscape.step_sizes") if args.probes else ()
    return ("model", *train, *landscape)


@stage_main("cell")
def main(argv=None) -> None:
    args = parse_args(argv)
    # The whole grid, before any data is read: DVC expands it into command lines without asking
    # us, so a duplicate cell or a grid of 10,000 cells is refused here, in every cell, at once.
    params = load_params(params_used(args), check=lambda everything: check_cell(everything, args))
    snapshot = Snapshot(params, [paths.PREPARED, paths.STATISTICS])
    train_params = train_with_overrides(params.train, overrides(args))
    statistics, train, test = load_prepared(train_params, probing=args.probes)
    # TensorFlow is imported only after params and inputs validate, as in `train`.
    from dvclive import Live

    from stages.lib.atomic import write_json
    from stages.lib.evaluation import evaluate
    from stages.lib.experiment import train_variant

    model_params = params.model if args.head_input_rms is None else \
        dataclasses.replace(params.model, head_input_rms=args.head_input_rms)
    with tempfile.TemporaryDirectory(prefix="bnlab-cell-") as scratch:
        with Live(scratch, dvcyaml=False, save_dvc_exp=False, report=None) as live:
            model, record, probe = train_variant(model_params, train_params, args.bn, args.seed,
                                                 statistics, train, test,
                                                 params.landscape if args.probes else None, live,
                                                 weight_norms=args.grid == "norms")
    start = time.perf_counter()
    metrics, _ = evaluate(model, train, test)
    record["evaluate_seconds"] = round(time.perf_counter() - start, 3)
    record["metrics"] = metrics
    record["probes"] = probe.columns() if probe else None
    snapshot.check()  # Then the record, in one rename: nothing else to publish.
    write_json(args.record, record)
    print(f"cell: bn={args.bn} seed={args.seed} {train_params.optimizer} "
          f"lr={train_params.learning_rate:g}: test accuracy {metrics['test']['accuracy']:.4f} "
          f"-> {args.record}")


if __name__ == "__main__":
    main()
