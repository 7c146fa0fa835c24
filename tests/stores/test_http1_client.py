"""asyncarr's small HTTP/1.1 client (:mod:`asyncarr.stores._http1`, the S3 lean GETs).

Against real servers on 127.0.0.1: an asyncio server answering with scripted bytes
(framings, faults and timing no real service produces on demand), and a TLS one. The S3
conformance suite runs it against moto and SeaweedFS.
"""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path

import pytest

from asyncarr.stores._http1 import (
    KEEP_BUFFER,
    MAX_HEAD,
    HTTP1Client,
    HTTPProtocolError,
    IncompleteBodyError,
    Origin,
)
from asyncarr.testing._tls import self_signed_tls

Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter, int], Awaitable[None]]
"""Serves one connection (its number, from 0); reads requests with :func:`_request`."""


class _Server:
    def __init__(self, handler: Handler) -> None:
        self.handler = handler
        self.connections = 0
        self.open = 0
        self.most_open = 0
        self.requests: list[bytes] = []

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        number = self.connections
        self.connections += 1
        self.open += 1
        self.most_open = max(self.most_open, self.open)
        try:
            await self.handler(reader, writer, number)
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            self.open -= 1
            writer.close()


@asynccontextmanager
async def _serving(
    handler: Handler, ssl_context: ssl.SSLContext | None = None
) -> AsyncIterator[tuple[_Server, Origin]]:
    server = _Server(handler)
    srv = await asyncio.start_server(server._serve, "127.0.0.1", 0, ssl=ssl_context)
    port = srv.sockets[0].getsockname()[1]
    try:
        yield server, Origin("https" if ssl_context else "http", "127.0.0.1", port)
    finally:
        srv.close()
        await srv.wait_closed()


async def _request(reader: asyncio.StreamReader) -> bytes:
    return await reader.readuntil(b"\r\n\r\n")


def _client(**options: float) -> HTTP1Client:
    defaults = {"connections": 4, "connect_timeout": 5.0, "read_timeout": 5.0}
    return HTTP1Client(**{**defaults, **options})  # type: ignore[arg-type]


def _ok(body: bytes, *headers: str) -> bytes:
    head = ["HTTP/1.1 200 OK", f"Content-Length: {len(body)}", *headers]
    return ("\r\n".join(head) + "\r\n\r\n").encode() + body


async def test_keep_alive_connections_are_reused_and_requests_are_well_formed() -> None:
    seen: list[bytes] = []

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, n: int) -> None:
        while True:
            seen.append(await _request(reader))
            writer.write(_ok(b"x" * 1000, "X-Amz-Checksum-Crc32: abc=", "x-twice: a", "X-Twice: b"))

    async with _serving(handler) as (server, origin):
        client = _client()
        for _ in range(3):
            got = await client.get(origin, "/b/k%20y", [("range", "bytes=0-9"), ("x-a", "1")])
            assert (got.status, got.body) == (200, b"x" * 1000)
            assert got.headers["x-amz-checksum-crc32"] == "abc="
            assert got.headers["x-twice"] == "a, b"  # repeated headers joined, names lowered
        await client.aclose()
        assert server.connections == 1
    lines = seen[0].decode().split("\r\n")
    assert lines[0] == "GET /b/k%20y HTTP/1.1"
    assert f"host: 127.0.0.1:{origin.port}" in lines
    assert "range: bytes=0-9" in lines and "x-a: 1" in lines


async def test_a_host_header_given_is_sent_once() -> None:
    seen: list[bytes] = []

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, n: int) -> None:
        seen.append(await _request(reader))
        writer.write(_ok(b""))

    async with _serving(handler) as (_, origin):
        client = _client()
        await client.get(origin, "/", [("host", "bucket.example:9000")])
        await client.aclose()
    assert seen[0].lower().count(b"host:") == 1 and b"host: bucket.example:9000" in seen[0]


async def test_bodies_of_every_size_on_one_connection_stay_intact() -> None:
    """The per-connection receive buffer is reused: bodies handed out must not change."""
    sizes = [10, KEEP_BUFFER, 3 * KEEP_BUFFER, 5, KEEP_BUFFER // 2, 0, 70_000]

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, n: int) -> None:
        for i, size in enumerate(sizes):
            await _request(reader)
            writer.write(_ok(bytes([i + 1]) * size))

    async with _serving(handler) as (server, origin):
        client = _client()
        bodies = [(await client.get(origin, "/", [])).body for _ in sizes]
        await client.aclose()
        assert server.connections == 1
    assert bodies == [bytes([i + 1]) * size for i, size in enumerate(sizes)]


async def test_chunked_bodies_with_extensions_and_trailers_arriving_byte_by_byte() -> None:
    raw = (
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
        b"5;ext=1\r\nhello\r\n1A\r\n" + b"z" * 26 + b"\r\n0\r\nX-Trailer: t\r\n\r\n"
    )

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, n: int) -> None:
        for _ in range(2):
            await _request(reader)
            for i in range(len(raw)):
                writer.write(raw[i : i + 1])
                await writer.drain()
                await asyncio.sleep(0)

    async with _serving(handler) as (server, origin):
        client = _client()
        for _ in range(2):
            got = await client.get(origin, "/", [])
            assert got.body == b"hello" + b"z" * 26
        await client.aclose()
        assert server.connections == 1


@pytest.mark.parametrize(
    "bad",
    [b"zz\r\n", b"5\r\nhelloXX\r\n0\r\n\r\n"],
    ids=["size is not hex", "data longer than its size"],
)
async def test_malformed_chunked_bodies_are_protocol_errors(bad: bytes) -> None:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, n: int) -> None:
        await _request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n" + bad)
        await reader.read()  # until the client hangs up

    async with _serving(handler) as (_, origin):
        client = _client()
        with pytest.raises(HTTPProtocolError, match="chunked body"):
            await client.get(origin, "/", [])
        await client.aclose()


async def test_a_body_delimited_by_the_end_of_the_connection() -> None:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, n: int) -> None:
        await _request(reader)
        writer.write(b"HTTP/1.0 200 OK\r\nContent-Type: x\r\n\r\n" + b"tail" * 5000)
        await writer.drain()

    async with _serving(handler) as (server, origin):
        client = _client()
        for _ in range(2):  # such a connection is never reused
            assert (await client.get(origin, "/", [])).body == b"tail" * 5000
        await client.aclose()
        assert server.connections == 2


async def test_connection_close_is_honoured_and_204_has_no_body() -> None:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, n: int) -> None:
        await _request(reader)
        writer.write(b"HTTP/1.1 204 No Content\r\nConnection: close\r\n\r\n")
        await writer.drain()
        await reader.read()  # until the client hangs up

    async with _serving(handler) as (server, origin):
        client = _client()
        for _ in range(2):
            got = await client.get(origin, "/", [])
            assert (got.status, got.body) == (204, b"")
        await client.aclose()
        assert server.connections == 2


async def test_an_interim_100_answer_is_skipped() -> None:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, n: int) -> None:
        await _request(reader)
        writer.write(b"HTTP/1.1 100 Continue\r\n\r\n" + _ok(b"after", "Connection: close"))
        await writer.drain()

    async with _serving(handler) as (_, origin):
        client = _client()
        assert (await client.get(origin, "/", [])).body == b"after"
        await client.aclose()


async def test_a_connection_the_server_closed_while_idle_is_replaced() -> None:
    """The server's idle timeout races the next request: it is sent again, once."""

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, n: int) -> None:
        await _request(reader)
        writer.write(_ok(f"conn {n}".encode()))
        await writer.drain()
        # then close without a word (keep-alive advertised): the client still holds it

    async with _serving(handler) as (server, origin):
        client = _client()
        assert (await client.get(origin, "/", [])).body == b"conn 0"
        await asyncio.sleep(0.05)
        assert (await client.get(origin, "/", [])).body == b"conn 1"
        await client.aclose()
        assert server.connections == 2


async def test_a_reused_connection_closed_without_an_answer_is_retried_once_fresh() -> None:
    """The close raced the request (the server had read it, or not): GETs are sent again."""

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, n: int) -> None:
        await _request(reader)
        writer.write(_ok(f"conn {n}".encode()))
        if n == 0:
            await _request(reader)  # the second request: hang up without answering

    async with _serving(handler) as (server, origin):
        client = _client()
        assert (await client.get(origin, "/", [])).body == b"conn 0"
        assert (await client.get(origin, "/", [])).body == b"conn 1"
        await client.aclose()
        assert server.connections == 2


async def test_a_fresh_connection_closed_without_an_answer_is_a_reset() -> None:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, n: int) -> None:
        await _request(reader)  # and hang up

    async with _serving(handler) as (server, origin):
        client = _client()
        with pytest.raises(ConnectionResetError, match="without answering"):
            await client.get(origin, "/", [])
        await client.aclose()
        assert server.connections == 1  # a fresh connection is not retried


async def test_a_body_cut_short_is_an_incomplete_body() -> None:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, n: int) -> None:
        await _request(reader)
        writer.write(_ok(b"y" * 100_000)[:50_000])
        await writer.drain()

    async with _serving(handler) as (_, origin):
        client = _client()
        with pytest.raises(IncompleteBodyError, match=r"of 100000"):
            await client.get(origin, "/", [])
        await client.aclose()


@pytest.mark.parametrize(
    ("answer", "match"),
    [
        (b"SSH-2.0-OpenSSH_9.6\r\n\r\n", "not an HTTP/1.x status line"),
        (b"HTTP/1.1 2x0 OK\r\n\r\n", "not an HTTP/1.x status line"),
        (b"HTTP/1.1 200 OK\r\nbad header\r\n\r\n", "malformed header line"),
        (b"HTTP/1.1 200 OK\r\n folded: value\r\n\r\n", "malformed header line"),
        (b"HTTP/1.1 200 OK\r\nContent-Length: -5\r\n\r\n", "invalid Content-Length"),
        (b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nabc", "3 bytes arrived for a body of 2"),
        (b"HTTP/1.1 200 OK\r\nX: " + b"v" * MAX_HEAD, "longer than"),
        (b"HTTP/1.1 200 OK\r\nContent-Le", "ended inside the headers"),
    ],
    ids=[
        "not http",
        "status",
        "header line",
        "folded header",
        "negative length",
        "too many bytes",
        "endless headers",
        "cut in the headers",
    ],
)
async def test_malformed_answers_are_protocol_errors(answer: bytes, match: str) -> None:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, n: int) -> None:
        await _request(reader)
        writer.write(answer)
        await writer.drain()

    async with _serving(handler) as (_, origin):
        client = _client()
        with pytest.raises(HTTPProtocolError, match=match):
            await client.get(origin, "/", [])
        await client.aclose()


async def test_a_silent_server_times_out_after_the_read_timeout() -> None:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, n: int) -> None:
        await _request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc")  # then nothing
        await writer.drain()
        await reader.read()  # until the client hangs up

    async with _serving(handler) as (_, origin):
        client = _client(read_timeout=0.3)
        loop = asyncio.get_running_loop()
        start = loop.time()
        with pytest.raises(TimeoutError, match=r"no data from the server for 0\.3 s"):
            await client.get(origin, "/", [])
        assert 0.25 < loop.time() - start < 3
        await client.aclose()


async def test_a_slow_but_steady_body_is_not_a_timeout() -> None:
    """The read timeout counts from the last byte received, not from the request."""

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, n: int) -> None:
        await _request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 8\r\n\r\n")
        for _ in range(8):
            await asyncio.sleep(0.1)
            writer.write(b"s")
            await writer.drain()

    async with _serving(handler) as (_, origin):
        client = _client(read_timeout=0.3)
        assert (await client.get(origin, "/", [])).body == b"s" * 8
        await client.aclose()


async def test_refused_and_unreachable_connections_raise_connection_errors() -> None:
    srv = await asyncio.start_server(lambda r, w: None, "127.0.0.1", 0)
    port = srv.sockets[0].getsockname()[1]
    srv.close()
    await srv.wait_closed()
    client = _client()
    with pytest.raises(ConnectionError):
        await client.get(Origin("http", "127.0.0.1", port), "/", [])
    await client.aclose()


async def test_a_cancelled_request_drops_its_connection_and_others_go_on() -> None:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, n: int) -> None:
        while True:
            await _request(reader)
            if n == 0:
                writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\npartial")
                await writer.drain()
                await reader.read()  # until the client hangs up
            writer.write(_ok(b"fine"))

    async with _serving(handler) as (server, origin):
        client = _client(connections=1)
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(client.get(origin, "/", []), 0.2)
        assert (await client.get(origin, "/", [])).body == b"fine"  # its slot came back
        await client.aclose()
        assert server.connections == 2


async def test_requests_in_flight_never_exceed_the_connection_limit() -> None:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, n: int) -> None:
        while True:
            await _request(reader)
            await asyncio.sleep(0.01)
            writer.write(_ok(b"v" * 5000))

    async with _serving(handler) as (server, origin):
        client = _client(connections=3)
        bodies = await asyncio.gather(*(client.get(origin, "/", []) for _ in range(30)))
        await client.aclose()
    assert all(b.body == b"v" * 5000 for b in bodies)
    assert server.connections == 3 and server.most_open == 3


async def test_a_closed_client_refuses_requests() -> None:
    client = _client()
    await client.aclose()
    with pytest.raises(ConnectionError, match="closed"):
        await client.get(Origin("http", "127.0.0.1", 9), "/", [])


async def test_https_with_a_trusted_certificate_and_a_refused_one(tmp_path: Path) -> None:
    server_ctx, client_ctx = self_signed_tls(tmp_path)

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, n: int) -> None:
        while True:
            await _request(reader)
            writer.write(_ok(b"s" * 300_000))

    async with _serving(handler, server_ctx) as (server, origin):
        client = HTTP1Client(
            connections=2, connect_timeout=5, read_timeout=5, ssl_context=client_ctx
        )
        for _ in range(2):
            assert (await client.get(origin, "/", [])).body == b"s" * 300_000
        await client.aclose()
        assert server.connections == 1
        untrusting = _client()  # the system's CAs: the self-signed certificate is refused
        with pytest.raises(ssl.SSLCertVerificationError):
            await untrusting.get(origin, "/", [])
        await untrusting.aclose()


# -- request bodies (the S3 lean writes) ----------------------------------------------------
async def _request_with_body(reader: asyncio.StreamReader) -> tuple[bytes, bytes]:
    """(head, body) of one request, its body as long as its Content-Length says."""
    head = await _request(reader)
    for line in head.decode("latin-1").split("\r\n"):
        name, _, value = line.partition(":")
        if name.lower() == "content-length":
            return head, await reader.readexactly(int(value))
    return head, b""


@pytest.mark.parametrize("secure", [False, True], ids=["http", "https"])
async def test_request_bodies_are_sent_whole_with_their_length(
    secure: bool, tmp_path: Path
) -> None:
    import hashlib

    seen: list[tuple[bytes, bytes]] = []

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, n: int) -> None:
        while True:
            head, body = await _request_with_body(reader)
            seen.append((head, body))
            writer.write(_ok(hashlib.sha256(body).hexdigest().encode()))

    server_ctx, client_ctx = self_signed_tls(tmp_path) if secure else (None, None)
    big = bytes(range(256)) * (12 * 1024)  # 3 MiB: more than the socket buffers take at once
    async with _serving(handler, server_ctx) as (server, origin):
        client = HTTP1Client(
            connections=2, connect_timeout=5, read_timeout=5, ssl_context=client_ctx
        )
        for method, body in [("PUT", big), ("POST", b""), ("DELETE", None), ("PUT", b"abc")]:
            got = await client.request(method, origin, "/b/k?partNumber=1", [("x-a", "1")], body)
            assert got.body == hashlib.sha256(body or b"").hexdigest().encode()
        await client.aclose()
        assert server.connections == 1
    heads = [head.decode("latin-1").lower() for head, _ in seen]
    assert heads[0].startswith("put /b/k?partnumber=1 http/1.1") and "x-a: 1" in heads[0]
    assert f"content-length: {len(big)}" in heads[0]
    assert "content-length: 0" in heads[1]  # a POST without body still says so
    assert "content-length" not in heads[2]  # a DELETE has no body at all
    assert seen[0][1] == big and seen[3][1] == b"abc"


async def test_an_answer_before_the_whole_body_was_sent_drops_the_connection() -> None:
    """An early refusal (the server answers without reading the body) is returned; the
    connection, with the rest of the body still on its way, is never used again."""
    finished = asyncio.Event()

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, n: int) -> None:
        if n == 0:
            await _request(reader)
            writer.write(_ok(b"refused"))  # keep-alive, but out of step from now on
            await writer.drain()
            await finished.wait()  # read nothing more
            return
        while True:
            await _request_with_body(reader)
            writer.write(_ok(b"fine"))

    async with _serving(handler) as (server, origin):
        client = _client()
        got = await client.request("PUT", origin, "/", [], b"x" * (32 << 20))
        assert got.body == b"refused"
        assert (await client.request("PUT", origin, "/", [], b"y")).body == b"fine"
        finished.set()
        await client.aclose()
        assert server.connections == 2


async def test_a_request_that_is_not_idempotent_is_not_sent_again_on_a_stale_connection() -> None:
    """A conditional write whose connection closed without an answer may have landed: the
    client says so (a reset) instead of sending it again behind its caller's back."""

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, n: int) -> None:
        await _request_with_body(reader)
        writer.write(_ok(f"conn {n}".encode()))
        await _request_with_body(reader)  # the second request: hang up without answering

    async with _serving(handler) as (server, origin):
        client = _client()
        assert (await client.request("PUT", origin, "/", [], b"a")).body == b"conn 0"
        with pytest.raises(ConnectionResetError, match="without answering"):
            await client.request("PUT", origin, "/", [], b"b", idempotent=False)
        await client.aclose()
        assert server.connections == 1


async def test_a_body_read_slowly_is_not_a_timeout() -> None:
    """While the server reads the body (slowly: a far service), the read timeout counts
    from the last bytes it took, not from the request."""
    import socket

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, n: int) -> None:
        head = await _request(reader)
        length = int(head.lower().split(b"content-length: ")[1].split(b"\r\n")[0])
        while length:
            length -= len(await reader.readexactly(min(length, 512 << 10)))
            await asyncio.sleep(0.04)
        writer.write(_ok(b"stored"))

    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 64 * 1024)  # little buffered
    sock.bind(("127.0.0.1", 0))
    server = _Server(handler)
    srv = await asyncio.start_server(server._serve, sock=sock)
    origin = Origin("http", "127.0.0.1", sock.getsockname()[1])
    try:
        client = _client(read_timeout=0.5)
        # 32 reads 40 ms apart: well over the read timeout from start to end
        got = await client.request("PUT", origin, "/", [], b"z" * (16 << 20))
        assert got.body == b"stored"
        await client.aclose()
    finally:
        srv.close()
        await srv.wait_closed()
