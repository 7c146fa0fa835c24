from collections.abc import AsyncIterator

import pytest

from asyncarr.abc import Store
from asyncarr.stores import MemoryStore, store_from_url
from asyncarr.testing import StoreTests


class TestMemoryStore(StoreTests):
    @pytest.fixture
    async def store(self) -> AsyncIterator[Store]:
        s = MemoryStore()
        yield s
        await s.aclose()

    @pytest.fixture
    async def read_only_store(self, store: MemoryStore) -> Store:
        return store.with_read_only()


async def test_named_memory_urls_share_data() -> None:
    a = store_from_url("memory://shared-test")
    b = store_from_url("memory://shared-test", read_only=True)
    await a.set("k", b"v")
    assert await b.get("k") == b"v"
