"""pytest fixtures for the GCS store (loaded as a plugin by ``tests/conftest.py``).

- ``gcs_server`` (session): an in-memory fake-gcs-server on 127.0.0.1.
- ``gcs_location`` (function): a :class:`StoreLocation` ``gs://<fresh bucket>/data``
  whose ``storage_options`` point at the server (anonymous); the bucket is
  emptied and deleted afterwards.
- ``gcs_store`` (function): a writable :class:`GCSStore` at ``gcs_location``.
"""

from __future__ import annotations

import asyncio
import urllib.request
import uuid
import warnings
from collections.abc import AsyncIterator, Iterator

import pytest
import pytest_asyncio

from asyncarr.stores._gcs import GCSStore, gcs_store_from_url
from asyncarr.testing._procs import ServerProcess, StoreLocation
from asyncarr.testing._servers_gcs import create_bucket, fake_gcs_server

__all__ = ["gcs_location", "gcs_server", "gcs_store", "new_gcs_bucket"]


@pytest.fixture(scope="session")
def gcs_server() -> Iterator[ServerProcess]:
    """fake-gcs-server for the whole test session (fails loudly if not installed)."""
    with fake_gcs_server() as server:
        yield server


def new_gcs_bucket(server: ServerProcess) -> str:
    """Create a bucket with a fresh random name on ``server`` and return the name."""
    name = f"asyncarr-{uuid.uuid4().hex[:16]}"
    create_bucket(server.endpoint, name)
    return name


async def _drop_bucket(server: ServerProcess, bucket: str) -> None:
    """Empty and delete ``bucket``, so the in-memory server does not keep growing."""
    store = GCSStore(bucket, endpoint=server.endpoint, anon=True)
    try:
        await store.delete_prefix("")
    finally:
        await store.aclose()
    await asyncio.to_thread(_delete_bucket, server.endpoint, bucket)


def _delete_bucket(endpoint: str, bucket: str) -> None:
    request = urllib.request.Request(f"{endpoint}/storage/v1/b/{bucket}", method="DELETE")
    with urllib.request.urlopen(request, timeout=10) as resp:
        resp.read()


@pytest_asyncio.fixture
async def gcs_location(gcs_server: ServerProcess) -> AsyncIterator[StoreLocation]:
    """A fresh, empty ``gs://<bucket>/data`` location on the fake server."""
    bucket = new_gcs_bucket(gcs_server)
    yield StoreLocation(
        url=f"gs://{bucket}/data",
        storage_options={"endpoint": gcs_server.endpoint, "anon": True},
    )
    try:
        await _drop_bucket(gcs_server, bucket)
    except Exception as exc:  # clean-up must not hide the test's own outcome
        warnings.warn(f"could not delete GCS test bucket {bucket!r}: {exc}", stacklevel=1)


@pytest_asyncio.fixture
async def gcs_store(gcs_location: StoreLocation) -> AsyncIterator[GCSStore]:
    """A writable store at ``gcs_location``, closed afterwards."""
    store = gcs_store_from_url(
        gcs_location.url, read_only=False, storage_options=gcs_location.storage_options
    )
    yield store
    await store.aclose()
