"""TensorFlow's start-up notices, kept out of the stages' logs on machines without an NVIDIA GPU.

Importing TensorFlow prints a few lines before its logging is set up, so TF_CPP_MIN_LOG_LEVEL
cannot silence them, and prints them twice (two of its libraries load them): "All log messages
before absl::InitializeLog() ...", "Could not find cuda drivers on your machine", "oneDNN custom
operations are on"; on a machine without a GPU the first look for one adds "failed call to
cuInit: ... UNKNOWN ERROR (303)", which reads like a failure. None of them is news on such a
machine (the run record says which device and which oneDNN kernels ran), so while TensorFlow is
imported, and while it first looks for a GPU, standard error goes through a small filter process
that passes on everything but these exact lines, as they come. Being a process of its own, it
still passes on what a crash during the import printed (an abort, a missing CPU instruction).
Where an NVIDIA driver is present (/dev/nvidiactl) nothing is filtered: there a failed cuInit is
a real problem.
"""

from __future__ import annotations

import contextlib
import importlib.abc
import importlib.machinery
import os
import re
import subprocess
import sys
from typing import Iterator

HARMLESS = re.compile(
    rb"WARNING: All log messages before absl::InitializeLog\(\) is called are written to STDERR"
    rb"|cudart_stub\.cc:\d+\] Could not find cuda drivers on your machine, GPU will not be used"
    rb"|port\.cc:\d+\] oneDNN custom operations are on\."
    rb"|cuda_platform\.cc:\d+\] failed call to cuInit: .*\(303\)")
# The filter: standard input to standard output, line by line, without the harmless lines.
FILTER = ("import re, sys\n"
          "harmless = re.compile(sys.argv[1].encode())\n"
          "for line in sys.stdin.buffer:\n"
          "    if not harmless.search(line):\n"
          "        sys.stdout.buffer.write(line)\n"
          "        sys.stdout.buffer.flush()\n")


def install() -> None:
    """Filter TensorFlow's start-up notices from the first `import tensorflow` on, if no GPU."""
    if os.path.exists("/dev/nvidiactl") or "tensorflow" in sys.modules:
        return
    sys.meta_path.insert(0, _QuietTensorFlowFinder())


@contextlib.contextmanager
def filtered_stderr(harmless: re.Pattern = HARMLESS) -> Iterator[None]:
    """Standard error (the file descriptor, which C++ writes to) through the filter process while
    the block runs: every line not matching `harmless` reaches the real standard error."""
    sys.stderr.flush()
    saved = os.dup(2)
    try:
        process = subprocess.Popen([sys.executable, "-I", "-S", "-c", FILTER, harmless.pattern.decode()],
                                   stdin=subprocess.PIPE, stdout=saved)
    except OSError:  # No process to spare: unfiltered, rather than no TensorFlow.
        os.close(saved)
        yield
        return
    os.dup2(process.stdin.fileno(), 2)
    try:
        yield
    finally:
        sys.stderr.flush()
        os.dup2(saved, 2)
        os.close(saved)
        process.stdin.close()
        process.wait()  # Everything passed on before the caller writes anything more.


class _QuietTensorFlowFinder(importlib.abc.MetaPathFinder):
    """Finds `tensorflow` as usual, with a loader that imports it inside filtered_stderr."""

    def __init__(self) -> None:
        self.done = False

    def find_spec(self, name, path=None, target=None):
        if name != "tensorflow" or self.done:
            return None
        spec = importlib.machinery.PathFinder.find_spec(name, path)
        if spec is not None and spec.loader is not None:
            spec.loader = _QuietLoader(spec.loader, self)
        return spec


class _QuietLoader(importlib.abc.Loader):
    def __init__(self, inner, finder: _QuietTensorFlowFinder) -> None:
        self.inner, self.finder = inner, finder

    def __getattr__(self, name: str):  # get_filename, get_resource_reader, ...: the real loader's.
        if name in ("inner", "finder") or name.startswith("__"):
            raise AttributeError(name)
        return getattr(self.inner, name)

    def create_module(self, spec):
        return self.inner.create_module(spec)

    def exec_module(self, module) -> None:
        self.finder.done = True  # Once: a reload imports as usual.
        with filtered_stderr():
            self.inner.exec_module(module)
            # The first look for a GPU is where a machine without one logs the failed cuInit;
            # listing devices does not initialize them, so device settings can follow later.
            # Should it fail, device.configure_device meets the same error and reports it.
            try:
                module.config.list_physical_devices("GPU")
            except Exception:  # noqa: BLE001
                pass
