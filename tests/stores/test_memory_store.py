from collections.abc import AsyncIterator
from typing import Any

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


def test_synchronous_reads_and_subclasses_that_override_get() -> None:
    from asyncarr._types import ByteRange, SuffixRange
    from asyncarr.errors import InvalidKeyError

    store = MemoryStore({"a/b": b"0123456789"})
    assert store.supports_sync_reads  # codec workers read chunks straight from the dict
    assert store.read_local("a/b") == b"0123456789"
    assert store.read_local("a/missing") is None
    assert store.read_local_ranges("a/b", [ByteRange(2, 4), SuffixRange(3)]) == [b"23", b"789"]
    assert store.read_local_ranges("nope", [ByteRange(0, 1)]) is None
    with pytest.raises(InvalidKeyError):
        store.read_local("../escape")

    class Instrumented(MemoryStore):
        async def get(self, key: str, byte_range: Any = None) -> bytes | None:
            return await super().get(key, byte_range)

    # reads must keep going through an overridden get()
    assert not Instrumented().supports_sync_reads
