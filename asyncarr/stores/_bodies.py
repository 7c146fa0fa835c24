"""Reading response bodies from servers that may be broken or hostile, within a bound.

Every store that talks to a server reads a value's body through these helpers, so that
no answer can make it hold more than the caller expects:

* :func:`read_limit`: how many bytes an answer may carry: the requested range's length
  (a ``ByteRange`` or ``SuffixRange`` bounds itself), else the caller's ``max_size``
  (the most a chunk of the array can encode to, the metadata size limit, ...).
* :func:`read_body`: collects a streamed body, refusing a ``Content-Length`` over the
  limit before reading anything and stopping at the first byte past it
  (:class:`~asyncarr.errors.ValueTooLargeError`); a body shorter than its
  ``Content-Length`` is a :class:`~asyncarr.errors.TruncatedReadError`. A whole value
  sent for a ranged request (a server that ignores ``Range``) is streamed through,
  keeping only the requested bytes. A ``Content-Encoding`` nobody asked for is decoded
  (gzip, deflate) within the same limit, or refused; never inflated unbounded.
* :func:`ranged_part`: checks a ``206`` answer against the range that was asked for and
  against its ``Content-Range``: a short or misplaced body is a ``TruncatedReadError``
  (retried, never decoded), whatever ``Content-Length`` said.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import re
import zlib
from collections.abc import AsyncIterator
from typing import Any

import crc32c

from asyncarr._types import ByteRange, RangeRequest, SuffixRange, range_to_slice
from asyncarr.errors import StoreError, TruncatedReadError, ValueTooLargeError

__all__ = [
    "API_ANSWER_LIMIT",
    "ContentRange",
    "bounded_session_options",
    "check_digest",
    "parse_content_range",
    "range_length",
    "ranged_part",
    "read_body",
    "read_limit",
    "read_response",
    "too_large",
    "whole_value_part",
]

_CONTENT_RANGE = re.compile(r"^\s*bytes\s+(?:(\d+)-(\d+)|\*)\s*/\s*(\d+|\*)\s*$", re.IGNORECASE)
_IDENTITY = ("", "identity")
_DECODERS = {"gzip": 16 + zlib.MAX_WBITS, "x-gzip": 16 + zlib.MAX_WBITS, "deflate": zlib.MAX_WBITS}
_PIECE = 1 << 16


ContentRange = tuple[int | None, int | None, int | None]
"""``(first, last, total)`` of a ``Content-Range`` header; ``None`` for ``*``."""


def parse_content_range(value: str | None) -> ContentRange | None:
    """``Content-Range: bytes first-last/total`` (``*`` parts as ``None``); ``None`` when
    the header is absent or malformed."""
    match = _CONTENT_RANGE.match(value or "")
    if match is None:
        return None
    first, last, total = match.groups()
    return (
        None if first is None else int(first),
        None if last is None else int(last),
        None if total == "*" else int(total),
    )


def range_length(rng: RangeRequest | None) -> int | None:
    """How many bytes ``rng`` asks for at most (``None``: to the end of the value)."""
    if isinstance(rng, ByteRange | SuffixRange):
        return rng.length
    return None


def read_limit(rng: RangeRequest | None, max_size: int | None) -> int | None:
    """The most bytes an answer for ``rng`` may hold: the range's own length, else
    ``max_size`` (``None``: unbounded)."""
    length = range_length(rng)
    if length is None:
        return max_size
    return length if max_size is None else min(length, max_size)


def too_large(store: object, key: str, size: int | None, limit: int) -> ValueTooLargeError:
    """The error for an answer of ``size`` bytes (``None``: still growing) over ``limit``."""
    what = "" if size is None else f" ({size} bytes)"
    return ValueTooLargeError(
        f"the value{what} is larger than the {limit} bytes this read accepts; not read further",
        store=store,
        key=key,
    )


class _Keep:
    """Keeps the bytes of ``rng`` out of a whole value streamed through it."""

    def __init__(self, rng: RangeRequest, declared: int | None) -> None:
        self.suffix: int | None = None
        if isinstance(rng, SuffixRange) and declared is None:
            self.start, self.stop = 0, None
            self.suffix = rng.length  # the size is unknown: keep a window of the last bytes
        else:
            want = range_to_slice(rng, declared if declared is not None else 1 << 62)
            self.start, self.stop = want.start, want.stop if declared is not None else None
            if isinstance(rng, ByteRange):
                self.stop = want.stop
        self.pos = 0
        self.out = bytearray()

    @property
    def done(self) -> bool:
        return self.stop is not None and self.pos >= self.stop

    def feed(self, piece: bytes) -> None:
        end = self.pos + len(piece)
        lo = max(self.start, self.pos)
        hi = end if self.stop is None else min(self.stop, end)
        if hi > lo:
            self.out += piece[lo - self.pos : hi - self.pos]
        if self.suffix is not None and len(self.out) > self.suffix:
            del self.out[: len(self.out) - self.suffix]
        self.pos = end


async def read_body(
    pieces: AsyncIterator[bytes],
    *,
    store: object,
    key: str,
    declared: int | None,
    limit: int | None,
    encoding: str | None = None,
    whole_for: RangeRequest | None = None,
) -> bytes:
    """Collect a response body from ``pieces`` within ``limit`` bytes.

    ``declared`` is its ``Content-Length`` (``None``: unknown, e.g. chunked), checked
    against ``limit`` before anything is read and against what arrives.
    ``encoding`` is its ``Content-Encoding``: gzip and deflate are decoded (the limit
    then bounds the decoded bytes), others refused. ``whole_for``: the server sent the
    whole value for this ranged request; only those bytes are kept (and reading stops
    once they are in, for a range with an end).
    """
    coding = (encoding or "").strip().lower()
    if coding not in _IDENTITY and (whole_for is not None or coding not in _DECODERS):
        raise StoreError(
            f"the server sent a body with Content-Encoding {encoding!r}, which was not "
            "asked for" + (" (for a ranged read)" if coding in _DECODERS else ""),
            store=store,
            key=key,
        )
    decoder = zlib.decompressobj(_DECODERS[coding]) if coding in _DECODERS else None
    unbounded = whole_for is not None or decoder is not None or limit is None
    if not unbounded and declared is not None and limit is not None and declared > limit:
        raise too_large(store, key, declared, limit)
    keep = None if whole_for is None else _Keep(whole_for, declared)
    out = bytearray()
    received = 0
    async for piece in pieces:
        received += len(piece)
        if declared is not None and received > declared:
            raise StoreError(
                f"the server sent more than the {declared} bytes its Content-Length announced",
                store=store,
                key=key,
            )
        if keep is not None:
            keep.feed(piece)
            if keep.done:
                return bytes(keep.out)
            if limit is not None and len(keep.out) > limit:
                raise too_large(store, key, None, limit)
            continue
        if decoder is not None:
            _inflate(decoder, piece, out, limit, store, key)
            continue
        out += piece
        if limit is not None and len(out) > limit:
            raise too_large(store, key, None, limit)
    if declared is not None and received < declared:
        raise TruncatedReadError(
            f"got {received} of the {declared} bytes announced by Content-Length",
            store=store,
            key=key,
        )
    if keep is not None:
        return bytes(keep.out)
    if decoder is not None and not decoder.eof:
        raise TruncatedReadError(
            f"the {coding}-encoded body ended before its stream did", store=store, key=key
        )
    return bytes(out)


def _inflate(
    decoder: zlib._Decompress,
    piece: bytes,
    out: bytearray,
    limit: int | None,
    store: object,
    key: str,
) -> None:
    """Decode ``piece`` into ``out``, never producing more than ``limit`` bytes in all."""
    data = piece
    while data and not decoder.eof:
        room = _PIECE if limit is None else limit - len(out) + 1
        try:
            out += decoder.decompress(data, max(1, room))
        except zlib.error as exc:
            raise StoreError(
                f"the server's Content-Encoding stream is corrupt: {exc}", store=store, key=key
            ) from exc
        if limit is not None and len(out) > limit:
            raise too_large(store, key, None, limit)
        data = decoder.unconsumed_tail


def ranged_part(
    store: object,
    key: str,
    rng: RangeRequest,
    body: bytes,
    content_range: str | None,
) -> bytes:
    """The bytes of ``rng`` out of a ``206`` answer's ``body``, checked against the range
    that was asked for and against ``Content-Range``.

    A body of another length than its ``Content-Range`` announces, or one that does not
    cover the requested bytes (short, or starting elsewhere), raises
    :class:`TruncatedReadError`: retried, never decoded.
    """
    parsed = parse_content_range(content_range)
    first, last, total = parsed if parsed is not None else (None, None, None)
    if first is None or last is None:
        raise StoreError(
            f"206 answer without a usable Content-Range ({content_range!r})", store=store, key=key
        )
    empty = last == first - 1 and not body and total is not None  # (Azurite: "bytes 9-8/9")
    if empty and total is not None and not _selects(rng, total):
        return b""
    if last < first or last - first + 1 != len(body):
        raise TruncatedReadError(
            f"Content-Range {first}-{last} announces {last - first + 1} bytes, the body "
            f"has {len(body)}",
            store=store,
            key=key,
        )
    if total is not None:
        if last >= total:
            raise StoreError(f"invalid Content-Range {content_range!r}", store=store, key=key)
        size = total
    elif isinstance(rng, SuffixRange):  # cannot place a suffix without the size
        raise StoreError("206 answer without the total size", store=store, key=key)
    else:  # a server sends fewer bytes than asked only where the value ends
        size = last + 1
    want = range_to_slice(rng, size)
    if want.start < first or want.stop > last + 1:
        raise TruncatedReadError(
            f"asked for bytes [{want.start}, {want.stop}) of {size}, the answer holds "
            f"[{first}, {last + 1})",
            store=store,
            key=key,
        )
    return body[want.start - first : want.stop - first]


def _selects(rng: RangeRequest, size: int) -> bool:
    want = range_to_slice(rng, size)
    return bool(want.stop > want.start)


def whole_value_part(rng: RangeRequest | None, body: bytes) -> bytes:
    """The bytes of ``rng`` out of a whole value (a ``200`` answer to a ranged GET)."""
    return body if rng is None else body[range_to_slice(rng, len(body))]


API_ANSWER_LIMIT = 64 << 20
"""Most bytes of an SDK's own answer (a JSON listing page, object metadata, an error
document) read through :func:`bounded_session_options` (they are kilobytes)."""


@functools.cache
def _bounded_response_class() -> type:
    import aiohttp

    class BoundedClientResponse(aiohttp.ClientResponse):
        """An aiohttp response whose :meth:`read` (what SDKs use for JSON and XML answers)
        stops at :data:`API_ANSWER_LIMIT` bytes; streamed reads are the caller's to bound."""

        async def read(self) -> bytes:
            if self._body is None:
                declared = self.content_length
                limit = API_ANSWER_LIMIT
                try:
                    if declared is not None and declared > limit:
                        raise too_large(self.url.host, self.url.path, declared, limit)
                    data = bytearray()
                    async for piece in self.content.iter_chunked(_PIECE):
                        data += piece
                        if len(data) > limit:
                            raise too_large(self.url.host, self.url.path, None, limit)
                except BaseException:
                    self.close()
                    raise
                self._body = bytes(data)
            return await super().read()

    return BoundedClientResponse


def bounded_session_options() -> dict[str, Any]:
    """``aiohttp.ClientSession`` keyword arguments for an SDK's session: bodies are never
    decompressed behind the store's back (a gzip bomb), and whole-body reads stop at
    :data:`API_ANSWER_LIMIT`."""
    return {"auto_decompress": False, "response_class": _bounded_response_class()}


async def read_response(
    resp: Any,
    *,
    store: object,
    key: str,
    rng: RangeRequest | None,
    max_size: int | None,
) -> bytes:
    """:func:`read_body` for an aiohttp response to a GET of ``rng`` (a ``200`` to a
    ranged request: the whole value, of which only the range is kept), decoding an
    unrequested gzip or deflate ``Content-Encoding`` within the bound."""
    declared = resp.content_length
    limit = read_limit(rng, max_size)
    whole_for = rng if resp.status == 200 else None
    encoding = resp.headers.get("Content-Encoding")
    plain = (encoding or "").strip().lower() in _IDENTITY
    if (
        whole_for is None
        and plain
        and declared is not None
        and (limit is None or declared <= limit)
    ):
        # the common case in one read (aiohttp's parser stops at Content-Length): no pieces
        body: bytes = await resp.content.read()
        if len(body) != declared:
            raise TruncatedReadError(
                f"got {len(body)} of the {declared} bytes announced by Content-Length",
                store=store,
                key=key,
            )
        return body
    return await read_body(
        resp.content.iter_chunked(_PIECE),
        store=store,
        key=key,
        declared=declared,
        limit=limit,
        encoding=encoding,
        whole_for=whole_for,
    )


_DIGESTS = {
    "md5": lambda data: hashlib.md5(data, usedforsecurity=False).digest(),
    "crc32c": lambda data: crc32c.crc32c(data).to_bytes(4, "big"),
}


def check_digest(store: object, key: str, algorithm: str, sent: str, data: bytes) -> None:
    """``data`` against the base64 ``algorithm`` digest (``md5`` or ``crc32c``) a service
    sent with it: a mismatch (damaged on its way) is a :class:`TruncatedReadError`,
    retried, never decoded."""
    actual = base64.b64encode(_DIGESTS[algorithm](data)).decode("ascii")
    if actual != sent.strip():
        raise TruncatedReadError(
            f"the body's {algorithm} {actual} does not match the {sent.strip()} sent with it "
            "(damaged on its way)",
            store=store,
            key=key,
        )
