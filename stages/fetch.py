"""Stage `fetch`: download (or copy) the CIFAR-10 binary archive and verify its md5."""

import argparse

from stages.trainer import paths
from stages.trainer.cli import stage_main
from stages.archive.download import ProgressPrinter, fetch
from stages.trainer.params import load_params


def parse_args(argv=None) -> argparse.Namespace:
    return argparse.ArgumentParser(description=__doc__).parse_args(argv)


def params_used(args: argparse.Namespace) -> tuple[str, ...]:
    return ("data.url", "data.md5", "data.timeout_seconds", "data.retries")


@stage_main("fetch")
def main(argv=None) -> None:
    data = load_params(params_used(parse_args(argv))).data
    fetch(data.url, data.md5, paths.ARCHIVE, timeout_seconds=data.timeout_seconds,
          retries=data.retries, progress=ProgressPrinter())
    print(f"fetch: {paths.ARCHIVE} verified (md5 {data.md5})")


if __name__ == "__main__":
    main()
