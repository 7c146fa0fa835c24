"""The write path: split a value by chunk, encode in the executor, store under the limit.

Whole chunks are encoded and stored directly. Partly covered chunks are
read-modify-written: serialised per chunk within the process, and made safe
across processes with the store's conditional writes where it has them
(retried when another writer won the race).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import math
import random
from collections.abc import Iterator
from typing import Any, NamedTuple

import numpy as np

from asyncarr.abc import NDArray, Store
from asyncarr.core._context import ArrayContext, chunk_lock
from asyncarr.core._indexing import Selection, count_chunks, local_selection, project
from asyncarr.core._pipeline import CodecPipeline
from asyncarr.core._sharding import ShardingCodec
from asyncarr.errors import PreconditionFailedError, StoreError, UnsupportedOperationError
from asyncarr.runtime import bounded_for_each, gather_all

__all__ = ["write_selection"]

MAX_CAS_ATTEMPTS = 64
SMALL_WRITES = "whole small chunks to local files"
"""The executor profile of batches of small chunks that worker threads encode and write
to local files. Per chunk they run more Python and system calls than codec, so two
threads contend for the GIL instead of running in parallel (16 KB zstd chunks on 2 CPUs:
one thread ~240 MB/s, two ~250-330, two processes ~380-470): ``auto`` measures threads
against worker processes by chunks written per second and keeps the faster."""


class _Piece(NamedTuple):
    """One chunk a write touches."""

    key: str
    chunk_sel: Any
    """Where in the chunk (numpy index)."""
    out_sel: Any
    """Where in the value (numpy index)."""
    dims: tuple[Any, ...]
    """``chunk_sel`` per dimension (a slice or an index array each: for shards)."""
    complete: bool
    """The write covers every valid element of the chunk (edge padding aside)."""
    shape: tuple[int, ...] | None
    """The chunk's shape where the array's chunks differ in shape (else ``None``)."""


def _pieces(ctx: ArrayContext, selection: Selection) -> Iterator[_Piece]:
    if not selection.is_orthogonal_array:
        for key, chunk_sel, out_sel, complete, _whole, shape in ctx.plan_slices(selection):
            yield _Piece(key, chunk_sel, out_sel, chunk_sel, complete, shape)
        return
    varying = ctx.varying
    for p in project(selection, ctx.chunking):
        chunk_sel, out_sel = p.index_pair()
        yield _Piece(
            ctx.chunk_key(p.coords),
            chunk_sel,
            out_sel,
            p.chunk_sel,
            p.is_complete,
            p.shape if varying else None,
        )


def encode_full_chunks(
    pipeline: CodecPipeline,
    source: NDArray | list[NDArray],
    out_sels: list[Any] | None,
    write_empty: bool,
    keys: list[str],
    store: Store | None = None,
    shapes: list[tuple[int, ...] | None] | None = None,
) -> list[bytes | None]:
    """Encode whole chunks (``None`` where a chunk is all fill and empty chunks are skipped).

    ``source`` is either the chunks themselves (a list, or an array stacking
    them), or (with ``out_sels``) the value being written, from which each chunk
    is cut out here, in the worker.
    With ``store`` (a local store) each chunk is also written (or deleted)
    right here, and nothing is returned for the caller to store.
    ``shapes``: each chunk's shape where the array's chunks differ in shape.
    """
    pipelines = (
        [pipeline.for_shape(shape) for shape in shapes]
        if shapes is not None
        else itertools.repeat(pipeline)
    )
    if out_sels is None:
        chunks: list[NDArray] = list(source)
    else:
        assert isinstance(source, np.ndarray)
        chunks = [
            chunk_from_value(p, source, sel) for p, sel in zip(pipelines, out_sels, strict=False)
        ]

    def encoded() -> Iterator[tuple[str, bytes | None]]:
        for chunk, key, p in zip(chunks, keys, pipelines, strict=False):
            if not write_empty and p.is_fill(chunk):
                yield key, None
            else:
                yield key, p.encode(chunk, key=key)

    if store is None:
        return [data for _key, data in encoded()]
    # A local store: this worker stores what it encodes, each chunk as soon as it is
    # encoded (local files: one directory open and one lock for the chunks that share a
    # directory, once the batch is done).
    store.write_local_many(encoded())
    return [None] * len(keys)


def store_shard(
    codec: ShardingCodec,
    parts: dict[tuple[int, ...], bytes],
    write_empty: bool,
    key: str,
    store: Store | None,
) -> bytes | None:
    """Assemble a whole shard from its encoded inner chunks (``None`` where it has none
    and empty chunks are skipped); with ``store`` (a local store) store it right here."""
    data = codec.encode_parts(parts, key=key) if parts or write_empty else None
    if store is None:
        return data
    store.write_local(key, data)
    return None


def merge_chunk(
    pipeline: CodecPipeline,
    old: bytes | None,
    value: NDArray,
    chunk_sel: Any,
    write_empty: bool,
    key: str,
    dims: tuple[Any, ...] | None = None,
) -> bytes | None:
    """Decode ``old`` (or start from fill), write ``value`` at ``chunk_sel``, re-encode.

    For a shard (``dims``: the per-dimension selection inside it), only the
    inner chunks the write touches are decoded and re-encoded; the others
    keep their encoded bytes.
    """
    shard = pipeline.ab
    if (
        isinstance(shard, ShardingCodec)
        and dims is not None
        and not pipeline.aa
        and not pipeline.bb
    ):
        return _merge_shard(shard, old, value, dims, write_empty, key)
    if old is None:
        chunk = np.full(pipeline.spec.shape, pipeline.spec.fill_value, dtype=pipeline.spec.dtype)
    else:
        chunk = np.array(pipeline.decode(old, key=key), copy=True)
    chunk[chunk_sel] = value
    if not write_empty and pipeline.is_fill(chunk):
        return None
    return pipeline.encode(chunk, key=key)


def _merge_shard(
    codec: ShardingCodec,
    old: bytes | None,
    value: NDArray,
    dims: tuple[Any, ...],
    write_empty: bool,
    key: str,
) -> bytes | None:
    inner = codec.inner
    parts: dict[tuple[int, ...], bytes | memoryview] = (
        dict(codec.split_parts(old, key=key)) if old else {}
    )
    shard_shape = tuple(n * c for n, c in zip(codec.inner_grid, codec.chunk_shape, strict=True))
    for p in project(local_selection(dims, shard_shape), codec.chunk_shape):
        chunk_sel, out_sel = p.index_pair()
        previous = parts.get(p.coords)
        if previous is None:
            chunk = np.full(inner.spec.shape, inner.spec.fill_value, dtype=inner.spec.dtype)
        else:
            chunk = np.array(inner.decode(previous, key=key), copy=True)
        chunk[chunk_sel] = value[out_sel]
        if inner.is_fill(chunk):
            parts.pop(p.coords, None)  # empty inner chunks are left out of shards
        else:
            parts[p.coords] = inner.encode(chunk, key=key)
    if not parts and not write_empty:
        return None
    return codec.encode_parts(parts, key=key)


def chunk_from_value(pipeline: CodecPipeline, value: NDArray, out_sel: Any) -> NDArray:
    """The whole chunk at ``out_sel`` of ``value`` (edge chunks padded with fill)."""
    spec = pipeline.spec
    part: NDArray = value[(*out_sel, Ellipsis)]  # a view, even for 0-d arrays
    if part.shape == spec.shape:
        return part  # strided is fine: serialising it (bytes codec) is the one copy
    chunk = np.full(spec.shape, spec.fill_value, dtype=spec.dtype)
    chunk[tuple(slice(0, n) for n in part.shape)] = part
    return chunk


async def write_selection(ctx: ArrayContext, selection: Selection, value: NDArray) -> None:
    """Write ``value`` (already broadcast to ``selection.out_shape``) at ``selection``."""
    if math.prod(selection.out_shape) == 0:
        return
    executor = ctx.executor
    pipeline = ctx.pipeline
    releases = pipeline.releases_gil
    workers = executor.max_workers

    mode = executor.mode_for(releases)
    in_processes = mode == "processes"
    codec = ctx.partial_shards
    # Fewer whole shards than workers: spread each one's inner chunks over the workers
    # (threads share the value; worker processes would be sent the whole shard each time).
    n_chunks = count_chunks(selection, ctx.chunking)
    split_shards = codec is not None and mode == "threads" and n_chunks < workers
    # Workers store what they encode themselves, no second hand-off: threads into local
    # files and memory, worker processes into local files.
    local = ctx.store.supports_sync_writes and (not in_processes or ctx.store.supports_local_files)
    measured = releases and not split_shards and ctx.small_local_chunks(writes=True)
    # Whole chunks per executor call. Where workers store them, batches as large as
    # reads use (each call costs a hand-off to the pool, a GIL round trip and, for local
    # files, a directory open and lock: 16 KB chunks wrote 10-20% faster in batches of
    # 64-256 than of 16). Where the event loop stores them, at most 16 a call, so the
    # first uploads start soon and go out evenly.
    per_batch = ctx.batch_size(pipeline.spec.nbytes, n_chunks)
    if not local:
        per_batch = min(per_batch, 16)

    async def put(key: str, data: bytes | None) -> None:
        """Store an encoded chunk the worker did not store itself."""
        await _store(ctx, key, data)
        ctx.forget_cached(key)

    async def write_shard_split(piece: _Piece) -> None:
        codec = ctx.shard_codec(piece.shape)
        shard = chunk_from_value(ctx.pipeline_for(piece.shape), value, piece.out_sel)
        coords = codec.inner_coords()
        size = max(1, math.ceil(len(coords) / (4 * workers)))
        encoded = await gather_all(
            *(
                executor.run(
                    codec.encode_inner,
                    shard,
                    coords[i : i + size],
                    releases_gil=releases,
                    mode=mode,
                )
                for i in range(0, len(coords), size)
            )
        )
        parts = {c: data for part in encoded for c, data in part.items()}
        data = await executor.run(
            store_shard,
            codec,
            parts,
            ctx.write_empty_chunks,
            piece.key,
            ctx.store if local else None,
            releases_gil=True,
            mode=mode,
        )
        if local:
            ctx.forget_cached(piece.key)
        else:
            await put(piece.key, data)

    async def write_full(batch: list[_Piece]) -> None:
        if split_shards:
            await gather_all(*(write_shard_split(piece) for piece in batch))
            return
        sels = [piece.out_sel for piece in batch]
        keys = [piece.key for piece in batch]
        shapes = [piece.shape for piece in batch] if ctx.varying else None
        batch_mode = executor.mode_for(False, profile=SMALL_WRITES) if measured else mode
        with (
            _process_inputs(ctx, value, sels, shapes)
            if batch_mode == "processes"  # ship only the chunks, never the whole value
            else contextlib.nullcontext((value, sels))  # threads cut them out of it
        ) as args:
            encoded = await executor.run(
                encode_full_chunks,
                pipeline,
                *args,
                ctx.write_empty_chunks,
                keys,
                ctx.store if local else None,
                shapes,
                releases_gil=releases and not measured,
                profile=SMALL_WRITES if measured else None,
                units=len(batch) if measured else None,
                mode=batch_mode,
            )
        if local:  # the worker stored them
            for key in keys:
                ctx.forget_cached(key)
            return
        await gather_all(*(put(k, d) for k, d in zip(keys, encoded, strict=True)))

    async def write_partial(piece: _Piece) -> None:
        key, chunk_sel, out_sel, dims = piece.key, piece.chunk_sel, piece.out_sel, piece.dims
        part = np.ascontiguousarray(value[out_sel])
        chunk_pipeline = ctx.pipeline_for(piece.shape)
        async with chunk_lock(ctx.store, key):
            if ctx.store.supports_conditional_writes:
                await _cas_update(ctx, chunk_pipeline, key, part, chunk_sel, dims)
            else:
                old = await ctx.io.get(key, max_size=chunk_pipeline.encoded_bound)
                new = await executor.run(
                    merge_chunk,
                    chunk_pipeline,
                    old,
                    part,
                    chunk_sel,
                    ctx.write_empty_chunks,
                    key,
                    dims,
                    releases_gil=releases,
                    mode=mode,
                )
                await _store(ctx, key, new)
        ctx.forget_cached(key)

    async def handle(item: list[_Piece] | _Piece) -> None:
        if isinstance(item, list):
            await write_full(item)
        else:
            await write_partial(item)

    def items() -> Iterator[list[_Piece] | _Piece]:
        """Batches of whole chunks (for :func:`encode_full_chunks`), and partly covered
        chunks one by one."""
        pending: list[_Piece] = []
        for piece in _pieces(ctx, selection):
            if piece.complete:
                pending.append(piece)
                if len(pending) >= per_batch:
                    yield pending
                    pending = []
            else:
                yield piece
        if pending:
            yield pending

    limit = max(2 * workers, math.ceil(ctx.io_concurrency() / per_batch))
    await bounded_for_each(handle, items(), limit=limit)


@contextlib.contextmanager
def _process_inputs(
    ctx: ArrayContext,
    value: NDArray,
    sels: list[Any],
    shapes: list[tuple[int, ...] | None] | None = None,
) -> Iterator[tuple[NDArray | list[NDArray], None]]:
    """The chunks at ``sels`` of ``value`` as :func:`encode_full_chunks` arguments for a
    worker process: copied into one shared-memory staging buffer, which the worker reads
    in place, or (without shared memory, for object dtypes, or for chunks of differing
    ``shapes``) a list it is sent."""
    pipeline = ctx.pipeline
    spec = pipeline.spec
    shape = (len(sels), *spec.shape)
    if shapes is not None:
        yield (
            [
                chunk_from_value(pipeline.for_shape(s), value, sel)
                for s, sel in zip(shapes, sels, strict=True)
            ],
            None,
        )
        return
    if spec.dtype.hasobject:
        yield [chunk_from_value(pipeline, value, sel) for sel in sels], None
        return
    with ctx.executor.staging(math.prod(shape) * spec.dtype.itemsize) as buf:
        if buf is None:
            yield [chunk_from_value(pipeline, value, sel) for sel in sels], None
            return
        staged = buf.view(spec.dtype).reshape(shape)
        for i, sel in enumerate(sels):
            staged[i] = chunk_from_value(pipeline, value, sel)
        yield staged, None


async def _store(ctx: ArrayContext, key: str, data: bytes | None) -> None:
    if data is None:
        await ctx.io.delete(key)
    else:
        await ctx.io.set(key, data)


async def _delete_if_unchanged(ctx: ArrayContext, key: str, version: str) -> bool:
    """Delete ``key`` if still at ``version``; ``False`` if the store cannot delete conditionally.

    Raises :class:`PreconditionFailedError` when another writer got there first.
    """
    try:
        await ctx.io.delete_if_version(key, version)
    except UnsupportedOperationError:
        return False
    return True


async def _cas_update(
    ctx: ArrayContext,
    pipeline: CodecPipeline,
    key: str,
    part: NDArray,
    chunk_sel: Any,
    dims: tuple[Any, ...],
) -> None:
    """Read-modify-write one chunk with optimistic concurrency (version check).

    Conflicts back off with jitter, growing up to ~50 ms, for at most
    :data:`MAX_CAS_ATTEMPTS` tries.
    """
    executor = ctx.executor
    for _attempt in range(MAX_CAS_ATTEMPTS):
        current = await ctx.io.get_versioned(key, max_size=pipeline.encoded_bound)
        old = current.data if current is not None else None
        new = await executor.run(
            merge_chunk,
            pipeline,
            old,
            part,
            chunk_sel,
            ctx.write_empty_chunks,
            key,
            dims,
            releases_gil=pipeline.releases_gil,
        )
        try:
            if new is None:  # the chunk became all fill value
                if current is None:
                    return
                if await _delete_if_unchanged(ctx, key, current.version):
                    return
                # no conditional delete here: store the fill chunk conditionally instead
                new = await executor.run(
                    merge_chunk,
                    pipeline,
                    old,
                    part,
                    chunk_sel,
                    True,
                    key,
                    dims,
                    releases_gil=pipeline.releases_gil,
                )
                assert new is not None
            await ctx.io.set_if_version(key, new, current.version if current is not None else None)
            return
        except PreconditionFailedError:
            await asyncio.sleep(random.uniform(0, min(0.05, 0.001 * 2**_attempt)))
            continue
    raise StoreError(f"gave up after {MAX_CAS_ATTEMPTS} conflicting concurrent updates", key=key)
