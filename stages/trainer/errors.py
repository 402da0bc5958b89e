"""The errors a user can cause, as opposed to bugs: each becomes one line, never a traceback.

Every stage entry point (stages/trainer/cli.py) prints a BnlabError as one `stage: error: ...` line.
Anything else, from our code or from inside Keras and TensorFlow, keeps its full traceback,
because it is a bug to fix rather than an input to correct.
"""

from __future__ import annotations

import reprlib

QUOTE_LIMIT = 200  # Characters of a value quoted in a message: a hostile value can be huge.

# repr() of a YAML document with aliases can be exponentially long (a "billion laughs"); reprlib
# stops at a few levels and items, so quoting any value takes bounded time and memory.
_BOUNDED_REPR = reprlib.Repr()
_BOUNDED_REPR.maxlevel = 3
_BOUNDED_REPR.maxlist = _BOUNDED_REPR.maxtuple = _BOUNDED_REPR.maxdict = 12
_BOUNDED_REPR.maxstring = _BOUNDED_REPR.maxlong = _BOUNDED_REPR.maxother = QUOTE_LIMIT


class BnlabError(ValueError):
    """An input the user controls is wrong; the message names it and says how to fix it."""


class ParamsError(BnlabError):
    """A value in params.yaml has the wrong type, is out of range, or a key is missing/unknown."""


class FetchError(BnlabError):
    """The archive could not be fetched or did not match its checksum."""


class ArchiveError(BnlabError):
    """The archive is not a well-formed CIFAR-10 binary archive."""


class InputFileError(BnlabError):
    """A file an earlier stage wrote is missing, corrupt or invalid; rebuilding it fixes that."""


def quoted(value: object) -> str:
    """repr(value), cut to about QUOTE_LIMIT characters so one bad value cannot flood the terminal."""
    text = _BOUNDED_REPR.repr(value)
    return text if len(text) <= QUOTE_LIMIT else text[:QUOTE_LIMIT] + "..."


def shorten(text: str) -> str:
    if len(text) <= QUOTE_LIMIT:
        return text
    return f"{text[:QUOTE_LIMIT]}... ({len(text):,} characters in all)"
