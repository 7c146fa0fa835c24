"""ManagedStore over real Store implementations: retries, truncation, hedging, stats."""

from __future__ import annotations

import asyncio
import gc
import weakref
from collections.abc import AsyncIterator, Sequence
from typing import Any

import pytest

from asyncarr._types import ByteRange, RangeRequest
from asyncarr.config import RetryConfig, StoreLimits
from asyncarr.errors import (
    DeadlineExceededError,
    KeyNotFoundError,
    PermissionDeniedError,
    PreconditionFailedError,
    ThrottledError,
    TransientStoreError,
    TruncatedReadError,
)
from asyncarr.runtime import ManagedStore, gather_all, limiter_for, managed, store_stats
from asyncarr.stores import MemoryStore

FAST_RETRY = RetryConfig(
    max_attempts=5, base_backoff=0.0005, max_backoff=0.002, deadline=30, request_timeout=5
)


def limits(**kw: Any) -> StoreLimits:
    kw.setdefault("retry", FAST_RETRY)
    kw.setdefault("adaptive", False)
    return StoreLimits(**kw)


class FlakyStore(MemoryStore):
    """A memory store whose operations fail a set number of times before working.

    ``faults[op]`` is a list of exceptions (or ``"truncate"``/``"hang"``/
    ``"write-then-fail"``) consumed one per call of ``op``.
    """

    def __init__(self, **kw: Any) -> None:
        super().__init__(**kw)
        self.faults: dict[str, list[Any]] = {}
        self.calls: dict[str, int] = {}

    async def _fault(self, op: str) -> Any:
        self.calls[op] = self.calls.get(op, 0) + 1
        pending = self.faults.get(op)
        if not pending:
            return None
        fault = pending.pop(0)
        if isinstance(fault, BaseException):
            raise fault
        if fault == "hang":
            await asyncio.Event().wait()
        return fault

    async def get(
        self, key: str, byte_range: RangeRequest | None = None, *, max_size: int | None = None
    ) -> bytes | None:
        fault = await self._fault("get")
        data = await super().get(key, byte_range, max_size=max_size)
        if fault == "truncate" and data:
            return data[: len(data) // 2]
        return data

    async def get_ranges(self, key: str, ranges: Sequence[RangeRequest]) -> list[bytes] | None:
        fault = await self._fault("get_ranges")
        parts = await super().get_ranges(key, ranges)
        if fault == "truncate" and parts:
            parts[0] = parts[0][:1]
        return parts

    async def set(self, key: str, value: bytes) -> None:
        await self._fault("set")
        await super().set(key, value)

    async def set_if_not_exists(self, key: str, value: bytes) -> bool:
        fault = await self._fault("set_if_not_exists")
        written = await super().set_if_not_exists(key, value)
        if fault == "write-then-fail":
            raise TransientStoreError("connection reset after the write", store=self, key=key)
        return written

    async def set_if_version(self, key: str, value: bytes, version: str | None) -> None:
        fault = await self._fault("set_if_version")
        await super().set_if_version(key, value, version)
        if fault == "write-then-fail":
            raise TransientStoreError("connection reset after the write", store=self, key=key)

    async def list_prefix(self, prefix: str) -> AsyncIterator[str]:
        self.calls["list_prefix"] = self.calls.get("list_prefix", 0) + 1
        fail_after = self.faults.get("list_prefix_fail_after")
        n = 0
        async for key in super().list_prefix(prefix):
            if fail_after and n == fail_after[0]:
                fail_after.pop(0)
                raise TransientStoreError("listing page failed", store=self)
            n += 1
            yield key


async def test_round_trip_over_memory_store() -> None:
    store = MemoryStore(limits=limits())
    m = managed(store)
    assert managed(store) is m
    await m.set("a/b/c", b"0123456789")
    assert await m.get("a/b/c") == b"0123456789"
    assert await m.get("a/b/c", ByteRange(2, 5), expected_length=3) == b"234"
    assert await m.get("missing", expected_length=10) is None
    assert await m.get_ranges("a/b/c", [ByteRange(0, 2), ByteRange(8, 10)]) == [b"01", b"89"]
    assert await m.get_ranges("missing", [ByteRange(0, 1)]) is None
    assert await m.exists("a/b/c")
    assert await m.getsize("a/b/c") == 10
    with pytest.raises(KeyNotFoundError):
        await m.getsize("missing")
    assert await m.set_if_not_exists("x", b"1")
    assert not await m.set_if_not_exists("x", b"2")
    v = await m.get_versioned("x")
    assert v is not None
    assert v.data == b"1"
    await m.set_if_version("x", b"3", v.version)
    with pytest.raises(PreconditionFailedError):
        await m.set_if_version("x", b"4", v.version)
    assert sorted([k async for k in m.list_prefix("")]) == ["a/b/c", "x"]
    assert await m.list_dir("a") == ["b"]
    await m.delete("x")
    assert not await m.exists("x")
    await m.delete_prefix("a/")
    assert [k async for k in m.list_prefix("")] == []
    stats = m.stats
    assert stats == store_stats(store)
    assert stats.endpoint == store.endpoint_key
    assert stats.in_flight == 0
    assert stats.failed == 2  # getsize of a missing key, the lost precondition
    assert stats.completed > 15
    assert stats.bytes_written == 10 + 1 + 1
    assert stats.bytes_read >= 10 + 3 + 4 + 1
    assert stats.latency_p50 is not None
    assert stats.latency_p50 <= stats.latency_p95 <= stats.latency_p99  # type: ignore[operator]


def test_managed_is_cached_per_store_without_keeping_it_alive() -> None:
    store = MemoryStore()
    m = managed(store)
    assert managed(store) is m
    assert m.store is store
    view = store.with_read_only()
    assert managed(view) is not m  # another store object, same endpoint budget
    assert managed(view).limiter is m.limiter
    ref = weakref.ref(store)
    del store, view, m
    gc.collect()
    assert ref() is None


async def test_transient_faults_are_retried_and_counted() -> None:
    store = FlakyStore(limits=limits())
    await store.set("k", b"value")
    store.faults["get"] = [TransientStoreError("500"), ThrottledError("SlowDown")]
    m = ManagedStore(store)
    assert await m.get("k") == b"value"
    assert store.calls["get"] == 3
    stats = m.stats
    assert (stats.retries, stats.throttled, stats.completed, stats.failed) == (2, 1, 1, 0)
    assert m.limiter.in_flight == 0


async def test_permanent_errors_are_not_retried() -> None:
    store = FlakyStore(limits=limits())
    store.faults["get"] = [PermissionDeniedError("403", store=store, key="k")]
    m = ManagedStore(store)
    with pytest.raises(PermissionDeniedError):
        await m.get("k")
    assert store.calls["get"] == 1
    assert m.stats.failed == 1
    assert m.limiter.in_flight == 0


async def test_attempts_exhausted_re_raise_with_note() -> None:
    store = FlakyStore(limits=limits(retry=FAST_RETRY.with_(max_attempts=2)))
    store.faults["set"] = [TransientStoreError(f"502 #{i}") for i in range(5)]
    m = ManagedStore(store)
    with pytest.raises(TransientStoreError, match="502 #1") as info:
        await m.set("k", b"v")
    assert any("after 2 attempts" in n for n in info.value.__notes__)
    assert store.calls["set"] == 2


async def test_short_read_is_retried_and_never_returned() -> None:
    store = FlakyStore(limits=limits())
    await store.set("chunk", bytes(range(100)))
    store.faults["get"] = ["truncate"]
    m = ManagedStore(store)
    assert await m.get("chunk", expected_length=100) == bytes(range(100))
    assert store.calls["get"] == 2
    assert m.stats.truncated == 1
    store.faults["get"] = ["truncate"] * 10
    with pytest.raises(TruncatedReadError):
        await m.get("chunk", expected_length=100)


async def test_short_range_in_get_ranges_is_retried() -> None:
    store = FlakyStore(limits=limits())
    await store.set("shard", bytes(50))
    store.faults["get_ranges"] = ["truncate"]
    m = ManagedStore(store)
    parts = await m.get_ranges(
        "shard", [ByteRange(0, 10), ByteRange(10, 30)], expected_lengths=[10, None]
    )
    assert parts == [bytes(10), bytes(20)]
    assert store.calls["get_ranges"] == 2
    with pytest.raises(ValueError, match="expected_lengths"):
        await m.get_ranges("shard", [ByteRange(0, 1)], expected_lengths=[1, 2])


async def test_hung_attempt_times_out_and_is_retried() -> None:
    store = FlakyStore(limits=limits(retry=FAST_RETRY.with_(request_timeout=0.05)))
    await store.set("k", b"v")
    store.faults["get"] = ["hang"]
    m = ManagedStore(store)
    assert await m.get("k") == b"v"
    assert m.stats.timeouts == 1
    assert m.stats.retries == 1
    assert m.limiter.in_flight == 0


async def test_deadline_exceeded_surfaces() -> None:
    retry = RetryConfig(max_attempts=100, base_backoff=0.01, max_backoff=0.01, deadline=0.1)
    store = FlakyStore(limits=limits(retry=retry))
    store.faults["exists"] = []
    store.faults["get"] = [TransientStoreError("down")] * 1000
    with pytest.raises(DeadlineExceededError) as info:
        await ManagedStore(store).get("k")
    assert isinstance(info.value.__cause__, TransientStoreError)


async def test_hung_attempt_is_cut_at_the_deadline() -> None:
    retry = RetryConfig(max_attempts=100, request_timeout=None, deadline=0.05)
    store = FlakyStore(limits=limits(retry=retry))
    store.faults["get"] = ["hang"]
    m = ManagedStore(store)
    with pytest.raises(DeadlineExceededError, match="after 1 attempt") as info:
        await m.get("k")
    assert isinstance(info.value.__cause__, TransientStoreError)
    assert m.limiter.in_flight == 0


async def test_time_queued_for_a_slot_does_not_count_against_the_deadline() -> None:
    retry = FAST_RETRY.with_(deadline=0.05, request_timeout=0.05)
    store = MemoryStore(limits=limits(max_concurrency=1, retry=retry))
    await store.set("k", b"v")
    m = ManagedStore(store)
    async with m.limiter:  # another user holds the only slot for longer than the deadline
        task = asyncio.create_task(m.get("k"))
        await asyncio.sleep(0.2)
        assert m.limiter.waiting == 1
    assert await task == b"v"


async def test_on_a_failing_service_retries_go_first_so_the_verdict_comes_early() -> None:
    """Every GET fails transiently: the first chunk to exhaust its attempts must fail the
    whole fan-out long before every other chunk has had its first attempt (retries used to
    queue behind all of them: the error took as long as 3 attempts of every chunk)."""
    retry = FAST_RETRY.with_(max_attempts=3)
    store = FlakyStore(limits=limits(max_concurrency=4, retry=retry))
    store.faults["get"] = [TransientStoreError("down")] * 10_000
    failing_get = store.get

    async def slow_failing_get(key: str, byte_range: Any = None, **kwargs: Any) -> Any:
        await asyncio.sleep(0.005)  # a round trip: backoff ends before the next wave
        return await failing_get(key, byte_range, **kwargs)

    store.get = slow_failing_get  # type: ignore[method-assign]
    m = ManagedStore(store)
    with pytest.raises(TransientStoreError, match="after 3 attempts"):
        await gather_all(*(m.get(f"c/{i}") for i in range(500)))
    assert store.calls["get"] < 100  # not 3 x 500
    assert m.limiter.in_flight == 0 and m.limiter.waiting == 0


async def test_a_retry_waiting_for_a_slot_is_bounded_by_the_deadline() -> None:
    """A retry's wait for a slot counts against the operation's deadline (a first attempt's
    does not: see above): with the slot taken by someone else for good, the retry fails
    at its deadline instead of waiting for ever."""
    retry = FAST_RETRY.with_(deadline=0.3, request_timeout=0.3)
    store = FlakyStore(limits=limits(max_concurrency=1, retry=retry))
    store.faults["get"] = [TransientStoreError("down")]
    m = ManagedStore(store)
    real_get = store.get
    holders: list[asyncio.Task[None]] = []

    async def grab_slot_after_first_failure(key: str, byte_range: Any = None, **kwargs: Any) -> Any:
        try:
            return await real_get(key, byte_range, **kwargs)
        finally:
            if not holders:
                holders.append(asyncio.get_running_loop().create_task(hold()))

    async def hold() -> None:
        async with m.limiter:
            await asyncio.sleep(5)

    store.get = grab_slot_after_first_failure  # type: ignore[method-assign]
    try:
        with pytest.raises(DeadlineExceededError):
            await asyncio.wait_for(m.get("k"), 3)
    finally:  # the holder must not outlive the test (the loop is shared with later ones)
        for task in holders:
            task.cancel()
        await asyncio.gather(*holders, return_exceptions=True)


async def test_throttling_shrinks_the_endpoint_limit() -> None:
    store = FlakyStore(limits=limits(adaptive=True, max_concurrency=16))
    await store.set("k", b"v")
    store.faults["get"] = [ThrottledError("SlowDown")]
    m = ManagedStore(store)
    assert m.limiter is limiter_for(store)
    assert await m.get("k") == b"v"
    # halved by the 503, then +1/8 for the successful retry
    assert m.limiter.current_limit == pytest.approx(8 + 1 / 8)
    assert m.stats.current_limit == m.limiter.current_limit


async def test_conditional_writes_survive_a_fault_after_the_write() -> None:
    store = FlakyStore(limits=limits())
    m = ManagedStore(store)
    store.faults["set_if_not_exists"] = ["write-then-fail"]
    assert await m.set_if_not_exists("lock", b"mine")
    assert store.calls["set_if_not_exists"] == 2
    assert not await m.set_if_not_exists("lock", b"other")
    v = await m.get_versioned("lock")
    assert v is not None
    store.faults["set_if_version"] = ["write-then-fail"]
    await m.set_if_version("lock", b"next", v.version)
    assert await store.get("lock") == b"next"
    with pytest.raises(PreconditionFailedError):  # a real lost race still fails
        await m.set_if_version("lock", b"late", v.version)


async def test_listing_restarts_after_a_fault_without_duplicates() -> None:
    store = FlakyStore(limits=limits())
    for i in range(20):
        await store.set(f"p/{i:02d}", b"x")
    store.faults["list_prefix_fail_after"] = [7, 12]
    m = ManagedStore(store)
    keys = [k async for k in m.list_prefix("p/")]
    assert sorted(keys) == [f"p/{i:02d}" for i in range(20)]
    assert len(keys) == 20
    assert store.calls["list_prefix"] == 3
    assert m.limiter.in_flight == 0


async def test_listing_gives_up_after_max_attempts() -> None:
    store = FlakyStore(limits=limits(retry=FAST_RETRY.with_(max_attempts=3)))
    for i in range(5):
        await store.set(f"k{i}", b"x")
    store.faults["list_prefix_fail_after"] = [0] * 10
    with pytest.raises(TransientStoreError, match="listing page failed") as info:
        _ = [k async for k in ManagedStore(store).list_prefix("")]
    assert any("after 3 attempts" in n for n in info.value.__notes__)


async def test_consumer_breaking_out_of_a_listing_holds_no_slot() -> None:
    store = MemoryStore(limits=limits(max_concurrency=1))
    for i in range(5):
        await store.set(f"k{i}", b"x")
    m = ManagedStore(store)
    async for key in m.list_prefix(""):
        assert m.limiter.in_flight == 0  # nothing held while the consumer works
        assert await m.exists(key)  # nested calls cannot deadlock at limit 1
        break
    assert m.limiter.in_flight == 0


class SlowOnceStore(MemoryStore):
    """GETs are instant, except that the first GET of ``slow_key`` hangs."""

    def __init__(self, slow_key: str, **kw: Any) -> None:
        super().__init__(**kw)
        self.slow_key = slow_key
        self.slow_started = asyncio.Event()
        self.slow_cancelled = False
        self.gets = 0

    async def get(
        self, key: str, byte_range: RangeRequest | None = None, *, max_size: int | None = None
    ) -> bytes | None:
        self.gets += 1
        if key == self.slow_key and not self.slow_started.is_set():
            self.slow_started.set()
            try:
                await asyncio.Event().wait()
            except asyncio.CancelledError:
                self.slow_cancelled = True
                raise
        await asyncio.sleep(0.001)
        return await super().get(key, byte_range, max_size=max_size)


async def test_hedged_read_wins_over_a_stuck_first_attempt() -> None:
    store = SlowOnceStore("slow", limits=limits(hedge_after_p95=True))
    await store.set("fast", b"f")
    await store.set("slow", b"s" * 10)
    m = ManagedStore(store)
    for _ in range(25):  # observe the latency distribution first
        assert await m.get("fast") == b"f"
    assert m.stats.hedged == 0
    gets_before = store.gets
    assert await asyncio.wait_for(m.get("slow", expected_length=10), 10) == b"s" * 10
    assert store.slow_cancelled  # the loser was cancelled
    assert store.gets == gets_before + 2
    stats = m.stats
    assert stats.hedged == 1
    assert stats.retries == 0
    assert stats.in_flight == 0


async def test_no_hedging_without_enough_samples_or_when_disabled() -> None:
    store = SlowOnceStore("slow", limits=limits(hedge_after_p95=True))
    await store.set("slow", b"s")
    m = ManagedStore(store)
    task = asyncio.create_task(m.get("slow"))
    await asyncio.wait_for(store.slow_started.wait(), 5)
    await asyncio.sleep(0.05)
    assert store.gets == 1  # no p95 yet: no second request
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert store.slow_cancelled
    assert m.limiter.in_flight == 0


async def test_cancelling_a_hedged_get_cancels_both_requests() -> None:
    class AlwaysSlow(SlowOnceStore):
        async def get(
            self, key: str, byte_range: RangeRequest | None = None, *, max_size: int | None = None
        ) -> bytes | None:
            if key == "stuck":
                self.gets += 1
                await asyncio.Event().wait()
            return await super().get(key, byte_range, max_size=max_size)

    store = AlwaysSlow("none", limits=limits(hedge_after_p95=True))
    await store.set("fast", b"f")
    m = ManagedStore(store)
    for _ in range(25):
        await m.get("fast")
    before = store.gets
    task = asyncio.create_task(m.get("stuck"))
    for _ in range(200):
        if store.gets == before + 2:
            break
        await asyncio.sleep(0.01)
    assert store.gets == before + 2
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert m.limiter.in_flight == 0


async def test_time_queued_for_a_slot_never_triggers_a_hedge() -> None:
    """The hedge clock starts when a request holds its slot: GETs waiting behind others
    are not slow requests (a large read used to hedge nearly all of them, doubling the
    load on the service exactly when it was busiest)."""

    class Timed(MemoryStore):
        latency = 0.03

        async def get(
            self, key: str, byte_range: RangeRequest | None = None, *, max_size: int | None = None
        ) -> bytes | None:
            await asyncio.sleep(self.latency)
            return await super().get(key, byte_range, max_size=max_size)

    store = Timed(limits=limits(hedge_after_p95=True, max_concurrency=2))
    await store.set("k", b"v")
    m = ManagedStore(store)
    for _ in range(25):  # p95 of ~30 ms, measured from the slot on
        await m.get("k")
    store.latency = 0.005  # now each request is much faster than that, but 40 queue for 2 slots
    assert await asyncio.gather(*(m.get("k") for _ in range(40))) == [b"v"] * 40
    assert m.stats.hedged <= 2  # (a stalled event loop on a busy machine, at most)
