"""Structured gathering of concurrent awaitables (layer L0: plain asyncio, no asyncarr
imports), for every layer that fans out: stores, the runtime's scheduler, the core."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from typing import TypeVar, cast

__all__ = ["first_failure", "gather_all"]

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
