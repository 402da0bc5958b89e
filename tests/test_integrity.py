"""A committed result cannot be lost, forged or smuggled in (issue 28), with real DVC on tiny data:
records bound to their lock entry and recipe, reports that validate every record before writing,
no params value reaching a shell, refusals that delete nothing, pulls checked against dvc.lock."""

from __future__ import annotations

import hashlib
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from stages.grids.sections import read_all
from stages.trainer.errors import InputFileError

ROOT = Path(__file__).resolve().parents[1]
GRIDS = ("study", "sweep", "placement", "norms", "head", "batch", "map", "rerun")
HOSTILE = "0'; touch PWNED; echo '"


def depend_on_checks(project) -> None:
    """Every stage that trains (or prepares what trains) depends on its pipeline's check marker,
    so that DVC runs the check first: the committed dvc.yaml files say so (YAML anchors resolved)."""
    def deps_of(path: Path) -> dict[str, list[str]]:
        stages = yaml.safe_load(path.read_text())["stages"]
        return {name: [str(dep).split()[0] for dep in stage.get("deps", [])] for name, stage in stages.items()}

    main = deps_of(project.root / "dvc.yaml")
    assert all("reports/params.checked" in main[name] for name in ("normalize", "train"))
    for grid in GRIDS:
        for name, deps in deps_of(project.root / "grids" / grid / "dvc.yaml").items():
            if name not in ("check", "report"):
                assert f"grids/{grid}/params.checked" in deps, f"grids/{grid}: {name}"


def outputs(root: Path, *paths: str) -> dict[str, str]:
    """md5 of every file under `paths`: what a refusal must leave as it was."""
    found = {}
    for name in paths:
        for path in sorted([root / name] if (root / name).is_file() else (root / name).rglob("*")):
            if path.is_file():
                found[str(path.relative_to(root))] = hashlib.md5(path.read_bytes()).hexdigest()
    return found


@pytest.mark.dvc
def test_a_forged_or_copied_record_is_refused_by_the_placement_report(project):
    project.set_params(study={"variants": ["before", "after"], "seeds": [0, 1]},
                       placement={"variants": ["before", "after"], "seeds": [2, 3]})
    project.dvc("repro", "grids/placement/dvc.yaml:cell@after-2", "grids/placement/dvc.yaml:cell@after-3")
    (project.root / "reports/study/runs").mkdir(parents=True)  # The report's other input: no study cell yet.
    (project.root / "reports/rerun").mkdir(parents=True)  # And the rerun grid's summary: no rerun yet.
    (project.root / "reports/rerun/metrics.json").write_text('{"cells": [], "largest_difference": null}')
    project.dvc("repro", "-s", "grids/placement/dvc.yaml:report")
    project.commit("two placement cells and their report")
    runs = project.root / "reports/placement/runs"
    honest = json.loads((runs / "after-2.json").read_text())
    report = outputs(project.root, "reports/placement/metrics.json", "reports/placement/placement.md",
                     "reports/placement/figures")

    def refused(message: str) -> None:
        done = project.dvc("repro", "-s", "grids/placement/dvc.yaml:report", check=False)
        assert done.returncode != 0 and re.search(message, done.stderr), done.stderr
        assert outputs(project.root, *report) == report  # Nothing written before the refusal.
        project.run("git", "checkout", "--", ".")
        project.run("git", "clean", "-fdq", "reports/placement/runs")

    # Other epochs than params.yaml's (the tiny project trains 1): refused by the recipe.
    (runs / "after-2.json").write_text(json.dumps({**honest, "train": {**honest["train"], "epochs": 10}}))
    refused(r"grid_report: error: reports/placement/runs/after-2.json: train.epochs = 10, but params.yaml "
            r"gives this cell 1; `git checkout -- reports/placement/runs/after-2.json` puts back")
    # The seed written as a float: not an integer, though 2.0 == 2.
    (runs / "after-2.json").write_text(json.dumps({**honest, "seed": 2.0}))
    refused(r"after-2.json: seed = 2.0 is not an integer")
    # A copy with its seed edited, over another cell's record: every setting right, the bytes not
    # the ones DVC recorded for that cell.
    (runs / "after-3.json").write_text(json.dumps({**honest, "seed": 3}))
    refused(r"after-3.json: md5 \w+ is not the \w+ that grids/placement/dvc.lock recorded for "
            r"cell@after-3, so it was edited or copied after DVC ran that cell")
    # The same copy as a new seed: no DVC run wrote it.
    project.set_params(placement={"variants": ["before", "after"], "seeds": [2, 3, 4]})
    (runs / "after-4.json").write_text(json.dumps({**honest, "seed": 4}))
    refused(r"after-4.json: grids/placement/dvc.lock has no entry for it, so no DVC run of "
            r"grids/placement/dvc.yaml is known to have written it; run its cell through DVC")


# One record of each report, made malformed as a buggy or edited cell could write it, with its
# lock entry rewritten to match (so that only the contents are wrong).
MALFORMED = [
    ("study", "reports/study/runs/before-0.json", ("landscape", "beta_median"), "x", r"landscape.beta_median = 'x'"),
    ("sweep", "reports/sweep/runs/adam-0.01-before-0.json", ("landscape", "update_beta_median"), "x",
     r"landscape.update_beta_median = 'x' is not a finite number or null"),
    ("head", "reports/head/runs/sgd-0.1-before-0.json", ("fit_seconds",), "12", r"fit_seconds = '12'"),
    ("norms", "reports/norms/runs/adam-0.01-none-35.json", ("fit_seconds",), float("nan"), r"fit_seconds = nan"),
    ("batch", "reports/batch/runs/50-before-0.json", ("history", "val/accuracy"), [0.5],
     r"history.val/accuracy = \[0.5\] has 1 values, not the 10"),
    ("placement", "reports/placement/runs/after-5.json", ("history", "fit/accuracy"), "high",
     r"history.fit/accuracy = 'high' is not a non-empty list of numbers"),
    ("map", "reports/map/runs/momentum-after-100.json", ("fit_seconds",), float("inf"), r"fit_seconds = inf"),
    ("rerun", "reports/rerun/runs/before-5.json", ("history", "fit/loss"), "low",
     r"history.fit/loss = 'low' is not a non-empty list of numbers"),
]


@pytest.mark.parametrize("grid, name, field, value, message", MALFORMED, ids=[case[0] for case in MALFORMED])
def test_every_report_validates_all_its_records_before_it_writes(tmp_path, monkeypatch, grid, name, field, value,
                                                                  message):
    """The committed records, one of them malformed: the report refuses it in one line naming the
    file and field, and has written nothing (before: metrics.json written, then a traceback, or
    the value silently dropped)."""
    import importlib

    from stages.grids.sections import load_all

    for path in [*ROOT.glob("reports/*/runs"), *ROOT.glob("grids/*/dvc.lock")]:
        (tmp_path / path.relative_to(ROOT)).parent.mkdir(parents=True, exist_ok=True)
        (shutil.copytree if path.is_dir() else shutil.copy)(path, tmp_path / path.relative_to(ROOT))
    shutil.copy(ROOT / "params.yaml", tmp_path / "params.yaml")
    monkeypatch.chdir(tmp_path)
    record = json.loads(Path(name).read_text())
    target = record
    for key in field[:-1]:
        target = target[key]
    target[field[-1]] = value
    Path(name).write_text(json.dumps(record))
    lock = Path(f"grids/{grid}/dvc.lock")
    entries = yaml.safe_load(lock.read_text())
    for stage in entries["stages"].values():
        for out in stage.get("outs", []):
            if out["path"] == name:
                out["md5"] = hashlib.md5(Path(name).read_bytes()).hexdigest()
    lock.write_text(yaml.safe_dump(entries))
    module = importlib.import_module(f"stages.grids.{grid}")
    with pytest.raises(InputFileError, match=rf"^{re.escape(name)}: {message}"):
        module.report(load_all(module.PARAMS))
    assert sorted(path.name for path in Path("reports", grid).iterdir()) == ["runs"]


@pytest.mark.dvc
@pytest.mark.parametrize("grid", GRIDS)
def test_no_params_value_of_a_grid_runs_a_command(project, grid):
    depend_on_checks(project)
    project.set_params(study={"variants": ["before", "after", "none"], "seeds": [0, 1]})  # What placement needs.
    document = yaml.safe_load((project.root / "params.yaml").read_text())
    section = document[grid]["relu"] if grid == "map" else document[grid]
    section["seeds"] = [HOSTILE, *section["seeds"]]
    project.set_params(**{grid: document[grid]})
    # Every cell of the grid (the report would first train other grids' cells that it reads).
    done = project.dvc("repro", "--glob", f"grids/{grid}/dvc.yaml:*@*", check=False)
    assert done.returncode != 0 and not (project.root / "PWNED").exists(), done.stdout + done.stderr
    part = ".relu" if grid == "map" else ""
    # Its own grid's check names the shell; another grid's check that DVC runs first (the batch
    # report reads the study's cells) refuses the same value by type.
    assert f"check: error: params.yaml: {grid}{part}.seeds[0] = \"{HOSTILE}\" " in done.stderr, done.stderr
    assert "Running stage" not in done.stdout.split(f"grids/{grid}/dvc.yaml:check")[-1]  # No cell started.


@pytest.mark.dvc
def test_a_refused_typo_deletes_nothing_in_the_main_pipeline_and_a_grid(trained_project):
    project = trained_project  # The main pipeline trained by `dvc repro`.
    depend_on_checks(project)
    project.set_params(study={"variants": ["before"], "seeds": [0, 1]})
    project.dvc("repro", "dvc.yaml", "grids/study/dvc.yaml:cell@before-0")
    project.commit("trained")
    status = project.dvc("status", "dvc.yaml", "grids/study/dvc.yaml").stdout
    kept = outputs(project.root, "models", "reports/train", "reports/metrics.json", "data/prepared",
                   "reports/study/runs", "reports/params.checked", "grids/study/params.checked")
    done = project.dvc("exp", "run", "-S", "bn=After", check=False)
    assert done.returncode != 0
    assert ("check: error: params.yaml: bn = 'After' is not allowed; expected one of: after, before, frozen, "
            "none, rescaled; nothing was run or removed; fix params.yaml, or put back the committed one with "
            "`git checkout params.yaml` (bn: 'before' in the last commit, 'After' now)") in done.stderr, done.stderr
    assert outputs(project.root, *kept) == kept
    project.run("git", "checkout", "params.yaml")
    assert project.dvc("status", "dvc.yaml", "grids/study/dvc.yaml").stdout == status
    project.set_params(train={"epochs": 0})
    done = project.dvc("repro", "grids/study/dvc.yaml", check=False)
    assert done.returncode != 0 and "check: error: params.yaml: train.epochs = 0" in done.stderr, done.stderr
    assert outputs(project.root, *kept) == kept
    # `dvc repro -s` skips the check stage, and DVC removes the stage's outputs before its command:
    # the gate, each training stage's first command, refuses and puts back what dvc.lock records
    # (a cell's record and the main run's metrics from git, its model from DVC's cache).
    for target in ("train", "grids/study/dvc.yaml:cell@before-0"):
        done = project.dvc("repro", "-s", target, check=False)
        assert done.returncode != 0, target
        assert re.search(r"check: error: params.yaml: train.epochs = 0 .*; nothing was run; fix params.yaml, or put "
                         r"back the committed one with `git checkout params.yaml` \(train.epochs: \d+ in the last "
                         r"commit, 0 now\); DVC had removed this stage's outputs before running it; put back as "
                         r"dvc.lock records them: ", done.stderr), done.stderr
        assert outputs(project.root, *kept) == kept, target
    project.run("git", "checkout", "params.yaml")
    assert project.dvc("status", "dvc.yaml", "grids/study/dvc.yaml").stdout == status


@pytest.mark.dvc
def test_a_refusal_only_the_cell_can_make_puts_back_what_dvc_removed(project):
    """train.steps_per_execution against the data's size needs the data, which the check stage
    does not read: the cell refuses it after DVC removed its record, and puts the record back."""
    project.set_params(study={"variants": ["before", "after"], "seeds": [0, 1]},
                       placement={"variants": ["before", "after"], "seeds": [2]})
    project.dvc("repro", "grids/placement/dvc.yaml:cell@after-2")
    project.commit("a placement cell")
    kept = outputs(project.root, "reports/placement/runs")
    status = project.dvc("status", "grids/placement/dvc.yaml:cell@after-2").stdout
    project.set_params(train={"steps_per_execution": 3})  # 200 images, batch 50: 4 steps an epoch.
    done = project.dvc("repro", "grids/placement/dvc.yaml:cell@after-2", check=False)
    assert done.returncode != 0
    assert ("cell: error: params.yaml: train.steps_per_execution = 3 does not divide the 4 steps per epoch; "
            "choose one of 1, 2, 4; DVC had removed this stage's outputs before running it; put back as dvc.lock "
            "records them: reports/placement/runs/after-2.json\n") in done.stderr, done.stderr
    assert outputs(project.root, "reports/placement/runs") == kept
    project.run("git", "checkout", "params.yaml")
    assert project.dvc("status", "grids/placement/dvc.yaml:cell@after-2").stdout == status


@pytest.mark.dvc
def test_a_remote_whose_listing_was_edited_is_refused_after_pull(project, tmp_path):
    project.dvc("repro", "normalize")
    remote = tmp_path / "remote"
    project.dvc("remote", "add", "-d", "team", str(remote))
    project.dvc("remote", "modify", "team", "verify", "true")
    project.commit("prepared")
    project.dvc("push")
    assert project.run(sys.executable, str(ROOT / "tools/verify_pull.py")).returncode == 0
    # Point train.npz, in the remote's listing of data/prepared, at the stored test split.
    lock = yaml.safe_load((project.root / "dvc.lock").read_text())
    prepared = next(out for out in lock["stages"]["normalize"]["outs"] if out["path"] == "data/prepared")["md5"]
    listing_path = remote / "files" / "md5" / prepared[:2] / prepared[2:]
    entries = json.loads(listing_path.read_text())
    test = next(entry["md5"] for entry in entries if entry["relpath"] == "test.npz")
    listing_path.chmod(0o644)
    listing_path.write_text(json.dumps([{**entry, "md5": test} if entry["relpath"] == "train.npz" else entry
                                        for entry in entries]))
    clone = tmp_path / "clone"
    subprocess.run(["git", "clone", "-q", str(project.root), str(clone)], check=True)
    project.root, original = clone, project.root
    try:
        pulled = project.dvc("pull", "data/prepared", check=False)
        assert pulled.returncode == 0  # What DVC's verify lets through.
        done = project.run(sys.executable, str(ROOT / "tools/verify_pull.py"), check=False)
        # Without that command: `dvc repro train` rebuilds the data, as DVC finds the pulled listing
        # "not in cache"; where DVC does not look upstream (`-s`, or the stage run by hand), the
        # stage that reads the data checks it first and trains nothing.
        project.dvc("pull", check=False)
        status = project.dvc("status", "normalize", check=False)
        trained = project.dvc("repro", "-s", "train", check=False)
    finally:
        project.root = original
    assert "not in cache:       data/prepared" in status.stdout, status.stdout
    assert trained.returncode != 0 and not (clone / "models" / "model.keras").exists()
    assert re.search(r"train: error: data/prepared/train.npz: holds the same bytes \(md5 \w+\) as data/prepared/test.npz"
                     r".*; it is not what `normalize` wrote or what was pulled for it, so nothing was read; rebuild "
                     r"it with `dvc repro -f -s normalize`, or pull it again from a remote you trust\n",
                     trained.stdout + trained.stderr), trained.stdout + trained.stderr
    assert done.returncode == 1
    assert re.fullmatch(r"verify_pull: error: data/prepared/train.npz: holds the same bytes \(md5 \w+\) as "
                        r"data/prepared/test.npz, and data/prepared's files hash to \w+.dir, not the \w+.dir dvc.lock "
                        r"records, so the listing DVC pulled for it was altered; do not use it: .*\n", done.stderr), done.stderr


def test_the_check_names_the_first_committed_difference_in_a_list():
    from stages.check import _first_difference

    assert _first_difference({"a": {"seeds": [1, 2]}}, {"a": {"seeds": [1, "x"]}}, "") == ("a.seeds[1]", 2, "x")
    assert _first_difference({"bn": "before"}, {"bn": "before"}, "") is None


def test_the_committed_params_pass_every_check(tmp_path, monkeypatch):
    from stages.check import main

    for name in ("params.yaml",):
        shutil.copy(ROOT / name, tmp_path / name)
    monkeypatch.chdir(tmp_path)
    main([])
    for grid in GRIDS:
        main(["--grid", grid])
    assert (tmp_path / f"grids/{GRIDS[0]}/params.checked").read_text() == (
        ROOT / f"grids/{GRIDS[0]}/params.checked").read_text()
    assert read_all(tmp_path / "params.yaml").study.seeds == [0, 1, 2, 3, 4]


@pytest.mark.parametrize("damage, message", [
    (lambda root: (root / "reports/study/metrics.json").write_text('{"before": {"test_acc'),
     r"^answer: error: .*reports/study/metrics.json: is not valid JSON"),
    (lambda root: (root / "reports/study/runs/frozen-0.json").write_text("[]"),
     r"^answer: error: .*reports/study/runs/frozen-0.json: is not a JSON object"),
    (lambda root: (root / "reports/study/metrics.json").write_text("{}"),
     r"^answer: error: the answer block's reports lack 'comparisons' \(KeyError\); re-run the report stages"),
], ids=["truncated metrics", "list-shaped record", "metrics without a key"])
def test_answer_errors_are_one_line_from_anywhere(tmp_path, damage, message):
    """A copy of the project's reports and code, run from another folder: one line, no traceback."""
    root = tmp_path / "project"
    for name in ("stages", "tools", "reports", "docs"):
        shutil.copytree(ROOT / name, root / name, ignore=shutil.ignore_patterns("__pycache__"))
    for name in ("params.yaml", "README.md"):
        shutil.copy(ROOT / name, root / name)
    damage(root)
    done = subprocess.run([sys.executable, str(root / "tools/answer.py")], cwd=tmp_path, capture_output=True, text=True)
    assert done.returncode == 1 and re.search(message, done.stderr) and done.stderr.count("\n") == 1, done.stderr


def test_a_stage_refuses_a_model_or_data_that_is_not_what_dvc_lock_records(tmp_path, monkeypatch):
    """stages/trainer/inputs.py: the model `evaluate` and `report` read, and the data every training
    stage reads, against the lock entry of the stage that wrote them; nothing to compare, nothing refused."""
    from dvc_data.hashfile.hash import file_md5

    from stages.trainer.errors import InputFileError
    from stages.trainer.inputs import listing, listing_md5, md5_file, verify

    monkeypatch.chdir(tmp_path)
    (tmp_path / "models").mkdir()
    (tmp_path / "data" / "prepared").mkdir(parents=True)
    model = Path("models/model.keras")
    model.write_bytes(b"the trained model")
    for name in ("train.npz", "test.npz"):
        (Path("data/prepared") / name).write_bytes(name.encode() * 100)
    assert md5_file(model) == file_md5(str(model))  # DVC's own md5 of a file.
    verify("train", model)  # No dvc.lock: a stage run without DVC has nothing to compare with.
    lock = {"schema": "2.0", "stages": {
        "train": {"outs": [{"path": "models/model.keras", "md5": md5_file(model)}]},
        "normalize": {"outs": [{"path": "data/prepared", "md5": listing_md5(listing(Path("data/prepared")))}]}}}
    Path("dvc.lock").write_text(yaml.safe_dump(lock))
    verify("train", model)
    verify("normalize", Path("data/prepared"))
    model.write_bytes(b"another model")
    with pytest.raises(InputFileError, match=r"^models/model.keras: md5 \w+, but dvc.lock records \w+; it is not "
                                             r"what `train` wrote or what was pulled for it, so nothing was read; "
                                             r"rebuild it with `dvc repro -f -s train`"):
        verify("train", model)
    Path("data/prepared/train.npz").write_bytes(Path("data/prepared/test.npz").read_bytes())
    with pytest.raises(InputFileError, match=r"^data/prepared/train.npz: holds the same bytes .* as data/prepared/test.npz"):
        verify("normalize", Path("data/prepared"))


SHELL_ACTIVE = ["$(touch PWNED)", "`touch PWNED`", "0; touch PWNED", "0\ntouch PWNED", "0 | touch PWNED",
                "0 && touch PWNED", "x'y", 'x"y', "0 #"]
# One string field of each kind that a grid's dvc.yaml interpolates into its cells' commands.
FIELDS = [("study", ("seeds", 0)), ("study", ("variants", 0)), ("sweep", ("adam", "variants", 0)),
          ("placement", ("seeds", 0)), ("norms", ("optimizer",)), ("head", ("optimizer",)),
          ("head", ("head_input_rms",)), ("batch", ("batch_sizes", 0)), ("map", ("momentum", "optimizer")),
          ("map", ("relu", "activation")), ("rerun", ("seeds", 0))]


@pytest.mark.parametrize("value", SHELL_ACTIVE, ids=["dollar-paren", "backticks", "semicolon", "newline", "pipe",
                                                     "ampersands", "single-quote", "double-quote", "space"])
@pytest.mark.parametrize("grid, field", FIELDS, ids=[f"{grid}.{'.'.join(map(str, field))}" for grid, field in FIELDS])
def test_a_value_a_shell_acts_on_is_refused_in_every_field_a_command_gets(tmp_path, monkeypatch, capsys, grid, field,
                                                                          value):
    """The check stage's shell rule, for each kind of character and each kind of field (seeds,
    variants, optimizer, activation, head scale, batch size): one line naming the field and the
    character, and no marker written. (test_no_params_value_of_a_grid_runs_a_command runs the
    quote case through real DVC in every grid.)"""
    from stages.check import main

    document = yaml.safe_load((ROOT / "params.yaml").read_text())
    holder = document[grid]
    for key in field[:-1]:
        holder = holder[key]
    holder[field[-1]] = value
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(document))
    monkeypatch.chdir(tmp_path)
    where = grid + "".join(f"[{key}]" if isinstance(key, int) else f".{key}" for key in field)
    with pytest.raises(SystemExit) as refused:
        main(["--grid", grid])
    message = capsys.readouterr().err
    assert refused.value.code != 0 and message.count("\n") == 1, message  # One line (a newline is shown as \n).
    assert message.startswith(f"check: error: params.yaml: {where} = ") and "which a shell acts on" in message, message
    assert "nothing was run or removed" in message
    assert not (tmp_path / "grids").exists() and not (tmp_path / "PWNED").exists()


def test_a_record_whose_lock_entry_ran_another_seed_or_read_other_data_is_refused(tmp_path, monkeypatch):
    """binding.check_locked past the md5: a lock entry rewritten to name a record's bytes under
    another cell's command, and a record whose data digest is not the statistics its cell read."""
    from stages.analysis.binding import check_locked

    monkeypatch.chdir(tmp_path)
    record_path = Path("reports/placement/runs/after-3.json")
    record_path.parent.mkdir(parents=True)
    record = {"seed": 3, "data": {"data/stats.json": "a" * 32}}
    record_path.write_text(json.dumps(record))
    md5 = hashlib.md5(record_path.read_bytes()).hexdigest()

    def lock(seed: int, statistics: str) -> None:
        entry = {"cmd": ["python -m stages.check --grid placement --gate",  # As DVC writes a list.
                         f"python -m stages.cell --grid placement --bn 'after' --seed '{seed}' --no-probes"],
                 "deps": [{"path": "data/stats.json", "md5": statistics}],
                 "outs": [{"path": str(record_path), "md5": md5}]}
        Path("grids/placement").mkdir(parents=True, exist_ok=True)
        Path("grids/placement/dvc.lock").write_text(yaml.safe_dump({"schema": "2.0",
                                                                    "stages": {f"cell@after-{seed}": entry}}))

    lock(3, "a" * 32)
    check_locked(record_path, md5, record, "grids/placement/dvc.yaml")  # The pair DVC wrote.
    with pytest.raises(InputFileError, match=r"^reports/placement/runs/after-3.json: md5 0{32} is not the \w{32} "
                                             r"that grids/placement/dvc.lock recorded for cell@after-3, so it was "
                                             r"edited or copied after DVC ran that cell; "):
        check_locked(record_path, "0" * 32, record, "grids/placement/dvc.yaml")  # Its bytes, edited.
    lock(4, "a" * 32)
    with pytest.raises(InputFileError, match=r"^reports/placement/runs/after-3.json: seed = 3, but "
                                             r"grids/placement/dvc.lock's cell@after-4 ran --seed '4'; "
                                             r"`git checkout -- .* grids/placement/dvc.lock` puts back"):
        check_locked(record_path, md5, record, "grids/placement/dvc.yaml")
    lock(3, "b" * 32)
    with pytest.raises(InputFileError, match=r"^reports/placement/runs/after-3.json: data.data/stats.json = "
                                             r"'a{32}', but grids/placement/dvc.lock's cell@after-3 read b{32}; "):
        check_locked(record_path, md5, record, "grids/placement/dvc.yaml")


def test_a_record_whose_setting_has_another_type_is_refused():
    """A forged record that writes 10.0 epochs, or True for a count, for the cell's 10 or 1: JSON keeps
    the type, so the record did not come from a run with params.yaml's values."""
    from stages.analysis.binding import check_recipe

    wanted = {"model": {"dense_units": 512, "bn_freeze_after_steps": 1}, "train": {"epochs": 10, "learning_rate": 0.001}}
    record = {"schema": 2, "model": {"dense_units": 512, "bn_freeze_after_steps": 1},
              "train": {"epochs": 10, "learning_rate": 0.001}}
    check_recipe(Path("r.json"), record, wanted, "fix it")  # What a run writes.
    check_recipe(Path("r.json"), {**record, "train": {"epochs": 10, "learning_rate": 1e-3}}, wanted, "fix it")
    for section, key, value in (("train", "epochs", 10.0), ("model", "bn_freeze_after_steps", True)):
        forged = {**record, section: {**record[section], key: value}}
        with pytest.raises(InputFileError, match=rf"^r.json: {section}.{key} = {value}, but params.yaml gives this "
                                                 rf"cell {wanted[section][key]}; fix it$"):
            check_recipe(Path("r.json"), forged, wanted, "fix it")


def test_the_check_stage_refuses_a_grid_too_large_before_dvc_expands_it_into_cells(tmp_path, monkeypatch, capsys):
    """A grid of more than MAX_CELLS cells is refused by its pipeline's check (which every cell
    depends on), in one line, writing no marker; DVC's own cost of expanding such a matrix in
    `dvc status` is documented in docs/failures.md ("Very large grids")."""
    from stages.check import main

    document = yaml.safe_load((ROOT / "params.yaml").read_text())
    document["placement"]["seeds"] = list(range(5, 605))  # 2 variants x 600 seeds.
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(document))
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit) as refused:
        main(["--grid", "placement"])
    message = capsys.readouterr().err
    assert refused.value.code != 0 and message.count("\n") == 1, message
    assert message.startswith("check: error: params.yaml: the placement grid has 1,200 cells; at most 1,000"), message
    assert not (tmp_path / "grids").exists()


def test_the_grid_size_limit_is_exact():
    """MAX_CELLS cells pass, one more is refused: the one rule the check stage and a cell share."""
    from stages.trainer.errors import ParamsError
    from stages.trainer.grid import MAX_CELLS, check_size

    check_size({"variants": ["before", "after"], "seeds": list(range(MAX_CELLS // 2))}, "placement")
    check_size({"variants": ["before"], "seeds": list(range(MAX_CELLS))}, "placement")
    with pytest.raises(ParamsError, match=rf"the placement grid has {MAX_CELLS + 1:,} cells; at most {MAX_CELLS:,}"):
        check_size({"variants": ["before"], "seeds": list(range(MAX_CELLS + 1))}, "placement")


def test_normalize_refuses_an_archive_that_is_not_what_fetch_wrote(tmp_path, monkeypatch, capsys, tiny_archive):
    """A pulled or edited archive under data/raw/ whose md5 is not the one dvc.lock records for
    `fetch`'s output: `normalize` refuses it before reading it, and writes nothing."""
    from stages.normalize import main
    from stages.trainer.inputs import md5_file

    archive, _ = tiny_archive
    monkeypatch.chdir(tmp_path)
    Path("data/raw").mkdir(parents=True)
    raw = Path("data/raw/cifar-10-binary.tar.gz")
    shutil.copy(archive, raw)
    shutil.copy(ROOT / "params.yaml", "params.yaml")
    lock = {"schema": "2.0", "stages": {"fetch": {"outs": [{"path": str(raw), "md5": md5_file(raw)}]}}}
    Path("dvc.lock").write_text(yaml.safe_dump(lock))
    raw.write_bytes(raw.read_bytes() + b"appended")
    with pytest.raises(SystemExit):
        main([])
    message = capsys.readouterr().err
    assert message.startswith("normalize: error: data/raw/cifar-10-binary.tar.gz: md5 ") and \
        "it is not what `fetch` wrote or what was pulled for it, so nothing was read" in message, message
    assert not Path("data/prepared").exists() and not Path("data/stats.json").exists()


def test_a_refusal_puts_back_only_what_dvc_lock_records(tmp_path, monkeypatch):
    """recovery.restore_removed_outputs: a removed output comes back from the last commit only if
    its bytes are what dvc.lock records; a committed copy that the lock does not describe (the lock
    was re-run since) is named as not put back, and nothing is written for it."""
    from stages.trainer.recovery import restore_removed_outputs

    def git(*args):
        subprocess.run(["git", *args], cwd=tmp_path, check=True, capture_output=True)

    record, stale = tmp_path / "reports/g/runs/a.json", tmp_path / "reports/g/runs/b.json"
    record.parent.mkdir(parents=True)
    record.write_text('{"seed": 1}\n')
    stale.write_text('{"seed": 2}\n')
    lock = {"stages": {"cell@a": {"cmd": "x", "outs": [{"path": "reports/g/runs/a.json",
                                                        "md5": hashlib.md5(record.read_bytes()).hexdigest()}]},
                       "cell@b": {"cmd": "x", "outs": [{"path": "reports/g/runs/b.json", "md5": "0" * 32}]}}}
    (tmp_path / "grids/g").mkdir(parents=True)
    (tmp_path / "grids/g/dvc.lock").write_text(yaml.safe_dump(lock))
    git("init", "-q")
    git("add", ".")
    git("-c", "user.name=t", "-c", "user.email=t@t", "commit", "-q", "-m", "records")
    record.unlink()
    stale.unlink()
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("DVC_ROOT", str(tmp_path))
    assert restore_removed_outputs("grids/g/dvc.yaml:cell@a") == (
        "; DVC had removed this stage's outputs before running it; put back as dvc.lock records them: "
        "reports/g/runs/a.json")
    assert record.read_text() == '{"seed": 1}\n'
    assert restore_removed_outputs("grids/g/dvc.yaml:cell@b") == (
        "; not put back: reports/g/runs/b.json (`dvc checkout grids/g/dvc.yaml:cell@b` or `git checkout -- <path>`)")
    assert not stale.exists()
    assert restore_removed_outputs("grids/g/dvc.yaml:cell@a") == ""  # Nothing missing: nothing to say.
