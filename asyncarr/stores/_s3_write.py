"""The S3 store's lean write path: PUTs (plain, create-if-absent, update-if-match),
DELETEs (plain and if-match) and multipart uploads, signed with :mod:`._sigv4` and sent on
the lean read path's routes and connections (:class:`~._s3_lean.LeanReader`).

Why: through botocore one 1 MiB PUT cost 3.2-3.6 ms of client CPU (SigV4's SHA-256 of
the payload over plain HTTP, the generic request pipeline, a CRC32, aiohttp's writes),
on a loopback service more than the service itself. Here a PUT is signed once, over its
headers only, and its body is handed to the transport without a copy.

Signing and integrity
    The body is not part of the signature (``x-amz-content-sha256: UNSIGNED-PAYLOAD``);
    its integrity rests on an ``x-amz-checksum-crc32c`` header, CRC32C computed with the
    native ``crc32c`` package (~30 GB/s here, against ~13 GB/s for ``google-crc32c``
    and ~6 GB/s for ``zlib.crc32`` at 1 MiB), which the service checks against the bytes
    it received and refuses with ``BadDigest`` (a transient fault: the body is sent
    again) and keeps with the object, so that reads check it too. The same form is used
    over HTTPS and plain HTTP. Over plain HTTP, AWS's SDKs stream the body in
    ``aws-chunked`` frames with the checksum in a trailer
    (``STREAMING-UNSIGNED-PAYLOAD-TRAILER``); moto and SeaweedFS accept both, but the
    header costs the same CRC pass (the value is in memory before the request starts),
    needs no framing that some S3-compatible services and proxies mishandle, and, unlike
    a trailer, is covered by the signature. Neither protects a plain-HTTP body against a
    deliberate forger (CRC32C is not a cryptographic hash): that takes HTTPS.

Multipart uploads
    Values of at least ``threshold`` bytes (:class:`MultipartConfig`) go up in parts of
    ``part_size`` bytes (grown where 10,000 parts would not hold the value), up to
    ``concurrency`` parts in flight, on the store's connection pool (its
    ``max_concurrency`` connections bound everything in flight). The upload asks for a
    full-object CRC32C (``x-amz-checksum-type: FULL_OBJECT``): each part carries its
    CRC32C, the completion the whole value's, so the stored object has the same checksum
    as a single PUT of it. A part that fails transiently is sent again (up to
    :data:`PART_ATTEMPTS` times; a part PUT is idempotent); any failure or cancellation
    aborts the upload, so no parts are left behind (where even the abort fails, the
    bucket's lifecycle rule for incomplete uploads is the last resort). Conditions
    (``If-None-Match``, ``If-Match``) go on the completion, where S3 checks them (the
    store sends conditional writes in one PUT below 5 GiB, see :mod:`._s3`).
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import logging
import random
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from xml.sax.saxutils import escape

import crc32c

from asyncarr._tasks import gather_all
from asyncarr.errors import ConfigError, StoreError, TransientStoreError
from asyncarr.stores._http1 import HTTPProtocolError, HTTPResponse
from asyncarr.stores._s3_lean import LeanReader, Route
from asyncarr.stores._sigv4 import (
    EMPTY_SHA256,
    UNSIGNED_PAYLOAD,
    canonical_path,
    canonical_query,
    sign_request,
)

__all__ = [
    "MAX_PARTS",
    "MIN_PART_SIZE",
    "PART_ATTEMPTS",
    "SINGLE_PUT_LIMIT",
    "Failure",
    "LeanWriter",
    "MultipartConfig",
    "crc32c_b64",
]

logger = logging.getLogger(__name__)

MIN_PART_SIZE = 5 << 20
"""S3's smallest part (all but the last)."""
SINGLE_PUT_LIMIT = 5 << 30
"""S3's largest single PUT, and largest part."""
MAX_PARTS = 10_000
PART_ATTEMPTS = 3
"""Tries per part before the upload fails (and is aborted)."""
_THREAD_CRC = 8 << 20
"""Bodies from this size on are checksummed in a worker thread (crc32c releases the GIL),
not on the event loop (~0.3 ms per 8 MiB)."""
_UPLOAD_ID_RE = re.compile(rb"<UploadId>([^<]{1,1024})</UploadId>")
_ERROR_RE = re.compile(rb"<Error>")

Failure = Callable[[HTTPResponse | Exception], StoreError]
"""The store's mapping of an error answer or a transport fault onto its error tree."""


@dataclass(frozen=True)
class MultipartConfig:
    """When and how values are uploaded in parts."""

    threshold: int = 64 << 20
    """Values of at least this many bytes are uploaded in parts."""
    part_size: int = 16 << 20
    """Bytes per part (at least 5 MiB: S3's minimum)."""
    concurrency: int = 8
    """Parts of one value in flight at once."""

    def __post_init__(self) -> None:
        for name in ("threshold", "part_size", "concurrency"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ConfigError(f"multipart {name} must be an integer >= 1, got {value!r}")
        if not MIN_PART_SIZE <= self.part_size <= SINGLE_PUT_LIMIT:
            raise ConfigError(
                f"multipart_part_size must be between 5 MiB and 5 GiB (S3's limits), "
                f"got {self.part_size}"
            )
        if self.threshold > SINGLE_PUT_LIMIT:
            raise ConfigError(
                f"multipart_threshold must be at most 5 GiB (S3's largest single PUT), "
                f"got {self.threshold}"
            )

    def parts(self, size: int) -> list[tuple[int, int]]:
        """``(start, stop)`` of each part of a ``size``-byte value."""
        part = max(self.part_size, -(-size // MAX_PARTS))
        return [(start, min(start + part, size)) for start in range(0, size, part)]


def crc32c_b64(data: bytes | memoryview) -> str:
    """The ``x-amz-checksum-crc32c`` value of ``data`` (base64 of the big-endian CRC)."""
    return base64.b64encode(crc32c.crc32c(data).to_bytes(4, "big")).decode("ascii")


async def _checksum(data: bytes | memoryview) -> str:
    if len(data) < _THREAD_CRC:
        return crc32c_b64(data)
    return await asyncio.to_thread(crc32c_b64, data)


class LeanWriter:
    """Value writes over the lean path's routes and connections (one event loop)."""

    def __init__(self, lean: LeanReader) -> None:
        self._lean = lean
        self._aborts: set[asyncio.Task[None]] = set()

    def route(self, bucket: str) -> Route | None:
        """Where ``bucket``'s requests go, once botocore has shown it (else ``None``)."""
        return self._lean.route(bucket)

    async def _send(
        self,
        route: Route,
        method: str,
        full_key: str,
        *,
        query: Mapping[str, str] | None = None,
        body: bytes | memoryview | None = None,
        payload_hash: str = EMPTY_SHA256,
        signed: Mapping[str, str] | None = None,
        idempotent: bool = True,
    ) -> HTTPResponse:
        path = route.path_prefix + canonical_path(full_key)
        canonical = canonical_query(query) if query else ""
        if route.region is None:  # anonymous
            headers = {"host": route.host, **(signed or {})}
        else:
            headers = sign_request(
                method,
                route.host,
                path,
                await self._lean.signing_credentials(),
                route.region,
                query=canonical,
                payload_hash=payload_hash,
                signed=dict(signed or {}),
            )
        target = f"{path}?{canonical}" if canonical else path
        return await self._lean.send(route, method, target, headers, body, idempotent=idempotent)

    # -- single requests ------------------------------------------------------------------
    async def put(
        self,
        route: Route,
        full_key: str,
        body: bytes,
        *,
        conditions: Mapping[str, str] | None = None,
    ) -> HTTPResponse:
        """One ``PutObject`` (``conditions``: ``if-none-match``/``if-match`` headers);
        the answer as it came (the caller maps errors), transport faults propagate."""
        signed = {
            "x-amz-checksum-crc32c": await _checksum(body),
            # (without it moto keeps no checksum with the object; AWS and SeaweedFS do)
            "x-amz-sdk-checksum-algorithm": "CRC32C",
            **(conditions or {}),
        }
        return await self._send(
            route,
            "PUT",
            full_key,
            body=body,
            payload_hash=UNSIGNED_PAYLOAD,
            signed=signed,
            idempotent=not conditions,
        )

    async def delete(
        self, route: Route, full_key: str, *, if_match: str | None = None
    ) -> HTTPResponse:
        """One ``DeleteObject`` (``if_match``: only if the ETag is still that)."""
        signed = {"if-match": if_match} if if_match is not None else None
        return await self._send(
            route, "DELETE", full_key, signed=signed, idempotent=if_match is None
        )

    # -- multipart ------------------------------------------------------------------------
    async def upload(
        self,
        route: Route,
        full_key: str,
        body: bytes,
        *,
        config: MultipartConfig,
        fail: Failure,
        conditions: Mapping[str, str] | None = None,
    ) -> None:
        """Store ``body`` with a multipart upload (see the module docstring); raises
        ``fail``'s errors, after aborting the upload."""
        whole = asyncio.ensure_future(_checksum(body))
        try:
            upload_id = await self._create(route, full_key, fail)
        except BaseException:
            whole.cancel()
            raise
        try:
            parts = await self._upload_parts(route, full_key, upload_id, body, config, fail)
            await self._complete(
                route, full_key, upload_id, parts, await whole, conditions or {}, fail
            )
        except BaseException:
            whole.cancel()
            await self._abort_shielded(route, full_key, upload_id)
            raise

    async def _request(
        self,
        fail: Failure,
        route: Route,
        method: str,
        full_key: str,
        *,
        query: Mapping[str, str],
        body: bytes | memoryview,
        payload_hash: str = EMPTY_SHA256,
        signed: Mapping[str, str],
        idempotent: bool = True,
    ) -> HTTPResponse:
        """:meth:`_send`, with transport faults and answers other than 200 raised as
        ``fail`` maps them."""
        try:
            resp = await self._send(
                route,
                method,
                full_key,
                query=query,
                body=body,
                payload_hash=payload_hash,
                signed=signed,
                idempotent=idempotent,
            )
        except Exception as exc:
            raise fail(exc) from exc
        if resp.status != 200 or _ERROR_RE.search(resp.body[:512]):
            # (CompleteMultipartUpload may answer 200 with an error in the body)
            raise fail(resp)
        return resp

    async def _create(self, route: Route, full_key: str, fail: Failure) -> str:
        resp = await self._request(
            fail,
            route,
            "POST",
            full_key,
            query={"uploads": ""},
            body=b"",
            signed={"x-amz-checksum-algorithm": "CRC32C", "x-amz-checksum-type": "FULL_OBJECT"},
            idempotent=False,
        )
        found = _UPLOAD_ID_RE.search(resp.body)
        if found is None:
            what = f"CreateMultipartUpload answered without an UploadId: {resp.body[:200]!r}"
            raise fail(HTTPProtocolError(what))
        return found.group(1).decode()

    async def _upload_parts(
        self,
        route: Route,
        full_key: str,
        upload_id: str,
        body: bytes,
        config: MultipartConfig,
        fail: Failure,
    ) -> list[tuple[str, str]]:
        """``(ETag, CRC32C)`` of each part, uploaded by at most ``concurrency`` workers."""
        view = memoryview(body)
        bounds = config.parts(len(view))
        done: list[tuple[str, str]] = [("", "")] * len(bounds)
        todo = iter(range(len(bounds)))

        async def worker() -> None:
            for index in todo:
                start, stop = bounds[index]
                done[index] = await self._part(
                    route, full_key, upload_id, index + 1, view[start:stop], fail
                )

        await gather_all(*(worker() for _ in range(min(config.concurrency, len(bounds)))))
        return done

    async def _part(
        self,
        route: Route,
        full_key: str,
        upload_id: str,
        number: int,
        data: memoryview,
        fail: Failure,
    ) -> tuple[str, str]:
        checksum = await _checksum(data)
        query = {"partNumber": str(number), "uploadId": upload_id}
        for attempt in range(1, PART_ATTEMPTS + 1):
            try:
                resp = await self._request(
                    fail,
                    route,
                    "PUT",
                    full_key,
                    query=query,
                    body=data,
                    payload_hash=UNSIGNED_PAYLOAD,
                    signed={"x-amz-checksum-crc32c": checksum},
                )
            except TransientStoreError:
                if attempt == PART_ATTEMPTS:
                    raise
                await asyncio.sleep(random.uniform(0, 0.05 * 2**attempt))
                continue
            etag = resp.headers.get("etag")
            if not etag:
                raise fail(HTTPProtocolError(f"UploadPart {number} answered without an ETag"))
            return etag, checksum
        raise AssertionError("unreachable")  # pragma: no cover

    async def _complete(
        self,
        route: Route,
        full_key: str,
        upload_id: str,
        parts: list[tuple[str, str]],
        whole: str,
        conditions: Mapping[str, str],
        fail: Failure,
    ) -> None:
        xml = "".join(
            f"<Part><PartNumber>{number}</PartNumber><ETag>{escape(etag)}</ETag>"
            f"<ChecksumCRC32C>{checksum}</ChecksumCRC32C></Part>"
            for number, (etag, checksum) in enumerate(parts, 1)
        )
        body = (
            '<CompleteMultipartUpload xmlns="http://s3.amazonaws.com/doc/2006-03-01/">'
            f"{xml}</CompleteMultipartUpload>"
        ).encode()
        await self._request(
            fail,
            route,
            "POST",
            full_key,
            query={"uploadId": upload_id},
            body=body,
            payload_hash=hashlib.sha256(body).hexdigest(),
            signed={
                "x-amz-checksum-crc32c": whole,
                "x-amz-checksum-type": "FULL_OBJECT",
                **conditions,
            },
            idempotent=False,
        )

    async def _abort(self, route: Route, full_key: str, upload_id: str) -> None:
        """``AbortMultipartUpload``, tried a few times; a failure is logged, not raised
        (the upload's own error is the one that matters)."""
        for attempt in range(1, PART_ATTEMPTS + 1):
            try:
                resp = await self._send(route, "DELETE", full_key, query={"uploadId": upload_id})
            except Exception as exc:
                problem = f"{type(exc).__name__}: {exc}"
            else:
                if resp.status in (200, 204, 404):  # 404: NoSuchUpload (gone already)
                    return
                problem = f"HTTP {resp.status} {resp.body[:200]!r}"
            if attempt < PART_ATTEMPTS:
                await asyncio.sleep(0.05 * 2**attempt)
        logger.warning(
            "could not abort the multipart upload of %r (%s); its parts stay until the "
            "bucket's lifecycle rule for incomplete uploads removes them",
            full_key,
            problem,
        )

    async def _abort_shielded(self, route: Route, full_key: str, upload_id: str) -> None:
        """Abort even when the caller is being cancelled (the abort runs to its end in a
        task of its own; cancelling the wait for it leaves it running)."""
        task = asyncio.ensure_future(self._abort(route, full_key, upload_id))
        self._aborts.add(task)
        task.add_done_callback(self._aborts.discard)
        await asyncio.shield(task)  # cancelled while waiting: the abort still goes on
