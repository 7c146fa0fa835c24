"""The MongoDB store's error translation: pymongo exceptions as asyncarr errors."""

from __future__ import annotations

from collections.abc import Callable

from asyncarr.errors import (
    AsyncarrError,
    ConfigError,
    PermissionDeniedError,
    PreconditionFailedError,
    StoreError,
    ThrottledError,
    TransientStoreError,
)
from asyncarr.stores._tls import certificate_failure

__all__ = ["translate"]

# OperationFailure codes (https://www.mongodb.com/docs/manual/reference/error-codes/)
_AUTH_CODES = frozenset({13, 18})  # Unauthorized, AuthenticationFailed
_THROTTLE_CODES = frozenset({16500})  # TooManyRequests (Cosmos DB's API for MongoDB)
_TRANSIENT_CODES = frozenset(
    {6, 7, 50, 64, 89, 91, 112, 133, 189, 262, 9001, 10107, 11600, 11602, 13435, 13436}
)


def translate(
    exc: Exception, store: object, key: str | None, scrub: Callable[[str], str]
) -> AsyncarrError | None:
    """The asyncarr error for a driver exception (``None`` only without the driver);
    ``scrub`` masks the credentials in a message."""
    try:
        from bson.errors import BSONError
        from gridfs.errors import CorruptGridFile
        from pymongo import errors as pe
    except ImportError:  # pragma: no cover - the store could not have been built
        return None
    message = scrub(str(exc))
    refused = certificate_failure(exc)
    if refused is not None:  # a configuration problem: retrying cannot help
        what = f"MongoDB TLS certificate refused: {scrub(refused)}"
        return StoreError(what, store=store, key=key)
    if isinstance(exc, pe.DuplicateKeyError):
        return PreconditionFailedError("key already exists", store=store, key=key)
    if isinstance(exc, pe.OperationFailure):
        code = exc.code
        if code in _AUTH_CODES:
            return PermissionDeniedError(f"MongoDB refused access: {message}", store=store, key=key)
        if code in _THROTTLE_CODES:
            return ThrottledError(f"MongoDB throttled the request: {message}", store=store, key=key)
        if (
            isinstance(exc, pe.ExecutionTimeout)
            or code in _TRANSIENT_CODES
            or exc.has_error_label("RetryableWriteError")
            or exc.has_error_label("TransientTransactionError")
            or exc.timeout
        ):
            return TransientStoreError(f"MongoDB fault: {message}", store=store, key=key)
        return StoreError(
            f"MongoDB operation failed (code {code}): {message}", store=store, key=key
        )
    if isinstance(exc, pe.ConnectionFailure) or (isinstance(exc, pe.PyMongoError) and exc.timeout):
        return TransientStoreError(f"MongoDB unreachable: {message}", store=store, key=key)
    if isinstance(exc, CorruptGridFile):
        return TransientStoreError(f"GridFS read failed: {message}", store=store, key=key)
    if isinstance(exc, pe.ConfigurationError):
        return ConfigError(f"invalid MongoDB configuration for {store}: {message}")
    if isinstance(exc, pe.PyMongoError | BSONError):
        return StoreError(f"MongoDB error: {message}", store=store, key=key)
    if isinstance(exc, TimeoutError | ConnectionError):
        return TransientStoreError(f"MongoDB I/O fault: {message}", store=store, key=key)
    # anything else from inside the driver (e.g. a KeyError in its authentication code
    # against a server without authentication) is still a failed store call
    return StoreError(
        f"MongoDB driver failed: {type(exc).__name__}: {message}", store=store, key=key
    )
