"""stages.trainer.params: the committed params.yaml loads, and every kind of mistake in it fails with one
exact line naming the key, the bad value and what is allowed.
"""

from __future__ import annotations

import copy
import dataclasses
import math
import time
from pathlib import Path

import pytest
import yaml

from stages.grids.sections import parse_all as parse_params
from stages.grids.sections import read_all as read_params
from stages.trainer.params import ParamsError, UndeclaredParamError, load_params, train_with_overrides

PARAMS_FILE = Path(__file__).resolve().parents[1] / "params.yaml"
COMMITTED = yaml.safe_load(PARAMS_FILE.read_text())
DELETE = object()  # A mutation value meaning "remove this key".


def mutated(key: str, value: object) -> dict:
    """The committed params with `key` (dotted, e.g. "train.epochs") set to `value`, or deleted."""
    raw = copy.deepcopy(COMMITTED)
    *sections, last = key.split(".")
    target = raw
    for section in sections:
        target = target[section]
    if value is DELETE:
        del target[last]
    else:
        target[last] = value
    return raw


def error_for(raw: object) -> str:
    with pytest.raises(ParamsError) as caught:
        parse_params(raw)
    return str(caught.value)


# --- the committed file -------------------------------------------------------------------------

def test_committed_params_load():
    """params.yaml as committed is valid, and values arrive with the declared types."""
    params = read_params(PARAMS_FILE)
    assert params.bn in ("before", "after", "none")
    assert params.data.md5 == COMMITTED["data"]["md5"]
    assert params.normalize.records_per_file == 10_000
    assert params.model.filters == COMMITTED["model"]["filters"]
    assert all(type(size) is float for size in params.landscape.step_sizes)  # [0.5, 1, ...]
    assert type(params.data.timeout_seconds) is float
    assert type(params.train.deterministic) is bool
    assert params.study.variants == COMMITTED["study"]["variants"]


def test_the_default_precision_is_float32_on_every_machine():
    assert read_params(PARAMS_FILE).train.precision == "float32"
    with pytest.raises(ParamsError, match="train.precision = 'auto' is not allowed"):
        parse_params({**copy.deepcopy(COMMITTED), "train": {**COMMITTED["train"], "precision": "auto"}})


def test_a_stage_sees_only_the_params_it_declares():
    params = load_params(["seed", "landscape.every_steps"], PARAMS_FILE)
    assert params.seed == COMMITTED["seed"]
    assert params.landscape.every_steps == COMMITTED["landscape"]["every_steps"]
    with pytest.raises(UndeclaredParamError, match="reads params 'landscape.enabled' but declares "
                                                   "only landscape.every_steps, seed"):
        params.landscape.enabled
    with pytest.raises(UndeclaredParamError, match="reads params 'train'"):
        params.train


def test_integers_are_accepted_where_a_number_is_expected():
    params = parse_params(mutated("train.learning_rate", 1))
    assert params.train.learning_rate == 1.0 and type(params.train.learning_rate) is float


# --- one exact message per kind of mistake ------------------------------------------------------

MISTAKES = {
    "string for int": ("train.epochs", "ten",
                       "train.epochs = 'ten' is not allowed; expected an integer"),
    "float for int": ("train.batch_size", 2.5,
                      "train.batch_size = 2.5 is not allowed; expected an integer"),
    "bool for int": ("train.epochs", True,
                     "train.epochs = True is not allowed; expected an integer"),
    "bool for float": ("model.dropout_rate", False,
                       "model.dropout_rate = False is not allowed; expected a number"),
    "string for float": ("train.learning_rate", "1e-3",
                         "train.learning_rate = '1e-3' is not allowed; expected a number"),
    "int for bool": ("train.deterministic", 1,
                     "train.deterministic = 1 is not allowed; expected true or false"),
    "int for string": ("data.url", 42, "data.url = 42 is not allowed; expected a string"),
    "unknown precision": ("train.precision", "float16",
                          "train.precision = 'float16' is not allowed; expected one of: float32, "
                          "mixed_bfloat16"),
    "unknown device": ("train.device", "tpu",
                       "train.device = 'tpu' is not allowed; expected one of: auto, gpu, cpu"),
    "zero steps per execution": ("train.steps_per_execution", 0,
                                 "train.steps_per_execution = 0 is not allowed; expected a number >= 1"),
    "below min": ("train.epochs", 0, "train.epochs = 0 is not allowed; expected a number >= 1"),
    "negative seed": ("seed", -1, "seed = -1 is not allowed; expected a number >= 0"),
    "above max": ("data.retries", 11, "data.retries = 11 is not allowed; expected a number <= 10"),
    "float above max": ("model.dropout_rate", 0.99,
                        "model.dropout_rate = 0.99 is not allowed; expected a number <= 0.95"),
    "seed above 2**31-1": ("seed", 2**31,
                           "seed = 2147483648 is not allowed; expected a number <= 2147483647"),
    "bn not a choice": ("bn", "middle",
                        "bn = 'middle' is not allowed; expected one of: after, before, frozen, none, rescaled"),
    "bn is case sensitive": ("bn", "Before",
                             "bn = 'Before' is not allowed; expected one of: after, before, frozen, none, rescaled"),
    "mode not a choice": ("normalize.mode", "local",
                          "normalize.mode = 'local' is not allowed; expected one of: global, "
                          "per_channel"),
    "md5 uppercase": ("data.md5", "C32A1D4AB5D03F1284B67883E8D87530",
                      "data.md5 = 'C32A1D4AB5D03F1284B67883E8D87530' is not allowed; "
                      "expected 32 lowercase hex digits"),
    "md5 too short": ("data.md5", "c32a1d4a",
                      "data.md5 = 'c32a1d4a' is not allowed; expected 32 lowercase hex digits"),
    "md5 with a newline": ("data.md5", "c32a1d4ab5d03f1284b67883e8d87530\n",
                           "data.md5 = 'c32a1d4ab5d03f1284b67883e8d87530\\n' is not allowed; "
                           "expected 32 lowercase hex digits"),
    "empty url": ("data.url", "  ", "data.url = '  ' is not allowed; expected a non-empty string"),
    "unknown top-level key": ("sead", 0,
                              "unknown key sead; allowed keys in the top level: seed, bn, data, "
                              "normalize, model, train, landscape, study, sweep, placement, norms, head, batch, "
                              "map, rerun"),
    "unknown nested key": ("train.epoch", 10,
                           "unknown key train.epoch; allowed keys in train: epochs, batch_size, "
                           "optimizer, learning_rate, momentum, deterministic, precision, device, tf32, "
                           "jit_compile, steps_per_execution"),
    "missing top-level key": ("bn", DELETE, "missing key bn"),
    "missing nested key": ("model.kernel_size", DELETE, "missing key model.kernel_size"),
    "missing section": ("landscape", DELETE, "missing key landscape"),
    "section not a mapping": ("train", 5, "train must be a mapping, got 5"),
    "section left empty": ("study", None, "study must be a mapping, got None"),
    "empty list": ("model.filters", [],
                   "model.filters = [] is not allowed; expected a non-empty list of int"),
    "scalar for list": ("model.filters", 16,
                        "model.filters = 16 is not allowed; expected a list of int"),
    "repeated seed": ("study.seeds", [0, 1, 1],
                      "study.seeds = [0, 1, 1] is not allowed; expected a list without repeated "
                      "entries"),
    "repeated variant": ("study.variants", ["before", "before"],
                         "study.variants = ['before', 'before'] is not allowed; expected a list "
                         "without repeated entries"),
    "list item of wrong type": ("model.filters", [16, "32", 64],
                                "model.filters[1] = '32' is not allowed; expected an integer"),
    "list item out of range": ("landscape.step_sizes", [0.5, 0.0],
                               "landscape.step_sizes[1] = 0.0 is not allowed; expected a number "
                               ">= 1e-06"),
    "list item not a choice": ("study.variants", ["before", "middle"],
                               "study.variants[1] = 'middle' is not allowed; expected one of: "
                               "after, before, frozen, none, rescaled"),
    "list of lists": ("study.seeds", [[0], [1]],
                      "study.seeds[0] = [0] is not allowed; expected an integer"),
    "nan learning rate": ("train.learning_rate", math.nan,
                          "train.learning_rate = nan is not allowed; expected a finite number"),
    "infinite timeout": ("data.timeout_seconds", math.inf,
                         "data.timeout_seconds = inf is not allowed; expected a finite number"),
}


@pytest.mark.parametrize("key, value, message", MISTAKES.values(), ids=MISTAKES.keys())
def test_mistake_gives_one_exact_message(key, value, message):
    assert error_for(mutated(key, value)) == f"params.yaml: {message}"


def test_several_unknown_keys_of_mixed_types_name_one_of_them():
    """YAML allows non-string keys (`1: x`); the message must still be a ParamsError."""
    raw = copy.deepcopy(COMMITTED)
    raw[1] = "x"
    raw["zz"] = "y"
    assert error_for(raw).startswith("params.yaml: unknown key ")


@pytest.mark.parametrize("document", [None, [1, 2], "seed: 0"])
def test_top_level_must_be_a_mapping(document):
    assert error_for(document) == f"params.yaml: the top level must be a mapping, got {document!r}"


# --- files --------------------------------------------------------------------------------------

def test_missing_file(tmp_path):
    path = tmp_path / "params.yaml"
    with pytest.raises(ParamsError) as caught:
        read_params(path)
    assert str(caught.value) == (f"{path}: file not found; run from the project root, "
                                 "where params.yaml lives")


@pytest.mark.parametrize("content, expected", [
    (yaml.safe_dump(mutated("train.epochs", "ten")),
     "train.epochs = 'ten' is not allowed; expected an integer"),
    ("# nothing here\n", "the top level must be a mapping, got None"),
    # A YAML syntax error is one line naming the file and the place, not a yaml traceback.
    ("seed: 0\nmodel:\n  filters: [16, 32\n",
     "not valid YAML at line 4, column 1 (expected ',' or ']', but got '<stream end>')"),
])
def test_file_errors_name_the_file(tmp_path, content, expected):
    path = tmp_path / "params.yaml"
    path.write_text(content)
    with pytest.raises(ParamsError) as caught:
        read_params(path)
    assert str(caught.value) == f"{path}: {expected}"


# --- read exactly as DVC reads it, with bounds on what sizes memory and time ---------------------

def write_params(tmp_path, text: str):
    path = tmp_path / "params.yaml"
    path.write_text(text)
    return path


def committed_text_with(old: str, new: str) -> str:
    text = PARAMS_FILE.read_text()
    assert text.count(old) == 1, old
    return text.replace(old, new)


def test_values_are_what_dvc_reads(tmp_path):
    """DVC's own params parser and ours agree on YAML 1.2 spellings PyYAML (1.1) reads otherwise."""
    from dvc.utils.serialize import parse_yaml

    from stages.trainer.params import read_yaml

    text = committed_text_with("learning_rate: 0.001", "learning_rate: 1e-3")
    text = text.replace("epochs: 10", "epochs: 1.0").replace("every_steps: 50", "every_steps: 5e1")
    path = write_params(tmp_path, text)
    assert read_yaml(path) == parse_yaml(text, str(path))
    params = read_params(path)
    assert params.train.learning_rate == 0.001
    assert params.train.epochs == 1 and type(params.train.epochs) is int
    assert params.landscape.every_steps == 50 and type(params.landscape.every_steps) is int


def test_duplicate_key_is_refused_as_dvc_refuses_it(tmp_path):
    path = write_params(tmp_path, committed_text_with("seed: 0\n", "seed: 0\nseed: 1\n"))
    with pytest.raises(ParamsError) as caught:
        read_params(path)
    line = PARAMS_FILE.read_text().splitlines().index("seed: 0") + 2  # The repeated key's line.
    assert str(caught.value) == (f"{path}: not valid YAML at line {line}, column 1 (found duplicate "
                                 'key "seed" with value "1" (original value: "0"))')


BOUNDS = {
    "epochs": ("train.epochs", 100_000_000, "a number <= 1000"),
    "batch size": ("train.batch_size", 50_001, "a number <= 4096"),
    "dense units": ("model.dense_units", 1_000_000, "a number <= 8192"),
    "filters": ("model.filters", [16, 4096], None),
    "number of blocks": ("model.filters", [16] * 6, "a list of at most 5 entries"),
    "probe interval": ("landscape.every_steps", 10**9, "a number <= 100000"),
    "probe sizes": ("landscape.step_sizes", [1.0] * 17, "a list of at most 16 entries"),
    "study seeds": ("study.seeds", list(range(101)), "a list of at most 100 entries"),
    "timeout": ("data.timeout_seconds", 1e9, "a number <= 3600"),
}


@pytest.mark.parametrize("key, value, allowed", BOUNDS.values(), ids=BOUNDS.keys())
def test_sizes_of_memory_and_time_are_bounded(key, value, allowed):
    message = error_for(mutated(key, value))
    if allowed is None:  # A list item out of range is named by its index.
        assert message == f"params.yaml: {key}[1] = 4096 is not allowed; expected a number <= 1024"
    else:
        assert message.startswith(f"params.yaml: {key} = ") and message.endswith(f"; expected {allowed}")
        assert len(message) < 300


def test_whole_floats_only_stand_in_for_integers():
    assert error_for(mutated("train.epochs", 1.5)) == (
        "params.yaml: train.epochs = 1.5 is not allowed; expected an integer")
    assert error_for(mutated("train.epochs", math.inf)) == (
        "params.yaml: train.epochs = inf is not allowed; expected an integer")


def test_a_huge_value_is_quoted_short(tmp_path):
    path = write_params(tmp_path, committed_text_with("bn: before", "bn: " + "x" * 100_000))
    with pytest.raises(ParamsError) as caught:
        read_params(path)
    assert str(caught.value).startswith(f"{path}: bn = 'xxx") and len(str(caught.value)) < 400


def test_alias_bomb_is_quoted_in_bounded_time(tmp_path):
    """YAML aliases share one object, but repr() would expand them: 92 entries of 9**9 leaves each.
    The 101-entry list is refused (at most 100), and quoting it takes no time and little space."""
    chain = ["&a0 [x, x, x, x, x, x, x, x, x]"]
    chain += [f"&a{i} [{', '.join([f'*a{i - 1}'] * 9)}]" for i in range(1, 10)]
    seeds = "[" + ", ".join(chain + ["*a9"] * 91) + "]"
    path = write_params(tmp_path, committed_text_with("  seeds:\n  - 0\n  - 1\n  - 2\n  - 3\n  - 4\nsweep:",
                                                        f"  seeds: {seeds}\nsweep:"))
    start = time.process_time()  # CPU seconds: other jobs on the machine do not add to them.
    with pytest.raises(ParamsError) as caught:
        read_params(path)
    assert time.process_time() - start < 2
    message = str(caught.value)
    assert message.startswith(f"{path}: study.seeds = [['x', 'x', ")
    assert message.endswith("is not allowed; expected a list of at most 100 entries")
    assert len(message) < 500


@pytest.mark.parametrize("content, problem", [
    (b"seed: \xff\xfe\n", "not UTF-8 text; params.yaml must be a YAML text file"),
    (b"seed: " + b"9" * 5000 + b"\n", "not a usable YAML document (Exceeds the limit (4300 digits) "),
])
def test_unreadable_documents_are_one_line(tmp_path, content, problem):
    path = tmp_path / "params.yaml"
    path.write_bytes(content)
    with pytest.raises(ParamsError) as caught:
        read_params(path)
    assert str(caught.value).startswith(f"{path}: {problem}")


def test_oversized_file_is_refused_unread(tmp_path):
    path = write_params(tmp_path, "# " + "x" * (1 << 20) + "\n")
    with pytest.raises(ParamsError) as caught:
        read_params(path)
    assert str(caught.value) == (f"{path}: 1,048,579 bytes is too large for a params file "
                                 "(at most 1,048,576)")


def test_a_study_needs_two_seeds():
    """compare's Welch test needs two seeds per variant: refused up front, not in a traceback."""
    assert error_for(mutated("study.seeds", [0])) == (
        "params.yaml: study.seeds = [0] is not allowed; expected a list of at least 2 entries")


def test_command_line_overrides_are_checked_like_params():
    """The sweep's cells take optimizer and learning rate from the command line, same rules."""
    train = read_params(PARAMS_FILE).train
    assert train_with_overrides(train, {"optimizer": "sgd", "learning_rate": 0.3}) == \
        dataclasses.replace(train, optimizer="sgd", learning_rate=0.3)
    with pytest.raises(ParamsError, match=r"^the command line: train.learning_rate = 20.0 is not "
                                          r"allowed; expected a number <= 10$"):
        train_with_overrides(train, {"learning_rate": 20.0})
