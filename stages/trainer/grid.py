"""A cell checks its own grid's section of params.yaml, knowing no grid by name.

DVC expands a grid's matrix into command lines without asking us, so each cell checks, before it
reads any data, that its command line is one point of its grid's section: its variant in
`variants`, its seed in `seeds`, each setting it overrides listed there (a list named by the
setting's plural, `learning_rates` for --learning-rate, or one value under the setting's own name,
`optimizer`), and every setting the section names given. A mapping inside the section is a part of
the grid that an override's value picks (sweep.adam for --optimizer adam), with the section's
other keys (its seeds) shared. Other keys (report settings such as `equivalence_margin`) are the
report's. This rule is all a cell knows of grids: a grid's own rules, which span sections, are
checked by its report (stages/grids/sections.py), so a new grid needs no code here.
"""

from __future__ import annotations

import math

from stages.trainer.errors import ParamsError, quoted, shorten

# Per grid: about 50 CPU-hours at the study's setting; more is a slip of the keyboard. DVC itself
# spends minutes expanding and checking a matrix of thousands of stages before any cell starts.
MAX_CELLS = 1000


def plural(setting: str) -> str:
    return setting + "s"


def check_cell(document: object, grid: str, bn: str, seed: int, overrides: dict,
               part: str | None = None, source: str = "params.yaml") -> None:
    """Refuse, in one line, a cell (`bn`, `seed`, `overrides`: setting -> value) that is not a
    point of `grid`'s section of `document` (params.yaml as parsed)."""
    section = document.get(grid) if isinstance(document, dict) else None
    if not isinstance(section, dict):
        raise ParamsError(f"{source} has no {grid} section; a cell of grid {grid} runs from "
                          f"grids/{grid}/dvc.yaml, whose matrix params.yaml's {grid} section lists")
    part, picked_by = pick_part(section, grid, overrides, part)
    where = grid if part is None else f"{grid}.{part}"
    lists = {key: value for key, value in section.items() if not isinstance(value, dict)}
    if part is not None:
        lists.update(section[part])
    for key in ("variants", "seeds"):
        if not isinstance(lists.get(key), list) or not lists[key]:
            raise ParamsError(f"{source}: {where} lists no {key}; a grid's section needs a non-empty "
                              f"list of {key}")
    point = {"variants": bn, "seeds": seed}
    given = set(picked_by)
    for setting, value in overrides.items():
        if plural(setting) in lists:
            point[plural(setting)] = value
            given.add(setting)
        elif setting in lists:
            if not same(lists[setting], value):
                raise ParamsError(f"--{flag(setting)} {value} is not {where}.{setting} "
                                  f"({shorten(str(lists[setting]))}); {through(grid)}")
            given.add(setting)
    if extra := sorted(set(overrides) - given):
        raise ParamsError(f"--{flag(extra[0])} is not a setting of the {grid} grid ({where} lists no "
                          f"{plural(extra[0])} or {extra[0]}); {through(grid)}")
    if missing := sorted(settings_named(lists) - given):
        key = plural(missing[0]) if plural(missing[0]) in lists else missing[0]
        raise ParamsError(f"a {grid} cell needs --{flag(missing[0])} (its point of the grid), which "
                          f"{where}.{key} lists; {through(grid)}")
    this = ", ".join(map(str, point.values()))
    for key, value in point.items():
        values = lists[key]
        if not isinstance(values, list) or not any(same(item, value) for item in values):
            raise ParamsError(f"this cell ({this}) is not in the {grid} grid: {where}.{key} lists "
                              f"{shorten(quoted(values))}; {through(grid)}")
    check_size(section, grid, source)


def check_size(section: object, grid: str, source: str = "params.yaml") -> None:
    """Refuse a grid of more than MAX_CELLS cells. The check stage (stages/check.py) applies it
    before any cell runs; a cell applies it again, for a cell run outside DVC."""
    count = cells_in(section) if isinstance(section, dict) else 0
    if count > MAX_CELLS:
        raise ParamsError(f"{source}: the {grid} grid has {count:,} cells; at most {MAX_CELLS:,} are "
                          f"allowed (each trains for minutes): list fewer seeds or values in {grid}")


# What a cell can override (stages/cell.py's OVERRIDABLE).
SETTINGS = ("activation", "head_input_rms", "epochs", "optimizer", "learning_rate", "momentum", "batch_size")


def settings_named(lists: dict) -> set[str]:
    """The settings a section fixes or sweeps: each needs its flag on every cell's command line."""
    return {setting for setting in SETTINGS if setting in lists or plural(setting) in lists}


def pick_part(section: dict, grid: str, overrides: dict, part: str | None) -> tuple[str | None, tuple[str, ...]]:
    """The part of `section` (one of its mappings) a cell is in, and the setting that named it:
    --part, or else the one override whose value is a part's name (sweep.adam: --optimizer adam)."""
    parts = [key for key, value in section.items() if isinstance(value, dict)]
    if part is not None:
        if part not in parts:
            raise ParamsError(f"--part {part} is not a part of the {grid} grid ({', '.join(map(str, parts)) or 'it has none'}); "
                              f"{through(grid)}")
        return part, ()
    if not parts:
        return None, ()
    picked = [(setting, value) for setting, value in overrides.items() if value in parts]
    if len(picked) != 1:
        raise ParamsError(f"a {grid} cell is in one of {grid}'s parts ({', '.join(map(str, parts))}), "
                          f"which one of its settings names; {through(grid)}")
    (setting, value), = picked
    return value, (setting,)


def cells_in(section: dict) -> int:
    """The number of cells of a section: the product of its axes' lengths (variants, seeds and a
    setting's plural), summed over its parts; other lists (a report's settings) are not axes."""
    axes = {"variants", "seeds", *map(plural, SETTINGS)}

    def lengths(mapping: dict) -> dict:
        return {key: len(value) for key, value in mapping.items() if key in axes and isinstance(value, list)}

    shared = lengths(section)
    parts = [value for value in section.values() if isinstance(value, dict)] or [{}]
    return sum(math.prod({**shared, **lengths(part)}.values()) for part in parts)


def same(listed: object, value: object) -> bool:
    # YAML's 1e-3 and the command line's 0.001 are one number; True is not the integer 1.
    if isinstance(listed, bool) or isinstance(value, bool):
        return listed is value
    if isinstance(listed, (int, float)) and isinstance(value, (int, float)):
        return float(listed) == float(value)
    return listed == value


def flag(setting: str) -> str:
    return setting.replace("_", "-")


def through(grid: str) -> str:
    return f"cells run through DVC: `dvc repro grids/{grid}/dvc.yaml`"
