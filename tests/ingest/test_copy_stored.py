"""``copy_array`` copies the stored chunk objects as they are where the encoding does not
change (no decoding, no encoding), and decodes and encodes where it does."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

import asyncarr
from asyncarr.ingest import copy_array
from asyncarr.stores import MemoryStore

DATA = np.arange(40 * 30, dtype="float32").reshape(40, 30) + 0.5


async def _source(**options: Any) -> MemoryStore:
    store = MemoryStore()
    arr = await asyncarr.create_array(
        store, shape=DATA.shape, chunks=(10, 10), dtype="float32", **options
    )
    await arr.write(DATA)
    await arr.write(np.zeros((10, 10), "float32"), (slice(0, 10), slice(0, 10)))  # fill
    return store


async def _values(store: MemoryStore) -> dict[str, bytes]:
    return {
        k: v
        async for k in store.list()
        if not k.endswith(("zarr.json", ".zarray", ".zattrs"))
        if (v := await store.get(k)) is not None
    }


@pytest.mark.parametrize(
    "options",
    [
        {"zarr_format": 3},
        {"zarr_format": 3, "shards": (20, 30), "compressor": "blosc"},
        {"zarr_format": 2, "compressor": "zlib", "chunk_key_encoding": {"name": "v2"}},
    ],
    ids=["v3", "v3-sharded-blosc", "v2-zlib"],
)
async def test_an_unchanged_encoding_copies_the_stored_objects_as_they_are(
    options: dict[str, Any],
) -> None:
    source, dest = await _source(**options), MemoryStore()
    report = await copy_array(source, dest)
    assert report.as_stored and "stored objects" in str(report)
    src_values, dest_values = await _values(source), await _values(dest)
    assert sorted(src_values.values()) == sorted(dest_values.values())  # byte for byte
    assert report.blocks == len(src_values)  # the empty chunk stayed missing
    expected = DATA.copy()
    expected[:10, :10] = 0
    np.testing.assert_array_equal(await (await asyncarr.open_array(dest)).read(), expected)


async def test_a_new_compressor_decodes_and_encodes_every_chunk() -> None:
    source, dest = await _source(zarr_format=3), MemoryStore()
    report = await copy_array(source, dest, compressor="zlib")
    assert not report.as_stored
    assert set((await _values(dest)).values()).isdisjoint((await _values(source)).values())
    expected = DATA.copy()
    expected[:10, :10] = 0
    np.testing.assert_array_equal(await (await asyncarr.open_array(dest)).read(), expected)


async def test_a_stored_object_larger_than_any_chunk_can_be_is_refused() -> None:
    """A broken or hostile source cannot make the copy read an endless value."""
    from asyncarr.errors import ValueTooLargeError

    source, dest = await _source(zarr_format=3), MemoryStore()
    await source.set("c/1/1", b"x" * (2 << 20))  # 400 bytes decoded: no codec makes 2 MiB
    with pytest.raises(ValueTooLargeError) as caught:
        await copy_array(source, dest)
    assert caught.value.key == "c/1/1"
    assert [k async for k in dest.list()] == []  # nothing left behind
