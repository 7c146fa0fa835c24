from collections.abc import AsyncIterator
from typing import Any

import pytest

from asyncarr.abc import Store
from asyncarr.stores import MemoryStore, store_from_url
from asyncarr.testing import StoreTests


class TestMemoryStore(StoreTests):
    pickled_copy_shares_data = False

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
        async def get(
            self, key: str, byte_range: Any = None, *, max_size: int | None = None
        ) -> bytes | None:
            return await super().get(key, byte_range, max_size=max_size)

    # reads must keep going through an overridden get()
    assert not Instrumented().supports_sync_reads


async def test_synchronous_writes_and_subclasses_that_override_set() -> None:
    from asyncarr.errors import InvalidKeyError, PreconditionFailedError, ReadOnlyStoreError

    store = MemoryStore()
    assert store.supports_sync_writes  # codec workers store encoded chunks themselves
    store.write_local("a/b", b"one")
    first = await store.get_versioned("a/b")
    store.write_local("a/b", b"two")
    second = await store.get_versioned("a/b")
    assert first is not None and second is not None
    assert second.data == b"two" and second.version != first.version  # a new version
    with pytest.raises(PreconditionFailedError):
        await store.set_if_version("a/b", b"stale", first.version)
    store.write_local("a/b", None)  # None deletes
    assert await store.get("a/b") is None
    store.write_local("a/b", None)  # deleting a missing key is fine
    with pytest.raises(InvalidKeyError):
        store.write_local("../escape", b"x")
    with pytest.raises(ReadOnlyStoreError):
        store.with_read_only().write_local("a/c", b"x")

    class Instrumented(MemoryStore):
        async def set(self, key: str, value: bytes) -> None:
            await super().set(key, value)

    # writes must keep going through an overridden set()
    assert not Instrumented().supports_sync_writes


async def test_array_writes_through_an_overridden_set() -> None:
    import numpy as np

    import asyncarr

    seen: list[str] = []

    class Counting(MemoryStore):
        async def set(self, key: str, value: bytes) -> None:
            seen.append(key)
            await super().set(key, value)

    store = Counting()
    arr = await asyncarr.create_array(store, shape=(8, 8), chunks=(4, 4), dtype="i4")
    await arr.write(np.arange(64, dtype="i4").reshape(8, 8))
    assert sorted(k for k in seen if "/" in k) == ["c/0/0", "c/0/1", "c/1/0", "c/1/1"]
    np.testing.assert_array_equal(await arr.read(), np.arange(64).reshape(8, 8))
