"""Bounded, structured fan-out of async work (layer L3).

A fixed pool of ``limit`` worker tasks drains the input lazily, so the cost
per item is constant and a generator of millions of items is never
materialised. Workers run in an :class:`asyncio.TaskGroup`: the first
failure cancels every other worker (and their in-flight calls), and
cancelling the caller cancels everything.
"""

from __future__ import annotations

import asyncio
from collections.abc import (
    AsyncIterable,
    AsyncIterator,
    Awaitable,
    Callable,
    Coroutine,
    Iterable,
    Iterator,
)
from typing import Generic, TypeVar, cast

from asyncarr._tasks import first_failure, gather_all
from asyncarr.errors import ConfigError

__all__ = ["bounded_for_each", "bounded_map", "gather_all"]

T = TypeVar("T")
R = TypeVar("R")

_EXHAUSTED = object()


class _Source(Generic[T]):
    """Hands out ``(index, item)`` pairs from a sync or async iterable, one at a time."""

    def __init__(self, items: Iterable[T] | AsyncIterable[T]) -> None:
        self._index = 0
        self._sync: Iterator[T] | None = None
        self._async: AsyncIterator[T] | None = None
        self._lock: asyncio.Lock | None = None
        if isinstance(items, AsyncIterable):
            self._async = aiter(items)
            self._lock = asyncio.Lock()  # async generators refuse concurrent anext()
        else:
            self._sync = iter(items)

    async def next(self) -> tuple[int, T] | None:
        if self._sync is not None:
            item = next(self._sync, _EXHAUSTED)
        else:
            assert self._async is not None
            assert self._lock is not None
            async with self._lock:
                item = await anext(self._async, _EXHAUSTED)
        if item is _EXHAUSTED:
            return None
        index = self._index
        self._index += 1
        return index, cast(T, item)

    async def aclose(self) -> None:
        aclose = getattr(self._async, "aclose", None)
        if aclose is not None:
            await aclose()


def _workers_for(items: object, limit: int) -> int:
    if isinstance(limit, bool) or not isinstance(limit, int) or limit < 1:
        raise ConfigError(f"limit must be a positive int, got {limit!r}")
    try:
        size = len(items)  # type: ignore[arg-type]
    except TypeError:
        return limit
    return max(1, min(limit, size))


async def _drive(
    fn: Callable[[T], Awaitable[R]],
    items: Iterable[T] | AsyncIterable[T],
    limit: int,
    sink: Callable[[int, R], None] | None,
) -> None:
    workers = _workers_for(items, limit)
    source: _Source[T] = _Source(items)
    failures: list[Exception] = []
    first: Exception | None = None

    spawned = 0

    # ``worker`` gets itself as an argument: referring to itself through its closure would
    # make a cycle that keeps ``fn`` (and whatever it holds: a read's whole output array)
    # alive until the cyclic garbage collector happens to run.
    async def worker(tg: asyncio.TaskGroup, me: Callable[..., Coroutine[None, None, None]]) -> None:
        nonlocal spawned
        try:
            while (pulled := await source.next()) is not None:
                if spawned < workers:  # grow the pool only while there is work for it
                    spawned += 1
                    tg.create_task(me(tg, me))
                index, item = pulled
                result = await fn(item)
                if sink is not None:
                    sink(index, result)
        except Exception as exc:
            failures.append(exc)
            raise

    try:
        async with asyncio.TaskGroup() as tg:
            spawned = 1
            tg.create_task(worker(tg, worker))
    except BaseExceptionGroup:
        first = first_failure(failures)
    finally:
        await source.aclose()
    if first is not None:  # raised outside the handler: keeps its own cause and context
        raise first


async def bounded_map(
    fn: Callable[[T], Awaitable[R]],
    items: Iterable[T] | AsyncIterable[T],
    *,
    limit: int,
) -> list[R]:
    """``[await fn(x) for x in items]`` with at most ``limit`` calls in flight.

    Results come back in input order. ``items`` (sync or async iterable) is
    consumed lazily by a fixed pool of ``limit`` worker tasks. The first
    failure cancels the other workers and their in-flight calls and is
    re-raised, with any failures that happened concurrently attached as
    notes. Cancelling the caller cancels everything.
    """
    results: list[R | None] = []

    def sink(index: int, value: R) -> None:
        if index >= len(results):
            results.extend([None] * (index + 1 - len(results)))
        results[index] = value

    await _drive(fn, items, limit, sink)
    return cast(list[R], results)


async def bounded_for_each(
    fn: Callable[[T], Awaitable[None]],
    items: Iterable[T] | AsyncIterable[T],
    *,
    limit: int,
) -> None:
    """Like :func:`bounded_map` for side effects only: no results are kept."""
    await _drive(fn, items, limit, None)
