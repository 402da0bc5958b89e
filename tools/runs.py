"""The experiments side by side in an 80-column terminal: `python tools/runs.py`.

`dvc exp show` lists every param and metric; trimmed with --drop/--keep it still spends most of
80 columns on its tree of experiment names and cuts the last column. This prints the six columns
that say which placement, which seed, which numerics and how good, from the same data (DVC's API).
"""

import sys

import dvc.api
from dvc.exceptions import DvcException
from dvc.scm import SCMError

from stages.trainer.params import BN_PLACEMENTS

COLUMNS = (  # (DVC's column, header, width, format)
    ("bn", "bn", max(map(len, BN_PLACEMENTS)), "{}"),  # Wide enough for every variant's name.
    ("seed", "seed", 4, "{:.0f}"),
    ("train.precision", "precision", 14, "{}"),
    ("test.accuracy", "test acc", 8, "{:.4f}"),
    ("test.loss", "test loss", 9, "{:.4f}"),
)
NAME_WIDTH = 26


def cell(text: str, width: int, template: str) -> str:
    """Numbers right-aligned, text left-aligned, as in `dvc exp show`."""
    return text.rjust(width) if template != "{}" else text.ljust(width)


def shown(value, template: str) -> str:
    """A value as `template` formats it; DVC's "!" (no such metric in that run) and the like as is."""
    if value is None:
        return "-"
    return template.format(value) if isinstance(value, (int, float)) else str(value)


def main() -> None:
    try:
        rows = dvc.api.exp_show()
    except (DvcException, SCMError) as error:  # Outside a git repository, or one without DVC.
        sys.exit(f"runs: no DVC experiments here ({' '.join(str(error).split())}); run it inside "
                 "the bnlab project")
    print(" ".join(["experiment".ljust(NAME_WIDTH)] + [cell(header, width, template)
                                                      for _, header, width, template in COLUMNS]))
    for row in rows:
        name = row["Experiment"] or row["rev"]
        if row["typ"] != "baseline":  # An experiment: indent it under its baseline commit.
            name = "  " + name
        print(" ".join([name[:NAME_WIDTH].ljust(NAME_WIDTH)] +
                       [cell(shown(row.get(key), template), width, template)
                        for key, _, width, template in COLUMNS]))


if __name__ == "__main__":
    main()
