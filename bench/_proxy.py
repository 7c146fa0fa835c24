"""A loopback TCP proxy that delays every HTTP request by a fixed time.

It simulates network latency in front of an S3 server on 127.0.0.1. Bytes
pass through unchanged (so SigV4 signatures over the ``Host`` header stay
valid); on each connection the first bytes of every new request - the first
client bytes after the server last answered - wait ``delay`` seconds before
they are forwarded. HTTP/1.1 clients do not pipeline, so that is one delay
per request, the time-to-first-byte a distant server adds.

Run as ``python -m bench._proxy LISTEN_PORT UPSTREAM_HOST UPSTREAM_PORT DELAY_MS``;
it prints ``ready`` once listening. :func:`latency_proxy` starts it in a
child process (so its CPU use is not charged to the tool being measured).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import sys
from collections.abc import Iterator
from pathlib import Path

__all__ = ["latency_proxy", "main"]

_BUF = 1 << 18


class _Conn:
    """State of one proxied connection."""

    def __init__(self) -> None:
        self.new_request = True


async def _pump_client(
    src: asyncio.StreamReader, dst: asyncio.StreamWriter, conn: _Conn, delay: float
) -> None:
    try:
        while data := await src.read(_BUF):
            if conn.new_request:
                conn.new_request = False
                await asyncio.sleep(delay)
            dst.write(data)
            await dst.drain()
    except (ConnectionError, OSError):
        pass
    finally:
        with contextlib.suppress(Exception):
            dst.write_eof()


async def _pump_server(src: asyncio.StreamReader, dst: asyncio.StreamWriter, conn: _Conn) -> None:
    try:
        while data := await src.read(_BUF):
            conn.new_request = True
            dst.write(data)
            await dst.drain()
    except (ConnectionError, OSError):
        pass
    finally:
        with contextlib.suppress(Exception):
            dst.close()


async def _serve(listen_port: int, host: str, port: int, delay: float) -> None:
    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            up_reader, up_writer = await asyncio.open_connection(host, port)
        except OSError:
            writer.close()
            return
        conn = _Conn()
        await asyncio.gather(
            _pump_client(reader, up_writer, conn, delay),
            _pump_server(up_reader, writer, conn),
        )
        up_writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", listen_port, backlog=512)
    print("ready", flush=True)
    async with server:
        await server.serve_forever()


def main(argv: list[str] | None = None) -> None:
    """Entry point: ``LISTEN_PORT UPSTREAM_HOST UPSTREAM_PORT DELAY_MS``."""
    args = sys.argv[1:] if argv is None else argv
    listen, host, port, delay_ms = int(args[0]), args[1], int(args[2]), float(args[3])
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(_serve(listen, host, port, delay_ms / 1000.0))


@contextlib.contextmanager
def latency_proxy(upstream: str, delay_ms: float) -> Iterator[str]:
    """Start a delaying proxy in front of ``upstream`` (``http://127.0.0.1:PORT``).

    Yields the proxy's endpoint URL; the process is stopped on exit.
    """
    from urllib.parse import urlsplit

    from asyncarr.testing._procs import free_port, run_server

    parts = urlsplit(upstream)
    port = free_port()
    cmd = [
        sys.executable,
        "-m",
        "bench._proxy",
        str(port),
        parts.hostname or "127.0.0.1",
        str(parts.port),
        str(delay_ms),
    ]
    root = str(Path(__file__).resolve().parent.parent)
    env = {"PYTHONPATH": os.pathsep.join(filter(None, [root, os.environ.get("PYTHONPATH")]))}
    with run_server(cmd, port=port, name="latency-proxy", env=env, startup_timeout=30):
        yield f"http://127.0.0.1:{port}"


if __name__ == "__main__":
    main()
