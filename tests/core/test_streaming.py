"""Streaming: ``iter_blocks`` reads with a bounded window, ``block_writer`` stores whole
units without read-modify-write."""

from __future__ import annotations

import asyncio
import tracemalloc
from typing import Any

import numpy as np
import pytest

import asyncarr
import asyncarr.sync as az
from asyncarr._types import RangeRequest
from asyncarr.errors import ConfigError, SelectionError, StoreError
from asyncarr.stores import MemoryStore


class CountingStore(MemoryStore):
    """Counts chunk reads and writes, and how many run at once; ``delay`` slows reads."""

    def __init__(self, delay: float = 0.0) -> None:
        super().__init__()
        self.delay = delay
        self.gets: list[str] = []
        self.sets: list[str] = []
        self.active_gets = 0
        self.active_sets = 0
        self.most_sets = 0
        self.fail_sets = False

    @property
    def supports_sync_reads(self) -> bool:  # every read through get(): counted
        return False

    @property
    def supports_sync_writes(self) -> bool:
        return False

    async def get(
        self, key: str, byte_range: RangeRequest | None = None, **options: Any
    ) -> bytes | None:
        if "/c" in f"/{key}":
            self.gets.append(key)
        self.active_gets += 1
        try:
            if self.delay:
                await asyncio.sleep(self.delay)
            return await super().get(key, byte_range, **options)
        finally:
            self.active_gets -= 1

    async def set(self, key: str, value: bytes) -> None:
        if "/c" in f"/{key}":
            self.sets.append(key)
            if self.fail_sets:
                raise StoreError("refused", store=self, key=key)
        self.active_sets += 1
        self.most_sets = max(self.most_sets, self.active_sets)
        try:
            await asyncio.sleep(0.001)
            await super().set(key, value)
        finally:
            self.active_sets -= 1


LAYOUTS = {
    "chunks": {"chunks": (4, 6)},
    "shards": {"chunks": (2, 3), "shards": (4, 6)},
    "rectilinear": {"chunks": [[3, 5, 2, 7], [6, 6, 6, 2]]},
}


async def _array(layout: str, store: MemoryStore | None = None) -> asyncarr.AsyncArray:
    arr = await asyncarr.create_array(
        store or MemoryStore(), shape=(17, 20), dtype="int32", **LAYOUTS[layout]
    )
    await arr.write(np.arange(17 * 20, dtype="int32").reshape(17, 20))
    return arr


@pytest.mark.parametrize("layout", sorted(LAYOUTS))
@pytest.mark.parametrize("unit", ["chunk", "shard", (5, 7)])
@pytest.mark.parametrize(
    "selection", [None, (slice(1, 15), slice(2, 19)), (3, slice(None)), (Ellipsis, 7)]
)
async def test_blocks_tile_the_selection(layout: str, unit: Any, selection: Any) -> None:
    arr = await _array(layout)
    expected = await arr.read(Ellipsis if selection is None else selection)
    whole = await arr.read()
    seen = np.zeros(arr.shape, dtype=int)
    async for region, block in arr.iter_blocks(selection, unit=unit, prefetch=3):
        np.testing.assert_array_equal(block, whole[region])
        seen[region] += 1
    assert seen.max() == 1  # no element twice
    assert seen.sum() == expected.size  # every element of the selection once


async def test_units_follow_chunks_and_shards() -> None:
    arr = await _array("shards")
    chunks = [r async for r, _ in arr.iter_blocks(unit="chunk")]
    shards = [r async for r, _ in arr.iter_blocks(unit="shard")]
    assert chunks[0] == (slice(0, 2), slice(0, 3)) and len(chunks) == 9 * 7
    assert shards[0] == (slice(0, 4), slice(0, 6)) and len(shards) == 5 * 4
    assert shards[-1] == (slice(16, 17), slice(18, 20))


async def test_bad_streams_are_refused() -> None:
    arr = await _array("chunks")
    with pytest.raises(SelectionError, match="step"):
        arr.iter_blocks((slice(0, 10, 2),))
    with pytest.raises(ConfigError, match="prefetch"):
        arr.iter_blocks(prefetch=0)
    with pytest.raises(ConfigError, match="block shape"):
        arr.iter_blocks(unit=(0, 3))
    with pytest.raises(ConfigError, match="unit"):
        arr.iter_blocks(unit="row")


async def test_nothing_is_read_beyond_the_window() -> None:
    store = CountingStore()
    arr = await _array("chunks", store)  # 5 x 4 = 20 chunks
    store.gets.clear()
    taken = 0
    async for _region, _block in arr.iter_blocks(unit="chunk", prefetch=3):
        taken += 1
        await asyncio.sleep(0.01)  # a slow consumer: the window fills, then waits
        assert len(store.gets) <= taken + 3
    assert taken == 20 and len(store.gets) == 20


async def test_memory_stays_within_the_window() -> None:
    """An array 40 times the window: streaming it holds about the window, not the array."""
    store = MemoryStore()
    arr = await asyncarr.create_array(
        store, shape=(400, 1000), chunks=(10, 1000), dtype="float64", compressor=None
    )
    await arr.write(1.0)
    block_bytes = 10 * 1000 * 8  # 80 kB
    tracemalloc.start()
    try:
        tracemalloc.reset_peak()
        base = tracemalloc.get_traced_memory()[0]
        total = 0.0
        async for _region, block in arr.iter_blocks(prefetch=1):
            total += float(block.sum())
        peak = tracemalloc.get_traced_memory()[1] - base
    finally:
        tracemalloc.stop()
    assert total == 400 * 1000
    assert peak < 10 * block_bytes, f"peak {peak} bytes for 80 kB blocks (array 3.2 MB)"


async def test_leaving_early_cancels_the_reads_in_flight() -> None:
    store = CountingStore(delay=0.2)
    arr = await _array("chunks", store)
    blocks = arr.iter_blocks(prefetch=4)
    async for _ in blocks:
        break
    await blocks.aclose()
    assert store.active_gets == 0
    started = len(store.gets)
    await asyncio.sleep(0.3)
    assert len(store.gets) == started  # nothing went on in the background


def test_sync_iter_blocks_is_a_generator() -> None:
    arr = az.create_array(MemoryStore(), shape=(10, 10), chunks=(5, 5), dtype="int16")
    arr[...] = np.arange(100, dtype="int16").reshape(10, 10)
    pieces = list(arr.iter_blocks(unit=(10, 5)))
    assert [r for r, _ in pieces] == [(slice(0, 10), slice(0, 5)), (slice(0, 10), slice(5, 10))]
    np.testing.assert_array_equal(np.hstack([b for _, b in pieces]), arr[...])
    gen = arr.iter_blocks(prefetch=2)
    next(gen)
    gen.close()  # closing early cancels the reads ahead


@pytest.mark.parametrize("layout", ["chunks", "shards"])
@pytest.mark.parametrize("aligned", [True, False])
async def test_a_streamed_write_never_reads_back(layout: str, aligned: bool) -> None:
    """Aligned blocks are whole units; misaligned ones are assembled into whole units
    before they are stored: either way no unit is read and rewritten."""
    store = CountingStore()
    arr = await asyncarr.create_array(store, shape=(17, 20), dtype="int32", **LAYOUTS[layout])
    data = np.arange(17 * 20, dtype="int32").reshape(17, 20) + 1
    unit: Any = "shard" if aligned else (3, 7)
    regions = [r async for r, _ in arr.iter_blocks(unit=unit)]
    store.gets.clear()
    async with arr.block_writer(max_inflight=2) as writer:
        for region in regions:
            await writer.write(region, data[region])
    assert store.gets == []  # no read-modify-write
    assert store.most_sets <= 2  # max_inflight unit writes, each one store write
    assert len(store.sets) == len(set(store.sets))  # each unit stored once
    np.testing.assert_array_equal(await arr.read(), data)


async def test_units_left_incomplete_are_written_at_the_end() -> None:
    arr = await _array("shards")
    before = await arr.read()
    async with arr.block_writer() as writer:
        await writer.write((slice(0, 2), slice(0, 2)), -1)  # part of one shard
        await writer.write((slice(5, 7), slice(10, 12)), -2)
        assert writer.pending_units == 2
    expected = before.copy()
    expected[0:2, 0:2] = -1
    expected[5:7, 10:12] = -2
    np.testing.assert_array_equal(await arr.read(), expected)


async def test_a_failed_unit_write_is_raised() -> None:
    store = CountingStore()
    arr = await asyncarr.create_array(store, shape=(8,), chunks=(2,), dtype="int8")
    store.fail_sets = True

    async def stream() -> None:
        async with arr.block_writer(max_inflight=1) as writer:
            for start in range(0, 8, 2):
                await writer.write((slice(start, start + 2),), 1)

    with pytest.raises(StoreError, match="refused"):
        await stream()


def test_sync_block_writer() -> None:
    arr = az.create_array(MemoryStore(), shape=(6, 6), chunks=(3, 3), dtype="float32")
    with arr.block_writer() as writer:
        for region, _ in arr.iter_blocks(unit=(2, 6)):
            writer.write(region, 5.0)
    np.testing.assert_array_equal(arr[...], np.full((6, 6), 5.0, dtype="float32"))
