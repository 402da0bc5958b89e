"""Device selection (train.device), TF32 and the record of both, on a machine without a GPU."""

import pytest

from conftest import BACKEND
from stages.trainer import device
from stages.trainer.device import DeviceError, configure_device, environment, tf32_state


def test_gpu_fails_at_once_with_the_reason_and_the_fix():
    with pytest.raises(DeviceError) as raised:
        configure_device("gpu", tf32=True)
    message = str(raised.value)
    assert message.startswith(f"train.device = gpu but {BACKEND} registers no GPU (")
    assert device.INSTALL_HINTS[BACKEND] in message and "nvidia-smi" in message
    assert message.endswith("or set train.device: auto or cpu")


def test_auto_falls_back_to_the_cpu_loudly_and_says_so_for_the_record(capsys):
    fallback = configure_device("auto", tf32=True)
    assert fallback.startswith(f"train.device = auto fell back to the CPU: {BACKEND} registers no GPU")
    # One short line in the log (every cell prints it); the reason and the fix go to the record.
    printed = [line for line in capsys.readouterr().out.splitlines() if "training on the CPU" in line]
    assert printed == [f"train: no GPU ({BACKEND}), training on the CPU; GPU setup: docs/pipeline.md#gpus-and-keras-backends"]
    assert len(printed[0]) < 120
    assert environment("float32")["device"].startswith("CPU: ")


def test_cpu_hides_the_gpus_and_is_no_fallback(monkeypatch, capsys):
    hidden = []
    monkeypatch.setattr(device, "_hide_gpus", lambda: hidden.append(True))
    assert configure_device("cpu", tf32=True) is None
    assert hidden == [True] and "training on the CPU" not in capsys.readouterr().out


def test_a_gpu_is_taken_without_a_warning(monkeypatch, capsys):
    monkeypatch.setattr(device, "gpu_names", lambda: ["NVIDIA H100 80GB HBM3"])
    assert configure_device("gpu", tf32=True) is None and configure_device("auto", tf32=True) is None
    assert capsys.readouterr().out == ""
    assert device.device_description() == "GPU: NVIDIA H100 80GB HBM3 (x1)"


@pytest.mark.parametrize("capability, tf32, expected", [
    ((9, 0), True, "on"), ((9, 0), False, "off"), ((8, 0), False, "off"),
    ((7, 0), True, "not applicable"),  # Volta has no TF32.
    (None, True, "not applicable"),  # The CPU.
])
def test_tf32_is_set_and_recorded(monkeypatch, capability, tf32, expected):
    monkeypatch.setattr(device, "_compute_capability", lambda: capability)
    try:
        configure_device("auto", tf32=tf32)
        assert tf32_state() == expected
    finally:
        configure_device("auto", tf32=True)  # The backend's default, for the tests after this one.


def test_the_record_names_backend_device_tf32_and_versions():
    record = environment("float32")
    assert record["backend"] == BACKEND and record[BACKEND]
    assert record["tf32"] == "not applicable" and record["device"].startswith("CPU: ")
    assert record["precision"] == "float32"
    assert record["onednn"] in ((True, False, None) if BACKEND == "tensorflow" else (False,))
