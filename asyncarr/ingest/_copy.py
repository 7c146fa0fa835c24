"""Copy an array between any two stores with bounded memory: its stored chunk objects as
they are where the encoding does not change, else block by block, decoded and encoded."""

from __future__ import annotations

import asyncio
import itertools
import math
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from asyncarr.abc import Store
from asyncarr.core import (
    DEFAULT_COMPRESSOR,
    ArrayMetadata,
    AsyncArray,
    ShardingCodec,
    build_array_metadata,
    open_array,
    resolve_store,
    staged_array,
)
from asyncarr.errors import ConfigError, ContainsArrayError, ContainsGroupError
from asyncarr.runtime import bounded_for_each, managed

__all__ = ["CopyReport", "copy_array"]


@dataclass(frozen=True)
class CopyReport:
    source: str
    dest: str
    nbytes: int
    """Bytes of the array (uncompressed)."""
    blocks: int
    """Units moved: blocks of whole chunks, or stored chunk objects (:attr:`as_stored`)."""
    seconds: float
    as_stored: bool = False
    """The chunk objects were copied as stored, without decoding and encoding them."""

    @property
    def mb_per_s(self) -> float:
        return self.nbytes / 1e6 / self.seconds if self.seconds > 0 else float("inf")

    def __str__(self) -> str:
        units = "stored objects" if self.as_stored else "blocks"
        return (
            f"copied {self.source} -> {self.dest}: {self.nbytes / 1e6:.1f} MB in {self.blocks} "
            f"{units}, {self.seconds:.2f} s ({self.mb_per_s:.0f} MB/s)"
        )


def _blocks(arr: AsyncArray, block_bytes: int) -> Iterator[tuple[slice, ...]]:
    """Chunk-aligned blocks of about ``block_bytes`` each (whole chunks/shards)."""
    grid = arr.metadata.chunk_grid
    shape = arr.shape
    per_chunk = math.prod(grid.first_chunk_shape) * arr.dtype.itemsize
    n_chunks = max(1, block_bytes // max(1, per_chunk))
    # grow the block along the last axes first
    block = [1] * grid.ndim
    for d in reversed(range(grid.ndim)):
        take = max(1, min(grid.grid_shape[d], n_chunks))
        block[d] = take
        n_chunks = max(1, n_chunks // take)
    cuts = []  # per axis: where the blocks start and end (every ``block[d]``-th chunk edge)
    for d, dim in enumerate(grid.dims):
        starts = [dim.offset(k) for k in range(0, dim.nchunks, block[d])]
        cuts.append(list(zip(starts, [*starts[1:], shape[d]], strict=True)))
    for bounds in itertools.product(*cuts):
        yield tuple(slice(a, b) for a, b in bounds)


async def copy_array(
    source: str | Any,
    dest: str | Any,
    *,
    source_options: Mapping[str, Any] | None = None,
    dest_options: Mapping[str, Any] | None = None,
    zarr_format: int | None = None,
    compressor: Any = None,
    overwrite: bool = False,
    block_bytes: int = 64 << 20,
    concurrency: int = 4,
) -> CopyReport:
    """Copy the array at ``source`` to a new array at ``dest``.

    Shape, dtype, chunks, shards, fill value, dimension names and attributes
    are kept; the codecs too unless ``compressor`` or another ``zarr_format``
    is asked for. Memory stays near ``concurrency × block_bytes``.

    Where the destination stores chunks exactly as the source does (the same format,
    codecs, chunk grid, data type and fill value), the stored chunk (or shard) objects
    are copied as they are, several in flight, without decoding and encoding them:
    what a byte copy of the files would give, at the speed of the stores. Otherwise
    blocks of whole chunks are read, decoded, encoded and written.
    """
    src = await open_array(source, storage_options=source_options)
    dest_store: Store | None = None
    owns_dest = False
    try:
        dest_store, owns_dest = resolve_store(dest, read_only=False, storage_options=dest_options)
        _refuse_overlap(src.store, src.path, dest_store, source, dest)
        meta = _dest_metadata(src, zarr_format or src.zarr_format, compressor)
        start = time.perf_counter()
        count = 0
        started: list[tuple[slice, ...]] = []
        written: list[str] = []
        as_stored = _stored_alike(src.metadata, meta)
        try:
            # The metadata goes in last: until every block is written, nothing at the
            # destination claims to be an array (an interrupted copy is never mistaken for
            # a complete one).
            async with staged_array(dest_store, meta, overwrite=overwrite) as dst:
                if as_stored:
                    budget = concurrency * block_bytes
                    count = await _copy_stored(src, dest_store, meta, written, budget)
                else:

                    async def move(block: tuple[slice, ...]) -> None:
                        nonlocal count
                        started.append(block)
                        await dst.write(await src.read(block), block)
                        count += 1

                    await bounded_for_each(move, _blocks(src, block_bytes), limit=concurrency)
        except (ContainsArrayError, ContainsGroupError):
            raise  # someone else's node is there: its chunks are not ours to remove
        except BaseException as exc:
            keys = written if as_stored else _block_keys(meta, started)
            await _remove_written(dest_store, keys, exc, dest)
            raise
        seconds = time.perf_counter() - start
        return CopyReport(str(source), str(dest), src.nbytes, count, seconds, as_stored)
    finally:
        try:
            if owns_dest and dest_store is not None:
                await dest_store.aclose()
        finally:
            await src.aclose()


def _dest_metadata(src: AsyncArray, fmt: int, compressor: Any) -> ArrayMetadata:
    """The destination's metadata: the source's, in format ``fmt``, with ``compressor``
    if one is given (codecs are kept otherwise, where the format allows)."""
    codecs: Any = None
    filters: Any = None
    chosen: Any = DEFAULT_COMPRESSOR if compressor is None else compressor
    sharded = any(isinstance(c, ShardingCodec) for c in src.codecs)
    keep = compressor is None and fmt == src.zarr_format == 3
    if keep:  # the whole chain (a sharding codec with its inner codecs included)
        codecs = list(src.codecs)
    elif compressor is None and fmt == src.zarr_format == 2:
        chosen = src.metadata.v2_compressor
        filters = src.metadata.v2_filters
    return build_array_metadata(
        shape=src.shape,
        chunks=(
            src.chunk_grid if keep or not (sharded or src.chunk_grid.is_regular) else src.chunks
        ),
        dtype=src.metadata.data_type,
        zarr_format=fmt,
        fill_value=src.fill_value,
        compressor=chosen,
        filters=filters,
        codecs=codecs,
        shards=src.chunk_grid if fmt == 3 and sharded and not keep else None,
        order="C",
        dimension_names=src.dimension_names,
        attributes=dict(src.attrs),
        chunk_key_encoding=None,
    )


def _stored_alike(source: ArrayMetadata, dest: ArrayMetadata) -> bool:
    """Whether ``dest`` stores every chunk exactly as ``source`` does, so that the source's
    chunk objects are the destination's (their keys may differ)."""
    names_only = {"attributes", "dimension_names", "chunk_key_encoding", "dimension_separator"}

    def encoding(meta: ArrayMetadata) -> dict[str, Any]:
        return {k: v for k, v in meta.to_json().items() if k not in names_only}

    return encoding(source) == encoding(dest)


async def _copy_stored(
    src: AsyncArray, dest: Store, meta: ArrayMetadata, written: list[str], budget: int
) -> int:
    """Copy each stored chunk object of ``src`` to its key under ``meta`` in ``dest``
    (missing ones stay missing: they read as the fill value), as many in flight as the
    destination's concurrency allows within about ``budget`` bytes (counted at the
    uncompressed chunk size). Appends each key to ``written`` before writing it; returns
    how many objects were copied."""
    source_io, dest_io = managed(src.store), managed(dest)
    chunk_bytes = math.prod(meta.chunk_grid.max_chunk_shape) * meta.dtype.itemsize
    limit = max(1, min(dest.limits.max_concurrency, budget // max(1, chunk_bytes)))
    bound = _stored_bound(src, chunk_bytes)
    prefix = f"{src.path}/" if src.path else ""
    copied = 0

    async def move(coords: tuple[int, ...]) -> None:
        nonlocal copied
        data = await source_io.get(prefix + src.metadata.chunk_key(coords), max_size=bound)
        if data is None:
            return
        key = meta.chunk_key(coords)
        written.append(key)
        await dest_io.set(key, data)
        copied += 1

    grid = itertools.product(*(range(n) for n in meta.chunk_grid.grid_shape))
    await bounded_for_each(move, grid, limit=limit)
    return copied


def _stored_bound(src: AsyncArray, chunk_bytes: int) -> int:
    """A generous bound for the stored size of one of ``src``'s chunk (or shard) objects
    of at most ``chunk_bytes`` decoded, so that a broken or hostile source cannot make the
    copy read an endless body: twice the decoded size (compressors expand incompressible
    data by 12.5 % at worst) plus a shard's index, or 2 GiB for variable-length data."""
    if src.dtype.hasobject:
        return 1 << 31
    inner = 1  # chunks in one stored object (a shard's)
    for codec in src.codecs:
        if isinstance(codec, ShardingCodec):
            inner_bytes = math.prod(codec.chunk_shape) * src.dtype.itemsize
            inner = max(1, -(-chunk_bytes // max(1, inner_bytes)))
    return 2 * chunk_bytes + 16 * inner + (1 << 20)


def _block_keys(meta: ArrayMetadata, blocks: list[tuple[slice, ...]]) -> list[str]:
    """The chunk keys of ``blocks`` (whole chunks) under ``meta``."""
    dims = meta.chunk_grid.dims
    return sorted(
        {
            meta.chunk_key(coords)
            for block in blocks
            if all(b.stop > b.start for b in block)
            for coords in itertools.product(
                *(
                    range(d.index(b.start), d.index(b.stop - 1) + 1)
                    for b, d in zip(block, dims, strict=True)
                )
            )
        }
    )


REMOVE_WRITTEN_SECONDS = 30.0
"""How long a failed or interrupted copy spends removing the chunks it wrote."""


async def _remove_written(store: Store, keys: list[str], exc: BaseException, dest: object) -> None:
    """Remove the chunk objects a failed copy may have written (``keys``; there is no
    array there: its metadata was never stored), for at most
    :data:`REMOVE_WRITTEN_SECONDS`; what could not be removed is noted on ``exc``."""
    if not keys:
        return
    io = managed(store)
    removed = 0

    async def remove(key: str) -> None:
        nonlocal removed
        await io.delete(key)
        removed += 1

    try:
        async with asyncio.timeout(REMOVE_WRITTEN_SECONDS):
            await bounded_for_each(remove, keys, limit=16)
    except (Exception, asyncio.CancelledError) as cleanup:
        exc.add_note(
            f"the copy to {dest} stopped: no array was created there, but {len(keys) - removed} "
            f"of the {len(keys)} chunk objects it may have written could not be removed "
            f"({type(cleanup).__name__}); they belong to no array, and copying again "
            "replaces them"
        )
        return
    exc.add_note(f"the copy to {dest} stopped: no array was created there")


def _refuse_overlap(
    src_store: Store, src_path: str, dest_store: Store, source: object, dest: object
) -> None:
    """Refuse a copy whose destination is its source, holds it or lies inside it: creating
    the destination (with ``overwrite``, by deleting what is there) would destroy the data
    before it is read. Stores that cannot tell where they are (``location`` ``None``)
    are compared by identity only."""

    def where(store: Store, path: str) -> str:
        base = store.location
        if base is None:
            base = f"{type(store).__name__}:{id(store)}"
        return f"{base.rstrip('/')}/{path}".rstrip("/") + "/"

    a, b = where(src_store, src_path), where(dest_store, "")
    if a.startswith(b) or b.startswith(a):
        how = "is" if a == b else ("holds" if a.startswith(b) else "lies inside")
        raise ConfigError(
            f"cannot copy {source} to {dest}: the destination {how} the source "
            f"({b.rstrip('/')}); copy to another place"
        )
