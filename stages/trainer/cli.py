"""What every stage entry point shares: errors the user can cause become one line, bugs do not.

One line (`name: error: ...`, exit 1) for
- a BnlabError: bad params, a failed fetch, a broken archive, a missing or corrupt input file
  (under DVC, after putting back the committed outputs DVC removed: recovery.py);
- an OSError that carries an errno: the operating system refused a read or write (disk full,
  read-only or missing directory, file too large), which the user fixes outside the code;
- Ctrl-C (exit 130), and SIGTERM (exit 143), which unwinds the same way: temporary files and
  folders are removed and no output is replaced. The SIGTERM handler raises its exception in
  whatever Python code runs at that moment, and that may be a callback from C code that prints the
  exception and carries on (protobuf's, inside a TensorFlow call, does). So the first SIGTERM is
  also remembered: training checks for it after every epoch, publishing an output before its
  rename, and the stage when it returns (raise_if_terminated), and a stage stopped that way says
  so in the same one line, without the swallowed traceback.
Every other exception, in our code or inside Keras/TensorFlow, keeps its full traceback.

A stage also stops when the process that started it dies. DVC starts each stage as its child and
records the outputs only after the stage returns; a stage orphaned by a killed `dvc` would
otherwise run on and publish outputs that no dvc.lock describes. A watchdog thread notices the
orphaning within PARENT_POLL_SECONDS and sends SIGTERM to the main thread. DVC runs a stage as
`$SHELL -c "python -m stages.X"`, or `/bin/sh -c` where SHELL is unset (as on CI machines); bash
replaces itself with Python, but Debian's dash stays in between as our parent and outlives `dvc`.
So when our parent is such a `sh -c` shell, the watchdog watches the shell's parent too. We poll
rather than ask Linux for PR_SET_PDEATHSIG: that request is refused or never fires in some
sandboxes, it cannot see past the shell, it is Linux-only, and a process-wide signal may land on a
worker thread and leave the main thread blocked in a read. Where there is no /proc (macOS) only the
parent is watched. A `dvc` killed while Python is still starting leaves the stage running as before.
"""

from __future__ import annotations

import contextlib
import errno
import functools
import os
import signal
import sys
import threading
from pathlib import Path
from typing import Iterator, NoReturn

from stages.trainer.errors import BnlabError

EXIT_INTERRUPTED = 130  # 128 + SIGINT, what a shell reports for a process stopped by Ctrl-C.
EXIT_TERMINATED = 128 + signal.SIGTERM
# What a stopped stage says: DVC removes a stage's outputs before it starts the stage's command, so
# a stage stopped under `dvc repro` has lost its committed outputs; they come back without training.
RECOVERY = ("so run it again to finish; if DVC ran it, DVC had removed its committed outputs first: "
            "`git checkout -- reports/` puts back committed records and reports, `dvc checkout` the "
            "model and data")
PARENT_POLL_SECONDS = 0.1  # How soon an orphaned stage notices; the check itself costs microseconds.


class Terminated(BaseException):
    """SIGTERM arrived. A BaseException, like KeyboardInterrupt, so that no `except Exception`
    swallows it while every `finally` and context manager on the way out still runs."""


OS_HINTS = {
    errno.ENOSPC: "free some disk space and run it again",
    errno.EDQUOT: "free some space within your disk quota and run it again",
    errno.EFBIG: "the file system or a resource limit (ulimit -f) refuses a file this large",
    errno.EROFS: "the file system is read-only; run from a writable copy of the project",
    errno.EACCES: "check the permissions of that path",
    errno.EPERM: "check the permissions of that path",
    errno.EEXIST: "something else is in the way at that path; move it aside",
    errno.ENOTDIR: "a file stands where a directory should be; move it aside",
}


def stage_main(name: str):
    """Decorate a stage's main(): expected errors print `name: error: ...` and exit, no traceback."""

    def decorate(main):
        @functools.wraps(main)
        def run(*args, **kwargs):
            try:
                with _terminate_like_interrupt(), _stop_when_orphaned():
                    result = main(*args, **kwargs)
                    raise_if_terminated()
                    return result
            except BnlabError as error:
                from stages.trainer.recovery import restore_for_refusal

                fail(name, str(error) + restore_for_refusal())
            except OSError as error:
                if error.errno is None:  # Raised by a library for its own reasons: keep the trace.
                    raise
                fail(name, describe_os_error(error))
            except KeyboardInterrupt:
                print(f"{name}: interrupted (Ctrl-C); outputs are only replaced once complete, "
                      f"{RECOVERY}", file=sys.stderr)
                raise SystemExit(EXIT_INTERRUPTED) from None
            except Terminated:
                print(f"{name}: stopped (SIGTERM, or the process that started it died); outputs are "
                      f"only replaced once complete, {RECOVERY}", file=sys.stderr)
                raise SystemExit(EXIT_TERMINATED) from None

        return run

    return decorate


# Set by a stage's first SIGTERM, cleared when a stage starts and ends (tests run many in one process).
_terminated = threading.Event()


class _terminate_like_interrupt:
    """While a stage runs, SIGTERM raises Terminated (instead of ending the process on the spot),
    and a Terminated that C code catches and prints is not printed: raise_if_terminated raises it
    again where the stage can unwind."""

    def __enter__(self):
        _terminated.clear()
        # Signal handlers belong to the main thread; a stage called from another thread (never
        # the case under DVC) keeps the handler it has.
        self.previous = (signal.signal(signal.SIGTERM, _raise_terminated)
                         if threading.current_thread() is threading.main_thread() else None)
        self.hooks = sys.excepthook, sys.unraisablehook
        sys.excepthook = functools.partial(_quiet_when_terminated, self.hooks[0])
        sys.unraisablehook = functools.partial(_quiet_unraisable_when_terminated, self.hooks[1])

    def __exit__(self, *exc_info):
        if self.previous is not None:
            signal.signal(signal.SIGTERM, self.previous)
        sys.excepthook, sys.unraisablehook = self.hooks
        _terminated.clear()


def _raise_terminated(signum, frame) -> None:
    # Once: a second SIGTERM must not interrupt the clean-up that the first one started.
    if _terminated.is_set():
        return
    _terminated.set()
    raise Terminated()


def _quiet_when_terminated(hook, kind, value, traceback) -> None:
    if not isinstance(value, Terminated):
        hook(kind, value, traceback)


def _quiet_unraisable_when_terminated(hook, unraisable) -> None:
    if not isinstance(unraisable.exc_value, Terminated):
        hook(unraisable)


def raise_if_terminated() -> None:
    """Raise Terminated if a SIGTERM arrived during this stage: its first raise may have been
    caught by C code, and a stage must never publish, or go on training, after a SIGTERM."""
    if _terminated.is_set():
        raise Terminated()


@contextlib.contextmanager
def uninterruptible() -> Iterator[None]:
    """Hold Ctrl-C and SIGTERM back while the block runs (publishing several outputs), so that a
    run ends with all of them replaced or none; a signal that arrived meanwhile acts afterwards."""
    held = {signal.SIGINT, signal.SIGTERM}
    previous = signal.pthread_sigmask(signal.SIG_BLOCK, held)
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, previous)


# Shells that may stay between DVC and the stage (`sh -c "python -m stages.X"` without an exec).
LAUNCHING_SHELLS = frozenset({"sh", "dash", "bash", "zsh", "ksh", "mksh", "yash", "busybox"})


def _parent_of(pid: int) -> int | None:
    """The parent process id of `pid` from /proc, or None where it is gone or there is no /proc."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # The command name, in parentheses, may itself hold spaces and parentheses: split after it.
    return int(stat.rsplit(")", 1)[1].split()[1])


def _launched_by_shell(pid: int) -> bool:
    """Whether `pid` is a shell running a `-c` command (what DVC starts each stage with)."""
    try:
        argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return False
    return Path(os.fsdecode(argv[0])).name.lstrip("-") in LAUNCHING_SHELLS and b"-c" in argv[1:]


def _lineage() -> list[tuple[int, int]]:
    """(process, its parent) pairs that must hold while the stage runs: ours, and the launching
    shell's when that shell stayed in between."""
    parent = os.getppid()
    lineage = [(os.getpid(), parent)]
    grandparent = _parent_of(parent)
    if grandparent is not None and _launched_by_shell(parent):
        lineage.append((parent, grandparent))
    return lineage


def _orphaned(lineage: list[tuple[int, int]]) -> bool:
    (_, parent), *shell = lineage
    # A process whose parent dies is handed to init or a subreaper: its parent id changes.
    return os.getppid() != parent or any(_parent_of(pid) != expected for pid, expected in shell)


@contextlib.contextmanager
def _stop_when_orphaned() -> Iterator[None]:
    """While the block runs, a thread sends SIGTERM to the main thread once the stage is orphaned."""
    lineage = _lineage()
    main_thread = threading.main_thread().ident
    finished = threading.Event()

    def watch() -> None:
        while not finished.wait(PARENT_POLL_SECONDS):
            if _orphaned(lineage):
                # To the main thread itself: there the signal interrupts a blocking read or sleep,
                # and its handler raises Terminated (or waits until `uninterruptible()` ends).
                signal.pthread_kill(main_thread, signal.SIGTERM)
                return

    watchdog = threading.Thread(target=watch, name="stop-when-orphaned", daemon=True)
    watchdog.start()
    try:
        yield
    finally:
        # Joined, so that no SIGTERM of ours can arrive after the stage has returned.
        finished.set()
        watchdog.join()


def fail(name: str, message: str) -> NoReturn:
    print(f"{name}: error: {message}", file=sys.stderr)
    raise SystemExit(1) from None


def describe_os_error(error: OSError) -> str:
    """`path: No space left on device; free some disk space ...` from an OSError with an errno."""
    where = f"{error.filename}: " if error.filename is not None else ""
    reason = error.strerror or errno.errorcode.get(error.errno, f"errno {error.errno}")
    hint = OS_HINTS.get(error.errno)
    return f"{where}{reason}" + (f"; {hint}" if hint else "")
