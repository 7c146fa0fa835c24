"""Damaged and hostile container objects: each is a clear error naming the object.

The layers here are written by a small encoder of the format's specification
(docs/layered.md) that lives in this file, not by the library, so the tests also check
that a third party following the document produces what the reader accepts.
"""

from __future__ import annotations

import json
import struct
import tracemalloc

import crc32c
import numpy as np
import pytest
import zstandard

from asyncarr.errors import CorruptContainerError, SnapshotNotFoundError
from asyncarr.stores import LayeredStore, MemoryStore
from asyncarr.stores._layered._format import LayerBuilder, parse_layer_object

TRAILER = struct.Struct("<8sHHIQQQQIIII")


def encode_layer(
    rows: list[tuple[str, int, int, int, int, int, int]],
    data: bytes,
    *,
    compress: bool = True,
    raw_length: int | None = None,
    count: int | None = None,
) -> bytes:
    """A layer from the spec: ``rows`` of (key, offset, stored, raw, crc, codec, flags)."""
    keys = [r[0].encode() for r in rows]
    index = b"".join(
        [
            np.array([r[1] for r in rows], "<u8").tobytes(),
            np.array([r[2] for r in rows], "<u8").tobytes(),
            np.array([r[3] for r in rows], "<u8").tobytes(),
            np.array([len(k) for k in keys], "<u4").tobytes(),
            np.array([r[4] for r in rows], "<u4").tobytes(),
            np.array([r[5] for r in rows], "u1").tobytes(),
            np.array([r[6] for r in rows], "u1").tobytes(),
            b"".join(keys),
        ]
    )
    stored = zstandard.ZstdCompressor().compress(index) if compress else index
    head = TRAILER.pack(
        b"AZLAYER\x00",
        1,
        1 if compress else 0,
        0,
        len(data),
        len(stored),
        len(index) if raw_length is None else raw_length,
        len(rows) if count is None else count,
        crc32c.crc32c(stored),
        0,
        0,
        0,
    )[:-4]
    return data + stored + head + struct.pack("<I", crc32c.crc32c(head))


def raw_rows(
    values: dict[str, bytes],
) -> tuple[list[tuple[str, int, int, int, int, int, int]], bytes]:
    rows, data = [], b""
    for key in sorted(values):
        v = values[key]
        rows.append((key, len(data), len(v), len(v), crc32c.crc32c(v), 0, 0))
        data += v
    return rows, data


def manifest(generation: int, layers: list[tuple[str, int, int]], **extra: object) -> bytes:
    doc = {
        "format": "asyncarr.layered",
        "version": 1,
        "generation": generation,
        "parent": generation - 1,
        "timestamp": "2025-01-01T00:00:00Z",
        "message": "crafted",
        "kind": "commit",
        "layers": [{"name": n, "size": s, "entries": e} for n, s, e in layers],
        "added": [layers[0][0]] if layers else [],
        "commit_id": "0" * 32,
    }
    doc.update(extra)
    return json.dumps(doc).encode()


LAYER = "layers/1735689600000-" + "ab" * 16 + ".layer"


def container_with(
    layer: bytes, *, entries: int | None = None, size: int | None = None
) -> MemoryStore:
    base = MemoryStore()
    base._put(LAYER, layer)
    n = entries if entries is not None else 1
    base._put("manifest.000000000001", manifest(1, [(LAYER, size or len(layer), n)]))
    return base


async def read_error(base: MemoryStore, key: str = "a") -> CorruptContainerError:
    store = LayeredStore(base)
    with pytest.raises(CorruptContainerError) as info:
        await store.get(key)
    return info.value


async def test_a_layer_written_from_the_spec_is_read() -> None:
    rows, data = raw_rows({"a": b"alpha", "b/c": b"", "zarr.json": b"{}"})
    base = container_with(encode_layer(rows, data), entries=3)
    store = LayeredStore(base)
    assert await store.get("a") == b"alpha"
    assert await store.get("b/c") == b""
    assert [k async for k in store.list_prefix("")] == ["a", "b/c", "zarr.json"]
    # and the library's layers follow the same layout (parsed by the spec encoder's rules)
    builder = LayerBuilder(compression="none")
    builder.add("k", b"v" * 10)
    index, _ = parse_layer_object("x", builder.finish())
    assert index.keys == ["k"] and int(index.stored_lengths[0]) == 10


async def test_truncated_layer() -> None:
    rows, data = raw_rows({"a": b"alpha" * 100})
    layer = encode_layer(rows, data)
    base = container_with(layer[:-10], size=len(layer))
    error = await read_error(base)
    assert error.key == LAYER
    assert f"{len(layer) - 10} bytes, its manifest says {len(layer)}" in str(error)


async def test_footer_with_an_offset_past_the_end() -> None:
    rows, data = raw_rows({"a": b"alpha"})
    key, _off, stored, raw, crc, codec, flags = rows[0]
    error = await read_error(
        container_with(encode_layer([(key, 100, stored, raw, crc, codec, flags)], data))
    )
    assert error.key == LAYER and "past the end of the data region" in str(error)


async def test_footer_with_overlapping_values() -> None:
    values = {"a": b"0123456789", "b": b"abcdefghij"}
    rows, data = raw_rows(values)
    rows[1] = (rows[1][0], 5, *rows[1][2:])  # "b" starts inside "a"
    error = await read_error(container_with(encode_layer(rows, data), entries=2))
    assert error.key == LAYER and "overlapping" in str(error)


@pytest.mark.parametrize(
    ("damage", "expected"),
    [
        (lambda b: b"X" + b[1:], None),  # no damage to the footer: the value's checksum
        (lambda b: b[:-64] + b"NOTALAYR" + b[-56:], "no layer trailer"),
        (lambda b: b[:-1] + bytes([b[-1] ^ 1]), "trailer's checksum"),
    ],
)
async def test_damaged_bytes(damage: object, expected: str | None) -> None:
    rows, data = raw_rows({"a": b"alpha"})
    layer = damage(encode_layer(rows, data))  # type: ignore[operator]
    error = await read_error(container_with(layer))
    assert error.key == LAYER
    assert (expected or "does not match its checksum") in str(error)


async def test_unsorted_keys_and_wrong_counts() -> None:
    rows, data = raw_rows({"a": b"1", "b": b"2"})
    error = await read_error(container_with(encode_layer(rows[::-1], data), entries=2))
    assert "not sorted" in str(error)
    error = await read_error(container_with(encode_layer(rows, data), entries=3))
    assert "its manifest says 3" in str(error)
    escaping = [("../x", *rows[0][1:])]
    error = await read_error(container_with(encode_layer(escaping, data)))
    assert "invalid key '../x'" in str(error)


async def test_a_lying_index_size_is_refused_before_allocating() -> None:
    rows, data = raw_rows({"a": b"alpha"})
    layer = encode_layer(rows, data, raw_length=(1 << 31) - 1)
    tracemalloc.start()
    try:
        error = await read_error(container_with(layer))
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert "implausible decoded index length" in str(error)
    assert peak < 16 << 20
    bomb = zstandard.ZstdCompressor().compress(b"\0" * (8 << 20))  # 8 MiB of zeros, tiny
    value = [("a", 0, len(bomb), 64 << 20, crc32c.crc32c(bomb), 1, 0)]
    store = LayeredStore(container_with(encode_layer(value, bomb)))
    with pytest.raises(CorruptContainerError, match="expected 67108864"):
        await store.get("a")


async def test_manifest_naming_a_missing_layer() -> None:
    base = MemoryStore()
    base._put("manifest.000000000001", manifest(1, [(LAYER, 4096, 3)]))
    error = await read_error(base)
    assert error.key == LAYER and "missing" in str(error)


async def test_cycle_of_parents() -> None:
    rows, data = raw_rows({"a": b"alpha"})
    layer = encode_layer(rows, data)
    base = container_with(layer)
    doc = json.loads(manifest(2, [(LAYER, len(layer), 1)]))
    doc["parent"] = 2  # its own parent: a cycle
    base._put("manifest.000000000002", json.dumps(doc).encode())
    error = await read_error(base)
    assert error.key == "manifest.000000000002"
    assert "parents must form one chain" in str(error)


@pytest.mark.parametrize(
    ("document", "expected"),
    [
        (b"\xff\xfe", "not UTF-8 JSON"),
        (b"[]", "not a JSON object"),
        (manifest(1, [], format="zarr"), "format is 'zarr'"),
        (manifest(1, [], version=9), "version 9"),
        (manifest(7, []), "says generation 7"),
        (manifest(1, [("../../etc/passwd", 10, 1)]), "not a valid key"),
        (manifest(1, [("other/x", 10, 1)]), "not under 'layers/'"),
        (manifest(1, [(LAYER, -1, 1)]), "size must be a non-negative integer"),
        (manifest(1, [(LAYER, 10, 1), (LAYER, 10, 1)]), "repeated"),
        (manifest(1, [], timestamp="yesterday"), "not ISO 8601"),
    ],
)
async def test_malformed_manifests(document: bytes, expected: str) -> None:
    base = MemoryStore()
    base._put("manifest.000000000001", document)
    error = await read_error(base)
    assert error.key == "manifest.000000000001"
    assert expected in str(error)


async def test_snapshot_of_a_generation_that_is_not_there() -> None:
    rows, data = raw_rows({"a": b"alpha"})
    base = container_with(encode_layer(rows, data))
    with pytest.raises(SnapshotNotFoundError, match="generation 5 does not exist"):
        await LayeredStore(base, at=5).get("a")
    base._put("manifest.000000000002", manifest(2, []))
    base._put("manifest.000000000003", manifest(3, []))
    await base.delete("manifest.000000000001")  # as garbage collection does
    with pytest.raises(SnapshotNotFoundError, match="removed by garbage collection"):
        await LayeredStore(base, at=1).get("a")
    assert await LayeredStore(base).get("a") is None  # generation 3 is empty


def test_a_very_compressible_index_is_accepted() -> None:
    """Empty values and sequential keys: the index compresses by ~100x (a bound on the
    ratio must not refuse real layers)."""
    builder = LayerBuilder()
    for i in range(120_000):
        builder.add(f"c/{i // 1000}/{i % 1000}", b"")
    data = builder.finish()
    index, _ = parse_layer_object("big", data)
    assert len(index) == 120_000 and index.position("c/119/999") is not None
    assert len(data) * 64 < 34 * 120_000  # compressed far more than 64x
