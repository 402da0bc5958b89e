"""The grids' sections of params.yaml, typed and validated, and the rules between them.

A cell checks only its own grid's section, generically (stages/trainer/grid.py), so that the
grids' code stays out of what a cell depends on: a new grid, or a new rule here, leaves every
cached cell as it is. The full rules (each section's types and bounds, and what spans sections,
such as "the placement grid's seeds continue the study's") are checked here, by every grid's
report before it reads a record, and by tests/test_params.py on the committed params.yaml.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path

from stages.trainer.errors import ParamsError
from stages.trainer.params import (BN_PLACEMENTS, OPTIMIZERS, ModelParams, Params, ParamsView, TrainParams,
                                   parse_params, read_document, rule, with_overrides)


@dataclass(frozen=True)
class StudyParams:
    variants: list[str] = rule(choices=BN_PLACEMENTS, non_empty=True, unique=True)
    # A t-test (statistics.compare) needs at least two seeds per variant.
    seeds: list[int] = rule(min=0, max=2**31 - 1, non_empty=True, unique=True, min_items=2,
                             max_items=100)


@dataclass(frozen=True)
class GridParams:
    """One optimizer's part of the sweep: which variants, at which learning rates."""
    variants: list[str] = rule(choices=BN_PLACEMENTS, non_empty=True, unique=True)
    learning_rates: list[float] = rule(min=1e-9, max=10, non_empty=True, unique=True, max_items=20)


@dataclass(frozen=True)
class SweepParams:
    seeds: list[int] = rule(min=0, max=2**31 - 1, non_empty=True, unique=True, max_items=100)
    adam: GridParams = rule()
    sgd: GridParams = rule()  # Plain SGD: Keras' default momentum is 0.


@dataclass(frozen=True)
class PlacementParams:
    """Before or after the activation? Two variants at the study's settings, at more seeds than
    the study, accuracies only (grids/placement/dvc.yaml). The report pools these cells with the study's
    cells of the same variants, so the seeds here continue study.seeds (check_placement)."""
    variants: list[str] = rule(choices=BN_PLACEMENTS, unique=True, min_items=2, max_items=2)
    seeds: list[int] = rule(min=0, max=2**31 - 1, non_empty=True, unique=True, max_items=1000)
    # Accuracy difference (a fraction) within which the two placements count as equivalent in the
    # report's equivalence test (TOST); why this value: params.yaml.
    equivalence_margin: float = rule(min=1e-4, max=0.1)


@dataclass(frozen=True)
class RateGridParams:
    """A grid of cells at a few learning rates of one optimizer (norms, head): which variants, at
    which seeds."""
    optimizer: str = rule(choices=OPTIMIZERS)
    learning_rates: list[float] = rule(min=1e-9, max=10, non_empty=True, unique=True, max_items=20)
    variants: list[str] = rule(choices=BN_PLACEMENTS, non_empty=True, unique=True)
    seeds: list[int] = rule(min=0, max=2**31 - 1, non_empty=True, unique=True, max_items=100)


@dataclass(frozen=True)
class HeadParams(RateGridParams):
    """The SGD head, tested: the listed variants with the dense head's input scaled to one RMS in
    every variant (model.head_input_rms), grids/head/dvc.yaml. The same seeds as the sweep's cells at
    these rates pair each cell with one that differs only by the intervention."""
    head_input_rms: float = rule(min=1e-6, max=100)


@dataclass(frozen=True)
class BatchParams:
    """The batch: the listed variants at other batch sizes than the study's (train.batch_size),
    with everything else as the study trains (train.optimizer and train.learning_rate unchanged),
    grids/batch/dvc.yaml. At train.batch_size the report takes the study's cells (check_batch)."""
    batch_sizes: list[int] = rule(min=1, max=4096, non_empty=True, unique=True, max_items=10)
    variants: list[str] = rule(choices=BN_PLACEMENTS, non_empty=True, unique=True)
    seeds: list[int] = rule(min=0, max=2**31 - 1, non_empty=True, unique=True, max_items=100)


@dataclass(frozen=True)
class MapCells:
    """A grid's variants and seeds, at params.yaml's model and train settings or a part's."""
    variants: list[str] = rule(choices=BN_PLACEMENTS, non_empty=True, unique=True)
    seeds: list[int] = rule(min=0, max=2**31 - 1, non_empty=True, unique=True, max_items=1000)


@dataclass(frozen=True)
class AllParams(Params):
    """params.yaml as a whole: the stages' own sections and every grid's."""
    study: StudyParams = rule()
    sweep: SweepParams = rule()
    placement: PlacementParams = rule()
    # Scale invariance, watched: each layer's weight norm recorded over training (grids/norms/dvc.yaml).
    # Its own seeds, so that no cell repeats a study or sweep cell (check_norms).
    norms: RateGridParams = rule()
    head: HeadParams = rule()
    batch: BatchParams = rule()
    # Beyond one net: one part per setting (check_map validates it; stages/grids/map.py).
    map: dict = rule()
    # Reproducibility: placement-grid cells trained again (stages/grids/rerun.py).
    rerun: MapCells = rule()


def _known(raw: object) -> object:
    """The document without the sections this module has no type for (mappings: the sections of
    grids added since, which their own code checks), so that a new grid breaks no other report."""
    if not isinstance(raw, dict):
        return raw
    typed = {field.name for field in dataclasses.fields(AllParams)}
    return {key: value for key, value in raw.items() if key in typed or not isinstance(value, dict)}


def load_all(keys, path: str | Path = "params.yaml") -> ParamsView:
    """Like load_params, with every grid's section typed and validated (a report's view)."""
    # read_all checks every rule load_params would (AllParams holds the stages' own sections), so
    # the file is read once.
    return ParamsView(read_all(path), frozenset(keys), source=Path(path))


def read_all(path: str | Path = "params.yaml") -> AllParams:
    return parse_all(read_document(path), str(path))


def parse_all(raw: object, source: str = "params.yaml") -> AllParams:
    return parse_params(_known(raw), source, schema=AllParams)




# The grids, each a folder grids/<name>/ with its dvc.yaml and a module stages/grids/<name>.py.
# A naming rule, as for the variants: a grid is a module here beside its folder grids/<name>/.
GRIDS = tuple(sorted(path.stem for path in Path(__file__).parent.glob("*.py")
                     if not path.stem.startswith("_") and path.stem != "sections"))


def check_grid(params: AllParams, grid: str, source: str = "params.yaml") -> None:
    """The rules that span sections of params.yaml for one grid (each section's own rules are
    checked as it is read): its report checks them before reading any record."""
    if grid not in GRIDS:
        raise ValueError(f"unknown grid {grid!r}; expected one of {GRIDS}")
    spanning = {"sweep": lambda: check_sweep(params.sweep, params.study, params.train, source),
                "placement": lambda: check_placement(params.placement, params.study, source),
                "norms": lambda: check_norms(params, source),
                "batch": lambda: check_batch(params.batch, params.study, params.train, source),
                "map": lambda: map_design(params.map, params.model, params.train, source),
                "rerun": lambda: check_rerun(params, source)}
    if grid in spanning:
        spanning[grid]()


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


@dataclass(frozen=True)
class MapDesign:
    """The placement map's sequential design, declared before its first cell ran (params.yaml)."""
    looks: list[int] = rule(min=3, max=1000, non_empty=True, unique=True, max_items=10)
    alpha: float = rule(min=1e-4, max=0.5)  # Two-sided, over all looks of one setting.
    equivalence_margin: float = rule(min=1e-4, max=0.1)  # After - before within +-this: equivalent.


@dataclass(frozen=True)
class MapPart:
    """One setting of the map: its cells' variants and seeds, and the model and train settings
    that differ from params.yaml's (validated by those sections' own rules)."""
    name: str
    variants: list[str]
    seeds: list[int]
    model: ModelParams
    train: TrainParams
    learning_rates: list[float] | None  # A pilot's rates; else the part's train.learning_rate.
    settings: dict  # What the part sets, as params.yaml spells it: {"activation": "relu"}.


MAP_SETTINGS = {"model": ("activation",), "train": ("epochs", "optimizer", "learning_rate", "momentum")}


def map_design(section: dict, model: ModelParams, train: TrainParams,
               source: str = "params.yaml") -> tuple[MapDesign, dict[str, MapPart]]:
    """The map's design and its parts, each checked by the rules of the sections it overrides."""
    design = parse_params({key: value for key, value in section.items() if not isinstance(value, dict)},
                          source, schema=MapDesign)
    if sorted(design.looks) != design.looks:
        raise ParamsError(f"{source}: map.looks must grow from look to look, got {design.looks}")
    parts = {}
    for name, raw in section.items():
        if not isinstance(raw, dict):
            continue
        where = f"map.{name}"
        known = {"variants", "seeds", "learning_rates", *MAP_SETTINGS["model"], *MAP_SETTINGS["train"]}
        if unknown := sorted(set(raw) - known, key=str):
            raise ParamsError(f"{source}: unknown key {where}.{unknown[0]}; a part of the map sets "
                              f"{', '.join(sorted(known))}")
        if "variants" not in raw or "seeds" not in raw:
            raise ParamsError(f"{source}: {where} needs variants and seeds")
        lists = parse_params({"variants": raw["variants"], "seeds": raw["seeds"]}, f"{source}: {where}",
                             schema=MapCells)
        settings = {key: value for key, value in raw.items() if key not in ("variants", "seeds", "learning_rates")}
        rates = raw.get("learning_rates")
        if rates is not None and (not isinstance(rates, list) or not rates or "learning_rate" in raw):
            raise ParamsError(f"{source}: {where}.learning_rates must be a non-empty list, and replaces "
                              f"learning_rate")
        for rate in rates or []:  # Each of a pilot's rates by train.learning_rate's own rule.
            with_overrides(TrainParams, "train", train, {"optimizer": settings.get("optimizer", train.optimizer),
                                                         "momentum": settings.get("momentum", train.momentum),
                                                         "learning_rate": rate})
        part_model = with_overrides(ModelParams, "model", model,
                                    {k: v for k, v in settings.items() if k in MAP_SETTINGS["model"]})
        part_train = with_overrides(TrainParams, "train", train,
                                    {k: v for k, v in settings.items() if k in MAP_SETTINGS["train"]}
                                    | ({"learning_rate": rates[0]} if rates else {}))
        parts[name] = MapPart(name, lists.variants, lists.seeds, part_model, part_train,
                              [float(rate) for rate in rates] if rates else None, settings)
    if not parts:
        raise ParamsError(f"{source}: map has no parts; each setting is a mapping under map")
    for name, part in parts.items():  # A setting's `none` must train as its before/after do.
        twin = parts.get(name.removesuffix("_none")) if name.endswith("_none") else None
        if twin is not None and part.settings != twin.settings:
            raise ParamsError(f"{source}: map.{name} sets {part.settings}, map.{twin.name} {twin.settings}; "
                              f"BN's gain pairs them, so give both the same settings")
    return design, parts


def check_rerun(params: AllParams, source: str = "params.yaml") -> None:
    """A rerun repeats a cell of the placement grid (the study's or the placement's seeds, its variants)."""
    seeds = set(params.study.seeds) | set(params.placement.seeds)
    if outside := [seed for seed in params.rerun.seeds if seed not in seeds]:
        raise ParamsError(f"{source}: rerun.seeds lists {outside[0]}, which neither study.seeds nor "
                          f"placement.seeds has; a rerun repeats one of their cells")
    if outside := [bn for bn in params.rerun.variants if bn not in params.placement.variants]:
        raise ParamsError(f"{source}: rerun.variants lists {outside[0]}, which placement.variants lacks")
