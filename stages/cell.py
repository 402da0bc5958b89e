"""Stage `cell` (grids/*/dvc.yaml): one cell of a grid (the BN study, the learning-rate sweep,
the placement study, the weight-norm grid, the head intervention, the batch-size grid, ...),
trained with landscape probes unless --no-probes (a norms cell's probes record each layer's weight
norm too).

Trains exactly as `train` does (stages/trainer/experiment.py), scores the model as `evaluate` does,
and keeps one small JSON record: the run record (settings, per-epoch history, probes, timings,
numerics) plus the evaluated metrics. The model itself lives only in a temporary folder: the
study needs its scores, not its weights, so a fresh clone has nothing of the study to fetch.

Everything it runs is stages/trainer plus its variant's module (stages/variants/<bn>.py): what
each cell declares in its grid's dvc.yaml. It knows no grid by name (stages/trainer/grid.py).
"""

import argparse
import dataclasses
import tempfile
import time
from pathlib import Path

from stages.trainer import paths
from stages.trainer.cli import stage_main
from stages.trainer.errors import ParamsError
from stages.trainer import provenance
from stages.trainer.guard import Snapshot
from stages.trainer.provenance import code_files
from stages.trainer.cifar import load_prepared
from stages.trainer.grid import check_cell
from stages.trainer.params import (ACTIVATIONS, BN_PLACEMENTS, OPTIMIZERS, ModelParams, TrainParams, load_params,
                                   with_overrides)

# The settings a cell may take from the command line (its point of the grid) instead of
# params.yaml's model and train sections; which ones a grid's cells take, its section says
# (trainer/grid.py), and a cell does not declare the params it replaces.
OVERRIDABLE = {"model": ("activation", "head_input_rms"),
               "train": ("epochs", "optimizer", "learning_rate", "momentum", "batch_size")}
SECTIONS = {"model": ModelParams, "train": TrainParams}


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--grid", required=True,
                        help="the grid of cells (a section of params.yaml, grids/<name>/dvc.yaml) "
                             "this cell is in")
    parser.add_argument("--bn", choices=BN_PLACEMENTS, required=True)
    parser.add_argument("--seed", type=int, required=True)
    parser.add_argument("--record", type=Path, required=True, help="the JSON record to write")
    parser.add_argument("--part", help="the part of the grid's section this cell is in (a mapping "
                                       "there, e.g. map.relu), if the section has parts")
    parser.add_argument("--optimizer", choices=OPTIMIZERS, help="instead of train.optimizer")
    parser.add_argument("--learning-rate", type=float, help="instead of train.learning_rate")
    parser.add_argument("--momentum", type=float, help="instead of train.momentum (SGD's)")
    parser.add_argument("--epochs", type=int, help="instead of train.epochs")
    parser.add_argument("--batch-size", type=int, help="instead of train.batch_size (the batch grid's axis)")
    parser.add_argument("--activation", choices=ACTIVATIONS, help="instead of model.activation")
    parser.add_argument("--head-input-rms", type=float,
                        help="instead of model.head_input_rms (the head grid's intervention)")
    # The placement study needs accuracies only. Probes never change training (a test checks this
    # bit for bit), so cells with and without them pool; leaving them out saves their time.
    parser.add_argument("--probes", action=argparse.BooleanOptionalAction, default=True,
                        help="measure the loss landscape while training (default: on)")
    parser.add_argument("--weight-norms", action="store_true",
                        help="probes record each layer's weight norm too (the norms grid's cells)")
    return parser.parse_args(argv)


def overrides(args: argparse.Namespace, section: str) -> dict:
    """The settings of params.yaml's `section` (model or train) this cell's command line sets."""
    return {name: getattr(args, name) for name in OVERRIDABLE[section] if getattr(args, name) is not None}


def point(args: argparse.Namespace) -> dict:
    """Every setting the command line sets: the cell's point of its grid."""
    return {**overrides(args, "model"), **overrides(args, "train")}


def check_args(document: object, args: argparse.Namespace) -> None:
    """This cell is one point of its grid's section of params.yaml (`document`)."""
    check_cell(document, args.grid, args.bn, args.seed, point(args), part=args.part)


def params_used(args: argparse.Namespace) -> tuple[str, ...]:
    # bn and seed come from the command line, and --probes decides whether a cell probes:
    # landscape.enabled (the main run's switch) is not read, so toggling it leaves the cells
    # cached, and a cell without probes reads no landscape key at all. Nor is a train setting the
    # command line overrides, so the sweep's cells ignore its value in params.yaml.
    declared = []
    for section, cls in SECTIONS.items():
        replaced = overrides(args, section)
        declared += [section] if not replaced else [f"{section}.{field.name}" for field in dataclasses.fields(cls)
                                                    if field.name not in replaced]
    landscape = ("landscape.every_steps", "landscape.step_sizes") if args.probes else ()
    return (*declared, *landscape)


@stage_main("cell")
def main(argv=None) -> None:
    args = parse_args(argv)
    # The whole grid, before any data is read: DVC expands it into command lines without asking
    # us, so a duplicate cell or a grid of 10,000 cells is refused here, in every cell, at once.
    params = load_params(params_used(args), check=lambda _, document: check_args(document, args))
    snapshot = Snapshot(params, [paths.PREPARED, paths.STATISTICS], code=code_files(args.bn, "cell"))
    train_params = with_overrides(TrainParams, "train", params.train, overrides(args, "train"))
    model_params = with_overrides(ModelParams, "model", params.model, overrides(args, "model"))
    statistics, train, test = load_prepared(train_params, probing=args.probes)
    # TensorFlow is imported only after params and inputs validate, as in `train`.
    from dvclive import Live

    from stages.trainer.atomic import write_json
    from stages.trainer.evaluation import evaluate
    from stages.trainer.experiment import train_variant

    with tempfile.TemporaryDirectory(prefix="bnlab-cell-") as scratch:
        with Live(scratch, dvcyaml=False, save_dvc_exp=False, report=None) as live:
            model, record, probe = train_variant(model_params, train_params, args.bn, args.seed,
                                                 statistics, train, test,
                                                 params.landscape if args.probes else None, live,
                                                 weight_norms=args.weight_norms, entry="cell")
    start = time.perf_counter()
    metrics, _ = evaluate(model, train, test)
    record["evaluate_seconds"] = round(time.perf_counter() - start, 3)
    record["metrics"] = metrics
    record["probes"] = probe.columns() if probe else None
    record["data"] = provenance.data()
    snapshot.check()  # Then the record, in one rename: nothing else to publish.
    write_json(args.record, record)
    print(f"cell: bn={args.bn} seed={args.seed} {train_params.optimizer} "
          f"lr={train_params.learning_rate:g}: test accuracy {metrics['test']['accuracy']:.4f} "
          f"-> {args.record}")


if __name__ == "__main__":
    main()
