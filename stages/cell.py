"""Stage `cell` (study/dvc.yaml): one (bn, seed) cell of the BN study, trained with landscape probes.

Trains exactly as `train` does (stages/lib/experiment.py), scores the model as `evaluate` does,
and keeps one small JSON record: the run record (settings, per-epoch history, probes, timings,
numerics) plus the evaluated metrics. The model itself lives only in a temporary folder: the
study needs its scores, not its weights, so a fresh clone has nothing of the study to fetch.
"""

import argparse
import tempfile
from pathlib import Path

from stages.lib import paths
from stages.lib.cli import stage_main
from stages.lib.params import BN_PLACEMENTS, load_params


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--bn", choices=BN_PLACEMENTS, required=True)
    parser.add_argument("--seed", type=int, required=True)
    return parser.parse_args(argv)


def params_used(args: argparse.Namespace) -> tuple[str, ...]:
    # The cell's bn and seed come from the command line, and it always probes: landscape.enabled
    # (the main run's switch) is not read, so toggling it leaves the study's cells cached.
    return ("model", "train", "landscape.every_steps", "landscape.step_sizes")


def record_path(bn: str, seed: int) -> Path:
    return paths.STUDY_RUNS / f"{bn}-{seed}.json"


@stage_main("cell")
def main(argv=None) -> None:
    args = parse_args(argv)
    params = load_params(params_used(args))
    # TensorFlow is imported only after params and inputs validate, as in `train`.
    from stages.lib.cifar import load_split, load_statistics

    train, test = load_split(paths.TRAIN_SPLIT), load_split(paths.TEST_SPLIT)
    statistics = load_statistics(paths.STATISTICS)

    from dvclive import Live

    from stages.lib.atomic import write_json
    from stages.lib.evaluation import evaluate
    from stages.lib.experiment import train_variant

    with tempfile.TemporaryDirectory(prefix="bnlab-cell-") as scratch:
        with Live(scratch, dvcyaml=False, save_dvc_exp=False, report=None) as live:
            model, record, probe = train_variant(params.model, params.train, args.bn, args.seed,
                                                 statistics, train, test, params.landscape, live)
    metrics, _ = evaluate(model, train, test)
    record["metrics"] = metrics
    record["probes"] = probe.columns()
    write_json(record_path(args.bn, args.seed), record)
    print(f"cell: bn={args.bn} seed={args.seed}: test accuracy {metrics['test']['accuracy']:.4f} "
          f"-> {record_path(args.bn, args.seed)}")


if __name__ == "__main__":
    main()
