"""The ``Store`` extension point: an async key/value view of a storage backend."""

from __future__ import annotations

import contextlib
import functools
import inspect
import posixpath
import re
from abc import ABC, abstractmethod
from collections.abc import AsyncIterator, Callable, Iterable, Mapping, Sequence
from types import TracebackType
from typing import Any, Self

from asyncarr._lifecycle import ensure_owner_alive
from asyncarr._types import ByteRange, RangeRequest, Versioned
from asyncarr.config import StoreLimits, store_limits
from asyncarr.errors import (
    InvalidKeyError,
    ReadOnlyStoreError,
    UnsupportedOperationError,
)

__all__ = ["Store", "normalize_key", "normalize_prefix", "validate_prefix"]


_NO_OPERATION: contextlib.AbstractAsyncContextManager[None] = contextlib.nullcontext()

_SUSPECT_KEY = re.compile(r"(?:^|/)\.{0,2}(?:/|$)|[\x00\\]")
"""Matches anything :func:`normalize_key` refuses: an empty, ``.`` or ``..`` segment
(a leading ``/`` is an empty first segment), a NUL byte or a backslash."""


def normalize_key(key: str, *, store: object = None) -> str:
    """Validate a store key and return its canonical form.

    Keys are ``/``-separated relative paths. Absolute paths, ``..`` and ``.``
    segments, empty segments, backslashes and NUL bytes are refused with
    :class:`InvalidKeyError`, so that no key can escape a store's root.
    """
    if type(key) is str and _SUSPECT_KEY.search(key) is None:
        return key  # the hot path (one per chunk): a single regex scan
    if not isinstance(key, str):
        raise InvalidKeyError(f"store keys must be str, got {type(key).__name__}", store=store)
    if key == "":
        raise InvalidKeyError("empty store key", store=store, key=key)
    if "\x00" in key or "\\" in key:
        raise InvalidKeyError("store key contains a NUL byte or backslash", store=store, key=key)
    if key.startswith("/"):
        raise InvalidKeyError("store key must be relative, not absolute", store=store, key=key)
    for part in key.split("/"):
        if part in ("", ".", ".."):
            raise InvalidKeyError(
                "store key has an empty, '.' or '..' segment", store=store, key=key
            )
    return key


def normalize_prefix(prefix: str, *, store: object = None) -> str:
    """A "directory" prefix in canonical form: ``""`` (the root) or ``"a/b/"``."""
    if prefix in ("", "/"):
        return ""
    return normalize_key(prefix.rstrip("/"), store=store) + "/"


def validate_prefix(prefix: str, *, store: object = None) -> str:
    """Check a raw listing prefix (any string prefix of a valid key) and return it."""
    if prefix == "":
        return ""
    body = prefix.rstrip("/")
    try:
        if "\x00" in prefix or "\\" in prefix or prefix.startswith("/") or not body:
            raise InvalidKeyError("invalid listing prefix", store=store, key=prefix)
        normalize_key(body, store=store)
    except InvalidKeyError as exc:
        raise InvalidKeyError(
            "listing prefix is absolute, has a NUL, backslash, '.' or '..' segment",
            store=store,
            key=prefix,
        ) from exc
    return prefix


class Store(ABC):
    """An async key/value store holding a Zarr hierarchy.

    Contract (checked for every implementation by
    :class:`asyncarr.testing.StoreTests`):

    - ``get`` of a missing key returns ``None``; it never raises for that.
    - keys are validated with :func:`normalize_key`; nothing escapes the root.
    - every backend exception is translated into the :mod:`asyncarr.errors`
      tree; faults worth retrying become :class:`TransientStoreError`.
    - writes on a store opened with ``read_only=True`` raise
      :class:`ReadOnlyStoreError`.

    Concurrency limits and retries are applied by the runtime
    (:mod:`asyncarr.runtime`), keyed by :attr:`endpoint_key`, so one budget
    is shared by every array using the same endpoint.

    Pickling: a store pickles as its class and the arguments it was constructed with (as
    given: credentials travel inside the pickle, as with fsspec, and are read from the
    environment of the receiving process where none were given), with its current
    ``read_only`` flag. Unpickling constructs a new store, which opens no connection until
    it is used; its SDK clients come from the receiving process's shared client pools, so
    many unpickled stores of one endpoint share one connection pool per event loop.
    Keyword arguments whose names start with ``_`` (plumbing shared between views of one
    store object) are left out; a store that needs more overrides
    :meth:`_reopen_arguments`.
    """

    _constructed_with: tuple[tuple[Any, ...], dict[str, Any]]

    def __new__(cls, *args: Any, **kwargs: Any) -> Self:
        store = super().__new__(cls)
        store._constructed_with = (args, kwargs)
        return store

    def __init__(
        self, *, read_only: bool = False, limits: StoreLimits | Mapping[str, Any] | None = None
    ) -> None:
        """``limits``: a :class:`StoreLimits`, a mapping of its fields (as
        ``storage_options`` carry it; checked here, for every store), or ``None`` for
        :meth:`default_limits`."""
        self._read_only = read_only
        given = store_limits(limits)
        self._limits = given if given is not None else self.default_limits()
        self._closed = False

    # -- identity and capabilities -------------------------------------------------
    @classmethod
    def default_limits(cls) -> StoreLimits:
        """Limits used when the caller gives none (override per backend)."""
        return StoreLimits()

    @property
    def limits(self) -> StoreLimits:
        return self._limits

    @property
    def read_only(self) -> bool:
        return self._read_only

    @property
    def endpoint_key(self) -> str:
        """Identifies the service endpoint whose concurrency budget this store shares.

        Must not contain credentials.
        """
        return f"{type(self).__name__}:{id(self)}"

    @property
    def location(self) -> str | None:
        """Where this store's root is, canonically: two stores with the same location
        hold the same values (a path-like string; ``/`` separates levels, so one
        store's location being a prefix of another's means it contains it). ``None``
        where that is unknown. Used to refuse copies between overlapping places."""
        return None

    @property
    def supports_listing(self) -> bool:
        return True

    @property
    def lists_every_key(self) -> bool:
        """Whether listing names every stored key, chunks included (``False``: metadata
        documents only, as an HTTP store listing from consolidated metadata). Counting
        or sizing stored chunks needs it."""
        return self.supports_listing

    @property
    def supports_conditional_writes(self) -> bool:
        """Whether :meth:`get_versioned` / :meth:`set_if_version` are implemented."""
        return False

    @property
    def supports_local_files(self) -> bool:
        """Whether :meth:`local_path` gives a real filesystem path (read in workers)."""
        return False

    @property
    def supports_sync_reads(self) -> bool:
        """Whether :meth:`read_local`, :meth:`read_local_ranges` and
        :meth:`read_local_ranges_into` work: values can be read synchronously and cheaply
        from any thread (local files, memory). The core then reads each chunk (or a
        shard's inner chunks) in the thread that decodes it, with no event-loop round trip."""
        return self.supports_local_files

    def local_path(self, key: str) -> str | None:
        """The filesystem path of ``key`` for stores backed by local files."""
        return None

    def read_local(self, key: str, size_hint: int | None = None) -> bytes | None:
        """Read ``key`` synchronously in the calling thread (``None`` if missing).

        Only for stores with :attr:`supports_sync_reads`: the codec executor's
        worker threads read chunks themselves, so a chunk is read and
        decoded by the same thread with no event-loop round trip.
        ``size_hint``, the size the value probably does not exceed, lets a
        store skip asking for the size first; any size is still read whole.
        """
        raise UnsupportedOperationError("this store has no local files", store=self, key=key)

    def read_local_into(self, key: str, buffer: memoryview) -> bytes | memoryview | None:
        """:meth:`read_local` into ``buffer``, a writable byte buffer the caller reuses.

        Returns the part of ``buffer`` the value filled, or, for a value that does not
        fit, the whole value as new bytes; ``None`` if the key is missing. Stores with
        local files read straight into the buffer (no fresh memory to fault in for every
        large chunk, no size query first); the default returns :meth:`read_local`.
        """
        return self.read_local(key)

    def read_local_ranges(self, key: str, ranges: Sequence[RangeRequest]) -> list[bytes] | None:
        """:meth:`get_ranges`, synchronously in the calling thread (``None`` if missing).

        Only for stores with :attr:`supports_sync_reads`: a small sharded read
        fetches a shard's index and one inner chunk with no thread hand-off.
        """
        raise UnsupportedOperationError("this store has no local files", store=self, key=key)

    def read_local_ranges_into(
        self, key: str, ranges: Sequence[ByteRange], buffer: Callable[[int], memoryview]
    ) -> list[memoryview] | None:
        """:meth:`read_local_ranges` into a buffer the caller reuses; ``None`` if the key
        is missing.

        ``buffer(n)`` returns a writable byte buffer of at least ``n`` bytes; it is
        called once, with the ranges' total length as far as the value reaches (a
        corrupt range far past the end allocates nothing). The ranges are placed
        one after another in it, and the result holds the view of each one
        (shorter where the value ends first). Stores with local files read
        straight into the buffer, so a worker that reuses one has no fresh
        memory to fault in on every read; the default copies what
        :meth:`read_local_ranges` returns.
        """
        parts = self.read_local_ranges(key, ranges)
        if parts is None:
            return None
        out = buffer(sum(len(part) for part in parts))
        views: list[memoryview] = []
        pos = 0
        for part in parts:
            view = out[pos : pos + len(part)]
            view[:] = part
            views.append(view)
            pos += len(part)
        return views

    def with_read_only(self, read_only: bool = True) -> Store:
        """A view of the same data with a different read-only flag."""
        raise UnsupportedOperationError(
            "this store cannot be re-opened with another mode", store=self
        )

    # -- pickling -------------------------------------------------------------------------
    def _reopen_arguments(self) -> tuple[tuple[Any, ...], dict[str, Any]]:
        """``(args, kwargs)`` that construct this store again in another process: the
        constructor arguments as given (private ``_`` keywords dropped), with the current
        read-only flag where the constructor takes one."""
        args, kwargs = self._constructed_with
        kept = {name: value for name, value in kwargs.items() if not name.startswith("_")}
        if "read_only" in _init_parameters(type(self)):
            kept["read_only"] = self._read_only
        return args, kept

    def __reduce__(self) -> tuple[Any, ...]:
        args, kwargs = self._reopen_arguments()
        return (_reopen_store, (type(self), args, kwargs))

    def __copy__(self) -> Self:
        """A shallow copy of this object (not a new store built from its arguments)."""
        clone = object.__new__(type(self))
        clone.__dict__.update(self.__dict__)
        return clone

    def operation(self, name: str, *, write: bool) -> contextlib.AbstractAsyncContextManager[None]:
        """Bracket one top-level call of the array API (``async with
        store.operation("write temp", write=True): ...``): the store calls made inside it,
        by this task and the tasks it starts, belong to one operation. ``name`` says what
        it is, ``write`` whether it may change anything. Operations nest (an inner one is
        part of the outer one).

        Most stores need nothing (the default does nothing). A versioned store uses it to
        read one snapshot for a reading call and to commit a writing call's changes as
        one unit when it ends (and none of them if it raises).
        """
        return _NO_OPERATION

    # -- reads --------------------------------------------------------------------------
    @abstractmethod
    async def get(
        self, key: str, byte_range: RangeRequest | None = None, *, max_size: int | None = None
    ) -> bytes | None:
        """The value (or the requested byte range of it), or ``None`` if missing.

        ``max_size`` is the most bytes the caller accepts (the most a chunk of the array
        can encode to, the metadata size limit): a larger value raises
        :class:`~asyncarr.errors.ValueTooLargeError` without being read whole (a server's
        larger ``Content-Length`` is refused up front, an endless body stops at the
        bound). A ranged read is bounded by the range's own length as well.
        """

    async def get_ranges(self, key: str, ranges: Sequence[RangeRequest]) -> list[bytes] | None:
        """Several ranges of one value; ``None`` if the key is missing.

        The default issues one :meth:`get` per range; backends with a
        cheaper batched form override it.
        """
        out: list[bytes] = []
        for rng in ranges:
            part = await self.get(key, rng)
            if part is None:
                return None
            out.append(part)
        return out

    async def get_versioned(self, key: str, *, max_size: int | None = None) -> Versioned | None:
        """The value with a version token for :meth:`set_if_version` (``max_size`` as for
        :meth:`get`)."""
        raise UnsupportedOperationError("conditional writes are not supported", store=self, key=key)

    @abstractmethod
    async def exists(self, key: str) -> bool:
        """Whether ``key`` holds a value."""

    @abstractmethod
    async def getsize(self, key: str) -> int:
        """Size in bytes of the value; :class:`KeyNotFoundError` if missing."""

    @property
    def supports_sync_writes(self) -> bool:
        """Whether :meth:`write_local` stores values synchronously and cheaply from any
        thread (local files, memory): codec worker threads then store the chunks they
        encode themselves, with no event-loop round trip."""
        return self.supports_local_files

    def write_local(self, key: str, value: bytes | None) -> None:
        """Store (or, for ``None``, delete) ``key`` synchronously in the calling thread.

        The write-side twin of :meth:`read_local`: codec worker threads store
        the chunks they have just encoded. Only for :attr:`supports_sync_writes`.
        """
        raise UnsupportedOperationError("this store has no local files", store=self, key=key)

    def write_local_many(self, items: Iterable[tuple[str, bytes | None]]) -> None:
        """:meth:`write_local` for several keys, in order (a codec worker's batch of chunks).

        ``items`` may be a generator that encodes each value as it is asked for.
        Stores may override this to share work between the keys (local files: one
        directory open and one lock per directory). If it raises, some of the
        keys may have been stored and others not. In a codec worker process whose
        owner has died it stores nothing more (the process ends); stores that override
        it call :func:`~asyncarr._lifecycle.ensure_owner_alive` before each change too.
        """
        for key, value in items:
            ensure_owner_alive()
            self.write_local(key, value)

    # -- writes -----------------------------------------------------------------------------
    @abstractmethod
    async def set(self, key: str, value: bytes) -> None:
        """Store ``value`` under ``key``, replacing any old value atomically."""

    @abstractmethod
    async def set_if_not_exists(self, key: str, value: bytes) -> bool:
        """Store ``value`` only if ``key`` is absent; ``True`` if it was written.

        Must be atomic with respect to other writers (the service's own
        precondition, an exclusive create, ...).
        """

    async def set_if_version(self, key: str, value: bytes, version: str | None) -> None:
        """Store ``value`` only if the current version still equals ``version``.

        ``version=None`` means "only if absent". Raises
        :class:`PreconditionFailedError` when another writer won.
        """
        raise UnsupportedOperationError("conditional writes are not supported", store=self, key=key)

    async def delete_if_version(self, key: str, version: str) -> None:
        """Delete ``key`` only if its current version still equals ``version``.

        Raises :class:`PreconditionFailedError` when another writer changed (or
        deleted) it first. Stores without conditional deletes raise
        :class:`UnsupportedOperationError`; callers then fall back to a
        conditional write.
        """
        raise UnsupportedOperationError(
            "conditional deletes are not supported", store=self, key=key
        )

    @abstractmethod
    async def delete(self, key: str) -> None:
        """Remove ``key``; deleting a missing key is a no-op."""

    async def delete_prefix(self, prefix: str) -> None:
        """Remove every key under ``prefix`` (``""`` removes everything)."""
        self._check_writable()
        keys = [k async for k in self.list_prefix(prefix)]
        for k in keys:
            await self.delete(k)

    # -- listing -----------------------------------------------------------------------------
    @abstractmethod
    def list_prefix(self, prefix: str) -> AsyncIterator[str]:
        """Every key starting with the string ``prefix`` (full keys, any order).

        Implementations validate it with :meth:`_list_prefix_arg`.
        """

    async def list_dir(self, prefix: str) -> list[str]:
        """Immediate children of the "directory" ``prefix``.

        Returns child names (not full keys), without trailing ``/``, sorted,
        each once, whether it is a value or a deeper prefix.
        """
        base = normalize_prefix(prefix, store=self)
        children: set[str] = set()
        async for key in self.list_prefix(base):
            rest = key[len(base) :]
            if rest:
                children.add(rest.split("/", 1)[0])
        return sorted(children)

    async def list(self) -> AsyncIterator[str]:
        """Every key in the store."""
        async for key in self.list_prefix(""):
            yield key

    # -- lifecycle -------------------------------------------------------------------
    async def aclose(self) -> None:
        """Release connections and files. Idempotent."""
        self._closed = True

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    # -- helpers for implementations -------------------------------------------------
    def _check_writable(self, key: str | None = None) -> None:
        if self._read_only:
            raise ReadOnlyStoreError("store is read-only", store=self, key=key)

    def _key(self, key: str) -> str:
        return normalize_key(key, store=self)

    def _prefix(self, prefix: str) -> str:
        return normalize_prefix(prefix, store=self)

    def _list_prefix_arg(self, prefix: str) -> str:
        return validate_prefix(prefix, store=self)

    @staticmethod
    def _join(*parts: str) -> str:
        return posixpath.join(*[p for p in parts if p])


@functools.cache
def _init_parameters(cls: type[Store]) -> frozenset[str]:
    return frozenset(inspect.signature(cls.__init__).parameters)


def _reopen_store(cls: type[Store], args: tuple[Any, ...], kwargs: dict[str, Any]) -> Store:
    """Unpickle a store: construct it anew from its arguments (no I/O until it is used)."""
    return cls(*args, **kwargs)
