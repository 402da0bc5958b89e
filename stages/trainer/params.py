"""Typed, validated view of params.yaml.

Every stage calls `load_params()` before doing any work, so a typo in any key fails fast with one
message naming the key, the bad value and what is allowed, instead of a traceback minutes later.
Constraints live next to each field, in its `metadata`, so each rule is written once. Values that
size memory or time (epochs, batch size, units, filters, step counts) have upper bounds, so a slip
of the keyboard fails in a second instead of exhausting the machine an hour later.

The file is read exactly as DVC reads it (ruamel.yaml, YAML 1.2, duplicate keys refused), so
`1e-3` is a number for both and no value means one thing to DVC and another to the stage.
"""

from __future__ import annotations

import dataclasses
import math
import re
import typing
from dataclasses import dataclass, field
from pathlib import Path

from ruamel.yaml import YAML
from ruamel.yaml.error import YAMLError

from stages.trainer.errors import ParamsError, quoted, shorten

# The BN variants: one module each in stages/variants/ (before, after, none, rescaled, frozen, ...).
# A naming rule rather than a list, so that adding a variant edits no file a cached cell depends on.
VARIANTS = Path(__file__).resolve().parent.parent / "variants"
BN_PLACEMENTS = tuple(sorted(path.stem for path in VARIANTS.glob("*.py") if not path.stem.startswith("_")))
NORMALIZE_MODES = ("global", "per_channel")
OPTIMIZERS = ("adam", "sgd")
# One set of params, one set of numerics: bfloat16 is never picked by the hardware, only by the user.
PRECISIONS = ("float32", "mixed_bfloat16")
ACTIVATIONS = ("elu", "relu", "gelu", "selu", "tanh")
MAX_FILE_BYTES = 1 << 20  # params.yaml is a few hundred bytes; anything near this is not params.
DEVICES = ("auto", "gpu", "cpu")  # See device.configure_device.


class UndeclaredParamError(AttributeError):
    """A stage read a param that it does not declare (and that dvc.yaml therefore does not list)."""


def rule(**metadata) -> dataclasses.Field:
    return field(metadata=metadata)


@dataclass(frozen=True)
class DataParams:
    url: str = rule(non_empty=True)
    md5: str = rule(pattern=r"[0-9a-f]{32}", help="32 lowercase hex digits")
    timeout_seconds: float = rule(min=1, max=3600)
    retries: int = rule(min=0, max=10)


@dataclass(frozen=True)
class NormalizeParams:
    mode: str = rule(choices=NORMALIZE_MODES)
    records_per_file: int = rule(min=1, max=10_000)


@dataclass(frozen=True)
class ModelParams:
    # Each block halves the 32x32 image: five reach 1x1.
    filters: list[int] = rule(min=1, max=1024, non_empty=True, max_items=5)
    kernel_size: int = rule(min=1, max=7)
    activation: str = rule(choices=ACTIVATIONS)
    dense_units: int = rule(min=1, max=8192)
    dropout_rate: float = rule(min=0, max=0.95)
    bn_momentum: float = rule(min=0, max=1)
    bn_epsilon: float = rule(min=1e-12, max=1)
    bn_freeze_after_steps: int = rule(min=0, max=10_000_000)
    # 0: the dense head takes the flattened features as they come (the reference). x > 0: one
    # constant, set at initialization, scales them to RMS x on the first training batch, in every
    # variant alike (model.scale_head_input; the head grid's intervention, docs/why.md).
    head_input_rms: float = rule(min=0, max=100)


@dataclass(frozen=True)
class TrainParams:
    epochs: int = rule(min=1, max=1000)  # Every epoch's order is drawn up front: 200 kB each.
    batch_size: int = rule(min=1, max=4096)
    optimizer: str = rule(choices=OPTIMIZERS)
    learning_rate: float = rule(min=1e-9, max=10)
    # SGD's momentum (0: plain SGD, Keras' default); Adam has its own moments, so there it must be 0.
    momentum: float = rule(min=0, max=0.999)
    deterministic: bool = rule()
    precision: str = rule(choices=PRECISIONS)
    device: str = rule(choices=DEVICES)
    tf32: bool = rule()
    jit_compile: bool = rule()
    steps_per_execution: int = rule(min=1)

    def __post_init__(self) -> None:
        if self.momentum and self.optimizer != "sgd":
            raise ParamsError(f"train.momentum = {self.momentum:g} is SGD's; with train.optimizer "
                              f"{self.optimizer} set train.momentum to 0")


@dataclass(frozen=True)
class LandscapeParams:
    enabled: bool = rule()
    every_steps: int = rule(min=1, max=100_000)
    step_sizes: list[float] = rule(min=1e-6, max=1000, non_empty=True, max_items=16)


@dataclass(frozen=True)
class Params:
    seed: int = rule(min=0, max=2**31 - 1)
    bn: str = rule(choices=BN_PLACEMENTS)
    data: DataParams = rule()
    normalize: NormalizeParams = rule()
    model: ModelParams = rule()
    train: TrainParams = rule()
    landscape: LandscapeParams = rule()


def load_params(keys: typing.Iterable[str], path: str | Path = "params.yaml",
                check: typing.Callable[[Params, dict], None] | None = None,
                schema: type = Params) -> ParamsView:
    """Validate the file, then give the stage only the `keys` it declares ("train",
    "landscape.every_steps", ...): the same keys its `params:` in dvc.yaml lists (a test checks
    both), so reading anything else fails at once instead of leaving DVC blind to a dependency.

    `schema` Params validates the sections every training stage reads; the grids' sections are
    the grids' own (stages/grids/sections.py passes a schema with them). `check`, if given, sees
    the validated params and the whole document first: a cell checks its own grid's section there."""
    document = read_document(path)
    params = parse_params(document, source=str(path), schema=schema)
    if check is not None:
        check(params, document)
    return ParamsView(params, frozenset(keys), source=Path(path))


def read_params(path: str | Path = "params.yaml", schema: type = Params):
    return parse_params(read_document(path), source=str(path), schema=schema)


def read_document(path: str | Path = "params.yaml") -> object:
    path = Path(path)
    if not path.is_file():
        raise ParamsError(f"{path}: file not found; run from the project root, where params.yaml lives")
    if path.stat().st_size > MAX_FILE_BYTES:
        raise ParamsError(f"{path}: {path.stat().st_size:,} bytes is too large for a params file "
                          f"(at most {MAX_FILE_BYTES:,})")
    return read_yaml(path)


def read_yaml(path: Path) -> object:
    """The document as DVC parses params files (dvc.utils.serialize.parse_yaml: ruamel, safe)."""
    try:
        return YAML(typ="safe").load(path.read_text(encoding="utf-8"))
    except YAMLError as error:  # Syntax errors and duplicate keys: one line naming the place.
        mark = getattr(error, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = " ".join(str(getattr(error, "problem", None) or error).split())
        raise ParamsError(f"{path}: not valid YAML{where} ({shorten(problem)})") from None
    except UnicodeDecodeError:
        raise ParamsError(f"{path}: not UTF-8 text; params.yaml must be a YAML text file") from None
    except (ValueError, RecursionError) as error:  # An integer of 5,000 digits, lists nested 1,000 deep.
        raise ParamsError(f"{path}: not a usable YAML document ({shorten(str(error))})") from None


def parse_params(raw: object, source: str = "params.yaml", schema: type = Params):
    """The typed params of `schema`. Under the stages' own schema (Params), any other top-level
    mapping is a grid's section, which that grid's code validates (a cell checks its own grid);
    anything else at the top level is an unknown key."""
    if schema is Params and isinstance(raw, dict):
        own = {spec.name for spec in dataclasses.fields(Params)}
        unknown = [key for key, value in raw.items() if key not in own and not isinstance(value, dict)]
        if unknown:
            raise ParamsError(f"{source}: unknown key {shorten(str(unknown[0]))}; allowed keys at the top "
                              f"level: {', '.join(sorted(own))}, and the grids' sections (mappings)")
        raw = {key: value for key, value in raw.items() if key in own}
    return _build(schema, raw, prefix="", source=source)


def check_steps_per_execution(steps_per_execution: int, steps_per_epoch: int,
                              source: str = "params.yaml") -> None:
    """An execution (several steps in one compiled call) that does not divide the epoch would run
    into the next epoch's batches, shifting every epoch boundary."""
    if steps_per_epoch % steps_per_execution:
        divisors = [n for n in range(1, steps_per_epoch + 1) if steps_per_epoch % n == 0]
        raise ParamsError(f"{source}: train.steps_per_execution = {steps_per_execution} does not divide "
                          f"the {steps_per_epoch} steps per epoch; choose one of "
                          f"{', '.join(map(str, divisors))}")


def steps_for(examples: int, batch_size: int) -> int:
    """Training steps per epoch: every example once, the last batch smaller if need be."""
    return -(-examples // batch_size)


def _build(cls, raw: object, prefix: str, source: str):
    where = prefix.rstrip(".") or "the top level"
    if not isinstance(raw, dict):
        raise ParamsError(f"{source}: {where} must be a mapping, got {quoted(raw)}")
    hints = typing.get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls)]
    unknown = sorted(set(raw) - set(names), key=str)  # YAML keys need not be strings.
    if unknown:
        raise ParamsError(
            f"{source}: unknown key {prefix}{shorten(str(unknown[0]))}; allowed keys in {where}: "
            f"{', '.join(names)}"
        )
    values = {}
    for spec in dataclasses.fields(cls):
        key = prefix + spec.name
        if spec.name not in raw:
            raise ParamsError(f"{source}: missing key {key}")
        kind = hints[spec.name]
        if dataclasses.is_dataclass(kind):
            values[spec.name] = _build(kind, raw[spec.name], key + ".", source)
        elif kind is dict:  # A mapping whose own code validates it (a grid's section with parts).
            if not isinstance(raw[spec.name], dict):
                raise ParamsError(f"{source}: {key} must be a mapping, got {quoted(raw[spec.name])}")
            values[spec.name] = raw[spec.name]
        else:
            values[spec.name] = _check(key, raw[spec.name], kind, spec.metadata, source)
    return cls(**values)


def _check(key: str, value: object, kind, rules, source: str):
    def fail(allowed: str):
        return ParamsError(f"{source}: {key} = {quoted(value)} is not allowed; expected {allowed}")

    if typing.get_origin(kind) is list:
        (item_kind,) = typing.get_args(kind)
        if not isinstance(value, list):
            raise fail(f"a list of {item_kind.__name__}")
        if rules.get("non_empty") and not value:
            raise fail(f"a non-empty list of {item_kind.__name__}")
        if len(value) < rules.get("min_items", 0):
            raise fail(f"a list of at least {rules['min_items']} entries")
        if len(value) > rules.get("max_items", len(value)):
            raise fail(f"a list of at most {rules['max_items']} entries")
        items = [_check(f"{key}[{i}]", item, item_kind, rules, source) for i, item in enumerate(value)]
        if rules.get("unique") and len(set(items)) != len(items):  # Items are now hashable scalars.
            raise fail("a list without repeated entries")
        return items

    value = _coerce_scalar(value, kind, fail)
    if "choices" in rules and value not in rules["choices"]:
        raise fail("one of: " + ", ".join(rules["choices"]))
    if "min" in rules and value < rules["min"]:
        raise fail(f"a number >= {rules['min']}")
    if "max" in rules and value > rules["max"]:
        raise fail(f"a number <= {rules['max']}")
    if "pattern" in rules and not re.fullmatch(rules["pattern"], value):
        raise fail(rules["help"])
    if rules.get("non_empty") and isinstance(value, str) and not value.strip():
        raise fail("a non-empty string")
    return value


def _coerce_scalar(value: object, kind, fail):
    # YAML gives bool for true/false, and bool is a subclass of int in Python: check for it
    # explicitly so that `epochs: true` is an error rather than one epoch.
    if kind is bool:
        if isinstance(value, bool):
            return value
        raise fail("true or false")
    if kind is str:
        if isinstance(value, str):
            return value
        raise fail("a string")
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise fail("an integer" if kind is int else "a number")
    if kind is int:
        # YAML 1.2 reads `1.0` and `1e3` as floats; DVC passes them on as such, so a whole number
        # written that way is that integer here too.
        if isinstance(value, float) and value.is_integer():
            return int(value)
        if not isinstance(value, int):
            raise fail("an integer")
        return value
    if not math.isfinite(value):  # nan would pass every min/max comparison below.
        raise fail("a finite number")
    return float(value)


class ParamsView:
    """Read-only access to the declared keys of a Params (or one of its sections) and nothing else."""

    def __init__(self, params, keys: frozenset[str], prefix: str = "", source: Path | None = None) -> None:
        self._params, self._keys, self._prefix, self.source = params, keys, prefix, source

    def declared_keys(self) -> list[str]:
        """The keys this stage declares ("train", "landscape.every_steps"): what its result
        depends on, which stages/trainer/guard.py compares with params.yaml before publishing."""
        return sorted(self._keys)

    def __getattr__(self, name: str):
        key = self._prefix + name
        value = getattr(self._params, name)
        if key in self._keys:
            return value
        if any(declared.startswith(key + ".") for declared in self._keys):
            return ParamsView(value, self._keys, key + ".")
        raise UndeclaredParamError(
            f"this stage reads params '{key}' but declares only {', '.join(sorted(self._keys))}: "
            "add it to the stage's params_used() and to its `params:` in dvc.yaml")


def train_with_overrides(train, overrides: dict) -> TrainParams:
    """The train section (a TrainParams, or a view without the overridden keys) with `overrides`
    (field name -> value, from a command line) in place, validated by the same rules."""
    return with_overrides(TrainParams, "train", train, overrides)


def with_overrides(cls, section: str, params, overrides: dict):
    """Section `section` of type `cls` (as read, or a view without the overridden keys) with
    `overrides` (field name -> value, from a command line) in place, validated by the same rules."""
    raw = {field.name: overrides[field.name] if field.name in overrides else getattr(params, field.name)
           for field in dataclasses.fields(cls)}
    return _build(cls, raw, prefix=section + ".", source="the command line")
