"""The Zarr v3 ``bytes`` codec: array <-> raw bytes in a stated byte order."""

from __future__ import annotations

import functools
from typing import Any, ClassVar, Literal, Self

import numpy as np

from asyncarr._types import ChunkSpec
from asyncarr.abc import ArrayBytesCodec, NDArray
from asyncarr.codecs._base import CodecConfigError, buffer_len, check_decoded_size, codec_error

__all__ = ["BytesCodec", "Endian", "endian_sensitive"]

Endian = Literal["little", "big"]
_CHAR: dict[str, Literal["<", ">"]] = {"little": "<", "big": ">"}


def endian_sensitive(dtype: np.dtype[Any]) -> bool:
    """Whether the byte order changes how ``dtype`` is stored (multi-byte numbers)."""
    return bool(dtype.newbyteorder("<") != dtype.newbyteorder(">"))


@functools.lru_cache(maxsize=256)
def _stored(endian: Endian | None, dtype: np.dtype[Any]) -> np.dtype[Any]:
    if endian is None or not endian_sensitive(dtype):
        return dtype
    return dtype.newbyteorder(_CHAR[endian])


def _same_type(a: np.dtype[Any], b: np.dtype[Any]) -> bool:
    """Equal up to byte order."""
    return bool(a.newbyteorder("<") == b.newbyteorder("<"))


class BytesCodec(ArrayBytesCodec):
    """Serialise a chunk as its raw items, C order (or ``spec.order``), in ``endian`` order.

    ``endian`` is ``"little"`` (default), ``"big"`` or ``None``; ``None`` is
    only valid for dtypes whose layout does not depend on byte order
    (1-byte items, byte strings, ...) and then no configuration is written,
    as zarr-python does. Use :meth:`for_dtype` to get the codec zarr-python
    would write for a dtype.

    ``decode`` is zero-copy where the stored byte order is the dtype's own:
    the returned array is then a read-only view of ``data``. ``decode_into``
    writes straight into a caller's array (e.g. a view of the output).
    """

    codec_name: ClassVar[str] = "bytes"
    releases_gil: ClassVar[bool] = True
    supports_decode_into: ClassVar[bool] = True

    def __init__(self, *, endian: Endian | None = "little") -> None:
        if endian is not None and endian not in _CHAR:
            raise CodecConfigError(f"bytes endian must be 'little' or 'big', got {endian!r}")
        self.endian: Endian | None = endian

    @classmethod
    def for_dtype(cls, dtype: np.dtype[Any] | str, endian: Endian = "little") -> Self:
        """The codec zarr-python writes for ``dtype``: no ``endian`` for order-free dtypes."""
        dtype = np.dtype(dtype)
        return cls(endian=endian if endian_sensitive(dtype) else None)

    @classmethod
    def from_config(cls, configuration: dict[str, Any]) -> Self:
        """``{"endian": "little" | "big"}``, or ``{}`` for order-free dtypes."""
        unknown = set(configuration) - {"endian"}
        if unknown:
            raise CodecConfigError(f"unknown bytes configuration keys: {sorted(unknown)}")
        return cls(endian=configuration.get("endian"))

    def to_config(self) -> dict[str, Any]:
        return {} if self.endian is None else {"endian": self.endian}

    def validate(self, spec: ChunkSpec) -> None:
        if self.endian is None and endian_sensitive(spec.dtype) and spec.dtype.fields is None:
            raise CodecConfigError(
                f"the bytes codec needs an 'endian' configuration for dtype {spec.dtype}"
            )

    def evolve(self, spec: ChunkSpec) -> Self:
        """A v3 struct with multi-byte fields and no ``endian`` reads as little-endian (the
        legacy ``structured`` rule). A struct whose fields name their own byte orders (a
        v2 dtype such as ``[["a", ">i4"], ["b", "<f8"]]``) is stored as it says."""
        dtype = spec.dtype
        if (
            self.endian is None
            and dtype.fields is not None
            and endian_sensitive(dtype)
            and dtype.newbyteorder("=") == dtype
        ):
            return type(self)(endian="little")
        return self

    def _stored_dtype(self, dtype: np.dtype[Any]) -> np.dtype[Any]:
        """The dtype as stored: ``endian`` byte order where that matters."""
        return _stored(self.endian, dtype)

    def max_encoded_size(self, input_size: int) -> int:
        return input_size

    def encode(self, chunk: NDArray, spec: ChunkSpec) -> bytes:
        if chunk.shape != spec.shape:
            raise codec_error(f"chunk has shape {chunk.shape}, expected {spec.shape}", codec=self)
        if chunk.dtype != spec.dtype and not _same_type(chunk.dtype, spec.dtype):
            raise codec_error(f"chunk has dtype {chunk.dtype}, expected {spec.dtype}", codec=self)
        if self.endian is None:
            self.validate(spec)
        stored = self._stored_dtype(chunk.dtype)
        if stored != chunk.dtype:
            chunk = chunk.astype(stored)
        return chunk.tobytes(order="F" if spec.order == "F" else "C")

    def _view(self, data: bytes | memoryview, spec: ChunkSpec) -> NDArray:
        check_decoded_size(buffer_len(data), spec.nbytes, self)
        if self.endian is None:
            self.validate(spec)
        stored = self._stored_dtype(spec.dtype)
        try:
            arr = np.frombuffer(data, dtype=stored)
        except (TypeError, ValueError) as exc:
            raise codec_error(f"cannot view the data as {stored}: {exc}", codec=self) from exc
        return arr.reshape(spec.shape, order="F" if spec.order == "F" else "C")

    def decode(self, data: bytes | memoryview, spec: ChunkSpec) -> NDArray:
        arr = self._view(data, spec)
        if arr.dtype != spec.dtype:
            arr = arr.astype(spec.dtype)
        return arr

    def decode_into(self, data: bytes | memoryview, out: NDArray, spec: ChunkSpec) -> None:
        """Decode into ``out``, an array of ``spec.shape`` (any strides and byte order)."""
        if out.shape != spec.shape:
            raise codec_error(f"output has shape {out.shape}, expected {spec.shape}", codec=self)
        np.copyto(out, self._view(data, spec), casting="same_kind")
