"""A MongoDB-compatible server on 127.0.0.1 for tests: nx-27017, or a real one.

``nx-27017`` (pip package of the same name) speaks the MongoDB wire protocol
on top of SQLite. It is started in the foreground with isolated in-memory
databases (``--data-dir memory``), its pid and log files inside the
temporary work directory, on a free port.

Set ``ASYNCARR_TEST_MONGODB_URI`` (e.g. ``mongodb://127.0.0.1:27017``) to run
the same tests against a real MongoDB instead.
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Iterator
from dataclasses import dataclass
from urllib.parse import urlsplit, urlunsplit

from asyncarr.testing._procs import (
    LOOPBACK,
    ServerProcess,
    find_executable,
    free_port,
    run_server,
    wait_for_port,
)

__all__ = [
    "ENV_URI",
    "MongoServer",
    "mongodb_server_context",
    "nx_27017_executable",
    "run_nx_27017",
]

ENV_URI = "ASYNCARR_TEST_MONGODB_URI"


@dataclass(frozen=True)
class MongoServer:
    """A reachable MongoDB endpoint.

    ``uri`` is a connection string without a database
    (``mongodb://127.0.0.1:PORT``, possibly with credentials and options).
    """

    uri: str
    kind: str
    process: ServerProcess | None = None

    def url_for(self, database: str, collection: str, prefix: str = "", **options: str) -> str:
        """The asyncarr store URL ``<uri>/<database>/<collection>/<prefix>?<options>``."""
        parts = urlsplit(self.uri)
        path = "/" + "/".join(p for p in (database, collection, prefix) if p)
        query = "&".join(
            [q for q in parts.query.split("&") if q] + [f"{k}={v}" for k, v in options.items()]
        )
        return urlunsplit((parts.scheme, parts.netloc, path, query, ""))


def nx_27017_executable() -> str:
    """Path of the ``nx-27017`` console script; a clear error if it is not installed."""
    exe = find_executable("nx-27017")
    if exe is None:
        raise RuntimeError(
            "the MongoDB store tests need the nx-27017 server: pip install nx-27017 "
            f"(`make test` installs it), or set {ENV_URI} to a running MongoDB"
        )
    return exe


def _ping(uri: str, timeout: float) -> None:
    from pymongo import MongoClient

    deadline = time.monotonic() + timeout
    last: Exception | None = None
    while time.monotonic() < deadline:
        client: MongoClient[dict[str, object]] = MongoClient(
            uri, serverSelectionTimeoutMS=2000, connectTimeoutMS=2000
        )
        try:
            client.admin.command("ping")
            return
        except Exception as exc:
            last = exc
            time.sleep(0.2)
        finally:
            client.close()
    raise TimeoutError(f"{uri} did not answer ping within {timeout}s (last: {last})")


@contextlib.contextmanager
def run_nx_27017(*, startup_timeout: float = 60.0) -> Iterator[MongoServer]:
    """Run nx-27017 on a free loopback port for the duration of the block."""
    exe = nx_27017_executable()
    port = free_port()
    uri = f"mongodb://{LOOPBACK}:{port}"

    def ready(server: ServerProcess) -> None:
        wait_for_port(port, timeout=startup_timeout, proc=server.proc)
        _ping(uri, startup_timeout)

    cmd = [
        exe,
        "--host", LOOPBACK,
        "--port", str(port),
        "--data-dir", "memory",
        "--log-file", "nx-27017.log",
        "--pid-file", "nx-27017.pid",
    ]  # fmt: skip
    with run_server(
        cmd, port=port, ready=ready, name="nx-27017", startup_timeout=startup_timeout
    ) as proc:
        yield MongoServer(uri=uri, kind="nx-27017", process=proc)


@contextlib.contextmanager
def mongodb_server_context() -> Iterator[MongoServer]:
    """The server named by ``ASYNCARR_TEST_MONGODB_URI``, else a fresh nx-27017."""
    external = os.environ.get(ENV_URI)
    if external:
        yield MongoServer(uri=external.rstrip("/"), kind="external")
        return
    with run_nx_27017() as server:
        yield server


def drop_database(server: MongoServer, database: str) -> None:
    """Remove a test database (errors ignored: the server may be gone already)."""
    from pymongo import MongoClient

    client: MongoClient[dict[str, object]] = MongoClient(server.uri, serverSelectionTimeoutMS=5000)
    try:
        with contextlib.suppress(Exception):
            client.drop_database(database)
    finally:
        client.close()
