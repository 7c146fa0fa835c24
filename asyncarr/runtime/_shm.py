"""Shared-memory buffers and by-reference transport for the codec executor.

The codec executor's process mode must let worker processes write decoded
chunks straight into the caller's output buffer. This module provides the
pieces:

* :func:`create_array` backs an ndarray by a POSIX shared-memory segment
  (``shm_open`` + ``mmap``). The parent keeps only a *weak* reference to the
  mapping, so the segment name is unlinked automatically once every array on
  it is gone, and explicitly (and at once) by :func:`release`.
* :func:`dumps` / :func:`loads` pickle job arguments and results. An ndarray
  (or any view of one, strided or reversed included) whose memory lies inside
  a known segment is reduced to a small reference (segment name, byte offset,
  shape, strides, dtype) instead of its data; the receiving process maps the
  same segment and rebuilds the view, so writes land in the caller's buffer.
* Private (non-shared) buffers handed out by the executor can be registered
  with :func:`register_private`; :func:`dumps` refuses to copy them into a
  worker (:class:`PrivateBufferError`) because the worker's writes would be
  lost - the executor then runs that job in a thread instead.
* :func:`worker_call` is the function worker processes run for every job;
  :func:`preload_forkserver` and :func:`main_module_is_reimport_safe` help
  start those processes warm and safely.

Leak safety: every segment is registered with :mod:`multiprocessing`'s
resource tracker (which unlinks it should this process die), unlinked by a
``weakref.finalize`` when its mapping is garbage collected, and unlinked at
interpreter exit. Worker processes map segments only for the duration of one
job and never register them.

Only POSIX platforms have ``shm_open``; elsewhere :data:`SHM_SUPPORTED` is
false, nothing is shared and process-mode arguments travel by value.
"""

from __future__ import annotations

import atexit
import bisect
import contextlib
import importlib
import io
import mmap
import os
import pickle
import re
import secrets
import sys
import threading
import time
import traceback
import weakref
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from typing import Any, Literal

import numpy as np

from asyncarr._lifecycle import bind_to_owner, ensure_owner_alive
from asyncarr.errors import AsyncarrError, ConfigError

__all__ = [
    "SEGMENT_PREFIX",
    "SHM_SUPPORTED",
    "PrivateBufferError",
    "RemoteTraceback",
    "create_array",
    "dumps",
    "live_segment_names",
    "load_exception",
    "loads",
    "main_module_is_reimport_safe",
    "populate",
    "preload_forkserver",
    "register_private",
    "release",
    "shm_free_bytes",
    "warm_worker",
    "worker_call",
    "worker_pid",
]

NDArray = np.ndarray[Any, np.dtype[Any]]

try:
    _posixshmem: Any = importlib.import_module("_posixshmem")
except ImportError:  # pragma: no cover - non-POSIX platforms
    _posixshmem = None

SHM_SUPPORTED: bool = _posixshmem is not None
"""Whether this platform can back buffers by POSIX shared memory."""

SEGMENT_PREFIX = "asyncarr-"
"""Every segment is named ``/asyncarr-<pid>-<random>`` (``/dev/shm`` on Linux)."""

_RTYPE = "shared_memory"


class PrivateBufferError(AsyncarrError):
    """A job argument views a non-shared output buffer (it cannot go to a worker process)."""


class RemoteTraceback(Exception):
    """Carries the formatted traceback of an exception raised in a worker process."""

    def __init__(self, tb: str) -> None:
        super().__init__(tb)
        self.tb = tb

    def __str__(self) -> str:
        return self.tb


# --------------------------------------------------------------------------- address index


@dataclass(eq=False, slots=True)
class _Region:
    """A span of this process's address space that :func:`dumps` knows about."""

    start: int
    end: int
    name: str | None
    """Segment name; ``None`` for a private (non-shared) buffer."""
    mapping: Callable[[], mmap.mmap | None] = field(default=lambda: None)
    """Returns the live mapping of a segment (a weak or strong reference)."""


class _Index:
    """Thread-safe lookup of the region that contains an address range.

    Regions die in ``weakref.finalize`` callbacks, which run wherever the
    garbage collector frees a buffer: on any thread, at any bytecode boundary
    (Python 3.12 collects on the eval breaker), including inside this index's
    own critical section or between acquiring its lock and anything else.
    So :meth:`discard` (the finalizers' entry point) never waits for the
    lock: it queues the region, and every critical section applies the queue
    on entry and on exit. Queued regions are always applied before a lookup,
    so a freed buffer's address is never resolved to its dead region.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._pending: list[_Region] = []
        self._starts: list[int] = []
        self._regions: list[_Region] = []
        self._by_name: dict[str, _Region] = {}

    @contextlib.contextmanager
    def _section(self) -> Iterator[None]:
        with self._lock:
            self._drain()
            try:
                yield
            finally:
                self._drain()

    def _drain(self) -> None:
        pending = self._pending
        while pending:  # list.pop is atomic: finalizers may append meanwhile
            self._remove_locked(pending.pop())

    def discard(self, region: _Region) -> None:
        """Forget ``region`` soon; safe from finalizers (never blocks)."""
        self._pending.append(region)
        if self._lock.acquire(blocking=False):  # fails when held, by this thread too
            try:
                self._drain()
            finally:
                self._lock.release()

    def empty(self) -> bool:
        """Whether no region is known (a lock-free hint: exact for the caller's own buffers)."""
        return not self._regions and not self._pending

    def add(self, region: _Region) -> None:
        with self._section():
            # A stale region overlapping a fresh allocation can only belong to memory
            # that was already freed (its finalizer has not run yet): drop it.
            i = bisect.bisect_left(self._starts, region.start)
            while i > 0 and self._regions[i - 1].end > region.start:
                i -= 1
            while i < len(self._regions) and self._regions[i].start < region.end:
                self._drop_at(i)
            self._starts.insert(i, region.start)
            self._regions.insert(i, region)
            if region.name is not None:
                self._by_name[region.name] = region

    def _drop_at(self, i: int) -> None:
        old = self._regions.pop(i)
        del self._starts[i]
        if old.name is not None and self._by_name.get(old.name) is old:
            del self._by_name[old.name]

    def remove(self, region: _Region) -> bool:
        """Forget ``region`` now; whether it was known. Not for finalizers: see :meth:`discard`."""
        with self._section():
            return self._remove_locked(region)

    def _remove_locked(self, region: _Region) -> bool:
        i = bisect.bisect_left(self._starts, region.start)
        while i < len(self._regions) and self._starts[i] == region.start:
            if self._regions[i] is region:
                self._drop_at(i)
                return True
            i += 1
        return False

    def find(self, lo: int, hi: int) -> _Region | None:
        """The region holding bytes ``[lo, hi)``, if any."""
        with self._section():
            i = bisect.bisect_right(self._starts, lo) - 1
            if i >= 0:
                region = self._regions[i]
                if region.start <= lo and hi <= region.end:
                    return region
            return None

    def by_name(self, name: str) -> _Region | None:
        with self._section():
            return self._by_name.get(name)

    def names(self) -> list[str]:
        with self._section():
            return list(self._by_name)


_INDEX = _Index()
_OWNED: dict[str, weakref.finalize[Any, Any]] = {}
"""Segments created (and not yet unlinked) by this process: name -> unlink finalizer.

Deliberately lock-free: every access is one dict operation (atomic). The unlink
finalizer runs wherever the garbage collector happens to free a mapping - possibly
on a thread that is inside one of these accesses - so a (non-reentrant) lock here
deadlocked that thread against itself.
"""


def _address(arr: NDArray) -> int:
    return int(arr.__array_interface__["data"][0])


def _extent(arr: NDArray) -> tuple[int, int]:
    """First and one-past-last byte addresses that ``arr`` can touch."""
    lo = hi = _address(arr)
    for n, s in zip(arr.shape, arr.strides):
        if s < 0:
            lo += s * (n - 1)
        else:
            hi += s * (n - 1)
    return lo, hi + arr.itemsize


_MADV_POPULATE_WRITE = getattr(mmap, "MADV_POPULATE_WRITE", 23 if sys.platform == "linux" else None)
"""``madvise(2)`` advice that faults a range in, writable, in one call (Linux >= 5.14)."""
_PAGE = mmap.PAGESIZE


def populate(first: NDArray, last: NDArray) -> None:
    """In a worker process's job: fault in, for writing, the shared-memory pages from the
    start of ``first`` to the end of ``last`` (two views of one segment mapped for the
    job). Anywhere else (the main process, threads), for private memory, or where the
    kernel cannot, do nothing.

    A worker that is about to decode a batch of chunks into shared memory calls this:
    one ``madvise`` instead of a page fault per 4 KiB page (shared memory gets no huge
    pages, and each such fault allocates the page in the segment's file). Measured on
    2 CPUs, 16,384 chunks of 16 KB: ~10 % less worker CPU per read.
    """
    advice = _MADV_POPULATE_WRITE
    if advice is None or _job.attached is None:
        return  # not in a worker job: the cheap test first (random reads pass here)
    lo = _extent(first)[0]
    hi = _extent(last)[1]
    if hi <= lo:
        return
    region = _INDEX.find(lo, hi)
    mm = region.mapping() if region is not None and region.name is not None else None
    if region is None or mm is None:
        return
    start = (lo - region.start) // _PAGE * _PAGE
    try:
        mm.madvise(advice, start, hi - region.start - start)
    except (OSError, ValueError):  # an older kernel, or no memory: the faults will do
        pass


# --------------------------------------------------------------------------- segments


def shm_free_bytes() -> int | None:
    """Free bytes in the shared-memory filesystem (``/dev/shm``), where it can be read."""
    try:
        st = os.statvfs("/dev/shm")
    except OSError:
        return None
    return st.f_bavail * st.f_frsize


def _unlink(name: str) -> None:
    """Remove the segment name (mappings stay valid) and stop tracking it."""
    from multiprocessing import resource_tracker

    _OWNED.pop(name, None)
    try:
        _posixshmem.shm_unlink(name)
    except FileNotFoundError:
        pass
    try:
        resource_tracker.unregister(name, _RTYPE)
    except Exception:  # pragma: no cover - tracker gone at interpreter exit
        pass


def _forget(region: _Region) -> None:
    _INDEX.discard(region)
    if region.name is not None:
        _unlink(region.name)


def create_array(shape: tuple[int, ...], dtype: np.dtype[Any], order: Literal["C", "F"]) -> NDArray:
    """A new, uninitialised ndarray backed by a fresh shared-memory segment.

    Raises :class:`ConfigError` when the platform has no shared memory or the
    shared-memory filesystem is too small for the buffer.
    """
    if _posixshmem is None:  # pragma: no cover - non-POSIX platforms
        raise ConfigError("shared-memory buffers need POSIX shm_open, not available here")
    size = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    free = shm_free_bytes()
    if free is not None and size > free:
        raise ConfigError(
            f"a shared-memory buffer of {size} bytes does not fit in /dev/shm "
            f"({free} bytes free); enlarge /dev/shm or use executor mode 'threads'"
        )
    from multiprocessing import resource_tracker

    name = f"/{SEGMENT_PREFIX}{os.getpid()}-{secrets.token_hex(6)}"
    nbytes = max(size, 1)
    fd = _posixshmem.shm_open(name, os.O_CREAT | os.O_EXCL | os.O_RDWR, mode=0o600)
    try:
        resource_tracker.register(name, _RTYPE)
        os.ftruncate(fd, nbytes)
        mm = mmap.mmap(fd, nbytes)
    except BaseException:
        _unlink(name)
        raise
    finally:
        os.close(fd)
    start = _address(np.frombuffer(mm, dtype=np.uint8))
    region = _Region(start, start + nbytes, name, weakref.ref(mm))
    _INDEX.add(region)
    _OWNED[name] = weakref.finalize(mm, _forget, region)
    arr: NDArray = np.ndarray(shape, dtype, buffer=mm, order=order)
    return arr


def release(arr: NDArray) -> bool:
    """Unlink the segment behind ``arr`` now; the memory stays valid for ``arr``.

    Also forgets a private buffer registered with :func:`register_private`.
    Returns whether ``arr`` belonged to a known buffer.
    """
    if arr.size == 0 or _INDEX.empty():
        return False
    lo, hi = _extent(arr)
    region = _INDEX.find(lo, hi)
    if region is None:
        return False
    if region.name is None:
        _INDEX.remove(region)
        return True
    fin = _OWNED.get(region.name)
    if fin is not None:
        fin()  # runs _forget once: drops the index entry and unlinks
    else:
        _INDEX.remove(region)
    return True


def register_private(arr: NDArray) -> None:
    """Remember ``arr`` as an output buffer that must never be copied into a worker."""
    if arr.size == 0:
        return
    lo, hi = _extent(arr)
    region = _Region(lo, hi, None)
    _INDEX.add(region)
    weakref.finalize(arr, _INDEX.discard, region)


def live_segment_names() -> list[str]:
    """Names of the segments this process created and has not unlinked yet."""
    return list(_OWNED)


def _after_fork_in_child() -> None:
    """A forked child shares the parent's segments but does not own them: its exit must
    not unlink them (the parent's worker processes still attach to them by name). Nor is
    the parent's forkserver its child: see :func:`_forget_parents_forkserver`."""
    for fin in list(_OWNED.values()):
        fin.detach()
    _OWNED.clear()
    _forget_parents_forkserver()


def _forget_parents_forkserver() -> None:
    """In a child forked by ``os.fork``: forget the forkserver the parent started.

    multiprocessing checks that its forkserver still runs with ``waitpid``, which fails
    (``ChildProcessError``) in any process but the one that started it, so a forked child
    could not start worker processes at all. The child starts a forkserver of its own
    when it needs one; its copy of the parent's "alive" pipe is closed, so the parent's
    forkserver still ends with the parent. (The attributes are CPython's, unchanged from
    3.8 to 3.13; where they are missing there is nothing to do.) A child that leaves
    with ``os._exit`` skips every exit handler: worker processes it started are then
    left waiting, as for any multiprocessing pool; leave with ``sys.exit`` (or close the
    executor first)."""
    from multiprocessing import forkserver

    server = getattr(forkserver, "_forkserver", None)
    if server is None or getattr(server, "_forkserver_pid", None) is None:
        return
    alive = getattr(server, "_forkserver_alive_fd", None)
    if isinstance(alive, int):
        with contextlib.suppress(OSError):
            os.close(alive)
    server._forkserver_pid = None
    server._forkserver_address = None
    server._forkserver_alive_fd = None
    # The parent's worker processes are not this process's children either: at exit,
    # multiprocessing would try to join them ("can only join a child process").
    from multiprocessing import process

    children = getattr(process, "_children", None)
    if isinstance(children, set):
        me = os.getpid()
        children -= {p for p in children if getattr(p, "_parent_pid", me) != me}


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)


@atexit.register
def _unlink_all() -> None:
    finalizers = list(_OWNED.values())
    for fin in finalizers:
        fin()


# --------------------------------------------------------------------------- transport


class _JobState(threading.local):
    attached: dict[str, _Region] | None = None
    """The segments mapped while one worker job runs in this thread; ``None`` outside one
    (a class default: no exception to catch per lookup on the hot path)."""


_job = _JobState()


def _attach(name: str) -> _Region:
    fd = _posixshmem.shm_open(name, os.O_RDWR, mode=0o600)
    try:
        size = os.fstat(fd).st_size
        mm = mmap.mmap(fd, size)
    finally:
        os.close(fd)
    start = _address(np.frombuffer(mm, dtype=np.uint8))
    region = _Region(start, start + size, name, lambda: mm)
    _INDEX.add(region)
    return region


def _resolve(name: str) -> mmap.mmap:
    region = _INDEX.by_name(name)
    mm = region.mapping() if region is not None else None
    if mm is not None:
        return mm
    attached = _job.attached
    region = _attach(name)
    if attached is not None:
        attached[name] = region
    else:  # pragma: no cover - only reached outside worker_call
        _INDEX.remove(region)
    mm = region.mapping()
    assert mm is not None
    return mm


def _rebuild_view(
    name: str,
    offset: int,
    shape: tuple[int, ...],
    strides: tuple[int, ...],
    dtype: np.dtype[Any],
    writeable: bool,
) -> NDArray:
    """Map segment ``name`` (if needed) and return the described view of it."""
    arr: NDArray = np.ndarray(shape, dtype, buffer=_resolve(name), offset=offset, strides=strides)
    if not writeable:
        arr.flags.writeable = False
    return arr


class _RefPickler(pickle.Pickler):
    """Pickles ndarrays that live in shared memory as references, not data."""

    def reducer_override(self, obj: Any) -> Any:
        if isinstance(obj, np.ndarray) and obj.size:
            lo, hi = _extent(obj)
            region = _INDEX.find(lo, hi)
            if region is not None:
                if region.name is None:
                    raise PrivateBufferError(
                        "a job argument views an output buffer that is not in shared memory"
                    )
                return _rebuild_view, (
                    region.name,
                    _address(obj) - region.start,
                    obj.shape,
                    obj.strides,
                    obj.dtype,
                    bool(obj.flags.writeable),
                )
        return NotImplemented


def dumps(obj: Any) -> bytes:
    """Pickle ``obj``; arrays in shared memory travel as references.

    Raises :class:`PrivateBufferError` if ``obj`` holds a view of a buffer
    registered with :func:`register_private`.
    """
    buf = io.BytesIO()
    _RefPickler(buf, protocol=pickle.HIGHEST_PROTOCOL).dump(obj)
    return buf.getvalue()


def loads(data: bytes) -> Any:
    """Inverse of :func:`dumps` (maps the referenced segments as needed)."""
    return pickle.loads(data)


# --------------------------------------------------------------------------- worker side

_MAIN_GUARD = re.compile(r"""__name__\s*==\s*['"]__main__['"]|['"]__main__['"]\s*==\s*__name__""")


def preload_forkserver(modules: tuple[str, ...]) -> None:
    """Have the forkserver import ``modules`` once, so workers fork warm.

    This is what makes rebuilding the pool after a crash cheap. It extends
    (never replaces) the process-wide preload list and has no effect once
    the forkserver runs.
    """
    from multiprocessing import forkserver

    server = getattr(forkserver, "_forkserver", None)
    current = list(getattr(server, "_preload_modules", None) or ["__main__"])
    wanted = current + [m for m in (*modules, __name__) if m not in current]
    if wanted != current:
        forkserver.set_forkserver_preload(wanted)


def main_module_is_reimport_safe() -> bool:
    """Whether worker processes can start without re-running the main script.

    ``spawn`` and ``forkserver`` workers re-import the main module; that is
    harmless when there is none to import (REPL, Jupyter, ``-c``), when it is
    a package's ``__main__`` (skipped by multiprocessing) or when its source
    has an ``if __name__ == "__main__":`` guard.
    """
    main = sys.modules.get("__main__")
    if main is None:
        return True
    spec_name = getattr(getattr(main, "__spec__", None), "name", None)
    if isinstance(spec_name, str) and (spec_name == "__main__" or spec_name.endswith(".__main__")):
        return True
    path = getattr(main, "__file__", None)
    if not isinstance(path, str):
        return True
    try:
        with open(path, encoding="utf-8", errors="replace") as fh:
            source = fh.read()
    except OSError:
        return False
    return _MAIN_GUARD.search(source) is not None


def warm_worker(
    modules: tuple[str, ...], owner: Connection | None = None, start_method: str = "spawn"
) -> None:
    """Process-pool initializer: bind the worker to its owner (``owner``: the read end of
    the owner's lifeline; the worker dies with it and never changes a store after it, see
    :mod:`asyncarr._lifecycle`), then import the heavy modules once per worker."""
    if owner is not None:
        bind_to_owner(owner, start_method)
    for module in modules:
        try:
            importlib.import_module(module)
        except ImportError:
            pass


def _portable_exception(exc: BaseException) -> bytes:
    """Pickle ``exc`` (with its remote traceback) or a faithful stand-in."""
    tb = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
    try:
        data = pickle.dumps(exc, protocol=pickle.HIGHEST_PROTOCOL)
        pickle.loads(data)
    except Exception:
        stand_in = AsyncarrError(
            f"{type(exc).__module__}.{type(exc).__qualname__}: {exc} "
            "(the worker's exception could not be transferred as is)"
        )
        data = pickle.dumps(stand_in, protocol=pickle.HIGHEST_PROTOCOL)
    return pickle.dumps((data, tb), protocol=pickle.HIGHEST_PROTOCOL)


def load_exception(data: bytes) -> BaseException:
    """Rebuild an exception sent by :func:`worker_call`, its traceback as ``__cause__``."""
    exc_data, tb = pickle.loads(data)
    exc: BaseException = pickle.loads(exc_data)
    exc.__cause__ = RemoteTraceback(f'\n"""\n{tb}"""')
    return exc


def worker_call(payload: bytes) -> tuple[bool, bytes, float]:
    """Run one job in a worker process.

    ``payload`` is ``dumps((fn, args))``. Returns ``(ok, body, cpu_seconds)``:
    ``body`` is ``dumps(result)`` when ``ok``, else a pickled exception for
    :func:`load_exception`. Segments mapped for the job are unmapped (once
    nothing references them) when it ends.
    """
    ensure_owner_alive()  # a job queued for an owner that has died never starts
    attached: dict[str, _Region] = {}
    _job.attached = attached
    cpu = 0.0
    try:
        try:
            fn, args = loads(payload)
            c0 = time.thread_time()
            try:
                result = fn(*args)
            finally:
                cpu = time.thread_time() - c0
            return True, dumps(result), cpu
        except Exception as exc:
            return False, _portable_exception(exc), cpu
    finally:
        _job.attached = None
        for region in attached.values():
            _INDEX.remove(region)


def worker_pid(delay: float) -> int:
    """Warm-up probe: hold a worker for ``delay`` seconds and report its pid."""
    time.sleep(delay)
    return os.getpid()
