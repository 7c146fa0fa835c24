"""Concurrent partial writers: tasks, threads (separate event loops) and processes.

Writers fill disjoint, unaligned rectangles that share chunks (and the inner
chunks of shards), so every shared chunk is read-modify-written by several
writers at once. No update may be lost: the final array must equal the
result of applying all writes one after another.
"""

from __future__ import annotations

import asyncio
import multiprocessing
import threading
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import numpy as np
import pytest
from _concurrent_worker import Region, process_main, region_value, write_regions
from _reliability_helpers import disjoint_regions, fast_limits

import asyncarr
from asyncarr.abc import Store
from asyncarr.runtime import store_stats
from asyncarr.stores import MemoryStore
from asyncarr.stores._faulty import FaultyStore
from asyncarr.stores._local import LocalStore
from asyncarr.stores._zip import ZipStore

SHAPE = (96, 130)
CHUNKS = (16, 16)
SHARDS = (32, 48)
INNER = (8, 8)
LAYOUTS = {"chunks": {"chunks": CHUNKS}, "shards": {"chunks": INNER, "shards": SHARDS}}

REGIONS = disjoint_regions(SHAPE, rows=8, cols=4, offset=3)  # 32 unaligned rectangles


def expected_result(regions: list[Region]) -> np.ndarray:
    """The array after applying every region's write, one after another."""
    out = np.zeros(SHAPE, dtype="int32")
    for seed, region in enumerate(regions):
        out[region] = region_value(region, seed)
    return out


def test_regions_share_chunks_but_not_elements() -> None:
    cover = np.zeros(SHAPE, dtype=int)
    for rows, cols in REGIONS:
        cover[rows, cols] += 1
    assert (cover == 1).all()  # a tiling: disjoint and complete
    shared = 0
    for ci in range(0, SHAPE[0], INNER[0]):
        for cj in range(0, SHAPE[1], INNER[1]):
            owners = {
                n
                for n, (r, c) in enumerate(REGIONS)
                if r.start < ci + INNER[0]
                and ci < r.stop
                and c.start < cj + INNER[1]
                and cj < c.stop
            }
            shared += len(owners) > 1
    assert shared > 20  # many (inner) chunks have several writers


StoreFactory = Callable[[Path], Store]
STORES: dict[str, StoreFactory] = {
    "memory": lambda tmp: MemoryStore(limits=fast_limits()),
    "local": lambda tmp: LocalStore(tmp / "local", limits=fast_limits()),
    "zip": lambda tmp: ZipStore(tmp / "data.zip", mode="w", limits=fast_limits()),
}


@pytest.fixture(params=sorted(STORES))
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Store]:
    s = STORES[request.param](tmp_path)
    yield s
    await s.aclose()


async def create(store: Store, layout: str, path: str = "") -> asyncarr.AsyncArray:
    return await asyncarr.create_array(
        store, shape=SHAPE, dtype="int32", path=path, **LAYOUTS[layout]
    )  # type: ignore[arg-type]


# -- 32 asyncio tasks, each with its own array handle -----------------------------------------
@pytest.mark.parametrize("layout", sorted(LAYOUTS))
async def test_32_tasks_writing_shared_chunks_lose_nothing(store: Store, layout: str) -> None:
    arr = await create(store, layout)
    await write_regions(store, "", [(region, seed) for seed, region in enumerate(REGIONS)])
    np.testing.assert_array_equal(await arr.read(), expected_result(REGIONS))


# -- threads: one event loop each, so only the store's conditional writes keep order -----------
@pytest.mark.parametrize("layout", sorted(LAYOUTS))
@pytest.mark.parametrize("kind", ["memory", "local"])
async def test_writers_on_separate_event_loops_lose_nothing(
    kind: str, layout: str, tmp_path: Path
) -> None:
    """The in-process chunk lock is per event loop; across loops only set_if_version protects."""
    shared = STORES[kind](tmp_path)
    arr = await create(shared, layout)
    assert shared.supports_conditional_writes
    n_threads = 4
    barrier = threading.Barrier(n_threads)
    items = [(region, seed) for seed, region in enumerate(REGIONS)]

    def run(part: int) -> None:
        barrier.wait(timeout=60)
        asyncio.run(write_regions(shared, "", items[part::n_threads]))

    before = store_stats(shared).failed
    await asyncio.gather(*(asyncio.to_thread(run, i) for i in range(n_threads)))
    conflicts = store_stats(shared).failed - before  # set_if_version calls that lost a race
    print(f"\n[{kind}/{layout}, {n_threads} event loops] {conflicts} lost races, retried")
    np.testing.assert_array_equal(await arr.read(), expected_result(REGIONS))
    await shared.aclose()


# -- processes: 4 spawned writers on one local directory ----------------------------------------
def test_four_processes_writing_shared_chunks_lose_nothing(tmp_path: Path) -> None:
    root = tmp_path / "shared"

    async def setup() -> None:
        store = LocalStore(root)
        for layout in sorted(LAYOUTS):
            await create(store, layout, path=layout)

    asyncio.run(setup())
    n_procs = 4
    ctx = multiprocessing.get_context("spawn")
    barrier = ctx.Barrier(n_procs)
    conflicts = ctx.Value("i", 0)
    items = [(region, seed) for seed, region in enumerate(REGIONS)]
    jobs = [[(layout, items[p::n_procs]) for layout in sorted(LAYOUTS)] for p in range(n_procs)]
    procs = [
        ctx.Process(target=process_main, args=(str(root), jobs[p], barrier, conflicts), daemon=True)
        for p in range(n_procs)
    ]
    for proc in procs:
        proc.start()
    try:
        for proc in procs:
            proc.join(timeout=120)
        assert [p.exitcode for p in procs] == [0] * n_procs
    finally:
        for proc in procs:
            if proc.is_alive():
                proc.kill()
                proc.join()

    async def check() -> dict[str, np.ndarray]:
        store = LocalStore(root)
        out = {}
        for layout in sorted(LAYOUTS):
            arr = await asyncarr.open_array(store, path=layout)
            out[layout] = await arr.read()
        keys = [k async for k in store.list_prefix("")]
        assert all(".asyncarr." not in k for k in keys)
        return out

    results = asyncio.run(check())
    print(f"\n[{n_procs} processes] {conflicts.value} lost races, retried")
    expected = expected_result(REGIONS)
    for layout, got in results.items():
        mismatched = int((got != expected).sum())
        assert mismatched == 0, f"{layout}: {mismatched} elements lost by concurrent writers"


# -- a chunk that becomes all fill value is deleted: that delete must not undo another write ----
async def test_deleting_an_all_fill_chunk_keeps_a_concurrent_update() -> None:
    shared = FaultyStore(MemoryStore(limits=fast_limits()), seed=1)
    arr = await asyncarr.create_array(shared, shape=(8,), chunks=(8,), dtype="int32")
    await arr.write(np.array([5, 5, 5, 5, 0, 0, 0, 0], dtype="int32"))
    shared.delay(ops="delete", seconds=0.3)  # widen the window between A's read and delete

    async def write(value: int, region: slice, wait: float) -> None:
        await asyncio.sleep(wait)
        handle = await asyncarr.open_array(shared, mode="r+")
        await handle.write(value, region)

    def run(value: int, region: slice, wait: float) -> None:  # own event loop per writer
        asyncio.run(write(value, region, wait))

    await asyncio.gather(
        asyncio.to_thread(run, 0, slice(0, 4), 0.0),  # A: makes the chunk all fill -> delete
        asyncio.to_thread(run, 1, slice(4, 8), 0.1),  # B: conditional update in between
    )
    shared.clear()
    np.testing.assert_array_equal(await arr.read(), [0, 0, 0, 0, 1, 1, 1, 1])
