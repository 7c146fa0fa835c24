"""Core array behaviour on the memory and local stores."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

import asyncarr
from asyncarr.errors import (
    ContainsArrayError,
    MetadataError,
    NodeNotFoundError,
    ReadOnlyStoreError,
    SelectionError,
)
from asyncarr.stores import LocalStore, MemoryStore

FORMATS = [2, 3]


@pytest.fixture(params=["memory", "local"])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> object:
    if request.param == "memory":
        return MemoryStore()
    return str(tmp_path / "data.zarr")


@pytest.mark.parametrize("zarr_format", FORMATS)
async def test_roundtrip_full_and_partial(store_url: object, zarr_format: int) -> None:
    data = np.arange(37 * 23, dtype="int32").reshape(37, 23)
    arr = await asyncarr.create_array(
        store_url, shape=data.shape, chunks=(10, 7), dtype="int32", zarr_format=zarr_format
    )
    await arr.write(data)
    np.testing.assert_array_equal(await arr.read(), data)
    np.testing.assert_array_equal(
        await arr.read((slice(3, 30, 4), slice(None, None, -3))), data[3:30:4, ::-3]
    )
    np.testing.assert_array_equal(await arr.read((5, slice(2, 9))), data[5, 2:9])
    np.testing.assert_array_equal(await arr.read((-1, -1)), data[-1, -1])
    np.testing.assert_array_equal(await arr.read(Ellipsis), data)
    await arr.write(-1, (slice(8, 12), slice(5, 6)))
    data[8:12, 5:6] = -1
    np.testing.assert_array_equal(await arr.read(), data)
    reopened = await asyncarr.open_array(store_url)
    assert reopened.zarr_format == zarr_format
    np.testing.assert_array_equal(await reopened.read(), data)


@pytest.mark.parametrize("zarr_format", FORMATS)
async def test_missing_chunks_read_as_fill(zarr_format: int) -> None:
    store = MemoryStore()
    arr = await asyncarr.create_array(
        store,
        shape=(10, 10),
        chunks=(5, 5),
        dtype="float32",
        fill_value=np.nan,
        zarr_format=zarr_format,
    )
    out = await arr.read()
    assert np.isnan(out).all()
    await arr.write(np.ones((5, 5), "f4"), (slice(0, 5), slice(0, 5)))
    out = await arr.read()
    assert (out[:5, :5] == 1).all() and np.isnan(out[5:, :]).all()
    assert await arr.nchunks_initialized() == 1


async def test_write_empty_chunks_false_deletes_fill_chunks() -> None:
    store = MemoryStore()
    arr = await asyncarr.create_array(store, shape=(10,), chunks=(5,), dtype="i2", fill_value=7)
    await arr.write(np.arange(10))
    assert await arr.nchunks_initialized() == 2
    await arr.write(7, slice(0, 5))
    assert await arr.nchunks_initialized() == 1
    await arr.write(7, slice(5, 8))
    await arr.write(7, slice(8, 10))
    assert await arr.nchunks_initialized() == 0
    assert (await arr.read() == 7).all()


NAN = float("nan")


@pytest.mark.parametrize(
    ("fill", "written", "is_fill"),
    [
        (complex(1.0, NAN), complex(NAN, NAN), False),  # was taken for fill: read back 1+nanj
        (complex(1.0, NAN), complex(1.0, NAN), True),
        (complex(NAN, 1.0), complex(NAN, 1.0), True),  # was never matched: stored anyway
        (complex(NAN, 1.0), complex(NAN, 2.0), False),
        (complex(NAN, NAN), complex(NAN, NAN), True),
        (complex(0, 0), complex(0, -0.0), True),
        (NAN, NAN, True),
        (1.5, NAN, False),
    ],
)
@pytest.mark.parametrize("sharded", [False, True])
async def test_chunks_equal_to_a_nan_fill_value_part_by_part(
    fill: complex, written: complex, is_fill: bool, sharded: bool
) -> None:
    """Complex fill values are compared part by part, NaN equal to NaN: a chunk is
    dropped as all-fill exactly when it is (its data never changes)."""
    dtype = "complex128" if isinstance(fill, complex) else "float64"
    arr = await asyncarr.create_array(
        MemoryStore(),
        shape=(4,),
        chunks=(1,) if sharded else (2,),
        shards=(2,) if sharded else None,
        dtype=dtype,
        fill_value=fill,
    )
    await arr.write(np.full(2, written, dtype), slice(0, 2))
    assert await arr.nchunks_initialized() == (0 if is_fill else 1)
    np.testing.assert_array_equal(await arr.read(), np.array([written, written, fill, fill]))


async def test_orthogonal_and_named_selection() -> None:
    data = np.random.default_rng(0).random((20, 30, 4))
    arr = await asyncarr.create_array(
        MemoryStore(),
        shape=data.shape,
        chunks=(6, 7, 3),
        dtype="f8",
        dimension_names=["time", "x", "band"],
    )
    await arr.write(data)
    idx = np.array([19, 0, 5, 5, 7])
    mask = np.zeros(30, bool)
    mask[[1, 2, 29]] = True
    got = await arr.oindex[idx, mask, 1:3]
    np.testing.assert_array_equal(got, data[idx][:, mask][:, :, 1:3])
    np.testing.assert_array_equal(await arr.read({"time": slice(0, 11)}), data[:11])
    np.testing.assert_array_equal(await arr.read({"band": 2, "x": slice(3, 5)}), data[:, 3:5, 2])
    with pytest.raises(SelectionError):
        await arr.read({"nope": 1})
    twice = await asyncarr.create_array(MemoryStore(), shape=(2, 3), dimension_names=["t", "t"])
    with pytest.raises(SelectionError, match="names 2 dimensions"):
        await twice.read({"t": 1})  # ambiguous (zarr allows repeated names; data may have them)
    await arr.write(0.5, (idx, slice(None), 0), orthogonal=True)
    data[idx, :, 0] = 0.5
    np.testing.assert_array_equal(await arr.read(), data)


@pytest.mark.parametrize("shards", [None, (4, 4)])
@pytest.mark.parametrize("dtype", ["bool", "int8", "int32", "float64"])
async def test_index_arrays_that_cover_whole_chunks_out_of_order(
    dtype: str, shards: tuple[int, int] | None
) -> None:
    # Found by the property test: a whole chunk whose output positions are an index
    # array (here rows 2 and 3 land at output rows 0 and 2) must not be decoded into
    # ``out[positions]``, which is a copy, not a view: that lost the chunk silently.
    data = (np.arange(64).reshape(8, 8) % 7).astype(dtype)
    arr = await asyncarr.create_array(
        MemoryStore(), shape=(8, 8), chunks=(2, 2), dtype=dtype, shards=shards
    )
    await arr.write(data)
    for rows in ([2, 0, 3], [3, 2, 1, 0], [7, 6, 0, 1], [5, 4, 4, 5]):
        idx = np.array(rows)
        got = await arr.read((idx, slice(None)), orthogonal=True)
        np.testing.assert_array_equal(got, data[idx], err_msg=f"rows {rows}")
        got = await arr.oindex[idx, idx[::-1]]
        np.testing.assert_array_equal(got, data[idx][:, idx[::-1]], err_msg=f"rows {rows}")


async def test_out_of_bounds_and_bad_selections() -> None:
    arr = await asyncarr.create_array(MemoryStore(), shape=(4, 4), chunks=(2, 2), dtype="u1")
    with pytest.raises(SelectionError, match="out of bounds"):
        await arr.read((4, 0))
    with pytest.raises(SelectionError):
        await arr.read((0, 0, 0))
    with pytest.raises(SelectionError):
        await arr.write(np.ones((3, 3), dtype="u1"), (slice(0, 2), slice(0, 2)))
    with pytest.raises(SelectionError):
        await arr.read(([0, 1], [0, 1]))


async def test_resize_and_append(tmp_path: Path) -> None:
    url = str(tmp_path / "r.zarr")
    arr = await asyncarr.create_array(url, shape=(10, 4), chunks=(4, 4), dtype="i4")
    await arr.write(np.arange(40).reshape(10, 4))
    await arr.resize((6, 4))
    assert arr.shape == (6, 4)
    await arr.resize((12, 4))
    out = await arr.read()
    np.testing.assert_array_equal(out[:6], np.arange(24).reshape(6, 4))
    assert (out[6:] == 0).all(), "data beyond a shrink must not reappear"
    shape = await arr.append(np.full((3, 4), 9), axis=0)
    assert shape == (15, 4)
    np.testing.assert_array_equal((await asyncarr.open_array(url)).shape, (15, 4))
    assert (await arr.read((slice(12, 15),)) == 9).all()


class _UnlistedStore(MemoryStore):
    """A memory store that cannot list its chunks (what resize falls back to there)."""

    @property
    def lists_every_key(self) -> bool:
        return False


@pytest.mark.parametrize("store_kind", ["listing", "not listing"])
async def test_resize_visits_stored_chunks_only_and_clears_stale_ones(store_kind: str) -> None:
    """Growing touches the chunks that exist (it used to send a delete for every chunk of
    the new grid) yet still clears a stale chunk past the old shape before it becomes
    visible; shrinking clears what falls outside."""
    store = MemoryStore() if store_kind == "listing" else _UnlistedStore()
    arr = await asyncarr.create_array(store, shape=(10, 10), chunks=(5, 5), dtype="i4")
    await arr.write(np.ones((10, 10), "i4"))
    stale = (await store.get("c/0/0")) or b""
    await store.set("c/3/0", stale)  # left by another tool's shrink: rows 15-19
    before = asyncarr.store_stats(store).completed
    await arr.resize((400, 400))
    requests = asyncarr.store_stats(store).completed - before
    out = await arr.read((slice(0, 25), slice(0, 12)))
    assert out[:10, :10].sum() == 100 and out[10:].sum() == 0 and out[:, 10:].sum() == 0
    if store_kind == "listing":
        assert requests < 20  # a listing, the stale chunk's delete, the metadata
    await arr.resize((7, 10))
    await arr.resize((10, 10))
    np.testing.assert_array_equal(
        await arr.read(), np.pad(np.ones((7, 10), "i4"), ((0, 3), (0, 0)))
    )


@pytest.mark.parametrize("step", [7, 10, 11, 97, 1000])
async def test_slices_with_steps_of_a_chunk_or_more(step: int) -> None:
    """Steps of at least a chunk visit the elements' chunks only (a step of 10**11 over
    a 10**12-element axis used to walk all 10**11 chunks it spans)."""
    data = np.arange(3000, dtype="i4")
    arr = await asyncarr.create_array(MemoryStore(), shape=data.shape, chunks=(10,), dtype="i4")
    await arr.write(data)
    np.testing.assert_array_equal(await arr.read(slice(3, None, step)), data[3::step])
    await arr.write(-1, slice(5, 2990, step))
    data[5:2990:step] = -1
    np.testing.assert_array_equal(await arr.read(), data)
    huge = await asyncarr.create_array(
        MemoryStore(), shape=(10**12, 10**12), chunks=(10, 10), dtype="u1", fill_value=3
    )
    await huge.write(np.uint8(9), (5 * 10**11, 10**11 + 5))
    got = await huge.read((slice(0, None, 10**11), slice(5, None, 10**11)))
    expected = np.full((10, 10), 3, "u1")
    expected[5, 1] = 9
    np.testing.assert_array_equal(got, expected)


async def test_a_strided_selection_too_large_to_hold_is_refused_before_any_work() -> None:
    """Counting the chunks of a strided selection no longer lists its elements first
    (2M per axis: 12 s and 650 MB before the allocation was refused)."""
    arr = await asyncarr.create_array(
        MemoryStore(), shape=(2**62, 2**62), chunks=(1024, 1024), dtype="u1"
    )
    with pytest.raises(SelectionError, match="more than can be allocated"):
        await arr.read((slice(None, None, 2**36), slice(None, None, 2**36)))


async def test_resizing_a_huge_sparse_array_is_quick() -> None:
    arr = await asyncarr.create_array(
        MemoryStore(), shape=(10**12, 10**12), chunks=(10, 10), dtype="u1"
    )
    await arr.write(np.uint8(7), (10**11, 10**11))
    await arr.resize((10**12 + 5, 10**12))  # (its grid has 10**22 chunks)
    await arr.resize((10**11, 10**12))
    assert arr.shape == (10**11, 10**12)
    assert await arr.nchunks_initialized() == 0


@pytest.mark.parametrize("zarr_format", FORMATS)
async def test_attributes_persist(zarr_format: int) -> None:
    store = MemoryStore()
    arr = await asyncarr.create_array(
        store,
        shape=(3,),
        chunks=(3,),
        dtype="f4",
        zarr_format=zarr_format,
        attributes={"units": "K"},
    )
    await arr.update_attributes({"scale": 2})
    reopened = await asyncarr.open_array(store)
    assert dict(reopened.attrs) == {"units": "K", "scale": 2}


async def test_create_refuses_existing_and_overwrites() -> None:
    store = MemoryStore()
    await asyncarr.create_array(store, shape=(3,), chunks=(3,), dtype="f4")
    with pytest.raises(ContainsArrayError):
        await asyncarr.create_array(store, shape=(3,), chunks=(3,), dtype="f4")
    arr = await asyncarr.create_array(store, shape=(5,), chunks=(5,), dtype="i1", overwrite=True)
    assert arr.shape == (5,)


async def test_open_missing_and_read_only() -> None:
    store = MemoryStore()
    with pytest.raises(NodeNotFoundError):
        await asyncarr.open_array(store)
    await asyncarr.create_array(store, shape=(3,), chunks=(3,), dtype="f4")
    ro = await asyncarr.open_array(store, mode="r")
    with pytest.raises(ReadOnlyStoreError):
        await ro.write(1.0)


async def test_bad_metadata_is_a_clear_error() -> None:
    store = MemoryStore()
    await store.set("zarr.json", b"{not json")
    with pytest.raises(MetadataError, match=r"zarr\.json"):
        await asyncarr.open_array(store)
    await store.set("zarr.json", b'{"zarr_format": 3, "node_type": "array", "shape": [-1]}')
    with pytest.raises(MetadataError):
        await asyncarr.open_array(store)


@pytest.mark.parametrize(
    "dtype",
    [
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
        ">f8",
        ">i4",
        ">c16",
    ],
)
@pytest.mark.parametrize("zarr_format", FORMATS)
async def test_dtypes(dtype: str, zarr_format: int) -> None:
    rng = np.random.default_rng(1)
    dt = np.dtype(dtype)
    raw = rng.integers(0, 100, size=(9, 5))
    data = (raw % 2 == 0) if dt.kind == "b" else raw.astype(dt)
    if dt.kind == "c":
        data = data + 1j * data[::-1]
    arr = await asyncarr.create_array(
        MemoryStore(), shape=data.shape, chunks=(4, 3), dtype=dtype, zarr_format=zarr_format
    )
    await arr.write(data)
    np.testing.assert_array_equal(await arr.read(), data)


async def test_sharded_roundtrip_and_partial_reads() -> None:
    store = MemoryStore()
    data = np.random.default_rng(2).random((50, 40)).astype("f4")
    arr = await asyncarr.create_array(
        store, shape=data.shape, chunks=(5, 5), shards=(20, 20), dtype="f4"
    )
    assert arr.chunks == (5, 5) and arr.shards == (20, 20)
    await arr.write(data)
    np.testing.assert_array_equal(await arr.read(), data)
    np.testing.assert_array_equal(await arr.read((slice(3, 4), slice(7, 8))), data[3:4, 7:8])
    await arr.write(0, (slice(10, 12), slice(10, 31)))
    data[10:12, 10:31] = 0
    np.testing.assert_array_equal(await (await asyncarr.open_array(store)).read(), data)


async def test_group_hierarchy_and_consolidation() -> None:
    store = MemoryStore()
    root = await asyncarr.create_group(store, attributes={"title": "t"})
    sub = await root.create_group("sub")
    a = await sub.create_array("a", shape=(4,), chunks=(2,), dtype="i4")
    await a.write([1, 2, 3, 4])
    await root.create_array("b", shape=(2, 2), chunks=(1, 1), dtype="f8")
    names = [n for n, _ in await root.members(max_depth=None)]
    assert names == ["b", "sub", "sub/a"]
    tree = await root.tree()
    assert "sub" in tree and "a (4,) int32" in tree
    await root.consolidate_metadata()
    g = await asyncarr.open_group(store)
    assert g.metadata.consolidated is not None
    node = await g.get("sub/a")
    assert isinstance(node, asyncarr.AsyncArray)
    np.testing.assert_array_equal(await node.read(), [1, 2, 3, 4])


async def test_dtype_mismatch_is_a_clear_error() -> None:
    arr = await asyncarr.create_array(MemoryStore(), shape=(4,), chunks=(2,), dtype="int16")
    with pytest.raises(asyncarr.errors.DTypeError, match="int16"):
        await arr.write(np.array([0.5, 1.5, 2.5, 3.5]))
    await arr.write(np.array([1, 2, 3, 4], dtype="int64"))  # integers of another width are fine
    np.testing.assert_array_equal(await arr.read(), [1, 2, 3, 4])


@pytest.mark.parametrize(
    ("dtype", "value"),
    [("i2", 70000), ("u1", -1), ("i8", 2**63), ("i2", np.array([1, 2**40])), ("f2", 10**6)],
)
async def test_integers_that_do_not_fit_are_refused_not_wrapped(dtype: str, value: Any) -> None:
    """numpy's cast would store 70000 in int16 as 4464 and -1 in uint8 as 255."""
    arr = await asyncarr.create_array(MemoryStore(), shape=(2,), chunks=(2,), dtype=dtype)
    with pytest.raises(asyncarr.errors.DTypeError, match="do not fit"):
        await arr.write(value)
    np.testing.assert_array_equal(await arr.read(), [0, 0])  # nothing written
    info = np.iinfo(dtype) if dtype[0] in "iu" else None
    edge = info.max if info is not None else 65504
    await arr.write(edge)  # the extremes themselves fit
    np.testing.assert_array_equal(await arr.read(), [edge, edge])


@pytest.mark.parametrize(
    ("dtype", "fill"),
    [("u1", 256), ("u1", -1), ("i1", 200), ("i2", 2**20), ("bool", 2), ("f2", 1e6), ("u8", 2**64)],
)
async def test_fill_values_that_do_not_fit_are_refused(dtype: str, fill: Any) -> None:
    with pytest.raises(asyncarr.errors.ConfigError, match=f"fill_value {fill!r}"):
        await asyncarr.create_array(MemoryStore(), shape=(2,), dtype=dtype, fill_value=fill)


@pytest.mark.parametrize(
    ("dtype", "fill"), [("u1", 255), ("i1", -128), ("f4", 0.1), ("f2", float("inf")), ("u1", 1.0)]
)
async def test_fill_values_that_fit_are_kept(dtype: str, fill: Any) -> None:
    arr = await asyncarr.create_array(MemoryStore(), shape=(2,), dtype=dtype, fill_value=fill)
    assert arr.fill_value == np.dtype(dtype).type(fill)


async def test_numpy_values_in_attributes_are_stored_as_plain_json() -> None:
    arr = await asyncarr.create_array(
        MemoryStore(), shape=(2,), dtype="i4", attributes={"n": np.int64(3), "v": np.arange(2)}
    )
    await arr.update_attributes({"x": np.float32(1.5), "t": (np.bool_(True), 2)})
    assert dict(arr.attrs) == {"n": 3, "v": [0, 1], "x": 1.5, "t": [True, 2]}
    with pytest.raises(asyncarr.errors.ConfigError, match="JSON"):
        await arr.update_attributes({"bad": object()})


@pytest.mark.parametrize("shape", [(5.0,), (True,), ("4",)])
async def test_shapes_must_be_integers(shape: Any) -> None:
    with pytest.raises(asyncarr.errors.ConfigError, match="shape must be"):
        await asyncarr.create_array(MemoryStore(), shape=shape, dtype="i4")


async def test_require_group_on_an_array_names_the_conflict() -> None:
    group = await asyncarr.create_group(MemoryStore())
    await group.create_array("a", shape=(2,), dtype="i4")
    with pytest.raises(asyncarr.errors.ContainsArrayError, match="is an array"):
        await group.require_group("a")


def test_numpy_copy_false_is_refused_not_silently_copied() -> None:
    import asyncarr.sync as az

    arr = az.create_array(MemoryStore(), shape=(2,), dtype="i4")
    np.testing.assert_array_equal(np.asarray(arr), [0, 0])
    with pytest.raises(ValueError, match="without a copy"):
        np.array(arr, copy=False)


def test_zero_d_integer_arrays_index_like_integers() -> None:
    import asyncarr.sync as az

    data = np.arange(20, dtype="i4").reshape(5, 4)
    arr = az.create_array(MemoryStore(), shape=(5, 4), chunks=(2, 2), dtype="i4")
    arr[:] = data
    for sel in [np.array(2), (np.array(1), slice(None)), (np.array(1), np.array(3))]:
        np.testing.assert_array_equal(arr[sel], data[sel])
    np.testing.assert_array_equal(arr[np.array(4), [0, 2]], data[4, [0, 2]])
    arr[np.array(0)] = 7
    np.testing.assert_array_equal(arr[0], [7, 7, 7, 7])


def test_empty_lists_select_nothing_as_in_numpy() -> None:
    import asyncarr.sync as az

    data = np.arange(40, dtype="i4").reshape(5, 8)
    arr = az.create_array(MemoryStore(), shape=(5, 8), chunks=(2, 3), dtype="i4")
    arr[:] = data
    assert arr[[]].shape == data[[]].shape == (0, 8)
    assert arr[:, []].shape == data[:, []].shape == (5, 0)
    assert arr.oindex[[], [1, 2]].shape == (0, 2)
    arr[[], 0:2] = 1
    arr.oindex[[], []] = 5
    np.testing.assert_array_equal(arr[:], data)  # the writes changed nothing
    with pytest.raises(SelectionError):  # an empty *float* array is refused, as numpy does
        arr[np.array([], dtype=float)]


@pytest.mark.parametrize("fmt", [2, 3])
async def test_consolidated_metadata_follows_the_groups_own_deletes_and_creates(
    fmt: int,
) -> None:
    """A deleted member must not live on in the consolidated metadata (it read as fill
    values), nor a member re-created with another shape and dtype read as the old one."""
    store = MemoryStore()
    root = await asyncarr.create_group(store, zarr_format=fmt)  # type: ignore[arg-type]
    old = await root.create_array("temp", shape=(4,), dtype="i4")
    await old.write(np.arange(4, dtype="i4"))
    sub = await root.create_group("sub")
    await sub.create_array("inner", shape=(2,), dtype="u1")
    await root.consolidate_metadata()

    await root.delete("temp")
    await root.delete("sub")
    for group in (root, await asyncarr.open_group(store)):
        assert await group.array_keys() == [] and await group.group_keys() == []
        with pytest.raises(asyncarr.errors.NodeNotFoundError):
            await group.get("temp")
        with pytest.raises(asyncarr.errors.NodeNotFoundError):
            await group.get("sub/inner")

    new = await root.create_array("temp", shape=(2, 3), dtype="f8", attributes={"a": 1})
    await new.write(np.full((2, 3), 7.5))
    reopened = await asyncarr.open_group(store)
    assert reopened.metadata.consolidated is not None
    node = await reopened.get("temp")
    assert isinstance(node, asyncarr.AsyncArray)
    assert (node.shape, node.dtype, dict(node.attrs)) == ((2, 3), np.dtype("f8"), {"a": 1})
    np.testing.assert_array_equal(await node.read(), np.full((2, 3), 7.5))


class _CountingStore(MemoryStore):
    """Records every read (key, range) so tests can check what was fetched."""

    def __init__(self) -> None:
        super().__init__()
        self.reads: list[tuple[str, object]] = []

    async def get(
        self, key: str, byte_range: object = None, *, max_size: int | None = None
    ) -> bytes | None:  # type: ignore[override]
        self.reads.append((key, byte_range))
        return await super().get(key, byte_range, max_size=max_size)  # type: ignore[arg-type]


async def test_sharded_read_of_one_inner_chunk_fetches_index_and_that_chunk_only() -> None:
    store = _CountingStore()
    data = np.arange(64 * 64, dtype="f8").reshape(64, 64)
    arr = await asyncarr.create_array(
        store, shape=data.shape, chunks=(8, 8), shards=(64, 64), dtype="f8", compressor=None
    )
    await arr.write(data)
    shard_size = await store.getsize("c/0/0")
    store.reads.clear()
    np.testing.assert_array_equal(await arr.read((slice(9, 12), slice(17, 20))), data[9:12, 17:20])
    assert len(store.reads) == 2, store.reads
    (k1, index_range), (k2, chunk_range) = store.reads
    assert k1 == k2 == "c/0/0"
    assert isinstance(index_range, asyncarr.SuffixRange) and index_range.length == 64 * 16 + 4
    assert isinstance(chunk_range, asyncarr.ByteRange) and chunk_range.length == 8 * 8 * 8
    assert chunk_range.length < shard_size / 10


async def test_zip_url_roundtrip(tmp_path: Path) -> None:
    url = f"zip://{tmp_path / 'a.zip'}"
    data = np.arange(50, dtype="u2").reshape(5, 10)
    arr = await asyncarr.create_array(url, shape=data.shape, chunks=(2, 4), dtype="u2")
    await arr.write(data)
    await arr.aclose()  # finishes the archive
    back = await asyncarr.open_array(url)
    try:
        np.testing.assert_array_equal(await back.read(), data)
    finally:
        await back.aclose()


async def test_open_group_modes(tmp_path: Path) -> None:
    url = str(tmp_path / "modes.zarr")
    with pytest.raises(NodeNotFoundError):
        await asyncarr.open_group(url, mode="r")
    g = await asyncarr.open_group(url, mode="a")
    assert g.zarr_format == 3
    await g.create_array("x", shape=(2,), chunks=(2,), dtype="i1")
    again = await asyncarr.open_group(url, mode="a")
    assert await again.array_keys() == ["x"]
    with pytest.raises(asyncarr.errors.ContainsGroupError):
        await asyncarr.open_group(url, mode="w-")
    fresh = await asyncarr.open_group(url, mode="w")
    assert await fresh.members() == []
    node = await asyncarr.open(url)
    assert isinstance(node, asyncarr.AsyncGroup)


@pytest.mark.parametrize("opener", ["open_group", "open"])
async def test_a_group_opened_read_only_through_a_store_object_refuses_writes(
    tmp_path: Path, opener: str
) -> None:
    """mode="r" with a ready Store object is enforced by the group (it was writable)."""
    url = str(tmp_path / "ro.zarr")
    group = await asyncarr.create_group(url)
    await group.create_array("a", shape=(2,), dtype="i1")
    store = LocalStore(url)
    ro = await getattr(asyncarr, opener)(store, mode="r")
    assert ro.read_only
    for attempt in (
        lambda: ro.update_attributes({"x": 1}),
        lambda: ro.create_array("b", shape=(2,), dtype="i1"),
        lambda: ro.create_group("c"),
        lambda: ro.delete("a"),
    ):
        with pytest.raises(ReadOnlyStoreError):
            await attempt()
    child = await ro.get("a")
    assert child.read_only
    assert sorted(n for n, _ in await (await asyncarr.open_group(url)).members()) == ["a"]


@pytest.mark.parametrize("zarr_format", FORMATS)
async def test_members_whose_names_start_with_a_dot_are_listed(zarr_format: int) -> None:
    """The spec allows ".hidden" and zarr-python lists it; only metadata files are not
    members (names starting with "." used to be dropped from listings)."""
    store = MemoryStore()
    group = await asyncarr.create_group(store, zarr_format=zarr_format)
    await group.create_group(".hidden")
    await group.create_array("a", shape=(2,), dtype="i1")
    assert [n for n, _ in await group.members()] == [".hidden", "a"]
    await group.consolidate_metadata()
    for consolidated in (True, False):
        again = await asyncarr.open_group(store, use_consolidated=consolidated)
        assert [n for n, _ in await again.members()] == [".hidden", "a"]


async def test_nested_create_makes_parent_groups() -> None:
    store = MemoryStore()
    root = await asyncarr.create_group(store)
    await root.create_array("b/c/x", shape=(2,), chunks=(2,), dtype="i1")
    assert [n for n, _ in await root.members(max_depth=None)] == ["b", "b/c", "b/c/x"]
    with pytest.raises(asyncarr.errors.ContainsArrayError):
        await root.create_array("b/c/x/y", shape=(2,), chunks=(2,), dtype="i1")


def test_sync_objects_keep_the_portal_alive() -> None:
    import asyncarr.sync as az
    from asyncarr.runtime import get_portal

    portal = get_portal()
    before = portal.leases
    arr = az.create_array(MemoryStore(), shape=(3,), chunks=(3,), dtype="i1")
    assert portal.leases == before + 1
    arr[:] = 1
    arr.close()
    assert portal.leases == before


async def test_nbytes_stored_counts_every_object(tmp_path: Path) -> None:
    arr = await asyncarr.create_array(
        str(tmp_path / "n.zarr"), shape=(40, 40), chunks=(10, 10), dtype="f8", compressor=None
    )
    await arr.write(1.0)
    on_disk = sum(p.stat().st_size for p in (tmp_path / "n.zarr").rglob("*") if p.is_file())
    assert await arr.nbytes_stored() == on_disk


async def test_partial_shard_write_reencodes_only_touched_inner_chunks() -> None:
    store = MemoryStore()
    data = np.arange(32 * 32, dtype="i4").reshape(32, 32)
    arr = await asyncarr.create_array(
        store, shape=data.shape, chunks=(8, 8), shards=(32, 32), dtype="i4"
    )
    await arr.write(data)
    codec = arr._ctx.sharding
    assert codec is not None
    before = codec.split_parts(await store.get("c/0/0") or b"")
    await arr.write(-5, (slice(9, 11), slice(17, 30)))
    data[9:11, 17:30] = -5
    after = codec.split_parts(await store.get("c/0/0") or b"")
    changed = {c for c in after if bytes(after[c]) != bytes(before[c])}
    assert changed == {(1, 2), (1, 3)}
    np.testing.assert_array_equal(await arr.read(), data)


@pytest.mark.parametrize("write_empty", [False, True])
async def test_whole_shard_writes_spread_over_workers_store_the_same_bytes(
    store_url: object, write_empty: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Fewer whole shards than workers: each shard's inner chunks are encoded by several
    workers and assembled after. The stored shards are byte for byte what one call of
    the codec makes, edge shards and all-fill shards included."""
    from asyncarr.config import ExecutorConfig
    from asyncarr.core._sharding import ShardingCodec
    from asyncarr.runtime import set_executor

    calls: list[int] = []
    encode_inner = ShardingCodec.encode_inner

    def counting(self: ShardingCodec, shard: np.ndarray, coords: list[tuple[int, ...]]) -> object:
        calls.append(len(coords))
        return encode_inner(self, shard, coords)

    monkeypatch.setattr(ShardingCodec, "encode_inner", counting)
    set_executor(ExecutorConfig(mode="threads", max_workers=4))
    try:
        data = np.random.default_rng(5).random((48, 40)).astype("f4")
        data[:, 32:] = 0  # the right-hand shards hold fill value only
        arr = await asyncarr.create_array(
            store_url,
            shape=data.shape,
            chunks=(4, 4),
            shards=(32, 32),
            dtype="f4",
            fill_value=0.0,
            write_empty_chunks=write_empty,
        )
        codec = arr._ctx.sharding
        assert codec is not None
        for r, c in [(0, 0), (0, 1), (1, 0), (1, 1)]:  # one shard per write: 1 < 4 workers
            block = (slice(r * 32, (r + 1) * 32), slice(c * 32, (c + 1) * 32))
            await arr.write(data[block], block)
        np.testing.assert_array_equal(await arr.read(), data)
        assert len(calls) == 4 * 16 and set(calls) == {4}  # 64 inner chunks in 16 calls a shard
        store = arr._ctx.store
        for r, c in [(0, 0), (1, 0)]:  # (1, 0) is an edge shard, padded with fill
            shard = np.zeros((32, 32), "f4")
            part = data[r * 32 : (r + 1) * 32, c * 32 : (c + 1) * 32]
            shard[: part.shape[0], : part.shape[1]] = part
            assert await store.get(f"c/{r}/{c}") == codec.encode(shard, arr._ctx.pipeline.spec)
        for key in ("c/0/1", "c/1/1"):  # all fill: an index-only shard, or none at all
            stored = await store.get(key)
            assert (stored is not None) == write_empty
            if stored is not None:
                assert codec.split_parts(stored) == {}
    finally:
        set_executor(None)


async def test_array_reads_refuse_symlinks_out_of_a_local_store(tmp_path: Path) -> None:
    root = tmp_path / "a.zarr"
    arr = await asyncarr.create_array(
        str(root), shape=(4, 4), chunks=(2, 2), dtype="u1", compressor=None
    )
    await arr.write(np.arange(16, dtype="u1").reshape(4, 4))
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "1").write_bytes(bytes(4))
    (root / "c" / "0" / "1").unlink()
    (root / "c" / "0" / "1").symlink_to(outside / "1")
    with pytest.raises(asyncarr.errors.InvalidKeyError, match="symlink"):
        await (await asyncarr.open_array(str(root))).read()
    (root / "c" / "1").rename(tmp_path / "moved")
    (root / "c" / "1").symlink_to(outside)
    with pytest.raises(asyncarr.errors.InvalidKeyError, match="outside"):
        await (await asyncarr.open_array(str(root))).read((slice(2, 4), slice(2, 4)))


@pytest.mark.parametrize("zarr_format", FORMATS)
async def test_zero_dimensional_arrays(zarr_format: int) -> None:
    arr = await asyncarr.create_array(
        MemoryStore(), shape=(), chunks=(), dtype="f8", zarr_format=zarr_format, fill_value=1.5
    )
    assert (await arr.read()).shape == ()
    assert await arr.read() == 1.5
    await arr.write(3.25)
    assert await arr.read() == 3.25
    assert await arr.nchunks_initialized() == 1


async def test_chunk_cache_keeps_stores_on_one_endpoint_apart(tmp_path: Path) -> None:
    from asyncarr.runtime import set_chunk_cache

    set_chunk_cache(asyncarr.CacheConfig(max_bytes=1 << 20))
    try:
        a = await asyncarr.create_array(str(tmp_path / "a"), shape=(4,), chunks=(4,), dtype="i4")
        b = await asyncarr.create_array(str(tmp_path / "b"), shape=(4,), chunks=(4,), dtype="i4")
        await a.write([1, 1, 1, 1])
        await b.write([2, 2, 2, 2])
        assert (await a.read() == 1).all()  # same endpoint (one disk), same key "c/0"
        assert (await b.read() == 2).all()
        await b.write([3, 3, 3, 3])
        assert (await b.read() == 3).all()
    finally:
        set_chunk_cache(None)
