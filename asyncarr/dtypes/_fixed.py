"""Fixed-size text and bytes: ``fixed_length_utf32`` (numpy ``U``),
``null_terminated_bytes`` (numpy ``S``) and ``raw_bytes`` / ``r<bits>`` (numpy ``V``)."""

from __future__ import annotations

import base64
import re
from typing import Any, ClassVar, Self

import numpy as np

from asyncarr.abc import DataType, ZarrFormat
from asyncarr.dtypes._common import (
    bad_fill,
    bad_user_fill,
    bytes_from_json,
    is_json_int,
)
from asyncarr.errors import ConfigError, MetadataError

__all__ = ["FixedBytes", "FixedUnicode", "RawBytes"]

MAX_ITEM_BYTES = 1 << 31
"""Largest item a fixed-size text or bytes type may declare (numpy's own limit)."""


def _length_config(value: object, name: str, *, multiple: int = 1) -> int:
    """``length_bytes`` from ``{"name": name, "configuration": {"length_bytes": n}}``."""
    if not isinstance(value, dict) or set(value) != {"name", "configuration"}:
        raise MetadataError(
            f"data type {name!r} needs a configuration with length_bytes, got {value!r}"
        )
    config = value["configuration"]
    if not isinstance(config, dict) or set(config) != {"length_bytes"}:
        raise MetadataError(
            f"the configuration of {name!r} must be {{'length_bytes': n}}, got {config!r}"
        )
    n = config["length_bytes"]
    if not is_json_int(n) or n < multiple or n % multiple or n > MAX_ITEM_BYTES:
        detail = f"a positive multiple of {multiple}" if multiple > 1 else "a positive integer"
        raise MetadataError(
            f"length_bytes of {name!r} must be {detail} up to {MAX_ITEM_BYTES}, got {n!r}"
        )
    return int(n)


def _v2_length(value: object, pattern: str) -> int | None:
    if not isinstance(value, str):
        return None
    match = re.fullmatch(pattern, value)
    if match is None:
        return None
    n = int(match.group(1))
    if n < 1 or n > MAX_ITEM_BYTES:
        raise MetadataError(f"the v2 dtype {value!r} must have a length from 1 to {MAX_ITEM_BYTES}")
    return n


class _Sized(DataType):
    """What the three sized types share: items of ``length`` units of ``unit`` bytes,
    spelled ``{"name": ..., "configuration": {"length_bytes": n}}`` (v3) and as the numpy
    type string (v2: ``<U7``, ``|S5``, ``|V5``)."""

    kind: ClassVar[str]
    """The numpy kind: ``U``, ``S`` or ``V``."""
    unit: ClassVar[int] = 1
    """Bytes per unit of length (4 for UTF-32 text)."""
    what: ClassVar[str]

    def __init__(self, length: int, byteorder: str = "|") -> None:
        if length < 1:
            raise ConfigError(f"{self.what} need a length of at least 1, got {length}")
        self._dtype = np.dtype(f"{byteorder}{self.kind}{length}")

    @property
    def dtype(self) -> np.dtype[Any]:
        return self._dtype

    @property
    def name(self) -> str:
        return self.v3_names[0]

    @property
    def length(self) -> int:
        return self._dtype.itemsize // self.unit

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (self.length, self._dtype.byteorder))

    def describe(self) -> str:
        return f"{self.name} ({self.length} {'characters' if self.unit > 1 else 'bytes'})"

    @classmethod
    def from_json(
        cls, value: object, *, zarr_format: ZarrFormat, object_codec: str | None = None
    ) -> Self | None:
        if zarr_format == 3:
            if not (isinstance(value, dict) and value.get("name") in cls.v3_names):
                return None
            return cls(_length_config(value, str(value["name"]), multiple=cls.unit) // cls.unit)
        length = _v2_length(value, rf"[<>|=]{cls.kind}(\d+)")
        if length is None or object_codec is not None:
            return None
        return cls(length, np.dtype(str(value)).byteorder)

    @classmethod
    def from_numpy(cls, dtype: np.dtype[Any]) -> Self | None:
        if dtype.kind != cls.kind or dtype.fields is not None or dtype.subdtype is not None:
            return None
        if dtype.itemsize == 0:
            raise ConfigError(
                f"the dtype {cls.kind}0 holds nothing; give a length (e.g. '{cls.kind}12')"
                + (", or dtype=bytes for variable-length byte strings" if cls.kind == "S" else "")
            )
        return cls(dtype.itemsize // cls.unit, dtype.byteorder)

    def to_json(self, zarr_format: ZarrFormat) -> Any:
        if zarr_format == 2:
            return self._dtype.str
        return {"name": self.name, "configuration": {"length_bytes": self._dtype.itemsize}}


class FixedUnicode(_Sized):
    """Text of at most ``length`` code points, stored as UTF-32 (numpy ``U<length>``).

    v3 ``fixed_length_utf32`` (``length_bytes`` = 4 per code point); v2 ``<U7``/``>U7``.
    """

    v3_names: ClassVar[tuple[str, ...]] = ("fixed_length_utf32",)
    kind: ClassVar[str] = "U"
    unit: ClassVar[int] = 4
    what: ClassVar[str] = "fixed-length texts"

    def __init__(self, length: int, byteorder: str = "=") -> None:
        super().__init__(length, byteorder)

    def native(self) -> FixedUnicode:
        return self if self._dtype.byteorder in "=|" else type(self)(self.length)

    def default_fill(self) -> Any:
        return self._dtype.type("")

    def _scalar(self, text: str, fail: Any) -> Any:
        if len(text) > self.length:
            fail(text, self.describe(), f"text of at most {self.length} characters")
        return self._dtype.type(text)

    def fill_from_json(self, value: object, *, zarr_format: ZarrFormat) -> Any:
        if isinstance(value, str):
            return self._scalar(value, bad_fill)
        if zarr_format == 2 and is_json_int(value):  # zarr 2 wrote its default fill, 0
            return self._scalar(str(value), bad_fill)
        bad_fill(value, self.describe(), "a string")

    def fill_to_json(self, value: Any, *, zarr_format: ZarrFormat) -> Any:
        return str(value)

    def cast_fill(self, value: Any) -> Any:
        if isinstance(value, str | np.str_):
            return self._scalar(str(value), bad_user_fill)
        bad_user_fill(value, self.describe(), "a string")


class FixedBytes(_Sized):
    """Byte strings of at most ``length`` bytes, zero-padded (numpy ``S<length>``).

    v3 ``null_terminated_bytes``; v2 ``|S5``. Fill values are base64. For v3 they are
    written as zarr-python writes them, without trailing zero bytes (reading pads them
    back); for v2 with all of them, which tensorstore requires and zarr-python reads alike.
    """

    v3_names: ClassVar[tuple[str, ...]] = ("null_terminated_bytes",)
    kind: ClassVar[str] = "S"
    what: ClassVar[str] = "fixed-length bytes"

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (self.length,))

    def default_fill(self) -> Any:
        return np.bytes_(b"")

    def _scalar(self, raw: bytes, fail: Any) -> Any:
        if len(raw) > self._dtype.itemsize:
            fail(raw, self.describe(), f"at most {self._dtype.itemsize} bytes")
        return np.bytes_(raw)

    def fill_from_json(self, value: object, *, zarr_format: ZarrFormat) -> Any:
        if zarr_format == 2 and is_json_int(value):  # zarr 2 wrote its default fill, 0
            return self._scalar(str(value).encode(), bad_fill)
        try:
            return self._scalar(bytes_from_json(value, self.describe()), bad_fill)
        except MetadataError:
            if zarr_format == 2 and isinstance(value, str) and value.isascii():
                # zarr 2 read a fill value that is not base64 as the text itself
                return self._scalar(value.encode("ascii"), bad_fill)
            raise

    def fill_to_json(self, value: Any, *, zarr_format: ZarrFormat) -> Any:
        raw = bytes(np.bytes_(value))
        if zarr_format == 2:  # all of the item: tensorstore needs it, zarr-python reads both
            raw = raw.ljust(self._dtype.itemsize, b"\x00")
        return base64.standard_b64encode(raw).decode("ascii")

    def cast_fill(self, value: Any) -> Any:
        if isinstance(value, str):
            try:
                value = value.encode("ascii")
            except UnicodeEncodeError:
                bad_user_fill(value, self.describe(), "bytes (or ASCII text)")
        if isinstance(value, bytes | np.bytes_):
            return self._scalar(bytes(value), bad_user_fill)
        bad_user_fill(value, self.describe(), "bytes")


class RawBytes(_Sized):
    """Opaque items of ``length`` bytes (numpy ``V<length>``).

    v3 ``raw_bytes`` (written, as zarr-python does) and the core spec's ``r<bits>``
    (read, and written back so: ``r40`` is 5 bytes); v2 ``|V5`` (``<V5``/``>V5`` read too).
    """

    v3_names: ClassVar[tuple[str, ...]] = ("raw_bytes",)
    v3_name_pattern: ClassVar[str | None] = r"r\d+"
    kind: ClassVar[str] = "V"
    what: ClassVar[str] = "raw bytes"

    def __init__(self, length: int, byteorder: str = "|", *, bits_name: bool = False) -> None:
        super().__init__(length)
        self._bits_name = bits_name
        """Spelled ``r<bits>`` (v3 core), written back that way (fill: a list of bytes)."""

    @property
    def name(self) -> str:
        return f"r{8 * self._dtype.itemsize}" if self._bits_name else "raw_bytes"

    def __reduce__(self) -> tuple[Any, ...]:
        return (_raw_bytes, (self.length, self._bits_name))

    def _identity(self) -> tuple[Any, ...]:
        return (type(self), self._dtype.itemsize)  # r40 and raw_bytes(5) are one type

    @classmethod
    def from_json(
        cls, value: object, *, zarr_format: ZarrFormat, object_codec: str | None = None
    ) -> Self | None:
        if zarr_format == 3 and isinstance(value, str) and re.fullmatch(r"r\d+", value):
            bits = int(value[1:])
            if bits < 8 or bits % 8 or bits // 8 > MAX_ITEM_BYTES:
                raise MetadataError(
                    f"raw data type {value!r} must be a positive multiple of 8 bits"
                )
            return cls(bits // 8, bits_name=True)
        return super().from_json(value, zarr_format=zarr_format, object_codec=object_codec)

    def to_json(self, zarr_format: ZarrFormat) -> Any:
        if zarr_format == 3 and self._bits_name:
            return self.name
        return super().to_json(zarr_format)

    def default_fill(self) -> Any:
        return np.zeros((), self._dtype)[()]

    def _scalar(self, raw: bytes, fail: Any) -> Any:
        size = self._dtype.itemsize
        if len(raw) > size:
            fail(raw, self.describe(), f"at most {size} bytes")
        return np.frombuffer(raw.ljust(size, b"\x00"), self._dtype)[0]

    def fill_from_json(self, value: object, *, zarr_format: ZarrFormat) -> Any:
        if zarr_format == 2 and value == 0 and is_json_int(value):  # zarr 2's default fill
            return self.default_fill()
        return self._scalar(bytes_from_json(value, self.describe()), bad_fill)

    def fill_to_json(self, value: Any, *, zarr_format: ZarrFormat) -> Any:
        raw = np.asarray(value, self._dtype).tobytes()
        if self._bits_name and zarr_format == 3:
            return list(raw)
        return base64.standard_b64encode(raw).decode("ascii")

    def cast_fill(self, value: Any) -> Any:
        if isinstance(value, np.void) and value.dtype.fields is None:
            value = value.tobytes()
        if isinstance(value, bytes | bytearray):
            return self._scalar(bytes(value), bad_user_fill)
        if is_json_int(value) and value == 0:
            return self.default_fill()
        bad_user_fill(value, self.describe(), "bytes")


def _raw_bytes(length: int, bits_name: bool) -> RawBytes:
    return RawBytes(length, bits_name=bits_name)
