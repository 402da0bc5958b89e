"""What every figure shares: Matplotlib without a display, saving a PNG in one rename, and one
colour per BN variant in every figure."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # Files only; no display is needed or wanted on servers and in CI.
import matplotlib.pyplot as plt  # noqa: E402

from stages.trainer.atomic import atomic_path  # noqa: E402

# The colour order of the variants, the same in every figure; a variant not listed (a new module in
# stages/variants) takes the next colour.
VARIANT_ORDER = ("before", "after", "none", "rescaled", "frozen")


def save(figure, path: Path, layout: bool = True) -> None:
    if layout:
        figure.tight_layout()
    with atomic_path(path) as temp:
        figure.savefig(temp, dpi=110, format="png")
    plt.close(figure)


def variant_color(variant: str) -> str:
    """The same colour for a BN variant in every figure."""
    cycle = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    known = variant in VARIANT_ORDER
    return cycle[VARIANT_ORDER.index(variant) if known else len(VARIANT_ORDER) % len(cycle)]
