"""The kernel's writes: chunks cut from the value (edge chunks padded with the fill
value), the all-fill test, and encoded frames that decode to exactly the Python path's
chunks - byte for byte where the kernel links the same library version as the Python
codec (zlib for gzip and numcodecs zlib here; zstd, blosc and lz4 where versions match)."""

from __future__ import annotations

import asyncio
import itertools
import os
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numcodecs
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from asyncarr import kernel as ak
from asyncarr._types import ChunkSpec
from asyncarr.codecs import (
    BloscCodec,
    BytesCodec,
    GzipCodec,
    TransposeCodec,
    ZstdCodec,
    numcodecs_adapter,
    numcodecs_from_v2_config,
)
from asyncarr.core._pipeline import CodecPipeline
from asyncarr.core._write import chunk_from_value
from asyncarr.errors import ReadOnlyStoreError, StoreError
from asyncarr.stores import LocalStore

pytestmark = pytest.mark.usefixtures("kernel")

SETTINGS = settings(
    max_examples=120,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)


def _same_library(name: str) -> bool:
    """Whether the kernel links the same version of ``name`` as the Python path uses."""
    mine = ak.kernel_versions().get(name)
    if name == "zlib":
        return mine == zlib.ZLIB_RUNTIME_VERSION
    if name == "blosc":
        return mine == numcodecs.blosc.VERSION_STRING
    if name == "lz4":
        return mine == numcodecs.lz4.VERSION_STRING
    return False  # zstd: numcodecs and zstandard bundle their own, of unreported versions


def _codecs(draw: Any, itemsize: int) -> tuple[list[Any], str | None]:
    """A compressor and the library whose version decides byte identity (``None``: the
    Python path's output is not reproducible, e.g. it depends on CPython's buffering)."""
    kind = draw(st.sampled_from(["raw", "zstd", "blosc", "gzip", "nblosc", "lz4", "zlib"]))
    if kind == "raw":
        return [], "raw"
    if kind == "zstd":
        return [ZstdCodec(level=draw(st.integers(1, 9)), checksum=draw(st.booleans()))], "zstd"
    if kind == "blosc":
        codec = BloscCodec(
            cname=draw(st.sampled_from(["lz4", "blosclz", "zlib", "zstd"])),
            clevel=draw(st.integers(0, 9)),
            shuffle=draw(st.sampled_from(["noshuffle", "shuffle", "bitshuffle"])),
            typesize=itemsize,
        )
        return [codec], "blosc"
    if kind == "nblosc":
        config = {
            "id": "blosc",
            "cname": "lz4",
            "clevel": 5,
            "shuffle": draw(st.sampled_from([-1, 0, 1, 2])),
        }
        return [numcodecs_from_v2_config(config)], "blosc"
    if kind == "gzip":
        level = draw(st.integers(0, 9))
        return [GzipCodec(level=level)], "zlib" if level else None
    if kind == "lz4":
        return [numcodecs_adapter("lz4", {"acceleration": draw(st.integers(1, 4))})], "lz4"
    level = draw(st.integers(0, 9))
    return [numcodecs_adapter("zlib", {"level": level})], "zlib" if level else None


@st.composite
def write_cases(draw: Any) -> dict[str, Any]:
    dtype = np.dtype(draw(st.sampled_from(["|b1", "<i2", ">u4", "<f4", ">f8", "<f2", "<c8"])))
    ndim = draw(st.integers(1, 3))
    chunks = tuple(draw(st.lists(st.integers(1, 9), min_size=ndim, max_size=ndim)))
    shape = tuple(c * draw(st.integers(1, 3)) - draw(st.integers(0, c - 1)) for c in chunks)
    compressor, library = _codecs(draw, dtype.itemsize)
    fill: Any = draw(st.sampled_from([0, 1, "nan"])) if dtype.kind in "fc" else 0
    return {
        "dtype": dtype,
        "chunks": chunks,
        "shape": shape,
        "order": draw(st.sampled_from(["C", "F"])),
        "transpose": draw(st.permutations(range(ndim)))
        if ndim > 1 and draw(st.booleans())
        else None,
        "endian": draw(st.sampled_from(["little", "big"])),
        "fill": np.asarray(float("nan") if fill == "nan" else fill).astype(dtype)[()],
        "compressor": compressor,
        "library": library,
        "value_kind": draw(st.sampled_from(["plain", "strided", "fortran", "swapped"])),
        "empties": draw(st.sampled_from(["none", "fill", "negzero", "nan"])),
        "write_empty": draw(st.booleans()),
        "workers": draw(st.integers(1, 3)),
    }


def _value(case: dict[str, Any]) -> np.ndarray:
    dtype, shape = case["dtype"], case["shape"]
    rng = np.random.default_rng(len(shape) * 7 + sum(shape))
    if dtype.kind == "b":
        base = rng.random(shape) > 0.5
    else:
        base = (np.cumsum(rng.integers(-2, 3, size=shape), axis=-1) % 50).astype(dtype)
    first = tuple(slice(0, c) for c in case["chunks"])  # make the first chunk "empty"
    if case["empties"] == "fill":
        base[first] = case["fill"]
    elif case["empties"] == "negzero" and dtype.kind in "fc":
        base[first] = -0.0
    elif case["empties"] == "nan" and dtype.kind in "fc":
        base[first] = np.nan
    kind = case["value_kind"]
    if kind == "strided":
        wide = np.zeros(tuple(2 * n for n in shape), dtype)
        view = wide[tuple(slice(None, None, 2) for _ in shape)]
        view[...] = base
        return view
    if kind == "fortran":
        return np.asfortranarray(base)
    if kind == "swapped" and dtype.itemsize > 1:
        swapped = base.astype(dtype.newbyteorder())
        return swapped
    return base


def _selections(shape: tuple[int, ...], chunks: tuple[int, ...]) -> list[tuple[slice, ...]]:
    grids = [range(-(-n // c)) for n, c in zip(shape, chunks, strict=True)]
    return [
        tuple(
            slice(k * c, min(k * c + c, n), 1)
            for k, c, n in zip(coords, chunks, shape, strict=True)
        )
        for coords in itertools.product(*grids)
    ]


@SETTINGS
@given(case=write_cases())
def test_encoded_chunks_decode_to_the_python_paths(
    case: dict[str, Any], make_chain: Callable[..., Any]
) -> None:
    spec = ChunkSpec(case["chunks"], case["dtype"], case["fill"], order=case["order"])
    codecs: list[Any] = [TransposeCodec(order=case["transpose"])] if case["transpose"] else []
    codecs += [BytesCodec(endian=case["endian"]), *case["compressor"]]
    pipeline, chain = make_chain(codecs, spec)
    value = _value(case)
    if value.dtype != case["dtype"]:  # the kernel takes the array's own dtype
        with pytest.raises(Exception, match="this chain is for"):
            ak.encode_chunks(chain, value, [])
        value = value.astype(case["dtype"])
    sels = _selections(case["shape"], case["chunks"])
    encoded = ak.encode_chunks(
        chain, value, sels, workers=case["workers"], write_empty=case["write_empty"]
    )
    identical = case["library"] == "raw" or (
        case["library"] is not None and _same_library(case["library"])
    )
    for sel, mine in zip(sels, encoded, strict=True):
        chunk = chunk_from_value(pipeline, value, sel)
        empty = not case["write_empty"] and pipeline.is_fill(chunk)
        assert (mine is None) == empty
        if mine is None:
            continue
        decoded = pipeline.decode(mine)
        expected = np.ascontiguousarray(chunk)
        assert decoded.tobytes() == expected.astype(decoded.dtype).tobytes()
        if identical:
            assert mine == pipeline.encode(chunk)


@pytest.mark.parametrize("level", [1, 5, 9])
@pytest.mark.parametrize("codec", ["gzip", "zlib"])
def test_deflate_is_byte_identical(codec: str, level: int, make_chain: Callable[..., Any]) -> None:
    if not _same_library("zlib"):
        pytest.skip("the kernel links another zlib than CPython")
    comp = (
        GzipCodec(level=level) if codec == "gzip" else numcodecs_adapter("zlib", {"level": level})
    )
    spec = ChunkSpec((120, 100), np.dtype("<f8"), 0.0)
    pipeline, chain = make_chain([BytesCodec(), comp], spec)
    value = np.cumsum(np.random.default_rng(3).standard_normal((120, 100)), axis=0).round(2)
    assert ak.encode_chunks(chain, value, [None]) == [pipeline.encode(value)]


def _pipeline(spec: ChunkSpec, *codecs: Any) -> tuple[CodecPipeline, ak.KernelChain]:
    pipeline = CodecPipeline([BytesCodec(), *codecs], spec)
    chain = ak.chain_for(pipeline.codecs, pipeline.spec)
    assert isinstance(chain, ak.KernelChain)
    return pipeline, chain


def _items(shape: tuple[int, ...], chunks: tuple[int, ...]) -> list[tuple[str, tuple[slice, ...]]]:
    items = []
    for sel in _selections(shape, chunks):
        coords = [str(s.start // c) for s, c in zip(sel, chunks, strict=True)]
        items.append(("a/c/" + "/".join(coords), sel))
    return items


def test_write_files_that_local_store_reads(tmp_path: Path) -> None:
    store = LocalStore(tmp_path / "root")  # missing: made by the first write
    spec = ChunkSpec((8, 8), np.dtype("<i4"), 3)
    pipeline, chain = _pipeline(spec, ZstdCodec(level=1))
    value = np.arange(20 * 19, dtype="<i4").reshape(20, 19)
    value[8:16, 8:16] = 3  # all fill: not stored
    items = _items(value.shape, (8, 8))
    outcome = ak.write_chunks(chain, value, items, files=ak.LocalFiles.of(store), workers=3)
    assert (outcome.stored, outcome.removed) == (8, 1)
    for key, sel in items:
        data = asyncio.run(store.get(key))
        if key == "a/c/1/1":
            assert data is None
            continue
        assert data is not None
        np.testing.assert_array_equal(pipeline.decode(data), chunk_from_value(pipeline, value, sel))
    # overwriting: every key exists now (the exchange path), and an emptied chunk goes
    value2 = value + 1
    value2[:8, :8] = 3
    outcome = ak.write_chunks(chain, value2, items, files=ak.LocalFiles.of(store), workers=2)
    assert outcome.removed == 1
    assert asyncio.run(store.get("a/c/0/0")) is None
    assert not os.path.exists(tmp_path / "root" / "a" / "c" / "0" / "0")
    got = asyncio.run(store.get("a/c/1/1"))
    assert got is not None
    np.testing.assert_array_equal(pipeline.decode(got), value2[8:16, 8:16])
    leftovers = [n for _, _, names in os.walk(tmp_path) for n in names if "asyncarr" in n]
    assert leftovers == []


def test_an_emptied_directory_is_pruned(tmp_path: Path) -> None:
    store = LocalStore(tmp_path)
    spec = ChunkSpec((4,), np.dtype("u1"), 0)
    _, chain = _pipeline(spec)
    files = ak.LocalFiles.of(store)
    ak.write_chunks(chain, np.ones(4, "u1"), [("x/y/z/0", None)], files=files)
    assert (tmp_path / "x" / "y" / "z" / "0").exists()
    outcome = ak.write_chunks(chain, np.zeros(4, "u1"), [("x/y/z/0", None)], files=files)
    assert outcome.removed == 1
    assert not (tmp_path / "x").exists()


def test_write_empty_chunks_stores_fill_chunks(tmp_path: Path) -> None:
    store = LocalStore(tmp_path)
    spec = ChunkSpec((4,), np.dtype("<f4"), np.float32("nan"))
    pipeline, chain = _pipeline(spec, GzipCodec(level=1))
    files = ak.LocalFiles.of(store)
    nans = np.full(4, np.nan, "<f4")
    assert ak.write_chunks(chain, nans, [("k", None)], files=files).removed == 1
    outcome = ak.write_chunks(chain, nans, [("k", None)], files=files, write_empty=True)
    assert outcome.stored == 1
    data = asyncio.run(store.get("k"))
    assert data is not None and np.isnan(pipeline.decode(data)).all()


def test_writes_with_fsync(tmp_path: Path) -> None:
    store = LocalStore(tmp_path, fsync=True)
    _, chain = _pipeline(ChunkSpec((4,), np.dtype("<u2"), 0), ZstdCodec())
    outcome = ak.write_chunks(
        chain, np.arange(1, 9, dtype="<u2"), _items((8,), (4,)), files=ak.LocalFiles.of(store)
    )
    assert outcome.stored == 2 and outcome.bytes_written > 0


def test_read_only_and_missing_roots_are_refused(tmp_path: Path) -> None:
    _, chain = _pipeline(ChunkSpec((4,), np.dtype("<u2"), 0))
    value = np.arange(1, 5, dtype="<u2")
    with pytest.raises(ReadOnlyStoreError):
        ak.write_chunks(
            chain,
            value,
            [("k", None)],
            files=ak.LocalFiles.of(LocalStore(tmp_path, read_only=True)),
        )
    gone = LocalStore(tmp_path / "missing", auto_mkdir=False)
    with pytest.raises(StoreError, match="auto_mkdir=False"):
        ak.write_chunks(chain, value, [("k", None)], files=ak.LocalFiles.of(gone))
    # reads of a root that does not exist: every chunk is missing
    out = np.ones(8, "<u2")
    outcome = ak.read_chunks(
        chain,
        out,
        [("k", None, (slice(0, 4),)), ("j", None, (slice(4, 8),))],
        files=ak.LocalFiles.of(gone),
    )
    assert outcome.missing == 2 and (out == 0).all()


def test_python_and_kernel_writers_interleave(tmp_path: Path) -> None:
    """Values the kernel writes carry versions LocalStore's conditional writes honour."""
    store = LocalStore(tmp_path)
    pipeline, chain = _pipeline(ChunkSpec((4,), np.dtype("<i8"), 0), ZstdCodec())
    files = ak.LocalFiles.of(store)
    ak.write_chunks(chain, np.arange(1, 5, dtype="<i8"), [("v", None)], files=files)
    first = asyncio.run(store.get_versioned("v"))
    assert first is not None
    ak.write_chunks(chain, np.arange(5, 9, dtype="<i8"), [("v", None)], files=files)
    second = asyncio.run(store.get_versioned("v"))
    assert second is not None and second.version != first.version
    np.testing.assert_array_equal(pipeline.decode(second.data), np.arange(5, 9))
    asyncio.run(store.set_if_version("v", pipeline.encode(np.zeros(4, "<i8") + 9), second.version))
    out = np.zeros(4, "<i8")
    ak.read_chunks(chain, out, [("v", None, None)], files=files)
    assert (out == 9).all()
