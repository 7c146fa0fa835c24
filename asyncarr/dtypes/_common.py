"""Helpers shared by the data types: JSON checks, base64, errors naming the value."""

from __future__ import annotations

import base64
import binascii
from typing import Any, NoReturn

import numpy as np

from asyncarr.errors import ConfigError, MetadataError

__all__ = [
    "bad_fill",
    "bad_user_fill",
    "bytes_from_json",
    "is_json_int",
    "native_dtype",
]


def is_json_int(value: object) -> bool:
    """An integer as JSON gives it (``True``/``False`` are not)."""
    return isinstance(value, int) and not isinstance(value, bool)


def bad_fill(value: object, what: str, expected: str) -> NoReturn:
    raise MetadataError(f"fill_value {value!r} is not valid for {what}: expected {expected}")


def bad_user_fill(value: object, what: str, expected: str) -> NoReturn:
    raise ConfigError(f"fill_value {value!r} is not valid for {what}: expected {expected}")


def bytes_from_json(value: object, what: str) -> bytes:
    """Bytes from a fill value spelled as base64 text or as a list of byte values
    (``MetadataError`` otherwise)."""
    if isinstance(value, str):
        try:
            return base64.b64decode(value.encode("ascii"), validate=True)
        except (binascii.Error, ValueError, UnicodeEncodeError):
            bad_fill(value, what, "base64 text or a list of byte values")
    if isinstance(value, list) and all(is_json_int(v) and 0 <= v <= 255 for v in value):
        return bytes(value)
    bad_fill(value, what, "base64 text or a list of byte values")


def native_dtype(dtype: np.dtype[Any]) -> np.dtype[Any]:
    """``dtype`` in native byte order (every field of a structured dtype too)."""
    return dtype.newbyteorder("=") if dtype.byteorder not in ("|", "=") or dtype.fields else dtype
