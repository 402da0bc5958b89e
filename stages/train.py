"""Stage `train`: build the `bn` variant, fit it, log per-epoch curves with DVCLive, save the model.

Writes models/model.keras, reports/train/metrics.json (DVCLive summary, with the numerics used:
device, precision, oneDNN), reports/train/plots/ (per-epoch curves; when probing, landscape.csv
and the per-layer landscape_layers.csv) and reports/train/run.json (the run record that `report`
renders).
"""

import argparse
import os

from stages.trainer import paths, provenance
from stages.trainer.atomic import replace_folder
from stages.trainer.cli import stage_main, uninterruptible
from stages.trainer.guard import Snapshot
from stages.trainer.cifar import load_prepared
from stages.trainer.params import load_params
from stages.trainer.provenance import code_files


def parse_args(argv=None) -> argparse.Namespace:
    return argparse.ArgumentParser(description=__doc__).parse_args(argv)


def params_used(args: argparse.Namespace) -> tuple[str, ...]:
    return ("bn", "seed", "model", "train", "landscape")


@stage_main("train")
def main(argv=None) -> None:
    params = load_params(params_used(parse_args(argv)))
    # What this run read, checked again before anything is published (one writer per workspace).
    snapshot = Snapshot(params, [paths.PREPARED, paths.STATISTICS], code=code_files(params.bn, "train"))
    landscape = params.landscape if params.landscape.enabled else None
    statistics, train, test = load_prepared(params.train, probing=landscape is not None)
    # TensorFlow is imported only after params and inputs validate, so a typo or a broken input
    # file fails in a second, not ten.
    from dvclive import Live

    from stages.trainer.atomic import atomic_path, temporary_folder, write_json
    from stages.trainer.experiment import train_variant

    # DVCLive writes its files as training goes; they go to a folder beside reports/train and
    # replace its metrics.json and plots/ only once everything else has been written, so a run
    # that fails or is stopped (a full disk, Ctrl-C) leaves no file describing it.
    with temporary_folder(paths.TRAIN_LOG) as log:
        with Live(str(log), dvcyaml=False, save_dvc_exp=False, report=None) as live:
            model, record, probe = train_variant(params.model, params.train, params.bn, params.seed,
                                                 statistics, train, test, landscape, live)
            live.summary["fit_seconds"] = record["fit_seconds"]
            # Columns that `dvc exp show` can display next to the params: what the numbers ran on.
            live.summary["numerics"] = {key: record["environment"][key]
                                        for key in ("backend", "device", "precision", "tf32", "onednn")}
            if probe:
                live.summary["landscape"] = record["landscape"]
        record["data"] = provenance.data()
        if probe:  # The per-layer columns are many and change with the variant: a file of their own.
            probe.write_csv(log / "plots" / "landscape.csv")
            probe.write_csv(log / "plots" / "landscape_layers.csv", probe.layer_columns())
        with uninterruptible():  # All four outputs, or none (a signal acts once they are out).
            snapshot.check()
            with atomic_path(paths.MODEL) as temp:
                model.save(temp)
            write_json(paths.RUN_RECORD, record)
            replace_folder(log / "plots", paths.TRAIN_LOG / "plots")
            os.replace(log / "metrics.json", paths.TRAIN_LOG / "metrics.json")
    print(f"train: saved {paths.MODEL} after {record['fit_seconds']:.1f} s of fitting")


if __name__ == "__main__":
    main()
