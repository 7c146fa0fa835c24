"""An in-process store: a dict of bytes. ``memory://name`` URLs share data by name.

Pickling: the data lives in one process, so a pickled :class:`MemoryStore` means
"this data". Loaded in the process that pickled it, the copy is a view of the same
data (writes go to it, as through the original). Loaded in any other process (a
spawned or forked worker, a dask worker) it is a **read-only snapshot** of the values
at the time of pickling: a write there raises :class:`ReadOnlyStoreError` instead of
landing in a copy that no one would ever see. The pickle carries every value, so keep
memory stores small where they travel; use a ``file://`` directory (or any shared
store) to write from other processes.
"""

from __future__ import annotations

import itertools
import threading
import weakref
from collections.abc import AsyncIterator, Mapping, MutableMapping, Sequence
from typing import Any
from urllib.parse import urlsplit

from asyncarr._process import process_token
from asyncarr._types import RangeRequest, Versioned, range_to_slice
from asyncarr.abc import Store
from asyncarr.config import StoreLimits
from asyncarr.errors import (
    ConfigError,
    KeyNotFoundError,
    PreconditionFailedError,
    ReadOnlyStoreError,
)
from asyncarr.stores._bodies import too_large

__all__ = ["MemoryStore", "memory_store_from_url"]


_serials = itertools.count(1)
_live: weakref.WeakValueDictionary[int, _Data] = weakref.WeakValueDictionary()
"""Every store's data in this process, by serial number (for unpickling)."""


class _Data:
    """The shared state behind one or more MemoryStore views."""

    def __init__(self, *, snapshot: bool = False) -> None:
        self.values: dict[str, bytes] = {}
        self.versions: dict[str, int] = {}
        self.lock = threading.Lock()
        self.counter = itertools.count(1)
        self.snapshot = snapshot
        """A copy unpickled in another process than the original's: never written."""
        self.serial = next(_serials)
        _live[self.serial] = self


class MemoryStore(Store):
    """Keys and values held in memory.

    ``MemoryStore()`` is private to its creator; :func:`memory_store_from_url`
    gives every ``memory://name`` the same data for the life of the process.
    Thread-safe; conditional writes are exact.
    """

    def __init__(
        self,
        data: MutableMapping[str, bytes] | None = None,
        *,
        read_only: bool = False,
        limits: StoreLimits | None = None,
        name: str | None = None,
        _shared: _Data | None = None,
    ) -> None:
        super().__init__(read_only=read_only, limits=limits)
        if _shared is None:
            _shared = _Data()
            for k, v in (data or {}).items():
                _shared.values[self._key(k)] = bytes(v)
                _shared.versions[self._key(k)] = next(_shared.counter)
        self._data = _shared
        self._name = name

    @classmethod
    def default_limits(cls) -> StoreLimits:
        return StoreLimits(max_concurrency=256, adaptive=False)

    @property
    def endpoint_key(self) -> str:
        return f"memory:{id(self._data)}"

    @property
    def location(self) -> str:
        return f"memory:{id(self._data)}"

    @property
    def supports_conditional_writes(self) -> bool:
        return True

    def with_read_only(self, read_only: bool = True) -> MemoryStore:
        return MemoryStore(
            read_only=read_only, limits=self.limits, name=self._name, _shared=self._data
        )

    def __reduce__(self) -> tuple[Any, ...]:
        """See the module docs: the same data in this process, a read-only snapshot of it
        in any other."""
        data = self._data
        with data.lock:
            values = dict(data.values)
        state = (process_token(), data.serial, self._name, self.read_only, self.limits, values)
        return (_reopen_memory_store, (type(self), *state))

    def _check_writable(self, key: str | None = None) -> None:
        if self._data.snapshot:
            raise ReadOnlyStoreError(
                "this memory store is a read-only snapshot, unpickled in another process than "
                "the one holding its data (writes there could never reach it); write to a "
                "store every process can reach, such as a file:// directory",
                store=self,
                key=key,
            )
        super()._check_writable(key)

    @property
    def read_only(self) -> bool:
        return self._read_only or self._data.snapshot

    def __repr__(self) -> str:
        label = f"memory://{self._name}" if self._name else f"0x{id(self._data):x}"
        flags = ", snapshot" if self._data.snapshot else ""
        return f"MemoryStore({label}{flags}{', read-only' if self.read_only else ''})"

    __str__ = __repr__

    @property
    def supports_sync_reads(self) -> bool:
        # A subclass that overrides get() (to instrument or alter reads) keeps every
        # read going through it; the synchronous path would bypass it.
        return type(self).get is MemoryStore.get

    def read_local(self, key: str, size_hint: int | None = None) -> bytes | None:
        """The value, read in the calling thread (a dict lookup; codec workers use it)."""
        return self._data.values.get(self._key(key))

    def read_local_ranges(self, key: str, ranges: Sequence[RangeRequest]) -> list[bytes] | None:
        """Several ranges of a value, in the calling thread."""
        value = self._data.values.get(self._key(key))
        if value is None:
            return None
        return [value[range_to_slice(r, len(value))] for r in ranges]

    async def get(
        self, key: str, byte_range: RangeRequest | None = None, *, max_size: int | None = None
    ) -> bytes | None:
        key = self._key(key)
        value = self._data.values.get(key)
        if value is None:
            return None
        if byte_range is not None:
            value = value[range_to_slice(byte_range, len(value))]
        if max_size is not None and len(value) > max_size:
            raise too_large(self, key, len(value), max_size)
        return value

    async def get_versioned(self, key: str, *, max_size: int | None = None) -> Versioned | None:
        key = self._key(key)
        with self._data.lock:
            value = self._data.values.get(key)
            if value is None:
                return None
            if max_size is not None and len(value) > max_size:
                raise too_large(self, key, len(value), max_size)
            return Versioned(value, str(self._data.versions[key]))

    async def exists(self, key: str) -> bool:
        return self._key(key) in self._data.values

    async def getsize(self, key: str) -> int:
        value = self._data.values.get(self._key(key))
        if value is None:
            raise KeyNotFoundError("no such key", store=self, key=key)
        return len(value)

    async def set(self, key: str, value: bytes) -> None:
        self._put(key, value)

    @property
    def supports_sync_writes(self) -> bool:
        # As for reads: a subclass that overrides set() or delete() keeps every write
        # going through them.
        return type(self).set is MemoryStore.set and type(self).delete is MemoryStore.delete

    def write_local(self, key: str, value: bytes | None) -> None:
        """Store (or, for ``None``, delete) a value in the calling thread (codec workers)."""
        self._put(key, value)

    def _put(self, key: str, value: bytes | None) -> None:
        """``set`` (``delete`` for ``None``), in the calling thread."""
        key = self._key(key)
        self._check_writable(key)
        with self._data.lock:
            if value is None:
                self._data.values.pop(key, None)
                self._data.versions.pop(key, None)
            else:
                self._data.values[key] = bytes(value)
                self._data.versions[key] = next(self._data.counter)

    async def set_if_not_exists(self, key: str, value: bytes) -> bool:
        key = self._key(key)
        self._check_writable(key)
        with self._data.lock:
            if key in self._data.values:
                return False
            self._data.values[key] = bytes(value)
            self._data.versions[key] = next(self._data.counter)
            return True

    async def set_if_version(self, key: str, value: bytes, version: str | None) -> None:
        key = self._key(key)
        self._check_writable(key)
        with self._data.lock:
            current = self._data.versions.get(key)
            if (None if current is None else str(current)) != version:
                raise PreconditionFailedError(
                    f"version is {current}, expected {version}", store=self, key=key
                )
            self._data.values[key] = bytes(value)
            self._data.versions[key] = next(self._data.counter)

    async def delete_if_version(self, key: str, version: str) -> None:
        key = self._key(key)
        self._check_writable(key)
        with self._data.lock:
            current = self._data.versions.get(key)
            if current is None or str(current) != version:
                raise PreconditionFailedError(
                    f"version is {current}, expected {version}", store=self, key=key
                )
            del self._data.values[key]
            del self._data.versions[key]

    async def delete(self, key: str) -> None:
        self._put(key, None)

    async def delete_prefix(self, prefix: str) -> None:
        prefix = self._list_prefix_arg(prefix)
        self._check_writable(prefix)
        with self._data.lock:
            for key in [k for k in self._data.values if k.startswith(prefix)]:
                del self._data.values[key]
                del self._data.versions[key]

    async def list_prefix(self, prefix: str) -> AsyncIterator[str]:
        prefix = self._list_prefix_arg(prefix)
        with self._data.lock:
            keys = [k for k in self._data.values if k.startswith(prefix)]
        for key in keys:
            yield key


_named: weakref.WeakValueDictionary[str, _Data] = weakref.WeakValueDictionary()
_named_strong: dict[str, _Data] = {}
_named_lock = threading.Lock()


def memory_store_from_url(
    url: str, *, read_only: bool, storage_options: Mapping[str, Any]
) -> MemoryStore:
    """``memory://name[/prefix]``: the named in-process store (created on first use).

    Named stores live until :func:`forget_memory_store` or process exit, so a
    URL can be reopened like a file path.
    """
    parts = urlsplit(url)
    name = parts.netloc + parts.path
    if not name:
        raise ConfigError(f"memory URL needs a name, e.g. memory://scratch (got {url!r})")
    unknown = set(storage_options) - {"limits"}
    if unknown:
        raise ConfigError(f"unknown storage_options for memory://: {sorted(unknown)}")
    with _named_lock:
        shared = _named_strong.get(name)
        if shared is None:
            shared = _named_strong[name] = _Data()
    return MemoryStore(
        read_only=read_only,
        limits=storage_options.get("limits"),
        name=name,
        _shared=shared,
    )


def _reopen_memory_store(
    cls: type[MemoryStore],
    token: str,
    serial: int,
    name: str | None,
    read_only: bool,
    limits: StoreLimits,
    values: dict[str, bytes],
) -> MemoryStore:
    """Unpickle a :class:`MemoryStore` (see the module docs)."""
    shared = _live.get(serial) if token == process_token() else None
    if shared is None:
        shared = _Data(snapshot=True)
        shared.values = values
        shared.versions = {key: next(shared.counter) for key in values}
    return cls(read_only=read_only, limits=limits, name=name, _shared=shared)


def forget_memory_store(name: str) -> None:
    """Drop the named in-process store ``memory://name``."""
    with _named_lock:
        _named_strong.pop(name, None)
