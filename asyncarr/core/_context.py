"""Per-array I/O context: the store behind its runtime guard, keys, pipeline, executor."""

from __future__ import annotations

import asyncio
import weakref
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from asyncarr.abc import Store
from asyncarr.core._metadata import ArrayMetadata
from asyncarr.core._pipeline import CodecPipeline
from asyncarr.core._sharding import ShardingCodec
from asyncarr.core._types_bridge import chunk_spec
from asyncarr.runtime import (
    ChunkCache,
    CodecExecutor,
    ManagedStore,
    get_chunk_cache,
    get_executor,
    managed,
)

__all__ = ["ArrayContext", "chunk_lock"]


@dataclass
class ArrayContext:
    """What the read and write paths need for one array (rebuilt on metadata change)."""

    store: Store
    path: str
    meta: ArrayMetadata
    write_empty_chunks: bool = False
    io: ManagedStore = field(init=False)
    pipeline: CodecPipeline = field(init=False)
    sharding: ShardingCodec | None = field(init=False)
    cache_namespace: str = field(init=False)
    """The store's identity in the chunk cache: its repr names the bucket, root or data
    it holds (endpoint_key would not). Computed once: reads pass it per batch."""

    def __post_init__(self) -> None:
        self.io = managed(self.store)
        self.pipeline = CodecPipeline(self.meta.codecs, chunk_spec(self.meta))
        ab = self.pipeline.ab
        self.sharding = ab if isinstance(ab, ShardingCodec) else None
        self.cache_namespace = f"{type(self.store).__name__}:{self.store!r}"

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

    def cache_key(self, key: str) -> tuple[str, str]:
        """The chunk-cache key of ``key``: :attr:`cache_namespace` plus the key."""
        return (self.cache_namespace, key)

    @property
    def fill(self) -> Any:
        return self.pipeline.spec.fill_value

    @property
    def dtype(self) -> np.dtype[Any]:
        return self.meta.dtype

    def io_concurrency(self) -> int:
        return max(1, self.store.limits.max_concurrency)


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
