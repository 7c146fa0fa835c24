"""Adapters that run any numcodecs codec as an asyncarr codec.

zarr-python 3 writes numcodecs codecs into v3 metadata under the name
``numcodecs.<id>`` with the numcodecs configuration (less ``id``); v2
metadata names them directly (``{"id": "zlib", "level": 1}``). One adapter
class per id is made on demand (:func:`numcodecs_adapter_class`), of the
kind zarr-python gives it:

* array -> array ("filters"): delta, fixedscaleoffset, quantize, astype,
  packbits, bitround, categorize;
* array -> bytes: pcodec, zfpy (when their packages are installed);
* bytes -> bytes: compressors and checksums (blosc, zstd, zlib, gzip, bz2,
  lzma, lz4, shuffle, crc32, crc32c, adler32, fletcher32, jenkins_lookup3,
  ...) and every id this module does not know (e.g. imagecodecs plugins).

Encoding always runs numcodecs itself, so the bytes are exactly what
zarr-python writes. Decoding is bounded by ``max_size`` before allocating
for zlib, gzip, bz2, lzma, zstd, blosc and lz4 (streaming limits or the
size in the frame header); checksums, shuffle and base64 never grow their
input; any other codec is checked *after* decoding (it has no streaming
API). ``pickle`` and the object codecs (``vlen-*``, ``json2``, ``msgpack2``) are not
numcodecs adapters: v2 object arrays use them through :mod:`asyncarr.codecs._vlen`.
"""

from __future__ import annotations

import math
import struct
import threading
from collections.abc import Callable, Mapping
from typing import Any, ClassVar, Self

import numpy as np

from asyncarr._types import ChunkSpec
from asyncarr.abc import (
    ArrayArrayCodec,
    ArrayBytesCodec,
    BytesBytesCodec,
    Codec,
    CodecKind,
    NDArray,
)
from asyncarr.codecs._base import (
    CodecConfigError,
    buffer_len,
    check_decoded_size,
    check_max_size,
    codec_error,
    decode_bytes_into,
)
from asyncarr.codecs._blosc import blosc_decompress, blosc_decompress_into
from asyncarr.codecs._stdlib import (
    bz2_decompress,
    gzip_decompress,
    lzma_decompress,
    zlib_decompress,
)
from asyncarr.codecs._zstd import zstd_decompress, zstd_decompress_into
from asyncarr.errors import UnknownCodecError

__all__ = [
    "NUMCODECS_PREFIX",
    "NumcodecsArrayArrayCodec",
    "NumcodecsArrayBytesCodec",
    "NumcodecsBytesBytesCodec",
    "NumcodecsCodec",
    "numcodecs_adapter",
    "numcodecs_adapter_class",
    "numcodecs_kind",
]

NUMCODECS_PREFIX = "numcodecs."

_ARRAY_ARRAY = frozenset(
    {"delta", "fixedscaleoffset", "quantize", "astype", "packbits", "bitround", "categorize"}
)
_ARRAY_BYTES = frozenset({"pcodec", "zfpy"})
_REFUSED = {
    "pickle": "decoding pickled data can run arbitrary code",
    "vlen-utf8": "use the v3 codec 'vlen-utf8' (v2 object arrays name it as a filter)",
    "vlen-bytes": "use the v3 codec 'vlen-bytes' (v2 object arrays name it as a filter)",
    "vlen-array": "object codecs store v2 object arrays (as a filter); Zarr v3 has none",
    "json2": "object codecs store v2 object arrays (as a filter); Zarr v3 has none",
    "msgpack2": "msgpack2 object arrays are not supported",
}
# Which ids hold the GIL while they work (measured with a 2-thread benchmark, see
# the package docs); unknown ids are assumed to hold it.
_RELEASES_GIL = frozenset(
    {
        "blosc", "zstd", "zlib", "gzip", "bz2", "lzma", "lz4", "crc32", "adler32", "crc32c",
        "delta", "fixedscaleoffset", "quantize", "astype", "bitround", "packbits", "categorize",
    }
)  # fmt: skip
# Keys that evolve() fills from the chunk's dtype when absent (as zarr-python does).
_FILL_FROM_SPEC = {
    "delta": "dtype",
    "fixedscaleoffset": "dtype",
    "quantize": "dtype",
    "categorize": "dtype",
    "astype": "decode_dtype",
    "shuffle": "elementsize",
}
_PLACEHOLDER: dict[str, Any] = {
    "dtype": "<f8",
    "decode_dtype": "<f8",
    "elementsize": 1,
}
_NEVER_GROW = frozenset(
    {"crc32", "crc32c", "adler32", "fletcher32", "jenkins_lookup3", "shuffle", "base64"}
)
_LZ4_HEADER = struct.Struct("<I")


def _registry() -> tuple[Mapping[str, Any], Mapping[str, Any]]:
    from numcodecs.registry import codec_registry, entries

    return codec_registry, entries


def numcodecs_kind(codec_id: str) -> CodecKind:
    """The v3 codec kind of a numcodecs id (bytes -> bytes when unknown)."""
    if codec_id in _ARRAY_ARRAY:
        return "array_to_array"
    if codec_id in _ARRAY_BYTES:
        return "array_to_bytes"
    return "bytes_to_bytes"


def _jsonable(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.dtype):
        return value.str
    if isinstance(value, np.ndarray):
        return _jsonable(value.tolist())
    return value


def _as_uint8_array(out: Any) -> NDArray:
    if isinstance(out, np.ndarray):
        return out
    return np.frombuffer(out, dtype=np.uint8)


class NumcodecsCodec(Codec):
    """Common part of the numcodecs adapters (one subclass per numcodecs id)."""

    codec_id: ClassVar[str] = ""
    typed_input: bool = False
    """v2 semantics: the compressor sees the chunk's items, not bytes (blosc then
    shuffles with the item size, as zarr-python 2 and zarr v2 arrays do)."""

    def __init__(self, **configuration: Any) -> None:
        if "id" in configuration:
            given = configuration.pop("id")
            if given != self.codec_id:
                raise CodecConfigError(
                    f"configuration id {given!r} does not match codec {self.codec_name!r}"
                )
        self._config: dict[str, Any] = _jsonable(configuration)
        self._codec: Any = None
        try:
            self._codec = self._build(self._config)
        except CodecConfigError:
            fill = _FILL_FROM_SPEC.get(self.codec_id)
            if fill is None or fill in self._config:
                raise
            # Completed later by evolve() from the chunk's dtype; check the rest now.
            placeholder = "<U1" if self.codec_id == "categorize" else _PLACEHOLDER[fill]
            self._build({**self._config, fill: placeholder})

    def _build(self, config: Mapping[str, Any]) -> Any:
        from numcodecs import get_codec

        try:
            return get_codec({"id": self.codec_id, **config})
        except Exception as exc:
            raise CodecConfigError(
                f"invalid configuration for numcodecs codec {self.codec_id!r}: "
                f"{self._config!r}: {exc}"
            ) from exc

    @property
    def numcodecs_codec(self) -> Any:
        """The wrapped numcodecs codec object."""
        if self._codec is None:
            raise CodecConfigError(
                f"numcodecs codec {self.codec_id!r} needs "
                f"{_FILL_FROM_SPEC.get(self.codec_id, 'more configuration')!r}; "
                "give it, or evolve() the codec with the chunk spec",
                codec=self,
            )
        return self._codec

    @classmethod
    def from_config(cls, configuration: dict[str, Any]) -> Self:
        """The numcodecs configuration without ``id``."""
        if not isinstance(configuration, Mapping):
            raise CodecConfigError(f"expected a configuration object, got {configuration!r}")
        return cls(**dict(configuration))

    def to_config(self) -> dict[str, Any]:
        return dict(self._config)

    def to_metadata(self) -> dict[str, Any]:
        """Always with ``configuration`` (even empty), as zarr-python writes it."""
        return {"name": self.codec_name, "configuration": self.to_config()}

    def to_v2_config(self) -> dict[str, Any]:
        """The numcodecs config (with ``id``) as zarr-python writes it into ``.zarray``."""
        config: dict[str, Any] = _jsonable(self.numcodecs_codec.get_config())
        if self.codec_id == "zstd" and not config.get("checksum", False):
            # as zarr-python: numcodecs < 0.13 readers reject the key (zarr-python#2647)
            config.pop("checksum", None)
        return config

    def evolve(self, spec: ChunkSpec) -> Self:
        """Fill in the dtype (or item size) from ``spec`` where the config leaves it out."""
        fill = _FILL_FROM_SPEC.get(self.codec_id)
        if fill is None or fill in self._config:
            return self
        value: Any = spec.dtype.itemsize if fill == "elementsize" else str(spec.dtype)
        new = type(self)(**{**self._config, fill: value})
        new.typed_input = self.typed_input
        return new

    def as_v2(self) -> Self:
        """A copy with v2 semantics (see :attr:`typed_input`)."""
        new = type(self)(**self._config)
        new.typed_input = True
        return new

    def __reduce__(self) -> tuple[Any, ...]:
        return (_rebuild, (self.codec_id, self.to_config(), self.typed_input))

    def _error(self, action: str, exc: BaseException) -> Exception:
        return codec_error(f"numcodecs {self.codec_id!r} failed to {action}: {exc}", codec=self)


# -- bytes -> bytes ------------------------------------------------------------------------


def _lz4_decode(codec: NumcodecsBytesBytesCodec, data: Any, max_size: int | None) -> Any:
    size = buffer_len(data)
    if size < 4:
        raise codec_error(f"{size} bytes is too short for numcodecs lz4 data", codec=codec)
    (nbytes,) = _LZ4_HEADER.unpack_from(data, 0)
    check_max_size(nbytes, max_size, codec)
    if nbytes == 0:
        return b""  # numcodecs cannot decode its own encoding of empty input
    if nbytes > 255 * size + 64:  # beyond LZ4's best possible ratio
        raise codec_error(f"corrupt lz4 header: claims {nbytes} bytes from {size}", codec=codec)
    return None  # header fine: decode with numcodecs


def _bounded(fn: Callable[..., Any]) -> Callable[[NumcodecsBytesBytesCodec, Any, int | None], Any]:
    def run(codec: NumcodecsBytesBytesCodec, data: Any, max_size: int | None) -> Any:
        return fn(data, max_size, codec)

    return run


def _lzma_decode(codec: NumcodecsBytesBytesCodec, data: Any, max_size: int | None) -> Any:
    nc = codec.numcodecs_codec
    return lzma_decompress(data, max_size, codec, format=nc.format, filters=nc.filters)


_DECODERS: dict[str, Callable[[NumcodecsBytesBytesCodec, Any, int | None], Any]] = {
    "zlib": _bounded(zlib_decompress),
    "gzip": _bounded(gzip_decompress),
    "bz2": _bounded(bz2_decompress),
    "zstd": _bounded(zstd_decompress),
    "blosc": _bounded(blosc_decompress),
    "lzma": _lzma_decode,
    "lz4": _lz4_decode,
}
_INTO: dict[str, Callable[[Any, Any, object], None]] = {
    "zstd": zstd_decompress_into,
    "blosc": blosc_decompress_into,
}


class NumcodecsBytesBytesCodec(NumcodecsCodec, BytesBytesCodec):
    """A numcodecs compressor or checksum as a v3 bytes -> bytes codec."""

    supports_decode_into: ClassVar[bool] = False

    def encode(self, data: bytes | memoryview, spec: ChunkSpec) -> bytes:
        dtype = spec.dtype
        size = dtype.itemsize
        if (
            self.typed_input
            and size > 1
            and buffer_len(data) % size == 0
            and dtype.kind not in "OVT"  # objects and records go as bytes
        ):
            if dtype.kind in "Mm":  # as numcodecs sees dates: their 64-bit counts
                dtype = np.dtype(np.int64).newbyteorder(dtype.byteorder)
            data = np.frombuffer(data, dtype=dtype)  # type: ignore[assignment]
        try:
            out = self.numcodecs_codec.encode(data)
        except CodecConfigError:
            raise
        except Exception as exc:
            raise self._error("encode", exc) from exc
        return out.tobytes() if isinstance(out, np.ndarray) else bytes(out)

    def decode(
        self, data: bytes | memoryview, spec: ChunkSpec, max_size: int | None = None
    ) -> bytes | memoryview:
        special = _DECODERS.get(self.codec_id)
        if special is not None:
            out = special(self, data, max_size)
            if out is not None:
                return out  # type: ignore[no-any-return]
        nc = self.numcodecs_codec
        try:
            out = nc.decode(data)
        except Exception as exc:
            raise self._error("decode", exc) from exc
        arr = np.ascontiguousarray(_as_uint8_array(out)).reshape(-1).view(np.uint8)
        # Unbounded ids are only checked here; _NEVER_GROW ones cannot exceed their input.
        check_max_size(arr.nbytes, max_size, self)
        return memoryview(arr)

    def decode_into(self, data: bytes | memoryview, out: Any, spec: ChunkSpec) -> None:
        """Decode into ``out`` (writable, C-contiguous, exactly the decoded size)."""
        into = _INTO.get(self.codec_id)
        if into is None:
            decode_bytes_into(self, data, out, spec)
            return
        into(data, out, self)


# -- array -> array --------------------------------------------------------------------------


def _order(spec: ChunkSpec) -> Any:
    return "F" if spec.order == "F" else "C"


def _contiguous(chunk: NDArray, spec: ChunkSpec) -> NDArray:
    return np.asfortranarray(chunk) if spec.order == "F" else np.ascontiguousarray(chunk)


def _fit(
    out: Any, shape: tuple[int, ...], dtype: np.dtype[Any], spec: ChunkSpec, codec: object
) -> NDArray:
    """``out`` as an array of ``shape``/``dtype``, flattened in ``spec.order``."""
    arr = (
        _as_uint8_array(out) if isinstance(out, bytes | bytearray | memoryview) else np.asarray(out)
    )
    if arr.dtype != dtype:
        if arr.dtype.itemsize == dtype.itemsize:
            arr = arr.view(dtype)
        else:
            flat = arr.reshape(-1, order="A")
            if flat.nbytes % max(dtype.itemsize, 1):
                raise codec_error(
                    f"numcodecs output of dtype {arr.dtype} cannot be read as {dtype}", codec=codec
                )
            arr = np.ascontiguousarray(flat).view(dtype)
    expected = math.prod(shape)
    if arr.size != expected:
        raise codec_error(
            f"numcodecs output has {arr.size} items, expected {expected} (shape {shape})",
            codec=codec,
        )
    if arr.shape == shape:
        return arr
    return arr.reshape(-1, order="A").reshape(shape, order=_order(spec))


class NumcodecsArrayArrayCodec(NumcodecsCodec, ArrayArrayCodec):
    """A numcodecs filter as a v3 array -> array codec."""

    def validate(self, spec: ChunkSpec) -> None:
        if self.codec_id == "packbits" and spec.dtype != np.dtype(bool):
            raise CodecConfigError(f"numcodecs.packbits needs a bool array, got {spec.dtype}")
        nc = self._codec
        if nc is None:
            return
        decoded = getattr(nc, "decode_dtype" if self.codec_id == "astype" else "dtype", None)
        if isinstance(decoded, np.dtype) and decoded.itemsize != spec.dtype.itemsize:
            raise CodecConfigError(
                f"numcodecs.{self.codec_id} is configured for {decoded}, the chunk is {spec.dtype}"
            )

    def resolve_spec(self, spec: ChunkSpec) -> ChunkSpec:
        if self.codec_id == "packbits":
            n = math.prod(spec.shape)
            return spec.with_(shape=(1 + math.ceil(n / 8),), dtype=np.dtype("u1"), order="C")
        nc = self._codec
        if nc is None:
            return spec
        if self.codec_id == "astype":
            return spec.with_(dtype=np.dtype(nc.encode_dtype))
        astype = getattr(nc, "astype", None)
        if astype is not None:
            return spec.with_(dtype=np.dtype(astype))
        return spec

    def encode(self, chunk: NDArray, spec: ChunkSpec) -> NDArray:
        nc = self.numcodecs_codec
        target = self.resolve_spec(spec)
        if target.nbytes == 0:
            return np.empty(target.shape, dtype=target.dtype)
        try:
            out = nc.encode(_contiguous(chunk, spec))
        except Exception as exc:
            raise self._error("encode", exc) from exc
        return _fit(out, target.shape, target.dtype, target, self)

    def decode(self, chunk: NDArray, spec: ChunkSpec) -> NDArray:
        nc = self.numcodecs_codec
        if spec.nbytes == 0:
            return np.empty(spec.shape, dtype=spec.dtype)
        try:
            out = nc.decode(_contiguous(chunk, self.resolve_spec(spec)))
        except Exception as exc:
            raise self._error("decode", exc) from exc
        return _fit(out, spec.shape, spec.dtype, spec, self)


# -- array -> bytes --------------------------------------------------------------------------


class NumcodecsArrayBytesCodec(NumcodecsCodec, ArrayBytesCodec):
    """A numcodecs array serialiser (pcodec, zfpy) as a v3 array -> bytes codec.

    Its output size is checked only after decoding.
    """

    def encode(self, chunk: NDArray, spec: ChunkSpec) -> bytes:
        try:
            out = self.numcodecs_codec.encode(np.ascontiguousarray(chunk))
        except Exception as exc:
            raise self._error("encode", exc) from exc
        return out.tobytes() if isinstance(out, np.ndarray) else bytes(out)

    def decode(self, data: bytes | memoryview, spec: ChunkSpec) -> NDArray:
        try:
            out = self.numcodecs_codec.decode(data)
        except Exception as exc:
            raise self._error("decode", exc) from exc
        arr = np.asarray(out)
        check_decoded_size(arr.nbytes, spec.nbytes, self)
        return _fit(arr, spec.shape, spec.dtype, spec.with_(order="C"), self)


# -- classes per id ----------------------------------------------------------------------------

_CLASSES: dict[str, type[NumcodecsCodec]] = {}
_CLASSES_LOCK = threading.Lock()


def numcodecs_adapter_class(codec_id: str) -> type[NumcodecsCodec]:
    """The adapter class for a numcodecs id (its ``codec_name`` is ``numcodecs.<id>``).

    Raises :class:`~asyncarr.errors.UnknownCodecError` when numcodecs does not
    know the id, and :class:`CodecConfigError` for refused ids (pickle,
    object-dtype codecs).
    """
    cls = _CLASSES.get(codec_id)
    if cls is not None:
        return cls
    with _CLASSES_LOCK:
        return _CLASSES.get(codec_id) or _make_class(codec_id)


def _make_class(codec_id: str) -> type[NumcodecsCodec]:
    if codec_id in _REFUSED:
        raise CodecConfigError(
            f"numcodecs codec {codec_id!r} is not supported: {_REFUSED[codec_id]}"
        )
    registry, entries = _registry()
    if codec_id not in registry and codec_id not in entries:
        known = sorted(k for k in set(registry) | set(entries) if k not in _REFUSED)
        raise UnknownCodecError(
            f"numcodecs has no codec {codec_id!r}; known numcodecs ids: {', '.join(known)}"
        )
    kind = numcodecs_kind(codec_id)
    base: type[NumcodecsCodec] = {
        "array_to_array": NumcodecsArrayArrayCodec,
        "array_to_bytes": NumcodecsArrayBytesCodec,
        "bytes_to_bytes": NumcodecsBytesBytesCodec,
    }[kind]
    attrs: dict[str, Any] = {
        "codec_id": codec_id,
        "codec_name": NUMCODECS_PREFIX + codec_id,
        "releases_gil": codec_id in _RELEASES_GIL,
        "__module__": __name__,
        "__doc__": f"numcodecs {codec_id!r} as a v3 {kind.replace('_', ' ')} codec.",
    }
    if kind == "bytes_to_bytes":
        attrs["supports_decode_into"] = codec_id in _INTO
    name = "Numcodecs_" + "".join(c if c.isalnum() else "_" for c in codec_id)
    cls = type(name, (base,), attrs)
    _CLASSES[codec_id] = cls
    return cls


def _rebuild(codec_id: str, configuration: dict[str, Any], typed_input: bool) -> NumcodecsCodec:
    codec = numcodecs_adapter(codec_id, configuration)
    return codec.as_v2() if typed_input else codec


def numcodecs_adapter(
    codec_id: str, configuration: Mapping[str, Any] | None = None
) -> NumcodecsCodec:
    """An adapter for numcodecs ``codec_id`` with ``configuration`` (without ``id``)."""
    return numcodecs_adapter_class(codec_id)(**dict(configuration or {}))
