"""stages.archive.download.fetch against a real HTTP server on 127.0.0.1, local paths and the stage CLI.

Every failure case proves three things: the FetchError names the problem, the destination does
not exist afterwards, and no `.partial` temporary file is left beside it.
"""

from __future__ import annotations

import collections
import hashlib
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
import types
import urllib.error
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import yaml

from conftest import PATIENCE_SECONDS
from stages.archive import download
from stages.archive.download import CHUNK_BYTES, FetchError, fetch

ROOT = Path(__file__).resolve().parents[1]
PAYLOAD = bytes(range(256)) * (CHUNK_BYTES // 256) + b"tail"  # Spans two read chunks.
PAYLOAD_MD5 = hashlib.md5(PAYLOAD).hexdigest()
SLOW_PAYLOAD = PAYLOAD * 3  # /slow sends two read chunks of it, then waits for `release`.
SLOW_SECONDS = 30  # How long /slow holds the rest back; below the stage's socket timeout in the tests.
WRONG_MD5 = "0" * 32


def md5_of(path: Path) -> str:
    return hashlib.md5(Path(path).read_bytes()).hexdigest()


def assert_nothing_published(destination: Path) -> None:
    """No file at `destination`, and no temporary `.partial` file left in its folder."""
    assert not destination.exists()
    if destination.parent.exists():
        leftovers = [name for name in os.listdir(destination.parent) if ".partial" in name]
        assert leftovers == []


def closed_port() -> int:
    """A port on 127.0.0.1 that nothing listens on (bound, then released)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class Handler(BaseHTTPRequestHandler):
    """Answers by path: /ok, /no-length, /truncated, /missing, /broken, /stall, /slow, /garbage."""

    def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
        self.server.hits[self.path] += 1
        if self.path == "/ok":
            self._send(200, PAYLOAD, length=len(PAYLOAD))
        elif self.path == "/no-length":
            self._send(200, PAYLOAD, length=None)  # HTTP/1.0: the body ends when the socket closes.
        elif self.path == "/truncated":
            self._send(200, PAYLOAD[: len(PAYLOAD) // 2], length=len(PAYLOAD))
        elif self.path == "/stall":
            self._send(200, PAYLOAD[:1000], length=len(PAYLOAD))
            self.wfile.flush()
            self.server.release.wait(PATIENCE_SECONDS)  # Never sends the rest until the test is over.
        elif self.path == "/slow":
            self._send(200, SLOW_PAYLOAD[:2 * CHUNK_BYTES], length=len(SLOW_PAYLOAD))
            self.wfile.flush()
            # The rest once the test releases it, or after SLOW_SECONDS: a stage that never sees
            # its interrupt then ends, and the test fails on its exit status instead of hanging.
            self.server.release.wait(SLOW_SECONDS)
            try:
                self.wfile.write(SLOW_PAYLOAD[2 * CHUNK_BYTES:])
            except (BrokenPipeError, ConnectionResetError):  # The client was killed meanwhile.
                pass
        elif self.path == "/garbage":
            self.wfile.write(b"THIS IS NOT HTTP\r\n\r\n")
        elif self.path == "/broken":
            self.send_error(500)
        else:
            self.send_error(404)

    def _send(self, status: int, body: bytes, length: int | None) -> None:
        self.send_response(status)
        if length is not None:
            self.send_header("Content-Length", str(length))
        self.end_headers()
        self.wfile.write(body)
        self.close_connection = True

    def log_message(self, *args) -> None:  # Keep pytest's output clean.
        pass


class Server:
    def __init__(self, httpd: ThreadingHTTPServer) -> None:
        self.httpd = httpd
        self.hits: collections.Counter = httpd.hits

    def url(self, path: str) -> str:
        host, port = self.httpd.server_address[:2]
        return f"http://{host}:{port}{path}"


@pytest.fixture
def server():
    """A real HTTP server on an ephemeral 127.0.0.1 port, serving from a background thread."""
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    httpd.daemon_threads = True
    httpd.hits = collections.Counter()
    httpd.release = threading.Event()
    thread = threading.Thread(target=httpd.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield Server(httpd)
    finally:
        httpd.release.set()
        httpd.shutdown()
        httpd.server_close()
        thread.join(5)


@pytest.fixture
def sleeps(monkeypatch) -> list[float]:
    """Retries back off with time.sleep: record the waits instead of sleeping.

    Only the download module's `time` is replaced, not `time.sleep` itself: a global patch would
    record every other thread's waits too (Popen.wait with a timeout polls with time.sleep)."""
    waits: list[float] = []
    monkeypatch.setattr(download, "time", types.SimpleNamespace(sleep=waits.append))
    return waits


@pytest.fixture
def destination(tmp_path) -> Path:
    return tmp_path / "out" / "cifar-10-binary.tar.gz"


def fail(url: str, md5: str, destination: Path, **options) -> str:
    """Run a fetch that must fail; check it published nothing; return the error message."""
    with pytest.raises(FetchError) as caught:
        fetch(url, md5, destination, **options)
    assert_nothing_published(destination)
    return str(caught.value)


# --- HTTP ---------------------------------------------------------------------------------------

def test_http_success_writes_the_served_bytes(server, destination):
    """A verified download lands at the destination, byte for byte, and fetch returns its path."""
    progress = []
    result = fetch(server.url("/ok"), PAYLOAD_MD5, destination, retries=0,
                   progress=lambda received, total: progress.append((received, total)))
    assert result == destination
    assert destination.read_bytes() == PAYLOAD
    assert [name for name in os.listdir(destination.parent)] == [destination.name]
    assert progress == [(CHUNK_BYTES, len(PAYLOAD)), (len(PAYLOAD), len(PAYLOAD))]
    assert server.hits["/ok"] == 1


def test_http_success_without_content_length(server, destination):
    """A body without Content-Length is read to the end and still verified by md5."""
    progress = []
    fetch(server.url("/no-length"), PAYLOAD_MD5, destination, retries=0,
          progress=lambda received, total: progress.append((received, total)))
    assert destination.read_bytes() == PAYLOAD
    assert progress[-1] == (len(PAYLOAD), None)


def test_http_checksum_mismatch_is_reported_and_not_retried(server, destination, sleeps):
    """A complete body with the wrong md5 names both checksums and is not downloaded again."""
    url = server.url("/ok")
    message = fail(url, WRONG_MD5, destination, retries=2)
    assert message.startswith(f"checksum mismatch for {url}: expected md5 {WRONG_MD5}, "
                              f"got {PAYLOAD_MD5}.")
    assert f"set data.md5 to {PAYLOAD_MD5}" in message
    assert server.hits["/ok"] == 1
    assert sleeps == []


def test_http_truncated_body(server, destination):
    """A body shorter than its Content-Length is an error, not a short file."""
    message = fail(server.url("/truncated"), PAYLOAD_MD5, destination, retries=0)
    assert message == (f"truncated download: received {len(PAYLOAD) // 2} of {len(PAYLOAD)} "
                       "bytes (gave up after 1 attempts)")


def test_http_404_is_not_retried(server, destination, sleeps):
    """A client error cannot improve on retry: one request, and a hint to check data.url."""
    url = server.url("/missing")
    message = fail(url, PAYLOAD_MD5, destination, retries=2)
    assert message == f"HTTP error 404 Not Found for {url}. Check data.url in params.yaml"
    assert server.hits["/missing"] == 1
    assert sleeps == []


def test_http_500_is_retried_with_backoff(server, destination, sleeps, capsys):
    """A server error is tried retries+1 times, waiting 2s, 4s, ... between attempts."""
    url = server.url("/broken")
    message = fail(url, PAYLOAD_MD5, destination, retries=2)
    assert message == (f"HTTP error 500 Internal Server Error for {url} "
                       "(gave up after 3 attempts)")
    assert server.hits["/broken"] == 3
    assert sleeps == [2, 4]
    log = capsys.readouterr().err
    assert f"fetch: attempt 1/3 failed: HTTP error 500 Internal Server Error for {url}; " \
           "retrying in 2s" in log
    assert "fetch: attempt 2/3 failed" in log


def test_http_stalled_body_times_out(server, destination):
    """A server that stops sending mid-body fails after timeout_seconds instead of hanging."""
    host = server.url("/").split("/")[2]
    message = fail(server.url("/stall"), PAYLOAD_MD5, destination, retries=0, timeout_seconds=0.3)
    assert message.startswith(f"timed out after 0.3s reading from {host}. If this machine is offline")
    assert "data.url" in message and message.endswith("README.md). (gave up after 1 attempts)")


def test_http_garbage_response_is_a_fetch_error(server, destination, sleeps):
    """Something that is not HTTP at all (a broken proxy) is a FetchError, and retried."""
    host = server.url("/").split("/")[2]
    message = fail(server.url("/garbage"), PAYLOAD_MD5, destination, retries=1)
    assert message.startswith(f"invalid HTTP response from {host} (BadStatusLine: ")
    assert message.endswith("(gave up after 2 attempts)")
    assert server.hits["/garbage"] == 2


def test_unreachable_host_explains_the_offline_route(destination, sleeps):
    """A refused connection is retried, then explains how to run offline (a local data.url)."""
    port = closed_port()
    message = fail(f"http://127.0.0.1:{port}/cifar.tar.gz", PAYLOAD_MD5, destination, retries=1,
                   timeout_seconds=5)
    assert message.startswith(f"cannot reach 127.0.0.1:{port} (")
    assert "data.url" in message and "offline" in message
    assert message.endswith("README.md). (gave up after 2 attempts)")
    assert sleeps == [2]


def test_a_retry_says_so_in_one_short_line(destination, sleeps, capsys):
    """The offline hint comes once, with the final error, not with every retry."""
    port = closed_port()
    fail(f"http://127.0.0.1:{port}/cifar.tar.gz", PAYLOAD_MD5, destination, retries=1, timeout_seconds=5)
    (line,) = capsys.readouterr().err.splitlines()
    assert line.startswith(f"fetch: attempt 1/2 failed: cannot reach 127.0.0.1:{port} (")
    assert line.endswith("; retrying in 2s") and "offline" not in line


def test_a_host_that_does_not_resolve_is_not_retried(destination, sleeps, monkeypatch):
    """No DNS answer (offline, or a typo in the host): one attempt, one message, the offline route."""
    def no_dns(request, timeout):
        raise urllib.error.URLError(socket.gaierror(socket.EAI_NONAME, "Name or service not known"))

    monkeypatch.setattr(download.urllib.request, "urlopen", no_dns)
    message = fail("https://no-such-host.invalid/cifar.tar.gz", PAYLOAD_MD5, destination, retries=3)
    assert message.startswith("cannot resolve the host no-such-host.invalid (Name or service not known): "
                              "no network or no DNS on this machine. If this machine is offline")
    assert "gave up" not in message and sleeps == []


@pytest.mark.parametrize("url, message", [
    ("file:///data/my#copy/cifar.tar.gz", r"in a file:// URL, '#' and '\?' end the path .*%23"),
    ("file://otherhost/data/cifar.tar.gz", r"names a file on host 'otherhost'; a file:// URL reads this "
                                           r"machine's files only"),
])
def test_file_urls_that_would_read_another_path_are_refused(destination, url, message):
    with pytest.raises(FetchError, match=message):
        fetch(url, PAYLOAD_MD5, destination)
    assert_nothing_published(destination)


# --- local paths --------------------------------------------------------------------------------

def test_local_path_success(tiny_archive, destination):
    """A plain path is copied and verified; progress reports the file's size."""
    archive, md5 = tiny_archive
    progress = []
    assert fetch(str(archive), md5, destination,
                 progress=lambda received, total: progress.append((received, total))) == destination
    assert destination.read_bytes() == archive.read_bytes()
    size = archive.stat().st_size
    assert progress == [(size, size)]


def test_file_url_success(tiny_archive, destination):
    """A file:// URL is read from disk like a plain path."""
    archive, md5 = tiny_archive
    fetch(archive.as_uri(), md5, destination)
    assert md5_of(destination) == md5


def test_local_checksum_mismatch(tiny_archive, destination):
    archive, md5 = tiny_archive
    message = fail(str(archive), WRONG_MD5, destination)
    assert message.startswith(f"checksum mismatch for {archive}: expected md5 {WRONG_MD5}, "
                              f"got {md5}.")


def test_missing_local_file(tmp_path, destination, sleeps):
    """A missing local file is named, with a hint, and never retried."""
    missing = tmp_path / "nowhere" / "cifar-10-binary.tar.gz"
    message = fail(str(missing), PAYLOAD_MD5, destination, retries=3)
    assert message == f"local file not found: {missing} (data.url in params.yaml); check the path"
    assert sleeps == []


def test_missing_relative_local_file_explains_queued_experiments(destination, sleeps):
    message = fail("../no-such-folder/cifar-10-binary.tar.gz", PAYLOAD_MD5, destination)
    assert message == ("local file not found: ../no-such-folder/cifar-10-binary.tar.gz (data.url in "
                       "params.yaml); a relative path is read from the folder the stage runs in, "
                       "and a queued experiment (`dvc exp run --queue`) runs in a copy under "
                       ".dvc/tmp/exps: use an absolute path")


def test_unsupported_scheme(destination):
    message = fail("ftp://example.org/cifar.tar.gz", PAYLOAD_MD5, destination)
    assert message == ("data.url = 'ftp://example.org/cifar.tar.gz' has an unsupported scheme "
                       "'ftp'; use http://, https://, file:// or a local path")


# --- the stage entry point ----------------------------------------------------------------------

def run_fetch_stage(workdir: Path, url: str, md5: str) -> subprocess.CompletedProcess:
    """`python -m stages.fetch` in `workdir`, with the committed params.yaml but this url/md5."""
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    params["data"].update(url=url, md5=md5, retries=0)
    (workdir / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run([sys.executable, "-m", "stages.fetch"], cwd=workdir, env=env, text=True,
                          capture_output=True, timeout=PATIENCE_SECONDS)


def test_stage_fails_in_one_line_on_a_wrong_md5(tmp_path, tiny_archive):
    """The fetch stage exits 1 with a one-line `fetch: error:` and publishes no archive."""
    archive, md5 = tiny_archive
    workdir = tmp_path / "work"
    workdir.mkdir()
    result = run_fetch_stage(workdir, str(archive), WRONG_MD5)
    assert result.returncode == 1
    progress = re.compile(r"fetch: +[0-9.]+ MB / [0-9.]+ MB \( *[0-9.]+%\)$")
    errors = [line for line in result.stderr.splitlines() if not progress.match(line)]
    assert len(errors) == 1, result.stderr  # Only progress lines besides the error itself.
    assert errors[0].startswith(f"fetch: error: checksum mismatch for {archive}: "
                                f"expected md5 {WRONG_MD5}, got {md5}.")
    assert "Traceback" not in result.stderr
    assert_nothing_published(workdir / "data" / "raw" / "cifar-10-binary.tar.gz")


def test_stage_publishes_a_verified_archive(tmp_path, tiny_archive):
    archive, md5 = tiny_archive
    workdir = tmp_path / "work"
    workdir.mkdir()
    result = run_fetch_stage(workdir, str(archive), md5)
    assert result.returncode == 0, result.stderr
    assert md5_of(workdir / "data" / "raw" / "cifar-10-binary.tar.gz") == md5
    assert f"verified (md5 {md5})" in result.stdout


def test_data_url_may_not_be_the_fetch_output(tmp_path):
    """Pointing data.url at the file fetch writes is refused by name, and the file is kept."""
    destination = tmp_path / "data" / "raw" / "cifar-10-binary.tar.gz"
    destination.parent.mkdir(parents=True)
    destination.write_bytes(PAYLOAD)
    (tmp_path / "link.tar.gz").symlink_to(destination)
    roundabout = tmp_path / "data" / "raw" / ".." / "raw" / "cifar-10-binary.tar.gz"
    for url in (str(destination), destination.as_uri(), str(roundabout), str(tmp_path / "link.tar.gz")):
        with pytest.raises(FetchError) as caught:
            fetch(url, PAYLOAD_MD5, destination)
        assert str(caught.value) == (
            f"data.url = {url!r} is {destination}, the file this stage writes, so it cannot also "
            f"be its source; move your copy out of {destination.parent}/ (e.g. to "
            "../cifar-10-binary.tar.gz) and point data.url there")
        assert destination.read_bytes() == PAYLOAD
    assert sorted(os.listdir(destination.parent)) == [destination.name]


# --- killed mid-download: the stage in a git checkout of the project -----------------------------

def default_sigint() -> None:
    """SIGINT as a terminal's Ctrl-C finds a foreground stage: at its default, which Python turns
    into KeyboardInterrupt. A shell starts background jobs (`cmd &`) with SIGINT ignored, and
    children inherit that, so a suite run in the background would otherwise test nothing."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def start_slow_fetch(project, server) -> tuple[subprocess.Popen, Path]:
    """Start `python -m stages.fetch` on /slow and wait until it has written to its temp file."""
    project.set_params(data={"url": server.url("/slow"), "md5": hashlib.md5(SLOW_PAYLOAD).hexdigest(),
                             "retries": 0, "timeout_seconds": 4 * SLOW_SECONDS})
    project.commit("fetch from the slow server")
    process = subprocess.Popen([sys.executable, "-m", "stages.fetch"], cwd=project.root,
                               env=project.env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               text=True, preexec_fn=default_sigint)
    raw = project.root / "data" / "raw"
    deadline = time.monotonic() + PATIENCE_SECONDS
    while time.monotonic() < deadline:
        temps = list(raw.glob(".cifar-10-binary.tar.*.partial.gz")) if raw.is_dir() else []
        if temps and temps[0].stat().st_size >= CHUNK_BYTES:
            return process, temps[0]
        assert process.poll() is None, process.communicate()
        time.sleep(0.05)
    process.kill()
    raise AssertionError("fetch never started writing")


def test_sigkill_mid_download_leaves_no_trace(project, server):
    """A fetch killed with SIGKILL mid-write leaves a temp file that git does not see; the next
    run removes it and publishes the archive, and `git status` shows nothing new at any point."""
    process, temp = start_slow_fetch(project, server)
    process.send_signal(signal.SIGKILL)
    process.communicate(timeout=PATIENCE_SECONDS)
    assert temp.is_file() and temp.stat().st_size >= CHUNK_BYTES  # Killed mid-write, as intended.
    assert project.run("git", "status", "--porcelain").stdout == ""

    server.httpd.release.set()
    result = project.run(sys.executable, "-m", "stages.fetch")
    raw = project.root / "data" / "raw"
    assert sorted(os.listdir(raw)) == [".gitignore", "cifar-10-binary.tar.gz"], result.stderr
    assert (raw / "cifar-10-binary.tar.gz").read_bytes() == SLOW_PAYLOAD
    assert project.run("git", "status", "--porcelain").stdout == ""


def test_ctrl_c_mid_download_is_one_line_and_leaves_nothing(project, server):
    """SIGINT (Ctrl-C) mid-download: exit 130, one line and no traceback, no temp file left."""
    process, temp = start_slow_fetch(project, server)
    process.send_signal(signal.SIGINT)
    _, stderr = process.communicate(timeout=PATIENCE_SECONDS)
    assert process.returncode == 130, stderr
    assert stderr.splitlines()[-1] == ("fetch: interrupted (Ctrl-C); outputs are only replaced "
                                       "once complete, so run it again to finish; if DVC ran it, DVC had "
                                       "removed its committed outputs first: `git checkout -- reports/` puts "
                                       "back committed records and reports, `dvc checkout` the model and data")
    assert "Traceback" not in stderr
    assert not temp.exists()
    assert sorted(os.listdir(project.root / "data" / "raw")) == [".gitignore"]
    assert project.run("git", "status", "--porcelain").stdout == ""


# DVC runs a stage with `$SHELL -c`, or `/bin/sh -c` where SHELL is unset (as on CI machines). bash
# replaces itself with the stage; Debian's dash stays in between, and a stage that watched only its
# parent outlived `dvc` there and published its archive.
LAUNCHING_SHELLS = [shell for shell in ("/bin/sh", "/bin/dash", "/bin/bash") if Path(shell).exists()]


@pytest.mark.dvc
@pytest.mark.parametrize("shell", LAUNCHING_SHELLS)
def test_killing_dvc_stops_its_stage_and_nothing_is_published(project, server, shell):
    """SIGKILL of `dvc repro` mid-download. Before: the orphaned `python -m stages.fetch` ran on
    and, once the server sent the rest, published an archive that no dvc.lock records."""
    project.set_params(data={"url": server.url("/slow"), "md5": hashlib.md5(SLOW_PAYLOAD).hexdigest(),
                             "retries": 0, "timeout_seconds": 4 * SLOW_SECONDS})
    project.commit("fetch from the slow server")
    dvc = subprocess.Popen([sys.executable, "-m", "dvc", "repro", "fetch"], cwd=project.root,
                           env={**project.env, "SHELL": shell},
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    raw = project.root / "data" / "raw"
    deadline = time.monotonic() + PATIENCE_SECONDS
    while not (raw.is_dir() and list(raw.glob(".cifar-10-binary.tar.*.partial.gz"))):
        assert dvc.poll() is None and time.monotonic() < deadline, "fetch never started writing"
        time.sleep(0.05)
    # The stage and, where it stayed, the shell that launched it.
    launched = {pid for pid in stage_processes("stages.fetch") if dvc.pid in ancestors(pid)}
    assert launched, "no fetch stage under dvc"
    dvc.kill()
    dvc.wait(timeout=PATIENCE_SECONDS)
    deadline = time.monotonic() + PATIENCE_SECONDS
    while launched & stage_processes("stages.fetch") and time.monotonic() < deadline:
        time.sleep(0.05)
    try:
        assert not launched & stage_processes("stages.fetch"), "the stage outlived dvc"
    finally:
        server.httpd.release.set()  # What the orphan would have been waiting for.
        for pid in launched & stage_processes("stages.fetch"):
            os.kill(pid, signal.SIGKILL)
    assert sorted(os.listdir(raw)) == [".gitignore"]
    assert project.run("git", "status", "--porcelain").stdout == ""


def stage_processes(module: str) -> set[int]:
    """Live (not zombie) processes whose command line runs `python -m module`."""
    found = set()
    for entry in Path("/proc").iterdir():
        try:
            if entry.name.isdigit() and module.encode() in (entry / "cmdline").read_bytes() \
                    and (entry / "stat").read_text().rsplit(")", 1)[1].split()[0] != "Z":
                found.add(int(entry.name))
        except OSError:  # Gone meanwhile.
            continue
    return found


def parent_of(pid: int) -> int | None:
    try:
        return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])
    except OSError:  # Gone meanwhile.
        return None


def ancestors(pid: int) -> list[int]:
    """`pid`'s parent, its parent, and so on up to init; empty once `pid` is gone."""
    found = []
    while (pid := parent_of(pid)) not in (None, 0):
        found.append(pid)
    return found
