"""Worker processes that die with the process that owns them.

A codec worker process (see :mod:`asyncarr.runtime`) stores the chunks it encodes
itself. If the process that started it (its *owner*) is killed, nothing may be written
on its behalf afterwards: another process may already be re-writing the same array, and
a late chunk from the dead writer would silently overwrite that newer data. Nor may the
worker linger: it holds the owner's standard output and error, so a supervisor reading
them to the end would wait for it.

:func:`bind_to_owner` runs first thing in every worker process. From then on:

- a watcher thread waits for the owner to exit (``pidfd`` where Linux has it, else a
  poll every :data:`POLL_SECONDS`) and kills the worker with ``SIGKILL`` at once,
  whatever it is doing: a batch in flight is abandoned, never applied later;
- the kernel sends ``SIGKILL`` to the worker when its parent dies (Linux
  ``PR_SET_PDEATHSIG``; under ``forkserver`` the parent is the fork server, which exits
  as soon as its owner's end of a pipe closes);
- :func:`ensure_owner_alive` - which stores call right before each change they make
  visible (a link, rename or unlink) - kills the worker if the owner has gone. The
  watcher needs the GIL to act, which a busy worker thread may hold for a few
  milliseconds; this check is a system call and needs nothing else.

What remains is the single system call between that check and the change itself: a
change that passed its check just before the owner died may land microseconds after it,
never later. In the owner itself (and any process that is not a worker)
:func:`ensure_owner_alive` does nothing.
"""

from __future__ import annotations

import contextlib
import os
import select
import signal
import sys
import threading
import time

__all__ = ["POLL_SECONDS", "bind_to_owner", "ensure_owner_alive", "owner_pid"]

POLL_SECONDS = 0.05
"""How often the watcher looks for the owner where there is no ``pidfd``."""

_PR_SET_PDEATHSIG = 1

_owner: int | None = None
"""The owner's pid, in a bound worker process."""
_owner_fd = -1
"""A ``pidfd`` of the owner (readable once it has exited), or -1."""


def owner_pid() -> int | None:
    """The pid of the process this worker is bound to (``None`` outside workers)."""
    return _owner


def _set_parent_death_signal() -> None:
    if not sys.platform.startswith("linux"):
        return
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    except (OSError, AttributeError):  # pragma: no cover - no prctl: the watcher remains
        pass


def _die() -> None:
    """End this worker at once: no handler, no cleanup, nothing more written."""
    os.kill(os.getpid(), signal.SIGKILL)
    os._exit(1)  # pragma: no cover - SIGKILL cannot be caught


def _poll_owner(timeout_ms: int | None) -> bool:
    """Whether the owner's pidfd is readable (it has exited), waiting up to ``timeout_ms``."""
    poller = select.poll()
    poller.register(_owner_fd, select.POLLIN)
    with contextlib.suppress(InterruptedError):
        return bool(poller.poll(timeout_ms))
    return False


def _gone() -> bool:
    if _owner is None:
        return False
    if _owner_fd >= 0:
        return bool(_poll_owner(0))
    try:
        os.kill(_owner, 0)
    except ProcessLookupError:
        return True
    except PermissionError:  # pragma: no cover - someone else's pid now: ours is gone
        return True
    return False


def _watch() -> None:
    if _owner_fd >= 0:
        while not _poll_owner(None):
            pass
        _die()
    while not _gone():  # pragma: no cover - kernels without pidfd
        time.sleep(POLL_SECONDS)
    _die()  # pragma: no cover


def bind_to_owner(pid: int) -> None:
    """Bind this (worker) process to the process ``pid``: die when it exits, and never
    change a store once it has gone. Call it once, first thing in the worker."""
    global _owner, _owner_fd
    if pid == os.getpid():
        return
    _set_parent_death_signal()
    _owner = pid
    pidfd_open = getattr(os, "pidfd_open", None)
    if pidfd_open is not None:
        try:
            _owner_fd = pidfd_open(pid)
        except ProcessLookupError:
            _die()
        except OSError:  # pragma: no cover - kernel without pidfd: poll instead
            _owner_fd = -1
    if _gone():  # it died before we were watching
        _die()
    threading.Thread(target=_watch, name="asyncarr-owner-watch", daemon=True).start()


def ensure_owner_alive() -> None:
    """Kill this worker if its owner has exited (no-op outside bound workers).

    Stores call it right before each change they make visible, so that a worker never
    changes a store after its owner died."""
    if _owner is not None and _gone():
        _die()


def _forget_owner_in_child() -> None:
    """A process forked from a worker is no worker of that owner (its pidfd is shared)."""
    global _owner, _owner_fd
    _owner = None
    _owner_fd = -1


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_owner_in_child)
