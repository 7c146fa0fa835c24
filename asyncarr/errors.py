"""The asyncarr exception tree.

Every error the library raises derives from :class:`AsyncarrError`. Store
adapters translate SDK exceptions at their boundary (``raise ... from exc``)
so callers never see raw botocore/azure/pymongo/aiohttp errors.

Only :class:`TransientStoreError` is retried by the scheduler.
"""

from __future__ import annotations

from typing import Any

__all__ = [
    "AsyncarrError",
    "CodecError",
    "ConfigError",
    "ConflictError",
    "ContainsArrayError",
    "ContainsGroupError",
    "CorruptContainerError",
    "DTypeError",
    "DeadlineExceededError",
    "IndexError_",
    "InvalidKeyError",
    "KeyNotFoundError",
    "MetadataError",
    "MissingExtraError",
    "NodeNotFoundError",
    "PermissionDeniedError",
    "PreconditionFailedError",
    "ReadOnlyStoreError",
    "SelectionError",
    "SnapshotNotFoundError",
    "StoreError",
    "SyncFromLoopError",
    "ThrottledError",
    "TransientStoreError",
    "TruncatedReadError",
    "UnknownCodecError",
    "UnknownDataTypeError",
    "UnsupportedOperationError",
    "ValueTooLargeError",
    "WorkerCrashedError",
]


class AsyncarrError(Exception):
    """Root of every error raised by asyncarr."""


class ConfigError(AsyncarrError, ValueError):
    """An option or argument has an invalid value."""


class MissingExtraError(ConfigError, ImportError):
    """An optional dependency (a pip extra) is not installed."""

    def __init__(self, feature: str, extra: str, module: str) -> None:
        super().__init__(
            f"{feature} needs the optional dependency {module!r}; "
            f"install it with: pip install 'asyncarr[{extra}]'"
        )
        self.feature = feature
        self.extra = extra
        self.module = module


class StoreError(AsyncarrError):
    """A store operation failed.

    ``store`` is a short, credential-free description of the store and
    ``key`` the key involved (``None`` for store-wide operations).
    """

    def __init__(self, message: str, *, store: object = None, key: str | None = None) -> None:
        where = []
        if store is not None:
            where.append(f"store={store}")
        if key is not None:
            where.append(f"key={key!r}")
        suffix = f" ({', '.join(where)})" if where else ""
        super().__init__(f"{message}{suffix}")
        self.store = store
        self.key = key


class KeyNotFoundError(StoreError, KeyError):
    """A key that must exist (e.g. for ``getsize``) does not."""

    def __str__(self) -> str:  # KeyError would repr() the message
        return str(self.args[0]) if self.args else ""


class InvalidKeyError(StoreError, ValueError):
    """A key is malformed or would escape the store's root."""


class PermissionDeniedError(StoreError, PermissionError):
    """The store refused the operation (authentication or authorisation)."""


class PreconditionFailedError(StoreError):
    """A conditional write lost its race (the object changed or already exists)."""


class ConflictError(StoreError):
    """A commit to a layered container lost its race: a writer that committed first
    changed some of the same keys (listed in :attr:`keys`, sorted). Nothing of the losing
    commit is visible; re-read and try again."""

    def __init__(self, message: str, *, store: object = None, keys: tuple[str, ...] = ()) -> None:
        shown = ", ".join(repr(k) for k in keys[:10])
        more = f" and {len(keys) - 10} more" if len(keys) > 10 else ""
        super().__init__(f"{message}: {shown}{more}" if keys else message, store=store)
        self.keys = keys


class SnapshotNotFoundError(StoreError, LookupError):
    """A layered container has no generation (or none at that time) to open: it never
    existed, or garbage collection removed it."""


class CorruptContainerError(StoreError):
    """An object of a layered container (a layer, a manifest, a pack) is malformed:
    ``key`` names it and the message says what is wrong. Never retried."""


class ReadOnlyStoreError(StoreError):
    """A write was attempted on a store opened read-only."""


class UnsupportedOperationError(StoreError, NotImplementedError):
    """The store cannot do this (e.g. listing over plain HTTP)."""


class TransientStoreError(StoreError):
    """A fault that may go away on retry: 5xx, timeouts, resets, throttling."""


class ThrottledError(TransientStoreError):
    """The service asked us to slow down (S3 503 SlowDown, HTTP 429)."""


class TruncatedReadError(TransientStoreError):
    """A body arrived shorter than announced; retried, never decoded."""


class ValueTooLargeError(StoreError):
    """A value (or a server's answer) is larger than the reader accepts: more than a chunk
    of the array can encode to, more than the range asked for, or more than the metadata
    size limit. Refused before or while it is read, never retried."""


class DeadlineExceededError(StoreError, TimeoutError):
    """Retries of a transient fault ran past the overall deadline."""


class WorkerCrashedError(AsyncarrError):
    """A codec worker process died; the pool is rebuilt for later calls."""


class MetadataError(AsyncarrError, ValueError):
    """Array or group metadata is missing, malformed or inconsistent."""

    def __init__(self, message: str, *, key: str | None = None) -> None:
        super().__init__(f"{message} (key={key!r})" if key is not None else message)
        self.key = key


class UnknownDataTypeError(MetadataError):
    """Metadata names a data type that no registered data type reads."""


class NodeNotFoundError(MetadataError, FileNotFoundError):
    """No array or group exists at the given path."""


class ContainsArrayError(MetadataError):
    """An array already exists where a new node was to be created."""


class ContainsGroupError(MetadataError):
    """A group already exists where a new node was to be created."""


class CodecError(AsyncarrError, ValueError):
    """Encoding or decoding a chunk failed, or produced the wrong size."""

    def __init__(self, message: str, *, key: str | None = None, codec: Any = None) -> None:
        where = []
        if codec is not None:
            where.append(f"codec={codec}")
        if key is not None:
            where.append(f"key={key!r}")
        suffix = f" ({', '.join(where)})" if where else ""
        super().__init__(f"{message}{suffix}")
        self.key = key
        self.codec = codec


class UnknownCodecError(CodecError, MetadataError):
    """Metadata names a codec that no registry knows."""

    def __init__(self, message: str, *, key: str | None = None, codec: Any = None) -> None:
        CodecError.__init__(self, message, key=key, codec=codec)


class SelectionError(AsyncarrError, IndexError):
    """A selection is out of bounds or malformed."""


IndexError_ = SelectionError


class DTypeError(AsyncarrError, TypeError):
    """Values of one dtype cannot be written to an array of another without loss."""


class SyncFromLoopError(AsyncarrError, RuntimeError):
    """A blocking call was made where it would deadlock the event loop."""
