"""Interop with zarr-python 3: chunks it writes decode with asyncarr's codecs,
chunks asyncarr encodes read back in zarr-python, and where the encoding is
deterministic the bytes are identical. Metadata entries round-trip exactly."""

from __future__ import annotations

import itertools
import json
import warnings
from typing import Any

import numcodecs
import numpy as np
import pytest

zarr = pytest.importorskip("zarr", reason="zarr-python is a test dependency (pip install zarr)")
from zarr.codecs import numcodecs as znc  # noqa: E402
from zarr.core.buffer import cpu  # noqa: E402

from asyncarr._types import ChunkSpec  # noqa: E402
from asyncarr.abc import ArrayArrayCodec, ArrayBytesCodec, Codec, NDArray  # noqa: E402
from asyncarr.codecs import NumcodecsCodec, codec_from_metadata, v2_codecs  # noqa: E402

SHAPE, CHUNKS = (20, 30), (8, 16)


def _encode(codecs: list[Codec], chunk: NDArray, spec: ChunkSpec) -> bytes:
    data: Any = chunk
    for c in codecs:
        s = spec
        c = c.evolve(s)
        if isinstance(c, ArrayArrayCodec):
            data = c.encode(data, s)
            spec = c.resolve_spec(s)
        else:
            data = c.encode(data, s)
    return bytes(data)


def _decode(codecs: list[Codec], data: bytes, spec: ChunkSpec) -> NDArray:
    specs, evolved = [], []
    for c in codecs:
        c = c.evolve(spec)
        specs.append(spec)
        evolved.append(c)
        if isinstance(c, ArrayArrayCodec):
            spec = c.resolve_spec(spec)
    out: Any = data
    for c, s in reversed(list(zip(evolved, specs))):
        if isinstance(c, ArrayArrayCodec | ArrayBytesCodec):
            out = c.decode(out, s)
        else:
            out = c.decode(out, s, None)
    return out  # type: ignore[no-any-return]


def _data(dtype: str) -> NDArray:
    n = int(np.prod(SHAPE))
    if np.dtype(dtype) == np.dtype(bool):
        return (np.arange(n) % 3 == 0).reshape(SHAPE)
    return (np.arange(n) % 251 + np.arange(n) // 7).astype(dtype).reshape(SHAPE)


def _chunks(data: NDArray, fill: Any) -> Any:
    for i, j in itertools.product(
        range(-(-SHAPE[0] // CHUNKS[0])), range(-(-SHAPE[1] // CHUNKS[1]))
    ):
        block = np.full(CHUNKS, fill, dtype=data.dtype)
        part = data[i * CHUNKS[0] : (i + 1) * CHUNKS[0], j * CHUNKS[1] : (j + 1) * CHUNKS[1]]
        block[: part.shape[0], : part.shape[1]] = part
        yield (i, j), block


def _v3_cases() -> list[Any]:
    zc = zarr.codecs
    # (id, dtype, filters, serializer, compressors, byte-identical encode?)
    return [
        ("bytes-only", "<f8", None, zc.BytesCodec(), None, True),
        ("bytes-big", ">i4", None, zc.BytesCodec(endian="big"), None, True),
        ("uint8-no-endian", "u1", None, "auto", None, True),
        ("zstd", "<f4", None, "auto", [zc.ZstdCodec(level=3)], False),
        ("zstd-checksum", "<i8", None, "auto", [zc.ZstdCodec(level=1, checksum=True)], False),
        ("gzip", "<i2", None, "auto", [zc.GzipCodec(level=6)], False),
        ("blosc-auto", "<f8", None, "auto", [zc.BloscCodec()], True),
        (
            "blosc-lz4",
            "<u2",
            None,
            "auto",
            [zc.BloscCodec(cname="lz4", shuffle="bitshuffle")],
            True,
        ),
        ("crc32c", "<f4", None, "auto", [zc.Crc32cCodec()], True),
        ("zstd+crc32c", "<i4", None, "auto", [zc.ZstdCodec(), zc.Crc32cCodec()], False),
        ("blosc+crc32c", "<i4", None, "auto", [zc.BloscCodec(), zc.Crc32cCodec()], True),
        ("transpose", "<f8", [zc.TransposeCodec(order=(1, 0))], "auto", None, True),
        ("nc-delta", "<i4", [znc.Delta(dtype="<i4")], "auto", [znc.Zlib(level=1)], True),
        ("nc-delta-astype", "<i4", [znc.Delta(dtype="<i4", astype="<i8")], "auto", None, True),
        (
            "nc-fixedscaleoffset",
            "<f8",
            [znc.FixedScaleOffset(offset=2, scale=10, astype="<i4")],
            "auto",
            [znc.BZ2(level=1)],
            True,
        ),
        ("nc-bitround", "<f4", [znc.BitRound(keepbits=6)], "auto", [znc.LZ4()], True),
        ("nc-quantize", "<f8", [znc.Quantize(digits=2)], "auto", [znc.LZMA()], True),
        ("nc-astype", "<f8", [znc.AsType(encode_dtype="<f4")], "auto", None, True),
        ("nc-packbits", "bool", [znc.PackBits()], "auto", None, True),
        ("nc-shuffle", "<i4", None, "auto", [znc.Shuffle(), znc.Zstd(level=1)], True),
        ("nc-blosc", "<i4", None, "auto", [znc.Blosc(cname="zstd", clevel=2, shuffle=1)], True),
        ("nc-checksums", "<u2", None, "auto", [znc.CRC32(), znc.Adler32()], True),
        (
            "nc-fletcher-jenkins",
            "<u2",
            None,
            "auto",
            [znc.Fletcher32(), znc.JenkinsLookup3()],
            True,
        ),
        ("nc-crc32c", "<f4", None, "auto", [znc.CRC32C()], True),
        ("nc-gzip", "<f4", None, "auto", [znc.GZip(level=2)], False),
    ]


@pytest.mark.parametrize("case", _v3_cases(), ids=lambda c: c[0])
def test_v3_interop(case: Any) -> None:
    _name, dtype, filters, serializer, compressors, identical = case
    store: dict[str, Any] = {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        arr = zarr.create_array(
            store=store,
            shape=SHAPE,
            chunks=CHUNKS,
            dtype=dtype,
            filters=filters,
            serializer=serializer,
            compressors=compressors,
            fill_value=0,
            zarr_format=3,
        )
        arr[:] = _data(dtype)
        data = arr[:]  # what zarr-python reads back (lossy filters included)
    meta = json.loads(store["zarr.json"].to_bytes())
    entries = meta["codecs"]
    codecs = [codec_from_metadata(e) for e in entries]
    # metadata entries round-trip exactly (order of keys aside)
    assert [c.to_metadata() for c in codecs] == entries
    spec = ChunkSpec(shape=CHUNKS, dtype=np.dtype(dtype), fill_value=0)
    for (i, j), block in _chunks(data, 0):
        key = f"c/{i}/{j}"
        theirs = store[key].to_bytes()
        np.testing.assert_array_equal(_decode(codecs, theirs, spec), block)
        ours = _encode(codecs, block, spec)
        if identical:
            assert ours == theirs, key
        store[key] = cpu.Buffer.from_bytes(ours)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        np.testing.assert_array_equal(zarr.open_array(store=store, mode="r")[:], data)


def _v2_cases() -> list[Any]:
    return [
        ("none", "<f8", None, None, "C"),
        ("zlib", "<i4", numcodecs.Zlib(level=3), None, "C"),
        ("zstd", "<f4", numcodecs.Zstd(level=2), None, "C"),
        (
            "blosc-typesize-from-dtype",
            "<f8",
            numcodecs.Blosc("lz4", 5, numcodecs.Blosc.SHUFFLE),
            None,
            "C",
        ),
        (
            "blosc-autoshuffle",
            "<i2",
            numcodecs.Blosc("zstd", 3, numcodecs.Blosc.AUTOSHUFFLE),
            None,
            "C",
        ),
        ("blosc-bitshuffle-F", "<u4", numcodecs.Blosc("blosclz", 5, 2), None, "F"),
        ("big-endian", ">f8", numcodecs.Zlib(), None, "C"),
        ("delta-F", "<i4", numcodecs.LZ4(), [numcodecs.Delta("<i4", "<i8")], "F"),
        ("fso", "<f8", numcodecs.BZ2(), [numcodecs.FixedScaleOffset(0, 100, "<f8", "<i4")], "C"),
        (
            "quantize+shuffle",
            "<f4",
            numcodecs.LZMA(),
            [numcodecs.Quantize(3, "<f4"), numcodecs.Shuffle(4)],
            "C",
        ),
        ("packbits", "|b1", numcodecs.Zlib(), [numcodecs.PackBits()], "F"),
        (
            "categorize",
            "<U3",
            numcodecs.Zlib(),
            [numcodecs.Categorize(["a", "bb", "ccc"], "<U3")],
            "C",
        ),
        ("astype+crc", "<f8", numcodecs.CRC32(), [numcodecs.AsType("<f4", "<f8")], "C"),
    ]


@pytest.mark.parametrize("case", _v2_cases(), ids=lambda c: c[0])
def test_v2_interop(case: Any) -> None:
    _name, dtype, compressor, filters, order = case
    store: dict[str, Any] = {}
    if np.dtype(dtype).kind == "U":
        data = (
            np.array(["a", "bb", "ccc"])[np.arange(np.prod(SHAPE)) % 3].astype(dtype).reshape(SHAPE)
        )
        fill: Any = ""
    else:
        data, fill = _data(dtype), 0
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        arr = zarr.create_array(
            store=store,
            shape=SHAPE,
            chunks=CHUNKS,
            dtype=dtype,
            compressors=compressor,
            filters=filters,
            fill_value=fill,
            order=order,
            zarr_format=2,
        )
        arr[:] = data
        data = arr[:]
    meta = json.loads(store[".zarray"].to_bytes())
    codecs = v2_codecs(compressor=meta["compressor"], filters=meta["filters"], dtype=meta["dtype"])
    if meta["compressor"] is not None:
        assert codecs[-1].to_v2_config() == meta["compressor"]  # type: ignore[attr-defined]
    written = [c.to_v2_config() for c in codecs if isinstance(c, NumcodecsCodec)]
    assert written[: len(meta["filters"] or [])] == (meta["filters"] or [])
    spec = ChunkSpec(
        shape=CHUNKS, dtype=np.dtype(meta["dtype"]), fill_value=fill, order=meta["order"]
    )
    for (i, j), block in _chunks(data, fill):
        key = f"{i}.{j}"
        theirs = store[key].to_bytes()
        np.testing.assert_array_equal(_decode(codecs, theirs, spec), block)
        ours = _encode(codecs, block, spec)
        assert ours == theirs, key
