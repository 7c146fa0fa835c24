"""One SDK client per (event loop, settings key), shared and reference-counted.

Why this exists
    The async SDKs behind the cloud stores (aiobotocore, aiohttp, pymongo's
    ``AsyncMongoClient``, azure-storage-blob's aio clients) bind a client to the
    event loop that created it: its connection pool, locks and futures belong
    to that loop, and using or closing it from another loop fails or hangs. A
    store, however, may be used from several loops (the sync facade's loop
    thread, an application loop, ``asyncio.run`` in a worker thread). So a store
    never owns a client: it takes a :class:`Lease` on the one client that the
    backend's :class:`LoopClientPool` keeps for the *running* loop and the
    store's settings key (endpoint, credentials fingerprint, client settings).
    Every store with the same key in that loop shares one connection pool.

Lifecycle
    :meth:`LoopClientPool.acquire` opens the client on first use; concurrent
    first users in one loop wait for that single open and share its result.
    A failed (or cancelled) open is not cached: its exception goes to the task
    that ran the opener, and tasks that were waiting for it retry the open
    themselves, one at a time. A cached client that the pool's ``is_usable``
    check rejects (say, a closed aiohttp session) is replaced by a new one;
    leases on the old one keep working until they are released.

    :meth:`LoopClientPool.release` drops one reference (a second release of
    the same lease does nothing). The last one removes the client from the
    pool and closes it *on its own loop*: directly when that loop runs the
    caller, through :func:`asyncio.run_coroutine_threadsafe` when it runs in
    another thread (waiting for the close), and not at all when the loop has
    stopped or closed: the pool's ``abandon`` hook, if any, then gets the
    client (the sockets go with that loop).

    A loop that is ending closes its clients first, leased or not
    (:func:`close_loop_clients`; the sync portal does it when its thread stops,
    which for a process that unpickled handles is at exit): stores that were
    never closed leave no open session behind.

Threading
    One :class:`threading.Lock` guards the pool's table and reference counts;
    it is never held while an opener, a close or any other awaitable runs.
    Loops are held weakly: the table forgets a loop that has been garbage
    collected.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import weakref
from collections.abc import Awaitable, Callable, Hashable, Iterable
from typing import Any, Generic, TypeVar, cast

__all__ = ["Lease", "LoopClientPool", "PooledClient", "close_loop_clients"]

logger = logging.getLogger(__name__)

K = TypeVar("K", bound=Hashable)
C = TypeVar("C")

DEFAULT_CLOSE_TIMEOUT = 10.0
"""Seconds :meth:`LoopClientPool.release` waits for a close that runs on another loop."""


class PooledClient(Generic[K, C]):
    """One client of a pool: bound to one event loop and one settings key.

    Shared by every :class:`Lease` taken on it; :attr:`refs` counts those not
    released yet.
    """

    __slots__ = (
        "__weakref__",
        "_client",
        "_ended",
        "_loop",
        "_opened",
        "_ready",
        "_refs",
        "key",
    )

    def __init__(self, key: K, loop: asyncio.AbstractEventLoop) -> None:
        self.key = key
        self._loop = weakref.ref(loop)
        self._client: C | None = None
        self._ready = False
        self._refs = 0
        self._opened = asyncio.Event()  # set once the open succeeded or failed
        self._ended = False  # closed with its loop (see close_loop_clients)

    @property
    def client(self) -> C:
        """The SDK client (only pooled clients that opened are ever handed out)."""
        if not self._ready:
            raise RuntimeError("the pooled client is not open")
        return cast(C, self._client)

    @property
    def loop(self) -> asyncio.AbstractEventLoop | None:
        """The loop the client belongs to; ``None`` once that loop was garbage collected."""
        return self._loop()

    @property
    def refs(self) -> int:
        """How many leases on this client are not released yet."""
        return self._refs

    def _set_open(self, client: C) -> None:
        self._client = client
        self._ready = True

    def __repr__(self) -> str:  # the key may identify credentials: never shown
        state = "open" if self._ready else "opening"
        return f"<PooledClient {state}, refs={self._refs}>"


class Lease(Generic[K, C]):
    """One reference to a :class:`PooledClient`, given back with :meth:`LoopClientPool.release`."""

    __slots__ = ("_pool", "_released", "pooled")

    def __init__(self, pool: LoopClientPool[K, C], pooled: PooledClient[K, C]) -> None:
        self._pool = pool
        self.pooled = pooled
        self._released = False

    @property
    def client(self) -> C:
        """The shared SDK client."""
        return self.pooled.client

    @property
    def loop(self) -> asyncio.AbstractEventLoop | None:
        """The loop the client belongs to (``None`` once it was garbage collected)."""
        return self.pooled.loop

    @property
    def refs(self) -> int:
        """How many unreleased leases (this one included, until released) share the client."""
        return self.pooled.refs

    @property
    def released(self) -> bool:
        return self._released

    def __repr__(self) -> str:
        state = "released" if self._released else "held"
        return f"<Lease {state} on {self.pooled!r}>"


class LoopClientPool(Generic[K, C]):
    """Clients shared per (running event loop, key), closed with their last lease.

    ``name`` labels log messages (keys are never logged: they may identify
    credentials). ``close`` closes a client; it runs on the client's own loop.
    ``is_usable`` (optional) rejects a cached client that can no longer be
    used, so that the next acquirer gets a new one. ``abandon`` (optional,
    synchronous) gets a client whose loop stopped or closed before its last
    lease was released, to drop it without awaiting anything (for instance
    detaching an aiohttp session so that it is not reported as leaked).
    ``close_timeout`` bounds the wait for a close that runs on another loop.
    See the module docstring for the rules.
    """

    def __init__(
        self,
        name: str,
        *,
        close: Callable[[C], Awaitable[None]],
        is_usable: Callable[[C], bool] | None = None,
        abandon: Callable[[C], None] | None = None,
        close_timeout: float = DEFAULT_CLOSE_TIMEOUT,
    ) -> None:
        self._name = name
        self._close = close
        self._is_usable = is_usable
        self._abandon = abandon
        self._close_timeout = close_timeout
        self._lock = threading.Lock()
        _pools.add(self)
        self._by_loop: weakref.WeakKeyDictionary[
            asyncio.AbstractEventLoop, dict[K, PooledClient[K, C]]
        ] = weakref.WeakKeyDictionary()

    @property
    def name(self) -> str:
        """The label of the pool's clients (``"S3"``, ``"GCS"``, ...)."""
        return self._name

    def __repr__(self) -> str:
        return f"LoopClientPool({self._name!r}, {len(self.values())} open)"

    # -- acquiring ----------------------------------------------------------------------
    def _lease(self, pooled: PooledClient[K, C]) -> Lease[K, C]:
        """A new lease on ``pooled`` (call with the lock held)."""
        pooled._refs += 1
        return Lease(self, pooled)

    def _cached(self, clients: dict[K, PooledClient[K, C]], key: K) -> PooledClient[K, C] | None:
        """The entry for ``key``, forgetting an open one that is no longer usable (lock held)."""
        pooled = clients.get(key)
        usable = self._is_usable
        if pooled is not None and pooled._ready and usable and not usable(cast(C, pooled._client)):
            del clients[key]  # its leases still release (and close) it
            return None
        return pooled

    async def acquire(self, key: K, opener: Callable[[], Awaitable[C]]) -> Lease[K, C]:
        """A lease on the client for ``key`` in the running loop, opened by ``opener`` if needed.

        Concurrent first acquirers in one loop run ``opener`` once and share
        its client. If it fails (or its task is cancelled) nothing is cached:
        the exception propagates to the task that ran it, and the tasks that
        waited try again, the first of them running ``opener`` anew. A lease
        on a cached, usable client is handed out without yielding to the loop.
        """
        loop = asyncio.get_running_loop()
        while True:
            with self._lock:
                clients = self._by_loop.setdefault(loop, {})
                pooled = self._cached(clients, key)
                if pooled is None:
                    pooled = clients[key] = PooledClient(key, loop)
                    break  # this task opens it
                if pooled._ready:
                    return self._lease(pooled)
            await pooled._opened.wait()  # another task is opening it; then look again
        try:
            client = await opener()
        except BaseException:
            with self._lock:
                if clients.get(key) is pooled:
                    del clients[key]
            pooled._opened.set()  # the waiters retry
            raise
        with self._lock:
            pooled._set_open(client)
            lease = self._lease(pooled)
        pooled._opened.set()
        return lease

    def acquire_nowait(self, key: K, make: Callable[[], C]) -> Lease[K, C]:
        """Like :meth:`acquire` for SDKs whose clients are built synchronously by ``make``.

        Never yields to the loop, so callers can get a client from plain
        (non-async) helpers. An exception from ``make`` propagates and nothing
        is cached. Do not mix with :meth:`acquire` in one pool: a client that
        :meth:`acquire` is still opening raises :class:`RuntimeError` here.
        """
        loop = asyncio.get_running_loop()
        with self._lock:
            clients = self._by_loop.setdefault(loop, {})
            cached = self._cached(clients, key)
            if cached is not None:
                if not cached._ready:
                    raise RuntimeError(f"a {self._name} client is being opened by acquire()")
                return self._lease(cached)
        # Only code running on ``loop`` adds entries for it, and ``make`` cannot
        # yield to that loop: no other entry for ``key`` can appear meanwhile.
        pooled: PooledClient[K, C] = PooledClient(key, loop)
        pooled._set_open(make())
        pooled._opened.set()
        with self._lock:
            self._by_loop.setdefault(loop, {})[key] = pooled
            return self._lease(pooled)

    # -- releasing ----------------------------------------------------------------------
    async def release(self, lease: Lease[K, C]) -> None:
        """Give back ``lease``; the last lease on a client closes it on its own loop.

        Releasing a lease twice does nothing the second time. An exception
        raised by ``close`` propagates (from another loop's close too).
        """
        if lease._pool is not self:
            raise ValueError(f"the lease does not belong to the {self._name} client pool")
        pooled = lease.pooled
        with self._lock:
            if lease._released:
                return
            lease._released = True
            pooled._refs -= 1
            if pooled._refs > 0:
                return
            if pooled._ended:  # closed already, with its loop
                return
            loop = pooled.loop
            clients = self._by_loop.get(loop) if loop is not None else None
            if clients is not None and clients.get(pooled.key) is pooled:
                del clients[pooled.key]
        await self._close_on(loop, pooled.client)

    async def release_all(self, leases: Iterable[Lease[K, C]]) -> None:
        """Release every lease, even when one release fails; then raise the first failure."""
        failure: BaseException | None = None
        for lease in list(leases):
            try:
                await self.release(lease)
            except BaseException as exc:  # re-raised below, after the rest are released
                failure = failure or exc
        if failure is not None:
            raise failure

    async def close_loop(self) -> None:
        """Close every client of the running loop, leased or not: the loop is ending (its
        clients could never be used again). Leases on them release without closing twice.
        Failures are logged, not raised: the rest still close."""
        loop = asyncio.get_running_loop()
        with self._lock:
            clients = self._by_loop.pop(loop, {})
            ready = [pooled for pooled in clients.values() if pooled._ready]
            for pooled in ready:
                pooled._ended = True
        for pooled in ready:
            try:
                await self._closing(pooled.client)
            except Exception:
                logger.debug(
                    "%s client: closing it with its loop failed", self._name, exc_info=True
                )

    async def _closing(self, client: C) -> None:
        await self._close(client)

    async def _close_on(self, loop: asyncio.AbstractEventLoop | None, client: C) -> None:
        """Close ``client`` on ``loop``, its own loop, if that loop can still run it."""
        if loop is asyncio.get_running_loop():
            # shielded: a cancelled caller does not leave the client half closed
            await asyncio.shield(self._closing(client))
            return
        if loop is not None and loop.is_running():
            try:
                future = asyncio.run_coroutine_threadsafe(self._closing(client), loop)
            except RuntimeError:  # it closed just now
                pass
            else:
                done, _ = await asyncio.wait(
                    {asyncio.wrap_future(future)}, timeout=self._close_timeout
                )
                if done:
                    done.pop().result()
                else:
                    logger.warning(
                        "%s client: its event loop did not close it within %g s; "
                        "no longer waiting for it",
                        self._name,
                        self._close_timeout,
                    )
                return
        if loop is None or loop.is_closed():
            logger.debug(
                "%s client dropped without closing: its event loop is closed "
                "(its sockets went with that loop)",
                self._name,
            )
        else:
            logger.warning(
                "%s client dropped without closing: its event loop is not running", self._name
            )
        if self._abandon is not None:
            try:
                self._abandon(client)
            except Exception:
                logger.debug("%s client: abandoning it failed", self._name, exc_info=True)

    # -- introspection (snapshots, for diagnostics and tests) ------------------------------
    def get(
        self,
        loop: asyncio.AbstractEventLoop,
        default: dict[K, PooledClient[K, C]] | None = None,
    ) -> dict[K, PooledClient[K, C]] | None:
        """The open clients of ``loop`` by key, or ``default`` when the pool never saw ``loop``."""
        with self._lock:
            clients = self._by_loop.get(loop)
            if clients is None:
                return default
            return {key: pooled for key, pooled in clients.items() if pooled._ready}

    def entries(self) -> list[PooledClient[K, C]]:
        """The open clients of every loop, with their keys and counts (a snapshot)."""
        with self._lock:
            return [
                pooled
                for clients in list(self._by_loop.values())
                for pooled in clients.values()
                if pooled._ready
            ]

    def values(self) -> list[C]:
        """The open SDK clients of every loop."""
        return [pooled.client for pooled in self.entries()]


_pools: weakref.WeakSet[LoopClientPool[Any, Any]] = weakref.WeakSet()
"""Every pool in the process (for :func:`close_loop_clients`)."""


async def close_loop_clients() -> None:
    """Close the clients of every pool that belong to the running loop, which is ending
    (the sync portal's loop when its thread stops)."""
    for pool in list(_pools):
        await pool.close_loop()
