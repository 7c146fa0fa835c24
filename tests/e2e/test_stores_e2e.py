"""End to end through URLs on every store, each backed by a real server on 127.0.0.1."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest

import asyncarr
import asyncarr.sync as az
from asyncarr.testing._procs import StoreLocation

pytestmark = pytest.mark.servers

BACKENDS = ["local", "s3-moto", "s3-seaweedfs", "gcs", "azure", "mongodb"]


@pytest.fixture(params=BACKENDS)
def location(request: pytest.FixtureRequest) -> Iterator[StoreLocation]:
    name = request.param
    if name.startswith("s3-"):
        server = request.getfixturevalue(f"{name[3:]}_s3_server")
        bucket = server.create_bucket()
        yield StoreLocation(url=f"s3://{bucket}/e2e", storage_options=server.storage_options())
        server.delete_bucket(bucket)
        return
    yield request.getfixturevalue(f"{name}_location")


def _data(shape: tuple[int, ...], dtype: str = "float32", seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal(shape).astype(dtype)


async def test_v2_and_sharded_v3_through_urls(location: StoreLocation) -> None:
    opts: dict[str, Any] = dict(location.storage_options)
    url = location.url
    v2 = _data((60, 50), "<f8", 1)
    v3 = (np.arange(64 * 48) % 1000).astype("int16").reshape(64, 48)

    root = await asyncarr.create_group(url, attributes={"run": 1}, storage_options=opts)
    try:
        a2 = await asyncarr.create_array(
            url,
            path="legacy",
            shape=v2.shape,
            chunks=(16, 16),
            dtype="<f8",
            zarr_format=2,
            compressor="blosc",
            storage_options=opts,
        )
        await a2.write(v2)
        await a2.aclose()
        a3 = await root.create_array(
            "sharded",
            shape=v3.shape,
            chunks=(8, 8),
            shards=(32, 24),
            dtype="int16",
            compressor="zstd",
            dimension_names=["y", "x"],
        )
        await a3.write(v3)
        await a3.write(-1, (slice(3, 5), slice(7, 40)))
        v3[3:5, 7:40] = -1
    finally:
        await root.aclose()

    group = await asyncarr.open_group(url, storage_options=opts)
    try:
        names = [n for n, _ in await group.members()]
        assert "sharded" in names
        sharded = await group.get("sharded")
        assert isinstance(sharded, asyncarr.AsyncArray)
        assert sharded.shards == (32, 24) and sharded.dimension_names == ("y", "x")
        np.testing.assert_array_equal(await sharded.read(), v3)
        np.testing.assert_array_equal(
            await sharded.read({"y": slice(30, 35), "x": 3}), v3[30:35, 3]
        )
        assert await sharded.nchunks_initialized() == 4
    finally:
        await group.aclose()

    legacy = await asyncarr.open_array(url, path="legacy", storage_options=opts)
    try:
        assert legacy.zarr_format == 2
        np.testing.assert_array_equal(await legacy.read(), v2)
        np.testing.assert_array_equal(await legacy.read((slice(None, None, -7), 3)), v2[::-7, 3])
    finally:
        await legacy.aclose()


def test_sync_facade_through_urls(location: StoreLocation) -> None:
    opts = dict(location.storage_options)
    data = _data((33, 17), "float64", 3)
    with az.create_array(
        location.url,
        shape=data.shape,
        chunks=(10, 10),
        dtype="f8",
        storage_options=opts,
        attributes={"units": "K"},
    ) as arr:
        arr[...] = data
        arr[0] = 0
        data[0] = 0
    with az.open_array(location.url, storage_options=opts) as back:
        np.testing.assert_array_equal(back[:], data)
        assert back.attrs["units"] == "K"
        assert back.nchunks_initialized() == 8


async def test_64_concurrent_writers_and_readers(location: StoreLocation) -> None:
    opts = dict(location.storage_options)
    arr = await asyncarr.create_array(
        location.url, shape=(64, 64), chunks=(8, 8), dtype="int32", storage_options=opts
    )
    expected = np.zeros((64, 64), dtype="int32")
    try:

        async def writer(i: int) -> None:
            # each writer owns one row: it crosses 8 chunks shared with 7 other writers
            await arr.write(np.full(64, i + 1, dtype="int32"), (i, slice(None)))

        await asyncio.gather(*(writer(i) for i in range(64)))
        for i in range(64):
            expected[i, :] = i + 1

        async def reader(i: int) -> np.ndarray:
            return await arr.read((slice(None), i))

        columns = await asyncio.gather(*(reader(i) for i in range(64)))
        np.testing.assert_array_equal(np.stack(columns, axis=1), expected)
        np.testing.assert_array_equal(await arr.read(), expected)
    finally:
        await arr.aclose()


async def test_read_only_http_with_consolidated_metadata(http_location: Any) -> None:
    local = str(http_location.local_dir)
    data = _data((20, 20), "float32", 4)
    for fmt in (2, 3):
        root = await asyncarr.create_group(f"{local}/v{fmt}", zarr_format=fmt)
        arr = await root.create_array("a", shape=data.shape, chunks=(7, 7), dtype="f4")
        await arr.write(data)
        await root.consolidate_metadata()
        group = await asyncarr.open_group(f"{http_location.url}/v{fmt}")
        try:
            assert [n for n, _ in await group.members()] == ["a"]
            node = await group.get("a")
            assert isinstance(node, asyncarr.AsyncArray)
            np.testing.assert_array_equal(await node.read(), data)
            with pytest.raises(asyncarr.errors.ReadOnlyStoreError):
                await node.write(0.0)
        finally:
            await group.aclose()
