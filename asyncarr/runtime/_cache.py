"""Decoded-chunk LRU cache with a byte budget (layer L3)."""

from __future__ import annotations

import os
import sys
import threading
import weakref
from collections import OrderedDict
from collections.abc import Callable, Hashable
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from asyncarr.config import CacheConfig
from asyncarr.errors import ConfigError

__all__ = ["CacheStats", "ChunkCache", "footprint", "get_chunk_cache", "set_chunk_cache"]


def footprint(arr: npt.NDArray[Any]) -> int:
    """The memory an array holds: its buffer, plus for strings (numpy ``StringDType``) their
    text and for object arrays the objects' sizes (bytes and text by length)."""
    size = int(arr.nbytes)
    if not arr.dtype.hasobject:
        return size
    if arr.dtype.kind == "T":
        return size + int(np.strings.str_len(arr).sum())
    for value in arr.flat:
        if isinstance(value, bytes | str):
            size += len(value) + 33
        elif isinstance(value, np.ndarray):
            size += int(value.nbytes) + 112
        else:
            size += sys.getsizeof(value)
    return size


@dataclass(frozen=True, slots=True)
class CacheStats:
    """A snapshot of a :class:`ChunkCache`'s counters."""

    hits: int
    misses: int
    evictions: int
    current_bytes: int
    max_bytes: int
    entries: int


class ChunkCache:
    """Decoded-chunk LRU with a byte budget, shared across arrays, thread-safe.

    Cached arrays are read-only: :meth:`put` stores a non-writeable copy
    (or, with ``copy=False``, marks the given array non-writeable), so no
    reader can corrupt what another reader gets. A value larger than the
    whole budget is not cached. Keys are any hashable, typically
    ``(store endpoint, array path, chunk coords)``.
    """

    def __init__(self, max_bytes: int) -> None:
        if isinstance(max_bytes, bool) or not isinstance(max_bytes, int) or max_bytes < 0:
            raise ConfigError(f"max_bytes must be an int >= 0, got {max_bytes!r}")
        self.max_bytes = max_bytes
        self._lock = threading.Lock()
        self._entries: OrderedDict[Hashable, npt.NDArray[Any]] = OrderedDict()
        self._sizes: dict[Hashable, int] = {}
        """What each entry counts against the budget (:func:`footprint`)."""
        self._bytes = 0
        self._hits = 0
        self._misses = 0
        self._evictions = 0
        _all_caches.add(self)

    def __repr__(self) -> str:
        return f"ChunkCache({self._bytes}/{self.max_bytes} bytes, {len(self._entries)} entries)"

    def __len__(self) -> int:
        return len(self._entries)

    def __contains__(self, key: Hashable) -> bool:
        return key in self._entries

    def get(self, key: Hashable) -> npt.NDArray[Any] | None:
        """The cached (read-only) array for ``key``, or ``None``; marks it recently used."""
        with self._lock:
            value = self._entries.get(key)
            if value is None:
                self._misses += 1
                return None
            self._entries.move_to_end(key)
            self._hits += 1
            return value

    def put(self, key: Hashable, value: npt.NDArray[Any], *, copy: bool = True) -> None:
        """Cache ``value`` under ``key``, evicting least recently used entries to fit.

        With ``copy=False`` the caller hands the array over: it is marked
        non-writeable instead of copied.
        """
        if not isinstance(value, np.ndarray):
            raise TypeError(f"ChunkCache stores numpy arrays, got {type(value).__name__}")
        size = footprint(value)
        if size > self.max_bytes:
            self.invalidate(key)  # the old value would be stale
            return
        stored = value.copy() if copy else value
        stored.flags.writeable = False
        with self._lock:
            self._drop(key)
            self._entries[key] = stored
            self._sizes[key] = size
            self._bytes += size
            while self._bytes > self.max_bytes:
                evicted, _ = self._entries.popitem(last=False)
                self._bytes -= self._sizes.pop(evicted)
                self._evictions += 1

    def _drop(self, key: Hashable) -> None:
        """Remove ``key`` (holding the lock)."""
        if self._entries.pop(key, None) is not None:
            self._bytes -= self._sizes.pop(key)

    def invalidate(self, key: Hashable) -> None:
        """Drop ``key`` if cached."""
        with self._lock:
            self._drop(key)

    def invalidate_where(self, pred: Callable[[Hashable], bool]) -> int:
        """Drop every key for which ``pred(key)`` is true; returns how many were dropped."""
        with self._lock:
            doomed = [k for k in self._entries if pred(k)]
            for key in doomed:
                self._drop(key)
            return len(doomed)

    def clear(self) -> None:
        """Drop everything (counters are kept)."""
        with self._lock:
            self._entries.clear()
            self._sizes.clear()
            self._bytes = 0

    @property
    def stats(self) -> CacheStats:
        """Hits, misses, evictions and the bytes held now."""
        with self._lock:
            return CacheStats(
                hits=self._hits,
                misses=self._misses,
                evictions=self._evictions,
                current_bytes=self._bytes,
                max_bytes=self.max_bytes,
                entries=len(self._entries),
            )

    def _after_fork(self) -> None:
        self._lock = threading.Lock()


_all_caches: weakref.WeakSet[ChunkCache] = weakref.WeakSet()
_global: ChunkCache | None = None
_global_lock = threading.Lock()


def get_chunk_cache() -> ChunkCache | None:
    """The process-wide chunk cache, or ``None`` when caching is off (the default)."""
    return _global


def set_chunk_cache(config: CacheConfig | None) -> None:
    """Replace the process-wide chunk cache; ``None`` or ``max_bytes=0`` turns it off."""
    global _global
    if config is not None and not isinstance(config, CacheConfig):
        raise ConfigError(f"set_chunk_cache expects a CacheConfig or None, got {config!r}")
    with _global_lock:
        enabled = config is not None and config.max_bytes > 0
        _global = ChunkCache(config.max_bytes) if config is not None and enabled else None


def _after_fork_in_child() -> None:
    global _global_lock
    _global_lock = threading.Lock()
    for cache in list(_all_caches):
        cache._after_fork()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)
