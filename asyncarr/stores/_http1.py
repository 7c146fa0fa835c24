"""A small HTTP/1.1 client for one thing: many object requests (GETs of bodies, PUTs of
them, DELETEs) on keep-alive connections, with as little CPU per request as asyncio allows.

Why it exists: the S3 store's value reads are CPU-bound on the event loop when the
service is close (loopback, same zone). aiohttp spent ~0.8 ms of CPU per 256 KiB GET
here (request and response objects, header multidicts, stream readers, timers); this
client spends a fraction of that (measured figures in docs/benchmarks.md). It is used by
:mod:`._s3_lean` for direct requests (value reads and writes); anything else (proxies,
listings and the other calls) keeps aiohttp or botocore.

What it does:

* Connections (``asyncio`` transports, TLS included) are kept per origin and reused,
  most recently used first, at most ``connections`` in use at once.
* The response body is received straight into one buffer of its ``Content-Length``
  (:class:`asyncio.BufferedProtocol`): no chunk lists, no joins; then copied out once as
  ``bytes``. Each connection keeps that buffer for bodies up to :data:`KEEP_BUFFER`
  (warm memory, nothing to zero per response) besides a 64 KiB scratch buffer, so an
  open connection holds at most ~1.1 MiB. ``Transfer-Encoding: chunked`` and bodies
  delimited by the connection's end are read too.
* A request body (``bytes``) is handed to the transport with the head in one
  ``writelines`` (no copy); ``Content-Length`` is added. A response that arrives before
  the whole body was sent (an early refusal) is returned, and its connection is not
  reused. While a body is being sent, draining bytes counts as activity for the read
  timeout (a large upload on a slow link is not "no data for ``read_timeout``").
* A reused connection that the server had already closed (its idle timeout raced the
  request: nothing at all came back) is replaced and the request sent once more, if it is
  idempotent (GETs, unconditional PUTs, DELETEs: the caller says); a conditional write
  is not re-sent behind the caller's back, whose retry logic must know that an attempt
  may have landed. Any other fault raises: ``OSError`` subclasses for the transport
  (:class:`ConnectionError` for resets and refusals, :class:`IncompleteBodyError` for a
  body cut short, :class:`HTTPProtocolError` for a response that is not HTTP/1.x), and
  :class:`TimeoutError` when connecting takes longer than ``connect_timeout`` or no byte
  arrives for ``read_timeout`` seconds. The caller maps these (the S3 store: transient,
  retried).
* A body longer than the request's ``max_body`` is refused: a larger ``Content-Length``
  before any of the body is received, a chunked or until-close body at the first byte
  past it (:class:`BodyTooLargeError`, not a connection fault); the connection is
  dropped, never reused.
* A cancelled request aborts its connection (its state is unknown); the others go on.

Not supported, on purpose: streamed request bodies, pipelining, ``Expect``, redirects (S3
requests are not redirected once botocore has shown the route), content decoding (bodies are
returned as stored, as botocore does), proxies (the caller uses aiohttp for those).
"""

from __future__ import annotations

import asyncio
import re
import ssl
from collections.abc import Sequence
from dataclasses import dataclass

__all__ = [
    "BodyTooLargeError",
    "HTTP1Client",
    "HTTPProtocolError",
    "HTTPResponse",
    "IncompleteBodyError",
    "Origin",
]

MAX_HEAD = 64 * 1024
"""Longest status line plus headers accepted (a response past it is refused)."""
MAX_ERROR_BODY = 1024 * 1024
"""Longest body of a non-2xx answer accepted (error documents are short)."""
KEEP_BUFFER = 1024 * 1024
"""Each connection keeps a receive buffer for bodies up to this size (1 MiB)."""
_SCRATCH = 64 * 1024
"""Receive buffer for headers, chunked bodies and bodies of unknown length."""


class HTTPProtocolError(ConnectionError):
    """The server's answer is not a well-formed HTTP/1.x response."""


class IncompleteBodyError(ConnectionError):
    """The connection ended before the whole body arrived."""


class BodyTooLargeError(Exception):
    """The body is longer than the request's ``max_body`` (not a connection fault: a
    retry would get the same answer). ``size`` is its ``Content-Length``, or ``None``
    where it was still growing when reading stopped."""

    def __init__(self, size: int | None, limit: int) -> None:
        what = "" if size is None else f" ({size} bytes)"
        super().__init__(f"the response body{what} is longer than the limit of {limit} bytes")
        self.size = size
        self.limit = limit


class _StaleConnectionError(ConnectionError):
    """A reused connection ended before any byte of the response (the server closed it)."""


@dataclass(frozen=True, slots=True)
class Origin:
    """Where requests go: ``scheme`` is ``http`` or ``https``; ``host`` without brackets."""

    scheme: str
    host: str
    port: int


@dataclass(frozen=True, slots=True)
class HTTPResponse:
    status: int
    headers: dict[str, str]
    """Header names in lower case; repeated headers joined with ``", "``."""
    body: bytes


_HEAD, _FIXED, _CHUNKED, _UNTIL_CLOSE, _IDLE = range(5)

_HEADER_RE = re.compile(r"^([!#$%&'*+.^_`|~0-9A-Za-z-]+):[ \t]*(.*?)[ \t]*\r?$", re.MULTILINE)
"""One header line: a token, a colon, the value without surrounding blanks."""


class _Connection(asyncio.BufferedProtocol):
    """One HTTP/1.1 connection: sends a request, parses one response at a time."""

    def __init__(self, loop: asyncio.AbstractEventLoop, read_timeout: float) -> None:
        self._loop = loop
        self._read_timeout = read_timeout
        self.transport: asyncio.Transport | None = None
        self.closed = False
        self.reused = False
        self._state = _IDLE
        self._scratch = bytearray(_SCRATCH)
        self._scratch_view = memoryview(self._scratch)
        self._recv = bytearray()
        self._waiter: asyncio.Future[HTTPResponse] | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._last_data = 0.0
        self._unsent = 0  # request bytes still in the transport's buffer, at the last look
        self._max_body: int | None = None
        self._reset_response()

    def _reset_response(self) -> None:
        self._head = bytearray()
        self._status = 0
        self._headers: dict[str, str] = {}
        self._keep_alive = True
        self._body = bytearray()  # chunked and until-close bodies
        self._fixed = self._scratch_view[:0]  # where a Content-Length body is received
        self._filled = 0
        self._chunk_left = 0  # chunked: body bytes left in the current chunk (-1: trailers)
        self._pending = bytearray()  # chunked: an incomplete size line

    # -- asyncio protocol ---------------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    def get_buffer(self, sizehint: int) -> memoryview:
        if self._state == _FIXED:
            return self._fixed[self._filled :]
        return self._scratch_view

    def buffer_updated(self, nbytes: int) -> None:
        self._last_data = self._loop.time()
        try:
            if self._state == _FIXED:
                self._filled += nbytes
                if self._filled == len(self._fixed):
                    self._finish()
            elif self._state == _HEAD:
                self._on_head(self._scratch_view[:nbytes])
            elif self._state == _CHUNKED:
                self._on_chunked(self._scratch_view[:nbytes])
            elif self._state == _UNTIL_CLOSE:
                self._body += self._scratch_view[:nbytes]
                self._check_growing()
            else:  # bytes nobody asked for: the connection cannot be trusted any more
                self._fail(HTTPProtocolError("data arrived on an idle HTTP connection"))
        except (HTTPProtocolError, BodyTooLargeError) as exc:
            self._fail(exc)

    def _body_limit(self) -> int | None:
        """``max_body`` for a 2xx answer's body, :data:`MAX_ERROR_BODY` for any other."""
        return self._max_body if 200 <= self._status < 300 else MAX_ERROR_BODY

    def _check_growing(self) -> None:
        """Stop a chunked or until-close body at the first byte past its limit."""
        limit = self._body_limit()
        if limit is not None and len(self._body) > limit:
            raise BodyTooLargeError(None, limit)

    def eof_received(self) -> bool:
        return False  # close the transport; connection_lost settles the request

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self._cancel_timer()
        waiter = self._waiter
        if waiter is None or waiter.done():
            return
        if self._state == _UNTIL_CLOSE and exc is None:
            self._finish()
            return
        if self._state == _HEAD and not self._head:
            waiter.set_exception(
                _StaleConnectionError("the server closed the connection without answering")
            )
        elif self._state == _HEAD:
            waiter.set_exception(HTTPProtocolError("the connection ended inside the headers"))
        else:
            got = self._filled if self._state == _FIXED else len(self._body)
            waiter.set_exception(
                IncompleteBodyError(
                    f"the connection ended after {got} body bytes"
                    + (f" of {len(self._fixed)}" if self._state == _FIXED else "")
                    + (f" ({exc})" if exc is not None else "")
                )
            )

    # -- requests -------------------------------------------------------------------------
    async def request(
        self, head: bytes, body: bytes | memoryview | None = None, max_body: int | None = None
    ) -> HTTPResponse:
        """Send ``head`` (request line and headers) and ``body``; return the response, whose
        body may be at most ``max_body`` bytes if it is a 2xx answer
        (:class:`BodyTooLargeError`: a longer ``Content-Length`` before any of it is
        received, or the first byte past it)."""
        transport = self.transport
        assert transport is not None and self._state == _IDLE
        self._reset_response()
        self._max_body = max_body
        self._state = _HEAD
        waiter: asyncio.Future[HTTPResponse] = self._loop.create_future()
        self._waiter = waiter
        self._last_data = self._loop.time()
        self._timer = self._loop.call_at(self._last_data + self._read_timeout, self._check_idle)
        if body:
            transport.writelines((head, body))
            self._unsent = transport.get_write_buffer_size()
        else:
            self._unsent = 0
            transport.write(head)
        try:
            return await waiter
        except BaseException:
            self.abort()  # cancelled or failed mid-response: the stream's state is unknown
            raise
        finally:
            self._waiter = None
            self._cancel_timer()

    def abort(self) -> None:
        self.closed = True
        if self.transport is not None:
            self.transport.abort()

    def _check_idle(self) -> None:
        """The read timeout: fires ``read_timeout`` after the last byte, not per byte."""
        self._timer = None
        if self._unsent and self.transport is not None:  # still sending a request body
            unsent = self.transport.get_write_buffer_size()
            if unsent != self._unsent:  # it drains: the peer is reading
                self._unsent = unsent
                self._last_data = self._loop.time()
        due = self._last_data + self._read_timeout
        if self._loop.time() < due:
            self._timer = self._loop.call_at(due, self._check_idle)
            return
        self._fail(TimeoutError(f"no data from the server for {self._read_timeout:g} s"))

    def _cancel_timer(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _fail(self, exc: Exception) -> None:
        waiter = self._waiter
        self._state = _IDLE
        self.abort()
        if waiter is not None and not waiter.done():
            waiter.set_exception(exc)

    def _finish(self) -> None:
        waiter = self._waiter
        body = bytes(self._fixed if self._state == _FIXED else self._body)
        self._state = _IDLE
        if not self._keep_alive:
            self.closed = True
            assert self.transport is not None
            self.transport.close()
        if waiter is not None and not waiter.done():
            waiter.set_result(HTTPResponse(self._status, self._headers, body))

    # -- parsing ----------------------------------------------------------------------------
    def _on_head(self, data: memoryview) -> None:
        start = max(0, len(self._head) - 3)
        self._head += data
        end = self._head.find(b"\r\n\r\n", start)
        if end < 0:
            if len(self._head) > MAX_HEAD:
                raise HTTPProtocolError(f"response headers longer than {MAX_HEAD} bytes")
            return
        head, rest = self._head[:end], self._head[end + 4 :]
        self._parse_head(bytes(head))
        if 100 <= self._status < 200:  # an interim answer (100 Continue): the real one follows
            self._head = bytearray()
            if rest:
                self._on_head(memoryview(rest))
            return
        self._start_body(memoryview(rest))

    def _parse_head(self, head: bytes) -> None:
        text = head.decode("latin-1")
        status_line, _, fields = text.partition("\r\n")
        parts = status_line.split(" ", 2)
        if len(parts) < 2 or not parts[0].startswith("HTTP/1.") or not parts[1].isdigit():
            raise HTTPProtocolError(f"not an HTTP/1.x status line: {status_line[:80]!r}")
        self._status = int(parts[1])
        pairs = _HEADER_RE.findall(fields)
        if len(pairs) != (fields.count("\n") + 1 if fields else 0):
            bad = next(line for line in fields.split("\n") if not _HEADER_RE.fullmatch(line))
            raise HTTPProtocolError(f"malformed header line {bad[:80]!r}")
        headers = {name.lower(): value for name, value in pairs}
        if len(headers) != len(pairs):  # repeated names: join their values
            headers = {}
            for name, value in pairs:
                key = name.lower()
                headers[key] = f"{headers[key]}, {value}" if key in headers else value
        self._headers = headers
        connection = headers.get("connection", "").lower()
        if parts[0] == "HTTP/1.0":
            self._keep_alive = "keep-alive" in connection
        else:
            self._keep_alive = "close" not in connection

    def _start_body(self, rest: memoryview) -> None:
        headers = self._headers
        if self._status in (204, 304):
            self._finish_with(rest)
            return
        if "chunked" in headers.get("transfer-encoding", "").lower():
            self._state = _CHUNKED
            self._on_chunked(rest)
            return
        length_text = headers.get("content-length")
        if length_text is None:
            self._state = _UNTIL_CLOSE
            self._keep_alive = False
            self._body += rest
            return
        if not length_text.isdigit():
            raise HTTPProtocolError(f"invalid Content-Length {length_text[:40]!r}")
        length = int(length_text)
        limit = self._body_limit()
        if limit is not None and length > limit:
            raise BodyTooLargeError(length, limit)
        if len(rest) > length:
            raise HTTPProtocolError(f"{len(rest)} bytes arrived for a body of {length}")
        if length > len(self._recv):
            # received here, then copied out as bytes: a buffer kept per connection (warm
            # memory, no zeroing per response) up to KEEP_BUFFER; larger bodies get their own
            buffer = bytearray(length)
            if length <= KEEP_BUFFER:
                self._recv = buffer
        else:
            buffer = self._recv
        self._fixed = memoryview(buffer)[:length]
        self._fixed[: len(rest)] = rest
        self._filled = len(rest)
        self._state = _FIXED
        if self._filled == length:
            self._finish()

    def _finish_with(self, rest: memoryview) -> None:
        if rest:
            raise HTTPProtocolError(f"{len(rest)} bytes arrived after a response without body")
        self._finish()

    def _on_chunked(self, data: memoryview) -> None:
        """``Transfer-Encoding: chunked``: sizes in hex lines, data, a 0 chunk, trailers."""
        raw = bytes(data)
        pos, n = 0, len(raw)
        while pos < n:
            if self._chunk_left > 0:  # inside a chunk's data
                take = min(self._chunk_left, n - pos)
                self._body += raw[pos : pos + take]
                self._check_growing()
                self._chunk_left -= take
                pos += take
                if self._chunk_left == 0:
                    self._chunk_left = -2  # its CRLF comes next
                continue
            line_end = raw.find(b"\n", pos)
            if line_end < 0:
                self._pending += raw[pos:]
                if len(self._pending) > MAX_HEAD:
                    raise HTTPProtocolError("chunked body: size line too long")
                return
            line = bytes(self._pending + raw[pos:line_end]).rstrip(b"\r")
            self._pending = bytearray()
            pos = line_end + 1
            if self._chunk_left == -2:  # the CRLF after a chunk's data
                if line:
                    raise HTTPProtocolError("chunked body: data longer than its chunk size")
                self._chunk_left = 0
            elif self._chunk_left == -1:  # trailers, up to an empty line
                if not line:
                    if pos != n:
                        raise HTTPProtocolError("bytes arrived after a chunked body")
                    self._finish()
                    return
            else:
                size_text = line.split(b";", 1)[0].strip()
                try:
                    size = int(size_text, 16)
                except ValueError:
                    raise HTTPProtocolError(f"chunked body: bad size line {line[:40]!r}") from None
                if size < 0:
                    raise HTTPProtocolError(f"chunked body: bad size line {line[:40]!r}")
                self._chunk_left = size if size else -1


class HTTP1Client:
    """Requests over pooled HTTP/1.1 connections, on the event loop that first uses it.

    ``connections`` bounds the requests in flight (others wait for a connection);
    ``ssl_context`` is used for ``https`` origins.
    """

    def __init__(
        self,
        *,
        connections: int,
        connect_timeout: float,
        read_timeout: float,
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        if connections < 1:
            raise ValueError(f"connections must be >= 1, got {connections}")
        self._connect_timeout = connect_timeout
        self._read_timeout = read_timeout
        self._ssl = ssl_context
        self._slots = asyncio.Semaphore(connections)
        self._idle: dict[Origin, list[_Connection]] = {}
        self._closed = False

    async def get(
        self,
        origin: Origin,
        target: str,
        headers: Sequence[tuple[str, str]],
        *,
        max_body: int | None = None,
    ) -> HTTPResponse:
        """``GET target`` (an encoded path) from ``origin`` with ``headers`` (``Host`` is
        added unless given); the body may be at most ``max_body`` bytes
        (:class:`BodyTooLargeError`). Raises the exceptions the module docstring lists."""
        return await self.request("GET", origin, target, headers, max_body=max_body)

    async def request(
        self,
        method: str,
        origin: Origin,
        target: str,
        headers: Sequence[tuple[str, str]],
        body: bytes | memoryview | None = None,
        *,
        idempotent: bool = True,
        max_body: int | None = None,
    ) -> HTTPResponse:
        """``method target`` (an encoded path and query) on ``origin`` with ``headers``
        (``Host`` is added unless given) and ``body`` (``Content-Length`` is added; ``None``:
        no body). ``idempotent=False``: never re-sent on a connection the server had closed
        (the caller's retry decides). A 2xx answer's body may be at most ``max_body`` bytes
        (:class:`BodyTooLargeError`), any other's :data:`MAX_ERROR_BODY`. Raises the
        exceptions the module docstring lists."""
        if self._closed:
            raise ConnectionError("the HTTP client is closed")
        lines = [f"{method} {target} HTTP/1.1"]
        if not any(name.lower() == "host" for name, _ in headers):
            default = 443 if origin.scheme == "https" else 80
            host = f"[{origin.host}]" if ":" in origin.host else origin.host
            lines.append(
                f"host: {host}" if origin.port == default else f"host: {host}:{origin.port}"
            )
        lines.extend(f"{name}: {value}" for name, value in headers)
        if body is not None:
            lines.append(f"content-length: {len(body)}")
        data = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")
        async with self._slots:
            for _attempt in range(3):
                conn = self._take_idle(origin) or await self._connect(origin)
                try:
                    response = await conn.request(data, body, max_body)
                except _StaleConnectionError:
                    if conn.reused and idempotent:
                        continue  # the server had closed it while idle: try a fresh one
                    raise ConnectionResetError(
                        f"{origin.host}:{origin.port} closed the connection without answering"
                    ) from None
                if conn.transport is not None and conn.transport.get_write_buffer_size():
                    conn.abort()  # answered before the whole body was sent: out of step
                if not conn.closed and not self._closed:
                    conn.reused = True
                    self._idle.setdefault(origin, []).append(conn)
                elif not conn.closed:
                    conn.abort()
                return response
            raise ConnectionResetError(
                f"{origin.host}:{origin.port} kept closing connections without answering"
            )

    def _take_idle(self, origin: Origin) -> _Connection | None:
        idle = self._idle.get(origin)
        while idle:
            conn = idle.pop()
            # closing: the peer's end was seen, connection_lost has not run yet
            if not conn.closed and conn.transport is not None and not conn.transport.is_closing():
                return conn
        return None

    async def _connect(self, origin: Origin) -> _Connection:
        loop = asyncio.get_running_loop()
        secure = origin.scheme == "https"
        try:
            async with asyncio.timeout(self._connect_timeout):
                _, protocol = await loop.create_connection(
                    lambda: _Connection(loop, self._read_timeout),
                    origin.host,
                    origin.port,
                    ssl=(self._ssl or ssl.create_default_context()) if secure else None,
                    server_hostname=origin.host if secure else None,
                )
        except TimeoutError:
            raise TimeoutError(
                f"connecting to {origin.host}:{origin.port} took more than "
                f"{self._connect_timeout:g} s"
            ) from None
        return protocol

    async def aclose(self) -> None:
        """Close every idle connection; requests in flight finish, then close theirs."""
        self._closed = True
        idle, self._idle = self._idle, {}
        for conns in idle.values():
            for conn in conns:
                if not conn.closed and conn.transport is not None:
                    conn.closed = True
                    conn.transport.close()
