"""The runtime (layer L3): fan-out, retries, adaptive limits, sync portal, caches, executor.

The core reaches stores only through :func:`managed` (a limiter slot, a
per-attempt timeout, retries and statistics around every call), fans work out
with :func:`bounded_map` / :func:`bounded_for_each`, and the blocking API
runs on the :class:`SyncPortal`. CPU-bound codec work goes to the
:class:`CodecExecutor`.
"""

from asyncarr.runtime._cache import CacheStats, ChunkCache, get_chunk_cache, set_chunk_cache
from asyncarr.runtime._executor import (
    AutoDecision,
    CodecExecutor,
    ResolvedMode,
    get_executor,
    set_executor,
)
from asyncarr.runtime._limiter import AdaptiveLimiter, limiter_for
from asyncarr.runtime._managed import ManagedStore, managed
from asyncarr.runtime._portal import SyncPortal, get_portal
from asyncarr.runtime._retry import attempt_timeout, backoff_delay, call_with_retry
from asyncarr.runtime._scheduler import bounded_for_each, bounded_map, gather_all
from asyncarr.runtime._shm import populate as populate_shared
from asyncarr.runtime._stats import StoreStats, store_stats
from asyncarr.stores import _layered

# Layered containers make several requests of their base store per operation (footers,
# manifests, commits): each goes through the base's ManagedStore (its endpoint's limits,
# timeouts, retries and statistics), as the core's own requests do.
_layered.use_runtime_io(managed)

__all__ = [
    "AdaptiveLimiter",
    "AutoDecision",
    "CacheStats",
    "ChunkCache",
    "CodecExecutor",
    "ManagedStore",
    "ResolvedMode",
    "StoreStats",
    "SyncPortal",
    "attempt_timeout",
    "backoff_delay",
    "bounded_for_each",
    "bounded_map",
    "gather_all",
    "call_with_retry",
    "get_chunk_cache",
    "get_executor",
    "get_portal",
    "limiter_for",
    "managed",
    "populate_shared",
    "set_chunk_cache",
    "set_executor",
    "store_stats",
]
