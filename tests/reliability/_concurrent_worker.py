"""Code run in child processes by ``test_concurrent_writers.py`` (spawned, so importable)."""

from __future__ import annotations

import asyncio
import threading
from typing import Any

from _reliability_helpers import pattern

import asyncarr
from asyncarr.config import ExecutorConfig
from asyncarr.runtime import store_stats
from asyncarr.stores._local import LocalStore

Region = tuple[slice, slice]


def region_value(region: Region, seed: int) -> Any:
    """What writer ``seed`` puts into ``region`` (the same in every process)."""
    rows, cols = region
    return pattern((rows.stop - rows.start, cols.stop - cols.start), seed=seed)


async def write_regions(store: Any, path: str, items: list[tuple[Region, int]]) -> None:
    """Open the array at ``path`` once per region (independent handles) and write them all."""

    async def one(region: Region, seed: int) -> None:
        arr = await asyncarr.open_array(store, path=path, mode="r+")
        await arr.write(region_value(region, seed), region)

    await asyncio.gather(*(one(region, seed) for region, seed in items))


def process_main(
    root: str,
    jobs: list[tuple[str, list[tuple[Region, int]]]],
    barrier: threading.Barrier,
    conflicts: Any,
) -> None:
    """Entry point of one writer process: for each array, wait for the others, then write.

    Adds the number of conditional writes that lost a race to ``conflicts``
    (a shared ``multiprocessing.Value``).
    """
    asyncarr.set_executor(ExecutorConfig(mode="threads", max_workers=2))
    store = LocalStore(root)
    for path, items in jobs:
        barrier.wait(timeout=120)
        asyncio.run(write_regions(store, path, items))
    with conflicts.get_lock():
        conflicts.value += store_stats(store).failed
