"""``copy_array`` (and ``asyncarr copy``) refuse a destination that overlaps the source:
with ``overwrite`` its creation would delete the data before it is read."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

import asyncarr
from asyncarr.errors import ConfigError
from asyncarr.ingest import copy_array
from asyncarr.stores import MemoryStore


async def _array(url: str) -> np.ndarray:
    arr = await asyncarr.create_array(url, shape=(4, 6), chunks=(2, 3), dtype="i4")
    value = np.arange(24, dtype="i4").reshape(4, 6)
    await arr.write(value)
    await arr.aclose()
    return value


async def _unchanged(url: str, value: np.ndarray) -> None:
    arr = await asyncarr.open_array(url)
    try:
        np.testing.assert_array_equal(await arr.read(), value)
    finally:
        await arr.aclose()


@pytest.mark.parametrize(
    "spelling", ["same", "trailing slash", "file URL", "symlink", "dot segments"]
)
async def test_copy_onto_itself_is_refused_and_keeps_the_data(
    tmp_path: Path, spelling: str
) -> None:
    src = str(tmp_path / "a.zarr")
    value = await _array(src)
    dest = {
        "same": src,
        "trailing slash": src + "/",
        "file URL": "file://" + src,
        "symlink": str(tmp_path / "alias.zarr"),
        "dot segments": str(tmp_path / "x" / ".." / "a.zarr"),
    }[spelling]
    if spelling == "symlink":
        os.symlink(src, dest)
    os.makedirs(tmp_path / "x", exist_ok=True)
    with pytest.raises(ConfigError, match="the destination is the source"):
        await copy_array(src, dest, overwrite=True)
    await _unchanged(src, value)


async def test_copy_into_a_parent_or_a_child_is_refused(tmp_path: Path) -> None:
    root = tmp_path / "g.zarr"
    await asyncarr.create_group(str(root))
    src = str(root / "a")
    value = await _array(src)
    with pytest.raises(ConfigError, match="holds the source"):
        await copy_array(src, str(root), overwrite=True)
    with pytest.raises(ConfigError, match="lies inside the source"):
        await copy_array(src, str(root / "a" / "b"), overwrite=True)
    await _unchanged(src, value)


async def test_copy_within_one_memory_store_is_checked_too() -> None:
    value = await _array("memory://copy-overlap")
    with pytest.raises(ConfigError, match="the destination is the source"):
        await copy_array("memory://copy-overlap", "memory://copy-overlap", overwrite=True)
    await _unchanged("memory://copy-overlap", value)
    report = await copy_array("memory://copy-overlap", "memory://copy-overlap-2")
    assert report.nbytes == value.nbytes
    await _unchanged("memory://copy-overlap-2", value)


async def test_copy_next_to_the_source_works(tmp_path: Path) -> None:
    src = str(tmp_path / "a.zarr")
    value = await _array(src)
    await copy_array(src, str(tmp_path / "a.zarr.copy"))  # a prefix as a string only
    await _unchanged(str(tmp_path / "a.zarr.copy"), value)
    assert MemoryStore().location != MemoryStore().location
