"""Per-array I/O context: the store behind its runtime guard, keys, pipeline, executor."""

from __future__ import annotations

import asyncio
import hashlib
import json
import math
import weakref
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from asyncarr.abc import Store
from asyncarr.core._chunk_grid import ChunkGrid, DimChunking
from asyncarr.core._indexing import Selection
from asyncarr.core._metadata import ArrayMetadata
from asyncarr.core._pipeline import CodecPipeline
from asyncarr.core._sharding import ShardingCodec
from asyncarr.core._slice_plan import PlannedChunk, SlicePlan
from asyncarr.core._types_bridge import chunk_spec
from asyncarr.runtime import (
    ChunkCache,
    CodecExecutor,
    ManagedStore,
    get_chunk_cache,
    get_executor,
    managed,
)

__all__ = ["SMALL_CHUNK_BYTES", "ArrayContext", "PlannedChunk", "chunk_lock"]

SMALL_CHUNK_BYTES = 64 << 10
"""Chunks up to this size, read from or written to local files in batches, are measured
work in ``auto`` mode: per chunk, workers run about as much Python and as many system
calls (open, read or write, close) as codec, so threads contend for the GIL however well
the codec releases it. ``auto`` measures threads against worker processes by chunks per
second and keeps the faster (see ``SMALL_READS`` and ``SMALL_WRITES``)."""


@dataclass
class ArrayContext:
    """What the read and write paths need for one array (rebuilt on metadata change)."""

    store: Store
    path: str
    meta: ArrayMetadata
    write_empty_chunks: bool = False
    io: ManagedStore = field(init=False)
    pipeline: CodecPipeline = field(init=False)
    """The codecs of the first chunk (every chunk's, unless :attr:`varying`:
    :meth:`pipeline_for`)."""
    chunking: tuple[DimChunking, ...] = field(init=False)
    """The chunk grid as indexing sees it (:attr:`ChunkGrid.chunking`)."""
    varying: bool = field(init=False)
    """Whether the array's chunks (shards) differ in shape (a rectilinear grid whose edges
    differ within the shape): then each chunk's shape picks its pipeline."""
    sharding: ShardingCodec | None = field(init=False)
    """The sharding codec of a sharded array (its inner chunks are the array's chunks)."""
    partial_shards: ShardingCodec | None = field(init=False)
    """:attr:`sharding` where shards can be read and written inner chunk by inner chunk:
    nothing but the sharding codec in the chain. An array->array codec before it (e.g.
    ``transpose``) or a bytes->bytes one after it (e.g. ``zstd`` over the whole shard, as
    zarr-python writes by default for a sharding "serializer") makes every shard one
    chunk for the whole codec chain: read whole, decoded through every codec."""
    _key_parts: tuple[str, str, str] = field(init=False, repr=False)
    """How chunk keys are spelled: (head, separator, the key of a 0-d array's chunk)."""
    cache_namespace: str = field(init=False)
    """A digest of the array's metadata but its shape and attributes: an array re-created
    at the same place with another dtype, fill value or codecs never sees the old one's
    decoded chunks (a resize keeps the namespace). The other half of a chunk-cache key is
    the chunk's place, :attr:`cache_root` plus its store key (:meth:`cache_key`)."""
    cache_root: str = field(init=False)
    """Where the store's keys are, as the chunk cache names them
    (:func:`store_cache_root`)."""

    def __post_init__(self) -> None:
        self.io = managed(self.store)
        self.pipeline = CodecPipeline(self.meta.codecs, chunk_spec(self.meta))
        self.chunking = self.grid.chunking
        self.varying = self.grid.uniform_shape is None
        ab = self.pipeline.ab
        self.sharding = ab if isinstance(ab, ShardingCodec) else None
        whole_chain = not self.pipeline.aa and not self.pipeline.bb
        self.partial_shards = self.sharding if whole_chain else None
        document = {
            k: v for k, v in self.meta.to_json().items() if k not in ("attributes", "shape")
        }
        digest = hashlib.blake2b(
            json.dumps(document, sort_keys=True, default=str).encode(), digest_size=8
        ).hexdigest()
        self.cache_namespace = digest
        self.cache_root = store_cache_root(self.store)
        enc = self.meta.chunk_key_encoding
        if enc.kind == "default":
            head = self.prefix + "c"
            self._key_parts = (
                head + enc.separator if self.meta.shape else head,
                enc.separator,
                head,
            )
        else:
            self._key_parts = (self.prefix, enc.separator, self.prefix + "0")

    @property
    def grid(self) -> ChunkGrid:
        return self.meta.chunk_grid

    def pipeline_for(self, shape: tuple[int, ...] | None) -> CodecPipeline:
        """The pipeline of chunks of ``shape`` (``None``: the array's one chunk shape)."""
        return self.pipeline if shape is None else self.pipeline.for_shape(shape)

    def shard_codec(self, shape: tuple[int, ...] | None) -> ShardingCodec:
        """:attr:`partial_shards` for shards of ``shape`` (``None``: the array's one)."""
        assert self.partial_shards is not None
        if shape is None or not self.varying:
            return self.partial_shards
        codec = self.pipeline.for_shape(shape).ab
        assert isinstance(codec, ShardingCodec)
        return codec

    @property
    def executor(self) -> CodecExecutor:
        return get_executor()

    @property
    def cache(self) -> ChunkCache | None:
        return get_chunk_cache()

    @property
    def prefix(self) -> str:
        return f"{self.path}/" if self.path else ""

    def chunk_key(self, coords: tuple[int, ...]) -> str:
        return self.prefix + self.meta.chunk_key(coords)

    def slice_plan(self, selection: Selection) -> SlicePlan:
        """The chunks an all-slice selection touches (:class:`SlicePlan`)."""
        bounds = []
        for d in selection.dims:
            assert isinstance(d, slice)
            bounds.append((d.start, d.stop, d.step))
        head, sep, zero_d_key = self._key_parts
        return SlicePlan(
            tuple(bounds), self.meta.shape, self.chunking, head, sep, zero_d_key, self.varying
        )

    def plan_slices(self, selection: Selection) -> Iterator[PlannedChunk]:
        """Every chunk an all-slice selection touches, in C order of their coordinates."""
        return self.slice_plan(selection).chunks()

    def forget_cached(self, key: str) -> None:
        """Drop any cached decoded copy of the chunk at ``key`` (it was just changed)."""
        cache = self.cache
        if cache is not None:
            cache.invalidate(self.cache_key(key))

    def cache_key(self, key: str) -> tuple[str, str]:
        """The chunk-cache key of the chunk at ``key``: :attr:`cache_namespace` and where
        the chunk is (:attr:`cache_root` + ``key``)."""
        return (self.cache_namespace, self.cache_root + key)

    @property
    def cache_scope(self) -> tuple[str, str]:
        """``(cache_namespace, cache_root)``: what a codec worker needs to make
        :meth:`cache_key` for the chunks it caches."""
        return (self.cache_namespace, self.cache_root)

    @property
    def fill(self) -> Any:
        return self.pipeline.spec.fill_value

    @property
    def dtype(self) -> np.dtype[Any]:
        return self.meta.dtype

    def io_concurrency(self) -> int:
        return max(1, self.store.limits.max_concurrency)

    def workers(self) -> int:
        return max(1, self.executor.max_workers)

    def small_local_chunks(self, *, writes: bool) -> bool:
        """Whether the chunks are at most :data:`SMALL_CHUNK_BYTES` and the workers read
        (or, with ``writes``, write) them as local files themselves: ``auto``'s measured
        work where it is in batches."""
        store = self.store
        direct = store.supports_sync_writes if writes else store.supports_sync_reads
        return (
            store.supports_local_files and direct and self.pipeline.spec.nbytes <= SMALL_CHUNK_BYTES
        )

    def batch_size(self, chunk_nbytes: int, total: int) -> int:
        """Chunks per executor call: about ``batch_bytes`` of decoded data, but at least
        ~4 calls per worker over the ``total`` chunks, so the pool stays busy."""
        per_batch = max(1, self.executor.config.batch_bytes // max(1, chunk_nbytes))
        spread = max(1, math.ceil(total / (4 * self.workers())))
        return max(1, min(per_batch, spread))


def store_cache_root(store: Store) -> str:
    """The store's root as chunk-cache keys spell it: its canonical :attr:`Store.location`
    (symbolic links resolved, read-only or not), so every handle on the same data shares
    cached chunks and their invalidation, whichever store object, path spelling or group
    it was opened through (a group's store root plus ``x/c/0`` is the array ``x``'s store
    root plus ``c/0``). A store with no known location is its own place."""
    location = store.location
    if location is None:
        location = f"{type(store).__name__}@{id(store):x}"
    return location.rstrip("/") + "/"


def forget_cached_prefix(store: Store, prefix: str) -> None:
    """Drop every cached decoded chunk under ``prefix`` of ``store`` (a node and everything
    below it was deleted or overwritten), whichever handle cached it."""
    cache = get_chunk_cache()
    if cache is None:
        return
    start = store_cache_root(store) + prefix
    cache.invalidate_where(
        lambda k: (
            isinstance(k, tuple)
            and len(k) == 2
            and isinstance(k[1], str)
            and k[1].startswith(start)
        )
    )


_locks: weakref.WeakKeyDictionary[
    asyncio.AbstractEventLoop, weakref.WeakValueDictionary[str, asyncio.Lock]
] = weakref.WeakKeyDictionary()


def chunk_lock(store: Store, key: str) -> asyncio.Lock:
    """The in-process lock serialising read-modify-writes of one chunk (per event loop)."""
    loop = asyncio.get_running_loop()
    table = _locks.get(loop)
    if table is None:
        table = _locks[loop] = weakref.WeakValueDictionary()
    name = f"{store.endpoint_key}\x00{key}"
    lock = table.get(name)
    if lock is None:
        lock = asyncio.Lock()
        table[name] = lock
    return lock
