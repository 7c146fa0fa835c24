"""Data types and fill values as Zarr v2 and v3 spell them in metadata."""

from __future__ import annotations

import base64
import math
from typing import Any

import numpy as np

from asyncarr.errors import MetadataError

__all__ = [
    "fill_value_or_default",
    "V3_DTYPE_NAMES",
    "decode_fill_value",
    "encode_fill_value",
    "parse_dtype",
    "parse_v2_dtype",
    "parse_v3_dtype",
    "v2_dtype_str",
    "v3_dtype_name",
]

V3_DTYPE_NAMES: dict[str, str] = {
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
_SUPPORTED_KINDS = "biufc"


def _check_supported(dt: np.dtype[Any], spelled: object, key: str | None) -> np.dtype[Any]:
    if dt.kind not in _SUPPORTED_KINDS or dt.fields is not None or dt.subdtype is not None:
        raise MetadataError(
            f"unsupported data type {spelled!r}: expected bool, (u)int8-64, float16/32/64 or "
            "complex64/128",
            key=key,
        )
    return dt


def parse_v3_dtype(value: object, *, key: str | None = None) -> np.dtype[Any]:
    """The native-endian numpy dtype for a v3 ``data_type`` name."""
    if isinstance(value, dict) and "name" in value:
        value = value["name"]
    if not isinstance(value, str) or value not in V3_DTYPE_NAMES:
        raise MetadataError(
            f"unknown or unsupported data_type {value!r}; expected one of {sorted(V3_DTYPE_NAMES)}",
            key=key,
        )
    return np.dtype(V3_DTYPE_NAMES[value]).newbyteorder("=")


def parse_v2_dtype(value: object, *, key: str | None = None) -> np.dtype[Any]:
    """The numpy dtype for a v2 ``dtype`` string, keeping its byte order."""
    if not isinstance(value, str):
        raise MetadataError(f"v2 dtype must be a string like '<f4', got {value!r}", key=key)
    try:
        dt = np.dtype(value)
    except TypeError as exc:
        raise MetadataError(f"invalid v2 dtype {value!r}", key=key) from exc
    return _check_supported(dt, value, key)


def parse_dtype(value: object) -> np.dtype[Any]:
    """A user-supplied dtype (anything numpy understands, or a v3 name)."""
    if isinstance(value, str) and value in V3_DTYPE_NAMES:
        return np.dtype(V3_DTYPE_NAMES[value]).newbyteorder("=")
    try:
        dt = np.dtype(value)  # type: ignore[call-overload]
    except TypeError as exc:
        raise MetadataError(f"invalid dtype {value!r}") from exc
    return _check_supported(dt, value, None)


def v3_dtype_name(dt: np.dtype[Any]) -> str:
    """The v3 ``data_type`` name of a numpy dtype (byte order is the bytes codec's job)."""
    native = dt.newbyteorder("=") if dt.byteorder not in ("|", "=") else dt
    for name, spelled in V3_DTYPE_NAMES.items():
        if np.dtype(spelled).newbyteorder("=") == native:
            return name
    raise MetadataError(f"data type {dt} has no Zarr v3 name")


def v2_dtype_str(dt: np.dtype[Any]) -> str:
    """The v2 ``dtype`` string, with an explicit byte order (e.g. ``'<f4'``)."""
    return str(dt.str)


def _float_from_json(value: object, dt: np.dtype[Any], key: str | None) -> float:
    if isinstance(value, bool):
        raise MetadataError(f"fill_value {value!r} is not valid for {dt}", key=key)
    if isinstance(value, int | float):
        return float(value)
    if isinstance(value, str):
        special = {"NaN": math.nan, "Infinity": math.inf, "-Infinity": -math.inf}
        if value in special:
            return special[value]
        if value.startswith("0x"):
            raw = bytes.fromhex(value[2:])
            if len(raw) != dt.itemsize:
                raise MetadataError(
                    f"hex fill_value {value!r} has {len(raw)} bytes, {dt} needs {dt.itemsize}",
                    key=key,
                )
            return float(np.frombuffer(raw, dtype=dt.newbyteorder(">"))[0])
    raise MetadataError(f"fill_value {value!r} is not valid for {dt}", key=key)


def decode_fill_value(
    value: object, dt: np.dtype[Any], *, zarr_format: int, key: str | None = None
) -> Any:
    """The numpy scalar for a metadata ``fill_value`` (``None`` stays ``None`` for v2)."""
    if value is None:
        if zarr_format == 3:
            raise MetadataError("fill_value must not be null in Zarr v3", key=key)
        return None
    try:
        if dt.kind == "b":
            if isinstance(value, bool | int) and value in (0, 1, True, False):
                return np.bool_(bool(value))
            raise MetadataError(f"fill_value {value!r} is not a boolean", key=key)
        if dt.kind in "iu":
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise MetadataError(f"fill_value {value!r} is not an integer", key=key)
            if isinstance(value, float) and not value.is_integer():
                raise MetadataError(f"fill_value {value!r} is not an integer", key=key)
            info = np.iinfo(dt)
            if not info.min <= int(value) <= info.max:
                raise MetadataError(f"fill_value {value!r} is out of range for {dt}", key=key)
            return dt.type(int(value))
        if dt.kind == "f":
            return dt.type(_float_from_json(value, dt, key))
        if dt.kind == "c":
            if isinstance(value, list | tuple) and len(value) == 2:
                part = np.dtype(f"f{dt.itemsize // 2}")
                return dt.type(
                    complex(
                        _float_from_json(value[0], part, key), _float_from_json(value[1], part, key)
                    )
                )
            if isinstance(value, int | float | str) and not isinstance(value, bool):
                return dt.type(_float_from_json(value, np.dtype("f8"), key))
            raise MetadataError(
                f"fill_value {value!r} is not valid for {dt}: expected [re, im]", key=key
            )
    except (OverflowError, ValueError) as exc:
        if isinstance(exc, MetadataError):
            raise
        raise MetadataError(f"fill_value {value!r} is not valid for {dt}", key=key) from exc
    if zarr_format == 2 and isinstance(value, str):  # pragma: no cover - other kinds refused above
        return base64.standard_b64decode(value)
    raise MetadataError(f"fill_value {value!r} is not valid for {dt}", key=key)


def _float_to_json(x: float) -> float | str:
    if math.isnan(x):
        return "NaN"
    if math.isinf(x):
        return "Infinity" if x > 0 else "-Infinity"
    return x


def encode_fill_value(value: Any, dt: np.dtype[Any], *, zarr_format: int) -> Any:
    """The JSON form of a fill value for metadata."""
    if value is None:
        if zarr_format == 2:
            return None
        value = 0
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
    if dt.kind == "c":
        c = complex(value)
        return [_float_to_json(c.real), _float_to_json(c.imag)]
    raise MetadataError(f"cannot encode fill_value {value!r} for {dt}")


def fill_value_or_default(value: Any, dt: np.dtype[Any]) -> Any:
    """The scalar chunks are filled with when never written (``None`` means zero)."""
    if value is None:
        return dt.type(0)
    return value
