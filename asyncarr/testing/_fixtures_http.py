"""pytest fixtures for the HTTP store (loaded as a plugin by ``tests/conftest.py``).

- ``http_server`` (session): an aiohttp static file server on 127.0.0.1
  serving a temporary folder (``Range``, ``HEAD`` and ``416`` supported).
- ``http_location`` (function): an :class:`HTTPLocation` for a fresh,
  empty sub-folder: ``.url``, ``.storage_options`` and ``.local_dir``, so a
  test writes files locally and reads them through HTTP.
- ``http_store`` (function): an :class:`HTTPStore` for ``http_location``.

The server runs on its own event loop in a background thread, so it keeps
serving while a test blocks its own thread (e.g. in the sync facade).
:func:`serve_app` runs any aiohttp application the same way, for tests that
need a misbehaving server.
"""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import tempfile
import threading
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import pytest_asyncio
from aiohttp import web

from asyncarr.stores._http import HTTPStore, http_store_from_url
from asyncarr.testing._procs import LOOPBACK, StoreLocation

__all__ = [
    "HTTPLocation",
    "HTTPServer",
    "http_location",
    "http_server",
    "http_store",
    "serve_app",
    "static_app",
]


@dataclass(frozen=True)
class HTTPServer:
    """A running loopback HTTP server; ``root`` is the folder it serves (if any)."""

    url: str
    port: int
    root: Path | None = None


@dataclass(frozen=True)
class HTTPLocation(StoreLocation):
    """A served URL together with the local folder behind it."""

    local_dir: Path = field(default_factory=Path)

    def write(self, key: str, value: bytes) -> None:
        """Create the file for ``key`` (parents included) under :attr:`local_dir`."""
        path = self.local_dir.joinpath(*key.split("/"))
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(value)


def static_app(root: Path) -> web.Application:
    """An application serving the files under ``root``.

    Like a bucket, and unlike aiohttp's own static route (403), it answers
    404 for anything that is not a regular file, directories included.
    ``GET``/``HEAD`` with ``Range`` (206, 416) come from aiohttp's
    :class:`~aiohttp.web.FileResponse`.
    """
    base = root.resolve()

    async def serve(request: web.Request) -> web.StreamResponse:
        path = base.joinpath(*request.match_info["path"].split("/")).resolve()
        if not path.is_relative_to(base) or not path.is_file():
            raise web.HTTPNotFound()
        return web.FileResponse(path)

    app = web.Application()
    app.router.add_get("/{path:.+}", serve, allow_head=True)
    return app


@contextlib.contextmanager
def serve_app(
    make_app: Callable[[], web.Application], *, timeout: float = 30.0
) -> Iterator[HTTPServer]:
    """Run an aiohttp application on a free 127.0.0.1 port in a background thread."""
    started = threading.Event()
    state: dict[str, object] = {}

    async def main(stop: asyncio.Event) -> None:
        runner = web.AppRunner(make_app(), access_log=None)
        await runner.setup()
        try:
            site = web.TCPSite(runner, LOOPBACK, 0)
            await site.start()
            state["port"] = runner.addresses[0][1]
            started.set()
            await stop.wait()
        finally:
            await runner.cleanup()

    def run() -> None:
        loop = asyncio.new_event_loop()
        stop = asyncio.Event()
        state["loop"], state["stop"] = loop, stop
        try:
            loop.run_until_complete(main(stop))
        except BaseException as exc:  # reported to the starting thread
            state["error"] = exc
            started.set()
        finally:
            loop.close()

    thread = threading.Thread(target=run, name="asyncarr-http-server", daemon=True)
    thread.start()
    if not started.wait(timeout) or "error" in state:
        raise RuntimeError(f"HTTP test server failed to start: {state.get('error')!r}")
    port = int(state["port"])  # type: ignore[call-overload]
    try:
        yield HTTPServer(url=f"http://{LOOPBACK}:{port}", port=port)
    finally:
        loop = state["loop"]
        stop = state["stop"]
        assert isinstance(loop, asyncio.AbstractEventLoop)
        assert isinstance(stop, asyncio.Event)
        with contextlib.suppress(RuntimeError):  # loop already gone
            loop.call_soon_threadsafe(stop.set)
        thread.join(timeout)


@pytest.fixture(scope="session")
def http_server() -> Iterator[HTTPServer]:
    """A static file server on 127.0.0.1 for the whole session."""
    root = Path(tempfile.mkdtemp(prefix="asyncarr-http-"))
    try:
        with serve_app(lambda: static_app(root)) as server:
            yield HTTPServer(url=server.url, port=server.port, root=root)
    finally:
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture
def http_location(http_server: HTTPServer) -> Iterator[HTTPLocation]:
    """A fresh, empty served folder: write into ``.local_dir``, read from ``.url``."""
    assert http_server.root is not None
    name = f"loc-{uuid.uuid4().hex[:12]}"
    local_dir = http_server.root / name
    local_dir.mkdir()
    yield HTTPLocation(url=f"{http_server.url}/{name}", storage_options={}, local_dir=local_dir)
    shutil.rmtree(local_dir, ignore_errors=True)


@pytest_asyncio.fixture
async def http_store(http_location: HTTPLocation) -> AsyncIterator[HTTPStore]:
    """A (read-only) store reading ``http_location`` over HTTP, closed afterwards."""
    store = http_store_from_url(
        http_location.url, read_only=True, storage_options=http_location.storage_options
    )
    yield store
    await store.aclose()
