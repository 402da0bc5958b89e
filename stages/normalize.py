"""Stage `normalize`: validate the archive, store uint8 splits, and compute training-set statistics.

The pixels stay uint8 (1.0x the raw size); the model normalizes them in its input layer with
these statistics, so the test set is normalized with the training statistics only, and a saved
model takes raw pixels.
"""

import argparse
import time

import numpy as np

from stages.trainer import paths
from stages.trainer.atomic import write_json
from stages.trainer.cifar import pixel_statistics, read_archive, save_split
from stages.trainer.cli import stage_main
from stages.trainer.params import load_params


def parse_args(argv=None) -> argparse.Namespace:
    return argparse.ArgumentParser(description=__doc__).parse_args(argv)


def params_used(args: argparse.Namespace) -> tuple[str, ...]:
    return ("normalize",)


@stage_main("normalize")
def main(argv=None) -> None:
    from stages.trainer.inputs import verify

    params = load_params(params_used(parse_args(argv)))
    # The archive as dvc.lock records fetch's output: a pulled or edited copy that is not what
    # `fetch` wrote is refused before it is read (fetch itself checks data.md5 on download).
    verify("fetch", paths.ARCHIVE)
    start = time.perf_counter()
    train, test = read_archive(paths.ARCHIVE, params.normalize.records_per_file)
    statistics = pixel_statistics(train.images, params.normalize.mode)
    save_split(train, paths.TRAIN_SPLIT)
    save_split(test, paths.TEST_SPLIT)
    write_json(paths.STATISTICS, statistics)
    for name, split in (("train", train), ("test", test)):
        per_class = np.bincount(split.labels, minlength=10).tolist()
        print(f"normalize: {name}: {len(split.labels)} images, per class {per_class}")
    print(f"normalize: {params.normalize.mode} mean {np.round(statistics['mean'], 2).tolist()} "
          f"std {np.round(statistics['std'], 2).tolist()} ({time.perf_counter() - start:.1f}s)")


if __name__ == "__main__":
    main()
