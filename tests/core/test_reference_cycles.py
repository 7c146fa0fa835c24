"""Reads and writes leave no reference cycles holding their data.

A cycle is freed only when Python's cyclic collector runs, which for a
process doing large reads in a loop can be many arrays later: each leaked
output stays resident until then (found as RSS growing by one array per
read). Every test runs with the collector off.
"""

from __future__ import annotations

import gc
import weakref
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

import asyncarr
from asyncarr.config import ExecutorConfig
from asyncarr.runtime import set_executor


@pytest.fixture(params=["inline", "threads", "processes"])
def executor_mode(request: pytest.FixtureRequest) -> Iterator[str]:
    set_executor(ExecutorConfig(mode=request.param, max_workers=2))
    try:
        yield request.param
    finally:
        set_executor(None)


@pytest.fixture
def no_cycle_collector() -> Iterator[None]:
    gc.collect()
    gc.disable()
    try:
        yield
    finally:
        gc.enable()


@pytest.mark.parametrize("store_kind", ["local", "memory"])
@pytest.mark.parametrize("shards", [None, (32, 32)])
@pytest.mark.usefixtures("no_cycle_collector")
async def test_read_and_write_free_their_arrays_without_the_collector(
    tmp_path: Path, executor_mode: str, store_kind: str, shards: tuple[int, int] | None
) -> None:
    store = str(tmp_path / "a") if store_kind == "local" else asyncarr.MemoryStore()
    arr = await asyncarr.create_array(
        store, shape=(64, 64), chunks=(8, 8), shards=shards, dtype="f4"
    )
    value = np.arange(64 * 64, dtype="f4").reshape(64, 64)
    written = weakref.ref(value)
    await arr.write(value)  # 64 chunks: several batches through the scheduler
    del value
    assert written() is None, "the written value is still referenced"

    for selection in (Ellipsis, (slice(3, 61), slice(5, 60)), (5, slice(None))):
        out = await arr.read(selection)
        assert out.size
        read = weakref.ref(out)
        del out
        assert read() is None, f"the output of read{selection} is still referenced"
