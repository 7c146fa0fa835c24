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


def _forget_layered(roots: list[str], keys: set[str] | None) -> None:
    """Drop cached chunks at ``root + key`` (any key under a root when ``keys`` is None)."""
    cache = get_chunk_cache()
    if cache is None:
        return
    if keys is None:
        starts = tuple(roots)
        cache.invalidate_where(
            lambda k: isinstance(k, tuple) and len(k) == 2 and str(k[1]).startswith(starts)
        )
        return
    places = {root + key for root in roots for key in keys}
    cache.invalidate_where(lambda k: isinstance(k, tuple) and len(k) == 2 and k[1] in places)


# Layered containers make several requests of their base store per operation (footers,
# manifests, commits): each goes through the base's ManagedStore (its endpoint's limits,
# timeouts, retries and statistics), as the core's own requests do. When a handle moves
# to a newer generation, chunks it cached that commits changed are forgotten.
_layered.use_runtime(
    io=managed, caching=lambda: get_chunk_cache() is not None, forget=_forget_layered
)

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
