"""The Zarr v3 ``crc32c`` checksum codec (4 little-endian bytes appended)."""

from __future__ import annotations

import struct
from typing import Any, ClassVar, Self

import crc32c as _crc32c

from asyncarr._types import ChunkSpec
from asyncarr.abc import BytesBytesCodec
from asyncarr.codecs._base import CodecConfigError, buffer_len, check_max_size, codec_error

__all__ = ["Crc32cCodec"]

_U32 = struct.Struct("<I")


class Crc32cCodec(BytesBytesCodec):
    """Append (encode) / verify and strip (decode) a CRC-32C of the data.

    Uses the ``crc32c`` package (hardware-accelerated, releases the GIL for
    large buffers). A mismatch raises :class:`~asyncarr.errors.CodecError`
    with the stored and computed checksums; callers that know the store key
    add it with :func:`asyncarr.codecs.with_key`. ``decode`` returns a
    zero-copy view of the payload.
    """

    codec_name: ClassVar[str] = "crc32c"
    releases_gil: ClassVar[bool] = True

    @classmethod
    def from_config(cls, configuration: dict[str, Any]) -> Self:
        """Takes no configuration."""
        if configuration:
            raise CodecConfigError(
                f"the crc32c codec takes no configuration, got {sorted(configuration)}"
            )
        return cls()

    def to_config(self) -> dict[str, Any]:
        return {}

    def max_encoded_size(self, input_size: int) -> int:
        return input_size + 4

    def encode(self, data: bytes | memoryview, spec: ChunkSpec) -> bytes:
        return bytes(data) + _U32.pack(_crc32c.crc32c(data))

    def decode(
        self, data: bytes | memoryview, spec: ChunkSpec, max_size: int | None = None
    ) -> bytes | memoryview:
        size = buffer_len(data)
        if size < 4:
            raise codec_error(f"{size} bytes is too short to hold a crc32c checksum", codec=self)
        view = memoryview(data).cast("B")
        payload = view[:-4]
        check_max_size(size - 4, max_size, self)
        (stored,) = _U32.unpack(view[-4:])
        computed = _crc32c.crc32c(payload)
        if stored != computed:
            raise codec_error(
                f"crc32c checksum mismatch: stored {stored:#010x}, computed {computed:#010x}",
                codec=self,
            )
        return payload
