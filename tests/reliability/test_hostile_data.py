"""Hostile metadata and chunk bytes: clear asyncarr errors naming the key, nothing changed.

Absurd shapes and chunk grids, unknown or malformed codecs, chunks of the
wrong decoded size, garbage, decompression bombs, corrupt shard indexes and
checksum mismatches must each raise a specific asyncarr error whose message
names the offending key - never a raw numpy/numcodecs exception, never
silent wrong data, never unbounded memory - and leave the store untouched.
"""

from __future__ import annotations

import copy
import functools
import json
import struct
import threading
import time
import tracemalloc
import zlib
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import crc32c
import numpy as np
import psutil
import pytest
import zstandard
from _reliability_helpers import fast_limits, pattern, snapshot

import asyncarr
from asyncarr.abc import Store
from asyncarr.errors import AsyncarrError, CodecError, MetadataError, SelectionError
from asyncarr.stores import MemoryStore
from asyncarr.stores._local import LocalStore

# -- metadata -------------------------------------------------------------------------------
V3: dict[str, Any] = {
    "zarr_format": 3,
    "node_type": "array",
    "shape": [10, 10],
    "data_type": "int32",
    "chunk_grid": {"name": "regular", "configuration": {"chunk_shape": [5, 5]}},
    "chunk_key_encoding": {"name": "default", "configuration": {"separator": "/"}},
    "fill_value": 0,
    "codecs": [{"name": "bytes", "configuration": {"endian": "little"}}, {"name": "zstd"}],
    "attributes": {},
}
V2: dict[str, Any] = {
    "zarr_format": 2,
    "shape": [10, 10],
    "chunks": [5, 5],
    "dtype": "<i4",
    "compressor": {"id": "zstd", "level": 1},
    "fill_value": 0,
    "order": "C",
    "filters": None,
}
DELETE = object()
BYTES = {"name": "bytes", "configuration": {"endian": "little"}}


def edit(base: dict[str, Any], path: tuple[str, ...], value: Any) -> dict[str, Any]:
    doc = copy.deepcopy(base)
    where = doc
    for part in path[:-1]:
        where = where[part]
    if value is DELETE:
        del where[path[-1]]
    else:
        where[path[-1]] = value
    return doc


GRID = ("chunk_grid", "configuration", "chunk_shape")
V3_CASES: dict[str, tuple[tuple[str, ...], Any]] = {
    "shape over 2**63": (("shape",), [2**70, 10]),
    "shape exactly 2**63": (("shape",), [2**63, 10]),
    "negative shape": (("shape",), [-1, 10]),
    "fractional shape": (("shape",), [1.5, 10]),
    "string shape": (("shape",), ["10", 10]),
    "boolean shape": (("shape",), [True, 10]),
    "null shape": (("shape",), None),
    "missing shape": (("shape",), DELETE),
    "rank mismatch": (("shape",), [10]),
    "zero chunks": (GRID, [0, 5]),
    "negative chunks": (GRID, [-5, 5]),
    "chunks over 16 GiB": (GRID, [2**40, 2**40]),
    "chunks overflowing int64": (GRID, [2**62, 2**62]),
    "float chunks": (GRID, [5.0, 5]),
    "chunk grid without configuration": (("chunk_grid",), {"name": "regular"}),
    "irregular chunk grid": (("chunk_grid",), {"name": "rectilinear", "configuration": {}}),
    **{
        f"rectilinear {label}": (
            ("chunk_grid",),
            {"name": "rectilinear", "configuration": {"kind": "inline", "chunk_shapes": shapes}},
        )
        for label, shapes in {
            "edges short of the shape": [[3, 3], [10]],
            "zero edge": [[0, 10], [10]],
            "negative edge": [[-5, 15], [10]],
            "run of count zero": [[[5, 0], 10], [10]],
            "run of negative count": [[[5, -2], 10], [10]],
            "run of three numbers": [[[5, 2, 1]], [10]],
            "boolean edge": [[True, 9], [10]],
            "fractional edge": [[2.5, 7.5], [10]],
            "string edge": [["10"], [10]],
            "no edges": [[], [10]],
            "too few dimensions": [[10]],
            "too many dimensions": [[10], [10], [10]],
            "not a list": {"0": [10]},
            "a billion edges overflowing int64": [[[2**62, 10**9]], [10]],
            "a run count over 2**63": [[[1, 2**70]], [10]],
            "edge over 2**63": [[2**64], [10]],
            "chunks over 16 GiB": [[2**40], [2**40]],
        }.items()
    },
    "rectilinear kind external": (
        ("chunk_grid",),
        {"name": "rectilinear", "configuration": {"kind": "external", "chunk_shapes": [5, 5]}},
    ),
    "rectilinear without kind": (
        ("chunk_grid",),
        {"name": "rectilinear", "configuration": {"chunk_shapes": [5, 5]}},
    ),
    "unknown chunk grid": (("chunk_grid",), {"name": "hexagonal", "configuration": {}}),
    "unknown codec": (("codecs",), [BYTES, {"name": "no-such-codec"}]),
    "malformed codec level": (
        ("codecs",),
        [BYTES, {"name": "zstd", "configuration": {"level": "x"}}],
    ),
    "huge codec level": (("codecs",), [BYTES, {"name": "gzip", "configuration": {"level": 2**70}}]),
    "codec as a string": (("codecs",), ["zstd"]),
    "no array->bytes codec": (("codecs",), [{"name": "zstd"}]),
    "empty codec list": (("codecs",), []),
    "codec configuration list": (("codecs",), [{"name": "bytes", "configuration": [1]}]),
    "bad endian": (("codecs",), [{"name": "bytes", "configuration": {"endian": "middle"}}]),
    "transpose not a permutation": (
        ("codecs",),
        [{"name": "transpose", "configuration": {"order": [0, 2**70]}}, BYTES],
    ),
    "unknown blosc compressor": (
        ("codecs",),
        [BYTES, {"name": "blosc", "configuration": {"cname": "nope"}}],
    ),
    "shard not a multiple of inner chunks": (
        ("codecs",),
        [{"name": "sharding_indexed", "configuration": {"chunk_shape": [3, 3]}}],
    ),
    "zero inner chunks": (
        ("codecs",),
        [{"name": "sharding_indexed", "configuration": {"chunk_shape": [0, 5]}}],
    ),
    "unknown data type": (("data_type",), "int33"),
    "fill value out of range": (("fill_value",), 2**80),
    "fill value of the wrong kind": (("fill_value",), "abc"),
    "bad chunk key separator": (
        ("chunk_key_encoding",),
        {"name": "default", "configuration": {"separator": ".."}},
    ),
    "unknown must-understand field": (("surprise",), {"must_understand": True}),
    "wrong node type": (("node_type",), "banana"),
}
V2_CASES: dict[str, tuple[tuple[str, ...], Any]] = {
    "shape over 2**63": (("shape",), [2**70, 10]),
    "negative shape": (("shape",), [-1, 10]),
    "fractional shape": (("shape",), [1.5, 10]),
    "zero chunks": (("chunks",), [0, 5]),
    "unknown compressor": (("compressor",), {"id": "no-such-codec"}),
    "compressor without id": (("compressor",), {"level": 1}),
    "filter as a string": (("filters",), ["x"]),
    "bad dtype": (("dtype",), "<i3"),
    "object dtype": (("dtype",), "|O"),
    "bad order": (("order",), "Z"),
    "bad separator": (("dimension_separator",), "x"),
    "missing dtype": (("dtype",), DELETE),
    "chunks over 16 GiB": (("chunks",), [2**40, 2**40]),
    "rank mismatch": (("chunks",), [5]),
}


def metadata_params() -> Iterator[Any]:
    for label, (path, value) in V3_CASES.items():
        yield pytest.param("zarr.json", edit(V3, path, value), id=f"v3 {label}")
    for value in (True, [5, 5]):  # found by test_fuzzing.py
        yield pytest.param(
            "zarr.json",
            edit(V3, ("chunk_grid", "configuration"), value),
            id=f"v3 chunk grid configuration {value!r}",
        )
    for label, (path, value) in V2_CASES.items():
        yield pytest.param(".zarray", edit(V2, path, value), id=f"v2 {label}")
    for key, raw in (("zarr.json", b"{not json"), (".zarray", b"[1, 2]"), ("zarr.json", b"\xff")):
        yield pytest.param(key, raw, id=f"not a JSON object in {key} {raw[:4]!r}")


@pytest.mark.parametrize(("key", "doc"), list(metadata_params()))
async def test_absurd_metadata_is_a_metadata_error_naming_the_key(
    key: str, doc: dict[str, Any] | bytes
) -> None:
    store = MemoryStore()
    await store.set(key, doc if isinstance(doc, bytes) else json.dumps(doc).encode())
    before = await snapshot(store)
    with pytest.raises(MetadataError) as info:
        await asyncarr.open_array(store, mode="r+")
    assert repr(key) in str(info.value)
    assert await snapshot(store) == before


async def test_a_sharded_rectilinear_grid_of_partial_inner_chunks_is_refused() -> None:
    store = MemoryStore()
    doc = edit(V3, ("chunk_grid",), _rectilinear([[4, 6], [10]]))
    doc["codecs"] = [
        {"name": "sharding_indexed", "configuration": {"chunk_shape": [2, 5], "codecs": [BYTES]}}
    ]
    await store.set("zarr.json", json.dumps(doc).encode())
    await asyncarr.open_array(store)  # edges 4 and 6: whole inner chunks of 2
    doc["chunk_grid"] = _rectilinear([[4, 3, 3], [10]])
    await store.set("zarr.json", json.dumps(doc).encode())
    with pytest.raises(MetadataError, match="multiple") as info:
        await asyncarr.open_array(store)
    assert "'zarr.json'" in str(info.value)


def _rectilinear(shapes: list[Any]) -> dict[str, Any]:
    return {"name": "rectilinear", "configuration": {"kind": "inline", "chunk_shapes": shapes}}


@pytest.mark.parametrize("extent", [10**9, 10])
async def test_a_billion_edges_cost_one_run(extent: int) -> None:
    """``[[1, 10**9]]``: a billion chunk edges in one run, over an axis of that length or
    reaching far past it. Opening, reading, writing and storing the metadata again cost
    what one run costs (a list of a billion edges would be gigabytes)."""
    store = MemoryStore()
    doc = edit(V3, ("shape",), [extent, 10])
    doc["chunk_grid"] = _rectilinear([[[1, 10**9]], [[3, 3], 1]])
    await store.set("zarr.json", json.dumps(doc).encode())
    tracemalloc.start()
    try:
        arr = await asyncarr.open_array(store, mode="r+")
        assert arr.nchunks == extent * 4 and arr.chunk_grid.grid_shape == (extent, 4)
        await arr.write(np.arange(20, dtype="int32").reshape(2, 10), (slice(extent - 2, extent),))
        np.testing.assert_array_equal(
            await arr.read((slice(extent - 3, extent), slice(8, 10))),
            [[0, 0], [8, 9], [18, 19]],
        )
        await arr.set_attributes({"touched": True})  # the metadata is written back
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 16 << 20
    raw = await store.get("zarr.json")
    assert raw is not None
    assert json.loads(raw)["chunk_grid"] == doc["chunk_grid"]


async def test_a_v2_compressor_config_that_fails_on_write_names_the_key() -> None:
    store = MemoryStore()
    doc = edit(V2, ("compressor",), {"id": "zstd", "level": "x"})
    await store.set(".zarray", json.dumps(doc).encode())
    arr = await asyncarr.open_array(store, mode="r+")
    before = await snapshot(store)
    with pytest.raises(CodecError) as info:
        await arr.write(np.ones((10, 10), dtype="int32"))
    assert await snapshot(store) == before
    assert "'0.0'" in str(info.value) or "'.zarray'" in str(info.value)


async def test_huge_but_valid_shapes_work_sparsely() -> None:
    """2**62 x 2**62 elements is fine as long as a selection is small."""
    store = MemoryStore()
    arr = await asyncarr.create_array(store, shape=(2**62, 2**62), chunks=(1, 1), dtype="int32")
    far = (slice(2**62 - 2, 2**62), slice(2**61, 2**61 + 2))
    await arr.write(7, far)
    np.testing.assert_array_equal(await arr.read(far), [[7, 7], [7, 7]])
    assert len([k async for k in store.list_prefix("c/")]) == 4


async def test_selections_too_large_to_allocate_are_selection_errors() -> None:
    store = MemoryStore()
    arr = await asyncarr.create_array(store, shape=(2**62, 2**62), chunks=(1, 1), dtype="int32")
    with pytest.raises(SelectionError):
        await arr.read()


# -- chunk bytes ------------------------------------------------------------------------------
StoreFactory = Callable[[Path], Store]
STORES: dict[str, StoreFactory] = {
    "memory": lambda tmp: MemoryStore(limits=fast_limits()),
    "local": lambda tmp: LocalStore(tmp / "store", limits=fast_limits()),
}


@pytest.fixture(params=sorted(STORES))
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Store]:
    s = STORES[request.param](tmp_path)
    yield s
    await s.aclose()


def chunk_key(fmt: int) -> str:
    return "c/0/0" if fmt == 3 else "0.0"


async def array_with_data(
    store: Store, fmt: int, compressor: Any = "zstd", **kwargs: Any
) -> tuple[asyncarr.AsyncArray, np.ndarray]:
    arr = await asyncarr.create_array(
        store, shape=(20, 20), chunks=(10, 10), dtype="int32", zarr_format=fmt,
        compressor=compressor, **kwargs,
    )  # fmt: skip
    data = pattern((20, 20), seed=3)
    await arr.write(data)
    return arr, data


def encode_like(compressor: Any, raw: bytes) -> bytes:
    if compressor == "zstd":
        return zstandard.ZstdCompressor().compress(raw)
    if compressor == "gzip":
        import gzip

        return gzip.compress(raw)
    return raw


async def expect_codec_error(store: Store, arr: asyncarr.AsyncArray, key: str) -> None:
    """Reading the corrupt chunk, alone or with others, raises a CodecError naming it."""
    before = await snapshot(store)
    for selection in (Ellipsis, (slice(0, 3), slice(0, 3))):
        with pytest.raises(CodecError) as info:
            await arr.read(selection)
        assert repr(key) in str(info.value) or f"'{key}[" in str(info.value)
    np.testing.assert_array_equal(await arr.read((slice(10, 20), slice(10, 20))), arr_part(arr))
    assert await snapshot(store) == before


def arr_part(arr: asyncarr.AsyncArray) -> np.ndarray:
    return pattern((20, 20), seed=3)[10:20, 10:20]


@pytest.mark.parametrize("fmt", [2, 3])
@pytest.mark.parametrize("compressor", ["zstd", "gzip", None])
async def test_a_chunk_of_the_wrong_decoded_size_is_refused(
    store: Store, fmt: int, compressor: Any
) -> None:
    arr, _ = await array_with_data(store, fmt, compressor)
    key = chunk_key(fmt)
    other_size = np.arange(50, dtype="<i4").tobytes()  # a valid chunk of 50, not 100, items
    await store.set(key, encode_like(compressor, other_size))
    await expect_codec_error(store, arr, key)


@pytest.mark.parametrize("fmt", [2, 3])
@pytest.mark.parametrize("damage", ["truncated", "garbage", "empty", "bit flip"])
async def test_damaged_chunks_are_codec_errors(store: Store, fmt: int, damage: str) -> None:
    arr, _ = await array_with_data(store, fmt, "zstd")
    key = chunk_key(fmt)
    good = await store.get(key)
    assert good is not None
    bad = {
        "truncated": good[: len(good) // 2],
        "garbage": bytes(range(256)) * 3,
        "empty": b"",
        "bit flip": good[:6] + bytes([good[6] ^ 0x40]) + good[7:],
    }[damage]
    await store.set(key, bad)
    await expect_codec_error(store, arr, key)


async def test_a_crc32c_mismatch_is_a_codec_error(store: Store) -> None:
    arr, _ = await array_with_data(
        store,
        3,
        None,
        codecs=[BYTES, {"name": "crc32c"}],  # type: ignore[arg-type]
    )
    good = await store.get("c/0/0")
    assert good is not None
    await store.set("c/0/0", good[:10] + bytes([good[10] ^ 1]) + good[11:])
    await expect_codec_error(store, arr, "c/0/0")
    with pytest.raises(CodecError, match="crc32c checksum mismatch"):
        await arr.read()


async def test_a_partial_write_into_a_corrupt_chunk_changes_nothing(store: Store) -> None:
    arr, _ = await array_with_data(store, 3)
    await store.set("c/0/0", b"\x28\xb5\x2f\xfd garbage")
    before = await snapshot(store)
    with pytest.raises(CodecError) as info:
        await arr.write(1, (slice(2, 4), slice(2, 4)))  # read-modify-write of c/0/0
    assert "'c/0/0'" in str(info.value)
    assert await snapshot(store) == before


# -- decompression bombs ----------------------------------------------------------------------
GIB = 1 << 30


def zstd_rle_bomb(total: int, content_size: bool) -> bytes:
    """A valid zstd frame of ``total`` zero bytes in about ``total / 32768`` bytes.

    Built from RLE blocks of 128 KiB (4 bytes each); with ``content_size`` the
    frame header states the size, otherwise a decoder only finds out by decoding.
    """
    block = 1 << 17
    assert total % block == 0
    parts = [b"\x28\xb5\x2f\xfd", bytes([0xC0 if content_size else 0x00, 0x38])]  # window 128 KiB
    if content_size:
        parts.append(struct.pack("<Q", total))
    n = total // block
    for i in range(n):
        parts.append(((block << 3) | (1 << 1) | (i == n - 1)).to_bytes(3, "little") + b"\x00")
    return b"".join(parts)


@functools.cache
def deflate_bomb(total: int, wbits: int) -> bytes:
    """``total`` zero bytes as gzip (``wbits=31``) or zlib (``wbits=15``), about 1 KB per MiB.

    One full-flushed deflate block of 1 MiB of zeros is repeated; the trailer
    (CRC-32 and size for gzip, Adler-32 for zlib) is computed for the whole.
    """
    unit = 1 << 20
    assert total % unit == 0
    zeros = bytes(unit)
    c = zlib.compressobj(9, zlib.DEFLATED, wbits)
    first = c.compress(zeros) + c.flush(zlib.Z_FULL_FLUSH)
    repeat = c.compress(zeros) + c.flush(zlib.Z_FULL_FLUSH)
    if wbits > 16:
        final = c.flush(zlib.Z_FINISH)[:-8]
        crc = 0
        for _ in range(total // unit):
            crc = zlib.crc32(zeros, crc)
        trailer = struct.pack("<II", crc, total & 0xFFFFFFFF)
    else:
        final = c.flush(zlib.Z_FINISH)[:-4]
        trailer = struct.pack(">I", ((total % 65521) << 16) | 1)
    return first + repeat * (total // unit - 1) + final + trailer


def test_the_bombs_are_real() -> None:
    """Small versions of each bomb decode, with standard decoders, to exactly the zeros."""
    import gzip

    mib = 1 << 20
    for content_size in (True, False):
        small = zstd_rle_bomb(4 * mib, content_size)
        with zstandard.ZstdDecompressor().stream_reader(small) as reader:
            assert reader.readall() == bytes(4 * mib)
    assert gzip.decompress(deflate_bomb(4 * mib, 31)) == bytes(4 * mib)
    assert zlib.decompress(deflate_bomb(4 * mib, 15)) == bytes(4 * mib)
    assert len(zstd_rle_bomb(GIB, True)) < 40_000 and len(deflate_bomb(GIB, 31)) < 1_200_000


@contextmanager
def peak_rss_growth() -> Iterator[list[int]]:
    """Samples this process's RSS every millisecond; yields ``[peak growth in bytes]``."""
    proc = psutil.Process()
    base = proc.memory_info().rss
    result = [0]
    stop = threading.Event()

    def sample() -> None:
        while not stop.is_set():
            result[0] = max(result[0], proc.memory_info().rss - base)
            time.sleep(0.001)

    thread = threading.Thread(target=sample, daemon=True)
    thread.start()
    try:
        yield result
    finally:
        stop.set()
        thread.join()
        result[0] = max(result[0], proc.memory_info().rss - base)


BOMBS: dict[str, tuple[int, str, Callable[[], bytes]]] = {
    "v3 zstd, size in header": (3, "zstd", lambda: zstd_rle_bomb(GIB, True)),
    "v3 zstd, size not stated": (3, "zstd", lambda: zstd_rle_bomb(GIB, False)),
    "v3 gzip": (3, "gzip", lambda: deflate_bomb(GIB, 31)),
    "v2 zstd, size not stated": (2, "zstd", lambda: zstd_rle_bomb(GIB, False)),
    "v2 gzip": (2, "gzip", lambda: deflate_bomb(GIB, 31)),
    "v2 zlib": (2, "zlib", lambda: deflate_bomb(GIB, 15)),
}


@pytest.mark.parametrize("case", sorted(BOMBS))
async def test_decompression_bombs_fail_with_bounded_memory(case: str) -> None:
    fmt, compressor, make = BOMBS[case]
    store = MemoryStore()
    arr = await asyncarr.create_array(
        store, shape=(100, 100), chunks=(100, 100), dtype="float64", zarr_format=fmt,
        compressor=compressor,
    )  # fmt: skip
    key = chunk_key(fmt)
    await store.set(key, make())  # 1 GiB of zeros for an 80 kB chunk
    before = await snapshot(store)
    with peak_rss_growth() as growth, pytest.raises(CodecError) as info:
        await arr.read()
    print(f"\n[bomb: {case}] peak RSS growth {growth[0] / 1e6:.1f} MB: {info.value}")
    assert repr(key) in str(info.value)
    assert growth[0] < 100_000_000
    assert await snapshot(store) == before


# -- shard indexes ----------------------------------------------------------------------------
INDEX_ENTRIES = 4 * 4  # a 16x16 shard of 4x4 inner chunks


async def sharded(store: Store) -> tuple[asyncarr.AsyncArray, bytes]:
    arr = await asyncarr.create_array(
        store, shape=(16, 16), chunks=(4, 4), shards=(16, 16), dtype="int32"
    )
    await arr.write(pattern((16, 16), seed=4))
    shard = await store.get("c/0/0")
    assert shard is not None
    return arr, shard


def with_index(shard: bytes, edit_index: Callable[[np.ndarray], None]) -> bytes:
    """The shard with its (offset, nbytes) index edited and a valid crc32c recomputed."""
    size = INDEX_ENTRIES * 16
    index = np.frombuffer(shard[-size - 4 : -4], dtype="<u8").reshape(-1, 2).copy()
    edit_index(index)
    raw = index.astype("<u8").tobytes()
    return shard[: -size - 4] + raw + struct.pack("<I", crc32c.crc32c(raw))


def _set(row: int, col: int, value: int) -> Callable[[np.ndarray], None]:
    def change(index: np.ndarray) -> None:
        index[row, col] = value

    return change


def _both(row: int, offset: int, nbytes: int) -> Callable[[np.ndarray], None]:
    def change(index: np.ndarray) -> None:
        index[row] = (offset, nbytes)

    return change


SHARD_DAMAGE: list[Any] = [
    pytest.param(lambda s: s[:-10] + bytes([s[-10] ^ 0xFF]) + s[-9:], "crc32c", id="index crc"),
    pytest.param(lambda s: with_index(s, _set(0, 0, 2**64 - 1)), "half-missing", id="half-missing"),
    pytest.param(lambda s: with_index(s, _set(0, 0, 10**9)), "corrupt shard index", id="offset"),
    pytest.param(lambda s: with_index(s, _set(0, 1, 2**40)), "corrupt shard index", id="size"),
    pytest.param(
        lambda s: with_index(s, _both(0, 2**63, 2**63)), "overflows 64 bits", id="end overflows"
    ),
    pytest.param(lambda s: s[-100:], "shorter than its", id="short shard"),
    pytest.param(lambda s: b"", "shard is 0 bytes", id="empty shard"),
    pytest.param(lambda s: with_index(s, _set(0, 1, 3)), "zstd", id="inner chunk cut"),
]


@pytest.mark.parametrize("whole", [True, False], ids=["whole shard", "inner ranges"])
@pytest.mark.parametrize(("damage", "message"), SHARD_DAMAGE)
async def test_corrupt_shard_indexes_are_codec_errors(
    store: Store,
    damage: Callable[[bytes], bytes],
    message: str,
    whole: bool,
    request: pytest.FixtureRequest,
) -> None:
    arr, shard = await sharded(store)
    await store.set("c/0/0", damage(shard))
    before = await snapshot(store)
    selection = Ellipsis if whole else (slice(0, 2), slice(0, 2))
    with pytest.raises(AsyncarrError) as info:
        await arr.read(selection)
    assert isinstance(info.value, CodecError), f"{type(info.value).__name__}: {info.value}"
    assert message in str(info.value)
    assert "'c/0/0" in str(info.value)
    assert await snapshot(store) == before
