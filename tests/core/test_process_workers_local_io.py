"""With executor mode ``processes``, worker processes read and write local chunk files
themselves: the event loop never fetches chunk bytes to ship them."""

from __future__ import annotations

import pickle
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path

import numpy as np
import pytest

import asyncarr
from asyncarr._types import RangeRequest
from asyncarr.config import CacheConfig, ExecutorConfig
from asyncarr.runtime import AutoDecision, set_executor
from asyncarr.stores import LocalStore


class ChunkBytesNeverFetchedHere(LocalStore):
    """Fails any async read or write of a chunk key: only metadata goes through them."""

    async def get(
        self, key: str, byte_range: RangeRequest | None = None, *, max_size: int | None = None
    ) -> bytes | None:
        assert "/" not in key, f"chunk {key!r} was fetched by the event loop"
        return await super().get(key, byte_range, max_size=max_size)

    async def set(self, key: str, value: bytes) -> None:
        assert "/" not in key, f"chunk {key!r} was stored by the event loop"
        await super().set(key, value)


def test_local_store_pickles_as_its_root_and_options(tmp_path: Path) -> None:
    store = ChunkBytesNeverFetchedHere(tmp_path / "r", read_only=True, fsync=True)
    copy = pickle.loads(pickle.dumps(store))
    assert type(copy) is ChunkBytesNeverFetchedHere
    assert (copy.root, copy.read_only, copy._fsync) == (store.root, True, True)


@pytest.mark.usefixtures("processes")
async def test_worker_processes_do_the_local_file_io(tmp_path: Path) -> None:
    store = ChunkBytesNeverFetchedHere(tmp_path / "r")
    arr = await asyncarr.create_array(store, shape=(96, 80), chunks=(16, 16), dtype="f8")
    value = np.random.default_rng(7).standard_normal((96, 80))
    await arr.write(value)  # whole chunks: encoded and stored by the worker processes
    np.testing.assert_array_equal(await arr.read(), value)
    np.testing.assert_array_equal(await arr.read((slice(5, 90), slice(3, 77))), value[5:90, 3:77])
    reopened = await asyncarr.open_array(LocalStore(tmp_path / "r"))
    np.testing.assert_array_equal(await reopened.read(), value)


@pytest.mark.usefixtures("processes")
@pytest.mark.parametrize("write_empty", [True, False])
@pytest.mark.parametrize("local", [True, False], ids=["local", "memory"])
async def test_worker_processes_encode_chunks_staged_in_shared_memory(
    tmp_path: Path, write_empty: bool, local: bool
) -> None:
    """Whole chunks go to worker processes through reused shared-memory buffers; edge
    chunks are padded with the fill value, all-fill chunks follow ``write_empty_chunks``,
    and a second write reuses the buffers."""
    store: object = (
        ChunkBytesNeverFetchedHere(tmp_path / "r") if local else f"memory://staging-{write_empty}"
    )
    arr = await asyncarr.create_array(
        store,
        shape=(70, 45),
        chunks=(16, 16),
        dtype=">i4",
        fill_value=-1,
        write_empty_chunks=write_empty,
    )
    value = np.arange(70 * 45, dtype=">i4").reshape(70, 45)
    value[:32, :32] = -1  # four all-fill chunks
    executor = asyncarr.runtime.get_executor()
    for scale in (1, 3):
        expected = np.where(value == -1, -1, value * scale).astype(">i4")
        await arr.write(expected)
        np.testing.assert_array_equal(await arr.read(), expected)
    assert executor._staging, "no shared-memory staging buffer was used"
    keys = {k async for k in arr.store.list_prefix("c/")} if local else None
    if local:
        assert ("c/0/0" in keys) is write_empty


@pytest.fixture(params=[2])
def auto_on_cpus(monkeypatch: pytest.MonkeyPatch, request: pytest.FixtureRequest) -> Iterator[int]:
    """``auto`` executor on ``request.param`` CPUs (on 1 CPU auto is inline)."""
    from asyncarr.runtime import CodecExecutor, _executor

    cpus: int = request.param
    monkeypatch.setattr(_executor, "usable_cpus", lambda: cpus)
    set_executor(CodecExecutor(ExecutorConfig(mode="auto", max_workers=cpus)))
    try:
        yield cpus
    finally:
        set_executor(None)


async def _until_settled(profile: str, step: Callable[[], Awaitable[None]]) -> AutoDecision:
    """Run ``step`` until ``auto`` has decided where ``profile`` runs; its decision."""
    from asyncarr.runtime import get_executor

    decision = None
    for _ in range(300):
        await step()
        decision = {d.profile: d for d in get_executor().decisions()}.get(repr(profile))
        if decision is not None and decision.state in ("threads", "processes"):
            assert decision.thread_throughput is not None
            return decision
    raise AssertionError(f"auto never settled {profile!r}: {decision}")


@pytest.mark.usefixtures("auto_on_cpus")
async def test_auto_measures_small_chunk_writes_and_keeps_the_faster_mode(
    tmp_path: Path,
) -> None:
    """Writes of many small chunks to local files are measured work in ``auto`` mode:
    threads, then worker processes, judged by chunks per second. Whatever it decides,
    every write stores exactly the data."""
    from asyncarr.core._write import SMALL_WRITES

    arr = await asyncarr.create_array(
        str(tmp_path / "a"), shape=(512, 512), chunks=(16, 16), dtype="f4"
    )
    rng = np.random.default_rng(3)

    async def write_and_check() -> None:
        value = rng.standard_normal((512, 512)).astype("f4")
        await arr.write(value)
        np.testing.assert_array_equal(await arr.read(), value)

    await _until_settled(SMALL_WRITES, write_and_check)


@pytest.mark.parametrize("auto_on_cpus", [1, 2], indirect=True)
async def test_auto_measures_small_chunk_reads_and_keeps_the_faster_mode(
    tmp_path: Path, auto_on_cpus: int
) -> None:
    """Reads of many small chunks from local files are measured work in ``auto`` mode on
    2 or more workers, as writes are: threads, then worker processes (which read the files
    themselves into a shared-memory output), by chunks per second. On one CPU they stay
    inline, unmeasured. Every read returns exactly the data, during the measurements and
    after the decision, whole and in parts."""
    from asyncarr.core._read import SMALL_READS, SMALL_READS_MIN_WORKERS
    from asyncarr.runtime import get_executor

    arr = await asyncarr.create_array(
        str(tmp_path / "a"), shape=(500, 512), chunks=(16, 16), dtype="f4"
    )
    value = np.random.default_rng(4).standard_normal((500, 512)).astype("f4")
    value[:64, :64] = 0  # missing chunks read as the fill value
    await arr.write(value)

    async def read_and_check() -> None:
        np.testing.assert_array_equal(await arr.read(), value)

    if auto_on_cpus >= SMALL_READS_MIN_WORKERS:
        await _until_settled(SMALL_READS, read_and_check)
    else:
        for _ in range(5):
            await read_and_check()
        assert repr(SMALL_READS) not in {d.profile for d in get_executor().decisions()}
    await read_and_check()
    part = (slice(3, 497, 2), slice(100, 300))
    np.testing.assert_array_equal(await arr.read(part), value[part])


@pytest.mark.parametrize("auto_on_cpus", [4], indirect=True)
@pytest.mark.usefixtures("auto_on_cpus")
async def test_reads_with_a_chunk_cache_are_not_measured(tmp_path: Path) -> None:
    """Worker processes cannot fill the chunk cache: cached reads stay on threads."""
    from asyncarr.core._read import SMALL_READS
    from asyncarr.runtime import get_executor

    asyncarr.set_chunk_cache(CacheConfig(max_bytes=1 << 20))
    try:
        arr = await asyncarr.create_array(
            str(tmp_path / "a"), shape=(256, 256), chunks=(8, 8), dtype="f4"
        )
        value = np.arange(256 * 256, dtype="f4").reshape(256, 256)
        await arr.write(value)
        np.testing.assert_array_equal(await arr.read(), value)
        profiles = {d.profile for d in get_executor().decisions()}
        assert repr(SMALL_READS) not in profiles
    finally:
        asyncarr.set_chunk_cache(None)
