"""Batches of chunks through the native kernel: read, write, encode.

Each call hands the kernel a whole batch; the kernel works through it on ``workers``
native threads with the GIL released once, and reports a status per item. Failed items
become the asyncarr errors the Python path raises for the same fault, naming the item's
key; the first is raised (after the whole batch is done, so no thread still writes into
the caller's arrays) unless ``raise_errors=False``.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from asyncarr.abc import NDArray
from asyncarr.errors import (
    AsyncarrError,
    CodecError,
    ConfigError,
    InvalidKeyError,
    ReadOnlyStoreError,
    SelectionError,
    StoreError,
    TransientStoreError,
    TruncatedReadError,
)
from asyncarr.kernel._chain import KernelChain
from asyncarr.kernel._loader import native
from asyncarr.stores import LocalStore, translate_os_error

__all__ = [
    "LocalFiles",
    "ReadItem",
    "ReadOutcome",
    "WriteItem",
    "WriteOutcome",
    "encode_chunks",
    "read_chunks",
    "write_chunks",
]

ReadItem = tuple[Any, ...]
"""``(source, chunk_sel, out_sel, ...)``: more fields (a :class:`SlicePlan` chunk's) are
ignored. ``source`` is a key (``str``, read from the :class:`LocalFiles`), a bytes-like
buffer, ``(key or buffer, offset, length)`` for a byte range of it (an inner chunk of a
shard), or ``None`` (a missing chunk: its region is filled). ``chunk_sel`` (``None``:
all of it) and ``out_sel`` are tuples of one slice per axis."""

WriteItem = tuple[Any, ...]
"""``(key, value_sel, ...)``: the chunk at ``key`` is ``value[value_sel]``, padded with the
fill value where the region is smaller than a chunk (an edge chunk)."""

# ``enum ak_status`` in csrc/kernel.h
_CODEC, _RANGE, _OS, _KEY, _TRUNCATED, _GONE, _TRANSIENT, _NOMEM = range(3, 11)


@dataclass(frozen=True)
class LocalFiles:
    """A directory of chunk files, written and read with :class:`LocalStore`'s rules
    (keys validated, resolved beneath the root, atomic replacement, ``fsync`` policy).

    Build it once per store with :meth:`of`.
    """

    root: str
    root_real: str
    fsync: bool = False
    read_only: bool = False
    auto_mkdir: bool = True
    label: str = ""
    """How errors name the store."""

    @classmethod
    def of(cls, store: LocalStore) -> LocalFiles:
        """The files of ``store`` (its root, options and name)."""
        return cls(
            root=store.root,
            root_real=os.path.realpath(store.root),
            fsync=store.fsync,
            read_only=store.read_only,
            auto_mkdir=store.auto_mkdir,
            label=repr(store),
        )

    def _native(self) -> tuple[str, str, bool]:
        return (self.root, self.root_real, self.fsync)


@dataclass
class ReadOutcome:
    """What a :func:`read_chunks` call did."""

    decoded: int
    """Chunks decoded into the output."""
    missing: int
    """Chunks that do not exist: their regions hold the fill value."""
    bytes_read: int
    """Bytes read from files."""
    errors: list[AsyncarrError] = field(default_factory=list)
    """The failed items' errors, in item order (raised unless ``raise_errors=False``)."""


@dataclass
class WriteOutcome:
    """What a :func:`write_chunks` call did."""

    stored: int
    """Chunks written."""
    removed: int
    """Chunks that were all fill value: removed rather than written."""
    bytes_written: int
    errors: list[AsyncarrError] = field(default_factory=list)


def _item_key(item: Any) -> str | None:
    source = item[0] if isinstance(item, tuple) and item else None
    if isinstance(source, tuple) and source:
        source = source[0]
    return source if isinstance(source, str) else None


def _error(
    status: int,
    code: int,
    message: str | None,
    key: str | None,
    chain: KernelChain,
    store: object,
    action: str,
) -> AsyncarrError:
    text = message or ""
    if status == _CODEC:
        return CodecError(text, key=key, codec=chain.codec)
    if status == _RANGE:
        return CodecError(text, key=key, codec="sharding_indexed")
    if status == _OS:
        exc = OSError(code, os.strerror(code))
        return translate_os_error(exc, store=store, key=key, action=message or action)
    if status == _KEY:
        return InvalidKeyError(text, store=store, key=key)
    if status == _TRUNCATED:
        return TruncatedReadError(text, store=store, key=key)
    if status == _GONE:
        return StoreError(text, store=store, key=key)
    if status == _TRANSIENT:
        return TransientStoreError(text, store=store, key=key)
    if status == _NOMEM:
        return CodecError(f"not enough memory to {action} the chunk", key=key, codec=chain.codec)
    return CodecError(f"the native kernel failed ({status}): {text}", key=key, codec=chain.codec)


def _errors(
    raw: list[tuple[int, int, int, str | None]],
    keys: Sequence[str | None],
    chain: KernelChain,
    files: LocalFiles | None,
    action: str,
) -> list[AsyncarrError]:
    store = (files.label or files.root) if files is not None else None
    return [_error(s, c, m, keys[i], chain, store, action) for i, s, c, m in raw]


def _check_array(chain: KernelChain, array: NDArray, what: str, *, writable: bool) -> None:
    if not isinstance(array, np.ndarray):
        raise ConfigError(f"the {what} must be a numpy array, got {type(array).__name__}")
    if array.dtype != chain.dtype:
        raise ConfigError(f"the {what} is {array.dtype}; this chain is for {chain.dtype}")
    if writable and not array.flags.writeable:
        raise ConfigError(f"the {what} is read-only")


def _call(fn: Any, *args: Any) -> Any:
    """Call the kernel; malformed items (a caller's mistake) become asyncarr errors."""
    try:
        return fn(*args)
    except (ValueError, TypeError) as exc:
        raise SelectionError(f"malformed kernel batch: {exc}") from exc


def read_chunks(
    chain: KernelChain,
    out: NDArray,
    items: Sequence[ReadItem],
    *,
    files: LocalFiles | None = None,
    workers: int = 1,
    labels: Sequence[str] | None = None,
    raise_errors: bool = True,
) -> ReadOutcome:
    """Read, decode and place a batch of chunks into ``out`` (see :data:`ReadItem`).

    ``workers`` native threads share the batch (the calling thread is one of them;
    several calls may also run at once from several threads). ``labels`` name the items
    in errors where their source is a buffer (default: the key of a file source). A
    chunk that fails leaves its region undefined.
    """
    _check_array(chain, out, "output", writable=True)
    try:
        decoded, missing, nbytes, raw = _call(
            native().read,
            chain.capsule,
            out,
            items,
            files._native() if files is not None else None,
            workers,
        )
    except OSError as exc:  # the root itself cannot be opened
        raise translate_os_error(exc, store=files and files.label, key=None, action="read") from exc
    outcome = ReadOutcome(decoded, missing, nbytes)
    if raw:
        keys = list(labels) if labels is not None else [_item_key(item) for item in items]
        outcome.errors = _errors(raw, keys, chain, files, "read")
        if raise_errors:
            raise outcome.errors[0]
    return outcome


def _prepare_root(files: LocalFiles) -> None:
    if files.read_only:
        raise ReadOnlyStoreError("the store is read-only", store=files.label or files.root)
    if os.path.isdir(files.root):
        return
    if not files.auto_mkdir:
        msg = f"the root directory {files.root} does not exist (auto_mkdir=False)"
        raise StoreError(msg, store=files.label or files.root)
    try:
        os.makedirs(files.root, exist_ok=True)
    except OSError as exc:
        raise translate_os_error(exc, store=files.label, key=None, action="write") from exc


def write_chunks(
    chain: KernelChain,
    value: NDArray,
    items: Sequence[WriteItem],
    *,
    files: LocalFiles,
    workers: int = 1,
    write_empty: bool = False,
    raise_errors: bool = True,
) -> WriteOutcome:
    """Encode the chunks ``items`` cut from ``value`` and store each under its key,
    atomically (see :data:`WriteItem`). A chunk that is all fill value is removed
    instead, unless ``write_empty``."""
    _check_array(chain, value, "value", writable=False)
    _prepare_root(files)
    try:
        stored, removed, nbytes, raw = _call(
            native().write, chain.capsule, value, items, files._native(), workers, write_empty
        )
    except OSError as exc:
        raise translate_os_error(exc, store=files.label, key=None, action="write") from exc
    outcome = WriteOutcome(stored, removed, nbytes)
    if raw:
        keys = [item[0] if isinstance(item[0], str) else None for item in items]
        outcome.errors = _errors(raw, keys, chain, files, "write")
        if raise_errors:
            raise outcome.errors[0]
    return outcome


def encode_chunks(
    chain: KernelChain,
    value: NDArray,
    selections: Sequence[tuple[slice, ...] | None],
    *,
    workers: int = 1,
    write_empty: bool = False,
    keys: Sequence[str] | None = None,
) -> list[bytes | None]:
    """The encoded chunks at ``selections`` of ``value`` (edge chunks padded with the
    fill value); ``None`` for a chunk that is all fill value, unless ``write_empty``.
    ``keys`` name the chunks in errors."""
    _check_array(chain, value, "value", writable=False)
    chunks, raw = _call(native().encode, chain.capsule, value, selections, workers, write_empty)
    if raw:
        names: Sequence[str | None] = keys if keys is not None else [None] * len(selections)
        raise _errors(raw, names, chain, None, "encode")[0]
    return chunks  # type: ignore[no-any-return]
