"""Run test code in a fresh Python process: spawned (never forked), so nothing of this
process's memory, event loops, clients or open files is inherited, as in a dask worker.

One spawned worker is started on first use and reused by every later call in this
process (each store's SDK is imported there once); it is shut down at exit.
"""

from __future__ import annotations

import asyncio
import atexit
import multiprocessing
import os
import pickle
import threading
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from typing import Any, TypeVar

from asyncarr.errors import ReadOnlyStoreError

__all__ = [
    "in_fresh_process",
    "open_clients",
    "run_in_fresh_process",
    "use_pickled_nodes",
    "use_pickled_stores",
]

T = TypeVar("T")

_pool: ProcessPoolExecutor | None = None
_pool_lock = threading.Lock()


def _fresh_pool() -> ProcessPoolExecutor:
    global _pool
    with _pool_lock:
        if _pool is None:
            _pool = ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn"))
            atexit.register(_pool.shutdown, cancel_futures=True)
        return _pool


async def in_fresh_process(fn: Callable[..., T], *args: Any) -> T:
    """``fn(*args)`` in a spawned worker process (``fn`` and the arguments are pickled)."""
    loop = asyncio.get_running_loop()
    return await loop.run_in_executor(_fresh_pool(), fn, *args)


def run_in_fresh_process(fn: Callable[..., T], *args: Any) -> T:
    """:func:`in_fresh_process`, blocking (for tests without an event loop)."""
    return _fresh_pool().submit(fn, *args).result()


def use_pickled_stores(
    blobs: list[bytes], key: str, new_key: str, new_value: bytes
) -> list[dict[str, Any]]:
    """In the worker: unpickle each store in turn and use it: read ``key``, list its
    prefix, try to write ``new_key``, close it. Returns what happened, per store."""
    return [asyncio.run(_use_store(blob, key, new_key, new_value)) for blob in blobs]


async def _use_store(blob: bytes, key: str, new_key: str, new_value: bytes) -> dict[str, Any]:
    store = pickle.loads(blob)
    report: dict[str, Any] = {"pid": os.getpid(), "repr": repr(store), "type": type(store)}
    try:
        report["read_only"] = store.read_only
        report["value"] = await store.get(key)
        prefix = key.rsplit("/", 1)[0] + "/"
        report["listed"] = (
            sorted([k async for k in store.list_prefix(prefix)]) if store.lists_every_key else None
        )
        try:
            await store.set(new_key, new_value)
            report["refused"] = None
        except ReadOnlyStoreError as exc:
            report["refused"] = str(exc)
    finally:
        await store.aclose()
    return report


def open_clients() -> dict[str, int]:
    """How many SDK clients each client pool in this process holds (every event loop's),
    by the pool's name in lower case (``"s3"``, ``"gcs"``, ...)."""
    from asyncarr.stores._client_pool import _pools

    return {pool.name.lower(): len(pool.entries()) for pool in list(_pools)}


def use_pickled_nodes(blob: bytes, times: int) -> dict[str, Any]:
    """In the worker: what a dask worker does with a pickled node, ``times`` over: load
    a dict of handles (``"array"``, ``"group"``: sync; ``"async_array"``,
    ``"async_group"``: async) and read through each, then drop them. The first round also
    writes: row 0 of the arrays becomes its row index sum negated (sync) and row 1 of the
    async array likewise. Returns the sums read, the distinct portal event loops used and
    the open SDK clients."""
    from asyncarr.runtime import get_portal

    loops: list[object] = []  # held, so that no two loops share an id
    sums: list[float] = []
    for round_ in range(times):
        handles = pickle.loads(blob)
        array, group = handles["array"], handles["group"]
        sums.append(float(array[...].sum()))
        member = group[group.array_keys()[0]]
        sums.append(float(member[...].sum()))
        if round_ == 0:
            array[0] = -1
            asyncio.run(_use_async(handles["async_array"], handles["async_group"], sums))
        loops.append(get_portal().loop)
        del handles, array, group, member
    return {
        "pid": os.getpid(),
        "sums": sums,
        "loops": len({id(loop) for loop in loops}),
        "clients": open_clients(),
    }


async def _use_async(array: Any, group: Any, sums: list[float]) -> None:
    try:
        sums.append(float((await array.read()).sum()))
        await array.write(-2, (1,))
        member = await group.get((await group.array_keys())[0])
        sums.append(float((await member.read()).sum()))
    finally:
        await array.aclose()
        await group.aclose()
