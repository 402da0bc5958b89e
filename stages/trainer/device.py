"""Which device trains, with which numerics, and the record of both that goes with every result.

`train.device` says what the run may use: `gpu` fails at once, naming the reason and the fix,
when the backend registers no GPU (TensorFlow would otherwise warn once and train on the CPU);
`auto` takes a GPU when there is one and says loudly when it falls back to the CPU; `cpu` hides
the GPUs. Every GPU's memory grows on demand (stages/trainer/__init__.py), so several runs can share one.
`train.tf32` decides
whether float32 convolutions and matrix products may use TF32 on GPUs that have it (Ampere and
later: TensorFlow and JAX default to it there, so "float32" on such a GPU is not the CPU's float32).
"""

from __future__ import annotations

import datetime
import os
import platform
import subprocess

import keras
import numpy as np

from stages.trainer import backend
from stages.trainer.errors import BnlabError

TF32_NOT_APPLICABLE = "not applicable"
# TF32 arrived with compute capability 8.0 (Ampere).
TF32_MIN_COMPUTE_CAPABILITY = (8, 0)
INSTALL_HINTS = {"tensorflow": "pip install -e '.[cuda]'",
                 "jax": "pip install 'jax[cuda13]' (or the jax[cudaNN] that matches your driver)",
                 "torch": "pip install torch built for CUDA"}


class DeviceError(BnlabError):
    """train.device asks for a device that this machine or this installation cannot give."""


def configure_device(setting: str, tf32: bool) -> str | None:
    """Pick the device for `setting` (auto | gpu | cpu) and set TF32; call before building a model.

    Returns why `auto` fell back to the CPU (None when it did not): a line for the run record.
    """
    if setting == "cpu":
        _hide_gpus()
    gpus = gpu_names()
    fallback = None
    if not gpus and setting != "cpu":
        reason = (f"{backend.name()} registers no GPU ({_no_gpu_reason()}); to train on a GPU: "
                  f"{INSTALL_HINTS.get(backend.name(), 'install the GPU build of the backend')}, "
                  "and check that `nvidia-smi` lists the GPU")
        if setting == "gpu":
            raise DeviceError(f"train.device = gpu but {reason}; or set train.device: auto or cpu")
        fallback = f"train.device = auto fell back to the CPU: {reason}"
        # One short line in every run's log; the reason and the fix are in the run record
        # (`device_fallback`) and docs/pipeline.md, not repeated by every cell.
        print(f"train: no GPU ({backend.name()}), training on the CPU; GPU setup: docs/pipeline.md#gpus-and-keras-backends", flush=True)
    _set_tf32(tf32)
    return fallback


def gpu_names() -> list[str]:
    """The GPUs the backend will use, by name ([] when it trains on the CPU)."""
    if backend.name() == "tensorflow":
        import tensorflow as tf

        return [tf.config.experimental.get_device_details(gpu).get("device_name", gpu.name)
                for gpu in tf.config.get_visible_devices("GPU")]
    if backend.name() == "jax":
        import jax

        return [device.device_kind for device in jax.devices() if device.platform == "gpu"]
    if backend.name() == "torch":
        import torch

        from keras.src.backend.torch.core import get_device

        if get_device().startswith("cpu"):
            return []
        return [torch.cuda.get_device_name(index) for index in range(torch.cuda.device_count())]
    return []


def _hide_gpus() -> None:
    if backend.name() == "tensorflow":
        import tensorflow as tf

        tf.config.set_visible_devices([], "GPU")
    elif backend.name() == "jax":
        import jax

        jax.config.update("jax_platforms", "cpu")  # Only before JAX starts its devices.
    elif backend.name() == "torch":
        from keras.src.backend.common import global_state

        # What keras.device("cpu") sets, for the whole process (Keras chose CUDA at import).
        global_state.set_global_attribute("torch_device", "cpu")


def _no_gpu_reason() -> str:
    if backend.name() == "tensorflow":
        import tensorflow as tf

        if not tf.test.is_built_with_cuda():
            return "this TensorFlow is built without CUDA"
        return "built with CUDA, but no CUDA driver or pip CUDA libraries were found"
    return "no CUDA device found"


def _set_tf32(enabled: bool) -> None:
    if backend.name() == "tensorflow":
        import tensorflow as tf

        tf.config.experimental.enable_tensor_float_32_execution(enabled)
    elif backend.name() == "jax":
        import jax

        # "highest" is true float32; the default lets XLA use TF32 on GPUs that have it.
        jax.config.update("jax_default_matmul_precision", None if enabled else "highest")
    elif backend.name() == "torch":
        import torch

        torch.backends.cuda.matmul.allow_tf32 = enabled
        torch.backends.cudnn.allow_tf32 = enabled


def tf32_state() -> str:
    """"on" or "off" where the GPU has TF32, else "not applicable" (CPUs and pre-Ampere GPUs)."""
    capability = _compute_capability()
    if capability is None or capability < TF32_MIN_COMPUTE_CAPABILITY:
        return TF32_NOT_APPLICABLE
    if backend.name() == "tensorflow":
        import tensorflow as tf

        enabled = tf.config.experimental.tensor_float_32_execution_enabled()
    elif backend.name() == "jax":
        import jax

        enabled = jax.config.jax_default_matmul_precision != "highest"
    else:
        import torch

        enabled = torch.backends.cudnn.allow_tf32
    return "on" if enabled else "off"


def _compute_capability() -> tuple[int, int] | None:
    if not gpu_names():
        return None
    if backend.name() == "tensorflow":
        import tensorflow as tf

        details = tf.config.experimental.get_device_details(tf.config.get_visible_devices("GPU")[0])
        return tuple(details.get("compute_capability", (0, 0)))
    if backend.name() == "jax":
        import jax

        gpu = next(device for device in jax.devices() if device.platform == "gpu")
        return tuple(int(part) for part in str(gpu.compute_capability).split("."))
    import torch

    return tuple(torch.cuda.get_device_capability(0))


def device_description() -> str:
    gpus = gpu_names()
    if gpus:
        return f"GPU: {gpus[0]} (x{len(gpus)})"
    return f"CPU: {_cpu_model()} ({os.cpu_count()} cores)"


def _cpu_model() -> str:
    return _cpuinfo("model name") or platform.processor() or "unknown"


def _cpuinfo(field: str) -> str:
    """A field of the first processor in /proc/cpuinfo ('' where there is none, as on macOS)."""
    try:
        with open("/proc/cpuinfo") as handle:
            for line in handle:
                if line.split(":", 1)[0].strip() == field:
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return ""


def environment(precision: str) -> dict:
    """What the numbers depend on besides params and seed: recorded with every result."""
    return {
        "backend": backend.name(),
        "precision": precision,
        backend.name(): backend.version(),
        "keras": keras.__version__,
        "numpy": np.__version__,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "device": device_description(),
        "tf32": tf32_state(),
        "onednn": onednn_enabled(),
        **provenance(),
    }


# The instruction sets that decide which CPU kernels oneDNN and XLA pick, and so the float32
# summation orders: runs on machines that differ here may differ in the last bits.
CPU_FEATURES = ("avx2", "fma", "avx512f", "avx512_bf16", "avx512_vnni", "amx_bf16", "amx_tile")


def provenance() -> dict:
    """When, from which commit and on which CPU a result was made, so that a quoted result can be
    checked against its record: the UTC date, the project's git commit (whether the code that ran
    differed from it, and its digest, are a training record's `code`: provenance.py), the CPU
    model, its instruction sets among CPU_FEATURES, and its cores."""
    flags = set(_cpuinfo("flags").split())
    return {"date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
            "git_commit": _git_commit(),
            "cpu": _cpu_model(),
            "cpu_features": [name for name in CPU_FEATURES if name in flags],
            "cores": os.cpu_count()}


def _git_commit() -> str:
    """HEAD of the project's repository; "unknown" outside git."""
    try:
        return subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, timeout=30,
                              check=True).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def onednn_enabled() -> bool | None:
    """Whether TensorFlow runs its oneDNN CPU kernels (see stages/trainer/__init__.py); None if unknown,
    and False on the other backends, which do not use TensorFlow's kernels."""
    if backend.name() != "tensorflow":
        return False
    try:
        from tensorflow.python.util import _pywrap_util_port  # Private, hence the fallback.
        return bool(_pywrap_util_port.IsMklEnabled())
    except (ImportError, AttributeError):
        return None
