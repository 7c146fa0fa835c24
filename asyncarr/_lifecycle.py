"""Worker processes that die with the process that owns them.

A codec worker process (see :mod:`asyncarr.runtime`) stores the chunks it encodes
itself. If the process that started its pool (its *owner*) is killed, nothing may be
written on its behalf afterwards: another process may already be re-writing the same
array, and a late chunk from the dead writer would silently overwrite that newer data.
Nor may anything the owner started linger: it holds the owner's standard output and
error, so a supervisor reading them to the end would wait for it.

A process pool leaves more behind than its workers, and they keep each other alive.
Under ``forkserver`` the workers are children of the fork server, not of the owner; the
fork server runs until every holder of its "alive" pipe has gone, and multiprocessing
hands that pipe to every worker; the resource tracker runs until every holder of its
pipe (owner, fork server, workers) has gone; and an idle worker waits on a job queue
whose write end it holds itself. So the owner's death used to end none of them.

The *lifeline*: the owner keeps the only write end of a pipe (close-on-exec, and closed
in children made by ``os.fork``, which would otherwise keep its workers alive) and hands
the read end to every worker (:func:`owner_lifeline`). Nothing is written to it: it
reads as end-of-file exactly when the owner has died - the kernel closes a dead
process's descriptors before its death can be observed (``waitpid``, a pidfd), and a
recycled pid cannot fool it. :func:`bind_to_owner` runs first thing in every worker:

- a thread waits for end-of-file and kills the worker at once: a batch in flight is
  abandoned, jobs still queued never run;
- :func:`ensure_owner_alive`, which stores call right before each change they make
  visible (a link, rename or unlink, under the lock that orders the writers of that
  key) and the worker calls before each job, kills the worker if the owner has gone. The
  thread needs the GIL to act, which a job may hold; this check needs nothing else;
- under ``forkserver`` (on Linux) the worker has the kernel kill it when the fork server
  dies (``PR_SET_PDEATHSIG``: no GIL needed), and drops its copy of the fork server's
  alive pipe, so the fork server ends as soon as the owner does. (A worker starting
  processes of its own starts its own fork server, as it always did: the copy served
  nothing else.) Not under ``spawn``: there the worker's parent is the owner's *thread*
  that happened to start it, and the signal would come when that thread ends.

Once the workers and the fork server have gone, the resource tracker reads end-of-file
too: it unlinks the owner's remaining shared-memory segments and semaphores and exits.

What remains is the time between :func:`ensure_owner_alive` and the system call that
makes the change (no I/O in between): a change whose check passed just before the owner
died can land microseconds after it, and is ordered before any later writer's change to
that directory (they take the same lock). In any process that is not a worker,
:func:`ensure_owner_alive` costs one global lookup.
"""

from __future__ import annotations

import ctypes
import os
import select
import signal
import sys
import threading
from multiprocessing.connection import Connection
from typing import Any

__all__ = ["bind_to_owner", "ensure_owner_alive", "owner_is_gone", "owner_lifeline"]

_PR_SET_PDEATHSIG = 1

# --------------------------------------------------------------------------- the owner

_lock = threading.Lock()
_lifeline: tuple[Connection, int] | None = None
"""This process's lifeline, once it has started workers: the read end handed to them,
and the write end it keeps."""


def owner_lifeline() -> Connection:
    """The read end of this process's lifeline, to pass to the workers of its pools
    (created on first use; in a worker's start-up arguments it travels as a descriptor)."""
    global _lifeline
    with _lock:
        if _lifeline is None:
            read_fd, write_fd = os.pipe()  # both close-on-exec (PEP 446)
            _lifeline = (Connection(read_fd, writable=False), write_fd)
        return _lifeline[0]


def _forget_lifeline_in_child() -> None:
    """In a child made by ``os.fork``: close the copy of the parent's lifeline (its
    workers are not the child's to keep alive); the child makes its own when needed."""
    global _lifeline, _lock
    _lock = threading.Lock()
    if _lifeline is not None:
        reader, write_fd = _lifeline
        _lifeline = None
        reader.close()
        os.close(write_fd)


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_lifeline_in_child)

# --------------------------------------------------------------------------- a worker

_owner_fd = -1
"""In a bound worker: the read end of its owner's lifeline; -1 elsewhere."""
_owner_conn: Connection | None = None
"""Keeps ``_owner_fd`` open."""


class _Pollers(threading.local):
    """Each thread's ``poll`` object for the lifeline (one may not be polled by two
    threads at once; made once, a check costs one system call)."""

    poller: tuple[int, select.poll] | None = None


_pollers = _Pollers()


def owner_is_gone(fd: int | None = None, timeout: float | None = 0) -> bool:
    """Whether the lifeline ``fd`` (this worker's by default) reads as end-of-file, i.e.
    its owner has died; waiting up to ``timeout`` seconds for that (``None``: as long as
    it takes). ``False`` outside bound workers."""
    fd = _owner_fd if fd is None else fd
    if fd < 0:
        return False
    if not hasattr(select, "poll"):  # pragma: no cover - no poll(2)
        return bool(select.select([fd], [], [], timeout)[0])
    cached = _pollers.poller
    if cached is None or cached[0] != fd:
        poller = select.poll()
        poller.register(fd, select.POLLIN | select.POLLHUP | select.POLLERR)
        cached = _pollers.poller = (fd, poller)
    return bool(cached[1].poll(None if timeout is None else int(timeout * 1000)))


def _die() -> None:
    """End this worker at once: no handler, no cleanup, nothing more written."""
    os.kill(os.getpid(), signal.SIGKILL)
    os._exit(1)  # pragma: no cover - SIGKILL cannot be caught


def ensure_owner_alive() -> None:
    """Kill this worker if its owner has died (nothing to do outside bound workers).

    Call it right before each change to stored data, holding the lock that orders the
    writers of the key."""
    if _owner_fd >= 0 and owner_is_gone():
        _die()


def _watch(fd: int) -> None:
    owner_is_gone(fd, timeout=None)
    _die()


def bind_to_owner(lifeline: Connection, start_method: str) -> None:
    """In a worker process, first thing: die with the owner whose lifeline (read end)
    this is, and never change a store once it has gone. ``start_method`` is the pool's
    (``forkserver`` or ``spawn``)."""
    global _owner_conn, _owner_fd
    _owner_conn = lifeline
    _owner_fd = lifeline.fileno()
    threading.Thread(
        target=_watch, args=(_owner_fd,), name="asyncarr-owner-watch", daemon=True
    ).start()
    if start_method == "forkserver":
        _die_with_fork_server()


def _die_with_fork_server() -> None:
    """Be killed when the fork server (this worker's parent) dies, and let it die with
    the owner: drop the copy of its "alive" pipe that multiprocessing gives every worker."""
    if sys.platform.startswith("linux"):
        server = os.getppid()
        try:
            ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
        except (AttributeError, OSError):  # pragma: no cover - no prctl: the lifeline remains
            pass
        if os.getppid() != server:  # it died before the signal was armed
            _die()
    from multiprocessing import forkserver

    state: Any = getattr(forkserver, "_forkserver", None)  # CPython internals (3.11-3.13)
    alive = getattr(state, "_forkserver_alive_fd", None)
    if isinstance(alive, int):
        try:
            os.close(alive)
        except OSError:  # pragma: no cover - not open here
            pass
        state._forkserver_alive_fd = None


def _forget_owner_in_child() -> None:
    """A process forked from a worker is no worker of that owner."""
    global _owner_conn, _owner_fd
    _owner_conn = None
    _owner_fd = -1


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_owner_in_child)
