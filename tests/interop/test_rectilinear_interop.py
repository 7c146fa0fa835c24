"""Rectilinear chunk grids both ways with zarr-python 3: the same ``zarr.json``, the same
data, missing chunks read as the fill value, sharded and not, and the same grid after
resizes and appends. (tensorstore 0.1.x reads only regular grids.)"""

from __future__ import annotations

import json
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import asyncarr.sync as az

zarr = pytest.importorskip(
    "zarr", reason="zarr-python is a test dependency (make test installs it)"
)

SHAPE = (60, 40)
LAYOUTS: dict[str, dict[str, Any]] = {
    "chunks": {"chunks": [[10, 20, 30], [25, 15]]},
    "mixed": {"chunks": [[10, 20, 30], 16]},  # a bare int: a regular step on that axis
    "equal edges": {"chunks": [[12] * 5, [8] * 5]},  # stored run-length encoded
    "shards": {"chunks": (5, 4), "shards": [[10, 20, 30], [8, 32]]},
}


@pytest.fixture(autouse=True)
def rectilinear_enabled() -> Iterator[None]:
    with zarr.config.set({"array.rectilinear_chunks": True}), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # zarr-python's notes on experimental features
        yield


def _grid(path: Path) -> Any:
    return json.loads((path / "zarr.json").read_text())["chunk_grid"]


def _expected(fill: float) -> np.ndarray:
    want = np.full(SHAPE, fill, dtype="f4")
    want[5:33, 3:37] = np.arange(28 * 34, dtype="f4").reshape(28, 34)
    return want


@pytest.mark.parametrize("layout", LAYOUTS)
def test_we_write_they_read(tmp_path: Path, layout: str) -> None:
    kwargs = LAYOUTS[layout]
    ours = az.create_array(
        str(tmp_path / "ours"), shape=SHAPE, dtype="f4", fill_value=-2.5, **kwargs
    )
    want = _expected(-2.5)
    ours[5:33, 3:37] = want[5:33, 3:37]  # chunks outside stay missing: fill value
    zarr.create_array(str(tmp_path / "theirs"), shape=SHAPE, dtype="f4", fill_value=-2.5, **kwargs)
    assert _grid(tmp_path / "ours") == _grid(tmp_path / "theirs")  # the same document
    back = zarr.open_array(str(tmp_path / "ours"))
    np.testing.assert_array_equal(back[:], want)
    np.testing.assert_array_equal(back[7:50:3, ::2], want[7:50:3, ::2])


@pytest.mark.parametrize("layout", LAYOUTS)
def test_they_write_we_read(tmp_path: Path, layout: str) -> None:
    kwargs = LAYOUTS[layout]
    theirs = zarr.create_array(
        str(tmp_path / "theirs"), shape=SHAPE, dtype="f4", fill_value=7.0, **kwargs
    )
    want = _expected(7.0)
    theirs[5:33, 3:37] = want[5:33, 3:37]
    ours = az.open_array(str(tmp_path / "theirs"))
    assert not ours.chunk_grid.is_regular
    assert ours.chunk_grid.chunk_sizes == theirs.write_chunk_sizes
    np.testing.assert_array_equal(ours[:], want)
    np.testing.assert_array_equal(ours[7:50:3, 1:39:4], want[7:50:3, 1:39:4])
    np.testing.assert_array_equal(ours.oindex[[0, 59, 31], [39, 0]], want[[0, 59, 31]][:, [39, 0]])
    # and our writes into their array are theirs to read
    writable = az.open_array(str(tmp_path / "theirs"), mode="r+")
    writable[28:45, 10:30] = 1.0
    want[28:45, 10:30] = 1.0
    np.testing.assert_array_equal(zarr.open_array(str(tmp_path / "theirs"))[:], want)


@pytest.mark.parametrize("sharded", [False, True])
def test_resize_and_append_grow_the_grid_as_zarr_python_does(tmp_path: Path, sharded: bool) -> None:
    kwargs: dict[str, Any] = (
        {"chunks": (2, 5), "shards": [[4, 6], [10]]} if sharded else {"chunks": [[4, 6], [10]]}
    )
    ours = az.create_array(str(tmp_path / "ours"), shape=(10, 10), dtype="i2", **kwargs)
    theirs = zarr.create_array(str(tmp_path / "theirs"), shape=(10, 10), dtype="i2", **kwargs)
    value = np.arange(100, dtype="i2").reshape(10, 10)
    ours[:] = value
    theirs[:] = value
    model = value
    # grow (a new edge covering the growth), shrink (edges kept), grow back within them,
    # append along each axis. (The data differs where zarr-python keeps what a shrink cut
    # off in a chunk it keeps: asyncarr clears it, so a later growth reads fill value.)
    for new_shape in [(14, 10), (7, 10), (12, 10), (12, 30)]:
        ours.resize(new_shape)
        theirs.resize(new_shape)
        assert _grid(tmp_path / "ours") == _grid(tmp_path / "theirs"), new_shape
        grown = np.zeros(new_shape, "i2")
        common = tuple(slice(0, min(a, b)) for a, b in zip(model.shape, new_shape, strict=True))
        grown[common] = model[common]
        model = grown
        np.testing.assert_array_equal(ours[:], model)
        np.testing.assert_array_equal(zarr.open_array(str(tmp_path / "ours"))[:], model)
    ours.append(np.ones((4, 30), "i2"))
    theirs.append(np.ones((4, 30), "i2"))
    assert _grid(tmp_path / "ours") == _grid(tmp_path / "theirs")
    model = np.concatenate([model, np.ones((4, 30), "i2")])
    np.testing.assert_array_equal(zarr.open_array(str(tmp_path / "ours"))[:], model)


def test_a_shard_grid_grows_by_whole_inner_chunks(tmp_path: Path) -> None:
    """zarr-python refuses to grow a rectilinear shard grid by less than an inner chunk;
    asyncarr rounds the new shard up to whole inner chunks (it reaches past the shape),
    which zarr-python reads."""
    kwargs: dict[str, Any] = {"chunks": (2,), "shards": [[4, 6]], "dtype": "u1"}
    ours = az.create_array(str(tmp_path / "ours"), shape=(10,), **kwargs)
    theirs = zarr.create_array(str(tmp_path / "theirs"), shape=(10,), **kwargs)
    with pytest.raises(ValueError, match="divisible"):
        theirs.resize((11,))
    ours[:] = np.arange(10, dtype="u1")
    ours.append(np.array([200], "u1"))
    assert _grid(tmp_path / "ours")["configuration"]["chunk_shapes"] == [[4, 6, 2]]
    np.testing.assert_array_equal(zarr.open_array(str(tmp_path / "ours"))[:], [*range(10), 200])
