"""Property-based tests: after random writes, every read equals numpy on a mirror array
(regular and rectilinear chunk grids, sharded or not)."""

from __future__ import annotations

import asyncio
import math
import os
import tempfile
from typing import Any

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import asyncarr
from asyncarr.stores import LocalStore, MemoryStore

DTYPES = [
    "bool",
    "int8",
    "uint16",
    "int32",
    "int64",
    "float32",
    "float64",
    "complex64",
    ">i4",
    ">f8",
]
V3_CHAINS: list[Any] = [
    None,
    [
        {"name": "bytes", "configuration": {"endian": "big"}},
        {"name": "gzip", "configuration": {"level": 1}},
    ],
    [{"name": "bytes", "configuration": {"endian": "little"}}, {"name": "crc32c"}],
    "blosc",
    "zstd",
    "lz4",
]


@st.composite
def array_setup(draw: st.DrawFn) -> dict[str, Any]:
    ndim = draw(st.integers(1, 3))
    shape = tuple(draw(st.integers(0, 12)) for _ in range(ndim))
    chunks = tuple(draw(st.integers(1, 6)) for _ in range(ndim))
    zarr_format = draw(st.sampled_from([2, 3]))
    setup: dict[str, Any] = {
        "shape": shape,
        "chunks": chunks,
        "dtype": draw(st.sampled_from(DTYPES)),
        "zarr_format": zarr_format,
    }
    if zarr_format == 3:
        chain = draw(st.sampled_from(V3_CHAINS))
        if isinstance(chain, list):
            setup["codecs"] = chain
        else:
            setup["compressor"] = chain
        rectilinear = draw(st.booleans())
        if draw(st.booleans()):
            shards = [c * draw(st.integers(1, 3)) for c in chunks]
            if rectilinear:  # shards of differing lengths, each whole inner chunks
                shards = [
                    draw(_edges(n, c)) if n and n % c == 0 else s
                    for n, c, s in zip(shape, chunks, shards, strict=True)
                ]
            setup["shards"] = shards
        elif rectilinear:  # chunks of differing lengths on some axes
            setup["chunks"] = [
                draw(_edges(n, 1)) if draw(st.booleans()) else c
                for n, c in zip(shape, chunks, strict=True)
            ]
    else:
        setup["compressor"] = draw(st.sampled_from([None, "zlib", "blosc", "zstd"]))
        setup["order"] = draw(st.sampled_from(["C", "F"]))
    return setup


@st.composite
def _edges(draw: st.DrawFn, n: int, unit: int) -> list[int]:
    """Random edge lengths, multiples of ``unit``, summing to ``n`` (any, for ``n == 0``)."""
    if n == 0:
        return draw(st.lists(st.integers(1, 5), min_size=1, max_size=3))
    edges: list[int] = []
    while sum(edges) < n:
        edges.append(unit * draw(st.integers(1, max(1, (n - sum(edges)) // unit))))
    return edges


def _dim_selection(draw: st.DrawFn, n: int, orthogonal: bool) -> Any:
    kind = draw(
        st.sampled_from(["slice", "int", "array", "mask"] if orthogonal else ["slice", "int"])
    )
    if kind == "int" and n > 0:
        return draw(st.integers(-n, n - 1))
    if kind == "array" and n > 0:
        return np.array(draw(st.lists(st.integers(-n, n - 1), max_size=6)), dtype=np.intp)
    if kind == "mask":
        return np.array(draw(st.lists(st.booleans(), min_size=n, max_size=n)), dtype=bool)
    start = draw(st.none() | st.integers(-n - 2, n + 2))
    stop = draw(st.none() | st.integers(-n - 2, n + 2))
    step = draw(st.none() | st.integers(1, 4) | st.integers(-4, -1))
    return slice(start, stop, step)


@st.composite
def selection(draw: st.DrawFn, shape: tuple[int, ...], orthogonal: bool) -> tuple[Any, ...]:
    return tuple(_dim_selection(draw, n, orthogonal) for n in shape)


def _values(rng: np.random.Generator, shape: tuple[int, ...], dtype: np.dtype[Any]) -> np.ndarray:
    if dtype.kind == "b":
        return rng.random(shape) > 0.5
    if dtype.kind == "c":
        return (rng.integers(-50, 50, shape) + 1j * rng.integers(-50, 50, shape)).astype(dtype)
    return rng.integers(0, 100, shape).astype(dtype)


def _oindex(arr: np.ndarray, sel: tuple[Any, ...]) -> Any:
    """numpy's result for an orthogonal selection."""
    out = arr
    for axis in reversed(range(len(sel))):
        s = sel[axis]
        if isinstance(s, np.ndarray) and s.dtype == bool:
            s = np.flatnonzero(s)
        out = out[(slice(None),) * axis + (s,)]
    return out


# ASYNCARR_PROPERTY_EXAMPLES=2000 for a soak run; CI keeps it short.
EXAMPLES = int(os.environ.get("ASYNCARR_PROPERTY_EXAMPLES", "60"))


@settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(setup=array_setup(), data=st.data(), seed=st.integers(0, 2**16))
def test_random_writes_then_reads_match_numpy(
    setup: dict[str, Any], data: st.DataObject, seed: int
) -> None:
    rng = np.random.default_rng(seed)
    dtype = np.dtype(setup["dtype"])
    mirror = np.zeros(setup["shape"], dtype=dtype)
    orth = data.draw(st.booleans())
    on_disk = data.draw(st.booleans())  # the local store decodes/encodes in worker threads
    writes = [data.draw(selection(setup["shape"], orth)) for _ in range(3)]
    reads = [data.draw(selection(setup["shape"], orth)) for _ in range(3)]

    async def scenario() -> None:
        store = LocalStore(tmp) if on_disk else MemoryStore()
        arr = await asyncarr.create_array(store, **setup)
        for sel in writes:
            expected_shape = np.shape(_oindex(mirror, sel) if orth else mirror[sel])
            value = _values(rng, expected_shape, dtype)
            await arr.write(value, sel, orthogonal=orth)
            if orth:
                idx = tuple(
                    np.flatnonzero(s) if isinstance(s, np.ndarray) and s.dtype == bool else s
                    for s in sel
                )
                if any(isinstance(s, np.ndarray) for s in idx):
                    full = tuple(
                        np.arange(n)[s] if not isinstance(s, np.ndarray) else s
                        for s, n in zip(idx, mirror.shape)
                    )
                    full = tuple(np.atleast_1d(f) for f in full)
                    mirror[np.ix_(*full)] = value.reshape([len(f) for f in full])
                else:
                    mirror[idx] = value
            else:
                mirror[sel] = value
        np.testing.assert_array_equal(await arr.read(), mirror)
        for sel in reads:
            got = await arr.read(sel, orthogonal=orth)
            want = _oindex(mirror, sel) if orth else mirror[sel]
            np.testing.assert_array_equal(got, want)

    with tempfile.TemporaryDirectory() as tmp:
        asyncio.run(scenario())


@st.composite
def point_selection(draw: st.DrawFn, shape: tuple[int, ...]) -> Any:
    """A vectorized selection: integer arrays per dimension that broadcast together
    (negative indices, repeats and scalars included), or a boolean mask of the array's
    shape."""
    if draw(st.booleans()) or 0 in shape:
        return np.array(
            draw(st.lists(st.booleans(), min_size=math.prod(shape), max_size=math.prod(shape))),
            dtype=bool,
        ).reshape(shape)
    points = draw(st.sampled_from([(), (5,), (2, 3), (1,), (0,)]))
    parts: list[Any] = []
    for n in shape:
        if draw(st.integers(0, 3)) == 0:
            parts.append(draw(st.integers(-n, n - 1)))
            continue
        # each part broadcasts: the points' shape, or 1 along some of its axes
        part_shape = tuple(1 if draw(st.booleans()) else k for k in points)
        flat = draw(
            st.lists(
                st.integers(-n, n - 1),
                min_size=math.prod(part_shape),
                max_size=math.prod(part_shape),
            )
        )
        parts.append(np.array(flat, dtype=np.int64).reshape(part_shape))
    return tuple(parts)


@settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(setup=array_setup(), data=st.data(), seed=st.integers(0, 2**16))
def test_point_writes_then_point_reads_match_numpy(
    setup: dict[str, Any], data: st.DataObject, seed: int
) -> None:
    """``vindex`` reads and writes (repeated points: the last value wins) equal numpy's
    advanced indexing, over every chunk grid and codec chain the other test draws."""
    rng = np.random.default_rng(seed)
    dtype = np.dtype(setup["dtype"])
    mirror = np.zeros(setup["shape"], dtype=dtype)
    writes = [data.draw(point_selection(setup["shape"])) for _ in range(2)]
    reads = [data.draw(point_selection(setup["shape"])) for _ in range(2)]
    on_disk = data.draw(st.booleans())

    async def scenario() -> None:
        store = LocalStore(tmp) if on_disk else MemoryStore()
        arr = await asyncarr.create_array(store, **setup)
        for sel in writes:
            value = _values(rng, mirror[sel].shape, dtype)
            await arr.vindex.set(sel, value)
            mirror[sel] = value
        np.testing.assert_array_equal(await arr.read(), mirror)
        for sel in reads:
            np.testing.assert_array_equal(await arr.vindex[sel], mirror[sel])

    with tempfile.TemporaryDirectory() as tmp:
        asyncio.run(scenario())
