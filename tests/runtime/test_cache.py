"""ChunkCache: LRU order, byte budget, read-only values, invalidation, thread safety."""

from __future__ import annotations

import random
import threading
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from asyncarr.config import CacheConfig
from asyncarr.errors import ConfigError
from asyncarr.runtime import ChunkCache, get_chunk_cache, set_chunk_cache


def chunk(fill: int, n: int = 100) -> np.ndarray:
    return np.full(n, fill, dtype="u1")  # n bytes


def test_lru_eviction_order_and_stats() -> None:
    cache = ChunkCache(300)
    for name in "abc":
        cache.put(name, chunk(ord(name)))
    assert cache.stats.current_bytes == 300
    a = cache.get("a")  # a is now the most recently used
    assert a is not None
    assert a[0] == ord("a")
    cache.put("d", chunk(4))
    assert "b" not in cache
    assert all(k in cache for k in "acd")
    cache.put("e", chunk(5))
    assert "c" not in cache
    assert cache.get("b") is None
    stats = cache.stats
    assert (stats.hits, stats.misses, stats.evictions) == (1, 1, 2)
    assert (stats.current_bytes, stats.entries, stats.max_bytes) == (300, 3, 300)


def test_budget_is_respected_and_oversized_values_are_skipped() -> None:
    cache = ChunkCache(250)
    cache.put("big", chunk(1, 251))
    assert "big" not in cache
    assert cache.stats.current_bytes == 0
    cache.put("k", chunk(1, 200))
    cache.put("k", chunk(2, 50))  # replacing accounts for the old size
    assert cache.stats.current_bytes == 50
    cache.put("j", chunk(3, 200))
    assert cache.stats.current_bytes == 250
    cache.put("k", chunk(9, 1000))  # too big: the stale old value must not stay
    assert "k" not in cache
    assert cache.stats.current_bytes == 200


def test_cached_values_are_read_only_copies() -> None:
    cache = ChunkCache(1000)
    original = chunk(7)
    cache.put("k", original)
    original[:] = 0  # the caller may keep using its own array
    got = cache.get("k")
    assert got is not None
    assert not got.flags.writeable
    assert int(got[0]) == 7
    with pytest.raises(ValueError, match="read-only"):
        got[0] = 1
    handed_over = chunk(8)
    cache.put("h", handed_over, copy=False)
    assert cache.get("h") is handed_over
    assert not handed_over.flags.writeable
    with pytest.raises(TypeError):
        cache.put("x", b"bytes")  # type: ignore[arg-type]


def test_invalidation() -> None:
    cache = ChunkCache(10_000)
    for arr in ("A", "B"):
        for i in range(5):
            cache.put((arr, (i,)), chunk(i, 10))
    cache.invalidate(("A", (0,)))
    cache.invalidate(("A", (99,)))  # missing: no-op
    assert ("A", (0,)) not in cache
    assert cache.invalidate_where(lambda key: key[0] == "A") == 4  # type: ignore[index]
    assert len(cache) == 5
    assert cache.stats.current_bytes == 50
    cache.clear()
    assert len(cache) == 0
    assert cache.stats.current_bytes == 0


def test_thread_safety_under_contention() -> None:
    cache = ChunkCache(2_000)
    errors: list[BaseException] = []

    def hammer(seed: int) -> None:
        rng = random.Random(seed)
        try:
            for _ in range(3000):
                key = rng.randrange(60)
                op = rng.random()
                if op < 0.5:
                    cache.put(key, chunk(key % 256, rng.randrange(1, 200)))
                elif op < 0.9:
                    got = cache.get(key)
                    if got is not None:
                        assert int(got[0]) == key % 256
                elif op < 0.97:
                    cache.invalidate(key)
                else:
                    cache.invalidate_where(lambda k, m=key: k == m)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=hammer, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not errors
    stats = cache.stats
    held = [cache.get(k) for k in range(60)]
    assert stats.current_bytes == sum(a.nbytes for a in held if a is not None)
    assert stats.current_bytes <= 2_000


@pytest.fixture
def restore_global_cache() -> Iterator[None]:
    before = get_chunk_cache()
    yield
    set_chunk_cache(None if before is None else CacheConfig(before.max_bytes))


@pytest.mark.usefixtures("restore_global_cache")
def test_global_cache_configuration() -> None:
    set_chunk_cache(CacheConfig(max_bytes=1 << 20))
    cache = get_chunk_cache()
    assert cache is not None
    assert cache.max_bytes == 1 << 20
    assert get_chunk_cache() is cache
    set_chunk_cache(CacheConfig(max_bytes=0))
    assert get_chunk_cache() is None
    set_chunk_cache(CacheConfig(max_bytes=10))
    set_chunk_cache(None)
    assert get_chunk_cache() is None


def test_invalid_budget() -> None:
    with pytest.raises(ConfigError):
        ChunkCache(-1)


@pytest.mark.usefixtures("restore_global_cache")
@pytest.mark.parametrize("how", ["overwrite", "overwrite as f4", "group delete", "fill change"])
async def test_a_recreated_array_never_reads_the_old_ones_cached_chunks(
    tmp_path: object, how: str
) -> None:
    """Cached decoded chunks belong to one array: re-creating it in place (with
    ``overwrite``, or after deleting it from its group) starts from the fill value."""
    import numpy as np

    import asyncarr

    set_chunk_cache(CacheConfig(max_bytes=1 << 20))
    root = f"{tmp_path}/g.zarr"
    group = await asyncarr.create_group(root)
    old = await group.create_array("x", shape=(4,), chunks=(2,), dtype="i4")
    await old.write(np.array([1, 2, 3, 4], dtype="i4"))
    np.testing.assert_array_equal(await old.read(), [1, 2, 3, 4])  # now cached
    kwargs: dict[str, object] = {"shape": (4,), "chunks": (2,), "dtype": "i4"}
    if how == "group delete":
        await group.delete("x")
    else:
        kwargs["overwrite"] = True
    if how == "overwrite as f4":
        kwargs["dtype"] = "f4"
    if how == "fill change":
        kwargs["fill_value"] = 9
    new = await group.create_array("x", **kwargs)
    expected = np.full(4, 9 if how == "fill change" else 0, dtype=new.dtype)
    np.testing.assert_array_equal(await new.read(), expected)
    assert (await new.read()).dtype == new.dtype


@pytest.mark.usefixtures("restore_global_cache")
async def test_resize_drops_the_cached_chunks_it_changes(tmp_path: object) -> None:
    import numpy as np

    import asyncarr

    set_chunk_cache(CacheConfig(max_bytes=1 << 20))
    arr = await asyncarr.create_array(f"{tmp_path}/a.zarr", shape=(6,), chunks=(4,), dtype="i4")
    await arr.write(np.arange(1, 7, dtype="i4"))
    np.testing.assert_array_equal(await arr.read(), np.arange(1, 7))  # cached
    await arr.resize((3,))  # clears element 3 of chunk 0, deletes chunk 1
    await arr.resize((6,))
    np.testing.assert_array_equal(await arr.read(), [1, 2, 3, 0, 0, 0])


@pytest.mark.usefixtures("restore_global_cache")
@pytest.mark.parametrize(
    "reader",
    ["read-only handle", "another store object", "through its group", "through a symlink"],
)
@pytest.mark.parametrize("where", ["local", "memory"])
def test_every_handle_on_an_array_sees_writes_made_through_another(
    tmp_path: Path, reader: str, where: str
) -> None:
    """Cached chunks belong to the data, not to a handle: a write through any handle
    invalidates them for every other one, however it was opened (each one used to cache
    under its own store's repr, so a read-only handle kept serving old data)."""
    import numpy as np

    import asyncarr.sync as az
    from asyncarr.stores import LocalStore, MemoryStore

    set_chunk_cache(CacheConfig(max_bytes=1 << 20))
    if where == "memory" and reader == "through a symlink":
        pytest.skip("no symlinks in memory")
    if where == "local":
        base: object = str(tmp_path / "g.zarr")
        again: object = LocalStore(str(tmp_path / "g.zarr"), read_only=True)
        linked = tmp_path / "link"
        linked.symlink_to(tmp_path / "g.zarr")
    else:
        base = MemoryStore()
        assert isinstance(base, MemoryStore)
        again = base.with_read_only(True)
    group = az.create_group(base)
    writer = group.create_array("x", shape=(4,), chunks=(4,), dtype="i4")
    writer[:] = 1
    if reader == "read-only handle":
        other = az.open_array(base, path="x", mode="r")
    elif reader == "another store object":
        other = az.open_array(again, path="x")
    elif reader == "through its group":
        other = az.open_group(base, mode="r")["x"]
    else:
        other = az.open_array(str(tmp_path / "link" / "x"), mode="r")
    assert other[:].tolist() == [1, 1, 1, 1]  # now cached
    writer[:] = 2
    assert other[:].tolist() == [2, 2, 2, 2]
    writer.write(np.array([3], "i4"), (slice(0, 1),))  # a partial write (read-modify-write)
    assert other[:].tolist() == [3, 2, 2, 2]
