"""Amazon S3 (and S3-compatible services) through aiobotocore.

``s3://bucket/prefix`` opens an :class:`S3Store`; keys are stored under
``prefix``. The SDK (``aiobotocore``, the ``s3`` extra) is imported only
when a store is created.

Clients
    One aiobotocore client is shared by every store with the same endpoint,
    region, credentials, addressing style and client settings *in the same
    event loop* (an aiohttp session belongs to one loop). Its connection
    pool is sized to ``limits.max_concurrency``. The client is
    reference-counted (:mod:`asyncarr.stores._client_pool`): the last store
    to :meth:`~S3Store.aclose` closes it, on its own loop, so stores must be
    closed (or used as ``async with``). botocore's own
    retries are off (one attempt per call); asyncarr's runtime retries
    :class:`~asyncarr.errors.TransientStoreError`.

Lean reads and writes
    Value reads (``get``/``get_ranges``) and writes (``set``, the conditional
    writes, ``delete``, ``delete_if_version``) leave botocore's per-request
    pipeline once its first object call on a bucket has shown the URL and
    signing region: later requests are signed with :mod:`._sigv4` and sent over
    asyncarr's HTTP/1.1 client (:mod:`._s3_lean`, :mod:`._s3_write`,
    :mod:`._http1`; aiohttp behind a proxy), several times cheaper in CPU. PUTs
    carry a CRC32C checksum the service verifies and keeps. Errors map exactly as
    botocore's do (:mod:`._s3_errors`). ``lean_reads=False`` /
    ``lean_writes=False`` keep those calls on botocore.

Large values
    Values of at least ``multipart_threshold`` bytes (default 64 MiB) are
    written with a multipart upload, ``multipart_part_size`` bytes per part
    (default 16 MiB), several parts in flight, aborted on failure or
    cancellation (:mod:`._s3_write`). Conditional writes go in one PUT up to
    S3's 5 GiB limit (services that honour the conditions on ``PutObject`` do
    not all honour them on ``CompleteMultipartUpload``: moto ignores
    ``If-Match`` there). Without the lean write path values go as one
    ``PutObject`` (at most 5 GiB).

Conditional writes
    ``set_if_not_exists`` sends ``PutObject`` with ``If-None-Match: *``;
    ``get_versioned`` returns the object's ETag and ``set_if_version``
    sends ``If-Match: <etag>`` (``If-None-Match: *`` for ``None``). A 412
    ``PreconditionFailed`` (or a 404 for an ``If-Match`` on a deleted key)
    means another writer won: :class:`~asyncarr.errors.PreconditionFailedError`.
    A 409 ``ConditionalRequestConflict`` raises ``PreconditionFailedError``
    from ``set_if_version`` (the caller re-reads anyway) but
    :class:`~asyncarr.errors.TransientStoreError` from ``set_if_not_exists``,
    whose ``False`` must mean "the key exists".

    An ETag is a digest of the content, so versions are *content
    fingerprints*: rewriting identical bytes keeps the version. That is
    safe for read-modify-write (the value a writer based its change on is
    still the current value).

    AWS S3 honours both headers atomically. Services that silently ignore
    them would make these calls lie, so the ``conditional_writes`` storage
    option (default ``True``) declares what the service can do. With
    ``conditional_writes=False`` :attr:`S3Store.supports_conditional_writes`
    is ``False``, ``get_versioned``/``set_if_version`` raise
    :class:`~asyncarr.errors.UnsupportedOperationError`, and
    ``set_if_not_exists`` degrades to a best-effort *check then write*
    that is **not atomic** (a warning is logged once per store).
    SeaweedFS 4.x honours both headers atomically; moto checks and writes
    in separate steps (its test fixture serialises requests).

Conditional deletes
    ``delete_if_version`` sends ``DeleteObject`` with ``If-Match: <etag>``.
    A service that ignored the header would delete unconditionally, so it
    is only used where the service is known to honour it: the
    ``conditional_deletes`` option defaults to ``True`` on AWS (no
    ``endpoint_url``) and ``False`` elsewhere (``delete_if_version`` then
    raises :class:`~asyncarr.errors.UnsupportedOperationError` and callers
    fall back to conditional writes). SeaweedFS 4.x and moto honour it.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import logging
import os
import re
import weakref
from collections.abc import AsyncGenerator, AsyncIterator, Mapping, Sequence
from typing import Any
from urllib.parse import urlsplit

from asyncarr._tasks import gather_all
from asyncarr._types import RangeRequest, Versioned, http_range_header, range_to_slice
from asyncarr.abc import Store
from asyncarr.abc._store import normalize_prefix
from asyncarr.config import StoreLimits
from asyncarr.errors import (
    ConfigError,
    InvalidKeyError,
    KeyNotFoundError,
    PreconditionFailedError,
    StoreError,
    TransientStoreError,
    TruncatedReadError,
    UnsupportedOperationError,
)
from asyncarr.stores._bodies import ranged_part, read_body, read_limit, too_large
from asyncarr.stores._http1 import BodyTooLargeError, HTTPResponse, IncompleteBodyError
from asyncarr.stores._s3_client import ClientLease, ClientSettings, S3Clients, client_pool, sdk
from asyncarr.stores._s3_errors import (
    ConditionalRequestConflict,
    RangeNotSatisfiable,
    error_from_code,
    translate,
)
from asyncarr.stores._s3_lean import (
    LeanReader,
    Route,
    check_checksum,
    clean_endpoint,
    error_code,
    whole_response,
)
from asyncarr.stores._s3_write import SINGLE_PUT_LIMIT, MultipartConfig, crc32c_b64

__all__ = ["S3Store", "s3_store_from_url"]

logger = logging.getLogger(__name__)

_DELETE_BATCH = 1000
_BOTOCORE_CONDITIONS = {"if-none-match": "IfNoneMatch", "if-match": "IfMatch"}
"""The conditional write headers as botocore's ``PutObject`` parameters."""
_ADDRESSING_STYLES = ("auto", "path", "virtual")
_BUCKET_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{1,254}$")


class S3Store(Store):
    """A bucket (optionally below a key prefix) of Amazon S3 or an S3-compatible service.

    ``endpoint_url`` defaults to ``AWS_ENDPOINT_URL_S3`` / ``AWS_ENDPOINT_URL``
    and then to AWS itself; ``region_name`` to ``AWS_REGION`` /
    ``AWS_DEFAULT_REGION`` / the profile. Without explicit keys, botocore's
    credential chain applies (environment, profile, instance metadata...).
    ``anon=True`` sends unsigned requests. See the module docstring for
    client sharing and conditional-write semantics.
    """

    def __init__(
        self,
        bucket: str,
        prefix: str = "",
        *,
        endpoint_url: str | None = None,
        region_name: str | None = None,
        aws_access_key_id: str | None = None,
        aws_secret_access_key: str | None = None,
        aws_session_token: str | None = None,
        profile: str | None = None,
        anon: bool = False,
        addressing_style: str = "auto",
        connect_timeout: float = 10.0,
        read_timeout: float = 60.0,
        conditional_writes: bool = True,
        conditional_deletes: bool | None = None,
        verify_dir_prefixes: bool = False,
        lean_reads: bool = True,
        lean_writes: bool = True,
        multipart_threshold: int = MultipartConfig.threshold,
        multipart_part_size: int = MultipartConfig.part_size,
        read_only: bool = False,
        limits: StoreLimits | None = None,
    ) -> None:
        super().__init__(read_only=read_only, limits=limits)
        sdk()
        if not isinstance(bucket, str) or not _BUCKET_RE.match(bucket):
            raise ConfigError(f"invalid S3 bucket name {bucket!r}")
        self._bucket = bucket
        try:
            self._root = normalize_prefix(prefix, store=f"s3://{bucket}")
        except InvalidKeyError as exc:
            raise ConfigError(f"invalid key prefix {prefix!r} for s3://{bucket}: {exc}") from exc
        if addressing_style not in _ADDRESSING_STYLES:
            raise ConfigError(
                f"addressing_style must be one of {', '.join(_ADDRESSING_STYLES)}, "
                f"got {addressing_style!r}"
            )
        for name, value in (("connect_timeout", connect_timeout), ("read_timeout", read_timeout)):
            if isinstance(value, bool) or not isinstance(value, int | float) or value <= 0:
                raise ConfigError(f"{name} must be a number > 0, got {value!r}")
        if (aws_access_key_id is None) != (aws_secret_access_key is None):
            raise ConfigError("give both aws_access_key_id and aws_secret_access_key, or neither")
        if aws_session_token is not None and aws_access_key_id is None:
            raise ConfigError("aws_session_token needs aws_access_key_id and aws_secret_access_key")
        if anon and aws_access_key_id is not None:
            raise ConfigError("anon=True sends unsigned requests; do not also give credentials")
        if (
            endpoint_url is None
            and os.environ.get("AWS_IGNORE_CONFIGURED_ENDPOINT_URLS", "").lower() != "true"
        ):
            endpoint_url = os.environ.get("AWS_ENDPOINT_URL_S3") or os.environ.get(
                "AWS_ENDPOINT_URL"
            )
        if endpoint_url is not None:
            parts = urlsplit(endpoint_url) if isinstance(endpoint_url, str) else None
            if parts is None or parts.scheme not in ("http", "https") or not parts.hostname:
                raise ConfigError(f"endpoint_url must be an http(s) URL, got {endpoint_url!r}")
        if region_name is None:
            region_name = os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION")
        if not anon and aws_access_key_id is None and profile is None:
            env_key = os.environ.get("AWS_ACCESS_KEY_ID")
            env_secret = os.environ.get("AWS_SECRET_ACCESS_KEY")
            if env_key and env_secret:  # snapshot, so the client cache key is exact
                aws_access_key_id, aws_secret_access_key = env_key, env_secret
                aws_session_token = os.environ.get("AWS_SESSION_TOKEN") or None
        self._settings = ClientSettings(
            endpoint_url=endpoint_url,
            region_name=region_name,
            profile=profile,
            anon=bool(anon),
            addressing_style=addressing_style,
            connect_timeout=float(connect_timeout),
            read_timeout=float(read_timeout),
            max_pool_connections=self.limits.max_concurrency,
            lean_reads=bool(lean_reads),
            lean_writes=bool(lean_writes),
            aws_access_key_id=aws_access_key_id,
            aws_secret_access_key=aws_secret_access_key,
            aws_session_token=aws_session_token,
        )
        self._conditional = bool(conditional_writes)
        self._conditional_deletes = (
            endpoint_url is None if conditional_deletes is None else bool(conditional_deletes)
        )
        self._multipart = MultipartConfig(
            threshold=multipart_threshold,
            part_size=multipart_part_size,
            concurrency=max(1, min(MultipartConfig.concurrency, self.limits.max_concurrency)),
        )
        self._verify_dir_prefixes = bool(verify_dir_prefixes)
        self._warned_non_atomic = False
        self._entries: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, ClientLease]
        self._entries = weakref.WeakKeyDictionary()

    # -- identity -----------------------------------------------------------------------
    @property
    def bucket(self) -> str:
        return self._bucket

    @property
    def prefix(self) -> str:
        """The key prefix inside the bucket (``""`` or ending in ``/``)."""
        return self._root

    @property
    def endpoint(self) -> str:
        """The service endpoint, without credentials (``"aws"`` for the AWS default)."""
        url = self._settings.endpoint_url
        return clean_endpoint(url) if url else "aws"

    @property
    def endpoint_key(self) -> str:
        return f"s3:{self.endpoint}:{self._settings.region_name or 'default'}"

    @property
    def supports_conditional_writes(self) -> bool:
        return self._conditional

    def with_read_only(self, read_only: bool = True) -> S3Store:
        clone = copy.copy(self)
        clone._read_only = read_only
        clone._closed = False
        clone._warned_non_atomic = False
        clone._entries = weakref.WeakKeyDictionary()
        return clone

    @property
    def location(self) -> str:
        return f"s3:{self.endpoint}/{self._bucket}/{self._root}".rstrip("/")

    def __repr__(self) -> str:
        where = f"s3://{self._bucket}/{self._root}".rstrip("/")
        flags = ", read-only" if self.read_only else ""
        return f"S3Store({where}, endpoint={self.endpoint}{flags})"

    __str__ = __repr__

    # -- client and error plumbing ----------------------------------------------------------
    async def _client(self) -> Any:
        """The shared aiobotocore client for the running loop."""
        return (await self._clients()).s3

    async def _clients(self) -> S3Clients:
        loop = asyncio.get_running_loop()
        lease = self._entries.get(loop)
        if lease is None:
            lease = await client_pool.acquire(
                self._settings.cache_key(), self._settings.open_client
            )
            held = self._entries.setdefault(loop, lease)
            if held is not lease:  # a concurrent first call of this store got one first
                await client_pool.release(lease)
                lease = held
            self._closed = False
        return lease.client

    async def _call(self, operation: str, key: str | None, **params: Any) -> Any:
        client = await self._client()
        try:
            return await getattr(client, operation)(Bucket=self._bucket, **params)
        except Exception as exc:
            raise self._translate(exc, key) from exc

    def _translate(self, exc: Exception, key: str | None) -> StoreError:
        """Map an SDK/transport exception onto the asyncarr error tree."""
        return translate(exc, sdk(), store=self, bucket=self._bucket, key=key)

    def _from_code(
        self, code: str, status: int, message: str | None, key: str | None
    ) -> StoreError:
        return error_from_code(code, status, message, store=self, bucket=self._bucket, key=key)

    def _answer_error(self, resp: HTTPResponse, key: str | None) -> StoreError:
        """The error for a lean request's error answer."""
        code, message = error_code(resp.body)
        return self._from_code(code, resp.status, message, key)

    async def _call_learning(
        self, clients: S3Clients, operation: str, key: str, **params: Any
    ) -> Any:
        """:meth:`_call` of an object operation (``Key`` is ``key``'s); where the lean path
        has no route for the bucket yet, it learns the one botocore takes (from an answer
        that is not a transport fault or a refusal: success, not found, precondition)."""
        lean = clients.lean
        if lean is None or lean.route(self._bucket) is not None:
            return await self._call(operation, key, **params)
        with lean.watch() as sent:
            try:
                result = await self._call(operation, key, **params)
            except (KeyNotFoundError, PreconditionFailedError):
                lean.learn(self._bucket, self._full(key), sent)
                raise
        lean.learn(self._bucket, self._full(key), sent)
        return result

    def _full(self, key: str) -> str:
        return self._root + self._key(key)

    # -- reads --------------------------------------------------------------------------
    async def _read_object(
        self, key: str, rng: RangeRequest | None, max_size: int | None = None
    ) -> tuple[bytes, str] | None:
        """(bytes, ETag) of the value or the range of it; ``None`` when missing. The body
        is read within the range's length or ``max_size`` (:mod:`._bodies`), and a
        ``206`` is checked against the range asked for and its ``Content-Range``."""
        full = self._full(key)
        # the stored checksum comes back and botocore checks the body against it, as the
        # lean path does: a body damaged on its way is a retried error, not wrong data
        params: dict[str, Any] = {"Key": full, "ChecksumMode": "ENABLED"}
        header = None if rng is None else http_range_header(rng)
        if rng is not None and header is None:  # empty range: only existence matters
            return (b"", "") if await self.exists(key) else None
        if header is not None:
            params["Range"] = header
        try:
            resp = await self._call("get_object", key, **params)
        except KeyNotFoundError:
            return None
        except RangeNotSatisfiable:
            return b"", ""
        body = resp["Body"]
        status = resp.get("ResponseMetadata", {}).get("HTTPStatusCode")
        whole = rng is not None and status == 200 and not resp.get("ContentRange")
        try:
            async with body:
                data = await read_body(
                    body.iter_chunks(1 << 16),
                    store=self,
                    key=key,
                    declared=resp.get("ContentLength"),
                    limit=read_limit(rng, max_size),
                    whole_for=rng if whole else None,  # the service ignored Range
                )
        except Exception as exc:
            error = self._translate(exc, key)
            if type(error) is TransientStoreError:  # the connection broke mid-body
                what = f"S3 body read failed: {type(exc).__name__}: {exc}"
                raise TruncatedReadError(what, store=self, key=key) from exc
            raise error from exc
        if rng is not None and not whole:
            data = ranged_part(self, key, rng, data, resp.get("ContentRange"))
        elif rng is None:  # botocore checks crc32c only with awscrt: checked here, as lean
            headers = resp.get("ResponseMetadata", {}).get("HTTPHeaders", {})
            check_checksum(self, key, whole_response(data, headers))
        return data, str(resp.get("ETag", ""))

    async def get(
        self, key: str, byte_range: RangeRequest | None = None, *, max_size: int | None = None
    ) -> bytes | None:
        lean = (await self._clients()).reader
        if lean is not None:
            route = lean.route(self._bucket)
            if route is not None:
                return await self._lean_get(lean, route, key, byte_range, max_size)
        if lean is None:
            got = await self._read_object(key, byte_range, max_size)
        else:
            with lean.watch() as sent:
                got = await self._read_object(key, byte_range, max_size)
            if got is not None:  # botocore just sent this GET: learn its route
                lean.learn(self._bucket, self._full(key), sent)
        return None if got is None else got[0]

    async def _lean_get(
        self,
        lean: LeanReader,
        route: Route,
        key: str,
        rng: RangeRequest | None,
        max_size: int | None,
    ) -> bytes | None:
        """:meth:`get` over the lean path, with botocore's semantics (see :mod:`._s3_lean`);
        the body within the range's length or ``max_size``."""
        full = self._full(key)
        header = None if rng is None else http_range_header(rng)
        if rng is not None and header is None:  # empty range: only existence matters
            return b"" if await self.exists(key) else None
        limit = read_limit(rng, max_size)
        try:
            resp = await lean.get(route, full, header, max_body=limit, describe=(self, key))
        except BodyTooLargeError as exc:
            raise too_large(self, key, exc.size, exc.limit) from exc
        except Exception as exc:
            if isinstance(exc, IncompleteBodyError | sdk().aiohttp.ClientPayloadError):
                # broke mid-body
                what = f"S3 body read failed: {type(exc).__name__}: {exc}"
                raise TruncatedReadError(what, store=self, key=key) from exc
            raise self._translate(exc, key) from exc
        status = resp.status
        if status in (200, 206):
            data = resp.body
            if resp.content_length is not None and len(data) != resp.content_length:
                raise TruncatedReadError(
                    f"S3 body has {len(data)} bytes, expected {resp.content_length}",
                    store=self,
                    key=key,
                )
            check_checksum(self, key, resp)  # damaged on its way: retried
            if rng is not None and status == 200 and not resp.content_range:
                data = data[range_to_slice(rng, len(data))]  # the service ignored Range
            elif rng is not None:
                data = ranged_part(self, key, rng, data, resp.content_range)
            return data
        if status == 416:
            return b""
        code, message = error_code(resp.body)
        if status == 404 and code in ("", "NoSuchKey", "NotFound"):
            return None
        raise self._from_code(code, status, message, key)

    async def get_ranges(self, key: str, ranges: Sequence[RangeRequest]) -> list[bytes] | None:
        """Concurrent ranged GETs; ``None`` if the key is missing."""
        self._key(key)
        parts = await gather_all(*(self.get(key, rng) for rng in ranges))
        if any(part is None for part in parts):
            return None
        return [part for part in parts if part is not None]

    async def get_versioned(self, key: str, *, max_size: int | None = None) -> Versioned | None:
        self._require_conditional(key)
        got = await self._read_object(key, None, max_size)
        if got is not None and not got[1]:
            raise UnsupportedOperationError("the service sent no ETag", store=self, key=key)
        return None if got is None else Versioned(got[0], got[1])

    async def _head(self, key: str) -> dict[str, Any] | None:
        try:
            head: dict[str, Any] = await self._call("head_object", key, Key=self._full(key))
        except KeyNotFoundError:
            return None
        return head

    async def exists(self, key: str) -> bool:
        return await self._head(key) is not None

    async def getsize(self, key: str) -> int:
        head = await self._head(key)
        if head is None:
            raise KeyNotFoundError("no such key", store=self, key=key)
        return int(head["ContentLength"])

    # -- writes -------------------------------------------------------------------------
    async def _put(self, key: str, value: bytes, conditions: Mapping[str, str]) -> None:
        """Store ``value`` (``conditions``: ``if-none-match``/``if-match`` headers): over
        the lean path once it knows the bucket's route (in parts from the multipart
        threshold on), else through botocore, which shows the lean path the way."""
        full = self._full(key)
        self._check_writable(key)
        body = value if isinstance(value, bytes) else bytes(value)
        clients = await self._clients()
        writer = clients.writer
        route = None if writer is None else writer.route(self._bucket)
        # conditional writes go in one PUT up to S3's limit: a service that honours the
        # conditions on PutObject may not on CompleteMultipartUpload (moto ignores If-Match)
        limit = SINGLE_PUT_LIMIT if conditions else self._multipart.threshold
        multipart = len(body) >= limit
        if writer is not None and route is None and multipart:
            with contextlib.suppress(KeyNotFoundError):  # learn the route from a HEAD
                await self._call_learning(clients, "head_object", key, Key=full)
            route = writer.route(self._bucket)
        if writer is None or route is None:
            params = {_BOTOCORE_CONDITIONS[name]: value for name, value in conditions.items()}
            await self._call_learning(
                clients,
                "put_object",
                key,
                Key=full,
                Body=body,
                ChecksumCRC32C=crc32c_b64(body),
                **params,
            )
        elif multipart:
            await writer.upload(
                route,
                full,
                body,
                config=self._multipart,
                fail=lambda problem: self._lean_failure(problem, key),
                conditions=conditions,
            )
        else:
            try:
                resp = await writer.put(route, full, body, conditions=conditions)
            except Exception as exc:
                raise self._translate(exc, key) from exc
            if resp.status != 200:
                raise self._answer_error(resp, key)

    def _lean_failure(self, problem: HTTPResponse | Exception, key: str) -> StoreError:
        if isinstance(problem, Exception):
            return self._translate(problem, key)
        return self._answer_error(problem, key)

    async def set(self, key: str, value: bytes) -> None:
        await self._put(key, value, {})

    async def set_if_not_exists(self, key: str, value: bytes) -> bool:
        if not self._conditional:
            return await self._set_if_absent_best_effort(key, value)
        try:
            await self._put(key, value, {"if-none-match": "*"})
        except ConditionalRequestConflict as exc:
            raise TransientStoreError(
                "a concurrent conditional write to this key is in flight; retry",
                store=self,
                key=key,
            ) from exc
        except PreconditionFailedError:
            return False
        return True

    async def _set_if_absent_best_effort(self, key: str, value: bytes) -> bool:
        self._check_writable(key)
        if not self._warned_non_atomic:
            self._warned_non_atomic = True
            logger.warning(
                "%s: conditional_writes=False, set_if_not_exists is a non-atomic "
                "check-then-write; concurrent creators may overwrite each other",
                self,
            )
        if await self.exists(key):
            return False
        await self._put(key, value, {})
        return True

    async def set_if_version(self, key: str, value: bytes, version: str | None) -> None:
        self._require_conditional(key)
        if version is None:
            await self._put(key, value, {"if-none-match": "*"})
            return
        if not version:  # an empty If-Match would be dropped: an unconditional write
            raise PreconditionFailedError(f"invalid version {version!r}", store=self, key=key)
        try:
            await self._put(key, value, {"if-match": version})
        except KeyNotFoundError as exc:
            raise PreconditionFailedError(
                "the value was deleted since it was read", store=self, key=key
            ) from exc

    def _require_conditional(self, key: str) -> None:
        if not self._conditional:
            raise UnsupportedOperationError(
                "conditional writes are disabled for this S3 service (conditional_writes=False)",
                store=self,
                key=key,
            )

    async def _delete(self, key: str, if_match: str | None) -> None:
        """``DeleteObject`` (``if_match``: only if the ETag is still that); a missing key
        is no error, unless a version was expected (:class:`KeyNotFoundError`)."""
        full = self._full(key)
        self._check_writable(key)
        clients = await self._clients()
        writer = clients.writer
        route = None if writer is None else writer.route(self._bucket)
        if writer is None or route is None:
            params = {} if if_match is None else {"IfMatch": if_match}
            try:
                await self._call_learning(clients, "delete_object", key, Key=full, **params)
            except KeyNotFoundError:
                if if_match is not None:
                    raise
            return
        try:
            resp = await writer.delete(route, full, if_match=if_match)
        except Exception as exc:
            raise self._translate(exc, key) from exc
        if resp.status not in (200, 204):
            error = self._answer_error(resp, key)
            if if_match is not None or not isinstance(error, KeyNotFoundError):
                raise error

    async def delete(self, key: str) -> None:
        await self._delete(key, None)

    async def delete_if_version(self, key: str, version: str) -> None:
        self._require_conditional(key)
        if not self._conditional_deletes:
            raise UnsupportedOperationError(
                "conditional deletes are not enabled for this S3 service "
                "(conditional_deletes=False)",
                store=self,
                key=key,
            )
        if not version:  # an empty If-Match would be dropped: an unconditional delete
            raise PreconditionFailedError(f"invalid version {version!r}", store=self, key=key)
        try:
            await self._delete(key, version)
        except KeyNotFoundError as exc:
            raise PreconditionFailedError(
                "the value was deleted since it was read", store=self, key=key
            ) from exc

    async def delete_prefix(self, prefix: str) -> None:
        """Remove every key under ``prefix`` with ``DeleteObjects`` batches of 1000."""
        prefix = self._list_prefix_arg(prefix)
        self._check_writable(prefix or None)
        keys = [self._root + k async for k in self.list_prefix(prefix)]
        for start in range(0, len(keys), _DELETE_BATCH):
            batch = keys[start : start + _DELETE_BATCH]
            resp = await self._call(
                "delete_objects",
                prefix,
                Delete={"Objects": [{"Key": k} for k in batch], "Quiet": True},
            )
            for err in resp.get("Errors") or []:
                if err.get("Code") != "NoSuchKey":
                    bad = str(err.get("Key", ""))[len(self._root) :]
                    raise self._from_code(str(err.get("Code", "")), 0, err.get("Message"), bad)

    # -- listing ----------------------------------------------------------------------------
    async def _pages(self, prefix: str, delimiter: str | None) -> AsyncGenerator[dict[str, Any]]:
        params: dict[str, Any] = {"Prefix": prefix, "MaxKeys": 1000}
        if delimiter:
            params["Delimiter"] = delimiter
        while True:
            page: dict[str, Any] = await self._call("list_objects_v2", prefix or None, **params)
            yield page
            token = page.get("NextContinuationToken")
            if not page.get("IsTruncated") or not token:
                return
            params["ContinuationToken"] = token

    async def list_prefix(self, prefix: str) -> AsyncIterator[str]:
        prefix = self._list_prefix_arg(prefix)
        cut = len(self._root)
        async for page in self._pages(self._root + prefix, None):
            for item in page.get("Contents") or []:
                if not item["Key"].endswith("/"):  # skip other tools' "directory" markers
                    yield item["Key"][cut:]

    async def _holds_values(self, full_prefix: str) -> bool:
        async with contextlib.aclosing(self._pages(full_prefix, None)) as pages:
            async for page in pages:
                if any(not item["Key"].endswith("/") for item in page.get("Contents") or []):
                    return True
        return False

    async def list_dir(self, prefix: str) -> list[str]:
        base = self._root + self._prefix(prefix)
        cut = len(base)
        children: set[str] = set()
        prefixes: set[str] = set()
        async for page in self._pages(base, "/"):
            prefixes.update(common["Prefix"] for common in page.get("CommonPrefixes") or [])
            children.update(item["Key"][cut:] for item in page.get("Contents") or [])
        if self._verify_dir_prefixes:  # drop prefixes whose values are all gone
            sem = asyncio.Semaphore(16)

            async def live(full: str) -> bool:
                async with sem:
                    return await self._holds_values(full)

            ordered = sorted(prefixes)
            alive = await gather_all(*(live(full) for full in ordered))
            prefixes = {full for full, ok in zip(ordered, alive, strict=True) if ok}
        children.update(full[cut:].rstrip("/") for full in prefixes)
        children.discard("")
        return sorted(children)

    # -- lifecycle ----------------------------------------------------------------------
    async def aclose(self) -> None:
        """Release this store's reference to its shared client(s). Idempotent.

        A store may still be used afterwards; it then reconnects.
        """
        leases = list(self._entries.values())
        self._entries.clear()
        self._closed = True
        await client_pool.release_all(leases)


_OPTIONS: dict[str, tuple[type, ...]] = {
    "endpoint_url": (str,),
    "region_name": (str,),
    "aws_access_key_id": (str,),
    "aws_secret_access_key": (str,),
    "aws_session_token": (str,),
    "profile": (str,),
    "anon": (bool,),
    "addressing_style": (str,),
    "connect_timeout": (int, float),
    "read_timeout": (int, float),
    "conditional_writes": (bool,),
    "conditional_deletes": (bool,),
    "verify_dir_prefixes": (bool,),
    "lean_reads": (bool,),
    "lean_writes": (bool,),
    "multipart_threshold": (int,),
    "multipart_part_size": (int,),
    "limits": (StoreLimits, Mapping),
}


def s3_store_from_url(url: str, *, read_only: bool, storage_options: Mapping[str, Any]) -> S3Store:
    """``s3://bucket[/prefix]``: an :class:`S3Store`.

    ``storage_options``: ``endpoint_url``, ``region_name``,
    ``aws_access_key_id``, ``aws_secret_access_key``, ``aws_session_token``,
    ``profile``, ``anon``, ``addressing_style`` (``"auto"``, ``"path"``,
    ``"virtual"``), ``connect_timeout``, ``read_timeout`` (seconds),
    ``conditional_writes`` (whether the service honours ``If-Match`` /
    ``If-None-Match``), ``conditional_deletes`` (whether it honours ``If-Match``
    on ``DeleteObject``; default: on AWS only), ``verify_dir_prefixes`` (for
    services such as SeaweedFS that keep listing a "directory" for a while after
    its last value was deleted: ``list_dir`` then checks each listed prefix),
    ``lean_reads`` / ``lean_writes`` (default ``True``: value GETs / PUTs and
    DELETEs bypass botocore once it has shown the route, see
    :mod:`asyncarr.stores._s3_lean` and :mod:`asyncarr.stores._s3_write`),
    ``multipart_threshold`` / ``multipart_part_size`` (bytes: values from the
    threshold on are uploaded in parts of that size) and
    ``limits`` (a :class:`~asyncarr.config.StoreLimits` or a mapping of its fields).
    ``None`` values mean "not given".
    """
    parts = urlsplit(url)
    if parts.scheme.lower() != "s3":
        raise ConfigError(f"not an s3:// URL: {url!r}")
    if parts.query or parts.fragment or "@" in parts.netloc or ":" in parts.netloc:
        raise ConfigError(
            f"s3:// URLs are s3://bucket/prefix, without credentials, port, query or "
            f"fragment; put options in storage_options (got {url!r})"
        )
    if not parts.netloc:
        raise ConfigError(f"S3 URL needs a bucket, e.g. s3://bucket/prefix (got {url!r})")
    unknown = sorted(set(storage_options) - set(_OPTIONS))
    if unknown:
        raise ConfigError(
            f"unknown storage_options for s3://: {unknown}; known: {sorted(_OPTIONS)}"
        )
    options: dict[str, Any] = {}
    for name, value in storage_options.items():
        if value is None:
            continue
        types = _OPTIONS[name]
        if not isinstance(value, types) or (bool not in types and isinstance(value, bool)):
            expected = " or ".join(t.__name__ for t in types)
            raise ConfigError(
                f"storage_options[{name!r}] must be {expected}, got {type(value).__name__}"
            )
        options[name] = value
    return S3Store(parts.netloc, parts.path.lstrip("/"), read_only=read_only, **options)
