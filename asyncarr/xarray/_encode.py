"""How an xarray variable becomes a Zarr array, by the rules of xarray's own Zarr
engine: CF encoding by xarray's encoders, then the array's fill value, attributes,
dimension names and chunks.

- Fill values: where the fill value is the CF mask (v2 stores) the ``_FillValue``
  attribute becomes the array's ``fill_value``; otherwise (v3) the array's
  ``fill_value`` comes from the encoding (NaN for floats by default) and a ``_FillValue``
  attribute is kept, floats as base64 of a little-endian double.
- Dimensions: v3 ``dimension_names``; v2 the ``_ARRAY_DIMENSIONS`` attribute.
- Chunks: ``encoding["chunks"]``, else the dask chunks (which must be regular but for a
  shorter last one), else chunks of about :data:`AUTO_CHUNK_BYTES`.
- Storage: ``encoding`` may also give asyncarr's ``compressor``, ``filters``, ``codecs``,
  ``shards``, ``chunk_key_encoding`` and ``write_empty_chunks``.
"""

from __future__ import annotations

import base64
import math
import struct
from collections.abc import Mapping
from typing import Any, Literal

import numpy as np
from xarray import Variable
from xarray.backends.zarr import encode_zarr_variable
from xarray.coding.strings import check_vlen_dtype

from asyncarr.errors import ConfigError
from asyncarr.xarray._variables import DIMENSION_KEY

__all__ = ["AUTO_CHUNK_BYTES", "array_options", "attribute_value", "encode_variable"]

AUTO_CHUNK_BYTES = 4 << 20
"""Largest chunk (decoded bytes) chosen for a variable with neither encoded nor dask
chunks: the longest axis of the chunk is halved until the chunk is no bigger."""

STORAGE_KEYS = frozenset(
    {"chunks", "shards", "compressor", "filters", "codecs", "chunk_key_encoding"}
)
"""Encoding keys that say how an array is stored (asyncarr's ``create_array`` options)."""

_DROPPED = frozenset({"source", "original_shape", "preferred_chunks"})
"""Encoding keys an opened dataset carries that say nothing about writing."""


def encode_variable(variable: Variable, name: str, zarr_format: int) -> Variable:
    """``variable`` CF-encoded by xarray's Zarr encoders (times, packing, strings)."""
    fmt: Literal[2, 3] = 2 if zarr_format == 2 else 3
    encoded: Variable = encode_zarr_variable(variable, name=name, zarr_format=fmt)
    return encoded


def attribute_value(value: Any) -> Any:
    """An attribute value as JSON holds it (arrays as lists, numpy scalars as numbers)."""
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    return value


def encode_fill_attribute(value: Any, dtype: np.dtype[Any], name: str) -> Any:
    """A ``_FillValue`` as xarray stores it in the attributes of a v3 array."""
    try:
        if dtype.kind == "f":
            return base64.standard_b64encode(struct.pack("<d", float(value))).decode()
        if dtype.kind == "c":
            parts = (complex(value).real, complex(value).imag)
            return [base64.standard_b64encode(struct.pack("<d", p)).decode() for p in parts]
        if dtype.kind == "b":
            return bool(value)
        if dtype.kind in "iu":
            return int(value)
        if dtype.kind == "S":
            return base64.standard_b64encode(bytes(value)).decode()
    except (TypeError, ValueError, OverflowError) as exc:
        raise ConfigError(
            f"the _FillValue {value!r} of {name!r} does not fit its dtype {dtype}: {exc}"
        ) from exc
    return str(value)


def _storage_dtype(dtype: np.dtype[Any]) -> Any:
    """The data type to store: variable-length strings (or bytes), which xarray's
    encoders mark on an object dtype, as ``str`` (``bytes``)."""
    if dtype.kind == "O":
        element = check_vlen_dtype(dtype)  # type: ignore[no-untyped-call]
        if element in (str, bytes):
            return element
    return dtype


def _auto_chunks(shape: tuple[int, ...], itemsize: int) -> tuple[int, ...]:
    chunks = [max(1, n) for n in shape]
    while chunks and math.prod(chunks) * itemsize > AUTO_CHUNK_BYTES and max(chunks) > 1:
        axis = chunks.index(max(chunks))
        chunks[axis] = -(-chunks[axis] // 2)
    return tuple(chunks)


def _chunks(variable: Variable, name: str, given: Any) -> tuple[int, ...]:
    ndim = variable.ndim
    if isinstance(given, int) and not isinstance(given, bool):
        given = (given,) * ndim
    if isinstance(given, list | tuple) and len(given) == ndim:
        if not all(isinstance(c, int) and not isinstance(c, bool) and c > 0 for c in given):
            raise ConfigError(
                f"encoding['chunks'] of {name!r} must be positive integers, got {given!r}"
            )
        return tuple(given)
    if variable.chunks is not None:  # a dask (chunked) array: its chunks
        for axis, sizes in enumerate(variable.chunks):
            if len(set(sizes[:-1])) > 1 or sizes[-1] > sizes[0]:
                raise ConfigError(
                    f"the dask chunks of {name!r} along axis {axis} are {sizes}: a Zarr "
                    "array needs equal chunks (but a shorter last one); rechunk with "
                    ".chunk() or give encoding['chunks']"
                )
        return tuple(max(1, sizes[0]) for sizes in variable.chunks)
    return _auto_chunks(variable.shape, variable.dtype.itemsize)


def array_options(
    variable: Variable,
    name: str,
    *,
    zarr_format: int,
    fill_value_as_mask: bool,
    strict: bool,
) -> dict[str, Any]:
    """The :func:`asyncarr.create_array` arguments for the CF-encoded ``variable``.

    ``strict``: refuse encoding keys that mean nothing here (the user's ``encoding``
    argument); otherwise they are dropped (an opened dataset's encoding).
    """
    attrs = dict(variable.attrs)
    encoding = {k: v for k, v in variable.encoding.items() if k not in _DROPPED}
    allowed = (
        STORAGE_KEYS | {"write_empty_chunks"} | ({"fill_value"} if zarr_format == 3 else set())
    )
    if encoding.get("_FillValue") is not None:
        raise ConfigError(
            f"{name!r}: a Zarr array's fill value is set through attrs['_FillValue'] or "
            "encoding['_FillValue'] before CF encoding, not in the encoded variable"
        )
    encoding.pop("_FillValue", None)
    unknown = sorted(set(encoding) - allowed)
    if unknown and strict:
        hint = " (use _FillValue for a v2 array's fill value)" if "fill_value" in unknown else ""
        raise ConfigError(
            f"unexpected encoding for {name!r}: {unknown}; asyncarr's Zarr writer takes "
            f"{sorted(allowed)} besides xarray's CF keys (dtype, units, calendar, "
            f"scale_factor, add_offset, _FillValue){hint}"
        )
    if fill_value_as_mask:
        fill_value = attrs.pop("_FillValue", None)
    else:
        fill_value = encoding.get("fill_value")
        if fill_value is None and variable.dtype.kind == "f":
            fill_value = np.nan  # (xarray's default for floats; Zarr's is 0)
        fv = attrs.pop("_FillValue", None)
        if fv is not None:
            attrs["_FillValue"] = encode_fill_attribute(fv, variable.dtype, name)
    attributes = {k: attribute_value(v) for k, v in attrs.items()}
    options: dict[str, Any] = {
        "shape": variable.shape,
        "dtype": _storage_dtype(variable.dtype),
        "fill_value": fill_value,
        "chunks": _chunks(variable, name, encoding.get("chunks")),
        "zarr_format": zarr_format,
        "write_empty_chunks": bool(encoding.get("write_empty_chunks", False)),
    }
    for key in ("shards", "compressor", "filters", "codecs", "chunk_key_encoding"):
        if encoding.get(key) is not None:
            options[key] = encoding[key]
    if zarr_format == 3:
        options["dimension_names"] = [str(d) for d in variable.dims]
    else:
        attributes[DIMENSION_KEY] = [str(d) for d in variable.dims]
    options["attributes"] = attributes
    return options


def apply_encoding(
    variables: Mapping[str, Variable], encoding: Mapping[str, Mapping[str, Any]]
) -> None:
    """Give the variables named in the user's ``encoding`` that encoding (replacing what
    they carried, as xarray does)."""
    unknown = sorted(set(encoding) - set(variables))
    if unknown:
        raise ConfigError(f"encoding names variables the dataset does not have: {unknown}")
    for name, enc in encoding.items():
        variables[name].encoding = dict(enc)
