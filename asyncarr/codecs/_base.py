"""Shared helpers of the codec implementations: errors, buffers, size checks.

Every codec in this package raises :class:`asyncarr.errors.CodecError` (or a
subclass) for bad input; nothing raw from zlib, numcodecs, zstandard or blosc
escapes. :func:`with_key` lets a caller that knows the store key re-raise a
codec error naming it.
"""

from __future__ import annotations

from typing import Any, Protocol, runtime_checkable

import numpy as np

from asyncarr._types import ChunkSpec
from asyncarr.abc import BytesBytesCodec
from asyncarr.errors import CodecError, MetadataError

__all__ = [
    "CodecConfigError",
    "DecodeInto",
    "as_uint8",
    "buffer_len",
    "check_decoded_size",
    "check_max_size",
    "codec_error",
    "decode_bytes_into",
    "with_key",
    "writable_uint8",
]


class CodecConfigError(CodecError, MetadataError):
    """A codec's configuration (from metadata or from arguments) is invalid.

    It is both a :class:`CodecError` and a :class:`MetadataError`, so code that
    parses ``zarr.json`` / ``.zarray`` can catch either.
    """

    def __init__(self, message: str, *, key: str | None = None, codec: Any = None) -> None:
        CodecError.__init__(self, message, key=key, codec=codec)
        self.raw_message = message


def codec_error(
    message: str,
    *,
    codec: object = None,
    key: str | None = None,
    cls: type[CodecError] = CodecError,
) -> CodecError:
    """Build a codec error that remembers its bare message (see :func:`with_key`)."""
    err = cls(message, key=key, codec=codec)
    err.raw_message = message  # type: ignore[attr-defined]
    return err


def with_key(err: CodecError, key: str) -> CodecError:
    """A copy of ``err`` (same class, same codec) whose message names ``key``.

    Codecs do not know the store key of the chunk they decode; the caller does::

        try:
            chunk = codec.decode(data, spec)
        except CodecError as exc:
            raise with_key(exc, key) from exc
    """
    if err.key == key:
        return err
    message = getattr(err, "raw_message", None)
    if message is None:
        message = str(err)
        codec_part = None  # the codec is already named in the message
    else:
        codec_part = err.codec
    new = type(err).__new__(type(err))
    CodecError.__init__(new, message, key=key, codec=codec_part)
    new.codec = err.codec
    new.raw_message = message  # type: ignore[attr-defined]
    return new


def as_uint8(data: bytes | bytearray | memoryview | np.ndarray[Any, Any]) -> np.ndarray[Any, Any]:
    """A flat uint8 view of any contiguous buffer (no copy)."""
    if isinstance(data, np.ndarray):
        if not data.flags.c_contiguous:
            data = np.ascontiguousarray(data)
        return data.reshape(-1).view(np.uint8)
    return np.frombuffer(data, dtype=np.uint8)


def writable_uint8(out: Any, codec: object) -> np.ndarray[Any, Any]:
    """A flat uint8 view of the writable, C-contiguous buffer ``out`` (no copy)."""
    try:
        if isinstance(out, np.ndarray):
            if not out.flags.c_contiguous or not out.flags.writeable:
                raise ValueError("not a writable C-contiguous array")
            return out.reshape(-1).view(np.uint8)
        view = np.frombuffer(out, dtype=np.uint8)
    except (TypeError, ValueError) as exc:
        raise codec_error(
            f"decode_into needs a writable C-contiguous buffer, got {type(out).__name__}: {exc}",
            codec=codec,
        ) from exc
    if not view.flags.writeable:
        raise codec_error("decode_into needs a writable buffer", codec=codec)
    return view


def buffer_len(data: bytes | bytearray | memoryview | np.ndarray[Any, Any]) -> int:
    """Length in bytes of a buffer."""
    if isinstance(data, np.ndarray):
        return int(data.nbytes)
    if isinstance(data, memoryview):
        return data.nbytes
    return len(data)


def check_max_size(size: int, max_size: int | None, codec: object) -> None:
    """Raise when a decoded size (known before decoding) exceeds ``max_size``."""
    if max_size is not None and size > max_size:
        raise codec_error(
            f"decoded data would be at least {size} bytes, more than the expected at most "
            f"{max_size} bytes "
            "(corrupt data or a decompression bomb)",
            codec=codec,
        )


def check_decoded_size(got: int, expected: int, codec: object) -> None:
    """Raise when a decoded size differs from the exact expected size."""
    if got != expected:
        raise codec_error(
            f"decoded chunk has the wrong size: expected {expected} bytes, got {got}", codec=codec
        )


@runtime_checkable
class DecodeInto(Protocol):
    """The optional zero-copy decode fast path.

    ``decode_into(data, out, spec)`` decodes ``data`` straight into ``out``:

    * on a :class:`~asyncarr.abc.BytesBytesCodec`, ``out`` is a writable,
      C-contiguous buffer (``memoryview``, ``bytearray`` or ndarray) whose
      size in bytes must equal the decoded size exactly; otherwise
      :class:`~asyncarr.errors.CodecError` is raised (``out`` may then hold
      partial data);
    * on :class:`~asyncarr.codecs.BytesCodec`, ``out`` is an ndarray of
      ``spec.shape`` (any strides, e.g. a view into the caller's output
      array) and receives the decoded values, converted to ``out.dtype``.

    Codecs with the method set the class attribute ``supports_decode_into``.
    """

    def decode_into(self, data: bytes | memoryview, out: Any, spec: ChunkSpec) -> None: ...


def decode_bytes_into(
    codec: BytesBytesCodec, data: bytes | memoryview, out: Any, spec: ChunkSpec
) -> None:
    """Decode with ``codec`` into the writable buffer ``out``, using its fast path if any.

    Falls back to ``decode`` plus one copy for codecs without ``decode_into``.
    """
    if getattr(codec, "supports_decode_into", False):
        codec.decode_into(data, out, spec)  # type: ignore[attr-defined]
        return
    target = writable_uint8(out, codec)
    decoded = codec.decode(data, spec, target.nbytes)
    check_decoded_size(buffer_len(decoded), target.nbytes, codec)
    target[:] = as_uint8(decoded)
