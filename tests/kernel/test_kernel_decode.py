"""The kernel's reads agree bit for bit with the Python path (numcodecs / zstandard
decoders and numpy copies): on data written by zarr-python 2 and 3 and tensorstore, and
on random chunks, dtypes, byte orders, layouts, codecs, selections and strided outputs."""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numcodecs
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import asyncarr
from asyncarr import kernel as ak
from asyncarr._types import ChunkSpec
from asyncarr.codecs import (
    BloscCodec,
    BytesCodec,
    Crc32cCodec,
    GzipCodec,
    TransposeCodec,
    ZstdCodec,
    numcodecs_adapter,
    numcodecs_from_v2_config,
)
from asyncarr.core._indexing import project_slice
from asyncarr.core._sharding import MISSING
from asyncarr.stores import LocalStore

pytestmark = pytest.mark.usefixtures("kernel")

zarr = pytest.importorskip("zarr", reason="zarr-python is a test dependency")


def _grid_items(
    ctx: Any, shape: tuple[int, ...], chunks: tuple[int, ...], sel: tuple[slice, ...] | None = None
) -> Iterator[tuple[str, tuple[slice, ...], tuple[slice, ...]]]:
    """(key, chunk_sel, out_sel) for every chunk that ``sel`` (unit or larger steps) touches."""
    sel = sel or tuple(slice(0, n, 1) for n in shape)
    per_dim = [project_slice(s, n, c) for s, n, c in zip(sel, shape, chunks, strict=True)]
    for combo in itertools.product(*per_dim):
        coords = tuple(part[0] for part in combo)
        yield ctx.chunk_key(coords), tuple(p[1] for p in combo), tuple(p[2] for p in combo)


async def _stored(store: LocalStore, key: str) -> bytes | None:
    return await store.get(key)


async def _check_array(
    root: Path, path: str, expected: np.ndarray, reference_read: Callable[..., None]
) -> None:
    """Read every chunk of the array at ``root/path`` through the kernel, from the files
    and from in-memory buffers, and compare with ``expected`` and the Python path."""
    arr = await asyncarr.open_array(str(root), path=path)
    ctx = arr._ctx
    pipeline = ctx.pipeline
    chain = ak.chain_for(pipeline.codecs, pipeline.spec)
    assert isinstance(chain, ak.KernelChain), chain
    store = LocalStore(root)
    files = ak.LocalFiles.of(store)
    items = list(_grid_items(ctx, arr.shape, arr.chunks))
    out = np.empty(arr.shape, arr.dtype)
    outcome = ak.read_chunks(chain, out, items, files=files, workers=2)
    assert outcome.decoded + outcome.missing == len(items)
    np.testing.assert_array_equal(out, expected)
    reference = np.empty_like(out)
    buffers = [await _stored(store, key) for key, _, _ in items]
    for (_key, cs, os_), data in zip(items, buffers, strict=True):
        reference_read(pipeline, data, cs, reference, os_)
    assert out.tobytes() == reference.tobytes()
    # the same from memory, into a strided (every other element) output
    wide = np.zeros(tuple(2 * n for n in arr.shape), arr.dtype)
    strided = wide[tuple(slice(None, None, 2) for _ in arr.shape)]
    mem_items = [(data, cs, os_) for data, (_k, cs, os_) in zip(buffers, items, strict=True)]
    ak.read_chunks(chain, strided, mem_items, labels=[k for k, _, _ in items], workers=3)
    assert strided.tobytes() == reference.tobytes()


@pytest.mark.parametrize("name", ["raw", "gzip", "zlib", "blosc"])
async def test_zarr_python_2_corpus(
    name: str, reference_read: Callable[..., None], zarr_implementations: Path
) -> None:
    expected = np.load(zarr_implementations / "expected.npy")
    await _check_array(zarr_implementations / "zarr.zr", name, expected, reference_read)


def _data(dtype: str, shape: tuple[int, ...]) -> np.ndarray:
    rng = np.random.default_rng(abs(hash((dtype, shape))) % 2**32)
    dt = np.dtype(dtype)
    if dt.kind == "b":
        return rng.random(shape) > 0.5
    if dt.kind == "c":
        return (rng.standard_normal(shape) + 1j * rng.standard_normal(shape)).astype(dt)
    if dt.kind == "f":
        values = np.cumsum(rng.standard_normal(shape), axis=-1).astype(dt)
        values.flat[::7] = np.nan
        values.flat[1::11] = -0.0
        return values
    info = np.iinfo(dt)
    return rng.integers(max(info.min, -500), min(info.max, 500), size=shape).astype(dt)


V2_COMPRESSORS: list[Any] = [
    None,
    {"id": "zlib", "level": 1},
    {"id": "gzip", "level": 5},
    {"id": "zstd", "level": 5},
    {"id": "zstd", "level": 3, "checksum": True},
    {"id": "lz4", "acceleration": 1},
    *[
        {"id": "blosc", "cname": cname, "clevel": 5, "shuffle": shuffle, "blocksize": 0}
        for cname in ("lz4", "lz4hc", "blosclz", "zstd", "zlib")
        for shuffle in (-1, 0, 1, 2)
    ],
]


@pytest.mark.parametrize(
    "compressor",
    V2_COMPRESSORS,
    ids=lambda c: "none" if c is None else "-".join(str(v) for v in c.values()),
)
async def test_zarr_python_v2(
    tmp_path: Path, compressor: Any, reference_read: Callable[..., None]
) -> None:
    for dtype, order in (("<f8", "C"), (">i4", "F"), ("<c8", "C"), ("u1", "F")):
        data = _data(dtype, (23, 17))
        path = f"{dtype.strip('<>|')}{order}"
        z = zarr.create_array(
            str(tmp_path / path),
            shape=data.shape,
            chunks=(10, 6),
            dtype=dtype,
            zarr_format=2,
            order=order,
            fill_value=0,
            compressors=numcodecs.get_codec(compressor) if compressor else None,
        )
        z[:] = data
        z[:10, :6] = 0  # a missing (all-fill) chunk
        data[:10, :6] = 0
        await _check_array(tmp_path, path, data, reference_read)


def _v3_cases() -> dict[str, dict[str, Any]]:
    zc = zarr.codecs
    return {
        "bytes": {"serializer": zc.BytesCodec()},
        "big-zstd": {
            "serializer": zc.BytesCodec(endian="big"),
            "compressors": [zc.ZstdCodec(level=3)],
        },
        "zstd-checksum": {"compressors": [zc.ZstdCodec(level=1, checksum=True)]},
        "transpose-gzip": {
            "filters": [zc.TransposeCodec(order=(1, 0))],
            "compressors": [zc.GzipCodec(level=1)],
        },
        "blosc-bitshuffle": {
            "compressors": [zc.BloscCodec(cname="zstd", clevel=3, shuffle="bitshuffle")]
        },
        "blosc-lz4-shuffle": {
            "compressors": [zc.BloscCodec(cname="lz4", clevel=5, shuffle="shuffle")]
        },
    }


@pytest.mark.parametrize(
    "case",
    [
        "bytes",
        "big-zstd",
        "zstd-checksum",
        "transpose-gzip",
        "blosc-bitshuffle",
        "blosc-lz4-shuffle",
    ],
)
async def test_zarr_python_v3(
    tmp_path: Path, case: str, reference_read: Callable[..., None]
) -> None:
    for dtype in ("float32", "int16", "complex128"):
        data = _data(dtype, (25, 19))
        z = zarr.create_array(
            str(tmp_path / dtype),
            shape=data.shape,
            chunks=(8, 7),
            dtype=dtype,
            fill_value=0,
            **_v3_cases()[case],
        )
        z[:] = data
        await _check_array(tmp_path, dtype, data, reference_read)


@pytest.mark.parametrize("compressor", [None, "zstd", "gzip"])
async def test_zarr_python_shard_ranges(
    tmp_path: Path, compressor: str | None, reference_read: Callable[..., None]
) -> None:
    """Inner chunks read as byte ranges of their shard, from the file and from memory."""
    data = _data("int16", (40, 30))
    data[:5, :5] = 0  # an inner chunk left out of its shard
    compressors = {
        None: None,
        "zstd": zarr.codecs.ZstdCodec(level=1),
        "gzip": zarr.codecs.GzipCodec(level=2),
    }[compressor]
    z = zarr.create_array(
        str(tmp_path / "a"),
        shape=data.shape,
        chunks=(5, 5),
        shards=(20, 15),
        dtype="int16",
        compressors=compressors,
    )
    z[:] = data
    arr = await asyncarr.open_array(str(tmp_path), path="a")
    codec = arr._ctx.partial_shards
    assert codec is not None
    inner = codec.inner
    chain = ak.chain_for(inner.codecs, inner.spec)
    assert isinstance(chain, ak.KernelChain)
    store = LocalStore(tmp_path)
    file_items: list[Any] = []
    mem_items: list[Any] = []
    reference = np.empty(data.shape, data.dtype)
    for sr, sc in itertools.product(range(2), range(2)):
        key = arr._ctx.chunk_key((sr, sc))
        whole = await store.get(key)
        assert whole is not None
        raw_index = await store.get(key, codec.index_range())
        index = codec.decode_index(raw_index, key=key)
        for ir, ic in itertools.product(range(4), range(3)):
            off, size = (int(v) for v in index[ir, ic])
            out_sel = (
                slice(sr * 20 + ir * 5, sr * 20 + ir * 5 + 5, 1),
                slice(sc * 15 + ic * 5, sc * 15 + ic * 5 + 5, 1),
            )
            if off == int(MISSING):
                file_items.append((None, None, out_sel))
                mem_items.append((None, None, out_sel))
                reference_read(inner, None, (), reference, out_sel)
                continue
            file_items.append(((key, off, size), None, out_sel))
            mem_items.append(((whole, off, size), None, out_sel))
            reference_read(inner, whole[off : off + size], (), reference, out_sel)
    out = np.empty_like(reference)
    outcome = ak.read_chunks(chain, out, file_items, files=ak.LocalFiles.of(store), workers=2)
    assert outcome.missing == 1
    np.testing.assert_array_equal(out, data)
    assert out.tobytes() == reference.tobytes()
    out2 = np.empty_like(reference)
    ak.read_chunks(chain, out2, mem_items, workers=2)
    assert out2.tobytes() == reference.tobytes()


ts = pytest.importorskip("tensorstore", reason="tensorstore is a test dependency")


@pytest.mark.parametrize(
    ("driver", "codecs"),
    [
        (
            "zarr3",
            [
                {"name": "bytes", "configuration": {"endian": "little"}},
                {"name": "zstd", "configuration": {"level": 5, "checksum": False}},
            ],
        ),
        (
            "zarr3",
            [
                {"name": "transpose", "configuration": {"order": [1, 0]}},
                {"name": "bytes", "configuration": {"endian": "big"}},
                {
                    "name": "blosc",
                    "configuration": {
                        "cname": "lz4",
                        "clevel": 5,
                        "shuffle": "shuffle",
                        "typesize": 4,
                        "blocksize": 0,
                    },
                },
            ],
        ),
        ("zarr", {"id": "blosc", "cname": "zstd", "clevel": 5, "shuffle": 2}),
        ("zarr", {"id": "zlib", "level": 4}),
    ],
    ids=["zarr3-zstd", "zarr3-transpose-blosc", "zarr2-blosc-zstd", "zarr2-zlib"],
)
async def test_tensorstore_written(
    tmp_path: Path, driver: str, codecs: Any, reference_read: Callable[..., None]
) -> None:
    data = _data("float32", (33, 21))
    metadata: dict[str, Any] = {"shape": list(data.shape)}
    if driver == "zarr3":
        metadata |= {
            "data_type": "float32",
            "chunk_grid": {"name": "regular", "configuration": {"chunk_shape": [10, 8]}},
            "codecs": codecs,
            "fill_value": 0,
        }
    else:
        metadata |= {"dtype": "<f4", "chunks": [10, 8], "compressor": codecs, "fill_value": 0}
    spec = {
        "driver": driver,
        "kvstore": {"driver": "file", "path": str(tmp_path / "t")},
        "metadata": metadata,
        "create": True,
    }
    handle = ts.open(spec).result()
    handle[...] = data
    await _check_array(tmp_path, "t", data, reference_read)


# -- properties --------------------------------------------------------------------------

DTYPES = ["|b1", "|i1", "<u2", ">i4", "<u8", ">f2", "<f4", ">f8", "<c8", ">c16"]


@st.composite
def compressors(draw: Any, itemsize: int) -> list[Any]:
    kind = draw(st.sampled_from(["raw", "zstd", "blosc", "gzip", "nzstd", "nblosc", "lz4", "zlib"]))
    if kind == "raw":
        return []
    if kind == "zstd":
        return [ZstdCodec(level=draw(st.integers(-3, 7)), checksum=draw(st.booleans()))]
    if kind == "blosc":
        return [
            BloscCodec(
                cname=draw(st.sampled_from(["lz4", "lz4hc", "blosclz", "zlib", "zstd"])),
                clevel=draw(st.integers(0, 9)),
                shuffle=draw(st.sampled_from(["noshuffle", "shuffle", "bitshuffle"])),
                typesize=draw(st.sampled_from([1, itemsize])),
            )
        ]
    if kind == "gzip":
        return [GzipCodec(level=draw(st.integers(0, 9)))]
    if kind == "nzstd":
        return [numcodecs_adapter("zstd", {"level": draw(st.integers(1, 5))})]
    if kind == "nblosc":
        config = {
            "id": "blosc",
            "cname": draw(st.sampled_from(["lz4", "zstd", "blosclz"])),
            "clevel": draw(st.integers(1, 9)),
            "shuffle": draw(st.sampled_from([-1, 0, 1, 2])),
        }
        return [numcodecs_from_v2_config(config)]
    if kind == "lz4":
        return [numcodecs_adapter("lz4", {"acceleration": draw(st.integers(1, 8))})]
    return [numcodecs_adapter("zlib", {"level": draw(st.integers(0, 9))})]


@st.composite
def layouts(draw: Any) -> dict[str, Any]:
    dtype = np.dtype(draw(st.sampled_from(DTYPES)))
    ndim = draw(st.integers(0, 3))
    chunks = tuple(draw(st.lists(st.integers(1, 7), min_size=ndim, max_size=ndim)))
    shape = tuple(c * draw(st.integers(1, 3)) - draw(st.integers(0, c - 1)) for c in chunks)
    order = draw(st.sampled_from(["C", "F"]))
    transpose = draw(st.permutations(range(ndim))) if ndim > 1 and draw(st.booleans()) else None
    endian = draw(st.sampled_from(["little", "big"]))
    fill = draw(st.sampled_from([0, 1, "nan"])) if dtype.kind in "fc" else draw(st.integers(0, 1))
    sel = tuple(
        slice(a, max(a, b) + 1, step)
        for a, b, step in (
            [
                *sorted(draw(st.lists(st.integers(0, n - 1), min_size=2, max_size=2))),
                draw(st.integers(1, 3)),
            ]
            for n in shape
        )
    )
    return {
        "dtype": dtype,
        "chunks": chunks,
        "shape": shape,
        "order": order,
        "transpose": transpose,
        "endian": endian,
        "fill": np.asarray(float("nan") if fill == "nan" else fill).astype(dtype)[()],
        "compressor": draw(compressors(max(1, dtype.itemsize))),
        "sel": tuple(slice(s.start, min(s.stop, n), s.step) for s, n in zip(sel, shape)),
        "missing": draw(st.integers(0, 3)),
        "out_kind": draw(st.sampled_from(["plain", "strided", "fortran", "reversed"])),
        "workers": draw(st.integers(1, 3)),
    }


def _output(kind: str, shape: tuple[int, ...], dtype: np.dtype[Any]) -> np.ndarray:
    if not shape:
        return np.zeros((), dtype)
    if kind == "strided":
        return np.zeros(tuple(2 * n + 1 for n in shape), dtype)[
            tuple(slice(1, None, 2) for _ in shape)
        ]
    if kind == "fortran":
        return np.zeros(shape, dtype, order="F")
    if kind == "reversed":
        return np.zeros(shape, dtype)[tuple(slice(None, None, -1) for _ in shape)]
    return np.zeros(shape, dtype)


@settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(case=layouts())
def test_reads_match_the_python_path(
    case: dict[str, Any], make_chain: Callable[..., Any], reference_read: Callable[..., None]
) -> None:
    dtype, chunks, shape = case["dtype"], case["chunks"], case["shape"]
    spec = ChunkSpec(chunks, dtype, case["fill"], order=case["order"])
    codecs: list[Any] = [TransposeCodec(order=case["transpose"])] if case["transpose"] else []
    codecs += [BytesCodec(endian=case["endian"]), *case["compressor"]]
    pipeline, chain = make_chain(codecs, spec)
    value = _data(dtype.str, shape) if shape else np.asarray(_data(dtype.str, (1,))[0])

    class Grid:
        def chunk_key(self, coords: tuple[int, ...]) -> str:
            return "/".join(map(str, coords)) or "0"

    encoded: dict[str, bytes | None] = {}
    for n, key in enumerate(k for k, _, _ in _grid_items(Grid(), shape, chunks)):
        coords = tuple(int(c) for c in key.split("/")) if shape else ()
        region = tuple(slice(c * s, c * s + s) for c, s in zip(coords, chunks, strict=True))
        chunk = np.full(chunks, case["fill"], dtype)
        part = value[region]
        chunk[tuple(slice(0, m) for m in part.shape)] = part
        encoded[key] = None if n < case["missing"] else pipeline.encode(chunk)
    items = [
        (encoded[key], cs, os_)
        for key, cs, os_ in _grid_items(Grid(), shape, chunks, case["sel"] if shape else None)
    ]
    out_shape = tuple(len(range(s.start, s.stop, s.step)) for s in case["sel"]) if shape else ()
    out = _output(case["out_kind"], out_shape, dtype)
    reference = np.zeros(out_shape, dtype)
    for data, cs, os_ in items:
        reference_read(pipeline, data, cs, reference, os_)
    ak.read_chunks(chain, out, items, workers=case["workers"])
    assert np.ascontiguousarray(out).tobytes() == reference.tobytes()


def test_zero_dimensional(make_chain: Callable[..., Any]) -> None:
    pipeline, chain = make_chain(
        [BytesCodec(endian="big"), ZstdCodec()], ChunkSpec((), np.dtype("<f8"), 1.5)
    )
    out = np.zeros((), "<f8")
    ak.read_chunks(chain, out, [(pipeline.encode(np.asarray(2.25)), (), ())])
    assert out[()] == 2.25
    ak.read_chunks(chain, out, [(None, (), ())])
    assert out[()] == 1.5


REFUSED = {
    "crc32c": ([BytesCodec(), Crc32cCodec()], "<i4"),
    "delta filter": ([numcodecs_adapter("delta", {"dtype": "<i4"}), BytesCodec()], "<i4"),
    "two compressors": ([BytesCodec(), ZstdCodec(), GzipCodec()], "<i4"),
    "bz2": ([BytesCodec(), numcodecs_adapter("bz2", {})], "<i4"),
    "structured": ([BytesCodec()], [("a", "<i4"), ("b", "<f8")]),
    "longdouble": ([BytesCodec()], "<f16" if np.dtype(np.longdouble).itemsize == 16 else "g"),
    "datetime": ([BytesCodec()], "<M8[s]"),
}


@pytest.mark.parametrize("name", list(REFUSED))
def test_chains_it_cannot_run_are_refused(name: str, kernel: None) -> None:
    codecs, dtype = REFUSED[name]
    dt = np.dtype(dtype)
    fill = np.zeros((), dt)[()]
    verdict = ak.chain_for(codecs, ChunkSpec((4, 4), dt, fill))
    assert isinstance(verdict, ak.Refused) and verdict.reason


def test_null_fill_value_of_integers_is_refused(kernel: None) -> None:
    assert isinstance(
        ak.chain_for([BytesCodec()], ChunkSpec((4,), np.dtype("i4"), None)), ak.Refused
    )
    # floats take it as the Python path does: NaN where chunks are missing
    chain = ak.chain_for([BytesCodec()], ChunkSpec((4,), np.dtype("f4"), None))
    assert isinstance(chain, ak.KernelChain)
    out = np.zeros(4, "f4")
    ak.read_chunks(chain, out, [(None, None, None)])
    assert np.isnan(out).all()


def test_chains_pickle(make_chain: Callable[..., Any]) -> None:
    import pickle

    _, chain = make_chain([BytesCodec(), ZstdCodec(level=2)], ChunkSpec((3, 3), np.dtype("f4"), 0))
    back = pickle.loads(pickle.dumps(chain))
    out = np.ones((3, 3), "f4")
    ak.read_chunks(back, out, [(None, None, None)])
    assert (out == 0).all()
