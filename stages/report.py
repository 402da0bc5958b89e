"""Stage `report`: figures (PNG) and a markdown report of one trained variant, all under reports/."""

import argparse
import io

import numpy as np
import yaml

from stages.trainer import paths
from stages.trainer.cli import stage_main
from stages.analysis.records import fit_seconds


def parse_args(argv=None) -> argparse.Namespace:
    return argparse.ArgumentParser(description=__doc__).parse_args(argv)


def params_used(args: argparse.Namespace) -> tuple[str, ...]:
    # The settings shown are those the run record says were used, not today's params.yaml.
    return ()


@stage_main("report")
def main(argv=None) -> None:
    parse_args(argv)
    from stages.analysis import run_figures as figures
    from stages.trainer.atomic import write_text
    from stages.trainer.cifar import CLASS_NAMES, load_split
    from stages.trainer.evaluation import load_model
    from stages.trainer.model import batch_norm_layers, non_trainable_count
    from stages.analysis.records import check_model_file, read_json

    from stages.trainer.inputs import verify

    verify("train", paths.MODEL)  # The model and data as dvc.lock records them (a tampered pull is refused).
    verify("normalize", paths.PREPARED)
    metrics = read_json(paths.METRICS, "evaluate")
    run = read_json(paths.RUN_RECORD, "train")
    train = load_split(paths.TRAIN_SPLIT)
    rows = np.genfromtxt(paths.PREDICTIONS, delimiter=",", dtype=str, skip_header=1, ndmin=2)
    index = {name: label for label, name in enumerate(CLASS_NAMES)}
    actual, predicted = (np.array([index[name] for name in rows[:, c]]) for c in (0, 1))

    out = paths.FIGURES
    figures.sample_grid(train.images, train.labels, out / "samples.png")
    history = {name: np.asarray(values) for name, values in run["history"].items()}
    train = run["train"]
    setting = (f"bn={run['bn']}, seed {run['seed']}, {train['epochs']} epochs, "
               f"{train['optimizer'].capitalize()} {train['learning_rate']:g}, batch {train['batch_size']}")
    figures.training_curves(history, out / "curves.png", setting)
    figures.confusion_matrix(actual, predicted, out / "confusion.png", setting)
    figures.per_class_accuracy(metrics["test"]["per_class_accuracy"], out / "per_class.png", setting)
    landscape_csv = paths.TRAIN_LOG / "plots" / "landscape.csv"
    landscape = None
    if run["landscape"]:  # The probe's CSV (landscape.LandscapeProbe.write_csv), column by column.
        table = np.genfromtxt(landscape_csv, delimiter=",", names=True, ndmin=1)
        landscape = {name: table[name] for name in table.dtype.names}
    if landscape is not None:
        figures.landscape_bands({f"bn={run['bn']}": landscape}, out / "landscape.png")

    check_model_file(paths.MODEL)
    model = load_model(paths.MODEL)
    write_text(paths.REPORT, render(run, metrics, model, batch_norm_layers(model),
                                    non_trainable_count(model), with_landscape=landscape is not None))
    print(f"report: wrote {paths.REPORT} and figures in {paths.FIGURES}/")


def render(run, metrics, model, bn_layers, non_trainable: int, with_landscape: bool) -> str:
    summary = io.StringIO()
    model.summary(print_fn=lambda line, **_: summary.write(line + "\n"), line_length=80)
    bn_checks = [f"| {layer.name} | {layer.count_params()} | {4 * layer.input.shape[-1]} | "
                 f"{'ok' if layer.count_params() == 4 * layer.input.shape[-1] else 'MISMATCH'} |"
                 for layer in bn_layers]
    per_class = " | ".join(f"{k} {v:.3f}" for k, v in metrics["test"]["per_class_accuracy"].items())
    environment = run["environment"]
    lines = [
        f"# bnlab report: bn={run['bn']}, seed={run['seed']}",
        "",
        "| split | loss | accuracy |", "|---|---|---|",
        *(f"| {s} | {metrics[s]['loss']:.4f} | {metrics[s]['accuracy']:.4f} |" for s in ("train", "test")),
        "",
        f"Per-class test accuracy: {per_class}",
        "",
        "![samples](figures/samples.png)", "![curves](figures/curves.png)",
        "![confusion](figures/confusion.png)", "![per class](figures/per_class.png)",
        *(["![landscape](figures/landscape.png)"] if with_landscape else []),
        "",
        "## Model",
        "",
        f"{model.count_params():,} parameters, "
        f"{non_trainable:,} non-trainable.",
        "",
        "BatchNormalization check (per channel: 4 parameters per filter):",
        "",
        "| layer | params | 4 x filters | |", "|---|---|---|---|", *bn_checks,
        *([] if bn_checks else [f"| (no BN layers: bn={run['bn']}) | | | |"]),
        "",
        "```", summary.getvalue().rstrip(), "```",
        "",
        "## Parameters",
        "",
        "```yaml", yaml_dump(run), "```",
        "",
        "## Environment",
        "",
        *(f"- {key}: {value}" for key, value in environment.items()),
        f"- fit time (sum of the epochs): {fit_seconds(run):.1f} s "
        f"(epochs: {', '.join(f'{s:.1f}' for s in run['history']['epoch_seconds'])} s); "
        f"model.fit with its set-up and logging: {run['total_seconds']:.1f} s",
        "",
    ]
    return "\n".join(lines)


def yaml_dump(run) -> str:
    used = {key: run[key] for key in ("bn", "seed", "model", "train")}
    return yaml.safe_dump(used, sort_keys=False).rstrip()


if __name__ == "__main__":
    main()
