"""Retries of transient store faults with exponential backoff (layer L3)."""

from __future__ import annotations

import asyncio
import math
import random
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import TypeVar

from asyncarr.config import RetryConfig
from asyncarr.errors import DeadlineExceededError, StoreError, TransientStoreError

__all__ = ["attempt_timeout", "backoff_delay", "call_with_retry", "deadline_exceeded"]

T = TypeVar("T")

_rng = random.Random()


def backoff_delay(config: RetryConfig, retry: int, rng: random.Random | None = None) -> float:
    """Seconds to sleep before retry number ``retry`` (0 for the first retry).

    Full jitter: uniform in ``[0, min(max_backoff, base_backoff * 2**retry))``.
    """
    cap = min(config.max_backoff, config.base_backoff * (2.0 ** min(retry, 62)))
    return (rng or _rng).uniform(0.0, cap) if cap > 0 else 0.0


@asynccontextmanager
async def attempt_timeout(seconds: float | None, describe: str) -> AsyncIterator[None]:
    """Bound one attempt to ``seconds``; expiry becomes :class:`TransientStoreError`.

    A :class:`TimeoutError` raised by the body itself (not by this timeout)
    propagates unchanged. ``None`` means no limit.
    """
    if seconds is None or math.isinf(seconds):
        yield
        return
    cm = asyncio.timeout(seconds)
    try:
        async with cm:
            yield
    except TimeoutError as exc:
        if not cm.expired():
            raise
        raise TransientStoreError(f"{describe} timed out after {seconds:g}s") from exc


def deadline_exceeded(
    describe: str, deadline: float, attempts: int, last: BaseException | None
) -> DeadlineExceededError:
    """The error for an operation that ran out of time; the caller chains ``last``."""
    store = last.store if isinstance(last, StoreError) else None
    key = last.key if isinstance(last, StoreError) else None
    return DeadlineExceededError(
        f"{describe} did not succeed within the {deadline:g}s deadline "
        f"after {attempts} attempt{'s' if attempts != 1 else ''}",
        store=store,
        key=key,
    )


async def call_with_retry(
    fn: Callable[[], Awaitable[T]],
    *,
    config: RetryConfig,
    describe: str,
    on_retry: Callable[[BaseException, int], None] | None = None,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], Awaitable[object]] = asyncio.sleep,
    rng: random.Random | None = None,
) -> T:
    """Await ``fn()`` until it succeeds, retrying transient store faults.

    Only :class:`TransientStoreError` (which includes :class:`ThrottledError`
    and :class:`TruncatedReadError`) and the expiry of
    ``config.request_timeout`` for one attempt (converted to
    :class:`TransientStoreError`) are retried; every other exception
    propagates at once. Between attempts the call sleeps with exponential
    backoff and full jitter (see :func:`backoff_delay`).

    When ``config.max_attempts`` attempts have failed, the last
    :class:`TransientStoreError` is re-raised with the note
    ``"after N attempts"``. When ``config.deadline`` seconds would pass (an
    attempt is cut off at the deadline, and no retry is started that could
    not begin before it), :class:`DeadlineExceededError` is raised, chained
    from the last fault, with the attempt count in its message.

    Args:
        fn: makes one attempt; called once per attempt.
        config: attempts, backoff, per-attempt timeout and deadline.
        describe: what is being done, for messages (no credentials).
        on_retry: called as ``on_retry(error, attempt)`` before each retry
            (``attempt`` is the number of the attempt that just failed).
        clock, sleep, rng: injectable time source, sleep and randomness.
    """
    deadline_at = clock() + config.deadline
    request_timeout = config.request_timeout if config.request_timeout is not None else math.inf
    attempt = 0
    last: TransientStoreError | None = None
    while True:
        attempt += 1
        remaining = deadline_at - clock()
        if remaining <= 0:
            raise deadline_exceeded(describe, config.deadline, attempt - 1, last) from last
        cut_by_deadline = remaining < request_timeout
        limit = min(request_timeout, remaining)
        cm = asyncio.timeout(None if math.isinf(limit) else limit)
        try:
            async with cm:
                return await fn()
        except TransientStoreError as exc:
            error = exc
        except TimeoutError as exc:
            if not cm.expired():
                raise
            if cut_by_deadline:
                raise deadline_exceeded(describe, config.deadline, attempt, exc) from exc
            error = TransientStoreError(f"{describe} timed out after {limit:g}s")
            error.__cause__ = exc
        last = error
        if attempt >= config.max_attempts:
            error.add_note(f"after {attempt} attempt{'s' if attempt != 1 else ''}: {describe}")
            raise error
        delay = backoff_delay(config, attempt - 1, rng)
        if clock() + delay >= deadline_at:
            raise deadline_exceeded(describe, config.deadline, attempt, error) from error
        if on_retry is not None:
            on_retry(error, attempt)
        await sleep(delay)
