"""A store inside one zip archive: ``zip://path/file.zip`` and ``zip:///abs/file.zip``.

Modes: ``"r"`` (read-only), ``"w"`` (truncate or create), ``"x"`` (create; the
file must not exist) and ``"a"`` (append, creating the file if missing; the
default for writable stores).

Semantics and decisions:

- **One writer.** A writable store holds an exclusive ``flock(2)`` on the
  archive for as long as it is open; a read-only store holds a shared one. A
  second writer, or a reader of an archive still being written (whose central
  directory does not exist yet), gets a clear :class:`StoreError` at once,
  whether it is in this process or another.
- **Close to finish.** The central directory is written by :meth:`aclose`;
  an archive whose writer never closed it is not a valid zip.
- **Overwrites and deletes** work while the store is open: the store keeps
  its own index of the latest entry per key (duplicates are appended, no
  ``Duplicate name`` warning), reads always see the latest value, and deleted
  keys vanish at once. If anything was overwritten or deleted, ``aclose``
  compacts the archive: it writes the live entries to a temporary file next
  to it and atomically renames it over the original, so the finished zip has
  exactly one entry per key. (This rewrites the whole archive once.)
- **Compression** is ``ZIP_STORED`` by default (chunks are compressed by
  their codecs already); ``compression="deflated"|"bzip2"|"lzma"`` with
  ``compresslevel`` is available.
- **Reads** of stored members use ``pread`` at the member's offset, without
  a lock, so they run in parallel; full reads check the member's CRC-32.
  Compressed members are inflated piece by piece, only as far as the range asked
  for; one whose declared size exceeds what the caller accepts (``max_size``) is
  refused before any inflating, so a zip bomb costs nothing.
- **Conditional writes** (``set_if_version``) are not supported;
  ``set_if_not_exists`` is atomic within the (single) writing store.
- Entries that are not valid keys (directory entries ``name/``, absolute or
  ``..`` names in foreign archives) are not listed, and are kept as they are
  on compaction.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import struct
import threading
import time
import uuid
import zipfile
import zlib
from collections.abc import AsyncIterator, Callable, Iterator, Mapping, Sequence
from typing import IO, Any, Literal, TypeVar

from asyncarr._types import RangeRequest, range_to_slice
from asyncarr.abc import Store, normalize_key
from asyncarr.config import StoreLimits
from asyncarr.errors import (
    ConfigError,
    InvalidKeyError,
    KeyNotFoundError,
    StoreError,
    UnsupportedOperationError,
)
from asyncarr.stores._bodies import too_large
from asyncarr.stores._local import run_io, translate_os_error, url_to_path

__all__ = ["ZipStore", "zip_store_from_url"]

T = TypeVar("T")

_COMPRESSION = {
    "stored": zipfile.ZIP_STORED,
    "deflated": zipfile.ZIP_DEFLATED,
    "bzip2": zipfile.ZIP_BZIP2,
    "lzma": zipfile.ZIP_LZMA,
}
_MODES = ("r", "w", "a", "x")
_LOCAL_HEADER = struct.Struct("<4s22xHH")  # signature, ..., name length, extra length
_INFLATE_PIECE = 1 << 20


class _Archive:
    """The open archive shared by a :class:`ZipStore` and its read-only views."""

    def __init__(self, path: str, mode: str, compression: int, compresslevel: int | None) -> None:
        self.path = path
        self.label = f"zip://{path}"
        self.mode = mode
        self.compression = compression
        self.compresslevel = compresslevel
        self.io_lock = threading.Lock()  # the ZipFile and the file position
        self.cond = threading.Condition()  # index, users, closed
        self.entries: dict[str, zipfile.ZipInfo] = {}
        self.others: list[zipfile.ZipInfo] = []
        self.offsets: dict[str, int] = {}
        self.dead = 0
        self.users = 0
        self.closed = False
        self.broken: BaseException | None = None
        self.fobj, self.zf = self._open()
        for info in self.zf.infolist():
            try:
                key = normalize_key(info.filename)
            except InvalidKeyError:
                key = ""
            if not key or info.is_dir():
                self.others.append(info)
                continue
            if key in self.entries:
                self.dead += 1
            self.entries[key] = info

    def _open(self) -> tuple[IO[bytes], zipfile.ZipFile]:
        writable = self.mode != "r"
        flags = os.O_RDWR | os.O_CREAT if writable else os.O_RDONLY
        flags |= os.O_EXCL if self.mode == "x" else 0
        fd = os.open(self.path, flags | getattr(os, "O_CLOEXEC", 0), 0o666)
        fobj = os.fdopen(fd, "r+b" if writable else "rb")
        try:
            try:
                fcntl.flock(fd, (fcntl.LOCK_EX if writable else fcntl.LOCK_SH) | fcntl.LOCK_NB)
            except BlockingIOError:
                raise StoreError(
                    "the zip archive is open for writing elsewhere (in this or another process); "
                    "a zip has one writer at a time and is valid only after its writer closes it"
                    if not writable
                    else "the zip archive is already open elsewhere (in this or another process); "
                    "a zip has one writer at a time and cannot be written while being read",
                    store=self.label,
                ) from None
            if self.mode == "w":
                fobj.truncate(0)
            size = os.fstat(fd).st_size
            if size and not zipfile.is_zipfile(fobj):
                raise StoreError(
                    "not a valid zip archive (a zip whose writer never closed it has no "
                    "central directory)",
                    store=self.label,
                )
            fobj.seek(0)
            zmode: Literal["r", "w", "a"] = "r" if not writable else ("a" if size else "w")
            zf = zipfile.ZipFile(
                fobj, zmode, compression=self.compression, allowZip64=True,
                compresslevel=self.compresslevel,
            )  # fmt: skip
        except BaseException:
            fobj.close()
            raise
        return fobj, zf

    @contextlib.contextmanager
    def use(self) -> Iterator[None]:
        """Keep the archive open while the block runs (``close`` waits for it)."""
        with self.cond:
            if self.closed:
                raise StoreError("the zip store is closed", store=self.label)
            self.users += 1
        try:
            yield
        finally:
            with self.cond:
                self.users -= 1
                if not self.users:
                    self.cond.notify_all()

    def info(self, key: str) -> zipfile.ZipInfo | None:
        with self.cond:
            if self.closed:
                raise StoreError("the zip store is closed", store=self.label)
            return self.entries.get(key)

    # -- reads (worker threads) -----------------------------------------------------
    def _data_offset(self, info: zipfile.ZipInfo) -> int:
        offset = self.offsets.get(info.filename)
        if offset is None:
            header = os.pread(self.fobj.fileno(), _LOCAL_HEADER.size, info.header_offset)
            if len(header) != _LOCAL_HEADER.size:
                raise StoreError(
                    "zip member header is truncated", store=self.label, key=info.filename
                )
            magic, name_len, extra_len = _LOCAL_HEADER.unpack(header)
            if magic != b"PK\x03\x04":
                raise StoreError("bad zip local file header", store=self.label, key=info.filename)
            offset = info.header_offset + _LOCAL_HEADER.size + name_len + extra_len
            self.offsets[info.filename] = offset
        return offset

    def read(
        self, key: str, ranges: Sequence[RangeRequest | None], max_size: int | None = None
    ) -> list[bytes] | None:
        with self.use():
            info = self.info(key)
            if info is None:
                return None
            for rng in ranges:
                want = range_to_slice(rng, info.file_size)
                if max_size is not None and want.stop - want.start > max_size:
                    raise too_large(self.label, key, want.stop - want.start, max_size)
            if info.compress_type != zipfile.ZIP_STORED or info.flag_bits & 0x1:
                with self.io_lock:
                    return [self._inflate(info, range_to_slice(r, info.file_size)) for r in ranges]
            start = self._data_offset(info)
            out = []
            for rng in ranges:
                sl = range_to_slice(rng, info.file_size)
                data = os.pread(self.fobj.fileno(), sl.stop - sl.start, start + sl.start)
                if len(data) != sl.stop - sl.start:
                    raise StoreError("zip member is truncated", store=self.label, key=key)
                if rng is None and zlib.crc32(data) != info.CRC:
                    msg = "zip member fails its CRC-32 check (corrupt)"
                    raise StoreError(msg, store=self.label, key=key)
                out.append(data)
            return out

    def _inflate(self, info: zipfile.ZipInfo, want: slice) -> bytes:
        """Bytes ``want`` of a compressed member, inflated piece by piece: never more than
        the member's declared size, and only up to the end of ``want`` (the caller
        checked that size against the bound it expects)."""
        out = bytearray()
        pos = 0
        with self.zf.open(info) as member:
            while pos < want.stop:
                piece = member.read(min(_INFLATE_PIECE, want.stop - pos))
                if not piece:
                    break
                lo, hi = max(want.start, pos), min(want.stop, pos + len(piece))
                if hi > lo:
                    out += piece[lo - pos : hi - pos]
                pos += len(piece)
            if want.stop >= info.file_size:
                member.read(1)  # to its end: zipfile checks the CRC-32 there
        return bytes(out)

    # -- writes (worker threads) ----------------------------------------------------------
    def write(self, key: str, data: bytes, *, only_new: bool) -> bool:
        with self.use(), self.io_lock:
            if self.broken is not None:
                msg = "the zip archive is unusable after an earlier failed write"
                raise StoreError(msg, store=self.label, key=key) from self.broken
            if only_new and key in self.entries:
                return False
            info = zipfile.ZipInfo(key, date_time=time.localtime()[:6])
            info.external_attr = 0o644 << 16
            self.zf.NameToInfo.pop(key, None)  # we track duplicates ourselves: no warning
            try:
                self.zf.writestr(info, data, self.compression, self.compresslevel)
                self.fobj.flush()
            except BaseException as exc:
                self.broken = exc
                raise
            with self.cond:
                self.dead += key in self.entries
                self.entries[key] = info
                self.offsets.pop(key, None)
            return True

    def remove(self, key: str) -> None:
        with self.cond:
            if self.closed:
                raise StoreError("the zip store is closed", store=self.label)
            if self.entries.pop(key, None) is not None:
                self.dead += 1

    # -- closing ---------------------------------------------------------------------------
    def close(self) -> None:
        with self.cond:
            if self.closed:
                return
            self.closed = True
            self.cond.wait_for(lambda: self.users == 0)
        with self.io_lock:
            try:
                if self.mode != "r" and self.dead and self.broken is None:
                    self._compact()
                else:
                    self.zf.close()
            finally:
                self.fobj.close()  # releases the flock

    def _compact(self) -> None:
        directory, name = os.path.split(self.path)
        tmp = os.path.join(directory, f".{name}.{uuid.uuid4().hex}.asyncarr.tmp")
        try:
            with zipfile.ZipFile(tmp, "x", allowZip64=True) as out:
                for info in [*self.others, *self.entries.values()]:
                    copy = zipfile.ZipInfo(info.filename, date_time=info.date_time)
                    copy.external_attr = info.external_attr
                    copy.comment = info.comment
                    level = getattr(info, "_compresslevel", None)
                    out.writestr(copy, self.zf.read(info), info.compress_type, level)
            self.zf.close()
            os.replace(tmp, self.path)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            self.zf.close()
            raise


class ZipStore(Store):
    """Keys as members of one zip archive (see the module docs for the semantics).

    Opening reads the archive's central directory (blocking file I/O, done
    once, here). Close writable stores with :meth:`aclose` (or ``async with``):
    only then is the archive a valid zip.

    Parameters
    ----------
    path:
        The archive's path (``~`` expanded).
    mode:
        ``"r"``, ``"w"``, ``"a"`` or ``"x"``; default ``"r"`` when
        ``read_only`` else ``"a"``.
    compression, compresslevel:
        For new members: ``"stored"`` (default), ``"deflated"``, ``"bzip2"``
        or ``"lzma"`` (or a ``zipfile.ZIP_*`` constant) and its level.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        mode: str | None = None,
        read_only: bool = False,
        compression: str | int = "stored",
        compresslevel: int | None = None,
        limits: StoreLimits | None = None,
        _archive: _Archive | None = None,
    ) -> None:
        owner = _archive is None
        if _archive is None:
            mode = mode or ("r" if read_only else "a")
            if mode not in _MODES:
                raise ConfigError(f"zip mode must be one of {_MODES}, got {mode!r}")
            if read_only and mode != "r":
                raise ConfigError(f"zip mode {mode!r} writes, but read_only=True was given")
            method = _COMPRESSION.get(compression) if isinstance(compression, str) else compression
            if method is None or method not in _COMPRESSION.values() or isinstance(method, bool):
                raise ConfigError(
                    f"zip compression must be one of {sorted(_COMPRESSION)}, got {compression!r}"
                )
            full = os.path.abspath(os.path.expanduser(os.fspath(path)))
            try:
                _archive = _Archive(full, mode, method, compresslevel)
            except StoreError:
                raise
            except FileExistsError as exc:
                msg = "the zip archive already exists (mode 'x' creates a new one)"
                raise StoreError(msg, store=f"zip://{full}") from exc
            except OSError as exc:
                raise translate_os_error(
                    exc, store=f"zip://{full}", key=None, action="open"
                ) from exc
            except (zipfile.BadZipFile, zipfile.LargeZipFile) as exc:
                raise StoreError(f"cannot open zip archive: {exc}", store=f"zip://{full}") from exc
            read_only = mode == "r"
        super().__init__(read_only=read_only, limits=limits)
        self._archive = _archive
        self._owner = owner

    @classmethod
    def default_limits(cls) -> StoreLimits:
        return StoreLimits(max_concurrency=32, adaptive=False)

    @property
    def path(self) -> str:
        """The archive's absolute path."""
        return self._archive.path

    @property
    def mode(self) -> str:
        """The mode the archive was opened with."""
        return self._archive.mode

    @property
    def endpoint_key(self) -> str:
        return f"zip:{self._archive.path}"

    def _reopen_arguments(self) -> tuple[tuple[Any, ...], dict[str, Any]]:
        """Pickled as the archive's path, compression and mode, never a truncating one: a
        writable copy appends (mode ``"a"``), so it sees what was written. The copy opens
        the archive when it is unpickled, with the usual locks: a copy of a writable store
        can be used once the original is closed."""
        archive = self._archive
        return (archive.path,), {
            "mode": "r" if self.read_only else "a",
            "read_only": self.read_only,
            "compression": archive.compression,
            "compresslevel": archive.compresslevel,
            "limits": self.limits,
        }

    def with_read_only(self, read_only: bool = True) -> ZipStore:
        """A view of the same open archive (closing a view leaves the archive open)."""
        if not read_only and self._archive.mode == "r":
            raise UnsupportedOperationError(
                "a zip opened with mode 'r' cannot be written; reopen it with mode 'a'", store=self
            )
        return ZipStore(self._archive.path, read_only=read_only, limits=self.limits,
                        _archive=self._archive)  # fmt: skip

    @property
    def location(self) -> str:
        return "zip://" + os.path.realpath(self._archive.path)

    def __repr__(self) -> str:
        flag = ", read-only" if self.read_only else ""
        return f"ZipStore({self._archive.path!r}, mode={self._archive.mode!r}{flag})"

    __str__ = __repr__

    async def _call(self, key: str | None, action: str, fn: Callable[..., T], *args: Any) -> T:
        try:
            return await run_io(fn, *args)
        except StoreError:
            raise
        except OSError as exc:
            raise translate_os_error(exc, store=self, key=key, action=action) from exc
        except (zipfile.BadZipFile, ValueError, RuntimeError) as exc:
            raise StoreError(f"{action} failed: {exc}", store=self, key=key) from exc

    # -- reads ---------------------------------------------------------------------------
    async def get(
        self, key: str, byte_range: RangeRequest | None = None, *, max_size: int | None = None
    ) -> bytes | None:
        key = self._key(key)
        parts = await self._call(key, "read", self._archive.read, key, (byte_range,), max_size)
        return None if parts is None else parts[0]

    async def get_ranges(self, key: str, ranges: Sequence[RangeRequest]) -> list[bytes] | None:
        key = self._key(key)
        return await self._call(key, "read", self._archive.read, key, list(ranges))

    async def exists(self, key: str) -> bool:
        return self._archive.info(self._key(key)) is not None

    async def getsize(self, key: str) -> int:
        key = self._key(key)
        info = self._archive.info(key)
        if info is None:
            raise KeyNotFoundError("no such key", store=self, key=key)
        return info.file_size

    # -- writes ----------------------------------------------------------------------------
    async def set(self, key: str, value: bytes) -> None:
        key = self._key(key)
        self._check_writable(key)
        data = value if isinstance(value, bytes) else bytes(value)
        await self._call(key, "write", lambda: self._archive.write(key, data, only_new=False))

    async def set_if_not_exists(self, key: str, value: bytes) -> bool:
        key = self._key(key)
        self._check_writable(key)
        data = value if isinstance(value, bytes) else bytes(value)
        return await self._call(key, "write", lambda: self._archive.write(key, data, only_new=True))

    async def delete(self, key: str) -> None:
        key = self._key(key)
        self._check_writable(key)
        self._archive.remove(key)

    # -- listing ----------------------------------------------------------------------------
    async def list_prefix(self, prefix: str) -> AsyncIterator[str]:
        prefix = self._list_prefix_arg(prefix)
        with self._archive.cond:
            if self._archive.closed:
                raise StoreError("the zip store is closed", store=self)
            keys = [k for k in self._archive.entries if k.startswith(prefix)]
        for key in keys:
            yield key

    # -- lifecycle --------------------------------------------------------------------------
    async def aclose(self) -> None:
        """Finish the archive (central directory; compaction if needed) and release it.

        Closing a read-only view from :meth:`with_read_only` only closes the view.
        """
        if self._closed:
            return
        self._closed = True
        if self._owner:
            await self._call(None, "close", self._archive.close)


_ZIP_OPTIONS = {"mode", "compression", "compresslevel", "limits"}


def zip_store_from_url(
    url: str, *, read_only: bool, storage_options: Mapping[str, Any]
) -> ZipStore:
    """``zip:///abs/file.zip``, ``zip://rel/file.zip`` (relative to the current directory).

    storage_options: ``mode`` (``r``/``w``/``a``/``x``; default ``r`` when
    read-only, else ``a``), ``compression``, ``compresslevel``, ``limits``.
    """
    unknown = set(storage_options) - _ZIP_OPTIONS
    if unknown:
        raise ConfigError(
            f"unknown storage_options for zip://: {sorted(unknown)}; known: {sorted(_ZIP_OPTIONS)}"
        )
    return ZipStore(
        url_to_path(url, "zip"),
        mode=storage_options.get("mode"),
        read_only=read_only,
        compression=storage_options.get("compression", "stored"),
        compresslevel=storage_options.get("compresslevel"),
        limits=storage_options.get("limits"),
    )
