"""Bounded decoders for the standard-library formats, and the v3 ``gzip`` codec.

``zlib``, ``gzip``, ``bz2`` and ``lzma`` all have streaming decompressors
with an output limit (``max_length``), so a chunk never inflates past
``max_size`` (+ one byte, to detect the overflow): decompression bombs are
refused before they allocate. Multi-member gzip and multi-stream bz2/xz data
decode like the standard library and numcodecs decode them.

All four release the GIL while they (de)compress.
"""

from __future__ import annotations

import bz2
import gzip
import lzma
import zlib
from typing import Any, ClassVar, Self

from asyncarr._types import ChunkSpec
from asyncarr.abc import BytesBytesCodec
from asyncarr.codecs._base import CodecConfigError, check_max_size, codec_error

__all__ = [
    "GzipCodec",
    "bz2_decompress",
    "gzip_compress",
    "gzip_decompress",
    "lzma_decompress",
    "zlib_decompress",
]

_GZIP_MAGIC = b"\x1f\x8b"


def _limit(max_size: int | None, total: int) -> int:
    """The output limit of the next call: one byte past what is allowed."""
    return -1 if max_size is None else max_size - total + 1


def _zlib_stream(
    data: Any, wbits: int, max_size: int | None, codec: object, *, multi_member: bool
) -> bytes:
    parts: list[bytes] = []
    total = 0
    rest: Any = data
    while True:
        d = zlib.decompressobj(wbits)
        limit = _limit(max_size, total)
        try:
            out = d.decompress(rest, max(limit, 0))
        except zlib.error as exc:
            fmt = "gzip" if multi_member else "zlib"
            raise codec_error(f"corrupt {fmt} data: {exc}", codec=codec) from exc
        total += len(out)
        parts.append(out)
        check_max_size(total, max_size, codec)
        if not d.eof:
            raise codec_error(f"truncated {'gzip' if multi_member else 'zlib'} data", codec=codec)
        rest = d.unused_data
        if not multi_member:
            break
        rest = rest.lstrip(b"\x00")  # gzip allows zero padding between/after members
        if not rest:
            break
        if not rest.startswith(_GZIP_MAGIC):
            raise codec_error("trailing garbage after the gzip data", codec=codec)
    return parts[0] if len(parts) == 1 else b"".join(parts)


def zlib_decompress(data: Any, max_size: int | None, codec: object = None) -> bytes:
    """Decode a zlib stream (``numcodecs.zlib``), bounded by ``max_size``."""
    return _zlib_stream(data, zlib.MAX_WBITS, max_size, codec, multi_member=False)


def gzip_decompress(data: Any, max_size: int | None, codec: object = None) -> bytes:
    """Decode gzip member(s) (v3 ``gzip``, ``numcodecs.gzip``), bounded by ``max_size``."""
    return _zlib_stream(data, 16 + zlib.MAX_WBITS, max_size, codec, multi_member=True)


def gzip_compress(data: Any, level: int) -> bytes:
    """A deterministic gzip member (mtime 0, no file name)."""
    return gzip.compress(data, compresslevel=level, mtime=0)


def _chained(make: Any, data: Any, max_size: int | None, codec: object, fmt: str) -> bytes:
    """Decode concatenated bz2/xz streams with an output bound."""
    parts: list[bytes] = []
    total = 0
    rest: Any = data
    while rest:
        d = make()
        try:
            out = d.decompress(rest, _limit(max_size, total))
        except (OSError, EOFError, lzma.LZMAError, ValueError) as exc:
            if parts:
                break  # the standard library ignores trailing non-stream data
            raise codec_error(f"corrupt {fmt} data: {exc}", codec=codec) from exc
        total += len(out)
        parts.append(out)
        check_max_size(total, max_size, codec)
        if not d.eof:
            raise codec_error(f"truncated {fmt} data", codec=codec)
        rest = d.unused_data
    if not parts:
        raise codec_error(f"empty {fmt} data", codec=codec)
    return parts[0] if len(parts) == 1 else b"".join(parts)


def bz2_decompress(data: Any, max_size: int | None, codec: object = None) -> bytes:
    """Decode bzip2 stream(s) (``numcodecs.bz2``), bounded by ``max_size``."""
    return _chained(bz2.BZ2Decompressor, data, max_size, codec, "bz2")


def lzma_decompress(
    data: Any,
    max_size: int | None,
    codec: object = None,
    *,
    format: int = lzma.FORMAT_AUTO,
    filters: Any = None,
) -> bytes:
    """Decode lzma/xz stream(s) (``numcodecs.lzma``), bounded by ``max_size``."""

    def make() -> lzma.LZMADecompressor:
        return lzma.LZMADecompressor(format=format, filters=filters)

    return _chained(make, data, max_size, codec, "lzma")


def _parse_gzip_level(value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= 9:
        raise CodecConfigError(f"gzip level must be an integer from 0 to 9, got {value!r}")
    return value


class GzipCodec(BytesBytesCodec):
    """The Zarr v3 ``gzip`` codec (RFC 1952 members).

    ``level`` is 0..9 (default 5, as zarr-python). Encoding is deterministic
    (mtime 0), so the same chunk always gives the same bytes; decoding accepts
    any gzip member(s) (e.g. zarr-python's, which carry a timestamp) and is
    bounded by ``max_size``.
    """

    codec_name: ClassVar[str] = "gzip"
    releases_gil: ClassVar[bool] = True

    def __init__(self, *, level: int = 5) -> None:
        self.level = _parse_gzip_level(level)

    @classmethod
    def from_config(cls, configuration: dict[str, Any]) -> Self:
        """``{"level": 0..9}``."""
        unknown = set(configuration) - {"level"}
        if unknown:
            raise CodecConfigError(f"unknown gzip configuration keys: {sorted(unknown)}")
        return cls(level=configuration.get("level", 5))

    def to_config(self) -> dict[str, Any]:
        return {"level": self.level}

    def encode(self, data: bytes | memoryview, spec: ChunkSpec) -> bytes:
        return gzip_compress(data, self.level)

    def decode(
        self, data: bytes | memoryview, spec: ChunkSpec, max_size: int | None = None
    ) -> bytes | memoryview:
        return gzip_decompress(data, max_size, self)
