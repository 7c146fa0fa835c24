"""The Zarr v3 core numeric data types: ``bool``, ``(u)int8..64``, ``float16..64``,
``complex64/128`` (v2: their numpy type strings, in either byte order)."""

from __future__ import annotations

import math
from typing import Any, ClassVar, Self

import numpy as np

from asyncarr.abc import DataType, ZarrFormat
from asyncarr.dtypes._common import native_dtype
from asyncarr.errors import ConfigError, MetadataError

__all__ = ["V3_NUMERIC_NAMES", "NumericDataType"]

V3_NUMERIC_NAMES: dict[str, str] = {
    "bool": "|b1",
    "int8": "|i1",
    "int16": "<i2",
    "int32": "<i4",
    "int64": "<i8",
    "uint8": "|u1",
    "uint16": "<u2",
    "uint32": "<u4",
    "uint64": "<u8",
    "float16": "<f2",
    "float32": "<f4",
    "float64": "<f8",
    "complex64": "<c8",
    "complex128": "<c16",
}
_KINDS = "biufc"


def _float_from_json(value: object, dt: np.dtype[Any]) -> float:
    if isinstance(value, bool):
        raise MetadataError(f"fill_value {value!r} is not valid for {dt}")
    if isinstance(value, int | float):
        return float(value)
    if isinstance(value, str):
        special = {"NaN": math.nan, "Infinity": math.inf, "-Infinity": -math.inf}
        if value in special:
            return special[value]
        if value.startswith("0x"):
            try:
                raw = bytes.fromhex(value[2:])
            except ValueError:
                raise MetadataError(f"fill_value {value!r} is not valid hex for {dt}") from None
            if len(raw) != dt.itemsize:
                raise MetadataError(
                    f"hex fill_value {value!r} has {len(raw)} bytes, {dt} needs {dt.itemsize}"
                )
            return float(np.frombuffer(raw, dtype=dt.newbyteorder(">"))[0])
    raise MetadataError(f"fill_value {value!r} is not valid for {dt}")


def _float_to_json(x: float) -> float | str:
    if math.isnan(x):
        return "NaN"
    if math.isinf(x):
        return "Infinity" if x > 0 else "-Infinity"
    return x


class NumericDataType(DataType):
    """Booleans, integers, floats and complex numbers."""

    v3_names: ClassVar[tuple[str, ...]] = tuple(V3_NUMERIC_NAMES)

    def __init__(self, dtype: np.dtype[Any] | str) -> None:
        dt = np.dtype(dtype)
        if dt.kind not in _KINDS or dt.fields is not None or dt.subdtype is not None:
            raise ConfigError(f"{dt} is not a numeric data type")
        self._dtype = dt

    @property
    def dtype(self) -> np.dtype[Any]:
        return self._dtype

    @property
    def name(self) -> str:
        native = native_dtype(self._dtype)
        for name, spelled in V3_NUMERIC_NAMES.items():
            if native_dtype(np.dtype(spelled)) == native:
                return name
        raise MetadataError(f"data type {self._dtype} has no Zarr v3 name")  # pragma: no cover

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (self._dtype.str,))

    @classmethod
    def from_json(
        cls, value: object, *, zarr_format: ZarrFormat, object_codec: str | None = None
    ) -> Self | None:
        if zarr_format == 3:
            if isinstance(value, dict) and set(value) <= {"name", "configuration"}:
                if value.get("configuration") not in (None, {}):
                    return None
                value = value.get("name")
            if isinstance(value, str) and value in V3_NUMERIC_NAMES:
                return cls(native_dtype(np.dtype(V3_NUMERIC_NAMES[value])))
            return None
        if not isinstance(value, str) or object_codec is not None:
            return None
        try:
            dt = np.dtype(value)
        except (TypeError, ValueError):
            return None
        if dt.kind not in _KINDS or dt.fields is not None or dt.subdtype is not None:
            return None
        return cls(dt)

    @classmethod
    def from_numpy(cls, dtype: np.dtype[Any]) -> Self | None:
        if dtype.kind not in _KINDS or dtype.fields is not None or dtype.subdtype is not None:
            return None
        return cls(dtype)

    def describe(self) -> str:
        """numpy's name: the v3 name, or with the byte order where it is not native."""
        return str(self._dtype)

    def to_json(self, zarr_format: ZarrFormat) -> Any:
        return self.name if zarr_format == 3 else self._dtype.str

    def native(self) -> NumericDataType:
        native = native_dtype(self._dtype)
        return (
            self if native == self._dtype and native.str == self._dtype.str else type(self)(native)
        )

    def default_fill(self) -> Any:
        return self._dtype.type(0)

    # -- fill values ----------------------------------------------------------------------
    def fill_from_json(self, value: object, *, zarr_format: ZarrFormat) -> Any:
        dt = self._dtype
        try:
            if dt.kind == "b":
                if isinstance(value, bool | int) and value in (0, 1, True, False):
                    return np.bool_(bool(value))
                raise MetadataError(f"fill_value {value!r} is not a boolean")
            if dt.kind in "iu":
                if isinstance(value, bool) or not isinstance(value, int | float):
                    raise MetadataError(f"fill_value {value!r} is not an integer")
                if isinstance(value, float) and not value.is_integer():
                    raise MetadataError(f"fill_value {value!r} is not an integer")
                info = np.iinfo(dt)
                if not info.min <= int(value) <= info.max:
                    raise MetadataError(f"fill_value {value!r} is out of range for {dt}")
                return dt.type(int(value))
            if dt.kind == "f":
                with np.errstate(over="ignore"):  # a huge value is infinite in a small float
                    return dt.type(_float_from_json(value, dt))
            if isinstance(value, list | tuple) and len(value) == 2:
                part = np.dtype(f"f{dt.itemsize // 2}")
                return dt.type(
                    complex(_float_from_json(value[0], part), _float_from_json(value[1], part))
                )
            if isinstance(value, int | float | str) and not isinstance(value, bool):
                return dt.type(_float_from_json(value, np.dtype("f8")))
            raise MetadataError(f"fill_value {value!r} is not valid for {dt}: expected [re, im]")
        except (OverflowError, ValueError) as exc:
            if isinstance(exc, MetadataError):
                raise
            raise MetadataError(f"fill_value {value!r} is not valid for {dt}") from exc

    def fill_to_json(self, value: Any, *, zarr_format: ZarrFormat) -> Any:
        dt = self._dtype
        if dt.kind == "b":
            return bool(value)
        if dt.kind in "iu":
            return int(value)
        if dt.kind == "f":
            x = float(value)
            if math.isnan(x) and zarr_format == 3:
                bits = np.array(value, dtype=dt).view(f"u{dt.itemsize}").item()
                canonical = np.array(np.nan, dtype=dt).view(f"u{dt.itemsize}").item()
                if bits != canonical:  # keep a non-canonical NaN payload exactly
                    return "0x" + np.array(value, dtype=dt.newbyteorder(">")).tobytes().hex()
            return _float_to_json(x)
        c = complex(value)
        return [_float_to_json(c.real), _float_to_json(c.imag)]

    def cast_fill(self, value: Any) -> Any:
        dt = self._dtype
        if isinstance(value, str):
            try:  # a spelling metadata uses ("NaN", "Infinity", "0x7fc00000", ...)
                return self.fill_from_json(value, zarr_format=3)
            except MetadataError as exc:
                raise ConfigError(str(exc)) from exc
        try:
            with np.errstate(over="ignore", invalid="ignore"):  # overflow is refused below
                scalar = np.asarray(value).astype(dt, casting="unsafe")
        except (TypeError, ValueError, OverflowError) as exc:
            raise ConfigError(f"fill_value {value!r} is not valid for {dt}") from exc
        source = np.asarray(value)
        if scalar.shape != ():
            raise ConfigError(f"fill_value {value!r} is not valid for {dt}: expected one value")
        if dt.kind in "iu" and source.dtype.kind == "f" and not float(value).is_integer():
            raise ConfigError(f"fill_value {value!r} is not valid for {dt}")
        if source.dtype.kind in "biuf":
            # the cast must keep the value (256 in uint8 is not 0, 1e6 in float16 is not inf);
            # floats may round (0.1 in float32)
            if dt.kind in "biu":
                kept = bool(scalar == source) if dt.kind != "b" else source in (0, 1)
            else:
                kept = bool(np.isfinite(scalar)) or not bool(np.isfinite(source))
            if not kept:
                raise ConfigError(f"fill_value {value!r} is out of range for {dt}")
        return scalar[()]
