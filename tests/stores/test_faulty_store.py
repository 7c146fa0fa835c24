"""FaultyStore: every rule, counters, determinism, and full delegation."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from asyncarr._types import ByteRange, OffsetRange, SuffixRange
from asyncarr.abc import Store
from asyncarr.errors import (
    ConfigError,
    PermissionDeniedError,
    ReadOnlyStoreError,
    ThrottledError,
    TransientStoreError,
    TruncatedReadError,
)
from asyncarr.stores import MemoryStore
from asyncarr.stores._faulty import FaultyStore
from asyncarr.stores._local import LocalStore
from asyncarr.testing import StoreTests

VALUE = bytes(range(200))


class TestFaultyStoreDelegation(StoreTests):
    """With no rules the wrapper is a faithful store."""

    pickled_copy_shares_data = False  # it wraps a memory store

    @pytest.fixture
    async def store(self) -> AsyncIterator[Store]:
        s = FaultyStore(MemoryStore(), seed=1)
        yield s
        await s.aclose()

    @pytest.fixture
    async def read_only_store(self, store: FaultyStore) -> Store:
        return store.with_read_only()


@pytest.fixture
async def faulty() -> FaultyStore:
    store = FaultyStore(MemoryStore(), seed=123)
    for key in ("a/1", "a/2", "b/1"):
        await store.set(key, VALUE)
    store.stats.reset()
    return store


async def test_fail_by_op_and_glob(faulty: FaultyStore) -> None:
    rule = faulty.fail(ops="get", keys="a/*")
    with pytest.raises(TransientStoreError, match="injected fail fault on get") as info:
        await faulty.get("a/1")
    assert info.value.key == "a/1"
    assert info.value.store is faulty
    assert await faulty.get("b/1") == VALUE  # other keys pass
    assert await faulty.exists("a/1")  # other operations pass
    assert rule.injected == 1
    assert faulty.stats.calls["get"] == 2
    assert faulty.stats.calls["exists"] == 1
    assert faulty.stats.injected["fail"] == 1
    assert faulty.stats.by_op[("fail", "get")] == 1


async def test_fail_times_predicate_and_groups(faulty: FaultyStore) -> None:
    faulty.fail(ops="write", keys=lambda k: k.endswith("2"), times=2)
    for _ in range(2):
        with pytest.raises(TransientStoreError):
            await faulty.set("x/2", b"v")
    await faulty.set("x/2", b"v")  # the rule is spent
    await faulty.set("x/1", b"v")
    assert faulty.stats.injected["fail"] == 2
    assert await faulty.get("x/2") == b"v"


async def test_error_kinds(faulty: FaultyStore) -> None:
    faulty.fail(ops="get", keys="a/1", error=PermissionDeniedError)
    faulty.fail(ops="get", keys="a/2", error=OSError("disk on fire"))
    faulty.fail(ops="get", keys="b/1", error=lambda op, key: ValueError(f"{op}:{key}"))
    with pytest.raises(PermissionDeniedError):
        await faulty.get("a/1")
    with pytest.raises(OSError, match="disk on fire"):
        await faulty.get("a/2")
    with pytest.raises(ValueError, match="get:b/1"):
        await faulty.get("b/1")


async def test_fail_after_loses_the_response_not_the_write(faulty: FaultyStore) -> None:
    faulty.fail(ops="set", when="after", times=1)
    with pytest.raises(TransientStoreError):
        await faulty.set("new", b"written")
    assert await faulty.get("new") == b"written"


async def test_throttle(faulty: FaultyStore) -> None:
    faulty.throttle(rate=1.0, ops=["list_prefix", "list_dir"])
    with pytest.raises(ThrottledError):
        [k async for k in faulty.list_prefix("")]
    with pytest.raises(ThrottledError):
        await faulty.list_dir("a")
    assert faulty.stats.injected["throttle"] == 2
    assert await faulty.get("a/1") == VALUE


async def test_delay_orders_completion(faulty: FaultyStore) -> None:
    rule = faulty.delay(ops="get", keys="a/1", seconds=(0.2, 0.3))
    done: list[str] = []

    async def read(key: str) -> None:
        await faulty.get(key)
        done.append(key)

    await asyncio.gather(read("a/1"), read("b/1"))
    assert done == ["b/1", "a/1"]
    assert rule.injected == 1
    assert faulty.stats.injected["delay"] == 1


async def test_truncate_ranged_read_returns_short_bytes(faulty: FaultyStore) -> None:
    faulty.truncate(ops=["get", "get_ranges"], keep_fraction=0.25)
    assert await faulty.get("a/1", ByteRange(0, 100)) == VALUE[:25]
    got = await faulty.get_ranges("a/1", [ByteRange(0, 10), ByteRange(100, 140)])
    assert got == [VALUE[:10], VALUE[100:110]]  # the stream broke in the last part
    assert faulty.stats.injected["truncate"] == 2


async def test_truncate_full_read_raises(faulty: FaultyStore) -> None:
    faulty.truncate(keep_fraction=0.5)
    with pytest.raises(TruncatedReadError, match="100 of 200 bytes") as info:
        await faulty.get("a/1")
    assert isinstance(info.value, TransientStoreError)  # retried by the scheduler
    for rng in (OffsetRange(10), SuffixRange(10)):
        with pytest.raises(TruncatedReadError):
            await faulty.get("a/1", rng)
    assert await faulty.get("missing") is None  # nothing to truncate
    await faulty.set("empty", b"")
    assert await faulty.get("empty") == b""
    assert faulty.stats.injected["truncate"] == 3


async def test_clear_remove_and_stats(faulty: FaultyStore) -> None:
    keep = faulty.fail(ops="exists")
    drop = faulty.fail(ops="get")
    faulty.remove(drop)
    assert faulty.rules == [keep]
    assert await faulty.get("a/1") == VALUE
    with pytest.raises(TransientStoreError):
        await faulty.exists("a/1")
    faulty.clear()
    assert faulty.rules == []
    assert await faulty.exists("a/1")
    assert faulty.stats.injected["fail"] == 1  # clear keeps the counters
    faulty.stats.reset()
    assert not faulty.stats.calls
    assert not faulty.stats.injected


async def _pattern(seed: int | None, n: int = 200) -> list[bool]:
    store = FaultyStore(MemoryStore({"k": b"v"}), seed=seed)
    store.delay(ops="get", seconds=0.0, rate=0.5)  # draws from its own generator
    store.fail(ops="get", rate=0.3)
    out = []
    for _ in range(n):
        try:
            await store.get("k")
            out.append(False)
        except TransientStoreError:
            out.append(True)
    return out


async def test_deterministic_by_seed() -> None:
    first = await _pattern(42)
    assert first == await _pattern(42)
    assert first != await _pattern(43)
    assert 0 < sum(first) < len(first)


async def test_identity_and_read_only_view(tmp_path: Path) -> None:
    inner = LocalStore(tmp_path / "r")
    store = FaultyStore(inner, close_inner=False)
    other = FaultyStore(inner)
    assert store.endpoint_key not in (inner.endpoint_key, other.endpoint_key)
    assert store.limits == inner.limits
    assert store.supports_conditional_writes
    assert not store.supports_local_files  # reads must pass through the wrapper
    assert "FaultyStore(LocalStore(" in repr(store)
    rule = store.fail(ops="get", keys="k")
    view = store.with_read_only()
    await store.set("k", b"v")
    with pytest.raises(TransientStoreError):
        await view.get("k")  # the view shares the rules ...
    assert rule.injected == 1  # ... and the counters
    with pytest.raises(ReadOnlyStoreError):
        await view.set("k", b"x")
    await store.aclose()
    assert await inner.get("k") == b"v"  # close_inner=False left it usable


@pytest.mark.parametrize(
    ("method", "kwargs"),
    [
        ("fail", {"ops": "nope"}),
        ("fail", {"rate": 1.5}),
        ("fail", {"ops": []}),
        ("fail", {"times": -1}),
        ("fail", {"when": "during"}),
        ("delay", {"seconds": (0.2, 0.1)}),
        ("delay", {"seconds": -1.0}),
        ("truncate", {"ops": "set"}),
        ("truncate", {"keep_fraction": 1.0}),
        ("throttle", {"rate": -0.1}),
    ],
)
async def test_rule_validation(method: str, kwargs: dict[str, object]) -> None:
    store = FaultyStore(MemoryStore())
    with pytest.raises(ConfigError):
        getattr(store, method)(**kwargs)
    assert store.rules == []
