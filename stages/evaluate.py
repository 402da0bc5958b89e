"""Stage `evaluate`: score the trained model in inference mode on train and test.

Writes reports/metrics.json (DVC metrics: loss, accuracy, per-class test accuracy) and
reports/predictions.csv (one row per test image: DVC's confusion-matrix plot reads it).
"""

import argparse
from pathlib import Path

from stages.lib import paths
from stages.lib.cli import stage_main


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--model", type=Path, default=paths.MODEL)
    parser.add_argument("--metrics", type=Path, default=paths.METRICS)
    parser.add_argument("--predictions", type=Path, default=paths.PREDICTIONS)
    return parser.parse_args(argv)


@stage_main("evaluate")
def main(argv=None) -> None:
    args = parse_args(argv)
    import keras

    from stages.lib.atomic import write_json, write_text
    from stages.lib.batch_norm import FusedBatchNormalization
    from stages.lib.cifar import load_split
    from stages.lib.evaluation import evaluate, predictions_csv
    from stages.lib.pooling import PairwiseMaxPooling2D

    model = keras.models.load_model(
        args.model, custom_objects={"FusedBatchNormalization": FusedBatchNormalization,
                                    "PairwiseMaxPooling2D": PairwiseMaxPooling2D})
    train, test = load_split(paths.TRAIN_SPLIT), load_split(paths.TEST_SPLIT)
    metrics, predicted = evaluate(model, train, test)
    write_json(args.metrics, metrics)
    write_text(args.predictions, predictions_csv(test.labels, predicted))
    print(f"evaluate: train accuracy {metrics['train']['accuracy']:.4f}, "
          f"test accuracy {metrics['test']['accuracy']:.4f} -> {args.metrics}")


if __name__ == "__main__":
    main()
