"""What every stage entry point shares: errors the user can cause become one line, bugs do not.

One line (`name: error: ...`, exit 1) for
- a BnlabError: bad params, a failed fetch, a broken archive, a missing or corrupt input file;
- an OSError that carries an errno: the operating system refused a read or write (disk full,
  read-only or missing directory, file too large), which the user fixes outside the code;
- Ctrl-C (exit 130).
Every other exception, in our code or inside Keras/TensorFlow, keeps its full traceback.
"""

from __future__ import annotations

import errno
import functools
import sys
from typing import NoReturn

from stages.lib.errors import BnlabError

EXIT_INTERRUPTED = 130  # 128 + SIGINT, what a shell reports for a process stopped by Ctrl-C.
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
                return main(*args, **kwargs)
            except BnlabError as error:
                fail(name, str(error))
            except OSError as error:
                if error.errno is None:  # Raised by a library for its own reasons: keep the trace.
                    raise
                fail(name, describe_os_error(error))
            except KeyboardInterrupt:
                print(f"{name}: interrupted (Ctrl-C); outputs are only replaced once complete, "
                      "so run it again to finish", file=sys.stderr)
                raise SystemExit(EXIT_INTERRUPTED) from None

        return run

    return decorate


def fail(name: str, message: str) -> NoReturn:
    print(f"{name}: error: {message}", file=sys.stderr)
    raise SystemExit(1) from None


def describe_os_error(error: OSError) -> str:
    """`path: No space left on device; free some disk space ...` from an OSError with an errno."""
    where = f"{error.filename}: " if error.filename is not None else ""
    reason = error.strerror or errno.errorcode.get(error.errno, f"errno {error.errno}")
    hint = OS_HINTS.get(error.errno)
    return f"{where}{reason}" + (f"; {hint}" if hint else "")
