"""Vectorized (point) selection: ``vindex`` and zarr-python's selection names, on local
disk, in worker processes and on S3 (moto), with one request per chunk, not per point."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

import asyncarr
import asyncarr.sync as az
from asyncarr.errors import ReadOnlyStoreError, SelectionError
from asyncarr.runtime import store_stats
from asyncarr.testing._servers_s3 import S3TestServer

DATA = np.arange(37 * 23, dtype="int32").reshape(37, 23)


def _local(tmp_path: Path, **kw: Any) -> az.Array:
    arr = az.create_array(str(tmp_path / "a.zarr"), shape=DATA.shape, dtype="int32", **kw)
    arr[...] = DATA
    return arr


@pytest.mark.parametrize("layout", [{"chunks": (8, 5)}, {"chunks": (4, 5), "shards": (8, 10)}])
def test_points_and_masks_read_and_write_like_numpy(tmp_path: Path, layout: Any) -> None:
    arr, mirror = _local(tmp_path, **layout), DATA.copy()
    rows, cols = np.array([[0, 5, 36], [-1, 1, 2]]), np.array([22, 0, -23])
    np.testing.assert_array_equal(arr.vindex[rows, cols], mirror[rows, cols])  # shape (2, 3)
    np.testing.assert_array_equal(arr.vindex[[3, 3], 4], mirror[[3, 3], 4])  # a scalar broadcast
    assert arr.vindex[3, 4] == mirror[3, 4]  # all scalars: a scalar, as numpy gives
    mask = mirror % 7 == 0
    np.testing.assert_array_equal(arr.vindex[mask], mirror[mask])
    np.testing.assert_array_equal(arr.get_mask_selection(mask), mirror[mask])
    np.testing.assert_array_equal(arr.get_coordinate_selection((rows, cols)), mirror[rows, cols])
    assert arr.vindex[[], []].shape == (0,)

    arr.vindex[mask] = -1
    mirror[mask] = -1
    arr.vindex[[1, 1, 2], [3, 3, 4]] = [10, 20, 30]  # a repeated point: the last value wins
    mirror[[1, 1, 2], [3, 3, 4]] = [10, 20, 30]
    arr.set_coordinate_selection((rows, cols), 7)
    mirror[rows, cols] = 7
    arr.set_mask_selection(mirror == 0, 5)
    mirror[mirror == 0] = 5
    np.testing.assert_array_equal(arr[...], mirror)
    assert arr[1, 3] == 20


def test_zarr_python_selection_names(tmp_path: Path) -> None:
    arr, mirror = _local(tmp_path, chunks=(8, 5)), DATA.copy()
    np.testing.assert_array_equal(arr.get_basic_selection((slice(2, 9), 4)), mirror[2:9, 4])
    arr.set_basic_selection((slice(0, 2), slice(None)), 1)
    mirror[0:2, :] = 1
    got = arr.get_orthogonal_selection(([0, 5, 9], [2, 1]))
    np.testing.assert_array_equal(got, mirror[[0, 5, 9]][:, [2, 1]])
    arr.set_orthogonal_selection(([4, 6], slice(0, 3)), 2)
    mirror[np.ix_([4, 6], [0, 1, 2])] = 2
    np.testing.assert_array_equal(arr.get_basic_selection(), mirror)


@pytest.mark.parametrize(
    ("selection", "message"),
    [
        ((slice(None), [1]), "slice"),
        (([1, 2],), "1 item"),
        (([40], [1]), "index 40 is out of bounds for axis 0 with size 37"),
        (([1], [-24]), "index -24 is out of bounds for axis 1 with size 23"),
        ((np.array([2**63], dtype=np.uint64), [0]), "out of bounds for axis 0"),
        (([1.5], [1]), "dtype float64 for axis 0"),
        ((np.ones((3, 3), bool),), r"array's shape \(37, 23\), got shape \(3, 3\)"),
        (([1, 2], np.ones(23, bool)), "boolean array for axis 1"),
        (([1, 2], [1, 2, 3]), r"broadcast together; got shapes \(2,\), \(3,\)"),
        (("a", [1]), "dtype <U1 for axis 0"),
    ],
)
def test_bad_point_selections_are_selection_errors(
    tmp_path: Path, selection: Any, message: str
) -> None:
    arr = _local(tmp_path, chunks=(8, 5))
    with pytest.raises(SelectionError, match=message):
        arr.vindex[selection]
    with pytest.raises(SelectionError, match=message):
        arr.vindex[selection] = 0


def test_selection_kinds_are_checked_by_name(tmp_path: Path) -> None:
    arr = _local(tmp_path, chunks=(8, 5))
    with pytest.raises(SelectionError, match="mask selection takes one boolean array"):
        arr.get_mask_selection(([1], [2]))
    with pytest.raises(SelectionError, match="coordinate selection takes integer arrays"):
        arr.get_coordinate_selection(DATA > 3)
    with pytest.raises(SelectionError, match="value of shape"):
        arr.vindex[[1, 2], [1, 2]] = [1, 2, 3]
    scalar = az.create_array(str(tmp_path / "s.zarr"), shape=(), dtype="int8")
    with pytest.raises(SelectionError, match="0-d array"):
        scalar.vindex[()]
    with pytest.raises(ReadOnlyStoreError):
        az.open_array(str(tmp_path / "a.zarr"), mode="r").vindex[[0], [0]] = 1


@pytest.mark.usefixtures("processes")
def test_points_in_worker_processes(tmp_path: Path) -> None:
    arr, mirror = _local(tmp_path, chunks=(4, 4)), DATA.copy()
    rng = np.random.default_rng(0)
    rows, cols = rng.integers(0, 37, 500), rng.integers(0, 23, 500)
    np.testing.assert_array_equal(arr.vindex[rows, cols], mirror[rows, cols])
    arr.vindex[rows, cols] = -rows
    mirror[rows, cols] = -rows
    np.testing.assert_array_equal(arr[...], mirror)


async def test_points_on_s3_cost_one_request_per_chunk(moto_s3_server: S3TestServer) -> None:
    """10,000 points in 6 chunks: 6 GETs to read them; to write, a GET and a PUT per
    chunk (read-modify-write), never a request per point."""
    bucket = moto_s3_server.create_bucket()
    try:
        arr = await asyncarr.create_array(
            f"s3://{bucket}/p",
            shape=(300, 200),
            chunks=(100, 100),
            dtype="float64",
            storage_options=moto_s3_server.storage_options(),
        )
        async with arr:
            mirror = np.arange(300 * 200, dtype="float64").reshape(300, 200)
            await arr.write(mirror)
            rng = np.random.default_rng(1)
            rows, cols = rng.integers(0, 300, 10_000), rng.integers(0, 200, 10_000)
            before = store_stats(arr.store).completed
            np.testing.assert_array_equal(await arr.vindex[rows, cols], mirror[rows, cols])
            assert store_stats(arr.store).completed - before == 6

            before = store_stats(arr.store).completed
            await arr.vindex.set((rows, cols), -1.0)
            mirror[rows, cols] = -1.0
            assert store_stats(arr.store).completed - before <= 2 * 6
            np.testing.assert_array_equal(await arr.read(), mirror)
    finally:
        moto_s3_server.delete_bucket(bucket)
