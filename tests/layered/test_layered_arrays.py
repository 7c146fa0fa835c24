"""Arrays in layered containers: commits, snapshots, compaction, garbage collection."""

from __future__ import annotations

import asyncio
import random
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import asyncarr
from asyncarr.errors import ConflictError, PermissionDeniedError, SnapshotNotFoundError
from asyncarr.stores import FaultyStore, LayeredStore, MemoryStore
from asyncarr.stores._layered._maintenance import choose_run
from asyncarr.stores._local import LocalStore

LAYOUTS: dict[str, dict[str, Any]] = {
    "v2": {"zarr_format": 2, "chunks": (8, 8)},
    "v3": {"chunks": (8, 8)},
    "sharded": {"chunks": (4, 4), "shards": (8, 16)},
}
SHAPE = (32, 48)


def pattern(shape: tuple[int, ...], seed: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(-(2**30), 2**30, size=shape, dtype="int32")


async def object_names(base: Any) -> set[str]:
    return {k async for k in base.list_prefix("")}


@pytest.mark.parametrize("layout", sorted(LAYOUTS))
async def test_commits_snapshots_compaction_and_gc(layout: str, tmp_path: Path) -> None:
    base = LocalStore(str(tmp_path))
    store = LayeredStore(base)
    root = await asyncarr.create_group(store, zarr_format=LAYOUTS[layout].get("zarr_format", 3))
    arr = await root.create_array("a", shape=SHAPE, dtype="int32", **LAYOUTS[layout])
    state = np.zeros(SHAPE, dtype="int32")
    history = {await store.generation(): (SHAPE, state.copy())}
    rng = random.Random(layout)
    for step in range(6):  # unaligned rectangles: partial chunks are read-modify-written
        r0, c0 = rng.randrange(0, 28), rng.randrange(0, 40)
        region = (slice(r0, rng.randrange(r0 + 1, 33)), slice(c0, rng.randrange(c0 + 1, 49)))
        value = pattern((region[0].stop - r0, region[1].stop - c0), step)
        await arr.write(value, region)  # one commit
        state[region] = value
        history[await store.generation()] = (SHAPE, state.copy())
    await arr.resize(24, 48)  # shrink: metadata and chunks change in one commit
    history[await store.generation()] = ((24, 48), state[:24].copy())
    await arr.update_attributes({"units": "K"})
    history[await store.generation()] = ((24, 48), state[:24].copy())
    assert len(history) >= 9
    assert sorted(history) == list(range(min(history), max(history) + 1))  # one per call

    async def check_snapshots(gens: list[int]) -> None:
        for gen in gens:
            shape, want = history[gen]
            old = await asyncarr.open_array(store.snapshot(gen), path="a")
            assert old.shape == shape
            np.testing.assert_array_equal(await old.read(), want)

    await check_snapshots(sorted(history))
    before = await object_names(base)
    manifest = await store.compact()
    assert manifest is not None and manifest.kind == "compact" and len(manifest.layers) == 1
    await check_snapshots(sorted(history))  # compaction changes no retained snapshot
    latest = await asyncarr.open_array(store, path="a")
    np.testing.assert_array_equal(await latest.read(), state[:24])
    assert latest.attrs["units"] == "K"

    kept = sorted(history)[-3:]
    report = await store.gc(keep=len(kept) + 1, grace=0)  # + the compaction's generation
    after = await object_names(base)
    assert len(after) < len(before)
    referenced = {ref.name for m in await store.history() for ref in m.layers}
    layers_left = {k for k in after if k.startswith("layers/")}
    assert layers_left == referenced  # only unreferenced layers went, all of them
    assert report.layers_deleted == len(
        {k for k in before if k.startswith("layers/")} - layers_left
    )
    await check_snapshots(kept)
    with pytest.raises(SnapshotNotFoundError, match="removed by garbage collection"):
        await asyncarr.open_array(store.snapshot(min(history)), path="a")
    await store.gc(keep=1, grace=0)
    assert len(await object_names(base)) == 3  # one manifest, one layer, the hint
    np.testing.assert_array_equal(
        await (await asyncarr.open_array(store, path="a")).read(), state[:24]
    )


async def test_snapshots_by_url_generation_and_time(tmp_path: Path) -> None:
    url = f"layered::{tmp_path / 'ds'}"
    arr = await asyncarr.create_array(url, shape=(16,), chunks=(4,), dtype="int32")
    await arr.write(np.arange(16, dtype="int32"))
    first = await arr.store.generation()  # type: ignore[attr-defined]
    when = (await arr.store.history())[0].when  # type: ignore[attr-defined]
    await asyncio.sleep(0.01)
    await arr.write(7, slice(0, 4))
    for at in (first, str(first), when, when.isoformat()):
        old = await asyncarr.open_array(url, storage_options={"at": at})
        np.testing.assert_array_equal(await old.read(), np.arange(16))
        with pytest.raises(asyncarr.errors.ReadOnlyStoreError, match="snapshot"):
            await old.store.set("x", b"")
        await old.aclose()
    again = await asyncarr.open_array(url, mode="r+", storage_options={"at": first})
    with pytest.raises(asyncarr.errors.ReadOnlyStoreError):
        await again.write(1, slice(0, 1))
    with pytest.raises(SnapshotNotFoundError, match="no generation"):
        await asyncarr.open_array(url, storage_options={"at": "2000-01-01T00:00:00Z"})
    await arr.aclose()


async def test_transactions_commit_discard_and_conflict() -> None:
    base = MemoryStore()
    store = LayeredStore(base)
    arr = await asyncarr.create_array(store, path="x", shape=(8, 8), chunks=(4, 4), dtype="i4")
    gen = await store.generation()
    async with asyncarr.transaction(store, message="two arrays") as st:
        a = await asyncarr.open_array(st, path="x", mode="r+")
        await a.write(1)
        b = await asyncarr.create_array(st, path="y", shape=(4,), chunks=(2,), dtype="i4")
        await b.write(np.arange(4))
        # nothing is visible outside the transaction yet
        np.testing.assert_array_equal(await arr.read(), 0)
    assert await store.generation() == gen + 1
    assert (await store.history())[0].message == "two arrays"
    np.testing.assert_array_equal(await arr.read(), 1)

    async def discarded() -> None:
        async with asyncarr.transaction(store, message="discarded") as st:
            await (await asyncarr.open_array(st, path="x", mode="r+")).write(2)
            raise RuntimeError("changed my mind")

    with pytest.raises(RuntimeError):
        await discarded()
    assert await store.generation() == gen + 1
    # two transactions on the same generation: disjoint keys re-base, overlapping conflict
    t1, t2, t3 = [await store.begin(message=m) for m in ("t1", "t2", "t3")]
    await (await asyncarr.open_array(t1, path="x", mode="r+")).write(5, (slice(0, 4), slice(0, 4)))
    await (await asyncarr.open_array(t2, path="x", mode="r+")).write(6, (slice(4, 8), slice(4, 8)))
    await (await asyncarr.open_array(t3, path="x", mode="r+")).write(7, (slice(0, 2), slice(0, 2)))
    await t1.commit()
    await t2.commit()
    with pytest.raises(ConflictError) as info:
        await t3.commit()
    assert info.value.keys == ("x/c/0/0",)
    want = np.ones((8, 8), "i4")
    want[:4, :4], want[4:, 4:] = 5, 6
    np.testing.assert_array_equal(await arr.read(), want)
    with pytest.raises(asyncarr.errors.ConfigError, match="layered container"):
        async with asyncarr.transaction(MemoryStore(), message="not layered"):
            pass


def test_sync_transaction(tmp_path: Path) -> None:
    import asyncarr.sync as az

    url = f"layered::{tmp_path / 'ds'}"
    with az.transaction(url, message="create") as st:
        arr = az.create_array(st, path="t", shape=(10,), chunks=(5,), dtype="i4")
        arr[:] = np.arange(10)

    def aborted() -> None:
        with az.transaction(url, message="no") as st:
            az.open_array(st, path="t", mode="r+")[:] = 0
            raise KeyError("abort")

    with pytest.raises(KeyError):
        aborted()
    np.testing.assert_array_equal(az.open_array(url, path="t")[:], np.arange(10))
    history = asyncio.run(LayeredStore(url).history())
    assert [m.message for m in history] == ["create"]


async def test_a_failed_commit_changes_nothing_and_leaves_no_generation() -> None:
    inner = MemoryStore()
    faulty = FaultyStore(inner)
    store = LayeredStore(faulty)
    arr = await asyncarr.create_array(store, shape=(8,), chunks=(2,), dtype="i4")
    await arr.write(np.arange(8))
    gen = await store.generation()
    faulty.fail(ops="set_if_not_exists", keys="manifest.*", error=PermissionDeniedError, times=1)
    with pytest.raises(PermissionDeniedError):
        await arr.write(9)
    assert await store.generation() == gen
    np.testing.assert_array_equal(await arr.read(), np.arange(8))
    fresh = await asyncarr.open_array(LayeredStore(inner))
    np.testing.assert_array_equal(await fresh.read(), np.arange(8))
    report = await store.gc(grace=0)
    assert report.layers_deleted == 1  # the failed commit's layer


async def test_spilled_transaction_and_auto_compaction() -> None:
    base = MemoryStore()
    store = LayeredStore(base, spill_bytes=2000, auto_compact_layers=4)
    arr = await asyncarr.create_array(
        store, shape=(64, 64), chunks=(8, 8), dtype="i4", compressor=None
    )
    data = pattern((64, 64), 1)
    async with asyncarr.transaction(store, message="big") as st:
        big = await asyncarr.open_array(st, path="", mode="r+")
        await big.write(data)  # 64 chunks of 256 bytes: spilled every ~8 chunks
        np.testing.assert_array_equal(await big.read(), data)  # its own writes, spilled
    compaction, commit = (await store.history())[:2]
    assert commit.kind == "commit" and len(commit.added) >= 4  # one commit, several layers
    assert compaction.kind == "compact" and len(compaction.layers) <= 4  # (auto_compact)
    for step in range(8):
        await arr.write(step, (slice(step * 8, step * 8 + 8), slice(0, 8)))
        data[step * 8 : step * 8 + 8, 0:8] = step
        assert len((await store.history())[0].layers) <= 4
    np.testing.assert_array_equal(await arr.read(), data)
    assert any(m.kind == "compact" for m in await store.history())
    # a discarded transaction removes what it spilled
    before = {k async for k in base.list_prefix("layers/")}

    async def undone() -> None:
        async with asyncarr.transaction(store, message="undo") as st:
            await (await asyncarr.open_array(st, mode="r+")).write(pattern((64, 64), 2))
            raise ValueError("undo")

    with pytest.raises(ValueError, match="undo"):
        await undone()
    assert {k async for k in base.list_prefix("layers/")} == before


def test_choose_run() -> None:
    assert choose_run([1, 1, 1], 4) is None
    assert choose_run([1, 1, 1, 1, 1000], 4) == (0, 4)  # the big old layer stays
    assert choose_run([10, 10, 10, 10, 25], 4) == (0, 5)  # comparable: merged too
    assert choose_run([5] * 10, 8) == (0, 10)  # all comparable: all merged
    assert choose_run([1, 1, 1, 1, 1, 1, 100, 1000], 6) == (0, 6)  # down to half the limit


async def test_pack_round_trip_over_http(tmp_path: Path, http_location: Any) -> None:
    src = f"layered::{tmp_path / 'ds'}"
    root = await asyncarr.create_group(src)
    for name in ("a", "b"):
        arr = await root.create_array(name, shape=(20, 20), chunks=(5, 5), dtype="f8")
        await arr.write(np.full((20, 20), ord(name), "f8"))
    from asyncarr.stores._layered import build_pack

    pack = await build_pack(LayeredStore(str(tmp_path / "ds")), message="pack of ds")
    (http_location.local_dir / "ds.pack").write_bytes(pack)
    url = f"layered::{http_location.url}/ds.pack"
    group = await asyncarr.open_group(url)
    assert sorted(name for name, _ in await group.members()) == ["a", "b"]
    b = await asyncarr.open_array(url, path="b")
    np.testing.assert_array_equal(await b.read((slice(3, 7), slice(0, 2))), ord("b"))
    assert b.read_only
    history = await b.store.history()  # type: ignore[attr-defined]
    assert [(m.kind, m.message) for m in history] == [("pack", "pack of ds")]
    await b.aclose()
    await group.aclose()


async def test_layered_container_read_over_http(tmp_path: Path, http_location: Any) -> None:
    """HTTP cannot list: the newest generation is found from the hint, then probed."""
    local = LayeredStore(str(http_location.local_dir))
    arr = await asyncarr.create_array(local, shape=(6,), chunks=(2,), dtype="i4")
    for step in range(3):
        await arr.write(step + 1)
    remote = await asyncarr.open_array(f"layered::{http_location.url}")
    np.testing.assert_array_equal(await remote.read(), 3)
    assert [m.generation for m in await remote.store.history()] == [4, 3, 2, 1]  # type: ignore[attr-defined]
    await remote.aclose()


async def test_a_wrapper_forwards_operations() -> None:
    """Through a FaultyStore, an array write is still one commit of the container."""
    store = LayeredStore(MemoryStore())
    faulty = FaultyStore(store, close_inner=False)
    arr = await asyncarr.create_array(faulty, shape=(16,), chunks=(2,), dtype="i4")
    before = await store.generation()
    await arr.write(np.arange(16))  # 8 chunks
    assert await store.generation() == before + 1
    assert (await store.history())[0].message == "write /"


async def test_chunk_cache_follows_new_generations() -> None:
    """With a chunk cache, a handle following the newest generation forgets the chunks
    that commits made elsewhere (another handle, a transaction) changed."""
    base = MemoryStore()
    reader_store = LayeredStore(base, refresh_interval=0.0)
    writer = await asyncarr.create_array(LayeredStore(base), shape=(8,), chunks=(4,), dtype="i4")
    await writer.write(np.arange(8))
    asyncarr.set_chunk_cache(asyncarr.CacheConfig(max_bytes=1 << 20))
    try:
        reader = await asyncarr.open_array(reader_store)
        np.testing.assert_array_equal(await reader.read(), np.arange(8))  # now cached
        await writer.write(-1, slice(0, 2))  # another handle on the same container
        np.testing.assert_array_equal(await reader.read(), [-1, -1, 2, 3, 4, 5, 6, 7])
        async with asyncarr.transaction(reader_store, message="t") as st:
            await (await asyncarr.open_array(st, mode="r+")).write(9, slice(6, 8))
        np.testing.assert_array_equal(await reader.read(), [-1, -1, 2, 3, 4, 5, 9, 9])
        old = await asyncarr.open_array(reader_store.snapshot(2))
        np.testing.assert_array_equal(await old.read(), np.arange(8))  # its own place
    finally:
        asyncarr.set_chunk_cache(None)
