"""A store over a directory of the local filesystem: ``file://`` URLs and plain paths.

Keys map to files below the root (``a/c/0/1`` is ``<root>/a/c/0/1``).

Guarantees (POSIX local filesystems such as ext4, xfs, btrfs, tmpfs, APFS):

- **Atomic writes.** A value is written to a temporary file in the key's own
  directory and then put in place whole; a reader sees the old value or the
  new one, never a torn file. On Linux the temporary file is anonymous
  (``O_TMPFILE``): a new key gets it with one ``link(2)``, and a crash leaves
  nothing behind. A key that exists already (and filesystems without
  ``O_TMPFILE``) takes a named one, ``.<name>.<pid>.<n>.asyncarr.tmp``, moved
  over the key with ``rename(2)``; a crash leaves at most that stray file
  (never listed). After an overwrite the next values are staged named, after
  a new key anonymous again, so rewriting an array wastes no ``link`` per chunk.
  With ``fsync=True`` the data and the directory entry are flushed to disk
  before ``set`` returns (default ``False``: durable once the OS writes back).
- **Conditional writes across threads and processes.** Every mutation
  (``set``, ``set_if_not_exists``, ``set_if_version``, ``delete``) makes its
  change to the directory (the ``rename``, ``link`` or ``unlink``, and for
  the conditional ones the version check before it) holding an exclusive
  ``flock(2)`` on the key's directory, so ``set_if_version`` compares and
  replaces atomically with respect to all asyncarr writers, in any process
  on the same machine. The temporary file is written before the lock is
  taken, so the lock is held for a few system calls only, and no lock files
  are created. (Earlier versions locked a per-key ``.<name>.asyncarr.lock``
  file; they and this version do not exclude each other.) Where a
  filesystem refuses ``flock`` on a directory descriptor (NFS), the lock is
  taken on a reserved ``.asyncarr.lock`` file in that directory instead.
  ``flock`` is not reliable on NFS and other network filesystems: there these
  guarantees do not hold.
- **Versions** are ``inode.mtime_ns.size.crc32c`` of the file, read through
  one file descriptor together with the data, so the token matches the bytes
  returned and an inode recycled within one timestamp tick still differs by
  content checksum.
- **No escapes.** Besides the key syntax checks every store does, the file
  actually opened must resolve (through any symlinks) to a path under the
  root; otherwise :class:`InvalidKeyError` is raised. The check uses the
  opened descriptor itself (``/proc/self/fd``), so it is race-free on Linux.
  The synchronous reads of codec workers (``read_local``, ``read_local_into``,
  ``read_local_ranges``, ``read_local_ranges_into``: one per chunk, the hot
  path) check each directory once per store instead and open the file itself
  with ``O_NOFOLLOW`` (a symlinked chunk file takes the checked way): a
  directory swapped for a symlink out of the root *after* its first check is
  not noticed there.
- File names ending in ``.asyncarr.tmp`` or ``.asyncarr.lock`` are reserved:
  such keys are refused and such files are never listed.

Blocking file I/O runs on a process-wide pool of threads (one call does
open + read + close together: about twice as fast as ``aiofiles`` for many
small chunk files, measured on 256 files of 250 KB).
"""

from __future__ import annotations

import asyncio
import builtins
import ctypes
import errno
import fcntl
import functools
import itertools
import os
import stat
import sys
import threading
from collections.abc import AsyncIterator, Callable, Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Generic, Self, TypeVar
from urllib.parse import unquote

import crc32c

from asyncarr._lifecycle import ensure_owner_alive
from asyncarr._tasks import await_unabandoned
from asyncarr._types import ByteRange, RangeRequest, Versioned, range_to_slice
from asyncarr.abc import Store
from asyncarr.config import StoreLimits
from asyncarr.errors import (
    ConfigError,
    InvalidKeyError,
    KeyNotFoundError,
    PermissionDeniedError,
    PreconditionFailedError,
    ReadOnlyStoreError,
    StoreError,
    TransientStoreError,
)
from asyncarr.stores._bodies import too_large

__all__ = [
    "IO_THREADS",
    "LocalStore",
    "local_store_from_url",
    "run_io",
    "translate_os_error",
    "url_to_path",
]

T = TypeVar("T")
R = TypeVar("R")

IO_THREADS = 32
"""Worker threads of the shared pool that runs blocking file I/O."""

_TMP_SUFFIX = ".asyncarr.tmp"
_LOCK_SUFFIX = ".asyncarr.lock"
_O_CLOEXEC = getattr(os, "O_CLOEXEC", 0)
_O_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)
_KEY_READ = os.O_RDONLY | os.O_NONBLOCK
"""How a key's file is opened for reading. ``O_NONBLOCK``: a FIFO put where a value
should be would otherwise block the open until some writer came, forever (a read that no
timeout could end, the worker thread stuck in ``open``); regular files ignore it."""
_READ_FLAGS = _KEY_READ | _O_NOFOLLOW | _O_CLOEXEC
_O_DIRECTORY = getattr(os, "O_DIRECTORY", 0)
_O_PATH = getattr(os, "O_PATH", os.O_RDONLY)
_PROC_FD = os.path.isdir("/proc/self/fd")
_O_TMPFILE = getattr(os, "O_TMPFILE", 0)
_NO_TMPFILE_ERRNOS = {errno.EOPNOTSUPP, errno.ENOTSUP, errno.EISDIR, errno.EINVAL}
"""``open(O_TMPFILE)`` errors that mean "not on this kernel or filesystem"."""
_NO_LINK_ERRNOS = {errno.EPERM, errno.EOPNOTSUPP, errno.ENOTSUP, errno.EXDEV, errno.ENOSYS}
"""``link`` errors that mean "this filesystem cannot link an anonymous file in"."""
_MAX_ANONYMOUS = 64
"""Most anonymous temporary files (open descriptors) one batch keeps before committing:
:meth:`LocalStore.write_local_many` commits every this many; a batch that must commit at
once (a conditional write) gives later values named temporary files."""
_LIST_BATCH = 1000
_DIR_RETRIES = 20

_temp_serial = itertools.count()
"""Numbers temporary file names, with the process id: unique without a random source."""


class _Temp:
    """A staged value's temporary file in its key's directory: anonymous (an open
    ``O_TMPFILE`` descriptor, ``fd``; nothing in the directory until it is linked under
    a name) or named (``name``: ``.<key name>.<pid>.<n>.asyncarr.tmp``)."""

    __slots__ = ("fd", "name")

    def __init__(self, fd: int = -1, name: str = "") -> None:
        self.fd = fd
        self.name = name

    def __bool__(self) -> bool:
        return self.fd >= 0 or bool(self.name)

    def close(self) -> None:
        """Close the anonymous file's descriptor (once linked, or to drop it)."""
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1

    def discard(self, dfd: int) -> None:
        """Drop an uncommitted value: close the descriptor, remove the named file."""
        self.close()
        if self.name:
            _unlink_quietly(self.name, dfd)
            self.name = ""

    def link(self, dfd: int, name: str) -> None:
        """Give the anonymous file ``name`` in the directory (``FileExistsError`` if taken)."""
        os.link(f"/proc/self/fd/{self.fd}", name, dst_dir_fd=dfd, follow_symlinks=True)


_NO_TEMP = _Temp()

_Change = tuple[str, _Temp, Callable[[int, str, _Temp], T]]
"""A staged change: key, its temporary file (empty for a removal), the op that applies it."""


def _temp_name(name: str) -> str:
    return f".{_short(name)}.{os.getpid():x}.{next(_temp_serial):x}{_TMP_SUFFIX}"


_pool: ThreadPoolExecutor | None = None
_pool_lock = threading.Lock()


def _reset_pool_after_fork() -> None:
    global _pool, _pool_lock
    _pool = None
    _pool_lock = threading.Lock()


os.register_at_fork(after_in_child=_reset_pool_after_fork)


def _io_pool() -> ThreadPoolExecutor:
    global _pool
    pool = _pool
    if pool is None:
        with _pool_lock:
            if _pool is None:
                _pool = ThreadPoolExecutor(IO_THREADS, thread_name_prefix="asyncarr-file-io")
            pool = _pool
    return pool


async def run_io(fn: Callable[..., T], *args: Any) -> T:
    """Run blocking ``fn(*args)`` on the shared file-I/O thread pool. Cancelled, it waits
    for a call already running (a file being written must not land afterwards)."""
    cf = _io_pool().submit(fn, *args)
    return await await_unabandoned(asyncio.wrap_future(cf), cf.cancel)


_TRANSIENT_ERRNOS = {errno.EAGAIN, errno.EBUSY, errno.ECONNRESET, errno.EINTR}
_TRANSIENT_ERRNOS |= {errno.EMFILE, errno.ENFILE, errno.ESTALE, errno.ETIMEDOUT}


def translate_os_error(exc: OSError, *, store: object, key: str | None, action: str) -> StoreError:
    """The asyncarr error for an ``OSError`` raised while doing ``action`` on ``key``.

    Permission problems become :class:`PermissionDeniedError`; stale handles,
    timeouts and exhausted descriptors :class:`TransientStoreError`; full or
    failing disks (``ENOSPC``, ``EDQUOT``, ``EIO``) a plain, non-retried
    :class:`StoreError`.
    """
    code = exc.errno
    detail = f"{action} failed: {exc.strerror or exc}"
    if isinstance(exc, PermissionError) or code in (errno.EACCES, errno.EPERM):
        return PermissionDeniedError(detail, store=store, key=key)
    if code == errno.EROFS:
        return ReadOnlyStoreError(f"{action} failed: read-only file system", store=store, key=key)
    if code == errno.ENAMETOOLONG:
        return InvalidKeyError(f"{action} failed: key segment too long", store=store, key=key)
    if code in _TRANSIENT_ERRNOS:
        return TransientStoreError(detail, store=store, key=key)
    if code in (errno.EISDIR, errno.ENOTDIR, errno.ENOTEMPTY, errno.EEXIST):
        detail += " (the key is a directory holding other keys, or a parent key is a value)"
    return StoreError(detail, store=store, key=key)


def _fd_realpath(fd: int, fallback: str) -> str:
    if _PROC_FD:
        try:
            return os.readlink(f"/proc/self/fd/{fd}")
        except OSError:
            pass
    return os.path.realpath(fallback)


def _read_whole(fd: int, size_hint: int | None) -> bytes:
    """The whole file; with ``size_hint``, one read with no ``fstat`` where it fits."""
    if size_hint is not None:  # one read, no fstat: the usual chunk fits
        head = os.read(fd, size_hint + 1)
        if len(head) <= size_hint:  # short: the end of the (regular) file
            return head
        return head + _read_exact(fd, len(head), os.fstat(fd).st_size - len(head))
    return _read_exact(fd, 0, os.fstat(fd).st_size)


def _read_whole_into(fd: int, buffer: memoryview) -> bytes | memoryview:
    """The whole file: in ``buffer`` where it fits (one ``readv``: a short read is the
    end of a regular file), else as new bytes."""
    n = os.readv(fd, [buffer])
    if n < len(buffer):
        return buffer[:n]
    return _read_exact(fd, 0, os.fstat(fd).st_size)


def _read_exact(fd: int, offset: int, length: int) -> bytes:
    """``length`` bytes at ``offset`` (fewer only if the file is shorter)."""
    parts: list[bytes] = []
    while length > 0:
        data = os.pread(fd, length, offset)
        if not data:
            break
        parts.append(data)
        offset += len(data)
        length -= len(data)
    return parts[0] if len(parts) == 1 else b"".join(parts)


WRITE_PIECE = 256 << 10
"""Largest single ``write`` call. Measured on Linux 6.18 (ext4, in a VM): writes into a
new file ran at 4-5 GB/s in calls of up to 256 KiB, and at ~0.45 GB/s in calls of 2 MiB
or more (the page cache then takes large folios, and filling fresh ones was ~10x
slower there); 1 MiB calls were fast or slow depending on the memory's state. The extra
system calls cost little next to that (a 16 MB value: 64 calls instead of 1)."""


def _read_into(fd: int, offset: int, view: memoryview) -> int:
    """Fill ``view`` from ``offset``; the bytes read (fewer only if the file is shorter)."""
    got = 0
    while got < len(view):
        n = os.preadv(fd, [view[got:]], offset + got)
        if not n:
            break
        got += n
    return got


def _write_all(fd: int, value: bytes) -> None:
    view = memoryview(value).cast("B")
    while view:
        n = os.write(fd, view[:WRITE_PIECE])
        view = view[n:]


def _read_versioned_fd(fd: int) -> Versioned | None:
    """The whole file behind ``fd`` (closed afterwards) with its version token."""
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            return None
        data = _read_exact(fd, 0, st.st_size)
    finally:
        os.close(fd)
    crc = crc32c.crc32c(data)
    return Versioned(data, f"{st.st_ino:x}.{st.st_mtime_ns:x}.{st.st_size:x}.{crc:08x}")


def _short(name: str) -> str:
    return name if len(name) <= 100 else name[:60] + "~" + f"{crc32c.crc32c(name.encode()):08x}"


def _reserved(name: str) -> bool:
    return name.endswith(_TMP_SUFFIX) or name.endswith(_LOCK_SUFFIX)


class LocalStore(Store):
    """Keys as files below a root directory (see the module docs for guarantees).

    Parameters
    ----------
    root:
        The directory (``~`` is expanded, relative paths are made absolute).
        It need not exist until the first write.
    fsync:
        Flush each written file and its directory entry to stable storage
        before ``set`` returns. Slower; default ``False``.
    auto_mkdir:
        Create a missing root directory on the first write (default ``True``);
        with ``False`` writes to a missing root raise :class:`StoreError`.
        Sub-directories for nested keys are always created as needed.
    """

    def __init__(
        self,
        root: str | os.PathLike[str],
        *,
        read_only: bool = False,
        limits: StoreLimits | None = None,
        fsync: bool = False,
        auto_mkdir: bool = True,
    ) -> None:
        super().__init__(read_only=read_only, limits=limits)
        for name, flag in (("fsync", fsync), ("auto_mkdir", auto_mkdir)):
            if not isinstance(flag, bool):
                raise ConfigError(f"LocalStore option {name} must be a bool, got {flag!r}")
        self._root = os.path.abspath(os.path.expanduser(os.fspath(root)))
        self._root_real = os.path.realpath(self._root)
        self._fsync = fsync
        self._auto_mkdir = auto_mkdir
        self._endpoint = _device_key(self._root)
        self._safe_dirs: set[str] = set()
        """Directories (relative) already seen to resolve inside the root (see read_local)."""
        self._anonymous_temps = bool(_O_TMPFILE and _PROC_FD)
        """Stage values in anonymous ``O_TMPFILE`` files (off once the filesystem refuses)."""
        self._expect_new = True
        """Whether the latest key written was new: then the next value is staged
        anonymously, to be linked in place; after an overwrite, in a named file."""

    # -- identity ----------------------------------------------------------------
    @classmethod
    def default_limits(cls) -> StoreLimits:
        return StoreLimits(max_concurrency=64, adaptive=False)

    @property
    def root(self) -> str:
        """The absolute root directory."""
        return self._root

    @property
    def fsync(self) -> bool:
        """Whether writes flush data and directory entries to stable storage."""
        return self._fsync

    @property
    def auto_mkdir(self) -> bool:
        """Whether the first write creates a missing root directory."""
        return self._auto_mkdir

    @property
    def location(self) -> str:
        """``file://`` and the root with every symbolic link resolved."""
        return "file://" + os.path.realpath(self._root)

    @property
    def endpoint_key(self) -> str:
        """``file:dev=<major>:<minor>``: every store on one device shares one budget."""
        return self._endpoint

    @property
    def supports_conditional_writes(self) -> bool:
        return True

    @property
    def supports_local_files(self) -> bool:
        return True

    def with_read_only(self, read_only: bool = True) -> LocalStore:
        return LocalStore(
            self._root,
            read_only=read_only,
            limits=self.limits,
            fsync=self._fsync,
            auto_mkdir=self._auto_mkdir,
        )

    def __repr__(self) -> str:
        return f"LocalStore({self._root!r}{', read-only' if self.read_only else ''})"

    __str__ = __repr__

    def local_path(self, key: str) -> str:
        """The absolute path of ``key``'s file (it may not exist yet).

        Raises :class:`InvalidKeyError` if an existing file or directory on
        the way resolves outside the root.
        """
        key = self._norm(key)
        path = probe = self._path(key)
        while len(probe) > len(self._root):
            try:
                os.close(self._open(probe, _O_PATH, key))
                break
            except (FileNotFoundError, NotADirectoryError):
                probe = os.path.dirname(probe)
            except OSError as exc:
                raise translate_os_error(exc, store=self, key=key, action="local_path") from exc
        return path

    # -- path helpers (run in worker threads) --------------------------------------
    def _norm(self, key: str) -> str:
        key = self._key(key)
        if ".asyncarr." in key and any(_reserved(p) for p in key.split("/")):
            raise InvalidKeyError(
                f"key segments ending in {_TMP_SUFFIX!r} or {_LOCK_SUFFIX!r} are reserved",
                store=self,
                key=key,
            )
        return key

    def _path(self, rel: str) -> str:
        return f"{self._root}/{rel}" if rel else self._root

    def _inside(self, real: str) -> bool:
        base = self._root_real
        return real == base or real.startswith(base.rstrip("/") + "/")

    def _verify(self, fd: int, path: str, key: str) -> None:
        if not self._inside(_fd_realpath(fd, path)):
            raise InvalidKeyError(
                "key resolves outside the store root (through a symlink)", store=self, key=key
            )

    def _open(self, path: str, flags: int, key: str, dir_fd: int | None = None) -> int:
        """Open ``path`` and check that what was opened lies under the root."""
        fd = os.open(path, flags | _O_CLOEXEC, dir_fd=dir_fd)
        try:
            self._verify(fd, path, key)
        except BaseException:
            os.close(fd)
            raise
        return fd

    def _open_key(self, key: str, flags: int) -> int | None:
        try:
            return self._open(self._path(key), flags, key)
        except (FileNotFoundError, NotADirectoryError):
            return None

    def _open_dir(self, rel: str, key: str, *, create: bool, lockable: bool = False) -> int:
        """A descriptor of directory ``rel``, verified to be under the root.

        ``O_PATH`` unless ``lockable``: ``flock(2)`` needs a descriptor opened for reading.
        """
        flags = (os.O_RDONLY if lockable else _O_PATH) | _O_DIRECTORY
        try:
            return self._open(self._path(rel), flags, key)
        except FileNotFoundError:
            if not create:
                raise
            return self._make_dirs(rel, key, flags)

    def _make_dirs(self, rel: str, key: str, flags: int) -> int:
        if not os.path.isdir(self._root):
            if not self._auto_mkdir:
                msg = f"the root directory {self._root} does not exist (auto_mkdir=False)"
                raise StoreError(msg, store=self, key=key)
            os.makedirs(self._root, exist_ok=True)
            self._root_real = os.path.realpath(self._root)
        cur = os.open(self._root, flags | _O_CLOEXEC)
        try:
            for part in rel.split("/") if rel else ():
                try:
                    os.mkdir(part, dir_fd=cur)
                except FileExistsError:
                    pass
                nxt = self._open(part, flags, key, dir_fd=cur)
                os.close(cur)
                cur = nxt
        except BaseException:
            os.close(cur)
            raise
        return cur

    # -- reads ------------------------------------------------------------------------
    def _read(
        self,
        key: str,
        ranges: Sequence[RangeRequest | None],
        *,
        lean: bool = False,
        max_size: int | None = None,
    ) -> list[bytes] | None:
        def read(fd: int, size: int) -> list[bytes]:
            slices = [range_to_slice(rng, size) for rng in ranges]
            for sl in slices:
                if max_size is not None and sl.stop - sl.start > max_size:
                    raise too_large(self, key, sl.stop - sl.start, max_size)
            return [_read_exact(fd, sl.start, sl.stop - sl.start) for sl in slices]

        return self._read_file(key, read, lean=lean)

    def _read_file(
        self, key: str, read: Callable[[int, int], R], *, lean: bool = False
    ) -> R | None:
        """``read(fd, size)`` on the key's regular file; ``None`` if there is none.

        The file is opened the careful way (the opened descriptor is checked to lie
        under the root, race-free), or with ``lean`` the way of :meth:`read_local`.
        """
        fd = self._open_for_read(key) if lean else self._open_key(key, _KEY_READ)
        if fd is None:
            return None
        try:
            st = os.fstat(fd)
            if not stat.S_ISREG(st.st_mode):
                return None
            return read(fd, st.st_size)
        finally:
            os.close(fd)

    def _read_versioned(self, key: str, max_size: int | None = None) -> Versioned | None:
        fd = self._open_key(key, _KEY_READ)
        if fd is None:
            return None
        if max_size is not None:
            size = os.fstat(fd).st_size
            if size > max_size:
                os.close(fd)
                raise too_large(self, key, size, max_size)
        return _read_versioned_fd(fd)

    def _stat(self, key: str) -> os.stat_result | None:
        fd = self._open_key(key, _O_PATH)
        if fd is None:
            return None
        try:
            st = os.fstat(fd)
        finally:
            os.close(fd)
        return st if stat.S_ISREG(st.st_mode) else None

    async def _call(self, key: str | None, action: str, fn: Callable[..., T], *args: Any) -> T:
        try:
            return await run_io(fn, *args)
        except StoreError:
            raise
        except OSError as exc:
            raise translate_os_error(exc, store=self, key=key, action=action) from exc

    def read_local_ranges(self, key: str, ranges: Sequence[RangeRequest]) -> list[bytes] | None:
        """Several ranges of a value, read in the calling thread (one open, one ``pread``
        each; opened as :meth:`read_local` opens files)."""
        key = self._norm(key)
        return self._read_local(key, functools.partial(self._read, lean=True), key, list(ranges))

    def read_local_ranges_into(
        self, key: str, ranges: Sequence[ByteRange], buffer: Callable[[int], memoryview]
    ) -> list[memoryview] | None:
        """Ranges of a value read straight into the caller's buffer (one ``preadv``
        each), in the calling thread."""

        def read(fd: int, size: int) -> list[memoryview]:
            slices = [range_to_slice(rng, size) for rng in ranges]
            out = buffer(sum(sl.stop - sl.start for sl in slices))
            views: list[memoryview] = []
            pos = 0
            for sl in slices:
                view = out[pos : pos + sl.stop - sl.start]
                views.append(view[: _read_into(fd, sl.start, view)])
                pos += len(view)
            return views

        key = self._norm(key)
        return self._read_local(key, functools.partial(self._read_file, lean=True), key, read)

    def _read_local(self, key: str, fn: Callable[..., T], *args: Any) -> T:
        """``fn(*args)`` in the calling thread, OS errors translated for ``key``."""
        try:
            return fn(*args)
        except StoreError:
            raise
        except OSError as exc:
            raise translate_os_error(exc, store=self, key=key, action="read") from exc

    def read_local(self, key: str, size_hint: int | None = None) -> bytes | None:
        """Read a whole value in the calling thread (used by codec worker threads).

        The hot path of full reads, so it is lean: each directory is checked
        once per store to resolve inside the root (a directory swapped for an
        outside symlink *afterwards* is not noticed), and the file itself is
        opened with ``O_NOFOLLOW``; a chunk file that is a symlink takes the
        checked path of :meth:`get` instead (followed if it resolves inside the
        root, else :class:`InvalidKeyError`).
        """
        return self._read_local_fd(key, lambda fd: _read_whole(fd, size_hint))

    def read_local_into(self, key: str, buffer: memoryview) -> bytes | memoryview | None:
        """:meth:`read_local` straight into ``buffer`` (one ``readv``, no ``fstat``);
        a value longer than ``buffer`` comes back whole, as new bytes."""
        return self._read_local_fd(key, lambda fd: _read_whole_into(fd, buffer))

    def _read_local_fd(self, key: str, read: Callable[[int], R]) -> R | None:
        """``read(fd)`` on the key's file, opened the lean way (see :meth:`read_local`)."""
        key = self._norm(key)
        try:
            fd = self._open_for_read(key)
            if fd is None:
                return None
            try:
                return read(fd)
            except IsADirectoryError:
                return None
            finally:
                os.close(fd)
        except StoreError:
            raise
        except OSError as exc:
            raise translate_os_error(exc, store=self, key=key, action="read") from exc

    def _checked_path(self, key: str) -> str:
        """The file path of ``key``, its directory checked (once per store) to resolve
        inside the root; open it with ``O_NOFOLLOW`` (see :meth:`read_local`)."""
        if key.rpartition("/")[0] not in self._safe_dirs:
            self._check_parent_dir(key)
        return f"{self._root}/{key}"

    def _open_for_read(self, key: str) -> int | None:
        """A descriptor of ``key``'s file for reading (``None``: no such file), opened the
        lean way of :meth:`read_local`; a symlinked file takes the careful way of
        :meth:`_open_key` (followed only if it resolves inside the root, and only to a
        regular file)."""
        try:
            return os.open(self._checked_path(key), _READ_FLAGS)
        except (FileNotFoundError, NotADirectoryError):
            return None
        except OSError as exc:
            if exc.errno == errno.EISDIR:
                return None
            if exc.errno != errno.ELOOP:
                raise
        fd = self._open_key(key, _KEY_READ)
        if fd is not None and not stat.S_ISREG(os.fstat(fd).st_mode):
            os.close(fd)
            return None
        return fd

    def _check_parent_dir(self, key: str) -> None:
        """Check once per store that ``key``'s directory resolves inside the root."""
        parent = key.rpartition("/")[0]
        real = os.path.realpath(self._path(parent))
        if not self._inside(real):
            raise InvalidKeyError(
                "key resolves outside the store root (through a symlink)", store=self, key=key
            )
        if os.path.isdir(real):
            if len(self._safe_dirs) > 100_000:
                self._safe_dirs.clear()
            self._safe_dirs.add(parent)

    async def get(
        self, key: str, byte_range: RangeRequest | None = None, *, max_size: int | None = None
    ) -> bytes | None:
        key = self._norm(key)
        read = functools.partial(self._read, max_size=max_size)
        parts = await self._call(key, "read", read, key, (byte_range,))
        return None if parts is None else parts[0]

    async def get_ranges(self, key: str, ranges: Sequence[RangeRequest]) -> list[bytes] | None:
        key = self._norm(key)
        return await self._call(key, "read", self._read, key, list(ranges))

    async def get_versioned(self, key: str, *, max_size: int | None = None) -> Versioned | None:
        key = self._norm(key)
        return await self._call(key, "read", self._read_versioned, key, max_size)

    async def exists(self, key: str) -> bool:
        key = self._norm(key)
        return await self._call(key, "stat", self._stat, key) is not None

    async def getsize(self, key: str) -> int:
        key = self._norm(key)
        st = await self._call(key, "stat", self._stat, key)
        if st is None:
            raise KeyNotFoundError("no such key", store=self, key=key)
        return st.st_size

    # -- writes (run in worker threads, under the directory lock) ----------------------
    def _locked(
        self,
        key: str,
        op: Callable[[int, str, _Temp], T],
        value: bytes | None = None,
        *,
        create: bool = True,
    ) -> T | None:
        """Run ``op(dir_fd, name, tmp)`` holding the exclusive lock of the key's directory.

        With ``value``, it is first written to a temporary file in that
        directory, outside the lock, and ``tmp`` is that file (empty
        otherwise); ``op`` moves it into place or removes it, and it is
        removed here if ``op`` raises. Returns ``None`` if the directory is
        missing and ``create`` is false.
        """
        with _DirectoryBatch[T](self) as batch:
            if not batch.stage(key, op, value, create=create):
                return None
            return batch.commit()[0]

    def _write_temp(self, dfd: int, name: str, value: bytes, *, anonymous: bool) -> _Temp:
        """Write ``value`` to a new temporary file in the directory ``dfd``.

        ``anonymous`` (where the filesystem has ``O_TMPFILE``): a file with no name
        yet, which a new key then gets with one ``link``, where a named file costs
        a create and a rename (measured on ext4: 36 vs 54 us for a 16 KB value).
        """
        if anonymous and self._anonymous_temps:
            try:
                fd = os.open(".", _O_TMPFILE | os.O_RDWR | _O_CLOEXEC, 0o666, dir_fd=dfd)
            except OSError as exc:
                if not os.fstat(dfd).st_nlink:  # pruned by a concurrent delete (EPERM here)
                    raise FileNotFoundError(errno.ENOENT, "directory removed", name) from exc
                if exc.errno not in _NO_TMPFILE_ERRNOS:
                    raise
                self._anonymous_temps = False
            else:
                self._fill(fd, value, dfd, "")
                return _Temp(fd=fd)
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | _O_CLOEXEC | _O_NOFOLLOW
        while True:
            tmp = _temp_name(name)
            try:
                fd = os.open(tmp, flags, 0o666, dir_fd=dfd)
                break
            except FileExistsError:
                continue  # left by a crashed process that had the same pid
        self._fill(fd, value, dfd, tmp)
        os.close(fd)
        return _Temp(name=tmp)

    def _fill(self, fd: int, value: bytes, dfd: int, tmp: str) -> None:
        """Write ``value`` to the new temporary file ``fd`` (named ``tmp``, or ``""``);
        on failure close it and remove the name."""
        try:
            _write_all(fd, value)
            if self._fsync:
                os.fsync(fd)
        except BaseException:
            os.close(fd)
            if tmp:
                _unlink_quietly(tmp, dfd)
            raise

    def _link_anonymous(self, dfd: int, name: str, tmp: _Temp) -> bool:
        """``tmp.link(dfd, name)``; ``False`` where this filesystem cannot link anonymous
        files in: the value is then copied to a named temporary file (``tmp.name``) and
        this store stages named files from now on."""
        try:
            tmp.link(dfd, name)
        except OSError as exc:
            if exc.errno not in _NO_LINK_ERRNOS:
                raise
            self._anonymous_temps = False
            value = _read_exact(tmp.fd, 0, os.fstat(tmp.fd).st_size)
            tmp.name = self._write_temp(dfd, name, value, anonymous=False).name
            tmp.close()
            return False
        return True

    def _link_new(self, dfd: int, name: str, tmp: _Temp) -> bool:
        """Link an anonymous temporary file in as ``name`` if that is free; ``False``
        (the file then has a temporary name instead) if ``name`` exists."""
        try:
            if not self._link_anonymous(dfd, name, tmp):
                return False
        except FileExistsError:
            self._expect_new = False
            while True:
                tmp_name = _temp_name(name)
                try:
                    if self._link_anonymous(dfd, tmp_name, tmp):
                        tmp.name = tmp_name
                        tmp.close()
                    return False
                except FileExistsError:
                    continue
        tmp.close()
        self._expect_new = True
        self._sync_dir(dfd)
        return True

    def _sync_dir(self, dfd: int) -> None:
        if self._fsync:
            os.fsync(dfd)

    def _replace(self, dfd: int, name: str, staged: _Temp) -> None:
        if staged.fd >= 0 and self._link_new(dfd, name, staged):
            return  # a new key: linked in place, nothing to rename
        tmp = staged.name
        if _exchange(dfd, tmp, name):  # the old value now lives under ``tmp``
            self._expect_new = False
            _unlink_quietly(tmp, dfd)
            self._sync_dir(dfd)
            return
        self._expect_new = True  # (no regular file there: a new key)
        try:
            os.replace(tmp, name, src_dir_fd=dfd, dst_dir_fd=dfd)
        except OSError as exc:
            if exc.errno not in (errno.EISDIR, errno.ENOTEMPTY, errno.EEXIST):
                raise
            os.rmdir(name, dir_fd=dfd)  # an empty leftover directory may go; else it raises
            os.replace(tmp, name, src_dir_fd=dfd, dst_dir_fd=dfd)
        self._sync_dir(dfd)

    def _create(self, dfd: int, name: str, staged: _Temp) -> bool:
        if staged.fd >= 0:
            try:
                linked = self._link_anonymous(dfd, name, staged)
            except FileExistsError:
                if stat.S_ISDIR(_lstat_mode(name, dfd) or 0):
                    raise
                return False  # the descriptor is closed by the batch
            if linked:
                self._sync_dir(dfd)
                return True
        tmp = staged.name
        try:
            os.link(tmp, name, src_dir_fd=dfd, dst_dir_fd=dfd, follow_symlinks=False)
        except FileExistsError:
            if stat.S_ISDIR(_lstat_mode(name, dfd) or 0):
                raise
            _unlink_quietly(tmp, dfd)
            return False
        except OSError as exc:  # no hard links here: the directory lock still makes this atomic
            if exc.errno not in (errno.EPERM, errno.ENOTSUP, errno.EOPNOTSUPP, errno.EMLINK):
                raise
            if _lstat_mode(name, dfd) is not None:
                _unlink_quietly(tmp, dfd)
                return False
            os.replace(tmp, name, src_dir_fd=dfd, dst_dir_fd=dfd)
        else:
            _unlink_quietly(tmp, dfd)  # the value lives on under ``name``
        self._sync_dir(dfd)
        return True

    def _current_version(self, dfd: int, name: str) -> str | None:
        try:
            fd = os.open(name, _KEY_READ | _O_CLOEXEC, dir_fd=dfd)
        except (FileNotFoundError, NotADirectoryError):
            return None
        current = _read_versioned_fd(fd)
        return None if current is None else current.version

    def _swap(self, dfd: int, name: str, tmp: _Temp, version: str | None, key: str) -> None:
        current = self._current_version(dfd, name)
        if current != version:
            state = "absent" if current is None else f"at version {current}"
            raise PreconditionFailedError(
                f"the key is {state}, expected {version or 'absent'}", store=self, key=key
            )
        self._replace(dfd, name, tmp)

    def _remove(self, dfd: int, name: str, _tmp: _Temp = _NO_TEMP) -> None:
        try:
            os.unlink(name, dir_fd=dfd)
        except FileNotFoundError:
            pass
        except OSError:
            if not stat.S_ISDIR(_lstat_mode(name, dfd) or 0):  # a directory is no value: no-op
                raise

    def _prune(self, parent: str) -> None:
        """Remove now-empty directories from ``parent`` up to (not including) the root."""
        ensure_owner_alive()
        while parent:
            try:
                os.rmdir(self._path(parent))
            except OSError:
                return
            parent = parent.rpartition("/")[0]

    def _delete_keys(self, keys: Sequence[str]) -> None:
        parents = builtins.set()
        for key in keys:
            self._locked(key, self._remove, create=False)
            parents.add(key.rpartition("/")[0])
        for parent in sorted(parents, key=len, reverse=True):
            self._prune(parent)

    def write_local(self, key: str, value: bytes | None) -> None:
        """Replace (or delete, for ``None``) a value in the calling thread (codec workers)."""
        self.write_local_many([(key, value)])

    def write_local_many(self, items: Iterable[tuple[str, bytes | None]]) -> None:
        """:meth:`write_local` for several keys (a codec worker's batch of chunks).

        Each value goes to its temporary file as soon as ``items`` yields it
        (a generator can encode the next chunk meanwhile); the keys of one
        directory share one directory descriptor, and once ``items`` is
        exhausted (or every :data:`_MAX_ANONYMOUS` new values) one ``flock`` per
        directory covers all its links and renames (and unlinks, for ``None``). Same
        guarantees as one key at a time, with about a third fewer system calls per small
        chunk (each one a GIL round trip).
        """
        batch = _DirectoryBatch[None](self)
        try:
            with batch:
                for key, value in items:
                    key = self._norm(key)
                    self._check_writable(key)
                    if value is None:
                        batch.stage(key, self._remove, None, create=False)
                    else:
                        batch.stage(key, self._replace, value, create=True)
                    if batch.full:
                        batch.commit()
                batch.commit()
        except StoreError:
            raise
        except OSError as exc:
            raise translate_os_error(exc, store=self, key=batch.key, action="write") from exc
        for parent in batch.emptied:
            self._prune(parent)

    async def set(self, key: str, value: bytes) -> None:
        key = self._norm(key)
        self._check_writable(key)
        await self._call(key, "write", self._locked, key, self._replace, value)

    async def set_if_not_exists(self, key: str, value: bytes) -> bool:
        key = self._norm(key)
        self._check_writable(key)
        created = await self._call(key, "write", self._locked, key, self._create, value)
        return bool(created)

    async def set_if_version(self, key: str, value: bytes, version: str | None) -> None:
        key = self._norm(key)
        self._check_writable(key)
        await self._call(
            key,
            "write",
            self._locked,
            key,
            lambda dfd, name, tmp: self._swap(dfd, name, tmp, version, key),
            value,
        )

    def _remove_if(self, dfd: int, name: str, version: str, key: str) -> bool:
        current = self._current_version(dfd, name)
        if current != version:
            state = "absent" if current is None else f"at version {current}"
            raise PreconditionFailedError(
                f"the key is {state}, expected {version}", store=self, key=key
            )
        self._remove(dfd, name)
        return True

    def _delete_if(self, key: str, version: str) -> None:
        removed = self._locked(
            key, lambda dfd, name, _tmp: self._remove_if(dfd, name, version, key), create=False
        )
        if removed is None:  # not even its directory exists
            raise PreconditionFailedError(
                f"the key is absent, expected {version}", store=self, key=key
            )
        self._prune(key.rpartition("/")[0])

    async def delete_if_version(self, key: str, version: str) -> None:
        key = self._norm(key)
        self._check_writable(key)
        await self._call(key, "delete", self._delete_if, key, version)

    async def delete(self, key: str) -> None:
        key = self._norm(key)
        self._check_writable(key)
        await self._call(key, "delete", self._delete_keys, [key])

    async def delete_prefix(self, prefix: str) -> None:
        prefix = self._list_prefix_arg(prefix)
        self._check_writable(prefix or None)
        batch: list[str] = []
        async for key in self.list_prefix(prefix):
            batch.append(key)
        for i in range(0, len(batch), 256):
            await self._call(None, "delete", self._delete_keys, batch[i : i + 256])

    # -- listing -----------------------------------------------------------------------
    def _classify(self, entry: os.DirEntry[str], seen: builtins.set[tuple[int, int]]) -> str | None:
        """``"file"``, ``"dir"`` or ``None`` (skip) for one directory entry."""
        if _reserved(entry.name):
            return None
        if entry.is_symlink():
            real = os.path.realpath(entry.path)
            if not self._inside(real):
                return None
            try:
                st = os.stat(real)
            except OSError:
                return None
            if stat.S_ISDIR(st.st_mode):
                if (st.st_dev, st.st_ino) in seen:
                    return None
                seen.add((st.st_dev, st.st_ino))
                return "dir"
            return "file" if stat.S_ISREG(st.st_mode) else None
        if entry.is_dir(follow_symlinks=False):
            return "dir"
        if entry.is_file(follow_symlinks=False):
            return "file"
        return None

    def _scan(self, rel: str) -> list[tuple[str, str]]:
        """``(name, kind)`` of the usable entries of directory ``rel`` (empty if missing)."""
        path = self._path(rel)
        if rel:
            fd = self._open_key(rel, _O_PATH | _O_DIRECTORY)
            if fd is None:
                return []
            os.close(fd)
        out: list[tuple[str, str]] = []
        seen: builtins.set[tuple[int, int]] = builtins.set()
        try:
            with os.scandir(path) as it:
                for entry in it:
                    kind = self._classify(entry, seen)
                    if kind is not None:
                        out.append((entry.name, kind))
        except (FileNotFoundError, NotADirectoryError):
            return []
        return out

    def _walk_some(self, stack: list[str], prefix: str) -> list[str]:
        keys: list[str] = []
        while stack and len(keys) < _LIST_BATCH:
            rel = stack.pop()
            for name, kind in self._scan(rel):
                child = f"{rel}/{name}" if rel else name
                if kind == "file":
                    if child.startswith(prefix):
                        keys.append(child)
                elif (child + "/").startswith(prefix) or prefix.startswith(child + "/"):
                    stack.append(child)
        return keys

    async def list_prefix(self, prefix: str) -> AsyncIterator[str]:
        prefix = self._list_prefix_arg(prefix)
        stack = [prefix.rpartition("/")[0]]
        while stack:
            for key in await self._call(prefix or None, "list", self._walk_some, stack, prefix):
                yield key

    async def list_dir(self, prefix: str) -> list[str]:
        """Children of one directory, from a single ``scandir`` (directories
        left empty by an interrupted delete may show up)."""
        base = self._prefix(prefix).rstrip("/")
        if base:
            self._norm(base)
        entries = await self._call(base or None, "list", self._scan, base)
        return sorted(name for name, _ in entries)


def _load_renameat2() -> Any:
    if not sys.platform.startswith("linux"):
        return None
    try:
        fn = ctypes.CDLL(None, use_errno=True).renameat2
    except (OSError, AttributeError):  # a libc without it
        return None
    fn.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint]
    fn.restype = ctypes.c_int
    return fn


_renameat2 = _load_renameat2()
_RENAME_EXCHANGE = 2
_NO_EXCHANGE_ERRNOS = {errno.ENOENT, errno.EINVAL, errno.ENOSYS, errno.EXDEV}
_NO_EXCHANGE_ERRNOS |= {errno.ENOTSUP, errno.EOPNOTSUPP}


def _exchange(dfd: int, tmp: str, name: str) -> bool:
    """Atomically swap ``tmp`` with the existing regular file ``name`` (Linux ``renameat2``
    with ``RENAME_EXCHANGE``); ``False`` where ``name`` is no regular file or this kernel or
    filesystem cannot, and a plain rename must do.

    Why not always ``rename``: on ext4, renaming over an existing file makes the kernel
    allocate and start writing the new file's blocks inside the call (its ``auto_da_alloc``
    heuristic for programs that never fsync), which cost 60-70 % of a chunk write here
    (256 KiB chunks: 355 us a write with rename, 133 us with an exchange and an unlink).
    asyncarr's durability against power loss comes from ``fsync=True``, not from that
    heuristic; readers see the old or the new value either way.
    """
    if _renameat2 is None:
        return False
    mode = _lstat_mode(name, dfd)
    if mode is None or not stat.S_ISREG(mode):
        return False
    if _renameat2(dfd, os.fsencode(tmp), dfd, os.fsencode(name), _RENAME_EXCHANGE) == 0:
        return True
    code = ctypes.get_errno()
    if code in _NO_EXCHANGE_ERRNOS:
        return False
    raise OSError(code, os.strerror(code), name)


_DIR_LOCK_NAME = ".asyncarr.lock"
"""Lock file of a directory whose filesystem cannot ``flock`` a directory descriptor."""
_NO_DIR_FLOCK_ERRNOS = {errno.EBADF, errno.ENOLCK, errno.EINVAL, errno.ENOTSUP, errno.EOPNOTSUPP}


def _lock_directory(dfd: int) -> int | None:
    """Take the exclusive lock of directory ``dfd``: ``flock`` on the descriptor itself (freed
    when it is closed; returns ``None``), or, where the filesystem refuses that (NFS emulates
    ``flock`` with write locks, which need a descriptor open for writing), on the directory's
    own lock file ``.asyncarr.lock`` (returned: close it to unlock). That file is reserved
    (never listed) and stays, so such a directory is not pruned when its last key goes."""
    try:
        fcntl.flock(dfd, fcntl.LOCK_EX)
        return None
    except OSError as exc:
        if exc.errno not in _NO_DIR_FLOCK_ERRNOS:
            raise
    lfd = os.open(
        _DIR_LOCK_NAME, os.O_RDWR | os.O_CREAT | _O_CLOEXEC | _O_NOFOLLOW, 0o666, dir_fd=dfd
    )
    try:
        fcntl.flock(lfd, fcntl.LOCK_EX)
    except BaseException:
        os.close(lfd)
        raise
    return lfd


class _DirectoryBatch(Generic[T]):
    """Changes to keys of a :class:`LocalStore`, grouped by directory: staged (each
    value written to a temporary file there, outside any lock), then committed (per
    directory, under its lock, each key's op moves its temporary file into place or
    removes the key). Leaving the ``with`` block closes the directories and removes
    the temporary files of changes not committed."""

    def __init__(self, store: LocalStore) -> None:
        self._store = store
        self._dirs: dict[str, tuple[int, list[_Change[T]]]] = {}
        self.key: str | None = None
        """The key being staged or committed (for error messages)."""
        self.emptied: list[str] = []
        """Directories whose changes were all removals (candidates for pruning)."""
        self._written: set[str] = set()
        self._anonymous = 0

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        for dfd, changes in self._dirs.values():
            for _key, tmp, _op in changes:
                tmp.discard(dfd)
            os.close(dfd)
        self._dirs.clear()

    def stage(
        self, key: str, op: Callable[[int, str, _Temp], T], value: bytes | None, *, create: bool
    ) -> bool:
        """Add a change; ``False`` (nothing staged) if the directory is missing and not
        to be created."""
        self.key = key
        store = self._store
        parent, _, name = key.rpartition("/")
        reopened: list[_Change[T]] = []
        for _ in range(_DIR_RETRIES):
            staged = self._dirs.get(parent)
            if staged is None:
                try:
                    dfd = store._open_dir(parent, key, create=create, lockable=True)
                except (FileNotFoundError, NotADirectoryError) as exc:
                    if not create:
                        return False
                    if isinstance(exc, NotADirectoryError):
                        raise
                    continue  # a concurrent delete pruned the directory; make it again
                staged = self._dirs[parent] = (dfd, reopened)
            dfd, changes = staged
            try:
                anonymous = store._expect_new and self._anonymous < _MAX_ANONYMOUS
                tmp = (
                    _NO_TEMP
                    if value is None
                    else store._write_temp(dfd, name, value, anonymous=anonymous)
                )
            except FileNotFoundError:
                if any(t.name for _k, t, _op in changes):
                    raise  # a directory holding a named temporary file can't have been pruned
                del self._dirs[parent]
                os.close(dfd)
                reopened = changes  # removals staged there before stay staged
                continue  # pruned after we opened it
            changes.append((key, tmp, op))
            self._anonymous += tmp.fd >= 0
            if value is not None:
                self._written.add(parent)
            return True
        raise TransientStoreError(
            "the key's directory kept disappearing during the write", store=store, key=key
        )

    @property
    def full(self) -> bool:
        """Whether the staged changes hold as many open anonymous files as one batch may
        (later ones would get named temporary files, which cost more): time to commit."""
        return self._anonymous >= _MAX_ANONYMOUS

    def commit(self) -> list[T]:
        """Apply the staged changes, one directory lock at a time; the ops' results."""
        self._anonymous = 0
        done: list[T] = []
        reopened = 0
        while self._dirs:
            parent, (dfd, changes) = next(iter(self._dirs.items()))
            lfd = _lock_directory(dfd)
            try:
                for i, (key, tmp, op) in enumerate(changes):
                    self.key = key
                    # a worker whose owner died changes nothing (checked under the lock
                    # every asyncarr writer of this directory takes)
                    ensure_owner_alive()
                    try:
                        done.append(op(dfd, key.rpartition("/")[2], tmp))
                    except FileNotFoundError:
                        if tmp.fd < 0 or os.fstat(dfd).st_nlink or reopened >= _DIR_RETRIES:
                            raise
                        # A concurrent delete pruned the directory after we staged (an
                        # anonymous file has no name there to keep it): apply the rest in
                        # the directory made anew.
                        reopened += 1
                        del changes[:i]
                        break
                    tmp.close()  # an anonymous file not linked (``_create`` of a taken key)
                    changes[i] = (key, _NO_TEMP, op)  # moved into place or removed by ``op``
                else:
                    changes.clear()
            finally:
                if lfd is not None:
                    os.close(lfd)
            if changes:
                new_dfd = self._reopen(parent, changes[0][0])
                os.close(dfd)
                self._dirs[parent] = (new_dfd, changes)
                continue
            del self._dirs[parent]
            os.close(dfd)  # releases the lock
            if parent not in self._written:
                self.emptied.append(parent)
        return done

    def _reopen(self, parent: str, key: str) -> int:
        """The directory ``parent`` made anew (after a concurrent prune), opened lockable."""
        for _ in range(_DIR_RETRIES):
            try:
                return self._store._open_dir(parent, key, create=True, lockable=True)
            except FileNotFoundError:
                continue  # pruned again between its mkdir and open
        raise TransientStoreError(
            "the key's directory kept disappearing during the write", store=self._store, key=key
        )


def _unlink_quietly(name: str, dfd: int) -> None:
    try:
        os.unlink(name, dir_fd=dfd)
    except OSError:
        pass


def _lstat_mode(name: str, dfd: int) -> int | None:
    try:
        return os.stat(name, dir_fd=dfd, follow_symlinks=False).st_mode
    except FileNotFoundError:
        return None


def _device_key(root: str) -> str:
    probe = root
    while True:
        try:
            dev = os.stat(probe).st_dev
            return f"file:dev={os.major(dev)}:{os.minor(dev)}"
        except OSError:
            parent = os.path.dirname(probe)
            if parent == probe:
                return "file:local"
            probe = parent


_LOCAL_OPTIONS = {"fsync", "auto_mkdir", "limits"}


def url_to_path(url: str, scheme: str) -> str:
    """The local path a ``scheme://`` URL (or a plain path) names.

    ``scheme:///abs/path`` and ``scheme://localhost/abs/path`` are absolute;
    ``scheme://rel/path`` is relative to the current directory (as fsspec and
    zarr-python read it); URL forms are percent-decoded (RFC 8089), plain
    paths are taken verbatim. ``~`` is expanded in both.
    """
    head = f"{scheme}:"
    if url[: len(head)].lower() == head:
        rest = url[len(head) :]
        rest = rest[2:] if rest.startswith("//") else rest
        if rest.startswith("localhost/"):
            rest = rest[len("localhost") :]
        path = unquote(rest)
    elif "://" in url:
        raise ConfigError(f"not a {scheme}:// URL: {url!r}")
    else:
        path = url
    if not path:
        raise ConfigError(f"{scheme} URL {url!r} names no path")
    return os.path.expanduser(path)


def local_store_from_url(
    url: str, *, read_only: bool, storage_options: Mapping[str, Any]
) -> LocalStore:
    """``file:///abs/path``, ``file://rel/path`` or a plain path (``~`` expanded).

    storage_options: ``fsync`` (bool, default False), ``auto_mkdir`` (bool,
    default True), ``limits`` (:class:`StoreLimits` or a mapping of its fields).
    """
    unknown = set(storage_options) - _LOCAL_OPTIONS
    if unknown:
        raise ConfigError(
            f"unknown storage_options for file://: {sorted(unknown)}; "
            f"known: {sorted(_LOCAL_OPTIONS)}"
        )
    return LocalStore(
        url_to_path(url, "file"),
        read_only=read_only,
        limits=storage_options.get("limits"),
        fsync=storage_options.get("fsync", False),
        auto_mkdir=storage_options.get("auto_mkdir", True),
    )
