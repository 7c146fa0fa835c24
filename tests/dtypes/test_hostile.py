"""Hostile input for the data types: lying vlen chunks, structs that do not add up,
malformed data type spellings and fill values. Each is a clear asyncarr error naming
what was wrong (and the key), in bounded memory and time; never a raw exception."""

from __future__ import annotations

import copy
import json
import pickle
import struct
import time
import tracemalloc
from typing import Any

import numcodecs
import numpy as np
import pytest
import zstandard

import asyncarr
from asyncarr.errors import CodecError, MetadataError
from asyncarr.stores import MemoryStore

N = 6  # elements per chunk below


def vlen(items: list[bytes], count: int | None = None) -> bytes:
    out = struct.pack("<I", len(items) if count is None else count)
    for item in items:
        out += struct.pack("<I", len(item)) + item
    return out


GOOD = [b"a", b"bc", b"", b"def", b"\xc3\xa9", b"z"]
LYING_CHUNKS: dict[str, bytes] = {
    "empty": b"",
    "three bytes": b"\x06\x00\x00",
    "count of 2**32-1": vlen([], count=2**32 - 1),
    "count of 2**32-1 with data": vlen(GOOD, count=2**32 - 1),
    "count too small": vlen(GOOD[:3]),
    "count too large": vlen(GOOD, count=N + 1),
    "length of 2**32-1": vlen(GOOD[:0], count=N) + struct.pack("<I", 2**32 - 1) + b"x" * 40,
    "length past the end": vlen(GOOD)[:-1],
    "truncated prefix": vlen(GOOD)[:12],
    "count with no lengths": vlen([], count=N),
}


async def _array(codec: str, fmt: int, compressed: bool) -> tuple[MemoryStore, str]:
    store = MemoryStore()
    dtype = str if codec == "vlen-utf8" else bytes
    arr = await asyncarr.create_array(
        store,
        shape=(N,),
        chunks=(N,),
        dtype=dtype,
        zarr_format=fmt,
        compressor="zstd" if compressed else None,
    )
    values = [v.decode() for v in GOOD] if codec == "vlen-utf8" else GOOD
    await arr.write(np.array(values, dtype=object))
    return store, "c/0" if fmt == 3 else "0"


@pytest.mark.parametrize("compressed", [False, True], ids=["raw", "zstd"])
@pytest.mark.parametrize("fmt", [2, 3])
@pytest.mark.parametrize("codec", ["vlen-utf8", "vlen-bytes"])
@pytest.mark.parametrize("case", list(LYING_CHUNKS))
async def test_lying_vlen_chunks_are_codec_errors(
    case: str, codec: str, fmt: int, compressed: bool
) -> None:
    store, key = await _array(codec, fmt, compressed)
    raw = LYING_CHUNKS[case]
    await store.set(key, zstandard.ZstdCompressor().compress(raw) if compressed else raw)
    arr = await asyncarr.open_array(store)
    tracemalloc.start()
    start = time.perf_counter()
    try:
        with pytest.raises(CodecError) as info:
            await arr.read()
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert info.value.key == key and repr(key) in str(info.value)
    assert "vlen" in str(info.value) or "length" in str(info.value)
    assert peak < 4 << 20, f"a {len(raw)}-byte chunk made the read allocate {peak} bytes"
    assert time.perf_counter() - start < 10


async def test_invalid_utf8_is_a_codec_error() -> None:
    store, key = await _array("vlen-utf8", 3, False)
    await store.set(key, vlen([b"ok", b"\xff\xfe", b"", b"", b"", b""]))
    with pytest.raises(CodecError, match="UTF-8") as info:
        await (await asyncarr.open_array(store)).read()
    assert info.value.key == key


async def test_a_valid_vlen_chunk_still_reads() -> None:
    store, key = await _array("vlen-bytes", 3, False)
    await store.set(key, vlen([b"x"] * N))
    assert (await (await asyncarr.open_array(store)).read()).tolist() == [b"x"] * N


# -- v2 object arrays: json2 and pickle ------------------------------------------------------


async def _object_array(
    store: MemoryStore, codec: dict[str, Any], chunk: bytes, shape: int = 4
) -> None:
    meta = {
        "zarr_format": 2,
        "shape": [shape],
        "chunks": [shape],
        "dtype": "|O",
        "compressor": None,
        "fill_value": None,
        "order": "C",
        "filters": [codec],
    }
    await store.set(".zarray", json.dumps(meta).encode())
    await store.set("0", chunk)


@pytest.mark.parametrize(
    "chunk",
    [
        b'[1, 2, "|O", [1000000000000]]',
        b"[1, 2, 3, 4",
        b"[" * 100_000 + b"]" * 100_000,
        b'{"not": "a list"}',
        b'[[1, 2], [3], "|O", [4]]',
        b"\xff\xfe",
    ],
    ids=["huge shape", "truncated", "deep", "object", "ragged", "not utf-8"],
)
async def test_hostile_json_chunks_are_codec_errors(chunk: bytes) -> None:
    store = MemoryStore()
    await _object_array(store, {"id": "json2"}, chunk)
    tracemalloc.start()
    try:
        with pytest.raises(CodecError) as info:
            await (await asyncarr.open_array(store)).read()
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert info.value.key == "0"
    assert peak < 64 << 20


async def test_pickle_is_refused_unless_trusted() -> None:
    class Boom:
        def __reduce__(self) -> Any:
            return (print, ("unpickling ran code",))

    values = np.array([Boom(), 1, 2, 3], dtype=object)
    store = MemoryStore()
    await _object_array(store, {"id": "pickle", "protocol": 5}, pickle.dumps(values))
    arr = await asyncarr.open_array(store)  # opening is harmless: metadata only
    assert arr.dtype == np.dtype(object)
    with pytest.raises(CodecError, match="allow_pickle_decoding") as info:
        await arr.read()
    assert info.value.key == "0"
    await _object_array(
        store,
        {"id": "pickle", "protocol": 5},
        pickle.dumps(np.array(["a", 1, None, [2]], dtype=object)),
    )
    previous = asyncarr.allow_pickle_decoding(True)
    try:
        trusted = await asyncarr.open_array(store)
    finally:
        asyncarr.allow_pickle_decoding(previous)
    assert (await trusted.read()).tolist() == ["a", 1, None, [2]]  # trusted when opened


async def test_msgpack_object_arrays_are_refused_at_open() -> None:
    store = MemoryStore()
    await _object_array(store, {"id": "msgpack2"}, b"")
    with pytest.raises(MetadataError, match="msgpack2"):
        await asyncarr.open_array(store)


async def test_vlen_array_chunks_are_checked() -> None:
    store = MemoryStore()
    good = numcodecs.VLenArray("<i2").encode(
        np.array([np.arange(3, dtype="<i2")] * 4 + [None], dtype=object)[:4]
    )
    await _object_array(store, {"id": "vlen-array", "dtype": "<i2"}, bytes(good))
    got = await (await asyncarr.open_array(store)).read()
    assert [list(v) for v in got] == [[0, 1, 2]] * 4
    await _object_array(
        store, {"id": "vlen-array", "dtype": "<i2"}, vlen([b"\x01"] * 4)
    )  # odd sizes
    with pytest.raises(CodecError):
        await (await asyncarr.open_array(store)).read()


# -- structs -----------------------------------------------------------------------------------
STRUCT_V3: dict[str, Any] = {
    "zarr_format": 3,
    "node_type": "array",
    "shape": [4],
    "data_type": {
        "name": "struct",
        "configuration": {
            "fields": [{"name": "a", "data_type": "int32"}, {"name": "b", "data_type": "float64"}]
        },
    },
    "chunk_grid": {"name": "regular", "configuration": {"chunk_shape": [4]}},
    "chunk_key_encoding": {"name": "default"},
    "fill_value": {"a": 1, "b": 2.5},
    "codecs": [{"name": "bytes", "configuration": {"endian": "little"}}],
    "attributes": {},
}


def _nested(depth: int) -> dict[str, Any]:
    dt: Any = "int8"
    for _ in range(depth):
        dt = {"name": "struct", "configuration": {"fields": [{"name": "x", "data_type": dt}]}}
    return dt  # type: ignore[no-any-return]


FIELDS = ("data_type", "configuration", "fields")
STRUCT_CASES: dict[str, tuple[tuple[str, ...], Any, str]] = {
    "packed fill of 11 bytes for 12": (("fill_value",), "AAAAAAAAAAAAAAA=", "12 bytes"),
    "packed fill of 13 bytes for 12": (("fill_value",), "AAAAAAAAAAAAAAAAAA==", "12 bytes"),
    "fill for an unknown field": (("fill_value",), {"a": 1, "zz": 2}, "zz"),
    "fill of the wrong kind": (("fill_value",), [1, 2.5], "field values"),
    "duplicate field names": (FIELDS, [{"name": "a", "data_type": "int32"}] * 2, "twice"),
    "no fields": (FIELDS, [], "at least one field"),
    "nameless field": (FIELDS, [{"name": "", "data_type": "int32"}], "name"),
    "variable-length field": (FIELDS, [{"name": "s", "data_type": "string"}], "fixed size"),
    "unknown field type": (FIELDS, [{"name": "s", "data_type": "int33"}], "int33"),
    "nested 200 deep": (FIELDS, [{"name": "n", "data_type": _nested(200)}], "nested deeper"),
    "field as a bare string": (FIELDS, ["a"], "field 0"),
}


def _edit(base: dict[str, Any], path: tuple[str, ...], value: Any) -> dict[str, Any]:
    doc = copy.deepcopy(base)
    where = doc
    for part in path[:-1]:
        where = where[part]
    where[path[-1]] = value
    return doc


@pytest.mark.parametrize("case", list(STRUCT_CASES))
async def test_hostile_struct_metadata_is_a_metadata_error(case: str) -> None:
    path, value, expected = STRUCT_CASES[case]
    store = MemoryStore()
    await store.set("zarr.json", json.dumps(_edit(STRUCT_V3, path, value)).encode())
    with pytest.raises(MetadataError, match=expected) as info:
        await asyncarr.open_array(store)
    assert info.value.key == "zarr.json"


async def test_a_struct_chunk_of_the_wrong_size_is_a_codec_error() -> None:
    store = MemoryStore()
    await store.set("zarr.json", json.dumps(STRUCT_V3).encode())
    await store.set("c/0", b"\x00" * (4 * 12 - 1))
    with pytest.raises(CodecError, match="48 bytes") as info:
        await (await asyncarr.open_array(store)).read()
    assert info.value.key == "c/0"


V2_STRUCT: dict[str, Any] = {
    "zarr_format": 2,
    "shape": [4],
    "chunks": [4],
    "dtype": [["a", ">i4"], ["b", "<f8", [2]]],
    "compressor": None,
    "fill_value": None,
    "order": "C",
    "filters": None,
}
V2_CASES: dict[str, tuple[str, Any, str]] = {
    "absurd subarray": ("dtype", [["a", "<i4", [2**40, 2**40]]], "absurd"),
    "negative subarray": ("dtype", [["a", "<i4", [-1]]], "shape"),
    "three-part name": ("dtype", [["a", "<i4", [1], "x"]], "field 0"),
    "title tuple": ("dtype", [[["t", "a"], "<i4"]], "name"),
    "packed fill of the wrong size": ("fill_value", "AAAA", "20 bytes"),
    "object field": ("dtype", [["a", "|O"]], "a"),
}


@pytest.mark.parametrize("case", list(V2_CASES))
async def test_hostile_v2_struct_metadata_is_a_metadata_error(case: str) -> None:
    field, value, expected = V2_CASES[case]
    store = MemoryStore()
    await store.set(".zarray", json.dumps({**V2_STRUCT, field: value}).encode())
    with pytest.raises(MetadataError, match=expected) as info:
        await asyncarr.open_array(store)
    assert info.value.key == ".zarray"


# -- other spellings ----------------------------------------------------------------------------
V3_TYPES: dict[str, tuple[Any, Any]] = {
    "utf32 length 0": ({"name": "fixed_length_utf32", "configuration": {"length_bytes": 0}}, ""),
    "utf32 length 6": ({"name": "fixed_length_utf32", "configuration": {"length_bytes": 6}}, ""),
    "utf32 length 2**40": (
        {"name": "fixed_length_utf32", "configuration": {"length_bytes": 2**40}},
        "",
    ),
    "utf32 fill too long": (
        {"name": "fixed_length_utf32", "configuration": {"length_bytes": 8}},
        "abc",
    ),
    "bytes length -1": (
        {"name": "null_terminated_bytes", "configuration": {"length_bytes": -1}},
        "",
    ),
    "bytes fill too long": (
        {"name": "null_terminated_bytes", "configuration": {"length_bytes": 2}},
        "YWJj",
    ),
    "bytes fill not base64": (
        {"name": "null_terminated_bytes", "configuration": {"length_bytes": 2}},
        "!!",
    ),
    "raw r7": ("r7", [0]),
    "raw r0": ("r0", []),
    "raw fill of byte 256": ("r16", [1, 256]),
    "datetime unit": (
        {"name": "numpy.datetime64", "configuration": {"unit": "parsec", "scale_factor": 1}},
        0,
    ),
    "datetime scale 0": (
        {"name": "numpy.datetime64", "configuration": {"unit": "s", "scale_factor": 0}},
        0,
    ),
    "datetime scale 2**40": (
        {"name": "numpy.datetime64", "configuration": {"unit": "s", "scale_factor": 2**40}},
        0,
    ),
    "datetime no config": ({"name": "numpy.datetime64"}, 0),
    "datetime fill text": (
        {"name": "numpy.datetime64", "configuration": {"unit": "s", "scale_factor": 1}},
        "later",
    ),
    "datetime fill 2**64": (
        {"name": "numpy.datetime64", "configuration": {"unit": "s", "scale_factor": 1}},
        2**64,
    ),
    "string fill list": ("string", ["a"]),
    "bytes fill byte 300": ("bytes", [300]),
}


@pytest.mark.parametrize("case", list(V3_TYPES))
async def test_hostile_data_types_are_metadata_errors(case: str) -> None:
    data_type, fill = V3_TYPES[case]
    doc = {**STRUCT_V3, "data_type": data_type, "fill_value": fill}
    if case.startswith(("string", "bytes fill")):
        doc["codecs"] = [{"name": "vlen-utf8" if case.startswith("string") else "vlen-bytes"}]
    store = MemoryStore()
    await store.set("zarr.json", json.dumps(doc).encode())
    with pytest.raises(MetadataError) as info:
        await asyncarr.open_array(store)
    assert info.value.key == "zarr.json"


async def test_a_string_array_with_the_bytes_codec_is_refused() -> None:
    doc = {**STRUCT_V3, "data_type": "string", "fill_value": ""}
    store = MemoryStore()
    await store.set("zarr.json", json.dumps(doc).encode())
    with pytest.raises(MetadataError, match="bytes"):
        await asyncarr.open_array(store)
