"""Structured gathering of concurrent awaitables (layer L0: plain asyncio, no asyncarr
imports), for every layer that fans out: stores, the runtime's scheduler, the core."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import TypeVar, cast

__all__ = ["Claim", "await_unabandoned", "first_failure", "gather_all"]

R = TypeVar("R")


def first_failure(failures: list[Exception]) -> Exception:
    """In an ``except BaseExceptionGroup`` handler of a task group whose tasks appended their
    exceptions to ``failures``: the first one, with the others as notes (re-raise it
    outside the handler); re-raises the group itself when no task failed (KeyboardInterrupt,
    SystemExit and friends keep their group)."""
    if not failures:
        raise  # (the group being handled: only ever called from an except block)
    first = failures[0]
    for other in failures[1:]:
        first.add_note(f"also failed concurrently: {type(other).__name__}: {other}")
    return first


async def gather_all(*aws: Awaitable[R]) -> list[R]:
    """``asyncio.gather`` that leaves nothing running behind it: the first failure cancels
    the others (and waits until they are done) and is re-raised with the failures that
    happened concurrently attached as notes; cancelling the caller cancels them all.
    (``asyncio.gather`` returns at the first failure and lets the rest run on: a failed
    write's other chunk uploads could land after the caller's next write.)"""
    results: list[R | None] = [None] * len(aws)
    failures: list[Exception] = []
    first: Exception | None = None

    async def one(index: int, aw: Awaitable[R]) -> None:
        try:
            results[index] = await aw
        except Exception as exc:
            failures.append(exc)
            raise

    try:
        async with asyncio.TaskGroup() as tg:
            for index, aw in enumerate(aws):
                tg.create_task(one(index, aw))
    except BaseExceptionGroup:
        first = first_failure(failures)
    if first is not None:
        raise first
    return cast(list[R], results)


class Claim:
    """Who gets a job handed to another thread first: the thread that would start it
    (:meth:`start`) or a cancelled caller that would revoke it (:meth:`revoke`); the
    other one loses. Lock-free: ``list.append`` is atomic."""

    __slots__ = ("_order",)

    def __init__(self) -> None:
        self._order: list[str] = []

    def start(self) -> bool:
        """In the worker: whether to run the job (it was not revoked first)."""
        self._order.append("start")
        return self._order[0] == "start"

    def revoke(self) -> bool:
        """In the caller: whether the job will never run (it had not started)."""
        self._order.append("revoke")
        return self._order[0] == "revoke"


async def await_unabandoned(fut: asyncio.Future[R], revoke: Callable[[], bool]) -> R:
    """Await ``fut``, the outcome of work running in another thread or process, without
    abandoning that work when the caller is cancelled: work not started yet is revoked
    (``revoke()`` returns whether it will never run), work already running is waited for,
    and only then does the ``CancelledError`` propagate. So nothing the work does (a chunk
    it stores, say) happens after the caller's cancellation was reported: a cancelled write
    cannot land in the array created next at its place. The wait lasts as long as the
    job, one batch of chunks; further cancellations during it are held until it ends."""
    try:
        return await asyncio.shield(fut)
    except asyncio.CancelledError:
        if not fut.done() and not revoke():
            while not fut.done():
                try:
                    await asyncio.shield(fut)
                except BaseException:  # its outcome no longer matters
                    pass
        elif fut.done() and not fut.cancelled():
            fut.exception()  # retrieved: no "exception was never retrieved" warning
        raise
