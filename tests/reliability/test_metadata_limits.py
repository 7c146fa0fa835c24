"""Metadata that numpy or memory cannot take is refused at open, and opening a node
decides by format precedence: junk or slow files beside a valid node never fail or
hold it.

The HTTP flavours of these (a server answering every path, a trickling ``.zarray``)
are in ``test_hostile_servers.py``.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Sequence
from typing import Any

import numpy as np
import pytest

import asyncarr
from asyncarr import StoreLimits
from asyncarr._types import RangeRequest
from asyncarr.errors import ConfigError, MetadataError, NodeNotFoundError, SelectionError
from asyncarr.stores import MemoryStore

V3_ARRAY: dict[str, Any] = {
    "zarr_format": 3,
    "node_type": "array",
    "shape": [4],
    "data_type": "int32",
    "chunk_grid": {"name": "regular", "configuration": {"chunk_shape": [2]}},
    "chunk_key_encoding": {"name": "default", "configuration": {"separator": "/"}},
    "fill_value": 7,
    "codecs": [{"name": "bytes", "configuration": {"endian": "little"}}],
    "attributes": {"v": 3},
}
V2_ARRAY: dict[str, Any] = {
    "zarr_format": 2,
    "shape": [4],
    "chunks": [2],
    "dtype": "<i4",
    "compressor": None,
    "fill_value": 2,
    "order": "C",
    "filters": None,
}


async def _put(store: MemoryStore, docs: dict[str, Any]) -> None:
    for key, doc in docs.items():
        await store.set(key, doc if isinstance(doc, bytes) else json.dumps(doc).encode())


# -- item: a metadata document size limit, checked before parsing ----------------------------
@pytest.mark.parametrize("name", ["zarr.json", ".zarray", ".zattrs", ".zmetadata"])
async def test_metadata_over_the_size_limit_is_refused_before_parsing(name: str) -> None:
    limits = StoreLimits(max_metadata_bytes=4096)
    store = MemoryStore(limits=limits)
    big = {f"k{i:06d}": i for i in range(2000)}  # ~20 KB of attributes
    if name == "zarr.json":
        await _put(store, {"a/zarr.json": {**V3_ARRAY, "attributes": big}})
    elif name == ".zarray":
        await _put(store, {"a/.zarray": {**V2_ARRAY, "extra": big}})
    elif name == ".zattrs":
        await _put(store, {"a/.zarray": V2_ARRAY, "a/.zattrs": big})
    else:
        await _put(store, {".zgroup": {"zarr_format": 2}, ".zmetadata": {"metadata": big}})
    opening = (
        asyncarr.open_group(store, zarr_format=2, use_consolidated=True)
        if name == ".zmetadata"
        else asyncarr.open_array(store, path="a")
    )
    with pytest.raises(MetadataError, match="max_metadata_bytes") as info:
        await opening
    assert info.value.key is not None and info.value.key.endswith(name)


async def test_the_limit_is_generous_by_default_and_configurable() -> None:
    assert StoreLimits().max_metadata_bytes == 64 << 20
    store = MemoryStore()
    big = {f"k{i:06d}": i for i in range(2000)}
    await _put(store, {"a/zarr.json": {**V3_ARRAY, "attributes": big}})
    arr = await asyncarr.open_array(store, path="a")
    assert len(arr.attrs) == 2000
    with pytest.raises(Exception, match="max_metadata_bytes"):
        StoreLimits(max_metadata_bytes=0)


async def test_consolidated_v3_metadata_is_under_the_limit_too() -> None:
    store = MemoryStore(limits=StoreLimits(max_metadata_bytes=4096))
    members = {f"x{i}": {**V3_ARRAY} for i in range(40)}
    root = {
        "zarr_format": 3,
        "node_type": "group",
        "attributes": {},
        "consolidated_metadata": {"kind": "inline", "must_understand": False, "metadata": members},
    }
    await _put(store, {"zarr.json": root})
    with pytest.raises(MetadataError, match="max_metadata_bytes"):
        await asyncarr.open_group(store)


# -- item: what numpy cannot do is refused at open ----------------------------------------------
@pytest.mark.parametrize("fmt", [2, 3])
async def test_more_than_64_dimensions_is_a_metadata_error_at_open(fmt: int) -> None:
    store = MemoryStore()
    if fmt == 3:
        doc = {**V3_ARRAY, "shape": [1] * 65}
        doc["chunk_grid"] = {"name": "regular", "configuration": {"chunk_shape": [1] * 65}}
        await _put(store, {"a/zarr.json": doc})
    else:
        await _put(store, {"a/.zarray": {**V2_ARRAY, "shape": [1] * 65, "chunks": [1] * 65}})
    with pytest.raises(MetadataError, match="at most 64") as info:
        await asyncarr.open_array(store, path="a")
    assert info.value.key is not None


async def test_64_dimensions_work() -> None:
    store = MemoryStore()
    arr = await asyncarr.create_array(store, shape=(1,) * 64, chunks=(1,) * 64, dtype="u1")
    await arr.write(5)
    assert (await arr.read()).item() == 5
    with pytest.raises(MetadataError, match="at most 64"):
        await asyncarr.create_array(store, path="b", shape=(1,) * 65, chunks=(1,) * 65, dtype="u1")


async def test_sharded_arrays_stop_at_63_dimensions_and_work_up_to_them() -> None:
    store = MemoryStore()
    shape = (2, 2) + (1,) * 61
    arr = await asyncarr.create_array(
        store, shape=shape, chunks=(1,) * 63, shards=shape, dtype="u1", zarr_format=3
    )
    data = np.arange(4, dtype="u1").reshape(shape)
    await arr.write(data)
    np.testing.assert_array_equal(await arr.read(), data)
    with pytest.raises((ConfigError, MetadataError), match="at most 63"):
        await asyncarr.create_array(
            store, path="b", shape=(1,) * 64, chunks=(1,) * 64, shards=(1,) * 64, dtype="u1"
        )


async def test_a_selection_larger_than_numpy_can_hold_is_a_selection_error() -> None:
    store = MemoryStore()
    arr = await asyncarr.create_array(
        store, shape=(1 << 62, 1 << 62), chunks=(1 << 10, 1 << 10), dtype="f8"
    )
    with pytest.raises(SelectionError):
        await arr.read()
    assert (await arr.read((slice(0, 2), slice(5, 6)))).shape == (2, 1)


# -- item: opening decides by format precedence ---------------------------------------------
@pytest.mark.parametrize("junk", [b"<html>not found</html>", b"[1, 2]", b"\xff\xfe"])
async def test_junk_v2_files_beside_a_valid_zarr_json_do_not_fail_the_open(junk: bytes) -> None:
    store = MemoryStore()
    await _put(
        store, {"a/zarr.json": V3_ARRAY, "a/.zattrs": junk, "a/.zarray": junk, "a/.zgroup": junk}
    )
    for fmt in (None, 3):
        arr = await asyncarr.open_array(store, path="a", zarr_format=fmt)
        assert arr.zarr_format == 3 and dict(arr.attrs) == {"v": 3}
        assert (await arr.read()).tolist() == [7, 7, 7, 7]


async def test_v3_wins_over_a_valid_v2_node_unless_told_otherwise() -> None:
    store = MemoryStore()
    await _put(store, {"a/zarr.json": V3_ARRAY, "a/.zarray": V2_ARRAY})
    assert (await asyncarr.open_array(store, path="a")).zarr_format == 3
    assert (await asyncarr.open_array(store, path="a", zarr_format=2)).zarr_format == 2


async def test_a_junk_zarr_json_gives_way_to_a_valid_v2_node_and_is_named_without_one() -> None:
    store = MemoryStore()
    await _put(
        store, {"a/zarr.json": b"<html></html>", "a/.zarray": V2_ARRAY, "b/zarr.json": b"<p>"}
    )
    arr = await asyncarr.open_array(store, path="a")
    assert arr.zarr_format == 2 and (await arr.read()).tolist() == [2, 2, 2, 2]
    with pytest.raises(MetadataError, match="not valid JSON") as info:
        await asyncarr.open_array(store, path="b")
    assert info.value.key == "b/zarr.json"
    with pytest.raises(NodeNotFoundError):
        await asyncarr.open_array(store, path="b", zarr_format=2)


async def test_v2_zarray_decides_before_a_junk_zgroup_and_a_junk_zattrs_is_named() -> None:
    store = MemoryStore()
    await _put(store, {"a/.zarray": V2_ARRAY, "a/.zgroup": b"<html>"})
    assert (await asyncarr.open_array(store, path="a")).zarr_format == 2
    await _put(store, {"b/.zgroup": {"zarr_format": 2}, "b/.zarray": b"<html>"})
    assert (await asyncarr.open_group(store, path="b")).zarr_format == 2
    await _put(store, {"c/.zarray": V2_ARRAY, "c/.zattrs": b"<html>"})
    with pytest.raises(MetadataError) as info:
        await asyncarr.open_array(store, path="c")
    assert info.value.key == "c/.zattrs"


class _SlowV2Store(MemoryStore):
    """A store whose v2 documents take a minute to arrive (a trickling server)."""

    slow_reads = 0

    async def get(
        self, key: str, byte_range: RangeRequest | None = None, **kwargs: Any
    ) -> bytes | None:
        if key.rsplit("/", 1)[-1] in (".zarray", ".zgroup", ".zattrs"):
            self.slow_reads += 1
            await asyncio.sleep(60)
        return await super().get(key, byte_range, **kwargs)

    async def get_ranges(self, key: str, ranges: Sequence[RangeRequest]) -> list[bytes] | None:
        raise AssertionError("not used")


async def test_a_slow_v2_document_does_not_hold_a_v3_open() -> None:
    store = _SlowV2Store()
    await _put(store, {"a/zarr.json": V3_ARRAY})
    start = time.monotonic()
    arr = await asyncio.wait_for(asyncarr.open_array(store, path="a"), 10)
    assert time.monotonic() - start < 10 and arr.zarr_format == 3
    np.testing.assert_array_equal(await arr.read(), [7, 7, 7, 7])
