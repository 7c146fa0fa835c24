"""Reads that touch one small chunk of a local or in-memory array run straight through
(no scheduler, no executor call: the random-read latency path) and return exactly what
the general path does: whole, partial, edge and missing chunks, dropped axes, the chunk
cache, and errors naming the key."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import asyncarr
from asyncarr.config import CacheConfig
from asyncarr.errors import CodecError
from asyncarr.runtime import CodecExecutor, get_chunk_cache
from asyncarr.stores import LocalStore, MemoryStore

SELECTIONS: list[Any] = [
    (slice(16, 32), slice(0, 16)),  # a whole chunk
    (slice(18, 27), slice(3, 11)),  # part of one
    (slice(48, 50), slice(32, 40)),  # an edge chunk (shape 50 x 40, chunks 16 x 16)
    (20, slice(5, 9)),  # an integer drops an axis
    (7, 9),  # one element
    (slice(0, 16, 3), slice(1, 16, 4)),  # steps
    (slice(20, 20), slice(0, 16)),  # empty
]


@contextlib.contextmanager
def no_executor_calls(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    async def refuse(self: CodecExecutor, *args: Any, **kwargs: Any) -> Any:
        raise AssertionError("a one-chunk read went through the executor")

    with monkeypatch.context() as patch:
        patch.setattr(CodecExecutor, "run", refuse)
        yield


@pytest.mark.parametrize("where", ["local", "memory"])
@pytest.mark.parametrize("sel", SELECTIONS, ids=repr)
async def test_one_chunk_reads_equal_numpy_without_the_executor(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, where: str, sel: Any
) -> None:
    store = LocalStore(tmp_path / "a") if where == "local" else MemoryStore()
    arr = await asyncarr.create_array(
        store, shape=(50, 40), chunks=(16, 16), dtype="i4", fill_value=-1, compressor="zstd"
    )
    value = np.arange(50 * 40, dtype="i4").reshape(50, 40)
    value[:16, 16:32] = -1  # that chunk is never stored: it reads as the fill value
    await arr.write(value[16:, :], (slice(16, None), slice(None)))
    await arr.write(value[:16, :16], (slice(0, 16), slice(0, 16)))
    await arr.write(value[:16, 32:], (slice(0, 16), slice(32, None)))
    with no_executor_calls(monkeypatch):
        got = await arr.read(sel)
        missing = await arr.read((slice(2, 9), slice(18, 30)))
    np.testing.assert_array_equal(got, value[sel])
    assert got.shape == value[sel].shape
    np.testing.assert_array_equal(missing, -1)


async def test_one_chunk_reads_use_and_fill_the_chunk_cache(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    arr = await asyncarr.create_array(
        str(tmp_path / "a"), shape=(32, 32), chunks=(16, 16), dtype="f8"
    )
    value = np.random.default_rng(3).standard_normal((32, 32))
    asyncarr.set_chunk_cache(None)
    for i in range(2):
        for j in range(2):
            part = (slice(16 * i, 16 * i + 16), slice(16 * j, 16 * j + 16))
            await arr.write(value[part], part)
    asyncarr.set_chunk_cache(CacheConfig(max_bytes=1 << 20))
    try:
        cache = get_chunk_cache()
        assert cache is not None
        with no_executor_calls(monkeypatch):
            first = await arr.read((slice(1, 5), slice(20, 30)))
            assert cache.stats.hits == 0
            again = await arr.read((3, slice(16, 32)))
        assert cache.stats.hits == 1
        np.testing.assert_array_equal(first, value[1:5, 20:30])
        np.testing.assert_array_equal(again, value[3, 16:32])
    finally:
        asyncarr.set_chunk_cache(None)


async def test_a_corrupt_chunk_read_alone_names_its_key(tmp_path: Path) -> None:
    arr = await asyncarr.create_array(
        str(tmp_path / "a"), shape=(32, 32), chunks=(16, 16), dtype="f8", compressor="zstd"
    )
    await arr.write(np.ones((32, 32)))
    (tmp_path / "a" / "c" / "1" / "0").write_bytes(b"\x28\xb5\x2f\xfd garbage")
    with pytest.raises(CodecError, match="c/1/0"):
        await arr.read((slice(16, 20), slice(0, 4)))
