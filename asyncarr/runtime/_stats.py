"""Per-endpoint I/O statistics (layer L3).

Counters and a bounded window of recent latencies are kept per store
endpoint (like the limiter), updated by :class:`asyncarr.runtime.ManagedStore`
and read with :func:`store_stats`.
"""

from __future__ import annotations

import math
import os
import threading
import weakref
from collections import deque
from dataclasses import dataclass

from asyncarr.abc import Store
from asyncarr.runtime._limiter import AdaptiveLimiter, EndpointRegistry, limiter_for

__all__ = ["StatsRecorder", "StoreStats", "recorder_for", "store_stats"]

_WINDOW = 1024
"""How many recent latencies the percentiles are computed over."""


@dataclass(frozen=True)
class StoreStats:
    """A snapshot of one endpoint's I/O counters.

    ``completed``/``failed`` count operations (after retries), ``retries``
    the extra attempts, ``throttled``/``timeouts``/``truncated`` the attempts
    that failed that way, ``hedged`` the second GETs sent by hedged reads.
    Latencies are in seconds over the most recent successful attempts
    (``None`` until there is one).
    """

    endpoint: str
    current_limit: float
    in_flight: int
    waiting: int
    completed: int
    failed: int
    retries: int
    throttled: int
    timeouts: int
    truncated: int
    bytes_read: int
    bytes_written: int
    latency_p50: float | None
    latency_p95: float | None
    latency_p99: float | None
    hedged: int = 0


def _quantile(sorted_values: list[float], q: float) -> float:
    """Nearest-rank quantile of a non-empty sorted list."""
    rank = max(1, math.ceil(q * len(sorted_values)))
    return sorted_values[rank - 1]


class StatsRecorder:
    """Thread-safe counters and latency windows for one endpoint."""

    _COUNTERS = (
        "completed",
        "failed",
        "retries",
        "throttled",
        "timeouts",
        "truncated",
        "bytes_read",
        "bytes_written",
        "hedged",
    )

    def __init__(self, endpoint: str) -> None:
        self.endpoint = endpoint
        self._lock = threading.Lock()
        self._counts = dict.fromkeys(self._COUNTERS, 0)
        self._latencies: deque[float] = deque(maxlen=_WINDOW)
        self._read_latencies: deque[float] = deque(maxlen=_WINDOW)
        self._read_p95: float | None = None
        self._reads_since_p95 = 0
        _all_recorders.add(self)

    def add(self, counter: str, amount: int = 1) -> None:
        """Increase ``counter`` (one of the :class:`StoreStats` counters) by ``amount``."""
        with self._lock:
            self._counts[counter] += amount

    def record_latency(self, seconds: float, *, read: bool = False) -> None:
        """Record the latency of one successful attempt (``read`` for GETs)."""
        with self._lock:
            self._latencies.append(seconds)
            if read:
                self._read_latencies.append(seconds)
                self._reads_since_p95 += 1

    def read_p95(self, min_samples: int = 20) -> float | None:
        """The p95 latency of recent GETs, or ``None`` with fewer than ``min_samples``.

        Recomputed every few samples so that asking per request stays cheap.
        """
        with self._lock:
            if len(self._read_latencies) < min_samples:
                return None
            if self._read_p95 is None or self._reads_since_p95 >= 16:
                self._read_p95 = _quantile(sorted(self._read_latencies), 0.95)
                self._reads_since_p95 = 0
            return self._read_p95

    def snapshot(self, limiter: AdaptiveLimiter) -> StoreStats:
        """The current counters together with ``limiter``'s state."""
        with self._lock:
            counts = dict(self._counts)
            window = sorted(self._latencies)
        p50 = _quantile(window, 0.50) if window else None
        p95 = _quantile(window, 0.95) if window else None
        p99 = _quantile(window, 0.99) if window else None
        return StoreStats(
            endpoint=self.endpoint,
            current_limit=limiter.current_limit,
            in_flight=limiter.in_flight,
            waiting=limiter.waiting,
            latency_p50=p50,
            latency_p95=p95,
            latency_p99=p99,
            **counts,
        )

    def _after_fork(self) -> None:
        self._lock = threading.Lock()


_all_recorders: weakref.WeakSet[StatsRecorder] = weakref.WeakSet()
_recorders: EndpointRegistry[StatsRecorder] = EndpointRegistry(
    lambda store: StatsRecorder(store.endpoint_key)
)


def recorder_for(store: Store) -> StatsRecorder:
    """The process-wide statistics recorder of ``store``'s endpoint."""
    return _recorders.get(store)


def store_stats(store: Store) -> StoreStats:
    """A snapshot of the I/O statistics of ``store``'s endpoint."""
    return recorder_for(store).snapshot(limiter_for(store))


def _after_fork_in_child() -> None:
    _recorders._after_fork()
    for recorder in list(_all_recorders):
        recorder._after_fork()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)
