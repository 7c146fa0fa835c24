"""Third-party data written by zarr-python 2 (shared/testdata) reads back exactly."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import asyncarr
import asyncarr.sync as az


@pytest.fixture(scope="module")
def expected(zarr_implementations: Path) -> np.ndarray:
    return np.load(zarr_implementations / "expected.npy")


@pytest.mark.parametrize("name", ["raw", "gzip", "zlib", "blosc"])
async def test_astronaut_reads_equal(
    name: str, expected: np.ndarray, zarr_implementations: Path
) -> None:
    arr = await asyncarr.open_array(str(zarr_implementations / "zarr.zr"), path=name)
    assert arr.zarr_format == 2
    assert arr.shape == (512, 512, 3) and arr.chunks == (100, 100, 1)
    np.testing.assert_array_equal(await arr.read(), expected)
    np.testing.assert_array_equal(
        await arr.read((slice(95, 205), slice(399, 512), 1)), expected[95:205, 399:512, 1]
    )


def test_astronaut_group_sync(expected: np.ndarray, zarr_implementations: Path) -> None:
    with az.open_group(str(zarr_implementations / "zarr.zr")) as g:
        assert sorted(g.array_keys()) == ["blosc", "gzip", "raw", "zlib"]
        arr = g["blosc"]
        assert isinstance(arr, az.Array)
        np.testing.assert_array_equal(np.asarray(arr), expected)
