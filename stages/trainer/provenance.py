"""What a record says about where its numbers came from, beyond params and seed (record schema 2).

- `code`: a digest of the package stages/trainer (everything that can change a number), of the
  variant's module and of the stage's entry module: the code version, one definition for every
  record. Two records with equal digests ran the same code, whatever git said at the time.
- `git`: the commit the work tree was at, and whether the files behind `code` differed from it.
  params.yaml is not part of this: the record holds the params it used, and `dvc exp run -S`
  edits params.yaml on every run.
- `data`: the md5 of each prepared input file (DVC's own hash of a file, as dvc.lock records it).
- `numerics_fingerprint` (in `environment`): the exact bits of a small fixed computation on this
  machine and software: the loss and gradient norm of the `before` net of the record's model
  settings (dropout off, no head scale) at fixed weights on a fixed batch, whatever variant the
  record trained, so that any two records of one model setting compare. Records whose
  fingerprints differ ran on different float32 numerics (kernels, summation orders), so their
  results may differ by a few tenths of a point on identical params, seed and code. Computed
  after training, so it draws nothing from the cell's random streams.
"""

from __future__ import annotations

import dataclasses
import hashlib
import struct
import subprocess
from pathlib import Path

import numpy as np

from stages.trainer import paths

SCHEMA = 2  # Records without a "schema" key are schema 1: no code, git, data or numerics fields.
PACKAGE = Path(__file__).resolve().parent
ROOT = PACKAGE.parents[1]
FINGERPRINT_BATCH = 32


def code_files(bn: str, entry: str) -> list[Path]:
    """The files whose bytes decide a training run's numbers: the package, the variant, the entry."""
    package = sorted(path for path in PACKAGE.rglob("*.py") if "__pycache__" not in path.parts)
    return [*package, ROOT / "stages" / "variants" / f"{bn}.py", ROOT / "stages" / f"{entry}.py"]


def digest(files: list[Path]) -> str:
    """sha256 over each file's path (relative to the project) and bytes, in order."""
    hasher = hashlib.sha256()
    for path in files:
        hasher.update(str(path.relative_to(ROOT)).encode() + b"\0" + path.read_bytes() + b"\0")
    return hasher.hexdigest()


def code(bn: str, entry: str) -> dict:
    files = code_files(bn, entry)
    return {"trainer": digest(files[:-2]), "variant": digest(files[-2:-1]), "entry": digest(files[-1:])}


def git_state(files: list[Path], root: Path = ROOT) -> dict:
    """The commit, and whether `files` differ from it (uncommitted edits ran); unknown outside git."""
    def git(*args: str) -> str:
        return subprocess.run(["git", *args], cwd=root, capture_output=True, text=True, timeout=30,
                              check=True).stdout.strip()
    try:
        commit = git("rev-parse", "HEAD")
        changed = git("status", "--porcelain", "--", *(str(path.relative_to(root)) for path in files))
    except (OSError, subprocess.SubprocessError):
        return {"commit": "unknown", "code_differs": None}
    return {"commit": commit, "code_differs": bool(changed)}


def data() -> dict:
    """md5 of each prepared input, as DVC hashes a file."""
    from stages.trainer.inputs import md5_file

    return {str(path): md5_file(path) for path in (paths.TRAIN_SPLIT, paths.TEST_SPLIT, paths.STATISTICS)}


def numerics_fingerprint(model_params, statistics: dict, precision: str) -> str:
    """The float32 bits of the loss and of the gradient's global norm of the `before` net of
    `model_params` (dropout off, so no random mask; no head scale), its trainable weights drawn
    from a fixed NumPy generator, on a fixed batch of pixels, BN on batch statistics: hex
    'loss-norm'."""
    import keras

    from stages.trainer import backend
    from stages.trainer.landscape import global_norm
    from stages.trainer.model import build_model

    fixed = dataclasses.replace(model_params, dropout_rate=0.0, head_input_rms=0.0)
    model = build_model(fixed, "before", statistics, precision)
    model.compile(loss=keras.losses.SparseCategoricalCrossentropy())
    generator = np.random.default_rng(20261206)
    for variable in model.trainable_variables:
        variable.assign(generator.uniform(-0.1, 0.1, size=variable.shape).astype(variable.dtype))
    images = generator.integers(0, 256, size=(FINGERPRINT_BATCH, 32, 32, 3), dtype=np.uint8)
    labels = np.arange(FINGERPRINT_BATCH, dtype=np.int32) % 10
    non_trainable = [variable.value for variable in model.non_trainable_variables]
    loss, gradient = backend.loss_and_gradient(model, non_trainable, images, labels)(
        [variable.value for variable in model.trainable_variables])
    values = [float(keras.ops.convert_to_numpy(value)) for value in (loss, global_norm(gradient))]
    return "-".join(struct.pack(">f", value).hex() for value in values)
