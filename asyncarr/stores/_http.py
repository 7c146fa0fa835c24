"""Read-only store over plain HTTP(S) with aiohttp.

``http://host[:port]/path`` (or ``https://``) is the root of a Zarr
hierarchy; key ``a/c/0`` is fetched from ``<root>/a/c/0`` (each path segment
percent-encoded). Writes always raise :class:`ReadOnlyStoreError`.

Reads
-----
Byte ranges use the ``Range`` header. A server that ignores it and answers
``200`` with the whole body still gives the right bytes (streamed through, only the
requested ones kept); a ``206`` answer is checked against the range asked for and
its ``Content-Range`` (short or misplaced: :class:`TruncatedReadError`, retried,
never decoded); ``416`` (the range starts past the end) gives ``b""``. A body
shorter than its ``Content-Length`` raises :class:`TruncatedReadError`.

Bodies are read within a bound (:mod:`._bodies`): a range's length, or the
``max_size`` the caller gives (the most a chunk can encode to, the metadata size
limit). A larger ``Content-Length`` is refused before the body is read, an endless
body stops at the bound (:class:`~asyncarr.errors.ValueTooLargeError`). Requests ask
for ``Accept-Encoding: identity`` so that lengths and ranges refer to the stored
bytes; a server that sends ``gzip`` or ``deflate`` anyway has it decoded within the
same bound (other encodings, and encoded answers to ranged requests, are refused),
never inflated unbounded.

Status mapping: 404 and 410 (and any status listed in the
``missing_statuses`` option, e.g. 403 for S3 buckets without list permission)
mean "missing"; 401/403 raise :class:`PermissionDeniedError`; 429 and 503
raise :class:`ThrottledError`; 408 and other 5xx, timeouts and connection
faults raise :class:`TransientStoreError`. A certificate that fails verification
is a :class:`StoreError` (not retried).

``exists``/``getsize`` use ``HEAD`` and fall back to a one-byte ranged
``GET`` if the server refuses ``HEAD`` (405/501).

Listing
-------
Plain HTTP cannot enumerate files. ``list_prefix``/``list_dir`` work only
where the root holds consolidated metadata: ``.zmetadata`` (Zarr v2) and/or
the ``consolidated_metadata`` block of the root ``zarr.json`` (Zarr v3). They
then list the *metadata* keys it names (``zarr.json``, ``.zarray``,
``.zgroup``, ``.zattrs``); chunk keys are never listed. Without consolidated
metadata they raise :class:`UnsupportedOperationError`.
:attr:`HTTPStore.supports_listing` is ``False`` until
:meth:`HTTPStore.probe_listing` (or a listing call) has found it.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import ssl as ssl_lib
import weakref
from collections.abc import AsyncIterator, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import quote, unquote, urlsplit, urlunsplit

from asyncarr._tasks import gather_all
from asyncarr._types import ByteRange, RangeRequest, http_range_header
from asyncarr.abc import Store
from asyncarr.config import StoreLimits
from asyncarr.errors import (
    AsyncarrError,
    ConfigError,
    KeyNotFoundError,
    PermissionDeniedError,
    StoreError,
    ThrottledError,
    TransientStoreError,
    TruncatedReadError,
    UnsupportedOperationError,
)
from asyncarr.stores._bodies import (
    parse_content_range,
    ranged_part,
    read_response,
)
from asyncarr.stores._client_pool import Lease, LoopClientPool
from asyncarr.stores._tls import certificate_failure

if TYPE_CHECKING:
    import aiohttp

__all__ = ["HTTPStore", "http_store_from_url"]

_OPTIONS = frozenset(
    {
        "headers",
        "timeout",
        "connect_timeout",
        "read_timeout",
        "ssl",
        "verify",
        "limits",
        "client_kwargs",
        "missing_statuses",
    }
)
_SAFE = "-_.~!$&'()*+,;=:@"  # sub-delims and pchar characters kept as-is in a path segment


@dataclass(frozen=True)
class _Reply:
    status: int
    headers: Mapping[str, str]
    body: bytes


# -- one ClientSession per (connection options) per event loop, see _client_pool ------------


async def _close_quietly(session: aiohttp.ClientSession) -> None:
    with contextlib.suppress(Exception):
        await session.close()


_sessions: LoopClientPool[object, aiohttp.ClientSession] = LoopClientPool(
    "HTTP", close=_close_quietly
)


class HTTPStore(Store):
    """Read-only access to a Zarr hierarchy served over HTTP(S).

    ``url`` is the root; credentials in it (``https://user:pass@host/...``)
    become a Basic ``Authorization`` header and are never shown. One aiohttp
    session per event loop is shared by every store with the same connection
    options, with at most ``limits.max_concurrency`` connections.
    """

    def __init__(
        self,
        url: str,
        *,
        limits: StoreLimits | None = None,
        headers: Mapping[str, str] | None = None,
        timeout: float | None = None,
        connect_timeout: float | None = None,
        read_timeout: float | None = None,
        ssl: bool | ssl_lib.SSLContext = True,
        client_kwargs: Mapping[str, Any] | None = None,
        missing_statuses: Sequence[int] = (404, 410),
    ) -> None:
        super().__init__(read_only=True, limits=limits)
        parts = urlsplit(url)
        if parts.scheme.lower() not in ("http", "https") or not parts.hostname:
            raise ConfigError("expected an http:// or https:// URL with a host")
        userinfo, at, hostport = parts.netloc.rpartition("@")
        self._headers: dict[str, str] = {"Accept-Encoding": "identity"}
        if headers is not None:
            if not isinstance(headers, Mapping):
                raise ConfigError(f"headers must be a mapping, got {type(headers).__name__}")
            self._headers.update({str(k): str(v) for k, v in headers.items()})
        self._secrets: list[str] = []
        if at:
            login, _, password = userinfo.partition(":")
            token = base64.b64encode(f"{unquote(login)}:{unquote(password)}".encode()).decode()
            self._headers.setdefault("Authorization", f"Basic {token}")
            self._secrets = [s for s in (password, unquote(password)) if s]
        self._scheme = parts.scheme.lower()
        self._hostport = hostport
        self._base = urlunsplit((self._scheme, hostport, parts.path.rstrip("/"), "", ""))
        self._query = parts.query
        for name, value in (
            ("timeout", timeout),
            ("connect_timeout", connect_timeout),
            ("read_timeout", read_timeout),
        ):
            if value is not None and (
                isinstance(value, bool) or not isinstance(value, int | float) or value <= 0
            ):
                raise ConfigError(f"{name} must be a positive number of seconds, got {value!r}")
        self._timeouts = (
            timeout if timeout is not None else self.limits.retry.request_timeout,
            connect_timeout,
            read_timeout,
        )
        if not isinstance(ssl, bool | ssl_lib.SSLContext):
            raise ConfigError(f"ssl must be a bool or an ssl.SSLContext, got {type(ssl).__name__}")
        self._ssl = ssl
        self._client_kwargs = dict(client_kwargs or {})
        try:
            self._missing = frozenset(int(s) for s in missing_statuses)
        except (TypeError, ValueError) as exc:
            raise ConfigError(f"missing_statuses must be HTTP status codes: {exc}") from exc
        self._session_ident: object = (
            self.limits.max_concurrency,
            ssl if isinstance(ssl, bool) else id(ssl),
            repr(sorted(self._client_kwargs.items(), key=lambda kv: kv[0])),
        )
        self._held: weakref.WeakKeyDictionary[
            asyncio.AbstractEventLoop, Lease[object, aiohttp.ClientSession]
        ] = weakref.WeakKeyDictionary()
        self._head_allowed = True
        self._listing: list[str] | None = None
        self._listing_known: bool | None = None

    # -- identity and capabilities ----------------------------------------------------------
    @property
    def endpoint_key(self) -> str:
        return f"http:{self._scheme}://{self._hostport}"

    @property
    def supports_listing(self) -> bool:
        """Whether consolidated metadata was found (see :meth:`probe_listing`)."""
        return bool(self._listing_known)

    @property
    def lists_every_key(self) -> bool:
        """Never: a listing from consolidated metadata names metadata documents only."""
        return False

    @property
    def url(self) -> str:
        """The root URL, without credentials or query."""
        return self._base

    def with_read_only(self, read_only: bool = True) -> HTTPStore:
        if not read_only:
            raise UnsupportedOperationError("HTTP stores are always read-only", store=self)
        return self

    @property
    def location(self) -> str:
        return self._base

    def __repr__(self) -> str:
        return f"HTTPStore({self._base}, read-only)"

    __str__ = __repr__

    # -- plumbing ---------------------------------------------------------------------------------
    def _session(self) -> aiohttp.ClientSession:
        if self._closed:
            raise StoreError("store is closed", store=self)
        loop = asyncio.get_running_loop()
        lease = self._held.get(loop)
        if lease is None:
            try:
                lease = _sessions.acquire_nowait(self._session_ident, self._new_session)
            except TypeError as exc:
                raise ConfigError(f"invalid client_kwargs for {self}: {exc}") from exc
            self._held[loop] = lease
        return lease.client

    def _new_session(self) -> aiohttp.ClientSession:
        import aiohttp

        connector = aiohttp.TCPConnector(limit=self.limits.max_concurrency, ssl=self._ssl)
        # decoded here, within each read's bound: aiohttp would inflate a gzip bomb whole
        options = {**self._client_kwargs, "auto_decompress": False}
        return aiohttp.ClientSession(connector=connector, **options)

    def _url(self, key: str) -> str:
        path = "/".join(quote(part, safe=_SAFE) for part in self._key(key).split("/"))
        url = f"{self._base}/{path}"
        return f"{url}?{self._query}" if self._query else url

    def _scrub(self, text: str) -> str:
        for secret in self._secrets:
            text = text.replace(secret, "***")
        return text

    @contextlib.contextmanager
    def _errors(self, key: str | None) -> Iterator[None]:
        """Translate aiohttp and socket exceptions raised inside the block."""
        import aiohttp

        try:
            yield
        except AsyncarrError:
            raise
        except Exception as exc:
            refused = certificate_failure(exc)
            what = f"{type(exc).__name__}: {self._scrub(str(exc))}"
            if refused is not None:  # a configuration problem: retrying cannot help
                message = f"TLS certificate refused: {self._scrub(refused)}"
                raise StoreError(message, store=self, key=key) from exc
            if isinstance(exc, aiohttp.ClientPayloadError):
                raise TruncatedReadError(
                    f"response body cut short: {self._scrub(str(exc))}", store=self, key=key
                ) from exc
            if isinstance(exc, aiohttp.ClientConnectionError | TimeoutError | ConnectionError):
                raise TransientStoreError(
                    f"HTTP request failed: {what}", store=self, key=key
                ) from exc
            if isinstance(exc, aiohttp.ClientError):
                raise StoreError(f"HTTP request failed: {what}", store=self, key=key) from exc
            raise

    async def _request(
        self,
        method: str,
        key: str,
        *,
        rng: RangeRequest | None = None,
        with_body: bool = True,
        max_size: int | None = None,
    ) -> _Reply:
        """One request; a ``GET`` answered ``200``/``206`` has its body read within the
        bound (:mod:`._bodies`): for a ``200`` to a ranged request, only the range is kept."""
        import aiohttp

        url = self._url(key)
        headers = dict(self._headers)
        if rng is not None:
            header = http_range_header(rng)
            assert header is not None
            headers["Range"] = header
        total, connect, sock_read = self._timeouts
        timeout = aiohttp.ClientTimeout(total=total, connect=connect, sock_read=sock_read)
        with self._errors(key):
            async with self._session().request(
                method, url, headers=headers, timeout=timeout
            ) as resp:
                body = b""
                if with_body and method == "GET" and resp.status in (200, 206):
                    body = await read_response(
                        resp, store=self, key=key, rng=rng, max_size=max_size
                    )
                return _Reply(resp.status, resp.headers, body)

    def _raise_for(self, reply: _Reply, key: str) -> None:
        """Raise the asyncarr error for an unexpected status."""
        status = reply.status
        if status in (401, 403):
            raise PermissionDeniedError(f"HTTP {status}: access denied", store=self, key=key)
        if status in (429, 503):
            raise ThrottledError(
                f"HTTP {status}: server asked us to slow down", store=self, key=key
            )
        if status == 408 or status >= 500:
            raise TransientStoreError(f"HTTP {status} from server", store=self, key=key)
        raise StoreError(f"unexpected HTTP status {status}", store=self, key=key)

    # -- reads ----------------------------------------------------------------------------------
    async def get(
        self, key: str, byte_range: RangeRequest | None = None, *, max_size: int | None = None
    ) -> bytes | None:
        if byte_range is not None and http_range_header(byte_range) is None:
            return b"" if await self.exists(key) else None
        reply = await self._request("GET", key, rng=byte_range, max_size=max_size)
        if reply.status in self._missing:
            return None
        if reply.status == 200:  # the whole value, or (a ranged request) only the range kept
            return reply.body
        if reply.status == 206 and byte_range is not None:
            return ranged_part(
                self, key, byte_range, reply.body, reply.headers.get("Content-Range")
            )
        if reply.status == 416 and byte_range is not None:
            return b""
        self._raise_for(reply, key)
        raise AssertionError("unreachable")  # pragma: no cover

    async def get_ranges(self, key: str, ranges: Sequence[RangeRequest]) -> list[bytes] | None:
        parts = await gather_all(*(self.get(key, r) for r in ranges))
        if any(p is None for p in parts):
            return None
        return [p for p in parts if p is not None]

    async def _probe(self, key: str) -> tuple[bool, int | None]:
        """Whether ``key`` exists and, when cheaply known, its size."""
        if self._head_allowed:
            reply = await self._request("HEAD", key, with_body=False)
            if reply.status in (405, 501):
                self._head_allowed = False
            else:
                if reply.status in self._missing:
                    return False, None
                if reply.status != 200:
                    self._raise_for(reply, key)
                length = reply.headers.get("Content-Length")
                return True, int(length) if length and length.isdigit() else None
        reply = await self._request("GET", key, rng=ByteRange(0, 1))
        if reply.status in self._missing:
            return False, None
        if reply.status == 200:  # the range was ignored: the size is in Content-Length
            length = reply.headers.get("Content-Length")
            return True, int(length) if length and length.isdigit() else None
        if reply.status in (206, 416):
            parsed = parse_content_range(reply.headers.get("Content-Range"))
            size = parsed[2] if parsed is not None else None
            return True, size if size is not None else (0 if reply.status == 416 else None)
        self._raise_for(reply, key)
        raise AssertionError("unreachable")  # pragma: no cover

    async def exists(self, key: str) -> bool:
        return (await self._probe(key))[0]

    async def getsize(self, key: str) -> int:
        found, size = await self._probe(key)
        if not found:
            raise KeyNotFoundError("no such key", store=self, key=key)
        if size is None:
            value = await self.get(key)
            if value is None:
                raise KeyNotFoundError("no such key", store=self, key=key)
            size = len(value)
        return size

    # -- writes: always refused ------------------------------------------------------------
    async def set(self, key: str, value: bytes) -> None:
        self._check_writable(self._key(key))

    async def set_if_not_exists(self, key: str, value: bytes) -> bool:
        self._check_writable(self._key(key))
        return False  # pragma: no cover - _check_writable always raises

    async def delete(self, key: str) -> None:
        self._check_writable(self._key(key))

    async def delete_prefix(self, prefix: str) -> None:
        self._check_writable(self._list_prefix_arg(prefix))

    # -- listing (consolidated metadata only) -------------------------------------------------
    async def probe_listing(self) -> bool:
        """Look for consolidated metadata at the root; ``True`` if listing will work."""
        return await self._metadata_keys() is not None

    async def _metadata_keys(self) -> list[str] | None:
        if self._listing_known is not None:
            return self._listing
        keys: set[str] = set()
        found = False
        v2 = await self._json(".zmetadata")
        if isinstance(v2, dict) and isinstance(v2.get("metadata"), dict):
            found = True
            keys.add(".zmetadata")
            keys.update(str(k) for k in v2["metadata"])
        v3 = await self._json("zarr.json")
        consolidated = v3.get("consolidated_metadata") if isinstance(v3, dict) else None
        if isinstance(consolidated, dict) and isinstance(consolidated.get("metadata"), dict):
            found = True
            keys.add("zarr.json")
            keys.update(f"{path.strip('/')}/zarr.json" for path in consolidated["metadata"])
        self._listing = sorted(keys) if found else None
        self._listing_known = found
        return self._listing

    async def _json(self, key: str) -> Any:
        raw = await self.get(key, max_size=self.limits.max_metadata_bytes)
        if raw is None:
            return None
        try:
            return json.loads(raw)
        except (ValueError, UnicodeDecodeError):
            return None

    async def list_prefix(self, prefix: str) -> AsyncIterator[str]:
        prefix = self._list_prefix_arg(prefix)
        keys = await self._metadata_keys()
        if keys is None:
            raise UnsupportedOperationError(
                "listing over HTTP needs consolidated metadata at the root (.zmetadata for "
                "Zarr v2, consolidated_metadata in zarr.json for v3); chunk keys can never "
                "be enumerated over plain HTTP",
                store=self,
            )
        for key in keys:
            if key.startswith(prefix):
                yield key

    # -- lifecycle -------------------------------------------------------------------------
    async def aclose(self) -> None:
        if self._closed:
            return
        leases = list(self._held.values())
        self._held.clear()
        await super().aclose()
        await _sessions.release_all(leases)


def http_store_from_url(
    url: str, *, read_only: bool, storage_options: Mapping[str, Any]
) -> HTTPStore:
    """Open ``http(s)://host/path`` read-only (the ``read_only`` flag is ignored).

    ``storage_options``: ``headers``, ``timeout`` (total seconds per request),
    ``connect_timeout``, ``read_timeout``, ``ssl`` (bool or SSLContext) or
    ``verify`` (bool), ``limits``, ``client_kwargs`` (extra
    :class:`aiohttp.ClientSession` arguments) and ``missing_statuses``.
    """
    unknown = set(storage_options) - _OPTIONS
    if unknown:
        raise ConfigError(
            f"unknown storage_options for http(s)://: {sorted(unknown)}; "
            f"expected some of {sorted(_OPTIONS)}"
        )
    options = dict(storage_options)
    if "verify" in options:
        verify = options.pop("verify")
        if not isinstance(verify, bool):
            raise ConfigError(f"verify must be a bool, got {verify!r}")
        if "ssl" in options and options["ssl"] is not verify:
            raise ConfigError("give either ssl or verify, not both")
        options["ssl"] = verify
    client_kwargs = options.get("client_kwargs")
    if client_kwargs is not None and not isinstance(client_kwargs, Mapping):
        raise ConfigError(f"client_kwargs must be a mapping, got {type(client_kwargs).__name__}")
    return HTTPStore(url, **options)
