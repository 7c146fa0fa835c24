"""LayeredStore passes the store conformance suite over every base store (real servers)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import ClassVar

import pytest

from asyncarr.abc import Store
from asyncarr.stores import LayeredStore, MemoryStore, store_from_url
from asyncarr.stores._local import LocalStore
from asyncarr.testing import StoreTests
from asyncarr.testing._procs import StoreLocation


class _LayeredSuite(StoreTests):
    """``refresh_interval=0``: a handle sees another process's commits at once, as the
    suite expects of a store (by default a handle checks at most once a second)."""

    transactional_operations: ClassVar[bool] = True

    @pytest.fixture
    async def read_only_store(self, store: LayeredStore) -> AsyncIterator[Store]:
        ro = store.with_read_only()
        yield ro
        await ro.aclose()


class TestOverMemory(_LayeredSuite):
    pickled_copy_shares_data = False

    @pytest.fixture
    async def store(self) -> AsyncIterator[Store]:
        s = LayeredStore(MemoryStore(), refresh_interval=0.0)
        yield s
        await s.aclose()


class TestOverLocal(_LayeredSuite):
    @pytest.fixture
    async def store(self, tmp_path) -> AsyncIterator[Store]:  # type: ignore[no-untyped-def]
        s = LayeredStore(LocalStore(str(tmp_path)), refresh_interval=0.0)
        yield s
        await s.aclose()


class _OverServer(_LayeredSuite):
    """Over a cloud store: fewer keys for the listing test (each commit is a few
    requests; concurrent calls are committed together)."""

    many_keys: ClassVar[int] = 300
    large_value_size: ClassVar[int] = 3 * 1024 * 1024

    async def _open(self, location: StoreLocation) -> LayeredStore:
        self._secrets = [
            v
            for k, v in location.storage_options.items()
            if isinstance(v, str) and any(w in k for w in ("secret", "key", "token", "password"))
        ]
        options = {**location.storage_options, "refresh_interval": 0.0}
        store = store_from_url(f"layered::{location.url}", storage_options=options)
        assert isinstance(store, LayeredStore)
        return store

    def secrets(self) -> list[str]:
        return self._secrets


@pytest.mark.servers
class TestOverS3(_OverServer):
    @pytest.fixture
    async def store(self, s3_location: StoreLocation) -> AsyncIterator[Store]:
        s = await self._open(s3_location)
        yield s
        await s.aclose()


@pytest.mark.servers
class TestOverGCS(_OverServer):
    @pytest.fixture
    async def store(self, gcs_location: StoreLocation) -> AsyncIterator[Store]:
        s = await self._open(gcs_location)
        yield s
        await s.aclose()


@pytest.mark.servers
class TestOverAzure(_OverServer):
    @pytest.fixture
    async def store(self, azure_location: StoreLocation) -> AsyncIterator[Store]:
        s = await self._open(azure_location)
        yield s
        await s.aclose()


@pytest.mark.servers
class TestOverMongoDB(_OverServer):
    @pytest.fixture
    async def store(self, mongodb_location: StoreLocation) -> AsyncIterator[Store]:
        s = await self._open(mongodb_location)
        yield s
        await s.aclose()
