"""The S3 store's lean request path: plain GETs (and, through :mod:`._s3_write`, PUTs,
DELETEs and multipart uploads) signed with :mod:`._sigv4`, sent over :mod:`._http1`
(aiohttp where a proxy is configured).

botocore's generic request pipeline (serialisation, event hooks, signing,
response parsing) costs about a millisecond of CPU per request, which capped
chunk reads well below what the network and the service deliver (the
benchmarks' raw aiobotocore GET baseline was slower than tensorstore). Value
reads - the hot path - therefore bypass it once it has shown the way:

* The first ``GetObject`` of a bucket (or ``PutObject``, ``DeleteObject``,
  ``HeadObject``: whichever the store sends first) goes through botocore as usual. A
  ``before-send`` hook records the URL botocore built and the region in its
  ``Authorization`` scope, so endpoint resolution, addressing style (path or
  virtual host), region redirects and the like stay botocore's decisions;
  this module never guesses them (:meth:`LeanReader.learn`).
* Later GETs of that bucket are sent directly: same URL layout, SigV4
  headers from the credentials botocore resolved (frozen per request, so
  refreshable credentials keep refreshing), or unsigned for ``anon``.
* Anything unusual (no learnable URL, credentials botocore does not expose)
  simply keeps the botocore path; correctness never depends on the lean one.

Responses are mapped by the store exactly like botocore's: 404 ``NoSuchKey``
is a missing value, 416 an empty range, and error codes from the XML body
go through the same table (:meth:`S3Store._from_code`).
"""

from __future__ import annotations

import base64
import contextlib
import contextvars
import hashlib
import inspect
import os
import re
import ssl
import zlib
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import SplitResult, urlsplit, urlunsplit

import crc32c

from asyncarr.errors import TruncatedReadError
from asyncarr.stores._bodies import read_body
from asyncarr.stores._http1 import HTTP1Client, HTTPResponse, Origin
from asyncarr.stores._sigv4 import SigningCredentials, canonical_path, sign_get

__all__ = [
    "LeanReader",
    "LeanResponse",
    "Route",
    "check_checksum",
    "checksum_mismatch",
    "clean_endpoint",
    "error_code",
    "response_checksums",
    "whole_response",
]

_SCOPE_RE = re.compile(r"Credential=[^/,]+/\d{8}/([^/,]+)/s3/aws4_request")
_CODE_RE = re.compile(rb"<Code>([^<]{1,200})</Code>")
_MESSAGE_RE = re.compile(rb"<Message>([^<]{0,500})</Message>")
_DEFAULT_PORTS = {"http": 80, "https": 443}
_ERROR_BODY = 1 << 20
"""Most bytes of an error answer read (S3 error documents are a few hundred bytes)."""

_Sent = list[tuple[str, str | None]]
"""``(url, Authorization header)`` of each object request botocore sent."""
_LEARNED_FROM = ("GetObject", "PutObject", "DeleteObject", "HeadObject")
"""The operations whose URL is the object's (``/bucket/key`` or ``/key``, no query)."""
_watching: contextvars.ContextVar[_Sent | None] = contextvars.ContextVar(
    "asyncarr_s3_lean_watching", default=None
)
"""Where the ``before-send`` hook records the requests of the GetObject call the current
task is making (botocore emits the event in the calling task, so in its context)."""


@dataclass(frozen=True)
class Route:
    """Where GETs of one bucket go, as botocore addressed them."""

    origin: str
    """``scheme://host[:port]``."""
    host: str
    """The ``Host`` header value (default ports dropped, as SigV4 signs it)."""
    path_prefix: str
    """Canonical path before the object key: ``/bucket/`` (path style) or ``/``."""
    region: str | None
    """Signing region; ``None`` sends unsigned requests."""
    endpoint: Origin
    """Where to connect (scheme, host, port), for the direct client."""


@dataclass(frozen=True)
class LeanResponse:
    status: int
    body: bytes
    content_length: int | None
    content_range: str | None
    checksums: dict[str, str]
    """``x-amz-checksum-<algorithm>`` response headers, by algorithm (lower case)."""
    checksum_type: str | None = None


_CHECKSUM_MODE = {"x-amz-checksum-mode": "ENABLED"}
"""Asks the service for the checksum stored with the object (as botocore does by default),
so that a body damaged on its way is caught here as it is by botocore's validation."""


def _digest(fn: Callable[[bytes], bytes]) -> Callable[[bytes], str]:
    return lambda body: base64.b64encode(fn(body)).decode("ascii")


_CHECKSUMS: dict[str, Callable[[bytes], str]] = {
    "crc32": _digest(lambda b: zlib.crc32(b).to_bytes(4, "big")),
    "crc32c": _digest(lambda b: crc32c.crc32c(b).to_bytes(4, "big")),
    "sha1": _digest(lambda b: hashlib.sha1(b).digest()),
    "sha256": _digest(lambda b: hashlib.sha256(b).digest()),
}
"""The full-object checksums S3 may return that can be computed without extra packages
(``crc64nvme`` needs ``awscrt``: a body with only that checksum goes unchecked here, as
botocore leaves it unchecked without ``awscrt``)."""


_CHECKSUM_HEADERS = tuple(
    (algorithm, f"x-amz-checksum-{algorithm}")
    for algorithm in ("crc32", "crc32c", "crc64nvme", "sha1", "sha256")
)
"""The full-object checksum headers S3 sends (``crc64nvme`` is read, and left unchecked
without ``awscrt``, as botocore does). Looked up by name: scanning every response header
for the prefix cost more per GET."""


def response_checksums(headers: Mapping[str, str]) -> dict[str, str]:
    """The full-object ``x-amz-checksum-<algorithm>`` values among ``headers`` (lower-case
    names), by algorithm."""
    return {
        algorithm: value
        for algorithm, header in _CHECKSUM_HEADERS
        if (value := headers.get(header)) is not None
    }


def checksum_mismatch(resp: LeanResponse) -> str | None:
    """What is wrong with ``resp``'s body against the checksum the service sent with it
    (``None``: it matches, or there is nothing to check it against: a range, a multipart
    object's composite checksum, an algorithm not computable here)."""
    if resp.status != 200 or (resp.checksum_type or "").upper() == "COMPOSITE":
        return None
    for algorithm, expected in resp.checksums.items():
        compute = _CHECKSUMS.get(algorithm)
        if compute is None or "-" in expected:  # composite ("<digest>-<parts>")
            continue
        actual = compute(resp.body)
        if actual != expected:
            return f"{algorithm} of the body is {actual}, the service sent {expected}"
        return None
    return None


def check_checksum(store: object, key: str, resp: LeanResponse) -> None:
    """Raise a :class:`~asyncarr.errors.TruncatedReadError` (retried) where ``resp``'s
    body fails the checksum sent with it (botocore: ``FlexibleChecksumError``)."""
    mismatch = checksum_mismatch(resp)
    if mismatch is not None:
        raise TruncatedReadError(f"S3 body failed its checksum: {mismatch}", store=store, key=key)


def whole_response(body: bytes, headers: Mapping[str, str]) -> LeanResponse:
    """A ``200`` answer with ``body`` and ``headers`` (lower-case names; botocore's
    ``HTTPHeaders``), for :func:`check_checksum`."""
    return LeanResponse(
        200, body, len(body), None, response_checksums(headers), headers.get("x-amz-checksum-type")
    )


def _host(parts: SplitResult) -> str:
    """The URL's host as it appears in a netloc (IPv6 addresses in brackets)."""
    host = parts.hostname or ""
    return f"[{host}]" if ":" in host else host


def clean_endpoint(url: str) -> str:
    """``url`` without user info, query or fragment (safe to show)."""
    parts = urlsplit(url)
    host = _host(parts)
    netloc = f"{host}:{parts.port}" if parts.port else host
    return urlunsplit((parts.scheme, netloc, parts.path.rstrip("/"), "", ""))


def error_code(body: bytes) -> tuple[str, str | None]:
    """The ``<Code>`` and ``<Message>`` of an S3 XML error body (``""``/``None`` if absent)."""
    code = _CODE_RE.search(body)
    message = _MESSAGE_RE.search(body)
    return (
        code.group(1).decode("utf-8", "replace") if code else "",
        message.group(1).decode("utf-8", "replace") if message else None,
    )


def _route_from(url: str, full_key: str, authorization: str | None) -> Route | None:
    parts = urlsplit(url)
    encoded = canonical_path(full_key)
    if not parts.path.endswith("/" + encoded) or parts.scheme not in _DEFAULT_PORTS:
        return None
    host = _host(parts)
    if parts.port is not None and parts.port != _DEFAULT_PORTS[parts.scheme]:
        host = f"{host}:{parts.port}"
    region = None
    if authorization is not None:
        match = _SCOPE_RE.search(authorization)
        if match is None:  # signed, but not in a way this module reproduces
            return None
        region = match.group(1)
    prefix = parts.path[: len(parts.path) - len(encoded)]
    endpoint = Origin(
        parts.scheme, parts.hostname or "", parts.port or _DEFAULT_PORTS[parts.scheme]
    )
    return Route(f"{parts.scheme}://{parts.netloc}", host, prefix, region, endpoint)


class LeanReader:
    """Lean GETs for the buckets one aiobotocore client has read (one event loop).

    ``client`` is that aiobotocore client; its ``before-send`` events teach
    the routes. GETs go over asyncarr's own HTTP/1.1 client (:mod:`._http1`, about a
    quarter less CPU per GET than aiohttp), or over aiohttp where a proxy applies (or
    :attr:`direct` is false). Both are created on first use and closed by :meth:`aclose`.
    """

    direct = True
    """Send GETs that need no proxy over :mod:`._http1` (``False``: aiohttp for all)."""

    def __init__(
        self, client: Any, *, connections: int, connect_timeout: float, read_timeout: float
    ) -> None:
        self._client = client
        self._routes: dict[str, Route] = {}
        self._connections = connections
        self._timeouts = (connect_timeout, read_timeout)
        self._session: Any = None
        self._direct_client: HTTP1Client | None = None
        self._proxies: dict[str, tuple[Any, Any]] = {}
        # botocore keeps the resolved credentials on the client's signer (not public API:
        # when it is missing, learn() never adopts a signed route and botocore reads on)
        signer = getattr(client, "_request_signer", None)
        self._credentials: Any = getattr(signer, "_credentials", None)
        config = getattr(getattr(client, "meta", None), "config", None)
        self._unsigned = _is_unsigned(config)
        for operation in _LEARNED_FROM:
            client.meta.events.register(f"before-send.s3.{operation}", self._observe)

    # -- learning ---------------------------------------------------------------------
    @staticmethod
    def _observe(request: Any, **_: Any) -> None:
        """botocore's ``before-send`` hook: record the URL and signature it sends for the
        object call being watched (:meth:`watch`) in this task, if any."""
        sent = _watching.get()
        if sent is None:
            return
        headers = getattr(request, "headers", {}) or {}
        auth = headers.get("Authorization")
        sent.append(
            (str(getattr(request, "url", "")), auth.decode() if isinstance(auth, bytes) else auth)
        )

    @staticmethod
    @contextlib.contextmanager
    def watch() -> Iterator[_Sent]:
        """Record the requests botocore sends for the object call made in this block
        (pass them to :meth:`learn`). Only this call's: several buckets' reads may be in
        flight on one client at once, and another bucket's URL can end with the same key
        (its reads must never be sent there)."""
        sent: _Sent = []
        token = _watching.set(sent)
        try:
            yield sent
        finally:
            _watching.reset(token)

    def learn(self, bucket: str, full_key: str, sent: _Sent) -> None:
        """After botocore sent an object call on ``(bucket, full_key)`` as ``sent``
        (:meth:`watch`; the last request is the one that was answered, after any redirect):
        adopt its route for ``bucket``."""
        if bucket in self._routes or not sent:
            return
        url, auth = sent[-1]
        route = _route_from(url, full_key, auth)
        if route is not None and (route.region is None) == self._unsigned:
            if route.region is not None and self._credentials is None:
                return  # credentials botocore does not expose: keep botocore
            self._routes[bucket] = route

    def route(self, bucket: str) -> Route | None:
        return self._routes.get(bucket)

    # -- sending ------------------------------------------------------------------------
    async def signing_credentials(self) -> SigningCredentials:
        """The credentials botocore resolved, frozen for one signing."""
        frozen = self._credentials.get_frozen_credentials()
        if inspect.isawaitable(frozen):
            frozen = await frozen
        return SigningCredentials(frozen.access_key, frozen.secret_key, frozen.token or None)

    def _http(self) -> Any:
        if self._session is None or self._session.closed:
            import aiohttp

            connect, read = self._timeouts
            cafile = os.environ.get("AWS_CA_BUNDLE") or None
            context = ssl.create_default_context(cafile=cafile)
            # No trust_env: per request it costs a scan of the proxy variables (~40 us
            # here) and a thread-pool hop to look the host up in ~/.netrc, whose basic
            # auth would then clash with the signature (aiohttp refuses both). Proxies
            # from the environment are honoured all the same (:meth:`_proxy`); S3 sets
            # no cookies.
            self._session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(
                    limit=self._connections, ssl=context, enable_cleanup_closed=True
                ),
                timeout=aiohttp.ClientTimeout(sock_connect=connect, sock_read=read),
                auto_decompress=False,
                trust_env=False,
                cookie_jar=aiohttp.DummyCookieJar(),
            )
        return self._session

    def _direct(self) -> HTTP1Client:
        if self._direct_client is None:
            connect, read = self._timeouts
            cafile = os.environ.get("AWS_CA_BUNDLE") or None
            self._direct_client = HTTP1Client(
                connections=self._connections,
                connect_timeout=connect,
                read_timeout=read,
                ssl_context=ssl.create_default_context(cafile=cafile),
            )
        return self._direct_client

    def _proxy(self, origin: str) -> tuple[Any, Any]:
        """``(proxy, proxy_auth)`` for ``origin`` from ``HTTPS_PROXY``/``HTTP_PROXY``/
        ``NO_PROXY`` (as aiohttp's ``trust_env`` picks them), decided once per origin:
        the choice depends on the scheme and host only. ``(None, None)``: direct."""
        found = self._proxies.get(origin)
        if found is None:
            import yarl
            from aiohttp.helpers import get_env_proxy_for_url

            try:
                found = get_env_proxy_for_url(yarl.URL(origin))
            except LookupError:
                found = (None, None)
            self._proxies[origin] = found
        return found

    async def get(
        self,
        route: Route,
        full_key: str,
        range_header: str | None,
        *,
        max_body: int | None = None,
        describe: tuple[object, str] = ("S3", ""),
    ) -> LeanResponse:
        """One GET whose body may be at most ``max_body`` bytes (over it:
        :class:`~asyncarr.stores._http1.BodyTooLargeError` from the direct client,
        :class:`~asyncarr.errors.ValueTooLargeError` through aiohttp, which also
        raises :class:`~asyncarr.errors.TruncatedReadError` for a short body;
        ``describe`` is the ``(store, key)`` they name); transport errors propagate
        (the store translates them)."""
        path = route.path_prefix + canonical_path(full_key)
        if route.region is None:
            headers = {"host": route.host, **_CHECKSUM_MODE}
        else:
            headers = sign_get(
                route.host,
                path,
                await self.signing_credentials(),
                route.region,
                signed=_CHECKSUM_MODE,
            )
        if range_header is not None:
            headers["range"] = range_header
        proxy, proxy_auth = self._proxy(route.origin)
        found: Mapping[str, str]
        if proxy is None and self.direct:
            got = await self._direct().get(
                route.endpoint, path, list(headers.items()), max_body=max_body
            )
            status, body, found = got.status, got.body, got.headers
        else:
            status, body, found = await self._get_aiohttp(
                route, path, headers, (proxy, proxy_auth), max_body, describe
            )
        length = found.get("content-length")
        return LeanResponse(
            status,
            body,
            int(length) if length is not None and length.isdigit() else None,
            found.get("content-range"),
            response_checksums(found),
            found.get("x-amz-checksum-type"),
        )

    async def send(
        self,
        route: Route,
        method: str,
        target: str,
        headers: dict[str, str],
        body: bytes | memoryview | None = None,
        *,
        idempotent: bool = True,
    ) -> HTTPResponse:
        """One request (``target``: the canonical path and query, ``headers`` signed) on
        ``route``, direct or through the configured proxy; transport errors propagate
        (:mod:`._http1`, aiohttp's). Header names of the answer are lower case."""
        proxy, proxy_auth = self._proxy(route.origin)
        if proxy is None and self.direct:
            return await self._direct().request(
                method, route.endpoint, target, list(headers.items()), body, idempotent=idempotent
            )
        import yarl

        url = yarl.URL(route.origin + target, encoded=True)
        async with self._http().request(
            method,
            url,
            headers=headers,
            data=body,
            allow_redirects=False,
            proxy=proxy,
            proxy_auth=proxy_auth,
        ) as resp:
            answer = await resp.read()
            return HTTPResponse(
                resp.status, {name.lower(): value for name, value in resp.headers.items()}, answer
            )

    async def _get_aiohttp(
        self,
        route: Route,
        path: str,
        headers: dict[str, str],
        via: tuple[Any, Any],
        max_body: int | None,
        describe: tuple[object, str],
    ) -> tuple[int, bytes, Mapping[str, str]]:
        """The GET through aiohttp (used where a proxy is configured), within ``max_body``
        (an error answer's body too: it is a short XML document)."""
        import yarl

        url = yarl.URL(route.origin + path, encoded=True)
        proxy, proxy_auth = via
        async with self._http().get(
            url, headers=headers, allow_redirects=False, proxy=proxy, proxy_auth=proxy_auth
        ) as resp:
            store, key = describe
            limit = max_body if resp.status in (200, 206) else _ERROR_BODY
            body = await read_body(
                resp.content.iter_chunked(1 << 16),
                store=store,
                key=key,
                declared=resp.content_length,
                limit=limit,
            )
            return resp.status, body, resp.headers

    async def aclose(self) -> None:
        direct, self._direct_client = self._direct_client, None
        if direct is not None:
            await direct.aclose()
        session, self._session = self._session, None
        if session is not None and not session.closed:
            await session.close()


def _is_unsigned(config: Any) -> bool:
    try:
        from botocore import UNSIGNED
    except ImportError:  # pragma: no cover - the s3 extra brings botocore
        return False
    return getattr(config, "signature_version", None) is UNSIGNED
