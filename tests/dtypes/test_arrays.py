"""The new data types through the whole engine: selections (steps, orthogonal, points,
dimension names), write_empty_chunks, resize and append, sharding, the chunk cache,
worker processes, the sync API, copies, ``info`` and the command line."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import asyncarr
import asyncarr.sync as az
from asyncarr import CacheConfig, ExecutorConfig, set_chunk_cache, set_executor
from asyncarr.dtypes import STRING_DTYPE
from asyncarr.errors import DTypeError
from asyncarr.ingest import copy_array
from asyncarr.stores import LocalStore, MemoryStore
from asyncarr.testing import assert_same_values, sample_values

WORDS = np.array([f"{'é' * (i % 4)}w{i}" for i in range(60)], dtype=object).reshape(6, 10)


@pytest.fixture
def processes() -> Iterator[None]:
    set_executor(ExecutorConfig(mode="processes", max_workers=2))
    try:
        yield
    finally:
        set_executor(None)


async def test_string_selections_and_dimension_names() -> None:
    arr = await asyncarr.create_array(
        MemoryStore(), shape=(6, 10), chunks=(4, 3), dtype=str, dimension_names=("y", "x")
    )
    assert arr.dtype == STRING_DTYPE
    await arr.write(WORDS)
    expected = WORDS.astype(STRING_DTYPE)
    np.testing.assert_array_equal(await arr.read(), expected)
    np.testing.assert_array_equal(
        await arr.read((slice(5, None, -2), slice(1, 9, 3))), expected[5::-2, 1:9:3]
    )
    np.testing.assert_array_equal(
        await arr.oindex[[4, 0], [9, 2, 2]], expected[np.ix_([4, 0], [9, 2, 2])]
    )
    np.testing.assert_array_equal(
        await arr.vindex[[0, 5, 3], [1, 9, 4]], expected[[0, 5, 3], [1, 9, 4]]
    )
    np.testing.assert_array_equal(await arr.read({"x": 7}), expected[:, 7])
    assert await arr.read((2, 3)) == expected[2, 3]
    await arr.vindex.set(([1, 2], [3, 4]), ["p", "q"])
    await arr.write(["a", "bb", "ccc"], (5, slice(0, 3)))
    expected[[1, 2], [3, 4]] = ["p", "q"]
    expected[5, :3] = ["a", "bb", "ccc"]
    np.testing.assert_array_equal(await arr.read(), expected)


async def test_values_of_the_wrong_kind_are_refused() -> None:
    store = MemoryStore()
    strings = await asyncarr.create_array(store, path="s", shape=(3,), dtype=str)
    blobs = await asyncarr.create_array(store, path="b", shape=(3,), dtype=bytes)
    text = await asyncarr.create_array(store, path="u", shape=(3,), dtype="U2")
    dates = await asyncarr.create_array(store, path="d", shape=(3,), dtype="M8[s]")
    with pytest.raises(DTypeError, match="strings"):
        await strings.write(np.array([1, 2, 3]))
    with pytest.raises(DTypeError, match="byte strings"):
        await blobs.write(["not", "bytes", "!"])
    with pytest.raises(DTypeError, match="cut short"):
        await text.write(["abc", "d", "e"])
    with pytest.raises(DTypeError, match="coarser"):
        await dates.write(np.array(["2020-01-01T00:00:00.5"] * 3, dtype="M8[ms]"))
    await dates.write(["2020-01-01", "NaT", "1999-12-31T23:59:59"])
    assert str((await dates.read())[0]) == "2020-01-01T00:00:00"
    await blobs.write([b"a\x00", b"", b"\x00"])  # trailing zero bytes kept (not numpy S)
    assert (await blobs.read()).tolist() == [b"a\x00", b"", b"\x00"]


@pytest.mark.parametrize(
    ("dtype", "fill", "value"),
    [
        (str, "", "x"),
        (bytes, b"", b"x"),
        ("M8[s]", None, np.datetime64("2000-01-01", "s")),
        ([("a", "<i4"), ("b", "<f8")], None, (1, np.nan)),
        ("U3", "ab", "c"),
    ],
    ids=["string", "bytes", "datetime-NaT", "struct", "U"],
)
async def test_write_empty_chunks(dtype: Any, fill: Any, value: Any) -> None:
    store = MemoryStore()
    dt = np.dtype(dtype) if isinstance(dtype, list) else dtype
    arr = await asyncarr.create_array(store, shape=(8,), chunks=(4,), dtype=dt, fill_value=fill)
    effective = arr.metadata.data_type.default_fill() if arr.fill_value is None else arr.fill_value
    await arr.write(np.full(8, effective, dtype=arr.dtype))
    assert await arr.nchunks_initialized() == 0  # all fill: nothing stored
    one = np.full(8, effective, dtype=arr.dtype)
    one[5] = np.array(value, dtype=arr.dtype)[()] if not isinstance(value, str | bytes) else value
    await arr.write(one)
    assert await arr.nchunks_initialized() == 1
    kept = await asyncarr.open_array(store, mode="r+", write_empty_chunks=True)
    await kept.write(np.full(8, effective, dtype=arr.dtype))
    assert await kept.nchunks_initialized() == 2


@pytest.mark.parametrize("zarr_format", [2, 3])
async def test_resize_and_append_strings_and_dates(zarr_format: int) -> None:
    store = MemoryStore()
    names = await asyncarr.create_array(
        store, path="n", shape=(3,), chunks=(2,), dtype=str, fill_value="?", zarr_format=zarr_format
    )
    await names.write(["a", "b", "c"])
    await names.append(["d", "e"])
    assert (await names.read()).tolist() == ["a", "b", "c", "d", "e"]
    await names.resize(2)
    await names.resize(4)
    assert (await names.read()).tolist() == ["a", "b", "?", "?"]
    times = await asyncarr.create_array(
        store, path="t", shape=(2,), chunks=(2,), dtype="M8[D]", zarr_format=zarr_format
    )
    await times.append(np.array(["2020-01-03", "2020-01-04"], dtype="M8[D]"))
    got = await times.read()
    assert np.isnat(got[:2]).all() and str(got[3]) == "2020-01-04"


async def test_sharded_strings_partial_writes() -> None:
    store = MemoryStore()
    arr = await asyncarr.create_array(
        store, shape=(6, 10), chunks=(2, 5), shards=(6, 10), dtype=str
    )
    await arr.write(WORDS)
    await arr.write("Z", (slice(1, 3), slice(4, 6)))  # inner chunks merged, others kept
    expected = WORDS.astype(STRING_DTYPE)
    expected[1:3, 4:6] = "Z"
    np.testing.assert_array_equal(await arr.read(), expected)
    np.testing.assert_array_equal(
        await arr.read((slice(0, 6, 5), slice(None, None, 4))), expected[::5, ::4]
    )


async def test_chunk_cache_holds_decoded_strings() -> None:
    set_chunk_cache(CacheConfig(max_bytes=1 << 20))
    try:
        store = MemoryStore()
        arr = await asyncarr.create_array(store, shape=(6, 10), chunks=(3, 5), dtype=str)
        await arr.write(WORDS)
        first = await arr.read()
        cache = asyncarr.runtime.get_chunk_cache()
        assert cache is not None
        before = cache.stats
        assert before.current_bytes > first.nbytes  # text counted, not just 16-byte slots
        np.testing.assert_array_equal(await arr.read(), first)
        assert cache.stats.hits > before.hits
        await arr.write("new", (0, 0))
        assert (await arr.read((0, 0))) == "new"
    finally:
        set_chunk_cache(None)


@pytest.mark.usefixtures("processes")
@pytest.mark.parametrize("sharded", [False, True])
@pytest.mark.parametrize("on_disk", [False, True], ids=["memory", "local"])
async def test_worker_processes_send_decoded_objects_back(
    tmp_path: Path, sharded: bool, on_disk: bool
) -> None:
    store = LocalStore(str(tmp_path)) if on_disk else MemoryStore()
    arr = await asyncarr.create_array(
        store,
        path="s",
        shape=(6, 10),
        chunks=(2, 2),
        shards=(6, 10) if sharded else None,
        dtype=str,
    )
    await arr.write(WORDS)
    blobs = await asyncarr.create_array(store, path="b", shape=(40,), chunks=(3,), dtype=bytes)
    values = np.array([bytes([i]) * i for i in range(40)], dtype=object)
    await blobs.write(values)
    for _ in range(2):  # the second read after auto mode or the pool has settled
        np.testing.assert_array_equal(await arr.read(), WORDS.astype(STRING_DTYPE))
        np.testing.assert_array_equal(
            await arr.read((slice(1, 6, 2), slice(0, 9, 4))),
            WORDS.astype(STRING_DTYPE)[1:6:2, 0:9:4],
        )
        assert (await blobs.read()).tolist() == values.tolist()


def test_sync_api_and_numpy_protocol(tmp_path: Path) -> None:
    arr = az.create_array(str(tmp_path / "s.zarr"), shape=(4,), chunks=(2,), dtype=bytes)
    arr[:] = [b"a", b"b", b"", b"\x00"]
    arr[1] = b"B"
    assert np.asarray(arr).tolist() == [b"a", b"B", b"", b"\x00"]
    rec = az.create_array(str(tmp_path / "r.zarr"), shape=(2,), dtype=[("a", "<i4"), ("b", "U2")])
    rec[:] = [(1, "x"), (2, "yz")]
    assert rec[1]["b"] == "yz" and rec.dtype.names == ("a", "b")
    nested = az.create_array(
        str(tmp_path / "n.zarr"), shape=(2,), dtype=[("a", "<i4"), ("p", [("x", "<f4")])]
    )
    nested[0] = (7, (1.5,))  # one record, as a tuple of tuples
    assert nested[0].item() == (7, (1.5,))


@pytest.mark.parametrize("dtype", [str, bytes, ">U3", [("a", ">i2"), ("t", "<M8[s]")]])
@pytest.mark.parametrize(("src_fmt", "dst_fmt"), [(2, 3), (3, 2), (2, 2)])
async def test_copy_keeps_the_data_type(
    tmp_path: Path, src_fmt: int, dst_fmt: int, dtype: Any
) -> None:
    src = await asyncarr.create_array(
        str(tmp_path / "src"),
        shape=(6, 10),
        chunks=(4, 4),
        dtype=np.dtype(dtype) if isinstance(dtype, list) else dtype,
        zarr_format=src_fmt,
    )
    await src.write(sample_values(src.metadata.data_type, (6, 10)).astype(src.dtype))
    await copy_array(str(tmp_path / "src"), str(tmp_path / "dst"), zarr_format=dst_fmt)
    dst = await asyncarr.open_array(str(tmp_path / "dst"))
    expected = src.metadata.data_type if dst_fmt == 2 else src.metadata.data_type.native()
    assert dst.metadata.data_type == expected
    assert_same_values(await dst.read(), (await src.read()).astype(dst.dtype))


async def test_info_names_the_data_type(tmp_path: Path) -> None:
    arr = await asyncarr.create_array(str(tmp_path / "a"), shape=(4,), dtype="M8[10us]")
    info = await arr.info_complete()
    assert info.data_type == "numpy.datetime64[10us]"
    assert "numpy.datetime64[10us]" in str(info)
    assert info.to_dict()["data_type"] == "numpy.datetime64[10us]"
    strings = await asyncarr.create_array(str(tmp_path / "g" / "s"), shape=(4,), dtype=str)
    await strings.write(["a", "b", "c", "d"])
    assert "string" in str(strings.info)


def test_cli_info_and_tree_show_data_types(tmp_path: Path) -> None:
    root = tmp_path / "g.zarr"
    group = az.create_group(str(root))
    group.create_array("names", shape=(3,), dtype=str)[:] = ["x", "y", "z"]
    group.create_array("blobs", shape=(3,), dtype=bytes)
    group.create_array("when", shape=(3,), dtype="M8[s]")

    def cli(*args: str) -> str:
        done = subprocess.run(
            [sys.executable, "-m", "asyncarr", *args], capture_output=True, text=True, timeout=120
        )
        assert done.returncode == 0, done.stderr
        return done.stdout

    tree = cli("tree", str(root))
    assert "names (3,) string" in tree and "blobs (3,) variable_length_bytes" in tree
    assert "when (3,) numpy.datetime64[s]" in tree
    info = json.loads(cli("info", "--json", str(root / "names")))
    assert info["data_type"] == "string" and info["dtype"] == str(STRING_DTYPE)


def test_v2_object_arrays_of_json_values_and_arrays(tmp_path: Path) -> None:
    """json2 and vlen-array object arrays (zarr 2 wrote them; zarr-python 3 cannot) read
    and write; their chunks are what numcodecs encodes and decodes."""
    import numcodecs

    store = str(tmp_path)
    values = np.empty(3, dtype=object)
    values[:] = [{"a": 1}, [1, 2], "x"]
    docs = az.create_array(
        store, path="j", shape=(3,), dtype=object, filters=[{"id": "json2"}], zarr_format=2
    )
    docs[...] = values
    assert az.open_array(store, path="j")[...].tolist() == [{"a": 1}, [1, 2], "x"]
    chunk = numcodecs.Zstd().decode((tmp_path / "j" / "0").read_bytes())
    assert numcodecs.JSON().decode(chunk).tolist() == [{"a": 1}, [1, 2], "x"]
    arrays = az.create_array(
        store,
        path="v",
        shape=(2,),
        dtype=object,
        filters=[{"id": "vlen-array", "dtype": "<f4"}],
        zarr_format=2,
    )
    arrays[0] = np.array([1.5, 2.5], dtype="<f4")  # one element: the whole array
    got = az.open_array(store, path="v")[...]
    assert got[0].tolist() == [1.5, 2.5] and got[1].tolist() == []
    chunk = numcodecs.Zstd().decode((tmp_path / "v" / "0").read_bytes())
    assert numcodecs.VLenArray("<f4").decode(chunk)[0].tolist() == [1.5, 2.5]
    with pytest.raises(asyncarr.errors.ConfigError, match="no Zarr v3 spelling"):
        az.create_array(store, path="j3", shape=(2,), dtype=object, filters=[{"id": "json2"}])
