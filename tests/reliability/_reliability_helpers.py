"""Shared helpers of the reliability tests (imported by module name: the test files'
directory is on ``sys.path`` under pytest's default import mode)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import numpy as np

from asyncarr.abc import Store
from asyncarr.config import RetryConfig, StoreLimits
from asyncarr.runtime import StoreStats, store_stats

FAST_RETRY = RetryConfig(
    max_attempts=30, base_backoff=0.001, max_backoff=0.02, deadline=60.0, request_timeout=10.0
)
"""Fast backoff, many attempts: a 20% fault rate never exhausts 30 attempts (0.2**30)."""


def fast_limits(**changes: Any) -> StoreLimits:
    """Store limits with :data:`FAST_RETRY` (non-adaptive unless asked)."""
    changes.setdefault("retry", FAST_RETRY)
    changes.setdefault("adaptive", False)
    changes.setdefault("max_concurrency", 32)
    return StoreLimits(**changes)


async def snapshot(store: Store) -> dict[str, bytes]:
    """Every key of ``store`` with its bytes (to prove a store was left unchanged)."""
    out: dict[str, bytes] = {}
    async for key in store.list_prefix(""):
        value = await store.get(key)
        assert value is not None, key
        out[key] = value
    return out


@dataclass
class Timer:
    """Wall-clock time of a block (printed in reports, never asserted)."""

    seconds: float = 0.0


@contextmanager
def timed() -> Iterator[Timer]:
    timer = Timer()
    start = time.perf_counter()
    try:
        yield timer
    finally:
        timer.seconds = time.perf_counter() - start


def stats_delta(before: StoreStats, after: StoreStats) -> dict[str, int]:
    """Counter differences between two snapshots of the same endpoint."""
    names = ("completed", "failed", "retries", "throttled", "timeouts", "truncated")
    return {n: getattr(after, n) - getattr(before, n) for n in names}


def stats_of(store: Store) -> StoreStats:
    return store_stats(store)


def pattern(shape: tuple[int, ...], seed: int, dtype: str = "int32") -> np.ndarray[Any, Any]:
    """A deterministic array whose every element differs from its neighbours."""
    n = int(np.prod(shape))
    base = np.arange(n, dtype=np.int64) * 7919 + seed * 1_000_003
    return (base % (2**31 - 1)).astype(dtype).reshape(shape)


def split_points(total: int, parts: int, offset: int) -> list[int]:
    """``parts + 1`` increasing cut points over ``[0, total]``, shifted off any chunk grid."""
    cuts = [0]
    for i in range(1, parts):
        cuts.append(min(total - 1, max(cuts[-1] + 1, (total * i) // parts + offset)))
    cuts.append(total)
    return cuts


def disjoint_regions(
    shape: tuple[int, int], rows: int, cols: int, offset: int = 3
) -> list[tuple[slice, slice]]:
    """``rows * cols`` rectangles tiling ``shape`` whose edges avoid the chunk boundaries."""
    r = split_points(shape[0], rows, offset)
    c = split_points(shape[1], cols, offset)
    return [
        (slice(r[i], r[i + 1]), slice(c[j], c[j + 1])) for i in range(rows) for j in range(cols)
    ]
