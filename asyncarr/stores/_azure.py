"""Azure Blob Storage store (``az://`` and ``abfs://`` URLs) on azure-storage-blob's aio client.

The SDK is imported lazily: opening an ``az://`` URL without the ``azure``
extra raises :class:`~asyncarr.errors.MissingExtraError`.

Design notes:

- One ``BlobServiceClient`` (with one aiohttp session whose connection pool
  is sized to :attr:`StoreLimits.max_concurrency`) is shared by every store
  with the same endpoint, credentials and pool size on the same event loop.
  A store takes a lease (:mod:`asyncarr.stores._client_pool`) lazily on first
  use and gives it back in :meth:`AzureBlobStore.aclose`; the last one out
  closes the session, on its own loop.
- The SDK's own retries are off (``retry_total=0``): asyncarr's runtime
  retries :class:`~asyncarr.errors.TransientStoreError`.
- Suffix ranges cost a HEAD (size and ETag) plus one ranged GET made with
  ``If-Match`` on that ETag. Azure has no ``bytes=-N`` form, and the only
  one-request alternative (a full GET) moves the whole blob to read, say, a
  shard index at its end.
- ``delete_prefix`` uses the Blob Batch API (256 deletes a request) and falls
  back to bounded concurrent single deletes where the endpoint refuses
  batches (Azurite, hierarchical-namespace accounts).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple, TypeVar

from asyncarr._types import (
    ByteRange,
    OffsetRange,
    RangeRequest,
    SuffixRange,
    Versioned,
    http_range_header,
)
from asyncarr.abc import Store, normalize_prefix
from asyncarr.config import StoreLimits
from asyncarr.errors import (
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
from asyncarr.stores._azure_config import (
    AzureConfig,
    check_container,
    parse_azure_url,
    resolve_config,
    scrub,
)
from asyncarr.stores._bodies import (
    bounded_session_options,
    check_digest,
    ranged_part,
    read_body,
    read_limit,
    whole_value_part,
)
from asyncarr.stores._client_pool import Lease, LoopClientPool
from asyncarr.stores._tls import certificate_failure

__all__ = ["AzureBlobStore", "azure_store_from_url"]

T = TypeVar("T")

_BATCH_SIZE = 256  # the service's limit of sub-requests per batch
_MD5_RANGE_MAX = 4 << 20  # the largest range the service sends a Content-MD5 for


class _SDK:
    """The lazily imported parts of azure-core, azure-storage-blob and aiohttp."""

    def __init__(self) -> None:
        try:
            import aiohttp
            from azure.core import MatchConditions
            from azure.core import exceptions as exc
            from azure.core.pipeline.transport import AioHttpTransport
            from azure.storage.blob._generated.models import ModifiedAccessConditions
            from azure.storage.blob.aio import BlobServiceClient
        except ImportError as error:  # pragma: no cover - only without the extra
            raise MissingExtraError(
                "the Azure Blob store", "azure", "azure-storage-blob"
            ) from error
        self.aiohttp, self.exc, self.if_match = aiohttp, exc, MatchConditions.IfNotModified
        self.AioHttpTransport, self.BlobServiceClient = AioHttpTransport, BlobServiceClient
        self.conditions = ModifiedAccessConditions
        self.errors: tuple[type[BaseException], ...] = (
            exc.AzureError,
            aiohttp.ClientError,
            OSError,
        )
        self.truncated = (exc.IncompleteReadError, aiohttp.ClientPayloadError)
        self.transient = (exc.ServiceRequestError, exc.ServiceResponseError, *self.errors[1:])


@functools.cache
def _sdk() -> _SDK:
    return _SDK()


# -- shared clients: one per (endpoint, credential, pool size) and event loop ----------------
@dataclass(eq=False)
class _Client:
    """A service client and its aiohttp session for one (loop, endpoint, credential, pool)."""

    key: tuple[object, ...]  # (id of the loop, credential fingerprint, pool size)
    loop: asyncio.AbstractEventLoop
    service: Any
    session: Any
    batch_ok: bool = True  # cleared when the endpoint refuses Blob Batch requests

    @property
    def refs(self) -> int:
        """How many store leases hold this client (0 once it was released)."""
        return sum(pooled.refs for pooled in _clients.entries() if pooled.client is self)


class _Held(NamedTuple):
    """What a store holds in one loop: the shared client, its container client, the lease."""

    client: _Client
    container: Any
    lease: Lease[tuple[object, ...], _Client]


def _acquire(config: AzureConfig, limits: StoreLimits) -> Lease[tuple[object, ...], _Client]:
    """A lease on the shared client for the running loop (created on first use)."""
    loop = asyncio.get_running_loop()
    pool = limits.max_concurrency
    key = (config.fingerprint, pool)
    return _clients.acquire_nowait(key, lambda: _new_client((id(loop), *key), loop, config, pool))


def _new_client(
    key: tuple[object, ...], loop: asyncio.AbstractEventLoop, config: AzureConfig, pool: int
) -> _Client:
    sdk = _sdk()
    connector = sdk.aiohttp.TCPConnector(limit=pool, limit_per_host=pool)
    session = sdk.aiohttp.ClientSession(
        connector=connector, cookie_jar=sdk.aiohttp.DummyCookieJar(), **bounded_session_options()
    )
    transport = sdk.AioHttpTransport(
        session=session, session_owner=False, connection_timeout=config.connect_timeout,
        read_timeout=config.read_timeout,
    )  # fmt: skip
    try:
        service = sdk.BlobServiceClient(
            config.account_url, credential=config.credential, transport=transport, retry_total=0
        )
    except (ValueError, TypeError) as exc:
        session.detach()
        message = scrub(str(exc), config.secrets)
        raise ConfigError(f"invalid Azure client settings: {message}") from exc
    return _Client(key, loop, service, session)


async def _close_client(client: _Client) -> None:
    try:
        await client.service.close()
    finally:
        await client.session.close()


def _abandon_client(client: _Client) -> None:
    """Drop a client whose loop is gone: nothing can await its close any more."""
    connector = client.session.connector
    client.session.detach()
    with contextlib.suppress(Exception):  # marks it closed: no false leak report
        connector._close()


_clients: LoopClientPool[tuple[object, ...], _Client] = LoopClientPool(
    "Azure", close=_close_client, abandon=_abandon_client
)


# -- error translation ------------------------------------------------------------------------
class _RangeNotSatisfiable(StoreError):
    """416: the requested range starts at or after the end of an existing blob (internal)."""


class ContainerNotFoundError(StoreError):
    """The container itself is missing: a configuration error, not a missing key (a
    :class:`~asyncarr.errors.StoreError`; named so in tracebacks, not exported)."""


def _status_and_code(exc: BaseException) -> tuple[int | None, str | None]:
    status = getattr(exc, "status_code", None)
    code = getattr(exc, "error_code", None)
    code = getattr(code, "value", code)
    if not code:
        response = getattr(exc, "response", None)
        headers = getattr(response, "headers", None)
        code = headers.get("x-ms-error-code") if headers is not None else None
    return (status if isinstance(status, int) else None), (str(code) if code else None)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    line = text.splitlines()[0] if text else type(exc).__name__
    return line if len(line) <= 200 else line[:197] + "..."


# -- the store ------------------------------------------------------------------------------
class AzureBlobStore(Store):
    """Keys stored as blobs in one Azure Blob Storage container, under an optional prefix.

    ``storage_options`` are those of :func:`azure_store_from_url`. Conditional
    writes use ETags (``If-Match`` / ``If-None-Match: *``). Call
    :meth:`aclose` (or use ``async with``) to release the shared connection pool.
    ``page_size`` is the number of names per listing request (at most 5000).
    """

    def __init__(
        self,
        container: str,
        prefix: str = "",
        *,
        storage_options: Mapping[str, Any] | None = None,
        read_only: bool = False,
        page_size: int = 5000,
        _config: AzureConfig | None = None,
    ) -> None:
        options = dict(storage_options or {})
        limits = options.get("limits")
        super().__init__(read_only=read_only, limits=limits)
        check_container(container)
        try:
            self._root = normalize_prefix(prefix)
        except InvalidKeyError as exc:
            raise ConfigError(f"invalid Azure store prefix {prefix!r}: {exc}") from exc
        if not 1 <= page_size <= 5000:
            raise ConfigError(f"page_size must be in 1..5000, got {page_size!r}")
        _sdk()  # a missing extra fails here, at open time
        self._container_name = container
        self._options = options  # as given: pickled with the store (see Store)
        self._config = _config or resolve_config(options, self.limits)
        self._page_size = page_size
        self._held: dict[asyncio.AbstractEventLoop, _Held] = {}

    # -- identity ------------------------------------------------------------------------
    @property
    def endpoint_key(self) -> str:
        return f"azure:{self._config.account_url}"

    @property
    def location(self) -> str:
        account = self._config.account_url
        return f"azure:{account}/{self._container_name}/{self._root}".rstrip("/")

    @property
    def supports_conditional_writes(self) -> bool:
        return True

    def __repr__(self) -> str:
        mode = ", read-only" if self.read_only else ""
        return (
            f"AzureBlobStore(az://{self._container_name}/{self._root}, "
            f"endpoint={self._config.account_url}{mode})"
        )

    __str__ = __repr__

    def with_read_only(self, read_only: bool = True) -> AzureBlobStore:
        return AzureBlobStore(
            self._container_name, self._root, storage_options=self._options,
            read_only=read_only, page_size=self._page_size, _config=self._config,
        )  # fmt: skip

    # -- plumbing ------------------------------------------------------------------------
    def _container(self) -> Any:
        loop = asyncio.get_running_loop()
        held = self._held.get(loop)
        if held is None:
            lease = _acquire(self._config, self.limits)
            container = lease.client.service.get_container_client(self._container_name)
            held = self._held[loop] = _Held(lease.client, container, lease)
        return held.container

    def _blob(self, key: str) -> Any:
        return self._container().get_blob_client(self._root + self._key(key))

    async def _guard(self, op: str, key: str | None, call: Callable[[], Awaitable[T]]) -> T:
        """Await ``call()``, translating SDK and network errors."""
        try:
            return await call()
        except StoreError:
            raise
        except _sdk().errors as exc:
            raise self._translate(exc, op, key) from exc

    def _translate(self, exc: BaseException, op: str, key: str | None) -> StoreError:
        sdk = _sdk()
        status, code = _status_and_code(exc)
        message = f"Azure {op} failed: {scrub(_first_line(exc), self._config.secrets)}"
        refused = certificate_failure(exc)
        if refused is not None:  # a configuration problem: retrying cannot help
            what = f"TLS certificate refused: {scrub(refused, self._config.secrets)}"
            return StoreError(f"Azure {op} failed: {what}", store=self, key=key)
        if isinstance(exc, sdk.exc.HttpResponseError) and status is not None:
            return self._status_error(status, code, message, key)
        inner = (exc, getattr(exc, "inner_exception", None), exc.__cause__, exc.__context__)
        if any(isinstance(e, sdk.truncated) for e in inner):
            return TruncatedReadError(f"{message} (body cut short)", store=self, key=key)
        if isinstance(exc, sdk.exc.ClientAuthenticationError):
            return PermissionDeniedError(message, store=self, key=key)
        if isinstance(exc, sdk.transient):
            return TransientStoreError(message, store=self, key=key)
        return StoreError(message, store=self, key=key)

    def _status_error(
        self, status: int, code: str | None, message: str, key: str | None
    ) -> StoreError:
        """The asyncarr error for an HTTP status and ``x-ms-error-code``."""
        message = f"{message} (HTTP {status}{', ' + code if code else ''})"
        if code == "ContainerNotFound":
            where = f"{self._container_name!r} at {self._config.account_url}"
            return ContainerNotFoundError(f"no Azure container {where}", store=self, key=key)
        if status == 404:
            return KeyNotFoundError(message, store=self, key=key)
        if status == 416 or code == "InvalidRange":
            return _RangeNotSatisfiable(message, store=self, key=key)
        if status in (401, 403):
            return PermissionDeniedError(message, store=self, key=key)
        if status == 412 or code in ("BlobAlreadyExists", "ConditionNotMet"):
            return PreconditionFailedError(message, store=self, key=key)
        if status in (429, 503) or code == "ServerBusy":
            return ThrottledError(message, store=self, key=key)
        damaged = code in ("Md5Mismatch", "Crc64Mismatch") or (
            status == 400 and "md5" in message.lower() and "match" in message.lower()
        )  # (Azurite: InvalidOperation, "Provided contentMD5 doesn't match")
        if damaged:  # the upload was damaged on its way: sending it again can succeed
            return TransientStoreError(message, store=self, key=key)
        if status >= 500 or status == 408:
            return TransientStoreError(message, store=self, key=key)
        return StoreError(message, store=self, key=key)

    async def _head(self, key: str) -> tuple[int, str] | None:
        blob = self._blob(key)
        try:
            props = await self._guard("get_properties", key, blob.get_blob_properties)
        except KeyNotFoundError:
            return None
        return int(props.size), str(props.etag)

    async def _read(
        self,
        key: str,
        rng: RangeRequest | None,
        etag: str | None = None,
        size: int | None = None,
        max_size: int | None = None,
    ) -> tuple[bytes, str] | None:
        """``(bytes, etag)`` of ``rng``; with ``etag`` only from that version of the blob.

        One GET, its body read within the range's length or ``max_size`` (:mod:`._bodies`),
        checked against the range asked for and its ``Content-Range``, and against the
        ``Content-MD5`` the service sends (the blob's, for a whole read; the range's,
        asked for, for ranges up to 4 MiB)."""
        needs_head = isinstance(rng, SuffixRange) or (isinstance(rng, ByteRange) and not rng.length)
        if needs_head and (size is None or etag is None):  # the size, and a version to pin
            if (head := await self._head(key)) is None:
                return None
            size, etag = head
        offset, length = 0, None
        if isinstance(rng, ByteRange):
            offset, length = rng.start, rng.length
        elif isinstance(rng, OffsetRange):
            offset = rng.offset
        elif isinstance(rng, SuffixRange) and size is not None:
            offset = max(size - rng.length, 0)
            length = size - offset
        if length == 0:
            return b"", etag or ""
        asked: RangeRequest | None = None
        if length is not None:
            asked = ByteRange(offset, offset + length)
        elif offset:
            asked = OffsetRange(offset)
        try:
            got = await self._guard("get", key, lambda: self._download(key, asked, etag, max_size))
        except KeyNotFoundError:
            return None
        except _RangeNotSatisfiable:  # starts at/after the end of an existing blob
            return b"", etag or ""
        except PreconditionFailedError as exc:
            if etag is None:
                raise
            raise TransientStoreError(
                "the blob changed while it was being read", store=self, key=key
            ) from exc
        return got

    async def _download(
        self, key: str, asked: RangeRequest | None, etag: str | None, max_size: int | None
    ) -> tuple[bytes, str]:
        """The GET itself, through the SDK's generated operation (its pipeline signs it),
        streamed: the SDK's own download reads a whole first answer, unbounded."""
        sdk = _sdk()
        blob = self._blob(key)
        header = None if asked is None else http_range_header(asked)
        md5_range = isinstance(asked, ByteRange) and asked.length <= _MD5_RANGE_MAX
        response, stream = await blob._client.blob.download(
            range=header,
            range_get_content_md5=True if md5_range else None,
            modified_access_conditions=None if etag is None else sdk.conditions(if_match=etag),
            decompress=False,
            cls=lambda pipeline_response, body, _headers: (pipeline_response.http_response, body),
        )
        headers = response.headers
        try:
            declared = headers.get("Content-Length")
            data = await read_body(
                stream,
                store=self,
                key=key,
                declared=int(declared) if declared and declared.isdigit() else None,
                limit=read_limit(asked, max_size),
            )
        finally:
            response.internal_response.close()  # (a no-op once the whole body was read)
        if asked is not None and response.status_code == 206:
            data = ranged_part(self, key, asked, data, headers.get("Content-Range"))
        elif asked is not None:
            data = whole_value_part(asked, data)  # the service ignored the range
        sent_md5 = headers.get("Content-MD5")
        if sent_md5 and (asked is None or md5_range):  # (a damaged body: retried)
            check_digest(self, key, "md5", sent_md5, data)
        return data, str(headers.get("ETag", ""))

    # -- reads ---------------------------------------------------------------------------
    async def get(
        self, key: str, byte_range: RangeRequest | None = None, *, max_size: int | None = None
    ) -> bytes | None:
        got = await self._read(key, byte_range, max_size=max_size)
        return None if got is None else got[0]

    async def get_ranges(self, key: str, ranges: Sequence[RangeRequest]) -> list[bytes] | None:
        """Several ranges of one version of the blob (later reads use ``If-Match``)."""
        ranges = list(ranges)
        etag = size = None
        if any(isinstance(r, SuffixRange) for r in ranges) or not ranges:
            head = await self._head(key)
            if head is None:
                return None
            size, etag = head
        out: list[bytes] = []
        for i, rng in enumerate(ranges):
            got = await self._read(key, rng, etag, size)
            if got is None:
                if i == 0:
                    return None
                raise TransientStoreError(
                    "the blob vanished while it was being read", store=self, key=key
                )
            out.append(got[0])
            etag = etag or got[1]
        return out

    async def get_versioned(self, key: str, *, max_size: int | None = None) -> Versioned | None:
        got = await self._read(key, None, max_size=max_size)
        return None if got is None else Versioned(got[0], got[1])

    async def exists(self, key: str) -> bool:
        return await self._head(key) is not None

    async def getsize(self, key: str) -> int:
        head = await self._head(key)
        if head is None:
            raise KeyNotFoundError("no such key", store=self, key=key)
        return head[0]

    # -- writes --------------------------------------------------------------------------
    async def _upload(
        self, key: str, value: bytes, *, overwrite: bool, etag: str | None = None
    ) -> None:
        blob = self._blob(key)
        self._check_writable(key)
        data = value if isinstance(value, bytes) else bytes(value)
        kwargs: dict[str, Any] = {
            "overwrite": overwrite,
            "length": len(data),
            "max_concurrency": 4,
            "validate_content": True,  # Content-MD5: the service refuses a damaged upload
        }
        if etag is not None:
            kwargs.update(etag=etag, match_condition=_sdk().if_match)
        await self._guard("set", key, lambda: blob.upload_blob(data, **kwargs))

    async def set(self, key: str, value: bytes) -> None:
        await self._upload(key, value, overwrite=True)

    async def set_if_not_exists(self, key: str, value: bytes) -> bool:
        try:
            await self._upload(key, value, overwrite=False)  # If-None-Match: *
        except PreconditionFailedError:
            return False
        return True

    async def set_if_version(self, key: str, value: bytes, version: str | None) -> None:
        try:
            if version is None:
                await self._upload(key, value, overwrite=False)
            else:
                await self._upload(key, value, overwrite=True, etag=version)
        except KeyNotFoundError as exc:  # If-Match on a blob that no longer exists
            raise PreconditionFailedError(
                f"blob is gone, expected version {version}", store=self, key=key
            ) from exc

    async def delete(self, key: str) -> None:
        blob = self._blob(key)
        self._check_writable(key)
        try:
            await self._guard("delete", key, lambda: blob.delete_blob(delete_snapshots="include"))
        except KeyNotFoundError:
            pass

    async def delete_prefix(self, prefix: str) -> None:
        prefix = self._list_prefix_arg(prefix)
        self._check_writable(prefix or None)
        keys = [k async for k in self.list_prefix(prefix)]
        for i in range(0, len(keys), _BATCH_SIZE):
            chunk = keys[i : i + _BATCH_SIZE]
            if not await self._delete_batch(chunk):
                await self._delete_each(chunk)

    async def _delete_batch(self, keys: list[str]) -> bool:
        """Delete with one Blob Batch request; ``False`` if the endpoint refuses batches."""
        container = self._container()
        client = self._held[asyncio.get_running_loop()][0]
        if not client.batch_ok or len(keys) < 2:
            return False
        names = [self._root + k for k in keys]

        async def run() -> list[tuple[int, str | None]]:
            responses = await container.delete_blobs(
                *names, delete_snapshots="include", raise_on_any_failure=False
            )
            return [(r.status_code, r.headers.get("x-ms-error-code")) async for r in responses]

        try:
            results = await self._guard("delete", None, run)
        except (ContainerNotFoundError, PermissionDeniedError, TransientStoreError):
            raise
        except StoreError:  # 400 / 409 / 501 for the whole batch: not supported here
            results = []
        if len(results) != len(keys):  # refused as a whole (Azurite answers one 400 part)
            client.batch_ok = False
            return False
        for k, (status, code) in zip(keys, results):
            if status >= 300 and status != 404:
                raise self._status_error(status, code, "Azure batch delete failed", k)
        return True

    async def _delete_each(self, keys: list[str]) -> None:
        sem = asyncio.Semaphore(max(1, min(self.limits.max_concurrency, 32)))

        async def one(k: str) -> None:
            async with sem:
                await self.delete(k)

        for r in await asyncio.gather(*(one(k) for k in keys), return_exceptions=True):
            if isinstance(r, BaseException):
                raise r

    # -- listing -------------------------------------------------------------------------
    async def list_prefix(self, prefix: str) -> AsyncIterator[str]:
        prefix = self._list_prefix_arg(prefix)
        start = len(self._root)
        pager = self._container().list_blob_names(
            name_starts_with=(self._root + prefix) or None, results_per_page=self._page_size
        )
        pages = pager.by_page()
        while True:
            try:
                page = await self._guard("list", prefix or None, lambda: _next_page(pages))
            except StopAsyncIteration:
                return
            for name in page:
                yield name[start:]

    async def list_dir(self, prefix: str) -> list[str]:
        base = self._prefix(prefix)
        full = self._root + base

        async def walk() -> set[str]:
            children: set[str] = set()
            async for item in self._container().walk_blobs(
                name_starts_with=full or None, delimiter="/", results_per_page=self._page_size
            ):
                child = item.name[len(full) :].split("/", 1)[0]
                if child:
                    children.add(child)
            return children

        return sorted(await self._guard("list", base or None, walk))

    # -- lifecycle -----------------------------------------------------------------------
    async def aclose(self) -> None:
        """Give back this store's share of the connection pools. Idempotent.

        Pools of other event loops still running are closed there; a loop that
        has already ended cannot await a close, so close stores before their loop ends.
        """
        held, self._held = self._held, {}
        try:
            await _clients.release_all(h.lease for h in held.values())
        finally:
            await super().aclose()


async def _next_page(pages: Any) -> list[str]:
    """The next page of an SDK pager as a list (``StopAsyncIteration`` at the end)."""
    page = await pages.__anext__()
    return [name async for name in page]


def azure_store_from_url(
    url: str, *, read_only: bool, storage_options: Mapping[str, Any]
) -> AzureBlobStore:
    """Open ``az://container/prefix`` or ``abfs://container[@account.dfs.core.windows.net]/prefix``.

    ``storage_options``: ``connection_string`` (default
    ``$AZURE_STORAGE_CONNECTION_STRING``), ``account_url`` or ``account_name``
    with one of ``account_key``, ``sas_token``, ``credential`` (any azure
    credential object) or ``anon=True``; ``limits`` (:class:`StoreLimits`) and
    ``timeouts`` (seconds, or ``{"connect": s, "read": s}``). Unknown options
    raise :class:`~asyncarr.errors.ConfigError`.
    """
    container, prefix, account, endpoint = parse_azure_url(url)
    options = dict(storage_options)
    if account is not None:  # abfs://container@account.dfs.core.windows.net/...
        options.setdefault("account_name", account)
        if "connection_string" not in options:
            options.setdefault("account_url", endpoint)
    store = AzureBlobStore(container, prefix, storage_options=options, read_only=read_only)
    if account is not None and store._config.account_name != account:
        raise ConfigError(
            f"{url!r} names account {account!r} but the storage options are for "
            f"{store._config.account_name!r}"
        )
    return store
