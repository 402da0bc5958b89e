"""Stage `fetch`: download (or copy) the CIFAR-10 binary archive and verify its md5."""

from stages.lib import paths
from stages.lib.cli import stage_main
from stages.lib.download import ProgressPrinter, fetch
from stages.lib.params import load_params


@stage_main("fetch")
def main() -> None:
    data = load_params().data
    fetch(data.url, data.md5, paths.ARCHIVE, timeout_seconds=data.timeout_seconds,
          retries=data.retries, progress=ProgressPrinter())
    print(f"fetch: {paths.ARCHIVE} verified (md5 {data.md5})")


if __name__ == "__main__":
    main()
