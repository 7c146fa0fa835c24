"""Hostile answers for :class:`~asyncarr.testing.FaultProxy` (``proxy.hostile(...)``).

Each shape is what a broken or malicious server can send in place of an honest answer;
asyncarr must end every read of one in an asyncarr error, in bounded memory and time,
or (for the damaged ones) retry until an honest answer comes:

- ``"endless"``: ``200`` with a chunked body that never ends;
- ``"huge_length"``: ``200`` announcing a 10 GiB ``Content-Length``, then bytes until the
  client leaves;
- ``"gzip_bomb"``: ``200`` with ``Content-Encoding: gzip`` and a ~0.5 MB body that
  inflates to 512 MiB of zeros (never asked for: the client sent ``identity``);
- ``"trickle"``: the upstream's status and headers, then a chunked body of one byte every
  0.1 s, forever (each byte resets a per-read idle timeout);
- ``"short_body"``: the body cut to half with a matching ``Content-Length``, every other
  header as the upstream sent it: a ``206`` whose ``Content-Range`` still announces the
  full range (a lying ``Content-Range``), a JSON answer that cannot be parsed;
- ``"bit_flip"``: one bit of the body flipped (a damaged ``200``/``206``);
- ``"flip_request"``: one bit of the *request* body flipped before it is forwarded (a
  damaged upload).
"""

from __future__ import annotations

import asyncio
import functools
import struct
import zlib
from typing import Any

__all__ = ["HOSTILE_SHAPES", "gzip_bomb", "write_hostile"]

HOSTILE_SHAPES = (
    "endless",
    "huge_length",
    "gzip_bomb",
    "trickle",
    "short_body",
    "bit_flip",
    "flip_request",
)
HUGE_LENGTH = 10 << 30
_STREAM_CAP = 16 << 30  # (endless bodies stop here at the latest, should a client never leave)
_PIECE = 1 << 16


@functools.cache
def gzip_bomb(inflated: int = 512 << 20) -> bytes:
    """A gzip stream of ``inflated`` zero bytes (a multiple of 1 MiB), about 1/1000 the
    size: one compressed MiB of zeros repeated (identical after a full flush), an empty
    final block and the trailer computed here."""
    mib = 1 << 20
    if inflated % mib or inflated <= 0:
        raise ValueError(f"inflated must be a positive multiple of 1 MiB, got {inflated}")
    zeros = bytes(mib)
    compressor = zlib.compressobj(9, zlib.DEFLATED, 31)
    first = compressor.compress(zeros) + compressor.flush(zlib.Z_FULL_FLUSH)
    repeat = compressor.compress(zeros) + compressor.flush(zlib.Z_FULL_FLUSH)
    crc = 0
    for _ in range(inflated // mib):
        crc = zlib.crc32(zeros, crc)
    final_block = b"\x03\x00"  # BFINAL, fixed Huffman, end of block
    trailer = struct.pack("<II", crc, inflated & 0xFFFFFFFF)
    return first + repeat * (inflated // mib - 1) + final_block + trailer


def flip_bit(data: bytes) -> bytes:
    """``data`` with one bit in the middle flipped (empty data stays empty)."""
    if not data:
        return data
    middle = len(data) // 2
    return data[:middle] + bytes([data[middle] ^ 0x10]) + data[middle + 1 :]


async def write_hostile(
    shape: str,
    request: Any,
    status: int,
    headers: list[tuple[str, str]],
    body: bytes,
) -> Any:
    """Answer ``request`` with ``shape`` built from the upstream's honest answer
    (``status``, ``headers`` without hop-by-hop ones, ``body``); returns the response."""
    from aiohttp import web

    kept = [(k, v) for k, v in headers if k.lower() not in ("content-range", "content-encoding")]
    if shape in ("endless", "huge_length", "gzip_bomb"):
        response = web.StreamResponse(status=200)
        for k, v in kept:
            response.headers.add(k, v)
        if shape == "gzip_bomb":
            bomb = gzip_bomb()
            response.headers["Content-Encoding"] = "gzip"
            response.headers["Content-Length"] = str(len(bomb))
            await response.prepare(request)
            await response.write(bomb)
            await response.write_eof()
            return response
        if shape == "huge_length":
            response.headers["Content-Length"] = str(HUGE_LENGTH)
        else:
            response.enable_chunked_encoding()
        await response.prepare(request)
        await _stream(response, b"x" * _PIECE, pause=0.0)
        return response
    if shape == "trickle":
        response = web.StreamResponse(status=status)
        for k, v in headers:
            if k.lower() != "content-length":
                response.headers.add(k, v)
        response.enable_chunked_encoding()
        await response.prepare(request)
        await _stream(response, b"x", pause=0.1)
        return response
    if shape == "short_body":
        body = body[: len(body) // 2]
    elif shape == "bit_flip":
        body = flip_bit(body)
    response = web.StreamResponse(status=status)
    for k, v in headers:
        response.headers.add(k, v)
    response.headers["Content-Length"] = str(len(body))
    await response.prepare(request)
    await response.write(body)
    await response.write_eof()
    return response


async def _stream(response: Any, piece: bytes, *, pause: float) -> None:
    """Write ``piece`` again and again until the client leaves (or the cap)."""
    sent = 0
    try:
        while sent < _STREAM_CAP:
            await response.write(piece)
            sent += len(piece)
            await asyncio.sleep(pause)
    except (ConnectionError, RuntimeError):
        return  # the client went away: what a hostile server would see too
