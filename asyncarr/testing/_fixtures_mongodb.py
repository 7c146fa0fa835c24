"""pytest fixtures for the MongoDB store (loaded as a plugin by ``tests/conftest.py``).

- ``mongodb_server`` (session): a running nx-27017 on 127.0.0.1 (or the
  server in ``ASYNCARR_TEST_MONGODB_URI``).
- ``mongodb_location`` (function): a :class:`StoreLocation` in a fresh
  database, dropped afterwards.
- ``mongodb_store`` (function): a writable :class:`MongoDBStore` there.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Iterator

import pytest
import pytest_asyncio

from asyncarr.stores._mongodb import MongoDBStore, mongodb_store_from_url
from asyncarr.testing._procs import StoreLocation
from asyncarr.testing._servers_mongodb import MongoServer, drop_database, mongodb_server_context

__all__ = ["mongodb_location", "mongodb_server", "mongodb_store"]

SERVER_SELECTION_TIMEOUT_MS = "10000"


@pytest.fixture(scope="session")
def mongodb_server() -> Iterator[MongoServer]:
    """A MongoDB-compatible server for the whole test session."""
    with mongodb_server_context() as server:
        yield server


@pytest.fixture
def mongodb_location(mongodb_server: MongoServer) -> Iterator[StoreLocation]:
    """A fresh, empty ``mongodb://127.0.0.1:PORT/<db>/zarr/root`` location."""
    database = f"asyncarr_{uuid.uuid4().hex[:16]}"
    url = mongodb_server.url_for(
        database, "zarr", "root", serverSelectionTimeoutMS=SERVER_SELECTION_TIMEOUT_MS
    )
    yield StoreLocation(url=url, storage_options={})
    drop_database(mongodb_server, database)


@pytest_asyncio.fixture
async def mongodb_store(mongodb_location: StoreLocation) -> AsyncIterator[MongoDBStore]:
    """A writable store at ``mongodb_location``, closed afterwards."""
    store = mongodb_store_from_url(
        mongodb_location.url, read_only=False, storage_options=mongodb_location.storage_options
    )
    yield store
    await store.aclose()
