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


def _sharding(chunk_shape: list[int]) -> dict[str, Any]:
    return {
        "name": "sharding_indexed",
        "configuration": {
            "chunk_shape": chunk_shape,
            "codecs": [{"name": "bytes", "configuration": {"endian": "little"}}],
            "index_codecs": [
                {"name": "bytes", "configuration": {"endian": "little"}},
                {"name": "crc32c"},
            ],
        },
    }


OUTER_CHAINS: dict[str, list[dict[str, Any]]] = {
    "sharding+zstd": [_sharding([3, 5]), {"name": "zstd", "configuration": {"level": 1}}],
    "sharding+gzip+crc32c": [
        _sharding([4, 5]),
        {"name": "gzip", "configuration": {"level": 1}},
        {"name": "crc32c"},
    ],
    "transpose+sharding": [
        {"name": "transpose", "configuration": {"order": [1, 0]}},
        # shards are 10 x 12 once transposed; zarr-python checks the inner chunk shape
        # against the untransposed 12 x 10 as well: 2 x 2 divides both
        _sharding([2, 2]),
    ],
}


@pytest.mark.filterwarnings("ignore:Combining a `sharding_indexed` codec:UserWarning")
@pytest.mark.parametrize("chain", list(OUTER_CHAINS), ids=str)
async def test_codecs_around_sharding_both_ways(tmp_path: Path, chain: str) -> None:
    """A codec before or after ``sharding_indexed`` applies to whole shards: shards are
    then read whole through every codec (reading inner chunks straight from the stored
    bytes gave wrong data for ``transpose`` and failed for ``zstd``)."""
    data = _data("int32", (24, 20))
    ours = str(tmp_path / "ours.zarr")
    arr = await asyncarr.create_array(
        ours, shape=data.shape, chunks=(12, 10), dtype="int32", codecs=OUTER_CHAINS[chain]
    )
    await arr.write(data)
    await arr.write(np.full((3, 4), -7, "int32"), (slice(10, 13), slice(8, 12)))  # 4 shards
    data[10:13, 8:12] = -7
    np.testing.assert_array_equal(zarr.open_array(ours, mode="r")[:], data)
    back = await asyncarr.open_array(ours)
    np.testing.assert_array_equal(await back.read(), data)
    np.testing.assert_array_equal(await back.read((slice(4, 13), 5)), data[4:13, 5])

    theirs = str(tmp_path / "theirs.zarr")
    z = zarr.create_array(
        theirs, shape=data.shape, chunks=(12, 10), dtype="int32", **_zarr_chain(chain)
    )
    z[:] = data
    assert [c["name"] for c in z.metadata.to_dict()["codecs"]] == [
        c["name"] for c in OUTER_CHAINS[chain]
    ]
    back = await asyncarr.open_array(theirs)
    assert back.shards == (12, 10)
    np.testing.assert_array_equal(await back.read(), data)
    np.testing.assert_array_equal(await back.read((slice(3, 17), slice(2, 3))), data[3:17, 2:3])


def _zarr_chain(name: str) -> dict[str, Any]:
    """zarr-python ``create_array`` arguments for one of :data:`OUTER_CHAINS`."""
    chain = OUTER_CHAINS[name]
    from zarr.codecs import ShardingCodec
    from zarr.registry import get_codec_class

    def build(spec: dict[str, Any]) -> Any:
        return get_codec_class(spec["name"]).from_dict(spec)

    names = [c["name"] for c in chain]
    at = names.index("sharding_indexed")
    sharding = build(chain[at])
    assert isinstance(sharding, ShardingCodec)
    return {
        "filters": [build(c) for c in chain[:at]],
        "serializer": sharding,
        "compressors": [build(c) for c in chain[at + 1 :]],
    }


@pytest.mark.filterwarnings("ignore:Combining a `sharding_indexed` codec:UserWarning")
def test_zarr_python_default_sharding_serializer_is_read(tmp_path: Path) -> None:
    """zarr-python's default for ``serializer=ShardingCodec(...)``: zstd over the shard."""
    from zarr.codecs import ShardingCodec

    import asyncarr.sync as az

    url = str(tmp_path / "a.zarr")
    z = zarr.create_array(
        url, shape=(8,), chunks=(8,), dtype="i4", serializer=ShardingCodec(chunk_shape=(2,))
    )
    z[:] = np.arange(8)
    names = [c["name"] for c in zarr.open_array(url).metadata.to_dict()["codecs"]]
    assert names[0] == "sharding_indexed" and len(names) > 1
    np.testing.assert_array_equal(az.open_array(url)[:], np.arange(8))


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


@pytest.mark.filterwarnings("ignore:Consolidated metadata:UserWarning")
@pytest.mark.parametrize("zarr_format", [2, 3])
def test_nested_create_under_a_consolidated_group_keeps_it_openable(
    tmp_path: Path, zarr_format: int
) -> None:
    """Creating "x/y" also makes the group "x": the consolidated copy now lists it too
    (zarr-python could not open a root whose copy had "x/y" but no "x")."""
    import asyncarr.sync as az

    url = str(tmp_path / "c.zarr")
    group = az.create_group(url, zarr_format=zarr_format)
    group.create_array("a", shape=(3,), dtype="i4")
    group.consolidate_metadata()
    group.create_array("x/y", shape=(2,), dtype="i1")
    group.close()
    root = zarr.open_group(url, mode="r")
    assert sorted(root.keys()) == ["a", "x"]
    assert list(root["x"].keys()) == ["y"]


@pytest.mark.filterwarnings("ignore:Consolidated metadata:UserWarning")
def test_a_subgroup_read_from_zarr_pythons_consolidated_root_keeps_its_members(
    tmp_path: Path,
) -> None:
    """zarr-python's consolidated copy gives each child group an empty placeholder
    block; it was written into the child's own zarr.json on its next change, after
    which the child listed no members."""
    import asyncarr.sync as az

    url = str(tmp_path / "r.zarr")
    theirs = zarr.open_group(url, mode="w", zarr_format=3)
    theirs.create_group("b").create_array("c", shape=(4,), dtype="f8")
    zarr.consolidate_metadata(url)
    root = az.open_group(url, mode="r+")
    root["b"].update_attributes({"k": 1})
    root["b"].create_array("z", shape=(2,), dtype="i1")
    root.close()
    assert [n for n, _ in az.open_group(url, path="b").members()] == ["c", "z"]
    assert sorted(zarr.open_group(f"{url}/b", mode="r").keys()) == ["c", "z"]
    assert zarr.open_group(f"{url}/b", mode="r").attrs["k"] == 1
