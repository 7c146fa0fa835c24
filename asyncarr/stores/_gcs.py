"""Google Cloud Storage store on ``gcloud-aio-storage`` (the ``gcs`` extra).

URLs are ``gs://bucket/prefix`` (``gcs://`` is an alias); the JSON API does it all.
Reads are ``alt=media`` downloads with a ``Range`` header, their length checked
against ``Content-Length``/``Content-Range`` (short: :class:`TruncatedReadError`).
Writes are single-request multipart uploads (one atomic request each);
conditional writes send ``ifGenerationMatch`` (``0``: only if absent) and a 412
becomes :class:`PreconditionFailedError`. :meth:`GCSStore.get_versioned` takes
the data and the ``x-goog-generation`` header from the *same* response.

One aiohttp session (and ``Storage`` client) is shared per (endpoint,
credentials) and event loop, its pool sized to ``limits.max_concurrency``;
it is reference-counted (:mod:`asyncarr.stores._client_pool`) and closed, on
its own loop, with the last store using it.
"""

from __future__ import annotations

import asyncio
import base64
import copy
import io
import os
import re
import weakref
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar

import aiohttp
import crc32c

from asyncarr._tasks import gather_all
from asyncarr._types import (
    ByteRange,
    OffsetRange,
    RangeRequest,
    SuffixRange,
    Versioned,
)
from asyncarr.abc import Store, normalize_prefix
from asyncarr.config import StoreLimits
from asyncarr.errors import (
    AsyncarrError,
    ConfigError,
    InvalidKeyError,
    KeyNotFoundError,
    MissingExtraError,
    PermissionDeniedError,
    PreconditionFailedError,
    StoreError,
    ThrottledError,
    TransientStoreError,
    TruncatedReadError,
)
from asyncarr.stores._bodies import (
    bounded_session_options,
    check_digest,
    ranged_part,
    read_response,
)
from asyncarr.stores._client_pool import Lease, LoopClientPool
from asyncarr.stores._gcs_auth import (
    NoToken,
    one_attempt_token,
    resolve_credentials,
)
from asyncarr.stores._tls import certificate_failure

if TYPE_CHECKING:
    from gcloud.aio.storage import Storage

__all__ = ["GCSStore", "gcs_store_from_url"]

T = TypeVar("T")

DEFAULT_ENDPOINT = "https://storage.googleapis.com"
EMULATOR_ENV = "STORAGE_EMULATOR_HOST"
_SCOPES = ["https://www.googleapis.com/auth/devstorage.read_write"]
_OCTET = "application/octet-stream"
_BUCKET_RE = re.compile(r"^[a-z0-9][a-z0-9._-]{1,220}[a-z0-9]$")
_DELETE_WORKERS = 32
_DAMAGED_UPLOADS = 3  # a stored object damaged on its way is replaced at most this often


def _sdk() -> tuple[Any, Any]:
    """``(Storage, Token)`` from gcloud-aio, imported on first use."""
    try:
        from gcloud.aio.auth import Token
        from gcloud.aio.storage import Storage
    except ImportError as exc:
        raise MissingExtraError("The gs:// store", "gcs", "gcloud-aio-storage") from exc
    return Storage, Token


class _AnswerLost(TransientStoreError):
    """An upload was sent but its answer could not be read (cut short, not JSON): it may
    or may not have been applied (internal)."""


class _SetupError(Exception):
    """Creating a client failed after its session (``args[0]``) was opened."""


# -- shared clients (one per endpoint, credentials and event loop) --------------------------


@dataclass(eq=False)
class _Client:
    """An aiohttp session plus the gcloud-aio ``Storage`` bound to it."""

    session: aiohttp.ClientSession
    storage: Storage
    token: Any


async def _close_client(client: _Client) -> None:
    await client.session.close()


_ClientKey = tuple[str, tuple[str, str]]
_Lease = Lease[_ClientKey, _Client]
_clients: LoopClientPool[_ClientKey, _Client] = LoopClientPool(
    "GCS", close=_close_client, is_usable=lambda client: not client.session.closed
)


# -- error translation and ranges ------------------------------------------------------------


def _short(text: str, limit: int = 300) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[:limit] + "..."


_STATUS_ERRORS: dict[int, type[StoreError]] = {
    401: PermissionDeniedError,
    403: PermissionDeniedError,
    408: TransientStoreError,
    412: PreconditionFailedError,
    429: ThrottledError,
}


def _translate(exc: Exception, store: GCSStore, key: str | None, action: str) -> StoreError:
    """Map an aiohttp / gcloud-aio exception onto the asyncarr error tree (a refused
    certificate is permanent: a plain :class:`StoreError`)."""
    cls: type[StoreError] = StoreError
    what = f"{type(exc).__name__}: {_short(str(exc))}"
    refused = certificate_failure(exc)
    if refused is not None:
        what = f"TLS certificate refused: {_short(refused)}"
    elif isinstance(exc, aiohttp.ClientResponseError):
        what = f"HTTP {exc.status} {_short(exc.message)}"
        cls = _STATUS_ERRORS.get(exc.status, TransientStoreError if exc.status >= 500 else cls)
        if exc.status == 400 and "crc32c" in exc.message.lower():  # an upload damaged on its way
            cls = TransientStoreError
    elif isinstance(exc, aiohttp.ClientPayloadError):
        cls, what = TruncatedReadError, f"response body cut short ({what})"
    elif isinstance(exc, TimeoutError):
        cls, what = TransientStoreError, "timed out"
    elif isinstance(exc, aiohttp.ClientConnectionError | OSError):
        cls, what = TransientStoreError, f"connection to {store.endpoint} failed ({what})"
    return cls(f"{action} failed: {what}", store=store, key=key)


def _range_header(rng: RangeRequest | None) -> str | None:
    """The ``Range`` header for ``rng``; ``None`` when the whole value is wanted."""
    if isinstance(rng, ByteRange):
        return f"bytes={rng.start}-{rng.end - 1}"
    if isinstance(rng, SuffixRange):
        return f"bytes=-{rng.length}"
    return f"bytes={rng.offset}-" if isinstance(rng, OffsetRange) and rng.offset else None


# -- the store ------------------------------------------------------------------------------


class GCSStore(Store):
    """Keys stored as objects ``<prefix><key>`` in one Google Cloud Storage bucket.

    ``endpoint`` is the JSON API root (default ``https://storage.googleapis.com``);
    when it is not given, ``STORAGE_EMULATOR_HOST`` is honoured the way
    gcloud-aio-storage reads it (``http://`` is added when missing).
    Requests are anonymous when ``anon=True``, or by default when an endpoint
    (explicit or from ``STORAGE_EMULATOR_HOST``) is used without credentials.
    Otherwise ``credentials`` (a JSON key file path, a dict, or a
    ``gcloud.aio.auth.Token``), ``GOOGLE_APPLICATION_CREDENTIALS`` or the
    default Google credentials chain provide access tokens.

    ``timeout`` bounds one request in seconds (default
    ``limits.retry.request_timeout``); ``connect_timeout`` bounds opening a
    TCP connection.
    """

    def __init__(
        self,
        bucket: str,
        prefix: str = "",
        *,
        endpoint: str | None = None,
        anon: bool | None = None,
        credentials: object = None,
        project: str | None = None,
        timeout: float | None = None,
        connect_timeout: float | None = 30.0,
        read_only: bool = False,
        limits: StoreLimits | None = None,
    ) -> None:
        super().__init__(read_only=read_only, limits=limits)
        if (
            not isinstance(bucket, str)
            or not _BUCKET_RE.match(bucket)
            or any(len(part) > 63 or not part for part in bucket.split("."))
        ):
            raise ConfigError(
                f"invalid GCS bucket name {bucket!r}: expected 3-63 lowercase letters, digits, "
                "'-', '_' or '.', starting and ending with a letter or digit"
            )
        self._bucket, self._root = bucket, ""
        self._endpoint, implicit_anon = _resolve_endpoint(endpoint)
        try:
            self._root = normalize_prefix(prefix)
        except InvalidKeyError as exc:
            raise ConfigError(f"invalid GCS prefix {prefix!r}: {exc}") from exc
        if anon is None:
            anon = implicit_anon and credentials is None
        if anon and credentials is not None:
            raise ConfigError("GCS: anon=True cannot be combined with credentials")
        self._anon = bool(anon)
        _sdk()  # a missing extra fails here, not at the first request
        self._credentials = resolve_credentials(credentials, self._anon)
        self._project = project
        for name, value in (("timeout", timeout), ("connect_timeout", connect_timeout)):
            if value is not None and (not isinstance(value, int | float) or value <= 0):
                raise ConfigError(f"GCS {name} must be a positive number of seconds, got {value!r}")
        total = timeout if timeout is not None else self.limits.retry.request_timeout
        self._request_timeout: Any = aiohttp.ClientTimeout(
            total=total, sock_connect=connect_timeout
        )
        self._leases: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _Lease] = (
            weakref.WeakKeyDictionary()
        )

    # -- identity ---------------------------------------------------------------------
    @property
    def bucket(self) -> str:
        return self._bucket

    @property
    def prefix(self) -> str:
        """The object-name prefix of the store's root (``""`` or ``"a/b/"``)."""
        return self._root

    @property
    def endpoint(self) -> str:
        return self._endpoint

    @property
    def project(self) -> str | None:
        return self._project

    @property
    def anonymous(self) -> bool:
        return self._anon

    @property
    def url(self) -> str:
        return f"gs://{self._bucket}/{self._root}"

    @property
    def endpoint_key(self) -> str:
        return f"gcs:{self._endpoint}"

    @property
    def location(self) -> str:
        return f"gcs:{self._endpoint}/{self._bucket}/{self._root}".rstrip("/")

    @property
    def supports_conditional_writes(self) -> bool:
        return True

    def __repr__(self) -> str:
        flags = "" if self._endpoint == DEFAULT_ENDPOINT else f", endpoint={self._endpoint}"
        flags += ", anonymous" if self._anon else ""
        flags += ", read-only" if self.read_only else ""
        return f"GCSStore({self.url}{flags})"

    __str__ = __repr__

    def with_read_only(self, read_only: bool = True) -> GCSStore:
        """The same bucket, prefix, endpoint and credentials in another mode."""
        view = copy.copy(self)
        view._read_only, view._closed = read_only, False
        view._leases = weakref.WeakKeyDictionary()
        return view

    # -- client plumbing --------------------------------------------------------------
    @property
    def _client_key(self) -> _ClientKey:
        return (self._endpoint, self._credentials.cache_key)

    def _make_client(self) -> _Client:
        """A new pooled client (sync, so that acquiring one never yields to the loop)."""
        storage_cls, token_cls = _sdk()
        connector = aiohttp.TCPConnector(limit=self.limits.max_concurrency, ttl_dns_cache=300)
        session = aiohttp.ClientSession(
            connector=connector, timeout=self._request_timeout, **bounded_session_options()
        )
        creds = self._credentials
        try:
            token: Any
            if creds.kind == "anonymous":
                token = NoToken()
            elif creds.kind == "token":
                token = creds.source
            else:
                service: Any = creds.source
                if creds.kind == "info":
                    service = io.StringIO(str(creds.source))
                token = one_attempt_token(token_cls)(
                    service_file=service, session=session, scopes=_SCOPES
                )
            storage = storage_cls(
                session=session, token=token, api_root=self._endpoint, api_is_dev=self._anon
            )
        except Exception as exc:
            raise _SetupError(session) from exc
        return _Client(session, storage, token)

    async def _client(self) -> _Client:
        if self._closed:
            raise StoreError("store is closed", store=self)
        loop = asyncio.get_running_loop()
        lease = stale = self._leases.get(loop)
        if lease is None or lease.client.session.closed:
            try:
                lease = _clients.acquire_nowait(self._client_key, self._make_client)
            except _SetupError as exc:
                await exc.args[0].close()
                cause = exc.__cause__
                kind = self._credentials.kind
                msg = f"cannot set up GCS credentials ({kind}): {type(cause).__name__}"
                raise ConfigError(msg) from cause
            self._leases[loop] = lease
            if stale is not None:  # its session was closed under it: give it back
                await _clients.release(stale)
        return lease.client

    async def aclose(self) -> None:
        """Release this store's share of the pooled sessions. Idempotent."""
        if self._closed:
            return
        self._closed = True
        leases = list(self._leases.values())
        self._leases.clear()
        await _clients.release_all(leases)

    async def _call(
        self,
        key: str | None,
        action: str,
        fn: Callable[[Storage], Awaitable[T]],
        *,
        on_404: str = "none",
    ) -> T | None:
        """Run ``fn`` against the SDK; translate failures; 404 gives ``None``.

        ``on_404="bucket"`` turns a 404 into "the bucket does not exist" (for
        listings and uploads, where the object name cannot be the cause).
        """
        client = await self._client()
        if not self._anon:
            await self._ensure_token(client, key)
        try:
            return await fn(client.storage)
        except AsyncarrError:
            raise
        except aiohttp.ClientResponseError as exc:
            if exc.status == 404:
                if on_404 == "bucket" or "bucket does not exist" in exc.message.lower():
                    raise StoreError(
                        f"GCS bucket {self._bucket!r} does not exist at {self._endpoint}",
                        store=self,
                        key=key,
                    ) from exc
                return None
            raise _translate(exc, self, key, action) from exc
        except Exception as exc:
            raise _translate(exc, self, key, action) from exc

    async def _ensure_token(self, client: _Client, key: str | None) -> None:
        try:
            await client.token.get()
        except Exception as exc:
            status = exc.status if isinstance(exc, aiohttp.ClientResponseError) else 0
            unreachable = status == 0 and isinstance(
                exc, aiohttp.ClientConnectionError | aiohttp.ClientPayloadError | OSError
            )  # (TimeoutError is an OSError)
            if status == 429 or status >= 500 or unreachable or certificate_failure(exc):
                raise _translate(exc, self, key, "fetching a GCS access token") from exc
            raise PermissionDeniedError(
                f"could not obtain a GCS access token ({self._credentials.kind} credentials): "
                + (f"HTTP {status}" if status else type(exc).__name__),
                store=self,
                key=key,
            ) from exc

    def _object(self, key: str) -> str:
        return self._root + self._key(key)

    # -- reads ------------------------------------------------------------------------
    async def _download(
        self, key: str, rng: RangeRequest | None, max_size: int | None
    ) -> tuple[int, dict[str, str], bytes] | None:
        """``(status, headers, body)`` of an ``alt=media`` GET, the body read within the
        range's length or ``max_size`` (:mod:`._bodies`): for a ``200`` to a ranged
        request (a server that ignores ``Range``), only the range is kept."""
        name = self._object(key)
        headers = {"Accept-Encoding": "identity"}
        if (range_header := _range_header(rng)) is not None:
            headers["Range"] = range_header

        async def fetch(storage: Storage) -> tuple[int, dict[str, str], bytes]:
            try:
                stream = await storage.download_stream(
                    self._bucket, name, headers=headers, timeout=self._request_timeout
                )
            except aiohttp.ClientResponseError as exc:
                if exc.status == 416:  # the value exists but the range lies past its end
                    return 416, {}, b""
                raise
            async with stream as resp:
                found = {k.lower(): v for k, v in resp.headers.items()}
                asked = rng if range_header is not None else None
                body = await read_response(resp, store=self, key=key, rng=asked, max_size=max_size)
                return resp.status, found, body

        return await self._call(key, "download", fetch)

    def _cut(
        self, key: str, rng: RangeRequest | None, status: int, headers: dict[str, str], body: bytes
    ) -> bytes:
        """The requested bytes of an answer, checked against the range asked for and its
        ``Content-Range``, and a whole value against the ``x-goog-hash`` sent with it."""
        if status == 416:  # the value exists but the range starts past its end
            return b""
        if status == 200:
            if rng is None or _range_header(rng) is None:
                self._verify_hash(key, headers, body)
            return body  # (for a ranged request: only the range was kept)
        if status != 206 or rng is None:
            raise StoreError(f"unexpected download answer: HTTP {status}", store=self, key=key)
        if not body and headers.get("content-range", "").endswith("/0"):
            return b""  # fake-gcs-server answers "bytes 0--1/0" for an empty object
        return ranged_part(self, key, rng, body, headers.get("content-range"))

    def _verify_hash(self, key: str, headers: dict[str, str], body: bytes) -> None:
        """Check a whole object's bytes against the ``x-goog-hash`` sent with them (crc32c,
        else md5); a mismatch (damaged on its way) is a :class:`TruncatedReadError`, retried.
        Skipped where the bytes are not the stored ones (a transcoded gzip object)."""
        encodings = (headers.get("content-encoding"), headers.get("x-goog-stored-content-encoding"))
        if any(e not in (None, "", "identity") for e in encodings):
            return
        sent = dict(
            part.strip().split("=", 1)
            for part in headers.get("x-goog-hash", "").split(",")
            if "=" in part
        )
        for algorithm in ("crc32c", "md5"):  # crc32c: the cheaper (and composites have no md5)
            if algorithm in sent:
                check_digest(self, key, algorithm, sent[algorithm], body)
                return

    async def get(
        self, key: str, byte_range: RangeRequest | None = None, *, max_size: int | None = None
    ) -> bytes | None:
        if isinstance(byte_range, ByteRange | SuffixRange) and byte_range.length == 0:
            return b"" if await self._metadata(key) is not None else None
        got = await self._download(key, byte_range, max_size)
        if got is None:
            return None
        return self._cut(key, byte_range, *got)

    async def get_ranges(self, key: str, ranges: Sequence[RangeRequest]) -> list[bytes] | None:
        """Several ranges of one value, fetched concurrently; ``None`` if missing."""
        parts = await gather_all(*(self.get(key, rng) for rng in ranges))
        if any(p is None for p in parts):
            return None
        return [p for p in parts if p is not None]

    async def get_versioned(self, key: str, *, max_size: int | None = None) -> Versioned | None:
        """The value and its generation, both from one download response."""
        got = await self._download(key, None, max_size)
        if got is None:
            return None
        status, headers, body = got
        data = self._cut(key, None, status, headers, body)
        generation = headers.get("x-goog-generation")
        if not generation:
            raise StoreError("the server did not report the object generation", store=self, key=key)
        return Versioned(data, generation)

    async def _metadata(self, key: str) -> dict[str, Any] | None:
        name = self._object(key)
        return await self._call(
            key,
            "metadata",
            lambda s: s.download_metadata(self._bucket, name, timeout=self._request_timeout),
        )

    async def exists(self, key: str) -> bool:
        return await self._metadata(key) is not None

    async def getsize(self, key: str) -> int:
        meta = await self._metadata(key)
        if meta is None:
            raise KeyNotFoundError("no such key", store=self, key=key)
        size = str(meta.get("size", ""))
        if not size.isdigit():
            raise StoreError(f"object metadata has no valid size: {size!r}", store=self, key=key)
        return int(size)

    # -- writes -----------------------------------------------------------------------
    async def _upload(self, key: str, value: bytes, generation: str | None) -> None:
        """One single-request upload, guarded by ``generation`` (``"0"``: only if absent).

        The upload carries the value's crc32c (GCS refuses a body damaged on its way), and
        the object the answer describes is checked against it too (fake-gcs-server does
        not refuse): a damaged object that was stored is replaced at once, guarded by its
        own generation, so a conditional write that landed damaged still counts as ours.
        An answer that cannot be read is resolved (:meth:`_applied`) or retried.
        """
        name = self._object(key)
        self._check_writable(key)
        data = bytes(value)
        ours = base64.b64encode(crc32c.crc32c(data).to_bytes(4, "big")).decode()
        guard = generation
        for _repair in range(_DAMAGED_UPLOADS):
            try:
                answer = await self._call(
                    key, "upload", self._sender(key, name, data, ours, guard), on_404="bucket"
                )
            except _AnswerLost:
                # unconditional: retried as is (idempotent); conditional: applied or not?
                if guard is not None and await self._applied(key, ours, guard):
                    return
                raise
            if not isinstance(answer, dict) or answer.get("crc32c") in (None, ours):
                return
            guard = str(answer.get("generation") or "") or None  # replace what landed
        raise TransientStoreError(
            f"the upload arrived damaged {_DAMAGED_UPLOADS} times", store=self, key=key
        )

    def _sender(
        self, key: str, name: str, data: bytes, crc: str, generation: str | None
    ) -> Callable[[Storage], Awaitable[Any]]:
        params = {} if generation is None else {"ifGenerationMatch": generation}

        async def send(storage: Storage) -> Any:
            # metadata forces a multipart upload: one request, and (unlike a media
            # upload) fake-gcs-server honours ifGenerationMatch on it.
            try:
                return await storage.upload(
                    self._bucket,
                    name,
                    data,
                    content_type=_OCTET,
                    parameters=dict(params),
                    metadata={"Content-Type": _OCTET, "crc32c": crc},
                    force_resumable_upload=False,
                    timeout=self._request_timeout,
                )
            except (ValueError, aiohttp.ClientPayloadError) as exc:  # (JSONDecodeError)
                raise _AnswerLost(
                    f"the upload's answer could not be read ({type(exc).__name__}); it may "
                    "have been applied",
                    store=self,
                    key=key,
                ) from exc

        return send

    async def _applied(self, key: str, crc: str, generation: str) -> bool:
        """Whether a conditional upload whose answer was lost took effect: the object now
        holds these bytes (their crc32c ``crc``) at a generation other than the one the
        upload was guarded by (``"0"``: absent). Otherwise it is retried, and the retry's
        own precondition tells."""
        meta = await self._metadata(key)
        if meta is None:
            return False
        return meta.get("crc32c") == crc and str(meta.get("generation")) != generation

    async def set(self, key: str, value: bytes) -> None:
        await self._upload(key, value, None)

    async def set_if_not_exists(self, key: str, value: bytes) -> bool:
        try:
            await self._upload(key, value, "0")
        except PreconditionFailedError:
            return False
        return True

    async def set_if_version(self, key: str, value: bytes, version: str | None) -> None:
        """Write only if the object's generation is still ``version`` (``None``: absent)."""
        if version is not None and not (isinstance(version, str) and version.isdigit()):
            raise PreconditionFailedError(
                f"version {version!r} is not a GCS generation number", store=self, key=key
            )
        await self._upload(key, value, "0" if version is None else version)

    async def delete(self, key: str) -> None:
        self._check_writable(key)
        await self._delete_name(self._object(key), key)

    async def _delete_name(self, name: str, key: str) -> None:
        await self._call(
            key, "delete", lambda s: s.delete(self._bucket, name, timeout=self._request_timeout)
        )

    async def delete_prefix(self, prefix: str) -> None:
        """Delete every object under ``prefix`` (``""``: the whole store root).

        Objects are listed first, then deleted by a few workers; "folder"
        placeholders and names that are not valid keys go as well.
        """
        prefix = self._list_prefix_arg(prefix)
        self._check_writable(prefix)
        full = self._root + prefix
        names = [
            str(i.get("name")) async for d in self._pages(full, False) for i in d.get("items", ())
        ]
        todo = iter(names)
        failure: list[BaseException] = []

        async def worker() -> None:
            for name in todo:
                if failure:
                    return
                try:
                    await self._delete_name(name, name[len(self._root) :])
                except Exception as exc:
                    failure.append(exc)
                    return

        workers = min(_DELETE_WORKERS, self.limits.max_concurrency)
        await gather_all(*(worker() for _ in range(workers)))
        if failure:
            raise failure[0]

    # -- listing ----------------------------------------------------------------------
    async def _pages(self, full_prefix: str, delimiter: bool) -> AsyncIterator[dict[str, Any]]:
        fields = "items(name),prefixes,nextPageToken" if delimiter else "items(name),nextPageToken"
        token: str | None = None
        while True:
            params = {"prefix": full_prefix, "maxResults": "1000", "fields": fields}
            params.update({"delimiter": "/"} if delimiter else {})
            params.update({"pageToken": token} if token else {})
            data = await self._call(
                full_prefix,
                "list",
                lambda s, p=params: s.list_objects(  # type: ignore[misc]
                    self._bucket, params=p, timeout=self._request_timeout
                ),
                on_404="bucket",
            )
            if not isinstance(data, dict):
                raise StoreError(
                    "the listing response is not a JSON object", store=self, key=full_prefix
                )
            yield data
            token = data.get("nextPageToken")
            if not token:
                return

    async def list_prefix(self, prefix: str) -> AsyncIterator[str]:
        prefix = self._list_prefix_arg(prefix)
        skip = len(self._root)
        async for data in self._pages(self._root + prefix, delimiter=False):
            for item in data.get("items", ()):
                rest = str(item.get("name", ""))[skip:]
                if rest and not rest.endswith("/"):  # skip "folder" placeholder objects
                    yield rest

    async def list_dir(self, prefix: str) -> list[str]:
        base = self._root + self._prefix(prefix)
        children: set[str] = set()
        async for data in self._pages(base, delimiter=True):
            names = [str(item.get("name", "")) for item in data.get("items", ())]
            names += [str(sub).rstrip("/") for sub in data.get("prefixes", ())]
            children.update(name[len(base) :] for name in names if len(name) > len(base))
        return sorted(children)


# -- URL and options ------------------------------------------------------------------------


def _resolve_endpoint(endpoint: str | None) -> tuple[str, bool]:
    """``(endpoint, implicitly_anonymous)``; reads ``STORAGE_EMULATOR_HOST`` if needed."""
    implicit = endpoint is not None
    origin = "endpoint"
    if endpoint is None:
        emulator = os.environ.get(EMULATOR_ENV)
        if emulator:
            endpoint, implicit, origin = emulator, True, EMULATOR_ENV
            if not endpoint.startswith(("http://", "https://")):
                endpoint = f"http://{endpoint}"  # what gcloud-aio-storage does, minus its warning
        else:
            return DEFAULT_ENDPOINT, False
    if not isinstance(endpoint, str) or not endpoint.startswith(("http://", "https://")):
        raise ConfigError(f"GCS {origin} must be an http:// or https:// URL, got {endpoint!r}")
    netloc = endpoint.split("://", 1)[1].split("/", 1)[0]
    if not netloc or "@" in netloc:
        raise ConfigError(f"GCS {origin} must be http(s)://host[:port] without user info")
    return endpoint.rstrip("/"), implicit


_ENDPOINT_KEYS = ("endpoint", "endpoint_url", "api_root")
_CREDENTIAL_KEYS = ("service_account_file", "token", "credentials")
_KNOWN = {
    *_ENDPOINT_KEYS,
    *_CREDENTIAL_KEYS,
    *["anon", "project", "limits", "timeout", "connect_timeout"],
}


def _parse_url(url: str) -> tuple[str, str]:
    scheme, sep, rest = url.partition("://")
    if not sep or scheme.lower() not in ("gs", "gcs"):
        raise ConfigError(f"not a GCS URL: {url!r} (expected gs://bucket/prefix)")
    bucket, _, prefix = rest.partition("/")
    if not bucket:
        raise ConfigError(f"GCS URL has no bucket: {url!r} (expected gs://bucket/prefix)")
    if "?" in rest or "#" in rest:  # as for s3:// and az:// (a URL's query and fragment)
        raise ConfigError(
            f"gs:// URLs are gs://bucket/prefix, without query or fragment; put options in "
            f"storage_options (got {url!r})"
        )
    return bucket, prefix


def gcs_store_from_url(
    url: str, *, read_only: bool, storage_options: Mapping[str, Any]
) -> GCSStore:
    """Open ``gs://bucket/prefix`` (or ``gcs://``).

    ``storage_options``: ``endpoint`` (aliases ``endpoint_url``, ``api_root``),
    ``anon`` (bool), credentials as one of ``service_account_file``,
    ``credentials`` or ``token`` (a key-file path, a dict, ``"anon"``,
    ``"google_default"`` or a ``gcloud.aio.auth.Token``), ``project``,
    ``limits`` (:class:`~asyncarr.config.StoreLimits` or a dict of its
    fields), ``timeout`` and ``connect_timeout`` (seconds). Unknown options
    raise :class:`~asyncarr.errors.ConfigError`.
    """
    bucket, prefix = _parse_url(url)
    opts = dict(storage_options)
    unknown = set(opts) - _KNOWN
    if unknown:
        raise ConfigError(
            f"unknown storage_options for gs://: {sorted(unknown)}; known: {sorted(_KNOWN)}"
        )
    endpoints = [k for k in _ENDPOINT_KEYS if opts.get(k) is not None]
    creds = [k for k in _CREDENTIAL_KEYS if opts.get(k) is not None]
    if len(endpoints) > 1:
        raise ConfigError(f"give only one of the GCS options {endpoints}")
    if len(creds) > 1:
        raise ConfigError(f"give only one of the GCS credential options {creds}")
    credentials = opts[creds[0]] if creds else None
    anon = opts.get("anon")
    if anon is not None and not isinstance(anon, bool):
        raise ConfigError(f"GCS option anon must be a bool, got {anon!r}")
    if credentials == "anon":
        if anon is False:
            raise ConfigError("GCS token='anon' contradicts anon=False")
        credentials, anon = None, True
    project = opts.get("project")
    if project is not None and not isinstance(project, str):
        raise ConfigError(f"GCS option project must be a str, got {type(project).__name__}")
    return GCSStore(
        bucket,
        prefix,
        endpoint=opts[endpoints[0]] if endpoints else None,
        anon=anon,
        credentials=credentials,
        project=project,
        timeout=opts.get("timeout"),
        connect_timeout=opts.get("connect_timeout", 30.0),
        read_only=read_only,
        limits=opts.get("limits"),
    )
