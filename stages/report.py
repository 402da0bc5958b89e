"""Stage `report`: figures (PNG) and a markdown report of one trained variant, all under reports/."""

import dataclasses
import io

import numpy as np
import yaml

from stages.lib import paths
from stages.lib.cli import stage_main
from stages.lib.params import load_params


@stage_main("report")
def main() -> None:
    params = load_params()
    import keras

    from stages.lib import figures
    from stages.lib.atomic import atomic_directory, write_text
    from stages.lib.cifar import CLASS_NAMES, load_split
    from stages.lib.model import batch_norm_layers, non_trainable_count
    from stages.lib.records import (check_model_file, read_history, read_json, read_landscape,
                                    read_run)

    metrics = read_json(paths.METRICS, "evaluate")
    run = read_run(paths.TRAIN_LOG)
    train = load_split(paths.TRAIN_SPLIT)
    rows = np.genfromtxt(paths.PREDICTIONS, delimiter=",", dtype=str, skip_header=1, ndmin=2)
    index = {name: label for label, name in enumerate(CLASS_NAMES)}
    actual, predicted = (np.array([index[name] for name in rows[:, c]]) for c in (0, 1))

    landscape = read_landscape(paths.TRAIN_LOG)
    # Swapped in whole, so a landscape.png from an earlier run with probes cannot linger.
    with atomic_directory(paths.FIGURES) as out:
        figures.sample_grid(train.images, train.labels, out / "samples.png")
        figures.training_curves(read_history(paths.TRAIN_LOG), out / "curves.png",
                                f"bn={run['bn']}")
        figures.confusion_matrix(actual, predicted, out / "confusion.png")
        figures.per_class_accuracy(metrics["test"]["per_class_accuracy"], out / "per_class.png")
        if landscape is not None:
            figures.landscape_bands({f"bn={run['bn']}": landscape}, out / "landscape.png")

    check_model_file(paths.MODEL)
    model = keras.models.load_model(paths.MODEL)
    write_text(paths.REPORT, render(params, run, metrics, model, batch_norm_layers(model),
                                    non_trainable_count(model), with_landscape=landscape is not None))
    print(f"report: wrote {paths.REPORT} and figures in {paths.FIGURES}/")


def render(params, run, metrics, model, bn_layers, non_trainable: int, with_landscape: bool) -> str:
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
        *([] if bn_checks else ["| (no BN layers: bn=none) | | | |"]),
        "",
        "```", summary.getvalue().rstrip(), "```",
        "",
        "## Parameters",
        "",
        "```yaml", yaml_dump(params, run), "```",
        "",
        "## Environment",
        "",
        *(f"- {key}: {value}" for key, value in environment.items()),
        f"- training wall time: {run['total_seconds']:.1f} s "
        f"(epochs: {', '.join(f'{s:.1f}' for s in run['epoch_seconds'])} s)",
        "",
    ]
    return "\n".join(lines)


def yaml_dump(params, run) -> str:
    used = {"bn": run["bn"], "seed": run["seed"], "model": dataclasses.asdict(params.model),
            "train": dataclasses.asdict(params.train)}
    return yaml.safe_dump(used, sort_keys=False).rstrip()


if __name__ == "__main__":
    main()
