"""The model, training, pooling, device and landscape-probe tests pass under JAX as well.

Keras fixes its backend when it is first imported, so the JAX run is a second pytest process with
KERAS_BACKEND=jax over the backend-neutral test files (TensorFlow-only tests skip themselves there).
Part of the one test command, so CI runs it on every change; it runs first, beside the rest of the
suite on the other workers (conftest.PytestSession).
"""

import os
import re

import pytest

from conftest import BACKEND, PytestSession

NEUTRAL_FILES = ("tests/test_model.py", "tests/test_pooling.py", "tests/test_device.py",
                 "tests/test_training.py", "tests/test_frozen.py")


def test_this_process_runs_the_backend_it_was_asked_for():
    assert BACKEND == os.environ.get("KERAS_BACKEND", "tensorflow")


JAX_RUN = PytestSession(["-q", "tests/test_backends.py", *NEUTRAL_FILES], {**os.environ, "KERAS_BACKEND": "jax"})


@pytest.mark.session
@pytest.mark.skipif(BACKEND != "tensorflow", reason="the outer run spawns the JAX run")
def test_model_training_and_probe_tests_pass_under_jax():
    pytest.importorskip("jax", reason="install the [test] or [jax] extra")
    done = JAX_RUN.run()
    summary = done.stdout.strip().splitlines()[-1] if done.stdout.strip() else ""
    assert done.returncode == 0, f"under JAX: {summary}\n{done.stdout[-6000:]}\n{done.stderr[-3000:]}"
    passed = int(re.search(r"(\d+) passed", summary).group(1))
    assert passed >= 30, summary  # The JAX run really ran the suite, not just skipped it.
