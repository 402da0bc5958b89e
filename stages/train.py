"""Stage `train`: build the `bn` variant, fit it, log per-epoch curves with DVCLive, save the model.

The study pipeline (study/dvc.yaml) runs this same entry point per (variant, seed) cell, passing
--bn, --seed and its own output paths; the main pipeline takes them from params.yaml.
"""

import argparse
import json
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

    # TensorFlow is imported only after params validate, so a typo fails in a second, not ten.
    from dvclive import Live

    from stages.lib.atomic import atomic_path, write_json
    from stages.lib.backend import seed_everything
    from stages.lib.cifar import load_split
    from stages.lib.device import compute_precision, configure_device, environment
    from stages.lib.landscape import LandscapeProbe
    from stages.lib.model import build_model
    from stages.lib.training import epoch_orders, fit

    train, test = load_split(paths.TRAIN_SPLIT), load_split(paths.TEST_SPLIT)
    statistics = json.loads(paths.STATISTICS.read_text())
    seed_everything(seed, params.train.deterministic)
    device_fallback = configure_device(params.train.device, params.train.tf32)
    precision = compute_precision(params.train.precision)
    model = build_model(params.model, bn, statistics, precision)
    numerics = environment()
    print(f"train: bn={bn} seed={seed} params={model.count_params():,} precision={precision} "
          f"backend={numerics['backend']} tf32={numerics['tf32']} on {numerics['device']}")

    orders = epoch_orders(len(train.labels), params.train.epochs, seed)
    probe = LandscapeProbe(train, orders, params.landscape, params.train) if probe_landscape else None
    with Live(str(args.log_dir), dvcyaml=False, save_dvc_exp=False, report=None) as live:
        timings = fit(model, train, test, params.train, orders, live, [probe] if probe else [])
        live.summary["seconds"] = timings["total_seconds"]
        if probe:
            live.summary["landscape"] = probe.summary()
    if probe:
        probe.write_csv(args.log_dir / "landscape.csv")
    with atomic_path(args.model) as temp:
        model.save(temp)
    write_json(args.log_dir / "run.json",
               {"bn": bn, "seed": seed, "landscape": probe_landscape, "precision": precision,
                "device_setting": params.train.device, "device_fallback": device_fallback,
                **timings, "environment": numerics})
    print(f"train: saved {args.model} after {timings['total_seconds']:.1f}s")


if __name__ == "__main__":
    main()
