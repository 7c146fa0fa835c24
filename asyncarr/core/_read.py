"""The read path: selection → chunk fetches → batched decode into one output array."""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from asyncarr._types import ByteRange
from asyncarr.abc import NDArray, Store
from asyncarr.core._context import ArrayContext
from asyncarr.core._indexing import (
    ChunkProjection,
    DimSelection,
    Selection,
    count_chunks,
    local_selection,
    project,
)
from asyncarr.core._pipeline import CodecPipeline, thread_buffer
from asyncarr.core._sharding import MISSING, ShardingCodec
from asyncarr.core._slice_plan import PlannedChunk, SlicePlan
from asyncarr.errors import CodecError, SelectionError, StoreError
from asyncarr.runtime import (
    ChunkCache,
    ResolvedMode,
    bounded_for_each,
    gather_all,
    populate_shared,
)

__all__ = ["DecodeJob", "decode_jobs", "decode_parts", "read_selection"]

INLINE_MAX_BYTES = 1 << 20
"""A read of a single chunk up to this size decodes on the event loop (``auto`` mode)."""

COALESCE_GAP = 1 << 16
"""Inner-chunk byte ranges closer than this are fetched as one request."""

SMALL_READS = "small chunks from local files"
"""The executor profile of batches of small chunks (up to ``SMALL_CHUNK_BYTES``) that
workers read from local files and decode, in reads of several batches. Per chunk they
run about as much Python and as many system calls as codec, so threads contend for the
GIL; worker processes each have their own (on 16 cores, 16,384 chunks of 16 KB read at
1,599 MB/s with 16 processes, 356 with threads). ``auto`` measures threads against
processes by chunks per second and keeps the faster, where there are at least
:data:`SMALL_READS_MIN_WORKERS` codec workers."""

SMALL_READS_MIN_WORKERS = 2
"""Fewer workers than this (one), and small-chunk reads stay where ``auto`` puts them
unmeasured (inline or one thread). On 2 CPUs, since workers expand their own batches
(:class:`~asyncarr.core._slice_plan.SlicePlan`) and pre-fault their shared output, 2
processes read 16,384 chunks of 16 KB at ~380 MB/s against threads' ~290 (auto measured
14,092 vs 9,151 chunks/s); before that, processes gained too little for their pool (and
the gate was 4). The pool's worker processes share most of their memory with the
forkserver they fork from: a one-shot read's peak grows by ~0.23x that array's size in
proportional set size (PSS), ~0.45x in a plain sum of the processes' RSS."""


@dataclass(slots=True)
class DecodeJob:
    """One chunk to decode into the output.

    ``payload`` is the encoded bytes, a :class:`Store` with synchronous reads
    (the worker reads ``key`` from it), or ``None`` for a missing chunk
    (filled with the fill value).
    """

    key: str
    payload: bytes | memoryview | Store | None
    chunk_sel: Any
    out_sel: Any
    complete: bool
    coords: tuple[int, ...] = ()
    whole: bool = False
    """The output region is the whole chunk (not an edge chunk): decode straight into it."""
    shape: tuple[int, ...] | None = None
    """The chunk's shape where the array's chunks differ in shape (``None``: the shape of
    the pipeline it is decoded with). An array's jobs all have one or all have none."""


READ_HINT_MAX_BYTES = 64 << 10
"""Largest decoded chunk size for which local chunk files are read without an ``fstat``:
a bigger over-allocated read buffer costs more to shrink than the call saves."""


def decode_jobs(
    pipeline: CodecPipeline,
    jobs: list[DecodeJob],
    out: NDArray,
    fill: Any,
    cache: ChunkCache | None = None,
    cache_scope: tuple[str, str] = ("", ""),
) -> int:
    """Decode ``jobs`` into ``out``; runs in the codec executor (threads or processes).

    Whole chunks (no cache) are decoded straight into their place in ``out``: small ones
    as one batch where the codec can (see :meth:`CodecPipeline.decode_many_into`), others
    each as soon as it is read (so its encoded bytes are freed, and their memory reused,
    before the next chunk is read).
    """
    if jobs and jobs[0].shape is not None:  # chunks of a rectilinear grid: by their shape
        return _decode_by_shape(pipeline, jobs, out, fill, cache, cache_scope)
    decoded = 0
    batch: list[bytes | memoryview] = []
    places: list[NDArray] = []
    keys: list[str] = []
    nbytes = pipeline.spec.nbytes
    in_batches = pipeline.decodes_in_batches
    # Small chunks: read each file with one call, no size query first (a decoded size plus
    # headroom holds the usual encoded chunk; a bigger one is still read whole).
    hint = nbytes + 1024 if nbytes <= READ_HINT_MAX_BYTES else None
    # Large chunks decoded at once into ``out``: read into this thread's reused buffer.
    direct = cache is None and not in_batches
    for job in jobs:
        payload = job.payload
        if isinstance(payload, Store):
            if direct and job.whole:
                payload = payload.read_local_into(job.key, _read_buffer(nbytes))
            else:
                payload = payload.read_local(job.key, hint)
        if payload is None:
            out[job.out_sel] = fill
            continue
        decoded += 1
        if cache is None and job.whole:
            # (..., Ellipsis) keeps a view even for 0-d arrays
            place = out[(*job.out_sel, Ellipsis)]
            if not in_batches:
                pipeline.decode_into(payload, place, key=job.key)
                continue
            batch.append(payload)
            places.append(place)
            keys.append(job.key)
            continue
        chunk = pipeline.decode(payload, key=job.key)
        if cache is not None:
            namespace, root = cache_scope  # as ArrayContext.cache_key makes them
            cache.put((namespace, root + job.key), chunk)
        out[job.out_sel] = chunk[job.chunk_sel]
    if batch:
        populate_shared(places[0], places[-1])
        pipeline.decode_many_into(batch, places, keys)
    return decoded


def _decode_by_shape(
    pipeline: CodecPipeline,
    jobs: list[DecodeJob],
    out: NDArray,
    fill: Any,
    cache: ChunkCache | None,
    cache_scope: tuple[str, str],
) -> int:
    """:func:`decode_jobs` for chunks of differing shapes: each shape's jobs with that
    shape's pipeline."""
    by_shape: dict[tuple[int, ...] | None, list[DecodeJob]] = {}
    for job in jobs:
        by_shape.setdefault(job.shape, []).append(job)
        job.shape = None  # (decoded with the pipeline of its shape, below)
    return sum(
        decode_jobs(pipeline.for_shape(shape), group, out, fill, cache, cache_scope)
        for shape, group in by_shape.items()
    )


def decode_parts(pipeline: CodecPipeline, jobs: list[DecodeJob]) -> list[NDArray | None]:
    """Each job's part of its chunk (``None`` for a missing chunk), decoded and returned
    rather than placed into a shared output: how worker processes decode chunks of
    objects (strings, bytes), which cannot live in shared memory."""
    parts: list[NDArray | None] = []
    for job in jobs:
        payload = job.payload
        if isinstance(payload, Store):
            payload = payload.read_local(job.key)
        if payload is None:
            parts.append(None)
            continue
        chunk = pipeline.for_shape(job.shape).decode(payload, key=job.key)
        parts.append(chunk[job.chunk_sel])
    return parts


async def _decode_returning(
    ctx: ArrayContext,
    pipeline: CodecPipeline,
    jobs: list[DecodeJob],
    out: NDArray,
    mode: ResolvedMode,
    **run: Any,
) -> None:
    """:func:`decode_parts` in the executor (worker processes), then the parts placed here."""
    parts = await ctx.executor.run(decode_parts, pipeline, jobs, mode=mode, **run)
    for job, part in zip(jobs, parts, strict=True):
        out[job.out_sel] = ctx.fill if part is None else part


READ_BUFFER_MAX = 16 << 20
"""Largest per-thread buffer kept for reading whole large chunks (see :func:`_read_buffer`);
bigger chunks get a buffer of their own, freed after."""


def _read_buffer(nbytes: int) -> memoryview:
    """This thread's buffer for reading one encoded chunk of ``nbytes`` decoded bytes,
    decoded before the next is read: encoded chunks rarely exceed their decoded size by
    more than a few headers (one that does is still read, into fresh memory).

    Reused, it has no fresh memory to fault in per chunk, and the read needs no ``fstat``
    first. A/B on full reads of 256 KiB chunks (2 threads): blosc and v2 blosc ~3 % less
    CPU (85-88 vs 89-94 ms a read), zstd unchanged.
    """
    return thread_buffer("read", nbytes + nbytes // 64 + 4096, keep_up_to=READ_BUFFER_MAX)


def _is_whole(p: ChunkProjection) -> bool:
    """Whether ``p`` reads every element of a full-size (non-edge) chunk into an output
    region that is a view (slices only): only then can the chunk decode in place.

    An index array in ``out_sel`` makes ``out[out_sel]`` a copy, so decoding into it
    would lose the data.
    """
    return (
        p.is_complete
        and all(
            isinstance(s, slice) and s.start == 0 and s.stop == c and s.step == 1
            for s, c in zip(p.chunk_sel, p.shape, strict=True)
        )
        and all(isinstance(s, slice) for s in p.out_sel)
    )


def _batched(items: Iterable[Any], size: int) -> Iterator[list[Any]]:
    batch: list[Any] = []
    for item in items:
        batch.append(item)
        if len(batch) >= size:
            yield batch
            batch = []
    if batch:
        yield batch


async def read_selection(ctx: ArrayContext, selection: Selection) -> NDArray:
    """Read ``selection`` into a new array of ``selection.result_shape``."""
    executor = ctx.executor
    pipeline = ctx.partial_shards.inner if ctx.partial_shards is not None else ctx.pipeline
    # Shared memory only when worker processes will decode into the output.
    # One routing decision per read: every job below is pinned to ``mode``, so a buffer
    # allocated as private (no process will write into it) stays private.
    total = count_chunks(selection, ctx.chunking)
    if total == 1 and _one_local_chunk_inline(ctx, selection):
        return _read_one_local_chunk(ctx, selection)
    measured = _measured(ctx, total)
    mode = (
        executor.mode_for(False, profile=SMALL_READS)
        if measured
        else executor.mode_for(pipeline.releases_gil)
    )
    # Worker processes decode objects (strings, bytes) and send them back (no shared memory)
    shared = mode == "processes" and not ctx.dtype.hasobject
    try:
        out = executor.allocate(selection.out_shape, ctx.dtype, shared=shared, unguarded=not shared)
    except (ValueError, MemoryError, OverflowError) as exc:
        nbytes = math.prod(selection.out_shape) * ctx.dtype.itemsize
        raise SelectionError(
            f"the selection {selection.result_shape} of {ctx.dtype} needs {nbytes} bytes, "
            f"more than can be allocated: {exc}"
        ) from exc
    try:
        if math.prod(selection.out_shape) > 0:
            if ctx.partial_shards is not None:
                await _read_sharded(ctx, selection, out, mode)
            else:
                await _read_chunks(ctx, selection, out, mode, total, measured=measured)
    finally:
        out = executor.finalize(out)
    if selection.reshaped:
        out = out.reshape(selection.result_shape)
    return out


def _one_local_chunk_inline(ctx: ArrayContext, selection: Selection) -> bool:
    """Whether a read of one chunk (slices only) runs here and now, with no scheduler or
    executor call: a small chunk (``auto`` decodes it inline), not sharded, from a store
    that reads synchronously (local files, memory). The random-read latency path."""
    return (
        ctx.partial_shards is None
        and ctx.store.supports_sync_reads
        and _one_chunk_inline(ctx)
        and not selection.is_orthogonal_array
    )


def _one_chunk_inline(ctx: ArrayContext) -> bool:
    """Whether ``auto`` decodes a read of one chunk on the event loop (a small chunk: a
    thread hand-off would cost more than it saves)."""
    return ctx.pipeline.spec.nbytes <= INLINE_MAX_BYTES and ctx.executor.config.mode == "auto"


def _read_one_local_chunk(ctx: ArrayContext, selection: Selection) -> NDArray:
    out: NDArray = np.empty(selection.out_shape, ctx.dtype)
    if out.size:
        plan = ctx.slice_plan(selection)
        only = plan.only_chunk()
        job = next(_planned_jobs([only] if only is not None else plan.chunks(), ctx.store))
        cache = ctx.cache
        if cache is None or not _cache_lookup(ctx, job, out):
            decode_jobs(ctx.pipeline, [job], out, ctx.fill, cache, ctx.cache_scope)
    return out.reshape(selection.result_shape) if selection.reshaped else out


def _measured(ctx: ArrayContext, total: int) -> bool:
    """Whether the batches of a read of ``total`` chunks are ``auto``'s measured work
    (:data:`SMALL_READS`): small chunks from local files, in several batches (so that they
    run concurrently and their rate means something), with no chunk cache (worker
    processes cannot fill it), on enough workers for processes to win."""
    if (
        total == 1  # a random single-chunk read: the usual case, decided first
        or ctx.executor.config.mode != "auto"
        or ctx.workers() < SMALL_READS_MIN_WORKERS
        or ctx.partial_shards is not None
        or ctx.cache is not None
        or ctx.dtype.hasobject
        or not ctx.small_local_chunks(writes=False)
    ):
        return False
    return total > ctx.batch_size(ctx.pipeline.spec.nbytes, total)


def _cache_lookup(ctx: ArrayContext, job: DecodeJob, out: NDArray) -> bool:
    cache = ctx.cache
    if cache is None:
        return False
    hit = cache.get(ctx.cache_key(job.key))
    if hit is None:
        return False
    out[job.out_sel] = (
        hit if job.complete and not isinstance(job.chunk_sel, tuple) else hit[job.chunk_sel]
    )
    return True


def _planned_jobs(chunks: Iterable[PlannedChunk], payload: Store | None) -> Iterator[DecodeJob]:
    """A :class:`DecodeJob` for each planned chunk (see :class:`SlicePlan`)."""
    for key, chunk_sel, out_sel, complete, whole, shape in chunks:
        yield DecodeJob(key, payload, chunk_sel, out_sel, complete, whole=whole, shape=shape)


async def _read_chunks(
    ctx: ArrayContext,
    selection: Selection,
    out: NDArray,
    mode: ResolvedMode,
    total: int,
    *,
    measured: bool = False,
) -> None:
    size = ctx.batch_size(ctx.pipeline.spec.nbytes, total)
    executor = ctx.executor
    cache = ctx.cache
    if total == 1 and _one_chunk_inline(ctx):
        mode = "inline"
    # Workers read chunks themselves: threads from local files and memory, worker processes
    # from local files (the store travels to them by value: its root and options). Otherwise
    # the bytes are fetched here and shipped.
    local = ctx.store.supports_sync_reads and (
        mode != "processes" or ctx.store.supports_local_files
    )
    worker_cache = cache if mode != "processes" else None
    returning = mode == "processes" and ctx.dtype.hasobject

    def jobs() -> Iterator[DecodeJob]:
        if not selection.is_orthogonal_array:
            yield from _planned_jobs(ctx.plan_slices(selection), None)
            return
        varying = ctx.varying
        for p in project(selection, ctx.chunking):
            chunk_sel, out_sel = p.index_pair()
            yield DecodeJob(
                ctx.chunk_key(p.coords),
                None,
                chunk_sel,
                out_sel,
                p.is_complete,
                whole=_is_whole(p),
                shape=p.shape if varying else None,
            )

    async def run_batch(batch: list[DecodeJob]) -> None:
        if cache is not None:
            batch = [j for j in batch if not _cache_lookup(ctx, j, out)]
            if not batch:
                return
        if local:
            for j in batch:
                j.payload = ctx.store
        else:
            payloads = await gather_all(
                *(
                    ctx.io.get(j.key, max_size=ctx.pipeline_for(j.shape).encoded_bound)
                    for j in batch
                )
            )
            for j, data in zip(batch, payloads, strict=True):
                j.payload = data
        if returning:
            await _decode_returning(ctx, ctx.pipeline, batch, out, mode, releases_gil=False)
            return
        await decode(decode_jobs, len(batch), batch, out, ctx.fill, worker_cache, ctx.cache_scope)

    async def decode(fn: Callable[..., int], chunks: int, *args: Any) -> None:
        """``fn(pipeline, *args)`` for ``chunks`` chunks, in the read's executor mode."""
        await executor.run(
            fn,
            ctx.pipeline,
            *args,
            releases_gil=ctx.pipeline.releases_gil and not measured,
            profile=SMALL_READS if measured else None,
            units=chunks if measured else None,
            mode=mode,
        )

    if (
        local
        and cache is None
        and total > size
        and not selection.is_orthogonal_array
        and not returning
    ):
        # Workers expand their own batches from the plan (no per-chunk work here).
        plan = ctx.slice_plan(selection)

        async def run_span(span: range) -> None:
            await decode(
                decode_planned, len(span), ctx.store, plan, span.start, span.stop, out, ctx.fill
            )

        spans = (range(i, min(i + size, total)) for i in range(0, total, size))
        await bounded_for_each(run_span, spans, limit=_batch_limit(ctx, total, size))
        return
    if total <= size:  # one batch (a random single-chunk read): no scheduler machinery
        await run_batch(list(jobs()))
        return
    await bounded_for_each(run_batch, _batched(jobs(), size), limit=_batch_limit(ctx, total, size))


def _batch_limit(ctx: ArrayContext, total: int, size: int) -> int:
    """Batches of ``size`` chunks in flight at once: enough to keep every worker (and the
    store's concurrency) busy, never more than there are batches."""
    limit = min(
        max(2 * ctx.workers(), math.ceil(ctx.io_concurrency() / size)), math.ceil(total / size)
    )
    return max(1, limit)


def decode_planned(
    pipeline: CodecPipeline,
    store: Store,
    plan: SlicePlan,
    start: int,
    stop: int,
    out: NDArray,
    fill: Any,
) -> int:
    """:func:`decode_jobs` for chunks ``start..stop`` of ``plan``, read from ``store`` by
    the worker that runs this (threads, or processes for local files)."""
    return decode_jobs(pipeline, list(_planned_jobs(plan.chunks(start, stop), store)), out, fill)


# -- sharded arrays ---------------------------------------------------------------------


def _compose(outer: DimSelection, inner: DimSelection) -> DimSelection:
    """Output positions of ``inner`` (relative to a shard's output block ``outer``)."""
    if isinstance(outer, slice) and isinstance(inner, slice):
        return slice(outer.start + inner.start, outer.start + inner.stop, 1)
    outer_idx = (
        np.arange(outer.start, outer.stop, outer.step) if isinstance(outer, slice) else outer
    )
    inner_idx = (
        np.arange(inner.start, inner.stop, inner.step) if isinstance(inner, slice) else inner
    )
    return np.asarray(outer_idx[inner_idx], dtype=np.intp)


def _inner_jobs(
    ctx: ArrayContext, codec: ShardingCodec, shard: ChunkProjection, key: str
) -> list[DecodeJob]:
    inner_sel = local_selection(shard.chunk_sel, shard.shape)
    jobs = []
    for p in project(inner_sel, codec.chunk_shape):
        out_dims = tuple(_compose(o, i) for o, i in zip(shard.out_sel, p.out_sel, strict=True))
        composed = ChunkProjection(p.coords, p.chunk_sel, out_dims, p.is_complete, p.shape)
        chunk_sel, out_sel = composed.index_pair()
        label = f"{key}[{','.join(map(str, p.coords))}]"
        whole = _is_whole(composed)
        jobs.append(DecodeJob(label, None, chunk_sel, out_sel, p.is_complete, p.coords, whole))
    return jobs


def coalesce(
    ranges: list[tuple[int, int]], gap: int = COALESCE_GAP
) -> list[tuple[int, int, list[int]]]:
    """Merge (start, end) ranges closer than ``gap``; returns (start, end, member indices)."""
    order = sorted(range(len(ranges)), key=lambda i: ranges[i][0])
    merged: list[tuple[int, int, list[int]]] = []
    for i in order:
        s, e = ranges[i]
        if merged and s - merged[-1][1] <= gap:
            ms, me, members = merged[-1]
            merged[-1] = (ms, max(me, e), [*members, i])
        else:
            merged.append((s, e, [i]))
    return merged


def _split_shard(
    codec: ShardingCodec,
    key: str,
    data: bytes | None,
    jobs: list[DecodeJob],
    mode: ResolvedMode,
) -> None:
    """Give each job its inner chunk from a whole shard's bytes (``None``: no shard)."""
    if data is None:
        for j in jobs:
            j.payload = None
        return
    parts = codec.split_parts(data, key=key)
    for j in jobs:
        part = parts.get(j.coords)
        # memoryviews avoid copies on threads but cannot be pickled to processes
        j.payload = bytes(part) if part is not None and mode == "processes" else part


async def _read_sharded(
    ctx: ArrayContext, selection: Selection, out: NDArray, mode: ResolvedMode
) -> None:
    executor = ctx.executor
    auto = executor.config.mode == "auto"
    local = ctx.store.supports_sync_reads

    async def read_shard(shard: ChunkProjection) -> None:
        key = ctx.chunk_key(shard.coords)
        codec = ctx.shard_codec(shard.shape)
        inner = codec.inner
        n_inner = codec.n_inner()
        jobs = _inner_jobs(ctx, codec, shard, key)
        small = n_shards == 1 and len(jobs) * inner.spec.nbytes <= INLINE_MAX_BYTES and auto
        whole = len(jobs) == n_inner
        decode: Callable[..., int] = decode_jobs
        if small and local:  # read right here from a synchronous store: no hand-offs
            if whole:
                _split_shard(codec, key, ctx.store.read_local(key), jobs, mode)
            else:
                _fetch_inner_ranges_local(ctx.store, codec, key, jobs)
        elif local and mode == "threads":
            # Only the index is read here; each worker then reads the inner chunks of its
            # batch itself (one ``preadv`` per contiguous run) and decodes them: decoding
            # starts as soon as the first batch is read, not once the whole shard is.
            index = _shard_index(codec, key, await ctx.io.get(key, codec.index_range()), jobs)
            decode = functools.partial(_read_decode_local, ctx.store, key, index)
        elif whole:
            data = await ctx.io.get(key, max_size=codec.max_encoded_size(0))
            _split_shard(codec, key, data, jobs, mode)
        else:
            await _fetch_inner_ranges(ctx, codec, key, jobs)
        if small:
            # a small read from one shard: decoding here beats a thread hand-off
            decode_jobs(inner, jobs, out, ctx.fill)
            return
        # Several executor calls per shard, so one shard's inner chunks decode in parallel.
        size = ctx.batch_size(inner.spec.nbytes, max(len(jobs), 1) * n_shards)
        if mode == "processes" and ctx.dtype.hasobject:
            await gather_all(
                *(
                    _decode_returning(ctx, inner, batch, out, mode, releases_gil=False)
                    for batch in _batched(jobs, size)
                )
            )
            return
        await gather_all(
            *(
                executor.run(
                    decode,
                    inner,
                    batch,
                    out,
                    ctx.fill,
                    releases_gil=inner.releases_gil,
                    mode=mode,
                )
                for batch in _batched(jobs, size)
            )
        )

    n_shards = count_chunks(selection, ctx.chunking)
    if n_shards == 1:  # no scheduler machinery for one shard
        for shard in project(selection, ctx.chunking):
            await read_shard(shard)
        return
    limit = max(2 * ctx.workers(), ctx.io_concurrency() // 4)
    await bounded_for_each(read_shard, project(selection, ctx.chunking), limit=limit)


_RangePlan = tuple[list[tuple[int, int]], list[DecodeJob], list[tuple[int, int, list[int]]]]
"""``(wanted, wanted_jobs, groups)``: the inner chunks to fetch, their jobs, coalesced."""


def _shard_index(
    codec: ShardingCodec, key: str, raw_index: bytes | None, jobs: list[DecodeJob]
) -> NDArray | None:
    """A shard's decoded index; ``None`` (and ``None`` payloads for ``jobs``) when the
    shard does not exist."""
    if raw_index is None:
        for j in jobs:
            j.payload = None
        return None
    if len(raw_index) < codec.index_size:
        raise CodecError(
            f"shard is {len(raw_index)} bytes, shorter than its {codec.index_size}-byte index",
            key=key,
            codec="sharding_indexed",
        )
    return codec.decode_index(raw_index, key=key)


def _plan_inner_ranges(
    codec: ShardingCodec, key: str, raw_index: bytes | None, jobs: list[DecodeJob]
) -> _RangePlan | None:
    """From a shard's raw index: the byte ranges ``jobs`` need, coalesced.

    Jobs whose inner chunk is missing (or the whole shard, when there is no
    index) get a ``None`` payload. Returns ``None`` when nothing is left to fetch.
    """
    index = _shard_index(codec, key, raw_index, jobs)
    return None if index is None else _plan_from_index(index, jobs)


def _plan_from_index(index: NDArray, jobs: list[DecodeJob]) -> _RangePlan | None:
    wanted: list[tuple[int, int]] = []
    wanted_jobs: list[DecodeJob] = []
    for j in jobs:
        off, size = (int(v) for v in index[j.coords])
        if off == int(MISSING):
            j.payload = None
            continue
        wanted.append((off, off + size))
        wanted_jobs.append(j)
    if not wanted:
        return None
    return wanted, wanted_jobs, coalesce(wanted)


def _assign_inner_ranges(
    wanted: list[tuple[int, int]],
    wanted_jobs: list[DecodeJob],
    groups: list[tuple[int, int, list[int]]],
    blobs: Sequence[bytes | memoryview],
    *,
    views: bool = False,
) -> None:
    """Give each job its part of the fetched runs: copies (they may travel to worker
    processes), or with ``views`` memoryviews into the runs (decoded in this process)."""
    for (s, _e, members), blob in zip(groups, blobs, strict=True):
        whole = memoryview(blob) if views else blob
        for m in members:
            a, b = wanted[m]
            part = whole[a - s : b - s]
            wanted_jobs[m].payload = part if views else bytes(part)


def _corrupt_index(key: str, end: int, size: int | None) -> CodecError:
    """``size``: the shard's size, where known (``None``: it ends before some range starts)."""
    where = f"of a {size}-byte shard" if size is not None else "past the end of the shard"
    return CodecError(
        f"corrupt shard index: inner chunks end at byte {end} {where}",
        key=key,
        codec="sharding_indexed",
    )


async def _fetch_inner_ranges(
    ctx: ArrayContext, codec: ShardingCodec, key: str, jobs: list[DecodeJob]
) -> None:
    # No expected lengths on these reads: adapters already check bodies against the
    # announced length, so a short result here means the shard itself is too short.
    plan = _plan_inner_ranges(codec, key, await ctx.io.get(key, codec.index_range()), jobs)
    if plan is None:
        return
    wanted, wanted_jobs, groups = plan
    ranges = [ByteRange(s, e) for s, e, _ in groups]
    lengths = [e - s for s, e, _ in groups]
    blobs = await ctx.io.get_ranges(key, ranges)
    if blobs is not None and any(len(b) != n for b, n in zip(blobs, lengths, strict=True)):
        # Short: either the index points past the end of the shard (corrupt), or a
        # body was cut off in transit (transient: read again, with length checks).
        size = await ctx.io.getsize(key)
        end = max(e for _, e, _ in groups)
        if end > size:
            raise _corrupt_index(key, end, size)
        blobs = await ctx.io.get_ranges(key, ranges, expected_lengths=lengths)
    if blobs is None:
        raise StoreError("shard disappeared between index and data reads", key=key)
    _assign_inner_ranges(wanted, wanted_jobs, groups, blobs)


def _fetch_inner_ranges_local(
    store: Store, codec: ShardingCodec, key: str, jobs: list[DecodeJob]
) -> None:
    """:func:`_fetch_inner_ranges` for stores with synchronous reads, in the calling
    thread: a small read (one inner chunk) is two cheap reads (two ``pread`` calls on
    local files), cheaper than two thread hand-offs."""
    plan = _plan_inner_ranges(
        codec, key, _first(store.read_local_ranges(key, [codec.index_range()])), jobs
    )
    _fetch_planned_local(store, key, plan)


def _read_decode_local(
    store: Store,
    key: str,
    index: NDArray | None,
    inner: CodecPipeline,
    jobs: list[DecodeJob],
    out: NDArray,
    fill: Any,
) -> int:
    """In a worker thread: read the inner chunks ``jobs`` need from a shard of a store
    with synchronous reads (``index``: the shard's decoded index, ``None`` for no shard),
    then decode them into ``out``."""
    if index is not None:
        _fetch_planned_local(store, key, _plan_from_index(index, jobs))
    return decode_jobs(inner, jobs, out, fill)


def _fetch_planned_local(store: Store, key: str, plan: _RangePlan | None) -> None:
    if plan is None:
        return
    wanted, wanted_jobs, groups = plan
    ranges = [ByteRange(s, e) for s, e, _ in groups]
    blobs = store.read_local_ranges_into(key, ranges, _fetch_buffer)
    if blobs is None:
        raise StoreError("shard disappeared between index and data reads", key=key)
    for (s, e, _), blob in zip(groups, blobs, strict=True):
        if len(blob) != e - s:  # a local file is never cut off in transit: it is too short
            raise _corrupt_index(key, e, s + len(blob) if len(blob) else None)
    _assign_inner_ranges(wanted, wanted_jobs, groups, blobs, views=True)


FETCH_BUFFER_MAX = 16 << 20
"""Largest per-thread buffer kept for reading inner chunks (a batch of them is about
``batch_bytes``, 4 MiB by default); a bigger read gets a buffer of its own, freed after.
So each codec worker thread keeps at most this much between reads."""


def _fetch_buffer(nbytes: int) -> memoryview:
    """A per-thread buffer of ``nbytes`` for reading encoded inner chunks, reused while
    the previous contents are no longer needed (its views were decoded in the same
    call): no fresh memory to fault in for every batch.

    A slot of its own, not the codec pipeline's scratch buffer, which decoding may use
    while these bytes are still being read from.
    """
    return thread_buffer("fetch", nbytes, keep_up_to=FETCH_BUFFER_MAX)


def _first(parts: list[bytes] | None) -> bytes | None:
    return None if parts is None else parts[0]
