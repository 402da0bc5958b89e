"""params.yaml as `dvc exp run -S` leaves it: DVC's own writer changes the overridden line and no
other, and drops no explanation.

`dvc exp run -S key=value` rewrites params.yaml through dvc.utils.hydra.apply_overrides (ruamel,
round-trip). It replaces every list (so a flow list `[5, 6]` comes back in block style and a comment
or blank line after a list is lost) and keeps the rest. A file in another form turns a one-word
change into a diff of a hundred lines in every experiment's commit.
"""

from __future__ import annotations

import difflib
import re
import shutil

import pytest
from dvc.utils.hydra import apply_overrides
from ruamel.yaml import YAML

from conftest import ROOT

COMMENT = re.compile(r"(?:^|\s)(#.*)$")  # A whole-line comment or the end of a value's line.


def comments(text: str) -> list[str]:
    return [match.group(1) for line in text.splitlines() if (match := COMMENT.search(line))]


@pytest.mark.parametrize("override, key, value", [
    ("bn=after", ("bn",), "after"),
    ("train.epochs=3", ("train", "epochs"), 3),
    ("placement.equivalence_margin=0.004", ("placement", "equivalence_margin"), 0.004),
])
def test_dvc_override_changes_one_line_and_keeps_every_comment(tmp_path, override, key, value):
    path = tmp_path / "params.yaml"
    shutil.copy(ROOT / "params.yaml", path)
    before = path.read_text(encoding="utf-8")
    apply_overrides(path, [override])
    after = path.read_text(encoding="utf-8")

    changed = [line for line in difflib.unified_diff(before.splitlines(), after.splitlines(), lineterm="", n=0)
               if line[:1] in "+-" and not line.startswith(("+++", "---"))]
    assert len(changed) == 2 and changed[0][0] == "-" and changed[1][0] == "+", "\n".join(changed)
    assert comments(after) == comments(before)

    parsed = YAML(typ="safe").load(after)
    for part in key:
        parsed = parsed[part]
    assert parsed == value
