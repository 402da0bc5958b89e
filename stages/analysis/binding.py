"""A record counts only as the output that its grid's dvc.lock recorded for its cell, trained with
the settings its grid's params give that cell.

A cell's record is a small JSON file in git: anyone can edit one (1 epoch instead of 10), copy one
under another seed's name, or write one by hand. So a report reads a record only if
- its bytes' md5 is the one its grid's dvc.lock recorded for that output (the lock is read as a
  guard, not declared as a dependency: a report does not re-run when a lock entry is rewritten);
  the lock entry's stage ran with the seed the record and its file name say;
- every training setting in it (model and train) equals what params.yaml gives that cell: its
  grid's model and train sections with the cell's own overrides (an optimizer, a rate, a batch
  size...). Records without `schema` (schema 1) predate some settings: one without `momentum`
  trained with SGD's momentum 0 and one without `head_input_rms` without a head scale; a setting
  added later than that is absent from schema-1 records and bound by the lock alone. Schema 2
  records carry every setting;
- where it records its data digests (schema 2), the stats file's equals the one its lock entry
  recorded as the cell's input.
Numerics fingerprints are recorded, not required equal. Each refusal is one line naming the
file, the field, both values and the fix.
"""

from __future__ import annotations

import dataclasses
import os
import re
from dataclasses import dataclass
from pathlib import Path

import yaml

from stages.trainer.errors import InputFileError, quoted

# What records written before these settings existed trained with (record schema 1).
SCHEMA_1_DEFAULTS = {"train": {"momentum": 0.0}, "model": {"head_input_rms": 0.0}}
SECTIONS = ("model", "train")
STATISTICS = "data/stats.json"  # The one input whose md5 a cell's lock entry and record both name.
_SEED = re.compile(r"--seed '?([^' ]*)'?")


@dataclass(frozen=True)
class Recipe:
    """How a grid's cells train before each cell's own overrides: params.yaml's model and train."""

    model: dict
    train: dict

    @classmethod
    def of(cls, model, train) -> "Recipe":
        return cls(dataclasses.asdict(model), dataclasses.asdict(train))

    def for_cell(self, overrides: dict) -> dict[str, dict]:
        """{section: {setting: value}} of one cell: the recipe with `overrides` (bn, seed and the
        settings its grid sets) put into the section that holds each."""
        return {section: {**values, **{key: overrides[key] for key in values if key in overrides}}
                for section, values in (("model", self.model), ("train", self.train))}


@dataclass(frozen=True)
class LockedOutput:
    """One output of one stage as a dvc.lock recorded it."""

    lock: str
    stage: str
    md5: str
    command: str
    inputs: dict  # {dependency path: md5}


def relative(path: Path) -> str:
    """`path` as dvc.lock names it: relative to the project (the working directory), with slashes."""
    return Path(os.path.relpath(Path(path).absolute())).as_posix()


_locks: dict[tuple, dict[str, LockedOutput]] = {}


def locked_outputs(lock: Path) -> dict[str, LockedOutput]:
    """{output path: LockedOutput} of every stage in `lock`; empty where it does not exist yet.
    Read once per version of the file (a report binds hundreds of records to one lock)."""
    lock = Path(lock)
    try:
        status = lock.stat()
    except FileNotFoundError:
        return {}
    key = (str(lock.absolute()), status.st_mtime_ns, status.st_size)
    if key not in _locks:
        try:
            stages = (yaml.safe_load(lock.read_text(encoding="utf-8")) or {}).get("stages") or {}
            _locks[key] = {out["path"]: LockedOutput(str(lock), name, str(out.get("md5", "")),
                                                     _command(entry.get("cmd", "")),
                                                     {dep["path"]: dep.get("md5") for dep in entry.get("deps") or []})
                           for name, entry in stages.items() for out in entry.get("outs") or []}
        except (yaml.YAMLError, AttributeError, TypeError, KeyError) as error:
            raise InputFileError(f"{lock}: not a dvc.lock DVC could have written ({error.__class__.__name__}); "
                                 f"`git checkout -- {lock}` puts back the committed one") from None
    return _locks[key]


def _command(cmd: object) -> str:
    """A lock entry's command as one line: DVC writes a list of commands as a YAML list."""
    return " && ".join(map(str, cmd)) if isinstance(cmd, list) else str(cmd)


def check_locked(path: Path, md5: str, record: dict, pipeline: str) -> None:
    """Refuse a record whose bytes are not the output that `pipeline`'s dvc.lock recorded for it,
    or whose lock entry ran another seed."""
    lock = Path(pipeline).with_name("dvc.lock")
    entry = locked_outputs(lock).get(relative(path))
    if entry is None:
        raise InputFileError(
            f"{path}: {lock} has no entry for it, so no DVC run of {pipeline} is known to have written it; "
            f"run its cell through DVC (`dvc repro {pipeline}`), or commit the lock entry that `dvc repro` "
            f"wrote for it (`git checkout -- {lock}` if it was lost)")
    if entry.md5 != md5:
        raise InputFileError(
            f"{path}: md5 {md5} is not the {entry.md5} that {lock} recorded for {entry.stage}, so it was "
            f"edited or copied after DVC ran that cell; `git checkout -- {path}` puts back the committed "
            f"record (or delete it and run `dvc repro {pipeline}`)")
    ran = _SEED.search(entry.command)
    if ran is None or ran.group(1) != str(record.get("seed")):
        raise InputFileError(
            f"{path}: seed = {quoted(record.get('seed'))}, but {lock}'s {entry.stage} ran "
            f"{ran.group(0) if ran else 'no --seed'}; `git checkout -- {path} {lock}` puts back the committed pair")
    data = record.get("data")
    if isinstance(data, dict) and STATISTICS in data and entry.inputs.get(STATISTICS) not in (None, data[STATISTICS]):
        raise InputFileError(
            f"{path}: data.{STATISTICS} = {quoted(data[STATISTICS])}, but {lock}'s {entry.stage} read "
            f"{entry.inputs[STATISTICS]}; `git checkout -- {path} {lock}` puts back the committed pair")


def check_recipe(path: Path, record: dict, wanted: dict[str, dict], fix: str) -> None:
    """Every model and train setting `record` holds equals `wanted`'s ({section: {setting: value}})."""
    schema_1 = "schema" not in record
    for section in SECTIONS:
        recorded = record.get(section)
        if not isinstance(recorded, dict):
            raise InputFileError(f"{path}: {section} = {quoted(recorded)} is not a mapping of settings; {fix}")
        for key, value in wanted[section].items():
            if key in recorded:
                found = recorded[key]
            elif schema_1 and key in SCHEMA_1_DEFAULTS[section]:
                found = SCHEMA_1_DEFAULTS[section][key]
            elif schema_1:
                continue  # A setting younger than the record: its lock entry binds it.
            else:
                raise InputFileError(f"{path}: has no {section}.{key} (params.yaml: {quoted(value)}), "
                                     f"which every schema-{record['schema']} record holds; {fix}")
            if not same(found, value):
                raise InputFileError(f"{path}: {section}.{key} = {quoted(found)}, but params.yaml gives this "
                                     f"cell {quoted(value)}; {fix}")


def same(recorded: object, wanted: object) -> bool:
    """Equal values of equal kinds: 10 is not 10.0 where params.yaml says an integer, True is not 1,
    a float equals an integer of its value (YAML's 1 for a rate)."""
    if isinstance(wanted, bool) or isinstance(recorded, bool):
        return recorded is wanted
    if isinstance(wanted, int):
        return type(recorded) is int and recorded == wanted
    if isinstance(wanted, float):
        return isinstance(recorded, (int, float)) and float(recorded) == wanted
    if isinstance(wanted, list):
        return isinstance(recorded, list) and len(recorded) == len(wanted) and all(map(same, recorded, wanted))
    return type(recorded) is type(wanted) and recorded == wanted
