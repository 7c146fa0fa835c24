"""Round trips with zarr-python 3: what we write it reads, what it writes we read."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numcodecs
import numpy as np
import pytest

import asyncarr

zarr = pytest.importorskip(
    "zarr", reason="zarr-python is a test dependency (make test installs it)"
)

RNG = np.random.default_rng(42)


def _data(dtype: str, shape: tuple[int, ...] = (23, 17)) -> np.ndarray:
    dt = np.dtype(dtype)
    if dt.kind == "b":
        return RNG.random(shape) > 0.5
    if dt.kind == "c":
        return (RNG.random(shape) + 1j * RNG.random(shape)).astype(dt)
    if dt.kind == "f":
        return (RNG.random(shape) * 100).astype(dt)
    info = np.iinfo(dt)
    return RNG.integers(max(info.min, -1000), min(info.max, 1000), size=shape).astype(dt)


V2_COMPRESSORS: list[Any] = [
    None,
    {"id": "zlib", "level": 1},
    {"id": "gzip", "level": 5},
    {"id": "bz2", "level": 3},
    {"id": "lzma", "preset": 1},
    {"id": "zstd", "level": 5},
    {"id": "lz4", "acceleration": 1},
    *[
        {"id": "blosc", "cname": cname, "clevel": 5, "shuffle": shuffle, "blocksize": 0}
        for cname in ("lz4", "lz4hc", "blosclz", "zstd", "zlib")
        for shuffle in (0, 1, 2)
    ],
]

V2_FILTERS: list[Any] = [
    [{"id": "delta", "dtype": "<i4"}],
    [{"id": "shuffle", "elementsize": 4}],
    [{"id": "fixedscaleoffset", "offset": 0, "scale": 1, "dtype": "<i4"}],
]


@pytest.mark.parametrize(
    "compressor",
    V2_COMPRESSORS,
    ids=lambda c: "none" if c is None else "-".join(str(v) for v in c.values()),
)
@pytest.mark.parametrize("order", ["C", "F"])
async def test_v2_compressors_both_ways(tmp_path: Path, compressor: Any, order: str) -> None:
    data = _data("<f4")
    ours = str(tmp_path / "ours.zarr")
    arr = await asyncarr.create_array(
        ours,
        shape=data.shape,
        chunks=(10, 6),
        dtype="<f4",
        zarr_format=2,
        compressor=compressor,
        order=order,
    )  # type: ignore[arg-type]
    await arr.write(data)
    np.testing.assert_array_equal(zarr.open_array(ours, mode="r")[:], data)

    theirs = str(tmp_path / "theirs.zarr")
    z = zarr.create_array(
        theirs,
        shape=data.shape,
        chunks=(10, 6),
        dtype="<f4",
        zarr_format=2,
        order=order,
        compressors=numcodecs.get_codec(compressor) if compressor else None,
    )
    z[:] = data
    np.testing.assert_array_equal(await (await asyncarr.open_array(theirs)).read(), data)


@pytest.mark.parametrize("filters", V2_FILTERS, ids=lambda f: f[0]["id"])
async def test_v2_filters_both_ways(tmp_path: Path, filters: Any) -> None:
    data = _data("<i4")
    ours = str(tmp_path / "ours.zarr")
    arr = await asyncarr.create_array(
        ours,
        shape=data.shape,
        chunks=(10, 6),
        dtype="<i4",
        zarr_format=2,
        filters=filters,
        compressor="zlib",
    )
    await arr.write(data)
    np.testing.assert_array_equal(zarr.open_array(ours, mode="r")[:], data)

    theirs = str(tmp_path / "theirs.zarr")
    z = zarr.create_array(
        theirs,
        shape=data.shape,
        chunks=(10, 6),
        dtype="<i4",
        zarr_format=2,
        filters=[numcodecs.get_codec(f) for f in filters],
        compressors=None,
    )
    z[:] = data
    np.testing.assert_array_equal(await (await asyncarr.open_array(theirs)).read(), data)


DTYPES = [
    "bool",
    "int8",
    "int16",
    "int32",
    "int64",
    "uint8",
    "uint16",
    "uint32",
    "uint64",
    "float16",
    "float32",
    "float64",
    "complex64",
    "complex128",
]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("zarr_format", [2, 3])
async def test_dtypes_both_ways(tmp_path: Path, dtype: str, zarr_format: int) -> None:
    data = _data(dtype)
    ours = str(tmp_path / "ours.zarr")
    arr = await asyncarr.create_array(
        ours, shape=data.shape, chunks=(8, 8), dtype=dtype, zarr_format=zarr_format
    )  # type: ignore[arg-type]
    await arr.write(data)
    np.testing.assert_array_equal(zarr.open_array(ours, mode="r")[:], data)
    theirs = str(tmp_path / "theirs.zarr")
    z = zarr.create_array(
        theirs, shape=data.shape, chunks=(8, 8), dtype=dtype, zarr_format=zarr_format
    )
    z[:] = data
    np.testing.assert_array_equal(await (await asyncarr.open_array(theirs)).read(), data)


V3_CODECS: list[list[dict[str, Any]]] = [
    [{"name": "bytes", "configuration": {"endian": "little"}}],
    [{"name": "bytes", "configuration": {"endian": "big"}}],
    [
        {"name": "transpose", "configuration": {"order": [1, 0]}},
        {"name": "bytes", "configuration": {"endian": "little"}},
        {"name": "gzip", "configuration": {"level": 1}},
    ],
    [
        {"name": "bytes", "configuration": {"endian": "little"}},
        {"name": "zstd", "configuration": {"level": 3, "checksum": True}},
    ],
    [
        {"name": "bytes", "configuration": {"endian": "little"}},
        {"name": "zstd", "configuration": {"level": 0, "checksum": False}},
    ],
    [
        {"name": "bytes", "configuration": {"endian": "little"}},
        {
            "name": "blosc",
            "configuration": {
                "cname": "lz4",
                "clevel": 5,
                "shuffle": "shuffle",
                "typesize": 4,
                "blocksize": 0,
            },
        },
    ],
    [
        {"name": "bytes", "configuration": {"endian": "little"}},
        {
            "name": "blosc",
            "configuration": {
                "cname": "zstd",
                "clevel": 3,
                "shuffle": "bitshuffle",
                "typesize": 4,
                "blocksize": 0,
            },
        },
    ],
    [{"name": "bytes", "configuration": {"endian": "little"}}, {"name": "crc32c"}],
]


@pytest.mark.parametrize("codecs", V3_CODECS, ids=lambda c: "+".join(x["name"] for x in c))
async def test_v3_codecs_we_write_they_read(tmp_path: Path, codecs: list[dict[str, Any]]) -> None:
    data = _data("float32")
    url = str(tmp_path / "a.zarr")
    arr = await asyncarr.create_array(
        url, shape=data.shape, chunks=(10, 6), dtype="float32", codecs=codecs
    )
    await arr.write(data)
    np.testing.assert_array_equal(zarr.open_array(url, mode="r")[:], data)


@pytest.mark.parametrize("index_location", ["start", "end"])
@pytest.mark.parametrize("compressor", [None, "zstd"])
async def test_sharding_both_ways(tmp_path: Path, index_location: str, compressor: Any) -> None:
    data = _data("int16", (40, 30))
    data[:10, :10] = 0  # an all-fill inner chunk is left out of the shard
    inner = [{"name": "bytes", "configuration": {"endian": "little"}}]
    if compressor:
        inner.append({"name": "zstd", "configuration": {"level": 1, "checksum": False}})
    codecs = [
        {
            "name": "sharding_indexed",
            "configuration": {
                "chunk_shape": [5, 5],
                "codecs": inner,
                "index_codecs": [
                    {"name": "bytes", "configuration": {"endian": "little"}},
                    {"name": "crc32c"},
                ],
                "index_location": index_location,
            },
        }
    ]
    url = str(tmp_path / "ours.zarr")
    arr = await asyncarr.create_array(
        url, shape=data.shape, chunks=(20, 15), dtype="int16", codecs=codecs
    )
    await arr.write(data)
    np.testing.assert_array_equal(zarr.open_array(url, mode="r")[:], data)

    theirs = str(tmp_path / "theirs.zarr")
    z = zarr.create_array(
        theirs,
        shape=data.shape,
        chunks=(5, 5),
        shards=(20, 15),
        dtype="int16",
        compressors=None if compressor is None else zarr.codecs.ZstdCodec(level=1),
    )
    z[:] = data
    back = await asyncarr.open_array(theirs)
    assert back.shards == (20, 15) and back.chunks == (5, 5)
    np.testing.assert_array_equal(await back.read(), data)
    np.testing.assert_array_equal(await back.read((slice(7, 9), slice(3, 4))), data[7:9, 3:4])


@pytest.mark.parametrize("fill", [np.nan, np.inf, -np.inf, 0.0, -1.5])
@pytest.mark.parametrize("zarr_format", [2, 3])
async def test_fill_values_both_ways(tmp_path: Path, fill: float, zarr_format: int) -> None:
    url = str(tmp_path / "f.zarr")
    await asyncarr.create_array(
        url, shape=(6,), chunks=(3,), dtype="f8", fill_value=fill, zarr_format=zarr_format
    )  # type: ignore[arg-type]
    np.testing.assert_array_equal(zarr.open_array(url, mode="r")[:], np.full(6, fill))
    theirs = str(tmp_path / "t.zarr")
    zarr.create_array(
        theirs, shape=(6,), chunks=(3,), dtype="f8", fill_value=fill, zarr_format=zarr_format
    )
    np.testing.assert_array_equal(
        await (await asyncarr.open_array(theirs)).read(), np.full(6, fill)
    )


@pytest.mark.parametrize("separator", ["/", "."])
async def test_v2_dimension_separator_both_ways(tmp_path: Path, separator: str) -> None:
    data = _data("uint8")
    url = str(tmp_path / "s.zarr")
    arr = await asyncarr.create_array(
        url,
        shape=data.shape,
        chunks=(5, 5),
        dtype="u1",
        zarr_format=2,
        chunk_key_encoding={"name": "v2", "configuration": {"separator": separator}},
    )
    await arr.write(data)
    np.testing.assert_array_equal(zarr.open_array(url, mode="r")[:], data)


@pytest.mark.parametrize("zarr_format", [2, 3])
async def test_groups_and_consolidated_both_ways(tmp_path: Path, zarr_format: int) -> None:
    url = str(tmp_path / "g.zarr")
    root = await asyncarr.create_group(url, zarr_format=zarr_format, attributes={"a": 1})  # type: ignore[arg-type]
    sub = await root.create_group("sub", attributes={"b": 2})
    arr = await sub.create_array("x", shape=(4,), chunks=(2,), dtype="i8", attributes={"c": 3})
    await arr.write(np.arange(4))
    await root.consolidate_metadata()
    zg = (
        zarr.open_consolidated(url, mode="r")
        if zarr_format == 2
        else zarr.open_group(url, mode="r", use_consolidated=True)
    )
    assert zg.attrs["a"] == 1
    np.testing.assert_array_equal(zg["sub/x"][:], np.arange(4))

    theirs = str(tmp_path / "t.zarr")
    g = zarr.open_group(theirs, mode="w", zarr_format=zarr_format, attributes={"a": 1})
    g.create_group("sub").create_array("x", shape=(4,), chunks=(2,), dtype="i8")[:] = np.arange(4)
    zarr.consolidate_metadata(theirs)
    ours = await asyncarr.open_group(theirs)
    assert ours.metadata.consolidated is not None
    node = await ours.get("sub/x")
    assert isinstance(node, asyncarr.AsyncArray)
    np.testing.assert_array_equal(await node.read(), np.arange(4))
    assert [n for n, _ in await ours.members(max_depth=None)] == ["sub", "sub/x"]


async def test_dimension_names_and_attributes_v3(tmp_path: Path) -> None:
    url = str(tmp_path / "d.zarr")
    await asyncarr.create_array(
        url,
        shape=(2, 3),
        chunks=(2, 3),
        dtype="f4",
        dimension_names=["y", None],
        attributes={"k": [1, 2]},
    )
    z = zarr.open_array(url, mode="r")
    assert z.metadata.dimension_names == ("y", None)
    assert z.attrs["k"] == [1, 2]
