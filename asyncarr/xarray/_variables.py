"""How a Zarr array becomes an xarray variable (before CF decoding), by the rules xarray's
own Zarr backend follows, so that both engines give identical datasets.

- Dimensions: a v3 array's ``dimension_names``; a v2 array's ``_ARRAY_DIMENSIONS``
  attribute (hidden from the variable's attributes, as are NCZarr's ``_nc*`` ones).
- Fill values: for v2 arrays (by default) the array's ``fill_value`` is the CF
  ``_FillValue`` (missing-value mask); for v3 arrays it is kept in the encoding as
  ``fill_value``, and a ``_FillValue`` attribute written by xarray (floats as base64
  of a little-endian double) is decoded to a number.
- Encoding: ``chunks`` (the inner chunks of sharded arrays), ``preferred_chunks`` (what
  ``chunks={}`` opens with), ``shards``; one number per dimension where the chunks are
  regular, their lengths where they differ (rectilinear grids).
"""

from __future__ import annotations

import base64
import binascii
import struct
from collections.abc import Mapping
from typing import Any

import numpy as np

from asyncarr.errors import MetadataError
from asyncarr.sync import Array

__all__ = ["DIMENSION_KEY", "compact_chunks", "group_attributes", "variable_parts"]

DIMENSION_KEY = "_ARRAY_DIMENSIONS"
"""The attribute that names a v2 array's dimensions (xarray's convention)."""

ChunkSpec = tuple[int | tuple[int, ...], ...]


def _hidden(name: str) -> bool:
    """NCZarr's attributes, which xarray leaves out."""
    return name.lower().startswith("_nc")


def group_attributes(attrs: Mapping[str, Any]) -> dict[str, Any]:
    """A group's attributes as the dataset's."""
    return {k: v for k, v in attrs.items() if not _hidden(k)}


def dimensions_and_attributes(array: Array) -> tuple[tuple[str, ...], dict[str, Any]]:
    """The dimension names of ``array`` and the attributes its variable shows."""
    attrs = dict(array.attrs)
    if array.zarr_format == 3:
        names = array.dimension_names or ()
        if len(names) != array.ndim or not all(isinstance(n, str) for n in names):
            raise MetadataError(
                f"the array {array.name!r} needs a dimension name for each of its "
                f"{array.ndim} dimension(s) (v3 dimension_names) to be read as an xarray "
                f"variable; it has {array.dimension_names!r}"
            )
        return tuple(names), attrs  # type: ignore[arg-type]
    listed = attrs.get(DIMENSION_KEY)
    if (
        not isinstance(listed, list)
        or len(listed) != array.ndim
        or not all(isinstance(n, str) for n in listed)
    ):
        what = "no such attribute" if listed is None else f"{listed!r}"
        raise MetadataError(
            f"the v2 array {array.name!r} needs the attribute {DIMENSION_KEY!r} (a list of "
            f"{array.ndim} dimension name(s)) to be read as an xarray variable; found {what}"
        )
    hidden = {k for k in attrs if k == DIMENSION_KEY or _hidden(k)}
    return tuple(listed), {k: v for k, v in attrs.items() if k not in hidden}


def compact_chunks(sizes: tuple[tuple[int, ...], ...]) -> ChunkSpec:
    """Per dimension: one length where the chunks are regular (the last may be shorter),
    else every chunk's length (``(0,)`` for an empty dimension, as dask needs)."""
    out: list[int | tuple[int, ...]] = []
    for dim in sizes:
        if not dim:
            out.append((0,))
        elif len(set(dim[:-1])) <= 1 and dim[-1] <= dim[0]:
            out.append(dim[0])
        else:
            out.append(tuple(dim))
    return tuple(out)


def _shards(array: Array) -> ChunkSpec | None:
    try:
        shards = array.shards
    except MetadataError:  # a rectilinear grid of shards: their lengths
        return compact_chunks(array.chunk_grid.chunk_sizes)
    return shards


def decode_fill_attribute(value: Any, dtype: np.dtype[Any], name: str) -> Any:
    """A ``_FillValue`` attribute as xarray writes it on v3 arrays, as a number (or string,
    bytes): floats are base64 of a little-endian double, complex numbers two of them."""
    try:
        if dtype.kind == "f":
            return struct.unpack("<d", base64.standard_b64decode(value))[0]
        if dtype.kind == "c":
            real, imag = (struct.unpack("<d", base64.standard_b64decode(v))[0] for v in value)
            return complex(real, imag)
        if dtype.kind == "b":
            return bool(value)
        if dtype.kind in "iu":
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise TypeError(type(value).__name__)
            return int(value)
        if dtype.kind == "S":
            return base64.standard_b64decode(value)
        if dtype.kind in "UTO":
            return str(value)
    except (TypeError, ValueError, binascii.Error, struct.error) as exc:
        raise MetadataError(
            f"the _FillValue attribute {value!r} of the {dtype} array {name!r} does not "
            "decode (expected base64 of a little-endian double for floats, a pair of them "
            f"for complex numbers, a number for integers): {exc}"
        ) from exc
    raise MetadataError(f"the {dtype} array {name!r} has a _FillValue xarray cannot decode")


def variable_parts(
    array: Array, *, fill_value_as_mask: bool
) -> tuple[tuple[str, ...], dict[str, Any], dict[str, Any]]:
    """``(dimensions, attributes, encoding)`` of the variable ``array`` becomes."""
    dims, attrs = dimensions_and_attributes(array)
    chunks = compact_chunks(array.chunk_sizes)
    encoding: dict[str, Any] = {
        "chunks": chunks,
        "preferred_chunks": dict(zip(dims, chunks, strict=True)),
        "shards": _shards(array),
    }
    if array.dtype.kind == "T":  # numpy's variable-width strings stay what they are
        encoding["dtype"] = array.dtype
    if fill_value_as_mask:
        if array.fill_value is not None:
            attrs["_FillValue"] = array.fill_value
    else:
        if array.zarr_format == 3:
            encoding["fill_value"] = array.fill_value
        if "_FillValue" in attrs:
            attrs["_FillValue"] = decode_fill_attribute(
                attrs["_FillValue"], array.dtype, array.name
            )
    return dims, attrs, encoding
