"""Property-based tests for the data types: after random writes of random values, every
read (slices with steps, orthogonal index arrays) equals numpy on a mirror array, for
text, bytes, dates and structs, v2 and v3, sharded or not, fill values given or not,
empty chunks written or not."""

from __future__ import annotations

import asyncio
import os
import tempfile
from typing import Any

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import asyncarr
from asyncarr.dtypes import data_type_from_user
from asyncarr.stores import LocalStore, MemoryStore
from asyncarr.testing import assert_same_values, sample_values

TYPES: list[tuple[Any, tuple[Any, ...], tuple[int, ...]]] = [
    # dtype, fill values to draw from (None: the default), formats
    (str, (None, "", "n/a"), (2, 3)),
    (bytes, (None, b"", b"\x00\xff"), (2, 3)),
    ("<U5", (None, "ab"), (2, 3)),
    (">U3", (None, "é"), (2,)),
    ("S4", (None, b"xy"), (2, 3)),
    ("V3", (None, b"\x01\x02\x03"), (2, 3)),
    ("M8[s]", (None, 0), (2, 3)),
    (">m8[10ms]", (None, 7), (2, 3)),
    ([("a", "<i2"), ("b", "<f4")], (None, (1, 2.5)), (2, 3)),
    ([("t", "<M8[D]"), ("p", [("x", "u1"), ("y", "S2")])], (None,), (2, 3)),
    ([("a", ">i4"), ("b", "<f8", (2,))], (None,), (2,)),
]


@st.composite
def array_setup(draw: st.DrawFn) -> dict[str, Any]:
    dtype, fills, formats = draw(st.sampled_from(TYPES))
    ndim = draw(st.integers(1, 2))
    shape = tuple(draw(st.integers(0, 9)) for _ in range(ndim))
    chunks = tuple(draw(st.integers(1, 4)) for _ in range(ndim))
    fmt = draw(st.sampled_from(formats))
    setup: dict[str, Any] = {
        "shape": shape,
        "chunks": chunks,
        "dtype": np.dtype(dtype) if isinstance(dtype, list) else dtype,
        "zarr_format": fmt,
        "fill_value": draw(st.sampled_from(fills)),
        "compressor": draw(st.sampled_from([None, "zstd", "blosc", "gzip"])),
    }
    if fmt == 3 and draw(st.booleans()):
        setup["shards"] = tuple(c * draw(st.integers(1, 3)) for c in chunks)
    if fmt == 2:
        setup["order"] = draw(st.sampled_from(["C", "F"]))
    return setup


def _dim(draw: st.DrawFn, n: int, orthogonal: bool) -> Any:
    if orthogonal and n and draw(st.booleans()):
        return np.array(draw(st.lists(st.integers(-n, n - 1), max_size=5)), dtype=np.intp)
    if n and draw(st.integers(0, 4)) == 0:
        return draw(st.integers(-n, n - 1))
    start = draw(st.none() | st.integers(-n - 1, n + 1))
    stop = draw(st.none() | st.integers(-n - 1, n + 1))
    step = draw(st.none() | st.integers(1, 3))
    return slice(start, stop, step)


def _oindex(arr: np.ndarray, sel: tuple[Any, ...]) -> Any:
    out = arr
    for axis in reversed(range(len(sel))):
        out = out[(slice(None),) * axis + (sel[axis],)]
    return out


EXAMPLES = int(os.environ.get("ASYNCARR_PROPERTY_EXAMPLES", "60"))


@settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(setup=array_setup(), data=st.data(), seed=st.integers(0, 2**16))
def test_random_typed_writes_then_reads_match_numpy(
    setup: dict[str, Any], data: st.DataObject, seed: int
) -> None:
    on_disk = data.draw(st.booleans())  # local files: worker threads decode and encode
    write_empty = data.draw(st.booleans())
    shape = setup["shape"]
    writes = [tuple(_dim(data.draw, n, False) for n in shape) for _ in range(3)]
    reads = [tuple(_dim(data.draw, n, True) for n in shape) for _ in range(3)]

    async def scenario() -> None:
        store = LocalStore(tmp) if on_disk else MemoryStore()
        arr = await asyncarr.create_array(store, write_empty_chunks=write_empty, **setup)
        data_type = arr.metadata.data_type
        fill = data_type.default_fill() if arr.fill_value is None else arr.fill_value
        mirror = np.full(shape, fill, dtype=arr.dtype)
        for i, sel in enumerate(writes):
            target = mirror[sel]
            values = sample_values(data_type, np.shape(target), seed=seed + i).astype(arr.dtype)
            await arr.write(values, sel)
            mirror[sel] = values[()] if values.ndim == 0 else values  # (an object, not a 0-d array)
        reopened = await asyncarr.open_array(store)
        assert_same_values(await reopened.read(), mirror)
        for sel in reads:
            want = np.asarray(_oindex(mirror, sel), dtype=mirror.dtype)
            assert_same_values(await reopened.read(sel, orthogonal=True), want)
        if not write_empty:  # chunks equal to the fill value are not stored
            filled = await asyncarr.create_array(MemoryStore(), **setup)
            await filled.write(np.full(shape, fill, dtype=arr.dtype))
            assert await filled.nchunks_initialized() == 0

    with tempfile.TemporaryDirectory() as tmp:
        asyncio.run(scenario())


def test_every_drawn_type_resolves() -> None:
    for dtype, _fills, _formats in TYPES:
        assert data_type_from_user(np.dtype(dtype) if isinstance(dtype, list) else dtype)
