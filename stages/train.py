"""Stage `train`: build the `bn` variant, fit it, log per-epoch curves with DVCLive, save the model.

The study pipeline (study/dvc.yaml) runs this same entry point per (variant, seed) cell, passing
--bn, --seed and its own output paths; the main pipeline takes them from params.yaml.
"""

import argparse
from pathlib import Path

from stages.lib import paths
from stages.lib.cli import stage_main
from stages.lib.params import BN_PLACEMENTS, load_params


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--bn", choices=BN_PLACEMENTS, help="override params.yaml's bn")
    parser.add_argument("--seed", type=int, help="override params.yaml's seed")
    parser.add_argument("--landscape", choices=("on", "off"), help="override landscape.enabled")
    parser.add_argument("--model", type=Path, default=paths.MODEL)
    parser.add_argument("--log-dir", type=Path, default=paths.TRAIN_LOG)
    return parser.parse_args(argv)


@stage_main("train")
def main(argv=None) -> None:
    args = parse_args(argv)
    params = load_params()
    bn = args.bn or params.bn
    seed = params.seed if args.seed is None else args.seed
    probe_landscape = params.landscape.enabled if args.landscape is None else args.landscape == "on"

    # TensorFlow is imported only after params and inputs validate, so a typo or a broken input
    # file fails in a second, not ten.
    from stages.lib.cifar import load_split, load_statistics

    train, test = load_split(paths.TRAIN_SPLIT), load_split(paths.TEST_SPLIT)
    statistics = load_statistics(paths.STATISTICS)

    from dvclive import Live

    from stages.lib.landscape import LandscapeProbe
    from stages.lib.model import build_model
    from stages.lib.atomic import atomic_directory, atomic_path, write_json
    from stages.lib.training import (compute_precision, environment, epoch_orders, fit,
                                     seed_everything)

    seed_everything(seed, params.train.deterministic)
    precision = compute_precision(params.train.precision)
    model = build_model(params.model, bn, statistics, precision)
    print(f"train: bn={bn} seed={seed} params={model.count_params():,} precision={precision} "
          f"on {environment()['device']}")

    orders = epoch_orders(len(train.labels), params.train.epochs, seed)
    probe = LandscapeProbe(train, orders, params.landscape, params.train) if probe_landscape else None
    # The log folder is built aside and swapped in whole at the end: until then the previous run's
    # curves stay intact, and none of its files (a landscape.csv now switched off) can linger.
    with atomic_directory(args.log_dir) as log_dir:
        with Live(str(log_dir), dvcyaml=False, save_dvc_exp=False, report=None) as live:
            timings = fit(model, train, test, params.train, orders, live, [probe] if probe else [])
            live.summary["seconds"] = timings["total_seconds"]
            if probe:
                live.summary["landscape"] = probe.summary()
        if probe:
            probe.write_csv(log_dir / "landscape.csv")
        with atomic_path(args.model) as temp:
            model.save(temp)
        write_json(log_dir / "run.json",
                   {"bn": bn, "seed": seed, "landscape": probe_landscape, "precision": precision,
                    **timings, "environment": environment()})
    print(f"train: saved {args.model} after {timings['total_seconds']:.1f}s")


if __name__ == "__main__":
    main()
