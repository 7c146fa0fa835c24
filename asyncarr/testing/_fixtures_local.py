"""Pytest fixtures for local-filesystem stores (a plugin loaded by ``tests/conftest.py``).

- ``local_store``: a fresh, empty :class:`~asyncarr.stores._local.LocalStore` on a
  temporary directory (the directory itself is created on the first write).
- ``local_location``: a :class:`~asyncarr.testing._procs.StoreLocation` naming a fresh,
  not yet existing directory by its plain path, for code that opens stores from URLs.
- ``zip_location``: the same for a fresh ``zip://`` archive path.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import pytest_asyncio

from asyncarr.stores._local import LocalStore
from asyncarr.testing._procs import StoreLocation

__all__ = ["local_location", "local_store", "zip_location"]


@pytest_asyncio.fixture
async def local_store(tmp_path: Path) -> AsyncIterator[LocalStore]:
    """A fresh, empty, writable local store below ``tmp_path``."""
    store = LocalStore(tmp_path / "local-store")
    yield store
    await store.aclose()


@pytest.fixture
def local_location(tmp_path: Path) -> StoreLocation:
    """Where a test may create a fresh hierarchy on the local disk (a plain path)."""
    return StoreLocation(url=str(tmp_path / "local-location"))


@pytest.fixture
def zip_location(tmp_path: Path) -> StoreLocation:
    """Where a test may create a fresh zip archive (``zip:///abs/path.zip``)."""
    return StoreLocation(url=f"zip://{tmp_path / 'location.zip'}")
