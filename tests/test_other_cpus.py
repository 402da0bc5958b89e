"""The float32 comparisons again, with the CPU kernels other machines run: CI checks every CPU kind
our users have on whichever machine it gets.

TensorFlow picks its oneDNN kernels at run time by the CPU's instruction sets (AVX2, AVX-512, AMX),
and each kind sums in its own order; with oneDNN off it runs Eigen's kernels instead. The tests
marked `float32` compare computations that may run different kernels, with tolerances derived
from float32 rounding (tests/float32.py). Here they run once more in a fresh process with oneDNN
capped at AVX2 kernels (an AVX-512 machine then computes as an AVX2-only one does; on an AVX2
machine nothing changes), and once with oneDNN off. To try another cap by hand:
`ONEDNN_MAX_CPU_ISA=SSE41 python -m pytest -m float32`. The reruns run first, beside the rest of the
suite on the other workers (conftest.PytestSession).
"""

import os
import subprocess
import sys

import pytest

from conftest import PATIENCE_SECONDS, ROOT, PytestSession, tensorflow_only

KERNELS = {
    "onednn-avx2": {"ONEDNN_MAX_CPU_ISA": "AVX2", "TF_ENABLE_ONEDNN_OPTS": "1"},
    "onednn-off": {"TF_ENABLE_ONEDNN_OPTS": "0"},
}
# A convolution, so that oneDNN creates a primitive and says which instruction set it uses.
CONVOLVE = ("import stages.trainer, tensorflow as tf; "
            "tf.nn.conv2d(tf.ones((1, 8, 8, 3)), tf.ones((3, 3, 3, 4)), 1, 'SAME')")


def environment(setting: dict) -> dict:
    env = {key: value for key, value in os.environ.items()
           if key not in ("ONEDNN_MAX_CPU_ISA", "TF_ENABLE_ONEDNN_OPTS", "ONEDNN_VERBOSE")}
    return {**env, **setting}


@tensorflow_only
def test_the_cap_reaches_onednn():
    """Without this, a cap that TensorFlow ignored would make the runs below check nothing new."""
    result = subprocess.run([sys.executable, "-c", CONVOLVE], cwd=ROOT, capture_output=True, text=True,
                            env=environment({**KERNELS["onednn-avx2"], "ONEDNN_VERBOSE": "1"}),
                            timeout=PATIENCE_SECONDS, check=True)
    isa = [line for line in result.stdout.splitlines() if ",isa:" in line]
    assert isa and "AVX2" in isa[0] and "512" not in isa[0] and "AMX" not in isa[0], isa


def rerun(setting: dict) -> PytestSession:
    # bfloat16 under an AVX2 cap is left out: on a CPU with AVX-512 BF16 the cap makes oneDNN refuse
    # its bfloat16 BatchNorm primitive ("could not create a primitive descriptor"), where a real
    # AVX2-only CPU never takes that path (TensorFlow sees no bfloat16 support there); float32, the
    # numerics every result uses, is what these reruns check.
    names = ["-k", "not bfloat16"] if "ONEDNN_MAX_CPU_ISA" in setting else []
    return PytestSession(["-q", "-m", "float32 and not dvc", *names, "tests"], environment(setting))


RERUNS = {name: rerun(setting) for name, setting in KERNELS.items()}


@tensorflow_only
@pytest.mark.parametrize("name", [pytest.param(name, marks=pytest.mark.session, id=name)
                                  for name in KERNELS])
def test_float32_comparisons_hold_with_other_kernels(name):
    result = RERUNS[name].run()
    summary = result.stdout.strip().splitlines()[-1] if result.stdout.strip() else result.stderr[-2000:]
    assert result.returncode == 0, f"{KERNELS[name]}: {summary}\n{result.stdout[-6000:]}"
    assert " passed" in summary and "deselected" in summary, summary
