"""Start and stop real server processes on 127.0.0.1 for tests."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

__all__ = [
    "ServerProcess",
    "StoreLocation",
    "find_executable",
    "free_port",
    "run_server",
    "wait_for_http",
    "wait_for_port",
]

LOOPBACK = "127.0.0.1"


def free_port() -> int:
    """A TCP port on 127.0.0.1 that is free right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((LOOPBACK, 0))
        port: int = s.getsockname()[1]
        return port


def wait_for_port(
    port: int, *, timeout: float = 60.0, proc: subprocess.Popen[bytes] | None = None
) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"server exited early with code {proc.returncode}")
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            s.settimeout(0.5)
            if s.connect_ex((LOOPBACK, port)) == 0:
                return
        time.sleep(0.1)
    raise TimeoutError(f"nothing listened on {LOOPBACK}:{port} within {timeout}s")


def wait_for_http(
    url: str,
    *,
    timeout: float = 60.0,
    ok: Callable[[int], bool] = lambda s: s < 500,
    proc: subprocess.Popen[bytes] | None = None,
) -> None:
    """Poll ``url`` until it answers with a status ``ok`` accepts."""
    deadline = time.monotonic() + timeout
    last: object = None
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"server exited early with code {proc.returncode}")
        try:
            with urllib.request.urlopen(url, timeout=2) as resp:
                if ok(resp.status):
                    return
        except urllib.error.HTTPError as exc:
            if ok(exc.code):
                return
            last = exc
        except OSError as exc:
            last = exc
        time.sleep(0.2)
    raise TimeoutError(f"{url} did not become ready within {timeout}s (last: {last})")


def find_executable(name: str, *extra_dirs: str | os.PathLike[str]) -> str | None:
    """``name`` on PATH, next to the running interpreter, or in ``extra_dirs``."""
    for d in [*extra_dirs, Path(sys.executable).parent]:
        candidate = Path(d) / name
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return str(candidate)
    return shutil.which(name)


@dataclass
class ServerProcess:
    """A running server; ``log_path`` holds its combined output."""

    proc: subprocess.Popen[bytes]
    port: int
    log_path: Path
    workdir: Path
    extra: dict[str, object] = field(default_factory=dict)

    @property
    def endpoint(self) -> str:
        return f"http://{LOOPBACK}:{self.port}"

    def log_tail(self, n: int = 4000) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-n:]
        except OSError:
            return ""


@contextlib.contextmanager
def run_server(
    cmd: Sequence[str],
    *,
    port: int,
    ready: Callable[[ServerProcess], None] | None = None,
    env: dict[str, str] | None = None,
    name: str = "server",
    startup_timeout: float = 90.0,
) -> Iterator[ServerProcess]:
    """Run ``cmd`` in its own process group; wait until ready; kill it afterwards.

    ``ready`` defaults to waiting for the port to accept connections. On a
    start-up failure the server's log is included in the error.
    """
    workdir = Path(tempfile.mkdtemp(prefix=f"asyncarr-{name}-"))
    log_path = workdir / "server.log"
    log = log_path.open("wb")
    proc = subprocess.Popen(
        list(cmd),
        stdout=log,
        stderr=subprocess.STDOUT,
        cwd=workdir,
        env={**os.environ, **(env or {})},
        start_new_session=True,
    )
    server = ServerProcess(proc, port, log_path, workdir)
    try:
        try:
            if ready is None:
                wait_for_port(port, timeout=startup_timeout, proc=proc)
            else:
                ready(server)
        except Exception as exc:
            raise RuntimeError(
                f"{name} failed to start: {exc}\n--- log ---\n{server.log_tail()}"
            ) from exc
        yield server
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)
        log.close()
        shutil.rmtree(workdir, ignore_errors=True)


@dataclass(frozen=True)
class StoreLocation:
    """Where a test may create a fresh, empty hierarchy: a URL plus its options."""

    url: str
    storage_options: dict[str, object] = field(default_factory=dict)
