"""The sync portal: one event-loop thread that runs the async core for blocking callers.

The blocking API (:mod:`asyncarr.sync`) is "the async call, then wait": it
submits the coroutine to the portal's loop, running in a dedicated daemon
thread, and blocks the calling thread until it finishes. The thread is
lease-counted: it starts with the first lease and stops (after its pending
work) when the last one is released; a call made without a lease holds a
temporary one.

Blocking from the portal thread itself would deadlock, so it raises
:class:`SyncFromLoopError`. Blocking from another thread that runs its own
loop (a Jupyter kernel) works: that thread waits while the portal does the
work.
"""

from __future__ import annotations

import asyncio
import atexit
import concurrent.futures
import contextvars
import os
import threading
import weakref
from collections.abc import Awaitable, Callable
from types import TracebackType
from typing import Any, ParamSpec, TypeVar

from asyncarr.errors import SyncFromLoopError
from asyncarr.runtime._limiter import blocked_loop, running_loop_or_none
from asyncarr.stores._client_pool import close_loop_clients

__all__ = ["SyncPortal", "get_portal"]

P = ParamSpec("P")
T = TypeVar("T")

_CANCEL_GRACE = 10.0
"""Seconds a caller interrupted by Ctrl-C waits for the cancelled work to unwind."""


class _LoopThread:
    """One event loop running in one daemon thread until told to stop."""

    def __init__(self, name: str) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self._main, name=name, daemon=True)
        self._ready = threading.Event()
        self._stop: asyncio.Event | None = None
        self.submitted: set[asyncio.Task[Any]] = set()
        """Tasks started by :meth:`SyncPortal.call` (touched on the loop thread only)."""
        self.thread.start()
        self._ready.wait()

    def _main(self) -> None:
        asyncio.set_event_loop(self.loop)
        try:
            self.loop.run_until_complete(self._serve())
        finally:
            try:
                self.loop.run_until_complete(self.loop.shutdown_asyncgens())
                try:
                    self.loop.run_until_complete(self.loop.shutdown_default_executor())
                except RuntimeError:  # at interpreter exit no thread may start to join it
                    pass
            finally:
                asyncio.set_event_loop(None)
                self.loop.close()

    async def _serve(self) -> None:
        self._stop = asyncio.Event()
        self._ready.set()
        await self._stop.wait()
        me = asyncio.current_task()
        # Let submitted work finish, then cancel whatever was left running in the background.
        while pending := [t for t in asyncio.all_tasks() if t is not me and not t.done()]:
            submitted = [t for t in pending if t in self.submitted]
            if not submitted:
                for task in pending:
                    task.cancel()
            await asyncio.gather(*(submitted or pending), return_exceptions=True)
        # the stores' SDK clients on this loop go with it (leased by stores never closed)
        await close_loop_clients()

    def stop(self) -> None:
        """Ask the loop to finish its pending work and exit (does not wait)."""
        stop = self._stop
        assert stop is not None
        try:
            self.loop.call_soon_threadsafe(stop.set)
        except RuntimeError:  # already closed
            pass

    def join(self, timeout: float | None = None) -> None:
        if threading.current_thread() is not self.thread:
            self.thread.join(timeout)


class SyncPortal:
    """One lease-counted event-loop thread for the blocking API (``asyncarr.sync``).

    ``acquire()``/``release()`` (or ``with portal:``) hold a lease: the
    thread starts on the first lease and stops, after its pending work, when
    the count drops back to zero. Objects bound to the portal loop (client
    sessions of cloud stores) must be created and closed under one lease.
    """

    def __init__(self, *, name: str = "asyncarr-portal") -> None:
        self._name = name
        self._lock = threading.Lock()
        self._leases = 0
        self._generation = 0
        """Bumped in a forked child: leases taken before the fork are not held there."""
        self._runner: _LoopThread | None = None
        _all_portals.add(self)

    def __repr__(self) -> str:
        state = "running" if self._runner is not None else "stopped"
        return f"SyncPortal({self._name!r}, {state}, leases={self._leases})"

    # -- leases ---------------------------------------------------------------------------------
    @property
    def leases(self) -> int:
        """How many leases are held now."""
        return self._leases

    @property
    def loop(self) -> asyncio.AbstractEventLoop | None:
        """The portal's event loop while its thread runs, else ``None``."""
        runner = self._runner
        return runner.loop if runner is not None else None

    @property
    def thread(self) -> threading.Thread | None:
        """The portal's thread while it runs, else ``None``."""
        runner = self._runner
        return runner.thread if runner is not None else None

    def acquire(self) -> int:
        """Take a lease, starting the loop thread if this is the first one. Returns the
        lease's token for :meth:`release`."""
        with self._lock:
            if self._runner is None:
                self._runner = _LoopThread(self._name)
            self._leases += 1
            return self._generation

    def release(self, token: int | None = None) -> None:
        """Give back a lease; the last one stops the thread once its pending work is done.

        ``token`` (from :meth:`acquire`): a lease taken before this process was forked
        from its parent is not held here, and giving it back does nothing (objects
        inherited by a child close quietly). Called from outside the portal thread, it
        waits (boundedly) for the thread to exit.
        """
        with self._lock:
            if token is not None and token != self._generation:
                return
            if self._leases <= 0:
                raise RuntimeError("SyncPortal.release() without a matching acquire()")
            self._leases -= 1
            if self._leases > 0 or self._runner is None:
                return
            runner, self._runner = self._runner, None
        runner.stop()
        runner.join(_CANCEL_GRACE)

    def __enter__(self) -> SyncPortal:
        self.acquire()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.release()

    # -- calls ----------------------------------------------------------------------------------
    def call(self, fn: Callable[P, Awaitable[T]], *args: P.args, **kwargs: P.kwargs) -> T:
        """Run ``await fn(*args, **kwargs)`` on the portal loop and block until it is done.

        The caller's context variables are copied to the task. Exceptions
        propagate unchanged. A :class:`KeyboardInterrupt` in the waiting
        thread cancels the task (waiting briefly for it to unwind) and is
        re-raised. Raises :class:`SyncFromLoopError` when called from the
        portal thread itself, where blocking would deadlock.
        """
        runner = self._runner
        if runner is not None and threading.current_thread() is runner.thread:
            raise SyncFromLoopError(
                "a blocking asyncarr call was made from the sync portal's own event loop "
                f"(calling {getattr(fn, '__qualname__', fn)!r}); it would deadlock: "
                "await the async API instead"
            )
        self.acquire()
        try:
            runner = self._runner
            assert runner is not None
            return self._submit_and_wait(runner, fn, args, kwargs)
        finally:
            self.release()

    def _submit_and_wait(
        self,
        runner: _LoopThread,
        fn: Callable[..., Awaitable[T]],
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
    ) -> T:
        result: concurrent.futures.Future[T] = concurrent.futures.Future()
        finished = threading.Event()
        context = contextvars.copy_context()
        task_box: list[asyncio.Task[T]] = []

        async def invoke() -> T:
            return await fn(*args, **kwargs)

        def on_done(task: asyncio.Task[T]) -> None:
            runner.submitted.discard(task)
            try:
                if task.cancelled():
                    result.cancel()
                elif (exc := task.exception()) is not None:
                    result.set_exception(exc)
                else:
                    result.set_result(task.result())
            except concurrent.futures.InvalidStateError:
                pass
            finally:
                finished.set()

        def start() -> None:
            if result.cancelled():
                finished.set()
                return
            task = runner.loop.create_task(invoke(), context=context)
            runner.submitted.add(task)
            task_box.append(task)
            task.add_done_callback(on_done)

        def cancel() -> None:
            if task_box:
                task_box[0].cancel()
            else:
                finished.set()

        runner.loop.call_soon_threadsafe(start)
        try:
            # A thread running its own loop (Jupyter) blocks it here: slots that loop's
            # tasks hold are not given back until we return, so they must not keep
            # this call's requests waiting (see AdaptiveLimiter).
            with blocked_loop(running_loop_or_none()):
                return result.result()
        except KeyboardInterrupt:
            if result.done():
                raise  # the coroutine itself raised it
            result.cancel()
            try:
                runner.loop.call_soon_threadsafe(cancel)
            except RuntimeError:
                raise KeyboardInterrupt from None
            finished.wait(_CANCEL_GRACE)
            raise


_all_portals: weakref.WeakSet[SyncPortal] = weakref.WeakSet()
_portal: SyncPortal | None = None
_portal_lock = threading.Lock()


def get_portal() -> SyncPortal:
    """The process-wide :class:`SyncPortal` (a fresh one in a forked child)."""
    global _portal
    with _portal_lock:
        if _portal is None:
            _portal = SyncPortal()
        return _portal


def _after_fork_in_child() -> None:
    global _portal, _portal_lock
    _portal_lock = threading.Lock()
    _portal = None
    for portal in list(_all_portals):  # their threads do not exist in the child
        portal._lock = threading.Lock()
        portal._leases = 0
        portal._generation += 1
        portal._runner = None


def _stop_at_exit() -> None:
    for portal in list(_all_portals):
        runner = portal._runner
        if runner is not None:
            portal._runner = None
            runner.stop()
            runner.join(timeout=5.0)


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)
atexit.register(_stop_at_exit)
