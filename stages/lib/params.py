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

from stages.lib.errors import ParamsError, quoted, shorten

# rescaled: the `none` net with a data-dependent initialization (model.data_dependent_init);
# frozen: `before` whose BatchNorm stops normalizing by the batch after model.bn_freeze_after_steps.
BN_PLACEMENTS = ("before", "after", "none", "rescaled", "frozen")
NORMALIZE_MODES = ("global", "per_channel")
OPTIMIZERS = ("adam", "sgd")
# One set of params, one set of numerics: bfloat16 is never picked by the hardware, only by the user.
PRECISIONS = ("float32", "mixed_bfloat16")
ACTIVATIONS = ("elu", "relu", "gelu", "selu", "tanh")
MAX_FILE_BYTES = 1 << 20  # params.yaml is a few hundred bytes; anything near this is not params.
DEVICES = ("auto", "gpu", "cpu")  # See device.configure_device.


class UndeclaredParamError(AttributeError):
    """A stage read a param that it does not declare (and that dvc.yaml therefore does not list)."""


def _rule(**metadata) -> dataclasses.Field:
    return field(metadata=metadata)


@dataclass(frozen=True)
class DataParams:
    url: str = _rule(non_empty=True)
    md5: str = _rule(pattern=r"[0-9a-f]{32}", help="32 lowercase hex digits")
    timeout_seconds: float = _rule(min=1, max=3600)
    retries: int = _rule(min=0, max=10)


@dataclass(frozen=True)
class NormalizeParams:
    mode: str = _rule(choices=NORMALIZE_MODES)
    records_per_file: int = _rule(min=1, max=10_000)


@dataclass(frozen=True)
class ModelParams:
    # Each block halves the 32x32 image: five reach 1x1.
    filters: list[int] = _rule(min=1, max=1024, non_empty=True, max_items=5)
    kernel_size: int = _rule(min=1, max=7)
    activation: str = _rule(choices=ACTIVATIONS)
    dense_units: int = _rule(min=1, max=8192)
    dropout_rate: float = _rule(min=0, max=0.95)
    bn_momentum: float = _rule(min=0, max=1)
    bn_epsilon: float = _rule(min=1e-12, max=1)
    bn_freeze_after_steps: int = _rule(min=0, max=10_000_000)
    # 0: the dense head takes the flattened features as they come (the reference). x > 0: one
    # constant, set at initialization, scales them to RMS x on the first training batch, in every
    # variant alike (model.scale_head_input; the head grid's intervention, docs/why.md).
    head_input_rms: float = _rule(min=0, max=100)


@dataclass(frozen=True)
class TrainParams:
    epochs: int = _rule(min=1, max=1000)  # Every epoch's order is drawn up front: 200 kB each.
    batch_size: int = _rule(min=1, max=4096)
    optimizer: str = _rule(choices=OPTIMIZERS)
    learning_rate: float = _rule(min=1e-9, max=10)
    deterministic: bool = _rule()
    precision: str = _rule(choices=PRECISIONS)
    device: str = _rule(choices=DEVICES)
    tf32: bool = _rule()
    jit_compile: bool = _rule()
    steps_per_execution: int = _rule(min=1)


@dataclass(frozen=True)
class LandscapeParams:
    enabled: bool = _rule()
    every_steps: int = _rule(min=1, max=100_000)
    step_sizes: list[float] = _rule(min=1e-6, max=1000, non_empty=True, max_items=16)


@dataclass(frozen=True)
class StudyParams:
    variants: list[str] = _rule(choices=BN_PLACEMENTS, non_empty=True, unique=True)
    # Welch's t-test (compare) needs at least two seeds per variant.
    seeds: list[int] = _rule(min=0, max=2**31 - 1, non_empty=True, unique=True, min_items=2,
                             max_items=100)


@dataclass(frozen=True)
class GridParams:
    """One optimizer's part of the sweep: which variants, at which learning rates."""
    variants: list[str] = _rule(choices=BN_PLACEMENTS, non_empty=True, unique=True)
    learning_rates: list[float] = _rule(min=1e-9, max=10, non_empty=True, unique=True, max_items=20)


@dataclass(frozen=True)
class SweepParams:
    seeds: list[int] = _rule(min=0, max=2**31 - 1, non_empty=True, unique=True, max_items=100)
    adam: GridParams = _rule()
    sgd: GridParams = _rule()  # Plain SGD: Keras' default momentum is 0.


@dataclass(frozen=True)
class PlacementParams:
    """Before or after the activation? Two variants at the study's settings, at more seeds than
    the study, accuracies only (placement/dvc.yaml). The report pools these cells with the study's
    cells of the same variants, so the seeds here continue study.seeds (check_placement)."""
    variants: list[str] = _rule(choices=BN_PLACEMENTS, unique=True, min_items=2, max_items=2)
    seeds: list[int] = _rule(min=0, max=2**31 - 1, non_empty=True, unique=True, max_items=1000)
    # Accuracy difference (a fraction) within which the two placements count as equivalent in the
    # report's equivalence test (TOST); why this value: params.yaml.
    equivalence_margin: float = _rule(min=1e-4, max=0.1)


@dataclass(frozen=True)
class RateGridParams:
    """A grid of cells at a few learning rates of one optimizer (norms, head): which variants, at
    which seeds."""
    optimizer: str = _rule(choices=OPTIMIZERS)
    learning_rates: list[float] = _rule(min=1e-9, max=10, non_empty=True, unique=True, max_items=20)
    variants: list[str] = _rule(choices=BN_PLACEMENTS, non_empty=True, unique=True)
    seeds: list[int] = _rule(min=0, max=2**31 - 1, non_empty=True, unique=True, max_items=100)


@dataclass(frozen=True)
class HeadParams(RateGridParams):
    """The SGD head, tested: the listed variants with the dense head's input scaled to one RMS in
    every variant (model.head_input_rms), head/dvc.yaml. The same seeds as the sweep's cells at
    these rates pair each cell with one that differs only by the intervention."""
    head_input_rms: float = _rule(min=1e-6, max=100)


@dataclass(frozen=True)
class BatchParams:
    """The batch: the listed variants at other batch sizes than the study's (train.batch_size),
    with everything else as the study trains (train.optimizer and train.learning_rate unchanged),
    batch/dvc.yaml. At train.batch_size the report takes the study's cells (check_batch)."""
    batch_sizes: list[int] = _rule(min=1, max=4096, non_empty=True, unique=True, max_items=10)
    variants: list[str] = _rule(choices=BN_PLACEMENTS, non_empty=True, unique=True)
    seeds: list[int] = _rule(min=0, max=2**31 - 1, non_empty=True, unique=True, max_items=100)


@dataclass(frozen=True)
class Params:
    seed: int = _rule(min=0, max=2**31 - 1)
    bn: str = _rule(choices=BN_PLACEMENTS)
    data: DataParams = _rule()
    normalize: NormalizeParams = _rule()
    model: ModelParams = _rule()
    train: TrainParams = _rule()
    landscape: LandscapeParams = _rule()
    study: StudyParams = _rule()
    sweep: SweepParams = _rule()
    placement: PlacementParams = _rule()
    # Scale invariance, watched: each layer's weight norm recorded over training (norms/dvc.yaml).
    # Its own seeds, so that no cell repeats a study or sweep cell (check_norms).
    norms: RateGridParams = _rule()
    head: HeadParams = _rule()
    batch: BatchParams = _rule()


def load_params(keys: typing.Iterable[str], path: str | Path = "params.yaml",
                check: typing.Callable[[Params], None] | None = None) -> ParamsView:
    """Validate the whole file, then give the stage only the `keys` it declares ("train",
    "landscape.every_steps", ...): the same keys its `params:` in dvc.yaml lists (a test checks
    both), so reading anything else fails at once instead of leaving DVC blind to a dependency.
    `check`, if given, sees the whole file first: a cell checks its grid's rules there."""
    params = read_params(path)
    if check is not None:
        check(params)
    return ParamsView(params, frozenset(keys), source=Path(path))


def read_params(path: str | Path = "params.yaml") -> Params:
    path = Path(path)
    if not path.is_file():
        raise ParamsError(f"{path}: file not found; run from the project root, where params.yaml lives")
    if path.stat().st_size > MAX_FILE_BYTES:
        raise ParamsError(f"{path}: {path.stat().st_size:,} bytes is too large for a params file "
                          f"(at most {MAX_FILE_BYTES:,})")
    return parse_params(read_yaml(path), source=str(path))


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


def parse_params(raw: object, source: str = "params.yaml") -> Params:
    return _build(Params, raw, prefix="", source=source)


GRIDS = ("study", "sweep", "placement", "norms", "head", "batch")  # The pipelines whose cells stages/cell.py trains.
RATE_GRIDS = ("sweep", "norms", "head")  # Grids whose cells set the optimizer and learning rate.
MAX_CELLS = 1000  # Per grid: about 50 CPU-hours at the study's setting; more is a slip of the keyboard.


def check_grid(params: Params, grid: str, source: str = "params.yaml") -> None:
    """The rules that span sections of params.yaml for one grid of cells (each section's own rules
    are checked as it is read). Every cell checks its whole grid before loading any data, and the
    grid's report checks it again: DVC expands the grid into commands without asking us."""
    if grid == "study":
        count = len(params.study.variants) * len(params.study.seeds)
    elif grid == "sweep":
        check_sweep(params.sweep, params.study, params.train, source)
        count = len(params.sweep.seeds) * sum(len(part.variants) * len(part.learning_rates)
                                              for part in (params.sweep.adam, params.sweep.sgd))
    elif grid == "placement":
        check_placement(params.placement, params.study, source)
        count = len(params.placement.variants) * len(params.placement.seeds)
    elif grid == "norms":
        check_norms(params, source)
        count = len(params.norms.variants) * len(params.norms.learning_rates) * len(params.norms.seeds)
    elif grid == "head":
        count = len(params.head.variants) * len(params.head.learning_rates) * len(params.head.seeds)
    elif grid == "batch":
        check_batch(params.batch, params.study, params.train, source)
        count = len(params.batch.variants) * len(params.batch.batch_sizes) * len(params.batch.seeds)
    else:
        raise ValueError(f"unknown grid {grid!r}; expected one of {GRIDS}")
    if count > MAX_CELLS:
        raise ParamsError(f"{source}: the {grid} grid has {count:,} cells; at most {MAX_CELLS:,} are "
                          f"allowed (each trains for minutes): list fewer seeds or values in {grid}")


def check_sweep(sweep: SweepParams, study: StudyParams, train, source: str = "params.yaml") -> None:
    """At the study's own optimizer and rate the sweep takes the study's cells: the sweep must not
    list that rate itself (two sets of cells for one point, the same seeds twice), and each of its
    variants there needs the study's cells."""
    part = getattr(sweep, train.optimizer)
    if train.learning_rate in part.learning_rates:
        raise ParamsError(
            f"{source}: sweep.{train.optimizer}.learning_rates lists {train.learning_rate:g}, the "
            f"study's own rate (train.learning_rate): the study's cells cover it; remove it from the sweep")
    absent = [bn for bn in part.variants if bn not in study.variants]
    if absent:
        raise ParamsError(
            f"{source}: sweep.{train.optimizer}.variants lists {', '.join(absent)}, which study.variants "
            f"does not: the sweep's point at the study's rate ({train.learning_rate:g}) comes from the "
            f"study; add {', '.join(absent)} to study.variants")


def check_norms(params: Params, source: str = "params.yaml") -> None:
    """A norms cell trains like a study or sweep cell and only records more: one with the same
    setting and seed would train that cell twice, and the two would not be independent seeds."""
    norms, taken = params.norms, {}
    for seed in params.study.seeds:
        taken[(params.train.optimizer, params.train.learning_rate, seed)] = "study.seeds"
    for optimizer in OPTIMIZERS:
        for rate in getattr(params.sweep, optimizer).learning_rates:
            for seed in params.sweep.seeds:
                taken[(optimizer, rate, seed)] = "sweep.seeds"
    for seed in params.placement.seeds:
        taken[(params.train.optimizer, params.train.learning_rate, seed)] = "placement.seeds"
    clashes = sorted({(seed, taken[(norms.optimizer, rate, seed)]) for rate in norms.learning_rates
                      for seed in norms.seeds if (norms.optimizer, rate, seed) in taken})
    if clashes:
        seed, where = clashes[0]
        raise ParamsError(f"{source}: norms.seeds lists {seed}, which {where} already trains at one of "
                          f"norms.learning_rates with {norms.optimizer}; choose seeds no other grid uses")


def check_batch(batch: BatchParams, study: StudyParams, train, source: str = "params.yaml") -> None:
    """At the study's own batch size the batch report takes the study's cells, as the sweep does at
    the study's rate: the batch grid must not list that size (the same cells twice), and each of
    its variants needs the study's cells there."""
    if train.batch_size in batch.batch_sizes:
        raise ParamsError(f"{source}: batch.batch_sizes lists {train.batch_size}, the study's own batch "
                          f"size (train.batch_size): the study's cells cover it; remove it from batch.batch_sizes")
    absent = [bn for bn in batch.variants if bn not in study.variants]
    if absent:
        raise ParamsError(f"{source}: batch.variants lists {', '.join(absent)}, which study.variants does "
                          f"not: the batch report takes the study's cells at train.batch_size "
                          f"({train.batch_size}); add {', '.join(absent)} to study.variants")


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


def check_placement(placement: PlacementParams, study: StudyParams, source: str = "params.yaml") -> None:
    """The placement report adds the study's cells of its two variants: those variants must be in
    the study, and a seed the study already ran would train the same cell twice."""
    missing = [variant for variant in placement.variants if variant not in study.variants]
    if missing:
        raise ParamsError(f"{source}: placement.variants names {missing[0]}, which study.variants "
                          f"lacks; the placement report adds the study's cells, so add it there "
                          f"or choose from {', '.join(study.variants)}")
    repeated = sorted(set(placement.seeds) & set(study.seeds))
    if repeated:
        raise ParamsError(f"{source}: placement.seeds repeats study seed {repeated[0]}; the study "
                          f"already ran that cell, so remove it from placement.seeds")


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
        depends on, which stages/lib/guard.py compares with params.yaml before publishing."""
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
    raw = {field.name: overrides[field.name] if field.name in overrides else getattr(train, field.name)
           for field in dataclasses.fields(TrainParams)}
    return _build(TrainParams, raw, prefix="train.", source="the command line")
