"""The managed view of a store: limiter slot, timeouts, retries and stats (layer L3)."""

from __future__ import annotations

import asyncio
import logging
import math
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine, Sequence
from typing import Any, TypeVar

from asyncarr._types import RangeRequest, Versioned
from asyncarr.abc import Store
from asyncarr.config import RetryConfig
from asyncarr.errors import (
    ConfigError,
    PreconditionFailedError,
    ThrottledError,
    TransientStoreError,
    TruncatedReadError,
    ValueTooLargeError,
)
from asyncarr.runtime._limiter import AdaptiveLimiter, limiter_for
from asyncarr.runtime._retry import attempt_timeout, call_with_retry, deadline_exceeded
from asyncarr.runtime._stats import StatsRecorder, StoreStats, recorder_for

__all__ = ["ManagedStore", "managed"]

T = TypeVar("T")

logger = logging.getLogger("asyncarr.runtime")

_HEDGE_MIN_SAMPLES = 20


class _Budget:
    """Time and attempts used so far by one operation."""

    __slots__ = ("attempts", "last", "start")

    def __init__(self) -> None:
        self.start: float | None = None
        self.attempts = 0
        self.last: TransientStoreError | None = None


class _ListingGaveUp(Exception):
    """Wraps the fault that exhausted a listing's restarts (so it is not retried)."""

    def __init__(self, error: TransientStoreError) -> None:
        super().__init__(str(error))
        self.error = error


class ManagedStore:
    """The only way the core talks to a store: limiter slot + per-attempt timeout + retries + stats.

    Every operation takes one slot of the endpoint's :class:`AdaptiveLimiter`
    per attempt (never while backing off), bounds the attempt with
    ``store.limits.retry.request_timeout`` (time spent queueing for a slot
    does not count), retries transient faults with :func:`call_with_retry`
    and records the outcome in the endpoint's statistics. Throttling feeds
    the limiter's AIMD.

    Obtain one with :func:`managed`, which caches it per store object.
    """

    store: Store

    def __init__(self, store: Store) -> None:
        self.store = store
        self._limiter: AdaptiveLimiter = limiter_for(store)
        self._recorder: StatsRecorder = recorder_for(store)
        self._retry: RetryConfig = store.limits.retry
        # Timeouts and the deadline are applied inside the limiter slot (see _attempt), so
        # time spent queueing for a slot never counts; the retry loop only counts attempts.
        self._loop_config = self._retry.with_(request_timeout=None, deadline=math.inf)
        # Named in every operation's description (for its errors): worked out once, not
        # per request (an S3 store parses its endpoint URL for it, ~10 us a GET).
        self._endpoint_key = store.endpoint_key

    def __repr__(self) -> str:
        return f"ManagedStore({self.store!r})"

    @property
    def limiter(self) -> AdaptiveLimiter:
        """The endpoint's shared concurrency budget."""
        return self._limiter

    @property
    def stats(self) -> StoreStats:
        """A snapshot of the endpoint's I/O statistics."""
        return self._recorder.snapshot(self._limiter)

    # -- machinery -------------------------------------------------------------------------
    def _describe(self, op: str, key: str | None) -> str:
        where = f" {key!r}" if key is not None else ""
        return f"{op}{where} on {self._endpoint_key}"

    def _on_retry(self, error: BaseException, attempt: int) -> None:
        self._recorder.add("retries")
        logger.debug("retrying after attempt %d failed: %s", attempt, error)

    async def _attempt(
        self,
        fn: Callable[[], Awaitable[T]],
        describe: str,
        budget: _Budget,
        *,
        read: bool,
        bounded: bool = True,
        feedback: bool = True,
    ) -> T:
        """One attempt: hold a slot, bound the call, feed the limiter and stats.

        With ``bounded`` the call is limited by the request timeout and by
        what is left of the operation's deadline, which starts when its
        first attempt gets a slot. ``feedback=False`` (listing steps) skips
        latency and AIMD growth.
        """
        retry = budget.attempts > 0
        if bounded and budget.start is not None:
            # A retry waits for a slot ahead of first attempts, but still behind other
            # retries and requests in flight: that wait counts against the deadline too,
            # or on a dead or stalling service the error would take as long to surface as
            # the attempts of every other chunk together.
            remaining = budget.start + self._retry.deadline - time.monotonic()
            try:
                async with asyncio.timeout(max(remaining, 0.0)):
                    await self._limiter.acquire(first=retry)
            except TimeoutError:
                raise deadline_exceeded(
                    describe, self._retry.deadline, budget.attempts, budget.last
                ) from budget.last
        else:
            await self._limiter.acquire(first=retry)
        try:
            return await self._attempt_holding_slot(
                fn, describe, budget, read=read, bounded=bounded, feedback=feedback
            )
        finally:
            self._limiter.release()

    async def _attempt_holding_slot(
        self,
        fn: Callable[[], Awaitable[T]],
        describe: str,
        budget: _Budget,
        *,
        read: bool,
        bounded: bool,
        feedback: bool,
    ) -> T:
        start = time.monotonic()
        budget.attempts += 1
        timeout: float | None = None
        by_deadline = False
        if bounded:
            if budget.start is None:
                budget.start = start
            remaining = budget.start + self._retry.deadline - start
            if remaining <= 0:
                raise deadline_exceeded(
                    describe, self._retry.deadline, budget.attempts - 1, budget.last
                ) from budget.last
            timeout = self._retry.request_timeout
            if timeout is None or remaining < timeout:
                timeout, by_deadline = remaining, True
        try:
            async with attempt_timeout(timeout, describe):
                result = await fn()
        except ThrottledError as exc:
            budget.last = exc
            self._recorder.add("throttled")
            self._limiter.on_throttle(time.monotonic() - start)
            raise
        except TransientStoreError as exc:
            budget.last = exc
            if isinstance(exc, TruncatedReadError):  # ours or the adapter's length check
                self._recorder.add("truncated")
            if isinstance(exc.__cause__, TimeoutError):
                self._recorder.add("timeouts")
                if by_deadline:
                    raise deadline_exceeded(
                        describe, self._retry.deadline, budget.attempts, exc
                    ) from exc
            raise
        if not feedback:
            return result
        latency = time.monotonic() - start
        self._limiter.on_success(latency)
        self._recorder.record_latency(latency, read=read)
        return result

    async def _run(
        self,
        op: str,
        key: str | None,
        fn: Callable[[], Awaitable[T]],
        *,
        read: bool = False,
        bulk: bool = False,
    ) -> T:
        """The whole operation: retried attempts, counted as completed or failed."""
        describe = self._describe(op, key)
        budget = _Budget()

        async def attempt() -> T:
            return await self._attempt(fn, describe, budget, read=read, bounded=not bulk)

        try:
            result = await call_with_retry(
                attempt, config=self._loop_config, describe=describe, on_retry=self._on_retry
            )
        except Exception:
            self._recorder.add("failed")
            raise
        self._recorder.add("completed")
        return result

    def _check_length(self, key: str, data: bytes | None, expected: int | None) -> None:
        if data is not None and expected is not None and len(data) != expected:
            self._recorder.add("truncated")  # (adapter-raised ones are counted in _attempt)
            raise TruncatedReadError(
                f"read {len(data)} bytes, expected {expected}", store=self.store, key=key
            )

    # -- reads -------------------------------------------------------------------------------
    async def get(
        self,
        key: str,
        byte_range: RangeRequest | None = None,
        *,
        expected_length: int | None = None,
        max_size: int | None = None,
    ) -> bytes | None:
        """The value (or a range of it), ``None`` if missing.

        A result whose length differs from ``expected_length`` raises
        :class:`TruncatedReadError` inside the retry loop, so it is retried.
        ``max_size`` goes to the store (:meth:`Store.get`): a larger value is refused
        with :class:`~asyncarr.errors.ValueTooLargeError`, not read whole.
        With ``store.limits.hedge_after_p95``, once 20 reads have been timed,
        a GET still running after the observed p95 latency gets an identical
        twin; the first to succeed wins and the other is cancelled.
        """
        describe = self._describe("get", key)
        budget = _Budget()

        async def single(sent: asyncio.Event | None = None) -> bytes | None:
            def request() -> Awaitable[bytes | None]:  # called once a slot is held
                if sent is not None:
                    sent.set()
                return self.store.get(key, byte_range, max_size=max_size)

            data = await self._attempt(request, describe, budget, read=True)
            self._check_length(key, data, expected_length)
            return data

        async def attempt() -> bytes | None:
            if self.store.limits.hedge_after_p95:
                p95 = self._recorder.read_p95(_HEDGE_MIN_SAMPLES)
                if p95 is not None:
                    return await self._hedged(single, p95)
            return await single()

        try:
            data = await call_with_retry(
                attempt, config=self._loop_config, describe=describe, on_retry=self._on_retry
            )
        except Exception:
            self._recorder.add("failed")
            raise
        self._recorder.add("completed")
        if data is not None:
            self._recorder.add("bytes_read", len(data))
        return data

    async def _hedged(
        self, single: Callable[[asyncio.Event | None], Coroutine[Any, Any, T]], delay: float
    ) -> T:
        """Run ``single``; if its request is still running ``delay`` s after it was sent,
        race a second one. The clock starts when the first request holds a concurrency
        slot (``single`` sets the event then): time spent queueing for a slot is not the
        service being slow, and counting it hedged nearly every GET of a large read (the
        p95 ``delay`` is measured from the slot on)."""
        sent = asyncio.Event()
        first: asyncio.Task[T] = asyncio.create_task(single(sent))
        tasks = [first]
        try:
            on_its_way = asyncio.create_task(sent.wait())
            try:
                await asyncio.wait([first, on_its_way], return_when=asyncio.FIRST_COMPLETED)
            finally:
                on_its_way.cancel()
            done, _ = await asyncio.wait(tasks, timeout=delay)
            if not done:
                self._recorder.add("hedged")
                tasks.append(asyncio.create_task(single(None)))
            errors: list[BaseException] = []
            pending = set(tasks)
            while pending:
                done, pending = await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
                for task in tasks:  # deterministic preference: the first request
                    if task in done and not task.cancelled() and task.exception() is None:
                        return task.result()
                errors.extend(
                    asyncio.CancelledError() if t.cancelled() else t.exception() or Exception()
                    for t in done
                )
            raise errors[0]
        finally:
            for task in tasks:
                if not task.done():
                    task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

    async def get_ranges(
        self,
        key: str,
        ranges: Sequence[RangeRequest],
        *,
        expected_lengths: Sequence[int | None] | None = None,
    ) -> list[bytes] | None:
        """Several ranges of one value (``None`` if missing), each length-checked."""
        ranges = list(ranges)
        if expected_lengths is not None and len(expected_lengths) != len(ranges):
            raise ConfigError(
                f"expected_lengths has {len(expected_lengths)} entries for {len(ranges)} "
                f"ranges of key {key!r}; give one (or None) per range"
            )

        async def fn() -> list[bytes] | None:
            parts = await self.store.get_ranges(key, ranges)
            if parts is not None and expected_lengths is not None:
                for part, expected in zip(parts, expected_lengths, strict=True):
                    self._check_length(key, part, expected)
            return parts

        parts = await self._run("get_ranges", key, fn, read=True)
        if parts is not None:
            self._recorder.add("bytes_read", sum(len(p) for p in parts))
        return parts

    async def get_versioned(self, key: str, *, max_size: int | None = None) -> Versioned | None:
        """The value with its version token (for :meth:`set_if_version`); ``max_size`` as
        for :meth:`get`."""
        result = await self._run(
            "get_versioned",
            key,
            lambda: self.store.get_versioned(key, max_size=max_size),
            read=True,
        )
        if result is not None:
            self._recorder.add("bytes_read", len(result.data))
        return result

    async def exists(self, key: str) -> bool:
        """Whether ``key`` holds a value."""
        return await self._run("exists", key, lambda: self.store.exists(key))

    async def getsize(self, key: str) -> int:
        """Size of the value in bytes (:class:`KeyNotFoundError` if missing)."""
        return await self._run("getsize", key, lambda: self.store.getsize(key))

    # -- writes ------------------------------------------------------------------------------
    async def set(self, key: str, value: bytes) -> None:
        """Store ``value`` under ``key`` (idempotent, so safely retried)."""
        await self._run("set", key, lambda: self.store.set(key, value))
        self._recorder.add("bytes_written", len(value))

    async def set_if_not_exists(self, key: str, value: bytes) -> bool:
        """Store ``value`` only if ``key`` is absent; ``True`` if written.

        If an earlier attempt may have written the value before failing (a
        timeout, a reset), a later attempt that finds the key present
        compares the stored bytes with ``value``: equal bytes count as
        written.
        """
        tries = 0

        async def fn() -> bool:
            nonlocal tries
            tries += 1
            if await self.store.set_if_not_exists(key, value):
                return True
            if tries > 1:
                return await self._holds(key, value)
            return False

        written = await self._run("set_if_not_exists", key, fn)
        if written:
            self._recorder.add("bytes_written", len(value))
        return written

    async def set_if_version(self, key: str, value: bytes, version: str | None) -> None:
        """Store ``value`` only if the current version is ``version`` (``None``: absent).

        Raises :class:`PreconditionFailedError` when another writer won. As
        with :meth:`set_if_not_exists`, a retry that fails its precondition
        because an earlier attempt already stored exactly ``value`` succeeds.
        """
        tries = 0

        async def fn() -> None:
            nonlocal tries
            tries += 1
            try:
                await self.store.set_if_version(key, value, version)
            except PreconditionFailedError:
                if tries > 1 and await self._holds(key, value):
                    return
                raise

        await self._run("set_if_version", key, fn)
        self._recorder.add("bytes_written", len(value))

    async def _holds(self, key: str, value: bytes) -> bool:
        """Whether ``key`` holds exactly ``value`` (read no further than its length)."""
        try:
            return await self.store.get(key, max_size=len(value)) == bytes(value)
        except ValueTooLargeError:
            return False

    async def delete_if_version(self, key: str, version: str) -> None:
        """Remove ``key`` only if it is still at ``version``.

        A retry whose precondition fails because an earlier attempt already
        deleted the key succeeds.
        """
        tries = 0

        async def fn() -> None:
            nonlocal tries
            tries += 1
            try:
                await self.store.delete_if_version(key, version)
            except PreconditionFailedError:
                if tries > 1 and not await self.store.exists(key):
                    return
                raise

        await self._run("delete_if_version", key, fn)

    async def delete(self, key: str) -> None:
        """Remove ``key`` (a missing key is a no-op)."""
        await self._run("delete", key, lambda: self.store.delete(key))

    async def delete_prefix(self, prefix: str) -> None:
        """Remove every key under ``prefix`` (no per-attempt timeout: it may be long)."""
        await self._run(
            "delete_prefix", prefix, lambda: self.store.delete_prefix(prefix), bulk=True
        )

    # -- listing -----------------------------------------------------------------------------
    async def list_dir(self, prefix: str) -> list[str]:
        """Immediate children of ``prefix`` (retried as a whole, no per-attempt timeout)."""
        return await self._run("list_dir", prefix, lambda: self.store.list_dir(prefix), bulk=True)

    async def list_prefix(self, prefix: str) -> AsyncIterator[str]:
        """Every key starting with ``prefix``, each exactly once.

        Each step of the listing holds a limiter slot and is bounded by the
        request timeout; nothing is held while the caller consumes a key. A
        transient fault restarts the listing (after backoff) and skips the
        keys already yielded, at most ``max_attempts`` times per listing.
        """
        describe = self._describe("list_prefix", prefix)
        seen: set[str] = set()
        restarts = 0
        iterator: AsyncIterator[str] | None = None
        done = object()
        final: TransientStoreError | None = None

        async def close_iterator() -> None:
            nonlocal iterator
            it, iterator = iterator, None
            aclose = getattr(it, "aclose", None)
            if aclose is not None:
                try:
                    await aclose()
                except Exception:  # a broken listing may fail to close; it is dropped anyway
                    logger.debug("closing a failed listing raised", exc_info=True)

        async def step() -> Any:
            nonlocal iterator, restarts
            if iterator is None:
                iterator = aiter(self.store.list_prefix(prefix))
            current = iterator
            try:
                return await self._attempt(
                    lambda: anext(current, done), describe, budget, read=False, feedback=False
                )
            except TransientStoreError as exc:
                await close_iterator()
                restarts += 1
                if restarts >= self._retry.max_attempts:
                    raise _ListingGaveUp(exc) from exc
                raise

        try:
            while True:
                budget = _Budget()  # one per step of the listing, across its retries
                try:
                    key = await call_with_retry(
                        step, config=self._loop_config, describe=describe, on_retry=self._on_retry
                    )
                except _ListingGaveUp as gave_up:
                    final = gave_up.error
                except Exception:
                    self._recorder.add("failed")
                    raise
                if final is not None:  # raised outside the handler: keeps its own cause
                    self._recorder.add("failed")
                    final.add_note(f"after {restarts} attempts: {describe}")
                    raise final
                if key is done:
                    break
                if key in seen:
                    continue
                seen.add(key)
                yield key
            self._recorder.add("completed")
        finally:
            await close_iterator()


_ATTR = "_asyncarr_managed"
_cache_lock = threading.Lock()


def managed(store: Store) -> ManagedStore:
    """The :class:`ManagedStore` of ``store`` (one per store object).

    It is cached on the store object itself, so the pair is collected
    together (a weak-key table could not let go: the value refers to its key).
    Stores that refuse new attributes get a fresh one per call, which is
    equivalent: limits, the limiter and statistics belong to the endpoint.
    """
    found = getattr(store, _ATTR, None)
    if isinstance(found, ManagedStore) and found.store is store:
        return found
    with _cache_lock:
        found = getattr(store, _ATTR, None)
        if isinstance(found, ManagedStore) and found.store is store:
            return found
        fresh = ManagedStore(store)
        try:
            setattr(store, _ATTR, fresh)
        except (AttributeError, TypeError):
            pass
        return fresh
