"""pytest fixtures for the Azure Blob store against Azurite (a plugin loaded by conftest).

- ``azurite_server`` (session): one in-memory Azurite for the whole run.
- ``azure_location`` (function): a fresh container, as a
  :class:`~asyncarr.testing._procs.StoreLocation` ``az://<container>/data``
  with a connection string; the container is deleted afterwards.
- ``azure_store`` (function): an open :class:`AzureBlobStore` on that location.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Iterator

import pytest
import pytest_asyncio

from asyncarr.stores._azure import AzureBlobStore, azure_store_from_url
from asyncarr.testing._procs import StoreLocation
from asyncarr.testing._servers_azure import (
    AzuriteServer,
    find_azurite_blob,
    new_container_name,
    start_azurite,
)

__all__ = [
    "azure_location",
    "azure_store",
    "azurite_server",
    "create_container",
    "delete_container",
]


@pytest.fixture(scope="session")
def azurite_server() -> Iterator[AzuriteServer]:
    """An Azurite blob service on 127.0.0.1 for the test session (fails loudly if missing)."""
    executable, missing = None, None
    try:
        executable = find_azurite_blob()
    except FileNotFoundError as exc:
        missing = str(exc)
    if missing is not None:  # outside the except block: one clear message, no chained noise
        pytest.fail(missing, pytrace=False)
    with start_azurite(executable) as server:
        yield server


def create_container(server: AzuriteServer, name: str, *, public: bool = False) -> None:
    """Create container ``name`` (publicly readable with ``public=True``)."""
    from azure.storage.blob import BlobServiceClient

    with BlobServiceClient.from_connection_string(server.connection_string) as service:
        service.create_container(name, public_access="container" if public else None)


def delete_container(server: AzuriteServer, name: str) -> None:
    """Delete container ``name`` if it exists."""
    from azure.core.exceptions import ResourceNotFoundError
    from azure.storage.blob import BlobServiceClient

    with (
        BlobServiceClient.from_connection_string(server.connection_string) as service,
        contextlib.suppress(ResourceNotFoundError),
    ):
        service.delete_container(name)


@pytest.fixture
def azure_location(azurite_server: AzuriteServer) -> Iterator[StoreLocation]:
    """A fresh, empty container on Azurite as ``az://<container>/data``."""
    name = new_container_name()
    create_container(azurite_server, name)
    yield StoreLocation(
        url=f"az://{name}/data",
        storage_options={"connection_string": azurite_server.connection_string},
    )
    delete_container(azurite_server, name)


@pytest_asyncio.fixture
async def azure_store(azure_location: StoreLocation) -> AsyncIterator[AzureBlobStore]:
    """An open :class:`~asyncarr.stores._azure.AzureBlobStore` on ``azure_location``."""
    store = azure_store_from_url(
        azure_location.url, read_only=False, storage_options=azure_location.storage_options
    )
    yield store
    await store.aclose()
