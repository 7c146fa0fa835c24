"""Rectilinear chunk grids: creating them as zarr-python does, what is refused, and the
routes data takes (worker processes, the chunk cache, a cloud store, copies, the CLI)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import asyncarr
import asyncarr.sync as az
from asyncarr import CacheConfig, set_chunk_cache
from asyncarr.errors import ConfigError, MetadataError
from asyncarr.ingest import copy_array
from asyncarr.testing._procs import StoreLocation


def _grid(path: Path) -> Any:
    return json.loads((path / "zarr.json").read_text())["chunk_grid"]


def test_chunk_edges_make_a_rectilinear_grid(tmp_path: Path) -> None:
    arr = az.create_array(
        str(tmp_path / "a"), shape=(60, 100), chunks=[[10, 20, 30], [25, 25, 25, 25]], dtype="i4"
    )
    assert _grid(tmp_path / "a") == {
        "name": "rectilinear",
        "configuration": {"kind": "inline", "chunk_shapes": [[10, 20, 30], [[25, 4]]]},
    }
    grid = arr.chunk_grid
    assert (grid.kind, grid.grid_shape, arr.nchunks) == ("rectilinear", (3, 4), 12)
    assert arr.chunk_sizes == ((10, 20, 30), (25, 25, 25, 25))
    assert grid.chunk_shape_at((2, 1)) == (30, 25) and grid.chunk_origin((2, 1)) == (30, 25)
    with pytest.raises(MetadataError, match="no single chunk shape"):
        arr.chunks  # noqa: B018 (no one chunk shape to give)
    assert "rectilinear [[10,20,30], [[25,4]]]" in repr(arr)
    assert "Chunk shape : rectilinear [[10,20,30],[[25,4]]]" in str(arr.info)
    assert arr.info.to_dict()["chunk_grid"] == _grid(tmp_path / "a")
    mixed = az.create_array(str(tmp_path / "m"), shape=(7, 9), chunks=[[3, 4], 5], dtype="u1")
    assert _grid(tmp_path / "m")["configuration"]["chunk_shapes"] == [[3, 4], 5]
    assert mixed.chunk_sizes == ((3, 4), (5, 4))
    empty = az.create_array(str(tmp_path / "e"), shape=(0,), chunks=[[4, 2]], dtype="u1")
    assert empty.nchunks == 0 and empty[:].shape == (0,)
    regular = az.create_array(str(tmp_path / "r"), shape=(7,), chunks=(3,), dtype="u1")
    assert regular.chunk_grid.is_regular and regular.chunk_sizes == ((3, 3, 1),)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"chunks": [[3, 3], [5]]}, "sum to 6, not to its length 7"),
        ({"chunks": [[3, 0, 4], [5]]}, "positive integers"),
        ({"chunks": [[3, -1, 5], [5]]}, "positive integers"),
        ({"chunks": [[], [5]]}, "non-empty"),
        ({"chunks": [[7]]}, "one entry per dimension"),
        ({"chunks": [[3, 4], [5]], "zarr_format": 2}, "zarr_format=3"),
        ({"chunks": [[3, 4], [5]], "shards": [[7], [5]]}, "rectilinear shards instead"),
        ({"chunks": (2, 5), "shards": [[4, 3], [5]]}, "multiple of chunks"),
        ({"chunks": (2, 5), "shards": [[2, 5], 10]}, "multiple of chunks"),
    ],
)
def test_what_zarr_python_refuses_is_refused(
    tmp_path: Path, kwargs: dict[str, Any], match: str
) -> None:
    with pytest.raises(ConfigError, match=match):
        az.create_array(str(tmp_path / "x"), shape=(7, 5), dtype="i2", **kwargs)
    assert not (tmp_path / "x").exists()


@pytest.mark.usefixtures("processes")
async def test_chunks_of_differing_shapes_travel_to_worker_processes(tmp_path: Path) -> None:
    value = np.random.default_rng(3).standard_normal((45, 33))
    arr = await asyncarr.create_array(
        str(tmp_path / "p"), shape=value.shape, chunks=[[5, 10, 30], [3, 30]], dtype="f8"
    )
    await arr.write(value)  # whole chunks of four shapes, encoded by the processes
    await arr.write(-1.0, (slice(2, 40), slice(1, 5)))  # partial chunks merged there too
    value[2:40, 1:5] = -1.0
    np.testing.assert_array_equal(await arr.read(), value)
    np.testing.assert_array_equal(await arr.read((slice(4, 44, 3), slice(0, 33))), value[4:44:3])


def test_reads_through_the_chunk_cache(tmp_path: Path) -> None:
    value = np.arange(40 * 7, dtype="i4").reshape(40, 7)
    arr = az.create_array(
        str(tmp_path / "c"), shape=value.shape, chunks=[[1, 9, 30], 7], dtype="i4"
    )
    arr[:] = value
    set_chunk_cache(CacheConfig(max_bytes=1 << 20))
    try:
        for _ in range(2):  # decoded, cached, then served from the cache
            np.testing.assert_array_equal(arr[5:35], value[5:35])
        arr[8:12] = 0
        value[8:12] = 0
        np.testing.assert_array_equal(arr[:], value)
    finally:
        set_chunk_cache(None)


@pytest.mark.servers
async def test_sharded_rectilinear_on_s3(moto_s3_server: Any) -> None:
    bucket = moto_s3_server.create_bucket()
    where = StoreLocation(url=f"s3://{bucket}/r", storage_options=moto_s3_server.storage_options())
    try:
        arr = await asyncarr.create_array(
            where.url,
            shape=(24, 20),
            chunks=(2, 5),
            shards=[[4, 8, 12], 10],
            dtype="u2",
            fill_value=9,
            storage_options=where.storage_options,
        )
        value = np.full((24, 20), 9, "u2")
        value[3:21, 2:19] = np.arange(18 * 17, dtype="u2").reshape(18, 17)
        await arr.write(value[3:21, 2:19], (slice(3, 21), slice(2, 19)))  # conditional merges
        np.testing.assert_array_equal(await arr.read(), value)
        await arr.append(np.ones((3, 20), "u2"))  # a new shard of 4 rows (whole inner chunks)
        value = np.concatenate([value, np.ones((3, 20), "u2")])
        np.testing.assert_array_equal(await arr.read(), value)
        assert arr.chunk_grid.to_json()["configuration"]["chunk_shapes"] == [[4, 8, 12, 4], 10]
        await arr.aclose()
    finally:
        moto_s3_server.delete_bucket(bucket)


async def test_copy_keeps_the_grid(tmp_path: Path) -> None:
    value = np.arange(30 * 8, dtype="f4").reshape(30, 8)
    for name, kwargs in {
        "plain": {"chunks": [[1, 2, 27], 3]},
        "sharded": {"chunks": (1, 4), "shards": [[10, 20], [8]]},
    }.items():
        src = await asyncarr.create_array(
            str(tmp_path / name), shape=value.shape, dtype="f4", **kwargs
        )
        await src.write(value)
        await src.resize((25, 8))  # the edges now reach past the shape
        await copy_array(str(tmp_path / name), str(tmp_path / f"{name}-copy"), block_bytes=64)
        assert _grid(tmp_path / f"{name}-copy") == _grid(tmp_path / name)
        copied = await asyncarr.open_array(str(tmp_path / f"{name}-copy"))
        np.testing.assert_array_equal(await copied.read(), value[:25])


def test_cli_shows_the_grid(tmp_path: Path) -> None:
    az.create_array(str(tmp_path / "a"), shape=(6,), chunks=[[1, 5]], dtype="u1")[:] = 1
    out = subprocess.run(
        [sys.executable, "-m", "asyncarr", "info", str(tmp_path / "a")],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0, out.stderr
    assert "rectilinear [[1,5]]" in out.stdout and "Chunks initialized : 2/2" in out.stdout
