"""How the S3 store maps what went wrong onto the asyncarr error tree.

One table for both of the store's routes: botocore's ``ClientError`` (its code and HTTP
status) and the lean path's answers (the ``<Code>`` of the XML error body and the status,
:func:`asyncarr.stores._s3_lean.error_code`) go through :func:`error_from_code`;
transport faults of either (botocore's, aiohttp's, :mod:`._http1`'s) through
:func:`translate`. So a PUT refused by a precondition, a throttled DELETE or a dead
endpoint raise the same error whichever route the request took.
"""

from __future__ import annotations

from typing import Any

from asyncarr.abc import Store
from asyncarr.errors import (
    KeyNotFoundError,
    PermissionDeniedError,
    PreconditionFailedError,
    StoreError,
    ThrottledError,
    TransientStoreError,
    TruncatedReadError,
)

__all__ = [
    "ConditionalRequestConflict",
    "RangeNotSatisfiable",
    "error_from_code",
    "error_info",
    "translate",
]


def _codes(names: str) -> frozenset[str]:
    return frozenset(names.split())


_PERMISSION_CODES = _codes(
    "AccessDenied AllAccessDisabled AccountProblem ExpiredToken InvalidAccessKeyId "
    "InvalidClientTokenId InvalidToken SignatureDoesNotMatch UnrecognizedClientException"
)
_THROTTLE_CODES = _codes(
    "SlowDown Throttling ThrottlingException ThrottledException RequestLimitExceeded "
    "RequestThrottled RequestThrottledException TooManyRequestsException "
    "ProvisionedThroughputExceededException"
)
_TRANSIENT_CODES = _codes(
    "InternalError ServiceUnavailable RequestTimeout RequestTimeoutException "
    "OperationAborted PriorRequestNotComplete BadDigest XAmzContentSHA256Mismatch"
)
"""Faults a retry can cure. ``BadDigest``: the body the service received does not match
the checksum sent with it, i.e. it was damaged on its way (sending it again fixes that)."""


class RangeNotSatisfiable(StoreError):
    """416: the requested range starts past the end of an existing value."""


class ConditionalRequestConflict(PreconditionFailedError):
    """409 ``ConditionalRequestConflict``: another conditional write to the key was in
    flight. A :class:`PreconditionFailedError` (the caller re-reads), which
    ``set_if_not_exists`` turns into a retry (its ``False`` must mean "the key exists")."""


def error_info(exc: BaseException) -> tuple[str, int]:
    """(error code, HTTP status) of a botocore ``ClientError``."""
    response = getattr(exc, "response", None) or {}
    code = str(response.get("Error", {}).get("Code", ""))
    status = int(response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0) or 0)
    return code, status


def error_from_code(
    code: str, status: int, message: str | None, *, store: Store, bucket: str, key: str | None
) -> StoreError:
    """The error for an S3 error ``code`` (may be ``""``) answered with HTTP ``status``."""
    what = f"S3 {code or status}: {message or code or 'error'}"
    if code == "NoSuchBucket":
        return StoreError(f"S3 bucket {bucket!r} does not exist", store=store, key=key)
    if code == "NoSuchUpload":  # aborted elsewhere (a lifecycle rule): start again
        return TransientStoreError(
            f"{what} (the multipart upload was aborted while in progress)", store=store, key=key
        )
    if code in ("NoSuchKey", "NotFound") or status == 404:
        return KeyNotFoundError("no such key", store=store, key=key)
    if code == "InvalidRange" or status == 416:
        return RangeNotSatisfiable(what, store=store, key=key)
    if code in _PERMISSION_CODES or status in (401, 403):
        return PermissionDeniedError(what, store=store, key=key)
    if code == "ConditionalRequestConflict":
        return ConditionalRequestConflict(what, store=store, key=key)
    if code == "PreconditionFailed" or status == 412:
        return PreconditionFailedError(what, store=store, key=key)
    if code in _THROTTLE_CODES or status == 429:
        return ThrottledError(what, store=store, key=key)
    if code in _TRANSIENT_CODES or status >= 500:
        return TransientStoreError(what, store=store, key=key)
    return StoreError(what, store=store, key=key)


def translate(
    exc: Exception, sdk: Any, *, store: Store, bucket: str, key: str | None
) -> StoreError:
    """Map an SDK or transport exception onto the asyncarr error tree (``sdk``: the
    lazily imported botocore and aiohttp, see :func:`._s3_client.sdk`)."""
    if isinstance(exc, StoreError):
        return exc
    errors = sdk.errors
    if isinstance(exc, errors.ClientError):
        code, status = error_info(exc)
        message = exc.response.get("Error", {}).get("Message")
        return error_from_code(code, status, message, store=store, bucket=bucket, key=key)
    if isinstance(exc, errors.IncompleteReadError):
        return TruncatedReadError(f"S3 body ended early: {exc}", store=store, key=key)
    if isinstance(exc, errors.NoCredentialsError | errors.PartialCredentialsError):
        return PermissionDeniedError(
            f"no usable AWS credentials ({type(exc).__name__}); pass aws_access_key_id/"
            "aws_secret_access_key, set AWS_* variables or a profile, or anon=True",
            store=store,
            key=key,
        )
    if isinstance(exc, errors.SSLError):  # e.g. certificate verification: not retried
        return StoreError(f"S3 TLS failure: {exc}", store=store, key=key)
    what = f"S3 request failed: {type(exc).__name__}: {exc}"
    # refused/unreachable/timeouts (ConnectionError), resets and broken streams
    # (HTTPClientError covers ResponseStreamingError), corrupted bodies
    transient = (errors.ConnectionError, errors.HTTPClientError, errors.FlexibleChecksumError)
    aio = (sdk.aiohttp.ClientPayloadError, sdk.aiohttp.ClientConnectionError)
    if isinstance(exc, transient + aio + (TimeoutError, ConnectionError)):
        return TransientStoreError(what, store=store, key=key)
    return StoreError(what, store=store, key=key)
