"""Shard indexes: decoding, validation, and the memo of decoded indexes."""

from __future__ import annotations

import json
import pickle
import struct
import subprocess
import sys
from pathlib import Path

import crc32c
import numpy as np
import pytest

import asyncarr
from asyncarr.core import _sharding
from asyncarr.core._sharding import MISSING, ShardingCodec
from asyncarr.errors import CodecError
from asyncarr.stores import MemoryStore


def _codec() -> ShardingCodec:
    spec = asyncarr.ChunkSpec((8, 8), np.dtype("int32"), 0)
    return ShardingCodec(chunk_shape=(4, 4)).evolve(spec)


def _raw(entries: list[tuple[int, int]]) -> bytes:
    """An encoded index of a 2x2 grid of inner chunks (little-endian pairs, crc32c)."""
    body = np.array(entries, dtype="<u8").tobytes()
    return body + struct.pack("<I", crc32c.crc32c(body))


GOOD = [(0, 10), (10, 20), (int(MISSING), int(MISSING)), (30, 5)]


def test_index_decodes_read_only_with_its_entries() -> None:
    index = _codec().decode_index(_raw(GOOD), shard_size=35)
    assert index.shape == (2, 2, 2)
    assert index.reshape(-1, 2).tolist() == [list(e) for e in GOOD]
    with pytest.raises(ValueError):
        index[0, 0, 0] = 1  # shared by every reader of the shard


def test_memo_returns_the_same_index_and_still_checks_the_shard_size() -> None:
    codec = _codec()
    first = codec.decode_index(_raw(GOOD))
    assert codec.decode_index(memoryview(_raw(GOOD))) is first
    with pytest.raises(CodecError, match="ends at byte 35 of a 34-byte shard"):
        codec.decode_index(_raw(GOOD), shard_size=34, key="c/0/0")


@pytest.mark.parametrize(
    ("entries", "message"),
    [
        ([(0, 10), (int(MISSING), 3), (20, 1), (21, 1)], "half-missing"),
        ([(2**63, 2**63), (0, 1), (1, 1), (2, 1)], "overflows 64 bits"),
    ],
)
def test_corrupt_indexes_raise_every_time(entries: list[tuple[int, int]], message: str) -> None:
    codec = _codec()
    for _ in range(2):  # a corrupt index is never remembered
        with pytest.raises(CodecError, match=message) as info:
            codec.decode_index(_raw(entries), key="c/1/0")
        assert "c/1/0" in str(info.value)
    assert codec._memo == {}


def test_memo_is_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    codec = _codec()
    per_entry = len(_raw(GOOD)) + 2 * 2 * 2 * 8
    monkeypatch.setattr(_sharding, "INDEX_MEMO_BYTES", 4 * per_entry)
    raws = [_raw([(0, 10), (10, 20), (30, 5), (35, n)]) for n in range(1, 11)]
    for raw in raws:
        codec.decode_index(raw)
    assert len(codec._memo) == 4 and codec._memo_bytes == 4 * per_entry
    assert list(codec._memo) == raws[-4:]  # the oldest went first


def test_codec_pickles_without_its_memo() -> None:
    codec = _codec()
    codec.decode_index(_raw(GOOD))
    copy = pickle.loads(pickle.dumps(codec))
    assert copy._memo == {} and copy.index_size == codec.index_size
    assert copy.decode_index(_raw(GOOD)).reshape(-1, 2).tolist() == [list(e) for e in GOOD]


async def test_rewritten_shards_read_their_new_index() -> None:
    """The memo is keyed by the index's bytes, so a shard rewritten in place (same key,
    new layout) is read through its new index, on the same open array."""
    store = MemoryStore()
    arr = await asyncarr.create_array(store, shape=(8, 8), chunks=(4, 4), shards=(8, 8), dtype="i4")
    before = np.arange(64, dtype="i4").reshape(8, 8)
    await arr.write(before)
    np.testing.assert_array_equal(await arr.read((slice(0, 4), slice(4, 8))), before[:4, 4:])
    writer = await asyncarr.open_array(store, mode="r+")
    await writer.write(np.full((4, 4), 7, dtype="i4"), (slice(0, 4), slice(0, 4)))
    await writer.write(0, (slice(4, 8), slice(4, 8)))  # an inner chunk dropped: fill value
    expected = before.copy()
    expected[:4, :4] = 7
    expected[4:, 4:] = 0
    for r in range(2):
        for c in range(2):
            block = (slice(4 * r, 4 * r + 4), slice(4 * c, 4 * c + 4))
            np.testing.assert_array_equal(await arr.read(block), expected[block])


@pytest.mark.parametrize(
    "index_codecs",
    [
        [{"name": "bytes", "configuration": {"endian": "little"}}, {"name": "crc32c"}],
        [{"name": "bytes", "configuration": {"endian": "big"}}],
        [  # two checksums, as odd as it is allowed
            {"name": "bytes", "configuration": {"endian": "little"}},
            {"name": "crc32c"},
            {"name": "crc32c"},
        ],
    ],
    ids=["bytes+crc32c", "bytes-big", "bytes+crc32c+crc32c"],
)
def test_index_size_is_worked_out_as_encoding_gives_it(index_codecs: list[object]) -> None:
    spec = asyncarr.ChunkSpec((12, 10), np.dtype("int32"), 0)
    config = {"chunk_shape": [3, 5], "index_codecs": index_codecs}
    codec = ShardingCodec.from_config(config).evolve(spec)
    probe = np.full((4, 2, 2), MISSING, dtype=np.uint64)
    assert (
        codec.index_size == len(codec._index.encode(probe)) == 16 * 8 + 4 * (len(index_codecs) - 1)
    )


HUGE_SHARD = {
    "zarr_format": 3,
    "node_type": "array",
    "shape": [65536, 65536],
    "data_type": "uint8",
    "chunk_grid": {"name": "regular", "configuration": {"chunk_shape": [65536, 65536]}},
    "chunk_key_encoding": {"name": "default"},
    "fill_value": 0,
    "codecs": [
        {
            "name": "sharding_indexed",
            "configuration": {
                "chunk_shape": [1, 1],
                "codecs": [{"name": "bytes"}],
                "index_codecs": [
                    {"name": "bytes", "configuration": {"endian": "little"}},
                    {"name": "crc32c"},
                ],
            },
        }
    ],
}
"""A shard of 2**32 inner chunks: its index alone would be 64 GiB."""


def test_a_shard_with_billions_of_inner_chunks_opens_without_building_its_index(
    tmp_path: Path,
) -> None:
    import asyncarr.sync as az

    (tmp_path / "zarr.json").write_text(json.dumps(HUGE_SHARD))
    arr = az.open_array(str(tmp_path))  # used to encode an empty 64 GiB index to size it
    assert arr.shards == (65536, 65536) and arr.chunks == (1, 1)
    sharding = arr.async_array._ctx.sharding
    assert sharding is not None and sharding.index_size == 2**32 * 16 + 4
    assert arr[5, 7:9].tolist() == [0, 0]  # no shard stored: fill


_WRITE_HUGE = """
import resource, sys
resource.setrlimit(resource.RLIMIT_AS, (6 * 2**30, 6 * 2**30))
import asyncarr.sync as az
from asyncarr.errors import CodecError
arr = az.open_array(sys.argv[1], mode="r+")
try:
    arr[0, 0] = 3
except CodecError as exc:
    print("CodecError:", exc)
"""


def test_a_shard_index_too_large_to_allocate_is_a_codec_error(tmp_path: Path) -> None:
    (tmp_path / "zarr.json").write_text(json.dumps(HUGE_SHARD))
    done = subprocess.run(
        [sys.executable, "-c", _WRITE_HUGE, str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert "CodecError: the index of a shard of 4294967296 inner chunks" in done.stdout
    assert "cannot be allocated" in done.stdout and "c/0/0" in done.stdout
