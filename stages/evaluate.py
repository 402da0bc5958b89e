"""Stage `evaluate`: score the trained model in inference mode on train and test.

Writes reports/metrics.json (DVC metrics: loss, accuracy, per-class test accuracy) and
reports/predictions.csv (one row per test image: DVC's confusion-matrix plot reads it).
"""

import argparse

from stages.trainer import paths
from stages.trainer.cli import stage_main


def parse_args(argv=None) -> argparse.Namespace:
    return argparse.ArgumentParser(description=__doc__).parse_args(argv)


def params_used(args: argparse.Namespace) -> tuple[str, ...]:
    return ()


@stage_main("evaluate")
def main(argv=None) -> None:
    parse_args(argv)
    # Inputs are checked before TensorFlow is imported: a broken file fails in a second.
    from stages.trainer.cifar import load_split
    from stages.analysis.records import check_model_file
    from stages.trainer.inputs import verify

    verify("train", paths.MODEL)  # The model and data as dvc.lock records them (a tampered pull is refused).
    verify("normalize", paths.PREPARED)
    check_model_file(paths.MODEL)
    train, test = load_split(paths.TRAIN_SPLIT), load_split(paths.TEST_SPLIT)

    from stages.trainer.atomic import write_json, write_text
    from stages.trainer.evaluation import evaluate, load_model, predictions_csv

    model = load_model(paths.MODEL)
    metrics, predicted = evaluate(model, train, test)
    write_json(paths.METRICS, metrics)
    write_text(paths.PREDICTIONS, predictions_csv(test.labels, predicted))
    print(f"evaluate: train accuracy {metrics['train']['accuracy']:.4f}, "
          f"test accuracy {metrics['test']['accuracy']:.4f} -> {paths.METRICS}")


if __name__ == "__main__":
    main()
