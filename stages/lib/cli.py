"""What every stage entry point shares: load params first, and turn expected errors into one line."""

from __future__ import annotations

import functools
import sys

from stages.lib.errors import BnlabError

EXPECTED_ERRORS = (BnlabError, FileNotFoundError, ValueError)


def stage_main(name: str):
    """Decorate a stage's main(): expected errors print `name: error: ...` and exit 1, no traceback."""

    def decorate(main):
        @functools.wraps(main)
        def run(*args, **kwargs):
            try:
                return main(*args, **kwargs)
            except EXPECTED_ERRORS as error:
                print(f"{name}: error: {error}", file=sys.stderr)
                raise SystemExit(1) from None

        return run

    return decorate
