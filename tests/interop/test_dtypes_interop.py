"""Every data type both ways with zarr-python 3 (and tensorstore where it has the type):
what asyncarr writes they read equal, what they write asyncarr reads equal, never-written
chunks included (they read as the fill value), v2 and v3, sharded and not."""

from __future__ import annotations

import json
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import asyncarr
from asyncarr.testing import assert_same_values

zarr = pytest.importorskip("zarr", reason="zarr-python is a test dependency")
from zarr.core.dtype import VariableLengthBytes  # noqa: E402

SHAPE = (7, 5)
CHUNKS = (2, 2)
WRITTEN = (slice(1, 6), slice(0, 3))  # leaves chunks in the last row and column unwritten


def _strings() -> np.ndarray:
    words = ["", "a", "héllo", "日本語", "x" * 30, "😀", "tab\t"]
    return np.array(
        [[words[(i + j) % 7] + str(i) for j in range(3)] for i in range(5)], dtype=object
    )


def _bytes() -> np.ndarray:
    out = np.empty((5, 3), dtype=object)
    for i in range(5):
        for j in range(3):
            out[i, j] = bytes([i, 0, j]) * ((i + j) % 3)
    return out


STRUCT = np.dtype([("a", "<i4"), ("b", "<f8"), ("p", [("x", "<f4"), ("y", "u1")])])
CASES: dict[str, tuple[Any, Any, Any]] = {
    # name: (asyncarr dtype, zarr-python dtype, a non-default fill value)
    "string": (str, str, "n/a"),
    "bytes": (bytes, VariableLengthBytes(), b"\x00fill"),
    "U7": ("<U7", "<U7", "héllo"),
    "S5": ("S5", "S5", b"ab"),
    "V3": ("V3", "V3", b"\x01\x02\x03"),
    "M8[s]": ("M8[s]", "M8[s]", np.datetime64("2000-01-01T00:00:00", "s")),
    "m8[10ms]": ("m8[10ms]", "m8[10ms]", np.timedelta64(-3, "10ms")),
    "struct": (STRUCT, STRUCT, (1, 2.5, (3.5, 4))),
}


def _values(name: str) -> np.ndarray:
    if name == "string":
        return _strings()
    if name == "bytes":
        return _bytes()
    grid = np.arange(15).reshape(5, 3)
    if name == "U7":
        return np.array([["é" * (k % 4) + str(k) for k in row] for row in grid], dtype="<U7")
    if name == "S5":
        return np.array([[bytes([65 + k % 26]) * (k % 6) for k in row] for row in grid], dtype="S5")
    if name == "V3":
        return np.frombuffer(bytes(range(45)), dtype="V3").reshape(5, 3).copy()
    if name.startswith("M8"):
        out = (grid * 86_400 * 17).astype("M8[s]")
        out[2, 1] = np.datetime64("NaT", "s")
        return out
    if name.startswith("m8"):
        out = (grid - 7).astype("m8[10ms]")
        out[0, 0] = np.timedelta64("NaT", "ms")
        return out
    out = np.zeros((5, 3), STRUCT)
    out["a"] = grid
    out["b"] = grid / 4
    out["p"]["x"] = -grid
    out["p"]["y"] = grid * 3
    return out


LAYOUTS = [(2, False), (3, False), (3, True)]


def _ids(layout: tuple[int, bool]) -> str:
    return f"v{layout[0]}{'-sharded' if layout[1] else ''}"


def _expected(name: str, fill: Any, dtype: np.dtype[Any]) -> np.ndarray:
    full = np.full(SHAPE, fill, dtype=dtype)
    full[WRITTEN] = _values(name).astype(dtype)
    return full


def _zarr_read(path: str) -> np.ndarray:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return np.asarray(zarr.open_array(path, mode="r")[...])


@pytest.mark.parametrize("layout", LAYOUTS, ids=_ids)
@pytest.mark.parametrize("with_fill", [False, True], ids=["default-fill", "fill"])
@pytest.mark.parametrize("name", list(CASES))
async def test_asyncarr_writes_zarr_python_reads(
    tmp_path: Path, name: str, with_fill: bool, layout: tuple[int, bool]
) -> None:
    fmt, sharded = layout
    ours, _theirs, fill = CASES[name]
    path = str(tmp_path / "a.zarr")
    arr = await asyncarr.create_array(
        path,
        shape=SHAPE,
        chunks=CHUNKS,
        shards=(4, 4) if sharded else None,
        dtype=ours,
        fill_value=fill if with_fill else None,
        zarr_format=fmt,
    )
    await arr.write(_values(name), WRITTEN)
    got = _zarr_read(path)
    mine = await arr.read()
    if got.dtype != mine.dtype:  # zarr-python keeps a v2 string array's object codec
        got = got.astype(mine.dtype)
    assert_same_values(got, mine)
    effective = arr.metadata.data_type.default_fill() if arr.fill_value is None else arr.fill_value
    assert_same_values(mine, _expected(name, effective, mine.dtype))


@pytest.mark.parametrize("layout", LAYOUTS, ids=_ids)
@pytest.mark.parametrize("with_fill", [False, True], ids=["default-fill", "fill"])
@pytest.mark.parametrize("name", list(CASES))
async def test_zarr_python_writes_asyncarr_reads(
    tmp_path: Path, name: str, with_fill: bool, layout: tuple[int, bool]
) -> None:
    fmt, sharded = layout
    _ours, theirs, fill = CASES[name]
    path = str(tmp_path / "z.zarr")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        z = zarr.create_array(
            path,
            shape=SHAPE,
            chunks=CHUNKS,
            shards=(4, 4) if sharded else None,
            dtype=theirs,
            fill_value=fill if with_fill else None,
            zarr_format=fmt,
        )
        z[WRITTEN] = _values(name)
        expected = np.asarray(z[...])
    arr = await asyncarr.open_array(path)
    got = await arr.read()
    assert got.dtype == expected.dtype or (got.dtype.kind == "T" and expected.dtype.kind == "T")
    assert_same_values(got, expected.astype(got.dtype))
    assert_same_values(await arr.read((slice(1, 7, 2), slice(None, None, 3))), got[1:7:2, ::3])
    assert_same_values(await arr.oindex[[0, 6, 2], [4, 1]], got[np.ix_([0, 6, 2], [4, 1])])


def test_metadata_spelled_as_zarr_python_spells_it(tmp_path: Path) -> None:
    """The data_type / dtype, fill_value and codec entries are zarr-python's own."""
    import asyncarr.sync as az

    for name, (ours, theirs, fill) in CASES.items():
        for fmt in (2, 3):
            mine, their = str(tmp_path / f"m{name}{fmt}"), str(tmp_path / f"t{name}{fmt}")
            az.create_array(
                mine, shape=(4,), chunks=(2,), dtype=ours, fill_value=fill, zarr_format=fmt
            )
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                zarr.create_array(
                    their, shape=(4,), chunks=(2,), dtype=theirs, fill_value=fill, zarr_format=fmt
                )
            doc = "zarr.json" if fmt == 3 else ".zarray"
            a = json.loads((Path(mine) / doc).read_text())
            b = json.loads((Path(their) / doc).read_text())
            for key in ("data_type", "dtype", "fill_value"):
                if (name, fmt, key) == ("S5", 2, "fill_value"):  # all 5 bytes (tensorstore)
                    assert a[key] == "YWIAAAA=" and b[key] == "YWI="
                    continue
                assert a.get(key) == b.get(key), (name, fmt, key, a.get(key), b.get(key))
            if fmt == 3:
                assert a["codecs"][0] == b["codecs"][0], (name, a["codecs"], b["codecs"])
            else:
                assert a["filters"] == b["filters"], (name, a["filters"], b["filters"])


# -- tensorstore: v2 S, V and structured arrays (it has no text, time or vlen types) ---------
# Its Python binding reads S and V items as empty numpy values (no numpy form for its char
# and byte types), so for those only the direction it can take is checked: it writes,
# asyncarr reads; and it opens what asyncarr writes.

FLAT_STRUCT = np.dtype([("a", "<i4"), ("b", ">f8")])


@pytest.mark.parametrize("name", ["S5", "V3"])
async def test_tensorstore_opens_and_writes_bytes(tmp_path: Path, name: str) -> None:
    ts = pytest.importorskip("tensorstore")
    ours, _theirs, fill = CASES[name]
    path = tmp_path / "a.zarr"
    arr = await asyncarr.create_array(
        str(path), shape=SHAPE, chunks=CHUNKS, dtype=ours, fill_value=fill, zarr_format=2
    )
    await arr.write(_values(name), WRITTEN)
    t = ts.open({"driver": "zarr", "kvstore": {"driver": "file", "path": str(path)}}).result()
    size = arr.dtype.itemsize
    assert t.shape == (*SHAPE, size)
    t[6, 4] = np.frombuffer(b"Q" * size, dtype="S1" if name == "S5" else "V1")
    got = await (await asyncarr.open_array(str(path))).read()
    assert bytes(np.asarray(got[6, 4]).tobytes()) == b"Q" * size
    expected = _expected(name, fill, arr.dtype)
    expected[6, 4] = got[6, 4]
    assert_same_values(got, expected)


async def test_tensorstore_struct_fields_both_ways(tmp_path: Path) -> None:
    ts = pytest.importorskip("tensorstore")
    path = tmp_path / "a.zarr"
    values = np.zeros((5, 3), FLAT_STRUCT)
    values["a"] = np.arange(15).reshape(5, 3)
    values["b"] = np.arange(15).reshape(5, 3) / 8
    arr = await asyncarr.create_array(
        str(path), shape=SHAPE, chunks=CHUNKS, dtype=FLAT_STRUCT, fill_value=(1, 2.5), zarr_format=2
    )
    await arr.write(values, WRITTEN)
    expected = await arr.read()
    spec = {"driver": "zarr", "kvstore": {"driver": "file", "path": str(path)}}
    for field in ("a", "b"):  # tensorstore opens one field at a time
        np.testing.assert_array_equal(
            ts.open({**spec, "field": field}).result().read().result(), expected[field]
        )
    ts.open({**spec, "field": "a"}).result()[6, 4] = 99
    again = await (await asyncarr.open_array(str(path))).read()
    assert again["a"][6, 4] == 99 and again["b"][6, 4] == 2.5


async def test_tensorstore_v2_struct_with_subarray_and_byte_orders(tmp_path: Path) -> None:
    """tensorstore writes per-field byte orders and subarray fields (zarr-python cannot)."""
    ts = pytest.importorskip("tensorstore")
    path = tmp_path / "s.zarr"
    spec = {
        "driver": "zarr",
        "kvstore": {"driver": "file", "path": str(path)},
        "metadata": {"dtype": [["a", ">i4"], ["b", "<f8", [2]]], "shape": [5], "chunks": [2]},
    }
    ts.open({**spec, "field": "a", "create": True}).result()[0:4] = np.array([1, -2, 3, 4], ">i4")
    ts.open({**spec, "field": "b", "open": True}).result()[1:3] = [[0.5, 1.5], [2.5, 3.5]]
    arr = await asyncarr.open_array(str(path), mode="r+")
    assert arr.dtype == np.dtype([("a", ">i4"), ("b", "<f8", (2,))])
    got = await arr.read()
    assert got["a"].tolist() == [1, -2, 3, 4, 0]
    assert got["b"].tolist() == [[0, 0], [0.5, 1.5], [2.5, 3.5], [0, 0], [0, 0]]
    # and back: asyncarr writes, tensorstore reads each field
    await arr.write(np.array([(9, [7.0, 8.0])], dtype=arr.dtype), slice(4, 5))
    assert ts.open({**spec, "field": "a", "open": True}).result()[4].read().result() == 9
    np.testing.assert_array_equal(
        ts.open({**spec, "field": "b", "open": True}).result()[4].read().result(), [7.0, 8.0]
    )
    meta = json.loads((path / ".zarray").read_text())
    assert meta["dtype"] == [["a", ">i4"], ["b", "<f8", [2]]]


@pytest.mark.parametrize("name", ["string", "bytes", "U7"])
async def test_v2_fortran_order_chunks_are_zarr_pythons(tmp_path: Path, name: str) -> None:
    """order="F" v2 arrays: elements stored in Fortran order, chunk bytes identical."""
    ours, theirs, _fill = CASES[name]
    values = _values(name)
    mine, their = str(tmp_path / "a"), str(tmp_path / "z")
    arr = await asyncarr.create_array(
        mine, shape=(5, 3), chunks=(3, 2), dtype=ours, zarr_format=2, order="F", compressor=None
    )
    await arr.write(values)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        z = zarr.create_array(
            their,
            shape=(5, 3),
            chunks=(3, 2),
            dtype=theirs,
            zarr_format=2,
            order="F",
            compressors=None,
        )
        z[...] = values
    for key in ("0.0", "1.1"):
        assert (Path(mine) / key).read_bytes() == (Path(their) / key).read_bytes()
    got = await (await asyncarr.open_array(their)).read()
    assert_same_values(got, values.astype(got.dtype))
