"""``StoreTests``: the conformance suite every store implementation must pass.

Use it by subclassing in a test module and providing two fixtures::

    class TestMyStore(StoreTests):
        @pytest.fixture
        async def store(self):            # a fresh, empty, writable store
            s = MyStore(...)
            yield s
            await s.aclose()

        @pytest.fixture
        async def read_only_store(self, store):   # same data, read-only
            yield store.with_read_only()

Class attributes tune the suite for slow backends (``many_keys``) or declare
capabilities (``conditional_writes``).
"""

from __future__ import annotations

import asyncio
import contextvars
import os
import pickle
from collections.abc import Iterator
from typing import ClassVar

import pytest

from asyncarr._types import ByteRange, OffsetRange, RangeRequest, SuffixRange
from asyncarr.abc import Store
from asyncarr.errors import (
    InvalidKeyError,
    KeyNotFoundError,
    PreconditionFailedError,
    ReadOnlyStoreError,
    UnsupportedOperationError,
    ValueTooLargeError,
)
from asyncarr.testing._fresh_process import in_fresh_process, use_pickled_stores

__all__ = ["StoreTests"]

PAYLOAD = bytes(range(256)) * 4  # 1024 bytes, every value distinct per position


class StoreTests:
    """Conformance tests for :class:`asyncarr.abc.Store` implementations."""

    many_keys: ClassVar[int] = 1100
    """Keys written for the pagination test (S3 pages at 1000)."""
    large_value_size: ClassVar[int] = 12 * 1024 * 1024
    conditional_writes: ClassVar[bool] = True
    concurrency: ClassVar[int] = 64
    pickled_copy_shares_data: ClassVar[bool] = True
    """Whether a copy unpickled in another process reaches the same data (``False``: it
    is a read-only snapshot, as for memory stores)."""
    close_before_pickling: ClassVar[bool] = False
    """Whether another process can open the store only once this one closed it (a zip
    archive has one writer at a time)."""
    transactional_operations: ClassVar[bool] = False
    """Whether a writing :meth:`Store.operation` is a transaction: its changes are seen
    outside it only once it ends, and not at all if it raises (versioned stores)."""

    # -- reads ---------------------------------------------------------------------
    async def test_get_missing_is_none(self, store: Store) -> None:
        assert await store.get("nope") is None
        assert await store.get("a/b/nope") is None
        assert await store.get("nope", ByteRange(0, 5)) is None
        assert await store.get_ranges("nope", [ByteRange(0, 1)]) is None

    async def test_set_then_get(self, store: Store) -> None:
        await store.set("a", PAYLOAD)
        assert await store.get("a") == PAYLOAD
        await store.set("a", b"second")
        assert await store.get("a") == b"second"

    async def test_empty_value(self, store: Store) -> None:
        await store.set("empty", b"")
        assert await store.get("empty") == b""
        assert await store.exists("empty")
        assert await store.getsize("empty") == 0

    async def test_nested_keys(self, store: Store) -> None:
        await store.set("x/y/z/c/0/0", b"deep")
        assert await store.get("x/y/z/c/0/0") == b"deep"
        assert await store.get("x/y/z") is None

    async def test_unusual_key_characters(self, store: Store) -> None:
        key = "dir with space/ü-%20+=,~@!&'()$;:.c.0.1"
        await store.set(key, b"odd")
        assert await store.get(key) == b"odd"
        assert key in [k async for k in store.list_prefix("dir with space/")]

    async def test_byte_ranges(self, store: Store) -> None:
        await store.set("r", PAYLOAD)
        assert await store.get("r", ByteRange(10, 20)) == PAYLOAD[10:20]
        assert await store.get("r", ByteRange(0, 1)) == PAYLOAD[:1]
        assert await store.get("r", ByteRange(1000, 2000)) == PAYLOAD[1000:]
        assert await store.get("r", OffsetRange(1000)) == PAYLOAD[1000:]
        assert await store.get("r", OffsetRange(0)) == PAYLOAD
        assert await store.get("r", SuffixRange(16)) == PAYLOAD[-16:]
        assert await store.get("r", SuffixRange(5000)) == PAYLOAD

    async def test_max_size_refuses_larger_values(self, store: Store) -> None:
        await store.set("m", PAYLOAD[:1000])
        assert await store.get("m", max_size=1000) == PAYLOAD[:1000]
        with pytest.raises(ValueTooLargeError) as info:
            await store.get("m", max_size=999)
        assert info.value.key is not None and info.value.key.endswith("m")
        assert await store.get("m", ByteRange(10, 20), max_size=10) == PAYLOAD[10:20]
        assert await store.get("m", SuffixRange(10), max_size=10) == PAYLOAD[990:1000]
        with pytest.raises(ValueTooLargeError):
            await store.get("m", OffsetRange(100), max_size=899)
        assert await store.get("missing", max_size=1) is None
        if store.supports_conditional_writes:
            got = await store.get_versioned("m", max_size=1000)
            assert got is not None and got.data == PAYLOAD[:1000]
            with pytest.raises(ValueTooLargeError):
                await store.get_versioned("m", max_size=999)

    async def test_get_ranges(self, store: Store) -> None:
        await store.set("r", PAYLOAD)
        ranges: list[RangeRequest] = [
            ByteRange(0, 4),
            ByteRange(100, 200),
            SuffixRange(8),
            OffsetRange(1020),
        ]
        got = await store.get_ranges("r", ranges)
        assert got == [PAYLOAD[0:4], PAYLOAD[100:200], PAYLOAD[-8:], PAYLOAD[1020:]]

    async def test_large_value(self, store: Store) -> None:
        value = (PAYLOAD * (self.large_value_size // len(PAYLOAD) + 1))[: self.large_value_size]
        await store.set("big", value)
        assert await store.getsize("big") == len(value)
        assert await store.get("big") == value
        mid = len(value) // 2
        assert await store.get("big", ByteRange(mid, mid + 100)) == value[mid : mid + 100]

    async def test_exists_and_getsize(self, store: Store) -> None:
        assert not await store.exists("k")
        await store.set("k", b"12345")
        assert await store.exists("k")
        assert await store.getsize("k") == 5
        with pytest.raises(KeyNotFoundError):
            await store.getsize("missing")

    # -- deletes -----------------------------------------------------------------------
    async def test_delete(self, store: Store) -> None:
        await store.set("d", b"1")
        await store.delete("d")
        assert await store.get("d") is None
        assert not await store.exists("d")
        await store.delete("d")  # missing key: no-op
        await store.delete("never/was/here")

    async def test_delete_prefix(self, store: Store) -> None:
        for k in ("p/a", "p/b/c", "q/a", "pp"):
            await store.set(k, b"v")
        await store.delete_prefix("p/")
        assert sorted([k async for k in store.list_prefix("")]) == ["pp", "q/a"]

    # -- listing ------------------------------------------------------------------------
    async def test_list_prefix_and_dir(self, store: Store) -> None:
        keys = ["zarr.json", "a/zarr.json", "a/c/0/0", "a/c/0/1", "a/c/1/0", "b/zarr.json", "ab"]
        for k in keys:
            await store.set(k, b"x")
        assert sorted([k async for k in store.list_prefix("")]) == sorted(keys)
        assert sorted([k async for k in store.list_prefix("a/")]) == [
            "a/c/0/0",
            "a/c/0/1",
            "a/c/1/0",
            "a/zarr.json",
        ]
        assert sorted([k async for k in store.list_prefix("a")]) == sorted(
            ["a/zarr.json", "a/c/0/0", "a/c/0/1", "a/c/1/0", "ab"]
        )
        assert [k async for k in store.list_prefix("nothing/")] == []
        assert await store.list_dir("") == ["a", "ab", "b", "zarr.json"]
        assert await store.list_dir("a") == ["c", "zarr.json"]
        assert await store.list_dir("a/") == ["c", "zarr.json"]
        assert await store.list_dir("a/c") == ["0", "1"]
        assert await store.list_dir("missing") == []

    async def test_list_many_keys(self, store: Store) -> None:
        n = self.many_keys
        sem = asyncio.Semaphore(self.concurrency)

        async def put(i: int) -> None:
            async with sem:
                await store.set(f"m/c/{i}", b"")

        await asyncio.gather(*(put(i) for i in range(n)))
        listed = [k async for k in store.list_prefix("m/")]
        assert len(listed) == n
        assert set(listed) == {f"m/c/{i}" for i in range(n)}
        assert len(await store.list_dir("m/c")) == n

    # -- atomic creation and conditional writes --------------------------------------------
    async def test_set_if_not_exists(self, store: Store) -> None:
        assert await store.set_if_not_exists("once", b"first") is True
        assert await store.set_if_not_exists("once", b"second") is False
        assert await store.get("once") == b"first"

    async def test_set_if_not_exists_races(self, store: Store) -> None:
        results = await asyncio.gather(
            *(store.set_if_not_exists("race", str(i).encode()) for i in range(16))
        )
        assert sum(results) == 1
        winner = results.index(True)
        assert await store.get("race") == str(winner).encode()

    async def test_conditional_writes(self, store: Store) -> None:
        if not self.conditional_writes:
            assert not store.supports_conditional_writes
            pytest.skip("store declares no conditional writes")
        assert store.supports_conditional_writes
        assert await store.get_versioned("cw") is None
        await store.set_if_version("cw", b"v1", None)
        with pytest.raises(PreconditionFailedError):
            await store.set_if_version("cw", b"again", None)
        first = await store.get_versioned("cw")
        assert first is not None and first.data == b"v1"
        await store.set_if_version("cw", b"v2", first.version)
        with pytest.raises(PreconditionFailedError):
            await store.set_if_version("cw", b"stale", first.version)
        second = await store.get_versioned("cw")
        assert second is not None and second.data == b"v2"
        assert second.version != first.version
        await store.set("cw", b"v3")  # an unconditional write also changes the version
        with pytest.raises(PreconditionFailedError):
            await store.set_if_version("cw", b"stale", second.version)

    async def test_conditional_write_race_has_one_winner(self, store: Store) -> None:
        if not self.conditional_writes:
            pytest.skip("store declares no conditional writes")
        await store.set("ctr", b"0")
        base = await store.get_versioned("ctr")
        assert base is not None

        async def attempt(i: int) -> bool:
            try:  # every racer writes bytes different from the base value
                await store.set_if_version("ctr", str(i + 1).encode(), base.version)
            except PreconditionFailedError:
                return False
            return True

        results = await asyncio.gather(*(attempt(i) for i in range(8)))
        assert sum(results) == 1
        assert await store.get("ctr") == str(results.index(True) + 1).encode()

    async def test_conditional_delete(self, store: Store) -> None:
        await store.set("cd", b"one")
        first = await store.get_versioned("cd") if store.supports_conditional_writes else None
        try:
            await store.delete_if_version("cd", first.version if first else "0")
        except UnsupportedOperationError:
            assert await store.get("cd") == b"one"
            pytest.skip(
                "store has no conditional deletes (callers fall back to conditional writes)"
            )
        except PreconditionFailedError:
            pytest.fail("delete_if_version refused the current version")
        assert await store.get("cd") is None
        await store.set("cd", b"two")
        second = await store.get_versioned("cd")
        assert second is not None
        await store.set("cd", b"three")
        with pytest.raises(PreconditionFailedError):
            await store.delete_if_version("cd", second.version)
        assert await store.get("cd") == b"three"
        await store.delete("cd")
        with pytest.raises(PreconditionFailedError):
            await store.delete_if_version("cd", second.version)

    # -- concurrency --------------------------------------------------------------------
    async def test_concurrent_writes_and_reads(self, store: Store) -> None:
        n = 200
        sem = asyncio.Semaphore(self.concurrency)

        async def put(i: int) -> None:
            async with sem:
                await store.set(f"conc/{i}", i.to_bytes(4, "little") * 100)

        async def read(i: int) -> bytes | None:
            async with sem:
                return await store.get(f"conc/{i}")

        await asyncio.gather(*(put(i) for i in range(n)))
        got = await asyncio.gather(*(read(i) for i in range(n)))
        assert got == [i.to_bytes(4, "little") * 100 for i in range(n)]

    # -- operations ------------------------------------------------------------------------
    async def test_operations(self, store: Store) -> None:
        """:meth:`Store.operation` brackets calls: inside one, its own changes are seen;
        operations nest; after a writing one ends, its changes are there. A transactional
        store keeps them from other tasks until then, and drops them if it raises."""
        async with store.operation("write a and b", write=True):
            await store.set("op/a", b"1")
            await store.set("op/b", b"2")
            assert await store.get("op/a") == b"1"
            async with store.operation("nested", write=True):
                await store.delete("op/b")
                assert await store.set_if_not_exists("op/n", b"n")
            assert await store.get("op/b") is None
            assert sorted([k async for k in store.list_prefix("op/")]) == ["op/a", "op/n"]
            outside = asyncio.create_task(store.get("op/a"), context=contextvars.Context())
            if self.transactional_operations:
                assert await outside is None
            else:
                await outside
        assert await store.get("op/a") == b"1"
        assert await store.get("op/b") is None
        async with store.operation("read", write=False):
            assert await store.get("op/n") == b"n"

        async def fails() -> None:
            async with store.operation("fails", write=True):
                await store.set("op/c", b"3")
                raise LookupError("boom")

        with pytest.raises(LookupError):
            await fails()
        if self.transactional_operations:
            assert await store.get("op/c") is None
        else:
            assert await store.get("op/c") == b"3"

    # -- synchronous twins (codec worker threads) -------------------------------------------
    async def test_sync_writes_and_reads(self, store: Store, read_only_store: Store) -> None:
        """``write_local`` / ``write_local_many`` / ``read_local`` where the store has them:
        the same values as the async API, ``None`` deletes, and the same refusals."""
        if not store.supports_sync_writes:
            pytest.skip("no synchronous writes")
        await store.set("s/old", b"old")
        await store.set("t/gone", b"x")
        produced: list[str] = []

        def items() -> Iterator[tuple[str, bytes | None]]:  # consumed lazily, in order
            for key, value in [
                ("s/a", b"A"),
                ("s/old", b"new"),
                ("t/gone", None),
                ("u/v/w", PAYLOAD),
                ("t/never-there", None),
            ]:
                produced.append(key)
                yield key, value

        store.write_local_many(items())
        assert produced == ["s/a", "s/old", "t/gone", "u/v/w", "t/never-there"]
        assert await store.get("s/a") == b"A"
        assert await store.get("s/old") == b"new"
        assert await store.get("t/gone") is None
        assert await store.get("u/v/w") == PAYLOAD
        assert {k async for k in store.list_prefix("")} == {"s/a", "s/old", "u/v/w"}
        store.write_local("s/a", None)
        store.write_local("s/b", b"B")
        assert await store.get("s/a") is None
        assert await store.get("s/b") == b"B"
        if store.supports_sync_reads:
            assert store.read_local("s/b") == b"B"
            assert store.read_local("s/a") is None
        with pytest.raises(InvalidKeyError):
            store.write_local_many([("ok", b"x"), ("../escape", b"x")])
        with pytest.raises(ReadOnlyStoreError):
            read_only_store.write_local_many([("s/b", b"changed")])
        assert await store.get("s/b") == b"B"

    async def test_read_local_ranges_into(self, store: Store) -> None:
        """Where the store has synchronous reads: ranges land one after another in the
        caller's buffer, asked for once with their total as far as the value reaches (a
        range past the end comes back short, allocating nothing); a missing key is
        ``None`` and asks for no buffer."""
        if not store.supports_sync_reads:
            pytest.skip("no synchronous reads")
        await store.set("r/v", PAYLOAD)
        n = len(PAYLOAD)
        asked: list[int] = []

        def buffer(size: int) -> memoryview:
            asked.append(size)
            return memoryview(bytearray(size + 5))  # bigger than asked is allowed

        ranges = [ByteRange(2, 10), ByteRange(n - 3, n + 100), ByteRange(n + 5, 10**12)]
        views = store.read_local_ranges_into("r/v", ranges, buffer)
        assert views is not None
        assert [bytes(v) for v in views] == [PAYLOAD[2:10], PAYLOAD[-3:], b""]
        assert asked == [11]
        assert views[0].obj is views[1].obj  # one buffer, the caller's
        assert store.read_local_ranges_into("r/missing", ranges, buffer) is None
        assert asked == [11]

    async def test_read_local_into(self, store: Store) -> None:
        """Where the store has synchronous reads: a whole value through the caller's
        buffer: what fits is exactly the value (a view of the buffer, for stores that read
        into it), what does not fit still comes back whole; a missing key is ``None``."""
        if not store.supports_sync_reads:
            pytest.skip("no synchronous reads")
        await store.set("w/v", PAYLOAD)
        await store.set("w/empty", b"")
        n = len(PAYLOAD)
        for size in (n - 1, n, n + 1, 2 * n):
            buffer = memoryview(bytearray(size))
            got = store.read_local_into("w/v", buffer)
            assert got is not None and bytes(got) == PAYLOAD, size
            if isinstance(got, memoryview) and got.obj is buffer.obj:
                assert size > n  # a value that fills the buffer exactly is re-read whole
            empty = store.read_local_into("w/empty", buffer)
            assert empty is not None and bytes(empty) == b""
        assert store.read_local_into("w/missing", memoryview(bytearray(8))) is None

    # -- key validation -------------------------------------------------------------------
    @pytest.mark.parametrize(
        "bad_key",
        ["../escape", "a/../../b", "/abs", "a//b", "a/./b", "nul\x00byte", "", "back\\slash"],
    )
    async def test_invalid_keys_refused(self, store: Store, bad_key: str) -> None:
        with pytest.raises(InvalidKeyError):
            await store.set(bad_key, b"x")
        with pytest.raises(InvalidKeyError):
            await store.get(bad_key)
        with pytest.raises(InvalidKeyError):
            await store.delete(bad_key)

    async def test_listing_prefix_cannot_escape(self, store: Store) -> None:
        with pytest.raises(InvalidKeyError):
            [k async for k in store.list_prefix("../")]

    # -- read-only mode ----------------------------------------------------------------------
    async def test_read_only_refuses_writes(self, store: Store, read_only_store: Store) -> None:
        await store.set("ro", b"data")
        assert read_only_store.read_only
        assert await read_only_store.get("ro") == b"data"
        with pytest.raises(ReadOnlyStoreError):
            await read_only_store.set("ro", b"changed")
        with pytest.raises(ReadOnlyStoreError):
            await read_only_store.set_if_not_exists("new", b"x")
        with pytest.raises(ReadOnlyStoreError):
            await read_only_store.delete("ro")
        with pytest.raises(ReadOnlyStoreError):
            await read_only_store.delete_prefix("")
        assert await store.get("ro") == b"data"

    # -- identity -------------------------------------------------------------------------
    async def test_repr_is_safe(self, store: Store) -> None:
        text = repr(store) + str(store) + store.endpoint_key
        for secret in self.secrets():
            assert secret not in text

    def secrets(self) -> list[str]:
        """Credential strings that must never appear in repr/str (override)."""
        return []

    # -- pickling ---------------------------------------------------------------------------
    async def test_pickled_copies_work_in_a_fresh_process(
        self, store: Store, read_only_store: Store
    ) -> None:
        """The store and its read-only view, pickled, are used in a spawned process: both
        read what this process wrote, the writable copy writes what this process then
        reads, the read-only one refuses, and neither shows a credential."""
        await store.set("pickled/a", PAYLOAD)
        if self.close_before_pickling:
            await store.aclose()
        blobs = [pickle.dumps(store), pickle.dumps(read_only_store)]
        new_value = b"written by another process"
        writable, read_only = await in_fresh_process(
            use_pickled_stores, blobs, "pickled/a", "pickled/b", new_value
        )
        for report in (writable, read_only):
            assert report["pid"] != os.getpid()
            assert report["type"] is type(store)
            assert report["value"] == PAYLOAD
            assert not store.lists_every_key or "pickled/a" in report["listed"]
            for secret in self.secrets():
                assert secret not in report["repr"]
        assert read_only["read_only"]
        assert read_only["refused"]
        if not self.pickled_copy_shares_data:
            assert writable["read_only"]
            assert writable["refused"]
            assert await store.get("pickled/b") is None
            return
        assert not writable["read_only"]
        assert writable["refused"] is None
        check = pickle.loads(blobs[0]) if self.close_before_pickling else store
        try:
            assert await check.get("pickled/b") == new_value
        finally:
            if check is not store:
                await check.aclose()

    async def test_close_is_idempotent(self, store: Store) -> None:
        await store.set("k", b"v")
        await store.aclose()
        await store.aclose()
