"""Copy an array between any two stores, block by block with bounded memory."""

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
    blocks: int
    seconds: float

    @property
    def mb_per_s(self) -> float:
        return self.nbytes / 1e6 / self.seconds if self.seconds > 0 else float("inf")

    def __str__(self) -> str:
        return (
            f"copied {self.source} -> {self.dest}: {self.nbytes / 1e6:.1f} MB in {self.blocks} blocks, "
            f"{self.seconds:.2f} s ({self.mb_per_s:.0f} MB/s)"
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
        try:
            # The metadata goes in last: until every block is written, nothing at the
            # destination claims to be an array (an interrupted copy is never mistaken for
            # a complete one).
            async with staged_array(dest_store, meta, overwrite=overwrite) as dst:

                async def move(block: tuple[slice, ...]) -> None:
                    nonlocal count
                    started.append(block)
                    await dst.write(await src.read(block), block)
                    count += 1

                await bounded_for_each(move, _blocks(src, block_bytes), limit=concurrency)
        except (ContainsArrayError, ContainsGroupError):
            raise  # someone else's node is there: its chunks are not ours to remove
        except BaseException as exc:
            await _remove_written(dest_store, meta, started, exc, dest)
            raise
        return CopyReport(str(source), str(dest), src.nbytes, count, time.perf_counter() - start)
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
    if compressor is None and fmt == src.zarr_format == 3 and not sharded:
        codecs = list(src.codecs)
    elif compressor is None and fmt == src.zarr_format == 2:
        chosen = src.metadata.v2_compressor
        filters = src.metadata.v2_filters
    return build_array_metadata(
        shape=src.shape,
        chunks=src.chunks if sharded or src.chunk_grid.is_regular else src.chunk_grid,
        dtype=src.metadata.data_type,
        zarr_format=fmt,
        fill_value=src.fill_value,
        compressor=chosen,
        filters=filters,
        codecs=codecs,
        shards=src.chunk_grid if fmt == 3 and sharded else None,
        order="C",
        dimension_names=src.dimension_names,
        attributes=dict(src.attrs),
        chunk_key_encoding=None,
    )


REMOVE_WRITTEN_SECONDS = 30.0
"""How long a failed or interrupted copy spends removing the chunks it wrote."""


async def _remove_written(
    store: Store,
    meta: ArrayMetadata,
    blocks: list[tuple[slice, ...]],
    exc: BaseException,
    dest: object,
) -> None:
    """Remove the chunk objects of the ``blocks`` a failed copy started writing (there is
    no array there: its metadata was never stored), for at most
    :data:`REMOVE_WRITTEN_SECONDS`; what could not be removed is noted on ``exc``."""
    dims = meta.chunk_grid.dims
    keys = sorted(
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
