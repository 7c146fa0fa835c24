"""AWS Signature Version 4 for the S3 store's lean requests (object GETs, PUTs, DELETEs,
multipart uploads).

botocore signs, serialises and parses every request through a generic,
event-driven pipeline that costs on the order of a millisecond of CPU per
request; for chunk reads - hundreds of small GETs in flight - that CPU, not
the network, capped throughput (see docs/benchmarks.md). A GET of one object
(optionally a byte range) needs none of that machinery: this module signs it
with the standard library (``hmac``/``hashlib``), and the store sends it over
aiohttp. Written by hand because botocore's own signer (``S3SigV4Auth`` on an
``AWSRequest``) costs ~210 us per request here against ~30 us for this one;
the algorithm is AWS's published one, and the tests check the output against
botocore's signer byte for byte.

Only what these requests need is covered: the minimal signed header set
(``host``, ``x-amz-*`` and whatever the caller adds), query parameters already in
canonical form (:func:`canonical_query`), and a payload given by its hash: the
SHA-256 of no bytes for bodiless requests, ``UNSIGNED-PAYLOAD`` for object bodies
(their integrity is a signed ``x-amz-checksum-crc32c`` header instead, see
:mod:`._s3_write`), the real SHA-256 for small XML bodies.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import hmac
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from urllib.parse import quote

__all__ = [
    "EMPTY_SHA256",
    "UNSIGNED_PAYLOAD",
    "SigningCredentials",
    "canonical_path",
    "canonical_query",
    "sign_get",
    "sign_request",
]

EMPTY_SHA256 = hashlib.sha256(b"").hexdigest()
UNSIGNED_PAYLOAD = "UNSIGNED-PAYLOAD"
"""``x-amz-content-sha256`` of a request whose body is not part of the signature."""
_ALGORITHM = "AWS4-HMAC-SHA256"
_AMZ_DATE = "%Y%m%dT%H%M%SZ"


@dataclass(frozen=True)
class SigningCredentials:
    """Static credentials for one signing (refreshable ones are frozen per request)."""

    access_key: str = field(repr=False)
    secret_key: str = field(repr=False)
    token: str | None = field(default=None, repr=False)


def canonical_path(path: str) -> str:
    """The URI-encoded path S3 signs (and is sent): RFC 3986 unreserved characters and
    ``/`` stay, everything else is percent-encoded once (S3 does not double-encode)."""
    return quote(path, safe="/~")


def canonical_query(params: Mapping[str, str]) -> str:
    """``params`` as SigV4 signs a query string (and as it is sent): names and values
    percent-encoded (unreserved characters kept), sorted by name; an empty value keeps
    its ``=`` (``uploads=``)."""
    return "&".join(
        f"{quote(name, safe='~')}={quote(value, safe='~')}"
        for name, value in sorted(params.items())
    )


_key_cache: dict[tuple[str, str, str, str], bytes] = {}


def _signing_key(secret: str, date: str, region: str, service: str) -> bytes:
    cache_key = (secret, date, region, service)
    key = _key_cache.get(cache_key)
    if key is None:
        k = hmac.digest(("AWS4" + secret).encode(), date.encode(), "sha256")
        k = hmac.digest(k, region.encode(), "sha256")
        k = hmac.digest(k, service.encode(), "sha256")
        key = hmac.digest(k, b"aws4_request", "sha256")
        if len(_key_cache) > 64:  # one per day and region in practice
            _key_cache.clear()
        _key_cache[cache_key] = key
    return key


_stamp: tuple[int, str] = (-1, "")


def _amz_now() -> str:
    """The current UTC time as ``x-amz-date`` (``YYYYMMDDTHHMMSSZ``), formatted once per
    second (every GET is signed: ~9 us of datetime work each, ~1 us this way)."""
    global _stamp
    second = int(time.time())
    cached = _stamp
    if cached[0] != second:
        cached = _stamp = (second, time.strftime(_AMZ_DATE, time.gmtime(second)))
    return cached[1]


def sign_get(
    host: str,
    path: str,
    credentials: SigningCredentials,
    region: str,
    *,
    now: _dt.datetime | None = None,
    service: str = "s3",
    signed: dict[str, str] | None = None,
) -> dict[str, str]:
    """Headers that authenticate ``GET path`` on ``host`` (``host[:port]`` as sent).

    ``path`` must already be canonical (see :func:`canonical_path`). ``signed``: more
    headers to send and sign (lower-case names; every ``x-amz-*`` header must be signed).
    Extra unsigned headers (``Range``) may be added by the caller.
    """
    return sign_request(
        "GET", host, path, credentials, region, now=now, service=service, signed=signed
    )


def sign_request(
    method: str,
    host: str,
    path: str,
    credentials: SigningCredentials,
    region: str,
    *,
    query: str = "",
    payload_hash: str = EMPTY_SHA256,
    now: _dt.datetime | None = None,
    service: str = "s3",
    signed: dict[str, str] | None = None,
) -> dict[str, str]:
    """Headers that authenticate ``method path?query`` on ``host`` (``host[:port]`` as
    sent).

    ``path`` and ``query`` must already be canonical (:func:`canonical_path`,
    :func:`canonical_query`). ``payload_hash``: the body's SHA-256 in hex,
    :data:`EMPTY_SHA256` for none, or :data:`UNSIGNED_PAYLOAD`. ``signed``: more headers
    to send and sign (lower-case names; every ``x-amz-*`` header must be signed). Headers
    the caller adds afterwards (``Range``, ``Content-Length``) are sent unsigned.
    """
    amz_date = _amz_now() if now is None else now.astimezone(_dt.UTC).strftime(_AMZ_DATE)
    date = amz_date[:8]
    headers = {
        **(signed or {}),
        "host": host,
        "x-amz-content-sha256": payload_hash,
        "x-amz-date": amz_date,
    }
    if credentials.token:
        headers["x-amz-security-token"] = credentials.token
    names = sorted(headers)
    signed_headers = ";".join(names)
    canonical_request = "\n".join(
        (
            method,
            path,
            query,
            "".join(f"{n}:{headers[n].strip()}\n" for n in names),
            signed_headers,
            payload_hash,
        )
    )
    scope = f"{date}/{region}/{service}/aws4_request"
    string_to_sign = "\n".join(
        (_ALGORITHM, amz_date, scope, hashlib.sha256(canonical_request.encode()).hexdigest())
    )
    signature = hmac.digest(
        _signing_key(credentials.secret_key, date, region, service),
        string_to_sign.encode(),
        "sha256",
    ).hex()
    headers["authorization"] = (
        f"{_ALGORITHM} Credential={credentials.access_key}/{scope}, "
        f"SignedHeaders={signed_headers}, Signature={signature}"
    )
    return headers
