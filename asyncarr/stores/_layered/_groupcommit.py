"""Group commit: store calls made outside any operation, one generation for those that
wait together.

Each call (``set``, ``delete``, ``set_if_not_exists``, ...) on a layered store outside an
operation or transaction is an :class:`Op` that joins a queue; the first call to get the
handle's commit lock (one per event loop) lets the calls that are ready to run queue up
behind it (one pass of the loop), takes every queued call and commits them as one
generation, evaluated on the newest generation (again after each lost race, so
conditional calls are exact across processes). Every call returns once its change is
published, or gets its own outcome (``False`` from ``set_if_not_exists``, a
:class:`PreconditionFailedError` from ``set_if_version``) or the commit's error.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import threading
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from asyncarr._tasks import await_unabandoned
from asyncarr.errors import PreconditionFailedError
from asyncarr.stores._layered._container import LoopLocks
from asyncarr.stores._layered._txn import Transaction

__all__ = ["GroupCommit", "Op", "apply_op", "batch_message"]


@dataclass(eq=False)
class Op:
    """One store call waiting to be committed."""

    kind: str
    key: str
    value: bytes | None = None
    version: str | None = None
    future: concurrent.futures.Future[Any] = field(default_factory=concurrent.futures.Future)
    claimed: bool = False


class GroupCommit:
    """The queue of one handle's waiting calls (every view of a container shares it)."""

    def __init__(self) -> None:
        self._queue: list[Op] = []
        self._lock = threading.Lock()
        self._loop_locks = LoopLocks()

    async def submit(self, op: Op, publish: Callable[[list[Op]], Awaitable[list[Any]]]) -> Any:
        """``op``'s outcome once it is committed (``publish`` commits a batch and returns
        each call's outcome, an exception instance for a call that failed alone)."""
        with self._lock:
            self._queue.append(op)
        async with self._loop_locks.get():
            if not op.claimed:  # (else a leader took it: just wait for the outcome)
                await asyncio.sleep(0)  # the calls ready to run queue up behind the lock
                with self._lock:
                    batch = [o for o in self._queue if not o.claimed]
                    for o in batch:
                        o.claimed = True
                    self._queue.clear()
                # a task of its own: cancelling this caller does not abandon the others
                task = asyncio.ensure_future(_settle(batch, publish))
                await await_unabandoned(task, lambda: False)
        return await asyncio.wrap_future(op.future)


async def _settle(batch: list[Op], publish: Callable[[list[Op]], Awaitable[list[Any]]]) -> None:
    """Publish ``batch``; every call's outcome goes to its future."""
    try:
        outcomes = await publish(batch)
    except Exception as exc:
        for op in batch:
            op.future.set_exception(exc)
        return
    except BaseException:
        for op in batch:
            op.future.cancel()
        raise
    for op, outcome in zip(batch, outcomes, strict=True):
        if isinstance(outcome, BaseException):
            op.future.set_exception(outcome)
        else:
            op.future.set_result(outcome)


async def apply_op(txn: Transaction, op: Op, *, capture: bool = False) -> Any:
    """Apply one store call to ``txn``: its result, or (``capture``) the error it gets."""
    kind, key = op.kind, op.key
    try:
        if kind == "set":
            await txn.put(key, op.value)
        elif kind == "delete":
            await txn.put(key, None)
        elif kind == "delete_prefix":
            for k in txn.keys_with_prefix(key):
                await txn.put(k, None)
        elif kind == "set_if_not_exists":
            if txn.lookup(key) is not None:
                return False
            await txn.put(key, op.value)
            return True
        else:
            current = txn.version(key)
            if current != op.version or (kind == "delete_if_version" and current is None):
                raise PreconditionFailedError(
                    f"version is {current}, expected {op.version}", store=txn.container, key=key
                )
            await txn.put(key, op.value)
    except PreconditionFailedError as exc:
        if capture:
            return exc
        raise
    return None


def batch_message(batch: list[Op]) -> str:
    """A group commit's message."""
    if len(batch) == 1:
        return f"{batch[0].kind} {batch[0].key}"
    return f"{len(batch)} changes ({batch[0].kind} {batch[0].key}, ...)"
