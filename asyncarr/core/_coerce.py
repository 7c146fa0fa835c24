"""Values given to a write, as an array of the array's dtype: cast where nothing is lost,
refused (:class:`~asyncarr.errors.DTypeError`) where a cast would change them."""

from __future__ import annotations

from typing import Any

import numpy as np

from asyncarr.abc import DataType, NDArray
from asyncarr.errors import DTypeError, SelectionError

__all__ = ["coerce_values"]


def coerce_values(
    value: Any, data_type: DataType, name: str, shape: tuple[int, ...] | None = None
) -> NDArray:
    """``value`` as an array of ``data_type.dtype`` (not yet broadcast to the selection's
    ``shape``); for strings, an ``object`` array of ``str`` is taken as it is (what their
    codec stores). Written to one element of an array of other objects, a value (an
    array, a list) is that element."""
    dtype = data_type.dtype
    if data_type.object_codec is not None:
        if shape == () and data_type.object_codec not in ("vlen-utf8", "vlen-bytes"):
            one = np.empty((), dtype=object)
            one[()] = value
            return one
        return _objects(value, data_type, name)
    if isinstance(value, np.ndarray):
        arr = value
    elif dtype.fields is not None:  # records given as tuples (of tuples, for nested fields)
        try:
            return np.asarray(value, dtype=dtype)
        except (TypeError, ValueError) as exc:
            raise DTypeError(f"cannot read {value!r} as records of {dtype}: {exc}") from None
    else:
        try:
            arr = np.asarray(value)
        except (TypeError, ValueError) as exc:
            raise SelectionError(
                f"cannot convert value of type {type(value).__name__} to an array"
            ) from exc
    if arr.dtype == dtype:
        return arr
    kind = dtype.kind
    if kind in "SU":
        return _text(arr, dtype, name)
    if kind in "Mm":
        return _times(arr, dtype, name)
    if kind == "V":
        return _records(arr, dtype, name)
    if not np.can_cast(arr.dtype, dtype, casting="same_kind") and not (
        arr.dtype.kind in "biu" and kind in "biufc"
    ):
        _refuse(arr, dtype, name)
    _check_range(arr, dtype, name)
    return arr.astype(dtype)


def _refuse(arr: NDArray, dtype: np.dtype[Any], name: str, why: str = "") -> None:
    raise DTypeError(
        f"cannot write values of dtype {arr.dtype} to the {dtype} array {name!r} without "
        f"loss{why}; cast them first (e.g. value.astype({str(dtype)!r}))"
    )


def _all_instances(arr: NDArray, types: type | tuple[type, ...]) -> bool:
    return all(issubclass(t, types) for t in set(map(type, arr.flat)))


def _objects(value: Any, data_type: DataType, name: str) -> NDArray:
    """Strings (``vlen-utf8``), byte strings (``vlen-bytes``) or any objects."""
    dtype = data_type.dtype
    codec = data_type.object_codec
    if isinstance(value, np.ndarray):
        arr = value
    else:
        try:
            arr = np.asarray(value, dtype=object if codec != "vlen-utf8" else None)
        except (TypeError, ValueError) as exc:
            raise DTypeError(f"cannot convert {type(value).__name__} to an array: {exc}") from None
    if codec == "vlen-utf8":
        if arr.dtype.kind == "O" and _all_instances(arr, str):
            return arr  # str objects are what vlen-utf8 stores: no conversion needed
        if arr.dtype.kind not in "UT":
            _refuse(arr, dtype, name, " (it holds strings)")
    elif codec == "vlen-bytes":
        if arr.dtype.kind == "S":
            return arr.astype(object)
        if arr.dtype.kind != "O" or not _all_instances(arr, bytes):
            _refuse(arr, dtype, name, " (it holds byte strings: bytes objects)")
    return arr if arr.dtype == dtype else arr.astype(dtype)


def _text(arr: NDArray, dtype: np.dtype[Any], name: str) -> NDArray:
    """Fixed-length text (``U``) or bytes (``S``): never truncated."""
    text = dtype.kind == "U"
    kinds = "UT" if text else "S"
    element = str if text else bytes
    if arr.dtype.kind not in kinds and not (arr.dtype.kind == "O" and _all_instances(arr, element)):
        _refuse(arr, dtype, name, " (it holds text)" if text else " (it holds bytes)")
    limit = dtype.itemsize // (4 if text else 1)
    if (
        arr.dtype.kind == "O"
        or arr.dtype.kind == "T"
        or arr.dtype.itemsize // (4 if text else 1) > limit
    ):
        longest = max((len(v) for v in arr.flat), default=0)
        if arr.dtype.kind == "S":  # numpy drops trailing zero bytes from S items
            longest = max((len(bytes(v)) for v in arr.flat), default=0)
        if longest > limit:
            raise DTypeError(
                f"a value of {longest} {'characters' if text else 'bytes'} does not fit the "
                f"{dtype} array {name!r} (at most {limit}); it would be cut short"
            )
    return arr.astype(dtype)


def _times(arr: NDArray, dtype: np.dtype[Any], name: str) -> NDArray:
    """Dates or durations: any unit that converts exactly, text, or integer counts."""
    source = arr.dtype.kind
    if source in "UT" or (source == "O" and arr.size and _all_instances(arr, str)):
        try:
            return arr.astype(dtype)
        except (TypeError, ValueError) as exc:
            raise DTypeError(f"cannot read the values as {dtype}: {exc}") from None
    if source in "iu":
        _check_range(arr, np.dtype(np.int64), name)
        return arr.astype(np.int64).view(dtype.newbyteorder("=")).astype(dtype)
    if source != dtype.kind:
        _refuse(arr, dtype, name)
    out = arr.astype(dtype)
    back = out.astype(arr.dtype)
    lost = (back != arr) & ~np.isnat(arr)
    if lost.any():
        _refuse(arr, dtype, name, " (the unit is coarser)")
    return out


def _records(arr: NDArray, dtype: np.dtype[Any], name: str) -> NDArray:
    """Structs (by field) or raw bytes (``V``)."""
    if dtype.fields is None:
        if arr.dtype.kind in "SV" and arr.dtype.itemsize <= dtype.itemsize:
            size = dtype.itemsize
            padded = np.ascontiguousarray(arr.astype(f"S{size}") if arr.dtype.kind == "S" else arr)
            if padded.dtype.itemsize != size:
                _refuse(arr, dtype, name, f" (items of {dtype.itemsize} bytes)")
            return padded.view(dtype)
        _refuse(arr, dtype, name, f" (items of {dtype.itemsize} bytes)")
    if arr.dtype.names != dtype.names or not np.can_cast(arr.dtype, dtype, "same_kind"):
        _refuse(arr, dtype, name, " (fields differ)")
    return arr.astype(dtype)


def _check_range(value: NDArray, dtype: np.dtype[Any], name: str) -> None:
    """Refuse integers that ``dtype`` cannot hold (numpy's cast would wrap them around, or
    make them infinite in a small float type)."""
    if value.dtype.kind not in "iu" or not value.size or np.can_cast(value.dtype, dtype, "safe"):
        return
    if dtype.kind in "iu":
        low, high = np.iinfo(dtype).min, np.iinfo(dtype).max
    elif dtype.kind in "fc":
        high = int(np.finfo(dtype).max)
        low = -high
    else:
        return
    lo, hi = int(value.min()), int(value.max())
    if lo < low or hi > high:
        raise DTypeError(
            f"values {lo}..{hi} do not fit the {dtype} array {name!r} "
            f"(it holds {low}..{high}); numpy's cast would change them"
        )
