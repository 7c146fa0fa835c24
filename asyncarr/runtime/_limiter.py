"""Per-endpoint concurrency budgets with AIMD adaptation (layer L3).

One :class:`AdaptiveLimiter` exists per store endpoint (``Store.endpoint_key``)
in the whole process, so every array, group and call that talks to the same
service shares one budget. The limiter is not bound to an event loop: tasks
on different loops (the sync portal's thread and a user's own loop) may wait
on it at the same time; its state is guarded by a :class:`threading.Lock` and
waiters are woken on their own loop.
"""

from __future__ import annotations

import asyncio
import math
import os
import threading
import time
import weakref
from collections import Counter, deque
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from types import TracebackType
from typing import Generic, TypeVar

from asyncarr.abc import Store
from asyncarr.config import StoreLimits

__all__ = [
    "AdaptiveLimiter",
    "EndpointRegistry",
    "blocked_loop",
    "limiter_for",
    "running_loop_or_none",
]

T = TypeVar("T")

_EWMA_ALPHA = 0.2


class _Waiter:
    """One task waiting for a slot, on its own event loop."""

    __slots__ = ("future", "granted", "loop")

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.future: asyncio.Future[None] = loop.create_future()
        self.granted = False


def _wake(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)


def running_loop_or_none() -> asyncio.AbstractEventLoop | None:
    try:
        return asyncio.get_running_loop()
    except RuntimeError:
        return None


class AdaptiveLimiter:
    """Concurrency budget for one endpoint, shared process-wide.

    ``async with limiter:`` holds one slot for the duration of the block.
    Waiting is FIFO-fair: a newcomer never overtakes a task already queued.
    A task cancelled while waiting (or just after being granted a slot) never
    leaks a slot.

    Slots held by tasks of an event loop whose thread is blocked in a call of the sync
    API (:func:`blocked_loop`; Jupyter, or a service calling ``asyncarr.sync`` from a
    coroutine) do not count against the limit while it is blocked: they cannot be given
    back before the blocking call returns, and that call's own requests need slots. The
    limit is exceeded by at most those slots, until the blocked tasks release them.

    With ``limits.adaptive`` the limit follows AIMD: :meth:`on_throttle`
    multiplies it by ``limits.decrease_factor`` (not below
    ``min_concurrency``), at most once per cooldown so that a burst of 503s
    from requests that were already in flight counts as one decrease; each
    :meth:`on_success` adds ``increase_step / current_limit``, i.e. about
    ``increase_step`` per window of successful requests, up to
    ``max_concurrency``. The cooldown is the larger of ``min_cooldown`` and a
    moving average of the request latency (one round trip).

    Args:
        limits: the endpoint's budget.
        name: a short, credential-free label (the endpoint key).
        clock: monotonic clock in seconds (tests may inject a fake one).
        min_cooldown: the shortest time between two multiplicative decreases.
    """

    def __init__(
        self,
        limits: StoreLimits,
        name: str,
        *,
        clock: Callable[[], float] = time.monotonic,
        min_cooldown: float = 0.1,
    ) -> None:
        self.limits = limits
        self.name = name
        self._clock = clock
        self._min_cooldown = min_cooldown
        self._lock = threading.Lock()
        self._limit = float(limits.max_concurrency)
        self._in_flight = 0
        self._held: Counter[asyncio.AbstractEventLoop | None] = Counter()
        """Slots held per event loop (for :func:`blocked_loop`)."""
        self._waiters: deque[_Waiter] = deque()
        self._last_decrease = -math.inf
        self._rtt: float | None = None
        _all_limiters.add(self)

    def __repr__(self) -> str:
        return (
            f"AdaptiveLimiter({self.name!r}, limit={self._limit:.2f}, "
            f"in_flight={self._in_flight}, waiting={len(self._waiters)})"
        )

    # -- observed state ------------------------------------------------------------------
    @property
    def current_limit(self) -> float:
        """The current (possibly fractional) concurrency limit."""
        return self._limit

    @property
    def in_flight(self) -> int:
        """Slots held right now."""
        return self._in_flight

    @property
    def waiting(self) -> int:
        """Tasks queued for a slot right now."""
        return len(self._waiters)

    @property
    def cooldown(self) -> float:
        """Seconds that must pass between two multiplicative decreases."""
        rtt = self._rtt if self._rtt is not None else 0.0
        return max(self._min_cooldown, rtt)

    # -- acquire / release -----------------------------------------------------------------
    def _slots(self) -> int:
        return max(self.limits.min_concurrency, math.floor(self._limit + 1e-9))

    def _counted(self) -> int:
        """Slots held, less those of loops blocked in a sync call."""
        blocked = _blocked  # (replaced, never changed in place: safe to read unlocked)
        if not blocked:
            return self._in_flight
        return self._in_flight - sum(self._held[loop] for loop in blocked)

    def _take_locked(self, loop: asyncio.AbstractEventLoop | None) -> None:
        self._in_flight += 1
        self._held[loop] += 1

    async def acquire(self, *, first: bool = False) -> None:
        """Take one slot, waiting (FIFO) until one is free; with ``first``, ahead of every
        task already waiting (retries: their operation already had its turn, and on a
        failing service it must reach its verdict before every other request's first
        attempt has been made)."""
        loop = asyncio.get_running_loop()
        with self._lock:
            if (first or not self._waiters) and self._counted() < self._slots():
                self._take_locked(loop)
                return
            waiter = _Waiter(loop)
            if first:
                self._waiters.appendleft(waiter)
            else:
                self._waiters.append(waiter)
        try:
            await waiter.future
        except BaseException:
            with self._lock:
                if waiter.granted:
                    self._release_locked()
                else:
                    try:
                        self._waiters.remove(waiter)
                    except ValueError:
                        pass
            raise

    def release(self) -> None:
        """Give back one slot taken with :meth:`acquire`."""
        with self._lock:
            self._release_locked()

    def _release_locked(self) -> None:
        self._in_flight -= 1
        self._unhold_locked(running_loop_or_none())
        self._grant_locked()

    def _unhold_locked(self, loop: asyncio.AbstractEventLoop | None) -> None:
        if self._held[loop] <= 1:
            del self._held[loop]  # (no entry, no reference to the loop, once it holds none)
        else:
            self._held[loop] -= 1

    def _grant_locked(self) -> None:
        slots = self._slots()
        here = running_loop_or_none()
        while self._waiters and self._counted() < slots:
            waiter = self._waiters.popleft()
            if waiter.future.done():  # cancelled, its task will clean up
                continue
            waiter.granted = True
            self._take_locked(waiter.loop)
            if waiter.loop is here:
                _wake(waiter.future)
                continue
            try:
                waiter.loop.call_soon_threadsafe(_wake, waiter.future)
            except RuntimeError:  # that loop is closed: nobody will take the slot
                waiter.granted = False
                self._in_flight -= 1
                self._unhold_locked(waiter.loop)

    async def __aenter__(self) -> None:
        await self.acquire()

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.release()

    # -- AIMD feedback ---------------------------------------------------------------------
    def on_throttle(self, latency: float | None = None) -> None:
        """The service asked us to slow down: decrease the limit (once per cooldown)."""
        with self._lock:
            self._observe(latency)
            if not self.limits.adaptive:
                return
            now = self._clock()
            if now - self._last_decrease < self.cooldown:
                return
            self._last_decrease = now
            self._limit = max(
                float(self.limits.min_concurrency), self._limit * self.limits.decrease_factor
            )

    def on_success(self, latency: float | None = None) -> None:
        """A request succeeded: grow the limit by ``increase_step / current_limit``."""
        with self._lock:
            self._observe(latency)
            if not self.limits.adaptive or self._limit >= self.limits.max_concurrency:
                return
            self._limit = min(
                float(self.limits.max_concurrency),
                self._limit + self.limits.increase_step / self._limit,
            )
            if self._waiters:
                self._grant_locked()

    def _observe(self, latency: float | None) -> None:
        if latency is None or latency < 0:
            return
        if self._rtt is None:
            self._rtt = latency
        else:
            self._rtt += _EWMA_ALPHA * (latency - self._rtt)

    def _after_fork(self) -> None:
        self._lock = threading.Lock()
        self._in_flight = 0
        self._held = Counter()
        self._waiters = deque()


_blocked: frozenset[asyncio.AbstractEventLoop] = frozenset()
"""Event loops whose thread waits in a blocking call of the sync API."""
_blocked_lock = threading.Lock()


@contextmanager
def blocked_loop(loop: asyncio.AbstractEventLoop | None) -> Iterator[None]:
    """Mark ``loop`` (the calling thread's running loop, if any) as blocked for the block:
    its tasks' slots stop counting against every limiter, and tasks waiting for slots
    those slots kept from them are woken (see :class:`AdaptiveLimiter`)."""
    global _blocked
    if loop is None:
        yield
        return
    with _blocked_lock:
        nested = loop in _blocked
        _blocked = _blocked | {loop}
    try:
        if not nested:
            for limiter in list(_all_limiters):
                with limiter._lock:
                    if limiter._waiters:
                        limiter._grant_locked()
        yield
    finally:
        if not nested:
            with _blocked_lock:
                _blocked = _blocked - {loop}


_all_limiters: weakref.WeakSet[AdaptiveLimiter] = weakref.WeakSet()


class EndpointRegistry(Generic[T]):
    """Process-wide objects keyed by ``store.endpoint_key``.

    An entry lives as long as any store object using that endpoint is alive
    (stores that cannot be weakly referenced keep their entry for the life of
    the process). Thread-safe.
    """

    def __init__(self, factory: Callable[[Store], T]) -> None:
        self._factory = factory
        self._lock = threading.Lock()
        self._by_endpoint: weakref.WeakValueDictionary[str, T] = weakref.WeakValueDictionary()
        self._by_store: weakref.WeakKeyDictionary[Store, T] = weakref.WeakKeyDictionary()
        self._pinned: dict[str, T] = {}

    def get(self, store: Store) -> T:
        """The object for ``store``'s endpoint, created on first use."""
        with self._lock:
            try:
                found = self._by_store.get(store)
            except TypeError:  # unhashable store
                found = None
            if found is not None:
                return found
            key = store.endpoint_key
            value = self._by_endpoint.get(key)
            if value is None:
                value = self._pinned.get(key)
            if value is None:
                value = self._factory(store)
                self._by_endpoint[key] = value
            try:
                self._by_store[store] = value
            except TypeError:
                self._pinned[key] = value
            return value

    def clear(self) -> None:
        """Forget every entry (existing holders keep theirs)."""
        with self._lock:
            self._by_endpoint = weakref.WeakValueDictionary()
            self._by_store = weakref.WeakKeyDictionary()
            self._pinned = {}

    def _after_fork(self) -> None:
        self._lock = threading.Lock()


_limiters: EndpointRegistry[AdaptiveLimiter] = EndpointRegistry(
    lambda store: AdaptiveLimiter(store.limits, store.endpoint_key)
)


def limiter_for(store: Store) -> AdaptiveLimiter:
    """The process-wide limiter of ``store``'s endpoint.

    The first store seen for an endpoint decides its :class:`StoreLimits`.
    """
    return _limiters.get(store)


def _after_fork_in_child() -> None:
    _limiters._after_fork()
    for limiter in list(_all_limiters):
        limiter._after_fork()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)
