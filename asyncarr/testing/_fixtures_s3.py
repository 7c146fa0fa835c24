"""pytest fixtures for S3: real moto and SeaweedFS servers on 127.0.0.1.

Loaded as a plugin by the test suite's ``conftest.py``:

- ``moto_s3_server``, ``seaweedfs_s3_server`` (session): a running
  :class:`~asyncarr.testing._servers_s3.S3TestServer`, started on first use.
- ``s3_server`` (function, parametrised ``moto`` / ``seaweedfs``).
- ``s3_location`` (function): a :class:`~asyncarr.testing._procs.StoreLocation`
  ``s3://<fresh bucket>/root`` plus the ``storage_options`` to reach it; the
  bucket is deleted afterwards. Synchronous, so sync-facade tests can use it.
- ``s3_store`` (function): an :class:`~asyncarr.stores._s3.S3Store` on a fresh
  bucket, closed afterwards.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import pytest

from asyncarr.stores._s3 import S3Store, s3_store_from_url
from asyncarr.testing import _servers_s3 as servers
from asyncarr.testing._procs import StoreLocation
from asyncarr.testing._servers_s3 import S3TestServer

__all__: list[str] = []  # fixtures are found by pytest by name, not imported

S3_SERVERS = ("moto", "seaweedfs")


@pytest.fixture(scope="session", name="moto_s3_server")
def _moto_s3_server() -> Iterator[S3TestServer]:
    with servers.moto_s3_server() as server:
        yield server


@pytest.fixture(scope="session", name="seaweedfs_s3_server")
def _seaweedfs_s3_server() -> Iterator[S3TestServer]:
    with servers.seaweedfs_s3_server() as server:
        yield server


@pytest.fixture(params=S3_SERVERS, name="s3_server")
def _s3_server(request: pytest.FixtureRequest) -> S3TestServer:
    server: S3TestServer = request.getfixturevalue(f"{request.param}_s3_server")
    return server


@pytest.fixture(name="s3_location")
def _s3_location(s3_server: S3TestServer) -> Iterator[StoreLocation]:
    bucket = s3_server.create_bucket()
    try:
        yield StoreLocation(url=f"s3://{bucket}/root", storage_options=s3_server.storage_options())
    finally:
        s3_server.delete_bucket(bucket)


@pytest.fixture(name="s3_store")
async def _s3_store(s3_location: StoreLocation) -> AsyncIterator[S3Store]:
    store = s3_store_from_url(
        s3_location.url, read_only=False, storage_options=s3_location.storage_options
    )
    try:
        yield store
    finally:
        await store.aclose()
