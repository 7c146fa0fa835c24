"""Full and slab reads of large chunks (over 64 KiB decoded) from local files: each worker
reads a chunk into its reused buffer (``Store.read_local_into``) and decodes it straight
into place. Every codec chain, edge and missing chunks, values larger than the buffer,
and corrupt chunks, on threads and on one worker (every chunk through the same buffer)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

import asyncarr
from asyncarr.config import ExecutorConfig
from asyncarr.errors import CodecError
from asyncarr.runtime import set_executor
from asyncarr.stores import LocalStore

SHAPE = (700, 530)
CHUNKS = (256, 200)  # 200 KB chunks of float32; edge chunks on both axes


@pytest.fixture(params=["threads-2", "threads-1"])
def executor(request: pytest.FixtureRequest) -> Any:
    workers = int(request.param.rpartition("-")[2])
    set_executor(ExecutorConfig(mode="threads", max_workers=workers))
    yield
    set_executor(ExecutorConfig())


def _data(noise: bool) -> np.ndarray:
    rng = np.random.default_rng(3)
    smooth = np.add.outer(np.arange(SHAPE[0]), np.arange(SHAPE[1])).astype("f4") / 7
    return smooth + rng.random(SHAPE, dtype="f4") if noise else smooth


@pytest.mark.usefixtures("executor")
@pytest.mark.parametrize("compressor", [None, "zstd", "blosc", "gzip"])
@pytest.mark.parametrize("noise", [False, True], ids=["compressible", "incompressible"])
async def test_large_chunks_read_back_exactly(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, compressor: str | None, noise: bool
) -> None:
    calls: list[str] = []
    read_into = LocalStore.read_local_into

    def counted(self: LocalStore, key: str, buffer: memoryview) -> Any:
        calls.append(key)
        return read_into(self, key, buffer)

    monkeypatch.setattr(LocalStore, "read_local_into", counted)
    data = _data(noise)
    data[:256, 200:400] = -1  # one chunk all fill: not stored, read as fill
    arr = await asyncarr.create_array(
        LocalStore(tmp_path / "a"),
        shape=SHAPE,
        chunks=CHUNKS,
        dtype="f4",
        fill_value=-1,
        compressor=compressor,
    )
    await arr.write(data)
    assert not (tmp_path / "a" / "c" / "0" / "1").exists()
    np.testing.assert_array_equal(await arr.read(), data)
    # the 4 whole chunks of the 3 x 3 (the missing one too); edge chunks decode to a copy
    assert sorted(calls) == ["c/0/0", "c/0/1", "c/1/0", "c/1/1"]
    for sel in [(slice(100, 650), slice(50, 530)), (slice(256, 512), slice(None))]:
        np.testing.assert_array_equal(await arr.read(sel), data[sel])


@pytest.mark.usefixtures("executor")
async def test_a_chunk_file_larger_than_the_buffer_is_read_whole(tmp_path: Path) -> None:
    """An uncompressed chunk padded far past its size does not fit the read buffer: it is
    read whole, and its wrong size is an error naming the key, never data."""
    arr = await asyncarr.create_array(
        LocalStore(tmp_path / "a"), shape=SHAPE, chunks=CHUNKS, dtype="f4", compressor=None
    )
    await arr.write(_data(False))
    chunk = tmp_path / "a" / "c" / "1" / "1"
    chunk.write_bytes(chunk.read_bytes() + b"\0" * 300_000)
    with pytest.raises(CodecError, match="c/1/1"):
        await arr.read()


@pytest.mark.usefixtures("executor")
@pytest.mark.parametrize("compressor", ["zstd", "blosc"])
async def test_corrupt_large_chunks_name_their_key(tmp_path: Path, compressor: str) -> None:
    arr = await asyncarr.create_array(
        LocalStore(tmp_path / "a"), shape=SHAPE, chunks=CHUNKS, dtype="f4", compressor=compressor
    )
    data = _data(True)
    await arr.write(data)
    chunk = tmp_path / "a" / "c" / "1" / "0"  # a whole chunk, not an edge one
    raw = bytearray(chunk.read_bytes())
    raw[len(raw) // 2 : len(raw) // 2 + 64] = bytes(64)  # damage the middle
    chunk.write_bytes(bytes(raw[:-10]))  # and cut the end off
    with pytest.raises(CodecError, match="c/1/0"):
        await arr.read()
    good = (slice(0, 256), slice(None))  # the other chunks still read
    np.testing.assert_array_equal(await arr.read(good), data[good])
