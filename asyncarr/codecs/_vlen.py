"""Codecs for arrays of variable-length elements (array -> bytes).

``vlen-utf8`` and ``vlen-bytes`` (v3 names; the same ids as v2 filters) store a chunk
as a little-endian ``u32`` element count, then per element a ``u32`` byte length and
the bytes (UTF-8 for text). For v2 object arrays there are also ``vlen-array`` (1-d
numeric arrays, same layout), ``json2`` (the chunk as one JSON document) and
``pickle`` (refused unless pickled data is trusted: :func:`allow_pickle_decoding`).

Decoding never trusts the chunk: the element count must be the chunk's (so nothing is
allocated for a count the chunk merely claims), every stored length must fit in what
is left of the buffer, and anything else is a :class:`~asyncarr.errors.CodecError`
naming what was wrong. These codecs cannot decode into a preallocated fixed-size
buffer (their items are Python objects, or numpy ``StringDType`` strings): the runtime
decodes them in threads, and worker processes send the decoded chunk back.
"""

from __future__ import annotations

import json
import os
import pickle
import struct
import threading
from typing import Any, ClassVar, Self

import numpy as np

from asyncarr._types import ChunkSpec
from asyncarr.abc import ArrayBytesCodec, NDArray
from asyncarr.codecs._base import CodecConfigError, buffer_len, codec_error
from asyncarr.errors import CodecError

__all__ = [
    "PICKLE_ENV_VAR",
    "JsonObjectCodec",
    "PickleCodec",
    "VlenArrayCodec",
    "VlenBytesCodec",
    "VlenCodec",
    "VlenUtf8Codec",
    "allow_pickle_decoding",
    "object_codec_from_v2",
    "pickle_decoding_allowed",
]

PICKLE_ENV_VAR = "ASYNCARR_ALLOW_PICKLE"
"""Set to ``1`` (before starting Python) to trust pickled chunks in every process."""

_HEADER = struct.Struct("<I")
_pickle_lock = threading.Lock()
_pickle_allowed = os.environ.get(PICKLE_ENV_VAR, "").strip().lower() in ("1", "true", "yes")


def allow_pickle_decoding(allowed: bool = True) -> bool:
    """Trust pickled chunks (v2 object arrays with the ``pickle`` filter) from now on, in
    this process: arrays opened afterwards decode them, also in codec worker processes.

    Unpickling runs whatever code the data names, so only opt in for data you trust.
    Returns the previous setting (pass it back to restore it). The environment variable
    :data:`PICKLE_ENV_VAR` (``ASYNCARR_ALLOW_PICKLE=1``) opts in from the start.
    """
    global _pickle_allowed
    with _pickle_lock:
        previous, _pickle_allowed = _pickle_allowed, bool(allowed)
    return previous


def pickle_decoding_allowed() -> bool:
    """Whether pickled chunks are trusted in this process (:func:`allow_pickle_decoding`)."""
    return _pickle_allowed


def _flat(chunk: NDArray, spec: ChunkSpec) -> NDArray:
    """The chunk's elements in storage order (``spec.order``), as a 1-d object array."""
    flat = np.asarray(chunk).reshape(-1, order="F" if spec.order == "F" else "C")
    if flat.dtype != object:
        return flat.astype(object)
    return flat if flat.flags.writeable else flat.copy()  # (numcodecs needs writable input)


def _shaped(flat: NDArray, spec: ChunkSpec) -> NDArray:
    return flat.reshape(spec.shape, order="F" if spec.order == "F" else "C")


class VlenCodec(ArrayBytesCodec):
    """The shared layout of ``vlen-utf8``, ``vlen-bytes`` and ``vlen-array``: a ``u32``
    element count, then per element a ``u32`` length and its bytes."""

    releases_gil: ClassVar[bool] = False
    variable_length: ClassVar[bool] = True
    """Decoded sizes are known only from the data (no decode into a fixed-size buffer)."""

    @classmethod
    def from_config(cls, configuration: dict[str, Any]) -> Self:
        if configuration:
            raise CodecConfigError(
                f"{cls.codec_name} takes no configuration, got {configuration!r}"
            )
        return cls()

    def to_config(self) -> dict[str, Any]:
        return {}

    def to_metadata(self) -> dict[str, Any]:
        """With an empty ``configuration``, as zarr-python writes it."""
        return {"name": self.codec_name, "configuration": {}}

    def _numcodecs(self) -> Any:
        raise NotImplementedError

    def check(self, data: bytes | memoryview, spec: ChunkSpec) -> memoryview:
        """``data`` as a flat byte view, after checking its element count is the chunk's
        and that it can hold that many length prefixes."""
        view = memoryview(data).cast("B") if not isinstance(data, bytes) else memoryview(data)
        size = view.nbytes
        n = 1
        for s in spec.shape:
            n *= s
        if size < _HEADER.size:
            raise codec_error(
                f"a {self.codec_name} chunk of {size} bytes is too short for its 4-byte "
                "element count (truncated?)",
                codec=self,
            )
        (count,) = _HEADER.unpack_from(view, 0)
        if count != n:
            raise codec_error(
                f"the {self.codec_name} chunk says it holds {count} elements; a chunk of shape "
                f"{list(spec.shape)} holds {n}",
                codec=self,
            )
        if size < _HEADER.size * (1 + n):
            raise codec_error(
                f"a {self.codec_name} chunk of {size} bytes cannot hold the length prefixes "
                f"of {n} elements (truncated?)",
                codec=self,
            )
        return view

    def _decode_flat(self, view: memoryview, spec: ChunkSpec) -> NDArray:
        try:
            flat = self._numcodecs().decode(view)
        except UnicodeDecodeError as exc:
            raise codec_error(f"an element is not valid UTF-8: {exc}", codec=self) from None
        except (ValueError, TypeError) as exc:
            raise codec_error(
                f"a stored element length runs past the end of the {buffer_len(view)}-byte "
                f"chunk (truncated or corrupt): {exc}",
                codec=self,
            ) from None
        return np.asarray(flat)

    def decode(self, data: bytes | memoryview, spec: ChunkSpec) -> NDArray:
        flat = self._decode_flat(self.check(data, spec), spec)
        if spec.dtype == flat.dtype:
            return _shaped(flat, spec)
        out = np.empty(spec.shape, spec.dtype)
        out[...] = _shaped(flat, spec)  # (casting while copying: faster than astype)
        return out

    def decode_into(self, data: bytes | memoryview, out: NDArray, spec: ChunkSpec) -> None:
        """Decode into ``out`` (of ``spec.shape``, e.g. a view of a read's output): the
        strings are converted once, straight into place."""
        if out.shape != spec.shape:
            raise codec_error(f"output has shape {out.shape}, expected {spec.shape}", codec=self)
        out[...] = _shaped(self._decode_flat(self.check(data, spec), spec), spec)

    def encode(self, chunk: NDArray, spec: ChunkSpec) -> bytes:
        if chunk.shape != spec.shape:
            raise codec_error(f"chunk has shape {chunk.shape}, expected {spec.shape}", codec=self)
        try:
            out = self._numcodecs().encode(_flat(chunk, spec))
        except (TypeError, ValueError) as exc:
            raise codec_error(f"cannot encode the chunk: {exc}", codec=self) from None
        return bytes(out)


class VlenUtf8Codec(VlenCodec):
    """``vlen-utf8``: variable-length strings (``string`` arrays, v2 ``"|O"`` text)."""

    codec_name: ClassVar[str] = "vlen-utf8"

    def _numcodecs(self) -> Any:
        from numcodecs.vlen import VLenUTF8

        return VLenUTF8()

    def validate(self, spec: ChunkSpec) -> None:
        if not spec.dtype.hasobject:
            raise CodecConfigError(f"vlen-utf8 stores strings, not {spec.dtype}")


class VlenBytesCodec(VlenCodec):
    """``vlen-bytes``: variable-length byte strings (``variable_length_bytes`` arrays)."""

    codec_name: ClassVar[str] = "vlen-bytes"

    def _numcodecs(self) -> Any:
        from numcodecs.vlen import VLenBytes

        return VLenBytes()

    def validate(self, spec: ChunkSpec) -> None:
        if spec.dtype != np.dtype(object):
            raise CodecConfigError(
                f"vlen-bytes stores byte strings (object arrays), not {spec.dtype}"
            )


class VlenArrayCodec(VlenCodec):
    """v2 ``vlen-array``: each element a 1-d array of ``dtype``."""

    codec_name: ClassVar[str] = "vlen-array"

    def __init__(self, dtype: str | np.dtype[Any]) -> None:
        try:
            self.dtype = np.dtype(dtype)
        except TypeError as exc:
            raise CodecConfigError(f"invalid vlen-array dtype {dtype!r}: {exc}") from None
        if self.dtype.hasobject or self.dtype.itemsize == 0:
            raise CodecConfigError(
                f"vlen-array elements must be of a fixed-size dtype, not {dtype!r}"
            )

    @classmethod
    def from_config(cls, configuration: dict[str, Any]) -> Self:
        if set(configuration) != {"dtype"}:
            raise CodecConfigError(f"vlen-array needs exactly a dtype, got {configuration!r}")
        return cls(configuration["dtype"])

    def to_config(self) -> dict[str, Any]:
        return {"dtype": self.dtype.str}

    def _numcodecs(self) -> Any:
        from numcodecs.vlen import VLenArray

        return VLenArray(self.dtype)

    def decode(self, data: bytes | memoryview, spec: ChunkSpec) -> NDArray:
        view = self.check(data, spec)
        return _shaped(self._decode_flat(view, spec), spec)


class JsonObjectCodec(ArrayBytesCodec):
    """v2 ``json2``: the chunk as one JSON document ``[values..., "|O", shape]``."""

    codec_name: ClassVar[str] = "json2"
    releases_gil: ClassVar[bool] = False
    variable_length: ClassVar[bool] = True

    def __init__(self, **config: Any) -> None:
        from numcodecs import JSON

        self._config = dict(config)
        try:
            self._codec = JSON(**config)
        except TypeError as exc:
            raise CodecConfigError(f"invalid json2 configuration {config!r}: {exc}") from None

    @classmethod
    def from_config(cls, configuration: dict[str, Any]) -> Self:
        return cls(**configuration)

    def to_config(self) -> dict[str, Any]:
        return dict(self._config)

    def __reduce__(self) -> tuple[Any, ...]:
        return (_json_codec, (self._config,))

    def encode(self, chunk: NDArray, spec: ChunkSpec) -> bytes:
        try:
            return bytes(self._codec.encode(np.asarray(chunk, dtype=object)))
        except (TypeError, ValueError) as exc:
            raise codec_error(f"cannot encode the chunk as JSON: {exc}", codec=self) from None

    def decode(self, data: bytes | memoryview, spec: ChunkSpec) -> NDArray:
        encoding = self._config.get("encoding", "utf-8")
        try:
            items = json.loads(
                bytes(data).decode(encoding), strict=self._config.get("strict", True)
            )
        except (ValueError, UnicodeDecodeError, LookupError, RecursionError) as exc:
            raise codec_error(f"the chunk is not valid JSON: {exc}", codec=self) from None
        if not isinstance(items, list) or len(items) < 2 or not isinstance(items[-1], list):
            raise codec_error("the JSON chunk is not [values..., dtype, shape]", codec=self)
        shape, values = items[-1], items[:-2]
        n = 1
        for s in spec.shape:
            n *= s
        out = np.empty(spec.shape, dtype=object)
        if shape == list(spec.shape):
            if not spec.shape:
                out[()] = values[0] if values else None
                return out
            _fill_nested(out, values, codec=self)
            return out
        if shape == [n] and len(values) == n:  # stored flat
            flat = np.empty(n, dtype=object)
            flat[:] = values
            return _shaped(flat, spec)
        raise codec_error(
            f"the JSON chunk has shape {shape!r}, expected {list(spec.shape)}", codec=self
        )


def _json_codec(config: dict[str, Any]) -> JsonObjectCodec:
    return JsonObjectCodec(**config)


def _fill_nested(out: NDArray, values: list[Any], *, codec: object) -> None:
    """Put nested lists of ``out.shape`` into ``out``, element by element (an element
    that is itself a list stays one element)."""

    def walk(level: list[Any], index: tuple[int, ...]) -> None:
        axis = len(index)
        if not isinstance(level, list) or len(level) != out.shape[axis]:
            raise codec_error(
                f"the JSON chunk's values do not have the shape {list(out.shape)}", codec=codec
            )
        if axis == out.ndim - 1:
            for i, v in enumerate(level):
                out[(*index, i)] = v
            return
        for i, sub in enumerate(level):
            walk(sub, (*index, i))

    walk(values, ())


class PickleCodec(ArrayBytesCodec):
    """v2 ``pickle``: the chunk as a pickled object array. Decoding runs whatever code the
    data names, so it is refused unless pickled data is trusted
    (:func:`allow_pickle_decoding`) when the array is opened."""

    codec_name: ClassVar[str] = "pickle"
    releases_gil: ClassVar[bool] = False
    variable_length: ClassVar[bool] = True

    def __init__(
        self, protocol: int = pickle.HIGHEST_PROTOCOL, *, trusted: bool | None = None
    ) -> None:
        self.protocol = int(protocol)
        self.trusted = pickle_decoding_allowed() if trusted is None else trusted

    @classmethod
    def from_config(cls, configuration: dict[str, Any]) -> Self:
        return cls(**configuration)

    def to_config(self) -> dict[str, Any]:
        return {"protocol": self.protocol}

    def __reduce__(self) -> tuple[Any, ...]:
        return (_pickle_codec, (self.protocol, self.trusted))

    def encode(self, chunk: NDArray, spec: ChunkSpec) -> bytes:
        try:
            return pickle.dumps(np.asarray(chunk, dtype=object), protocol=self.protocol)
        except (pickle.PicklingError, TypeError, ValueError, AttributeError) as exc:
            raise codec_error(f"cannot pickle the chunk: {exc}", codec=self) from None

    def decode(self, data: bytes | memoryview, spec: ChunkSpec) -> NDArray:
        if not (self.trusted or pickle_decoding_allowed()):
            raise CodecError(
                "refusing to unpickle a chunk: unpickling runs whatever code the data names. "
                "If you trust this data, call asyncarr.allow_pickle_decoding() before opening "
                f"the array (or set {PICKLE_ENV_VAR}=1)",
                codec=self.codec_name,
            )
        try:
            value = pickle.loads(bytes(data))
        except Exception as exc:
            raise codec_error(f"the chunk does not unpickle: {exc!r}", codec=self) from None
        arr = np.asarray(value, dtype=object) if not isinstance(value, np.ndarray) else value
        n = 1
        for s in spec.shape:
            n *= s
        if arr.size != n:
            raise codec_error(
                f"the unpickled chunk has {arr.size} elements, expected {n}", codec=self
            )
        return _shaped(arr.reshape(-1, order="A").astype(object), spec)


def _pickle_codec(protocol: int, trusted: bool) -> PickleCodec:
    return PickleCodec(protocol, trusted=trusted)


def object_codec_from_v2(config: dict[str, Any]) -> ArrayBytesCodec:
    """The codec for a v2 object codec entry (``{"id": "vlen-utf8"}``, ...)."""
    rest = {k: v for k, v in config.items() if k != "id"}
    codec_id = config.get("id")
    if codec_id == "vlen-utf8":
        return VlenUtf8Codec()
    if codec_id == "vlen-bytes":
        return VlenBytesCodec()
    if codec_id == "vlen-array":
        return VlenArrayCodec.from_config(rest)
    if codec_id == "json2":
        return JsonObjectCodec.from_config(rest)
    if codec_id == "pickle":
        return PickleCodec.from_config(rest)
    raise CodecConfigError(
        f"object arrays stored with {codec_id!r} are not supported (supported object codecs: "
        "vlen-utf8, vlen-bytes, vlen-array, json2, pickle)"
    )
