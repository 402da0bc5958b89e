"""Read back what earlier stages wrote (JSON records and metrics, the saved model), with a one-line
InputFileError for a missing or corrupt file.
"""

from __future__ import annotations

import hashlib
import json
import zipfile
import zlib
from pathlib import Path

from stages.trainer.errors import InputFileError, shorten

MAX_JSON_BYTES = 16 << 20  # Our records are kilobytes; this bounds what a foreign file can cost.
MODEL_MEMBERS = ("metadata.json", "config.json", "model.weights.h5")  # What Keras 3 writes.
MAX_MODEL_BYTES = 4 << 30  # Uncompressed: the largest net params.yaml allows is under 1 GB.

def read_json(path: Path, stage: str) -> dict:
    """A JSON object that `stage` wrote; InputFileError if it is missing, too large or not JSON."""
    return read_json_and_md5(path, stage)[0]


def read_json_and_md5(path: Path, stage: str) -> tuple[dict, str]:
    """read_json, and the md5 of the very bytes it parsed (what dvc.lock records of an output)."""
    path = Path(path)
    try:
        size = path.stat().st_size
        if size <= MAX_JSON_BYTES:
            content = path.read_bytes()
            data = json.loads(content.decode("utf-8"))
    except FileNotFoundError:
        raise _broken(path, stage, "missing") from None
    except ValueError as error:  # Not JSON (truncated, edited), or not UTF-8.
        raise _broken(path, stage, f"is not valid JSON ({shorten(str(error))})") from None
    if size > MAX_JSON_BYTES:
        raise _broken(path, stage, f"{size:,} bytes is far more than it should be")
    if not isinstance(data, dict):
        raise _broken(path, stage, "is not a JSON object")
    return data, hashlib.md5(content).hexdigest()


def fit_seconds(run: dict) -> float:
    """A run's fit time: its epochs' own wall time (training steps, per-step callbacks such as the
    landscape probes, validation), without model.fit's set-up and per-epoch logging around them
    (`total_seconds`). Records from before `fit_seconds` was kept have the per-epoch times, whose
    sum it is."""
    return run["fit_seconds"] if "fit_seconds" in run else round(sum(run["history"]["epoch_seconds"]), 3)


def check_model_file(path: Path) -> None:
    """Refuse a saved model that is missing, truncated or not a .keras archive, before Keras sees it.

    Keras reports all of these as "File not found"; what passes here and still fails inside Keras
    is not a damaged file, so that keeps its traceback.
    """
    path = Path(path)
    try:
        with zipfile.ZipFile(path) as archive:
            infos = {info.filename: info for info in archive.infolist()}
            missing = [name for name in MODEL_MEMBERS if name not in infos]
            if missing:
                raise _broken(path, "train", f"has no {missing[0]}, so it is not a Keras model file")
            if sum(info.file_size for info in infos.values()) > MAX_MODEL_BYTES:
                raise _broken(path, "train", "unpacks to more than any model of this project")
            damaged = archive.testzip()  # Reads every member and checks its CRC-32.
            if damaged is not None:
                raise _broken(path, "train", f"member {damaged} is corrupt (CRC mismatch)")
    except FileNotFoundError:
        raise _broken(path, "train", "missing") from None
    except (zipfile.BadZipFile, EOFError, zlib.error, OSError) as error:
        raise _broken(path, "train",
                      f"is truncated or not a .keras file ({shorten(str(error))})") from None


def _broken(path: Path, stage: str, problem: str) -> InputFileError:
    return InputFileError(f"{path}: {problem}; re-run the `{stage}` stage that writes it (`dvc repro`)")
