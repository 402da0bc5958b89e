"""Fetch a file over HTTP(S) or from a local path, verify its md5, and publish it atomically.

The output only ever appears by `os.replace` of a fully written, checksum-verified temporary file
in the same directory, so an interrupted or failed fetch leaves nothing that looks valid.
"""

from __future__ import annotations

import hashlib
import http.client
import socket
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import BinaryIO, Callable

from stages.trainer.atomic import atomic_write
from stages.trainer.errors import FetchError, quoted, shorten

CHUNK_BYTES = 1 << 20
OFFLINE_HINT = (
    "If this machine is offline, copy cifar-10-binary.tar.gz to this machine by other means "
    "(outside data/raw/, which fetch writes) and run "
    "`dvc exp run -S data.url=/path/to/cifar-10-binary.tar.gz -S data.md5=<its md5>` "
    "(see 'Offline / air-gapped machines' in README.md)."
)


class _RetryableError(FetchError):
    """A failure that another attempt may not repeat (network hiccup, truncated body, 5xx).
    `hint` (how to work offline) goes with the final error only, not with every retry."""

    def __init__(self, message: str, hint: str = "") -> None:
        super().__init__(message)
        self.hint = hint


def fetch(url: str, md5: str, destination: Path, *, timeout_seconds: float = 60, retries: int = 3,
          progress: Callable[[int, int | None], None] | None = None) -> Path:
    """Copy or download `url` to `destination`, verifying `md5`. Raises FetchError on any failure."""
    destination = Path(destination)
    local_path = _local_path(url)
    if local_path is not None and _same_file(local_path, destination):
        raise FetchError(f"data.url = {quoted(url)} is {destination}, the file this stage "
                         "writes, so it cannot also be its source; move your copy out of "
                         f"{destination.parent}/ (e.g. to ../cifar-10-binary.tar.gz) and point "
                         "data.url there")
    attempts = 1 if local_path else retries + 1
    for attempt in range(1, attempts + 1):
        try:
            return _fetch_once(url, local_path, md5, destination, timeout_seconds, progress)
        except _RetryableError as error:
            if attempt == attempts:
                hint = f". {error.hint}" if error.hint else ""
                raise FetchError(f"{error}{hint} (gave up after {attempts} attempts)") from error
            wait_seconds = min(2 ** attempt, 30)
            print(f"fetch: attempt {attempt}/{attempts} failed: {error}; retrying in {wait_seconds}s",
                  file=sys.stderr)
            time.sleep(wait_seconds)
    raise AssertionError("unreachable")


def _local_path(url: str) -> Path | None:
    parsed = urllib.parse.urlparse(url)
    if parsed.scheme == "file":
        if "#" in url or "?" in url:
            raise FetchError(f"data.url = {quoted(url)}: in a file:// URL, '#' and '?' end the path "
                             "(a URL's fragment and query); write them as %23 and %3F, or give "
                             "data.url as a plain path")
        if parsed.netloc not in ("", "localhost"):
            raise FetchError(f"data.url = {quoted(url)} names a file on host {quoted(parsed.netloc)}; "
                             "a file:// URL reads this machine's files only: copy the archive here "
                             "(or mount it) and use file:///path or a plain path")
        return Path(urllib.request.url2pathname(parsed.path))
    if parsed.scheme in ("http", "https"):
        return None
    if parsed.scheme == "" or len(parsed.scheme) == 1:  # A plain path (or a Windows drive letter).
        return Path(url).expanduser()
    raise FetchError(f"data.url = {quoted(url)} has an unsupported scheme {quoted(parsed.scheme)}; "
                     "use http://, https://, file:// or a local path")


def _same_file(source: Path, destination: Path) -> bool:
    """Whether `source` is `destination`, by path or, where both exist, by identity (links)."""
    if source.resolve() == destination.resolve():
        return True
    try:
        return source.samefile(destination)
    except OSError:  # One of them does not exist (yet): then they cannot be one file.
        return False


def _fetch_once(url, local_path, md5, destination, timeout_seconds, progress) -> Path:
    with atomic_write(destination) as out:
        if local_path is not None:
            actual = _copy_local(local_path, out, progress)
        else:
            actual = _download(url, out, timeout_seconds, progress)
        if actual != md5:
            raise FetchError(f"checksum mismatch for {shorten(url)}: expected md5 {md5}, "
                             f"got {actual}. "
                             "The file is corrupt or a different version; if you trust it, set "
                             f"data.md5 to {actual}")
    return destination


def _copy_local(path: Path, out: BinaryIO, progress) -> str:
    if not path.is_file():
        hint = ("a relative path is read from the folder the stage runs in, and a queued experiment "
                "(`dvc exp run --queue`) runs in a copy under .dvc/tmp/exps: use an absolute path"
                if not path.is_absolute() else "check the path")
        raise FetchError(f"local file not found: {path} (data.url in params.yaml); {hint}")
    with path.open("rb") as source:
        return _stream(source, out, path.stat().st_size, progress)


def _download(url: str, out: BinaryIO, timeout_seconds: float, progress) -> str:
    request = urllib.request.Request(url, headers={"User-Agent": "bnlab-fetch"})
    host = urllib.parse.urlparse(url).netloc
    try:
        with urllib.request.urlopen(request, timeout=timeout_seconds) as response:
            length = response.headers.get("Content-Length")
            expected = int(length) if length is not None else None
            return _stream(response, out, expected, progress)
    except urllib.error.HTTPError as error:
        message = f"HTTP error {error.code} {error.reason} for {shorten(url)}"
        if error.code >= 500:
            raise _RetryableError(message) from error
        raise FetchError(message + ". Check data.url in params.yaml") from error
    except urllib.error.URLError as error:
        if isinstance(error.reason, socket.gaierror):  # No DNS answer: retrying will not help.
            raise FetchError(f"cannot resolve the host {host} ({error.reason.strerror}): no "
                             f"network or no DNS on this machine. {OFFLINE_HINT}") from error
        raise _RetryableError(f"cannot reach {host} ({error.reason})", OFFLINE_HINT) from error
    except (socket.timeout, TimeoutError) as error:
        raise _RetryableError(f"timed out after {timeout_seconds:g}s reading from {host}",
                              OFFLINE_HINT) from error
    except (http.client.IncompleteRead, ConnectionError) as error:
        raise _RetryableError(f"truncated download from {shorten(url)}: the connection broke "
                              f"({error})") from error
    except http.client.HTTPException as error:  # Not HTTP at all (BadStatusLine, LineTooLong...).
        raise _RetryableError(f"invalid HTTP response from {host} "
                              f"({type(error).__name__}: {error})") from error


def _stream(source: BinaryIO, out: BinaryIO, expected: int | None, progress) -> str:
    digest = hashlib.md5()
    received = 0
    while chunk := source.read(CHUNK_BYTES):
        digest.update(chunk)
        out.write(chunk)
        received += len(chunk)
        if progress:
            progress(received, expected)
    if expected is not None and received != expected:
        raise _RetryableError(f"truncated download: received {received} of {expected} bytes")
    return digest.hexdigest()


class ProgressPrinter:
    """Progress on stderr: one line rewritten in place on a terminal, a line per 10% in logs."""

    def __init__(self) -> None:
        self._printed_tenths = -1

    def __call__(self, received: int, total: int | None) -> None:
        text = f"fetch: {received / 1e6:7.1f} MB"
        tenths = received // (10 * CHUNK_BYTES)  # Without a known total, a line per 10 MiB.
        if total:
            text += f" / {total / 1e6:.1f} MB ({100 * received / total:5.1f}%)"
            tenths = 10 * received // total
        if sys.stderr.isatty():
            print("\r" + text, end="", file=sys.stderr, flush=True)
        elif tenths != self._printed_tenths:
            self._printed_tenths = tenths
            print(text, file=sys.stderr, flush=True)
