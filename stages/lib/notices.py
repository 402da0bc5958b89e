"""TensorFlow's start-up notices, kept out of the stages' logs on machines without an NVIDIA GPU.

Importing TensorFlow prints a few lines before its logging is set up, so TF_CPP_MIN_LOG_LEVEL
cannot silence them, and prints them twice (two of its libraries load them): "All log messages
before absl::InitializeLog() ...", "Could not find cuda drivers on your machine", "oneDNN custom
operations are on"; on a machine without a GPU the first look for one adds "failed call to
cuInit: ... UNKNOWN ERROR (303)", which reads like a failure. None of them is news on such a
machine (the run record says which device and which oneDNN kernels ran), so while TensorFlow is
imported, and while it first looks for a GPU, standard error goes to a temporary file, and
everything but these exact lines is passed on. Where an NVIDIA driver is present
(/dev/nvidiactl) nothing is filtered: there a failed cuInit is a real problem.
"""

from __future__ import annotations

import contextlib
import importlib.abc
import importlib.machinery
import os
import re
import sys
import tempfile
from typing import Iterator

HARMLESS = re.compile(
    rb"WARNING: All log messages before absl::InitializeLog\(\) is called are written to STDERR"
    rb"|cudart_stub\.cc:\d+\] Could not find cuda drivers on your machine, GPU will not be used"
    rb"|port\.cc:\d+\] oneDNN custom operations are on\."
    rb"|cuda_platform\.cc:\d+\] failed call to cuInit: .*\(303\)")


def install() -> None:
    """Filter TensorFlow's start-up notices from the first `import tensorflow` on, if no GPU."""
    if os.path.exists("/dev/nvidiactl") or "tensorflow" in sys.modules:
        return
    sys.meta_path.insert(0, _QuietTensorFlowFinder())


@contextlib.contextmanager
def filtered_stderr(harmless: re.Pattern = HARMLESS) -> Iterator[None]:
    """Standard error (the file descriptor, which C++ writes to) into a temporary file while the
    block runs; afterwards every line not matching `harmless` goes on to the real one, in order."""
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as capture:
        os.dup2(capture.fileno(), 2)
        try:
            yield
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            capture.seek(0)
            for line in capture:
                if not harmless.search(line):
                    os.write(2, line)


class _QuietTensorFlowFinder(importlib.abc.MetaPathFinder):
    """Finds `tensorflow` as usual, with a loader that imports it inside filtered_stderr."""

    def find_spec(self, name, path=None, target=None):
        if name != "tensorflow":
            return None
        sys.meta_path.remove(self)  # Once: TensorFlow's own submodules import as usual.
        spec = importlib.machinery.PathFinder.find_spec(name, path)
        if spec is not None and spec.loader is not None:
            spec.loader = _QuietLoader(spec.loader)
        return spec


class _QuietLoader(importlib.abc.Loader):
    def __init__(self, inner) -> None:
        self.inner = inner

    def __getattr__(self, name: str):  # get_filename, get_resource_reader, ...: the real loader's.
        return getattr(self.inner, name)

    def create_module(self, spec):
        return self.inner.create_module(spec)

    def exec_module(self, module) -> None:
        with filtered_stderr():
            self.inner.exec_module(module)
            # The first look for a GPU is where a machine without one logs the failed cuInit;
            # listing devices does not initialize them, so device settings can follow later.
            module.config.list_physical_devices("GPU")
