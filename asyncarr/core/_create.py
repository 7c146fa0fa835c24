"""Turning ``create_array`` arguments into validated array metadata."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal

import numpy as np

from asyncarr.abc import ArrayArrayCodec, ArrayBytesCodec, Codec, DataType
from asyncarr.codecs import (
    BytesCodec,
    TransposeCodec,
    codec_from_metadata,
    codecs_from_compressor,
    filters_from_spec,
    v2_codecs,
)
from asyncarr.core._chunk_grid import MAX_EXTENT, ChunkGrid, EdgesDim, RegularDim
from asyncarr.core._chunk_key import ChunkKeyEncoding, parse_chunk_key_encoding
from asyncarr.core._codec_lookup import check_codecs_fit
from asyncarr.core._metadata import ArrayMetadata, plain_attributes, validate_codec_chain
from asyncarr.core._pipeline import CodecPipeline
from asyncarr.core._sharding import ShardingCodec
from asyncarr.core._types_bridge import chunk_spec
from asyncarr.dtypes import (
    OBJECT_CODECS,
    NumericDataType,
    ObjectDataType,
    data_type_from_json,
    data_type_from_user,
)
from asyncarr.errors import ConfigError, MetadataError

__all__ = ["DEFAULT_COMPRESSOR", "build_array_metadata"]

DEFAULT_COMPRESSOR = "default"
"""Sentinel: zstd at level 3 (both formats)."""


def _as_list(value: Any) -> list[Any]:
    if value is None:
        return []
    if isinstance(value, list | tuple):
        return list(value)
    return [value]


def _serializer(data_type: DataType, endian: Literal["big", "little"]) -> ArrayBytesCodec:
    """The array -> bytes codec zarr-python writes for ``data_type``."""
    if data_type.object_codec is not None:
        codec = codec_from_metadata({"name": data_type.object_codec})
        assert isinstance(codec, ArrayBytesCodec)
        return codec
    return BytesCodec.for_dtype(data_type.dtype, endian)


def _v3_chain(
    *,
    data_type: DataType,
    compressor: Any,
    filters: Any,
    codecs: Any,
    order: str,
    ndim: int,
) -> list[Codec]:
    dtype = data_type.dtype
    endian: Literal["big", "little"] = "big" if dtype.byteorder == ">" else "little"
    if codecs is not None:
        if compressor not in (DEFAULT_COMPRESSOR, None) or filters:
            raise ConfigError("pass either codecs= or compressor=/filters=, not both")
        chain = [c if isinstance(c, Codec) else codec_from_metadata(c) for c in _as_list(codecs)]
        if not any(isinstance(c, ArrayBytesCodec) for c in chain):
            split = sum(1 for c in chain if isinstance(c, ArrayArrayCodec))
            chain = [*chain[:split], _serializer(data_type, endian), *chain[split:]]
        return chain
    chain = list(filters_from_spec(filters, zarr_format=3, dtype=dtype))
    if order == "F" and ndim > 1:
        chain.insert(0, TransposeCodec(order=list(range(ndim))[::-1]))
    chain.append(_serializer(data_type, endian))
    chain.extend(codecs_from_compressor(compressor, zarr_format=3, dtype=dtype))
    return chain


def _shape(value: Any, what: str) -> tuple[int, ...]:
    if isinstance(value, int | np.integer):
        value = (value,)
    try:
        out = tuple(int(v) for v in value)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"{what} must be a sequence of integers, got {value!r}") from exc
    if any(isinstance(v, bool) or not isinstance(v, int | np.integer) for v in value):
        raise ConfigError(f"{what} must be integers, got {value!r}")
    return out


def _is_edge_list(value: Any) -> bool:
    return isinstance(value, list | tuple | np.ndarray) and np.ndim(value) == 1


def _user_grid(value: Any, shape: tuple[int, ...], what: str) -> ChunkGrid:
    """``chunks`` or ``shards`` as given to ``create_array``: one size per dimension (a
    regular grid), or per dimension a size or a list of edge lengths that sum to the
    dimension's length (a rectilinear grid, as zarr-python makes it); or a
    :class:`ChunkGrid` (another array's, e.g. to copy it)."""
    if isinstance(value, ChunkGrid):
        if value.ndim != len(shape):
            raise ConfigError(f"{what} {value.describe()} do not match shape {list(shape)}")
        return value.resized(shape)
    if not isinstance(value, list | tuple) or not any(_is_edge_list(v) for v in value):
        sizes = _shape(value, what)
        if len(sizes) != len(shape):
            raise ConfigError(f"{what} {sizes} must have one entry per dimension of shape {shape}")
        if any(c <= 0 for c in sizes):
            raise ConfigError(f"{what} must be > 0, got {what}={sizes}")
        return ChunkGrid.regular(shape, sizes)
    if len(value) != len(shape):
        raise ConfigError(
            f"{what} {value!r} must have one entry per dimension of shape {list(shape)}"
        )
    dims: list[RegularDim | EdgesDim] = []
    for axis, (spec, extent) in enumerate(zip(value, shape, strict=True)):
        if not _is_edge_list(spec):
            (size,) = _shape(spec, what)
            if size <= 0:
                raise ConfigError(f"{what} must be > 0, got {size} for dimension {axis}")
            dims.append(RegularDim(size, extent))
            continue
        edges = _shape(list(spec), f"the {what} edges of dimension {axis}")
        if not edges or any(e <= 0 or e > MAX_EXTENT for e in edges):
            raise ConfigError(
                f"the {what} edges of dimension {axis} must be a non-empty list of positive "
                f"integers, got {list(edges)}"
            )
        if extent and sum(edges) != extent:
            raise ConfigError(
                f"the {what} edges of dimension {axis} sum to {sum(edges)}, not to its "
                f"length {extent}"
            )
        dims.append(EdgesDim([(e, 1) for e in edges], extent))
    return ChunkGrid("rectilinear", tuple(dims))


def build_array_metadata(
    *,
    shape: Any,
    chunks: Any,
    dtype: Any,
    zarr_format: int,
    fill_value: Any,
    compressor: Any,
    filters: Any,
    codecs: Any,
    shards: Any,
    order: str,
    dimension_names: Sequence[str | None] | None,
    attributes: dict[str, Any] | None,
    chunk_key_encoding: Any,
) -> ArrayMetadata:
    """Validate ``create_array`` arguments and build the metadata they describe."""
    if zarr_format not in (2, 3):
        raise ConfigError(f"zarr_format must be 2 or 3, got {zarr_format!r}")
    if order not in ("C", "F"):
        raise ConfigError(f"order must be 'C' or 'F', got {order!r}")
    dt = _user_data_type(dtype, filters)
    shape_t = _shape(shape, "shape")
    if any(s < 0 for s in shape_t):
        raise ConfigError(f"shape must be >= 0, got shape={shape_t}")
    chunk_grid = (
        ChunkGrid.regular(shape_t, tuple(max(1, s) for s in shape_t))
        if chunks is None
        else _user_grid(chunks, shape_t, "chunks")
    )
    if not chunk_grid.is_regular and (zarr_format == 2 or shards is not None):
        raise ConfigError(
            "a rectilinear chunk grid needs zarr_format=3"
            if zarr_format == 2
            else "rectilinear chunks cannot be sharded; give rectilinear shards instead: "
            "chunks=(inner chunk shape), shards=[[shard edges], ...]"
        )
    names = tuple(dimension_names) if dimension_names is not None else None
    if names is not None and len(names) != len(shape_t):
        raise ConfigError(
            f"dimension_names {list(names)} must name each of {len(shape_t)} dimensions"
        )
    attrs = plain_attributes(attributes or {})

    if zarr_format == 2:
        if codecs is not None or shards is not None:
            raise ConfigError("codecs= and shards= need zarr_format=3")
        object_entry, filters = _split_object_codec(dt, filters)
        comp = codecs_from_compressor(compressor, zarr_format=2, dtype=dt.dtype)
        filt = filters_from_spec(filters, zarr_format=2, dtype=dt.dtype)
        comp_config = comp[0].to_v2_config() if comp else None  # type: ignore[attr-defined]
        if (
            comp_config
            and comp_config.get("id") == "zstd"
            and not comp_config.get("checksum", True)
        ):
            del comp_config["checksum"]  # tensorstore refuses the (default) key
        filter_configs = [
            *([object_entry] if object_entry is not None else []),
            *(f.to_v2_config() for f in filt),  # type: ignore[attr-defined]
        ] or None
        sep = parse_chunk_key_encoding(
            chunk_key_encoding or {"name": "v2", "configuration": {"separator": "."}}
        )
        if names is not None:
            attrs.setdefault("_ARRAY_DIMENSIONS", list(names))
        fill = _user_fill(fill_value, dt, zarr_format=2)
        meta = ArrayMetadata(
            zarr_format=2,
            shape=shape_t,
            chunk_grid=chunk_grid,
            dtype=dt.dtype,
            data_type=dt,
            fill_value=fill,
            codecs=tuple(
                v2_codecs(
                    compressor=comp_config,
                    filters=filter_configs,
                    dtype=dt.dtype,
                    object_codec=dt.object_codec,
                )
            ),
            chunk_key_encoding=ChunkKeyEncoding("v2", sep.separator),
            dimension_names=names,
            attributes=attrs,
            order=order,  # type: ignore[arg-type]
            v2_compressor=comp_config,
            v2_filters=filter_configs,
        )
        CodecPipeline(meta.codecs, chunk_spec(meta))
        return meta

    native = dt.native()
    try:
        native.to_json(3)
    except MetadataError as exc:
        raise ConfigError(str(exc)) from None
    chain = _v3_chain(
        data_type=dt,
        compressor=compressor,
        filters=filters,
        codecs=codecs,
        order=order,
        ndim=len(shape_t),
    )
    grid = chunk_grid
    if shards is not None:
        inner = chunk_grid.chunk_shape
        grid = _user_grid(shards, shape_t, "shards")
        for axis, (d, c) in enumerate(zip(grid.dims, inner, strict=True)):
            if any(edge % c for edge in d.distinct_edges()):
                raise ConfigError(
                    f"shards {_shards_label(shards)} must be a multiple of chunks {inner} "
                    f"in every dimension (dimension {axis} is not)"
                )
        chain = [ShardingCodec(chunk_shape=inner, codecs=chain)]
    validate_codec_chain(tuple(chain))
    fill = _user_fill(fill_value, native, zarr_format=3)
    meta = ArrayMetadata(
        zarr_format=3,
        shape=shape_t,
        chunk_grid=grid,
        dtype=native.dtype,
        data_type=native,
        fill_value=fill,
        codecs=tuple(chain),
        chunk_key_encoding=parse_chunk_key_encoding(chunk_key_encoding),
        dimension_names=names,
        attributes=attrs,
    )
    try:
        check_codecs_fit(meta.codecs, meta)
    except MetadataError as exc:
        raise ConfigError(str(exc)) from exc
    return meta


def _shards_label(shards: Any) -> str:
    return str(tuple(shards)) if not any(_is_edge_list(s) for s in shards) else str(shards)


def _user_fill(value: Any, data_type: DataType, *, zarr_format: int) -> Any:
    """The fill value to store for the one the caller gave (``None``: the data type's
    default; for v2 numbers ``None``, written as ``null``, as before). It goes through its
    JSON form, so the array holds exactly what its metadata says."""
    fmt: Literal[2, 3] = 2 if zarr_format == 2 else 3
    if value is None:
        if fmt == 2 and isinstance(data_type, NumericDataType | ObjectDataType):
            return None
        value = data_type.default_fill()
    else:
        value = data_type.cast_fill(value)
    try:
        return data_type.fill_from_json(
            data_type.fill_to_json(value, zarr_format=fmt), zarr_format=fmt
        )
    except MetadataError as exc:  # pragma: no cover - cast_fill already checked it
        raise ConfigError(str(exc)) from None


def _user_data_type(dtype: Any, filters: Any) -> DataType:
    """The data type ``dtype`` names. A Zarr v2 object array of something other than
    text or bytes is ``dtype=object`` with its object codec among the filters."""
    if dtype is object or _is_object_dtype(dtype):  # (v3 then says it has no spelling)
        codec_id = next((f for f in map(_filter_id, _as_list(filters)) if f in OBJECT_CODECS), None)
        if codec_id is not None:
            return data_type_from_json("|O", zarr_format=2, object_codec=codec_id)
    return data_type_from_user(dtype)


def _is_object_dtype(dtype: Any) -> bool:
    try:
        return isinstance(dtype, np.dtype | str) and np.dtype(dtype) == np.dtype(object)
    except TypeError:
        return False


def _filter_id(spec: Any) -> str | None:
    """The numcodecs id of a filter spec (a config, a numcodecs codec or an id)."""
    if isinstance(spec, str):
        return spec
    if isinstance(spec, dict):
        value = spec.get("id")
        return value if isinstance(value, str) else None
    codec_id = getattr(spec, "codec_id", None)
    return codec_id if isinstance(codec_id, str) else None


def _split_object_codec(data_type: DataType, filters: Any) -> tuple[dict[str, Any] | None, Any]:
    """For a v2 object array: its object codec's ``.zarray`` entry (taken from the filters
    where the caller gave it, with its configuration) and the other filters."""
    codec_id = data_type.object_codec
    if codec_id is None:
        return None, filters
    entry: dict[str, Any] = {"id": codec_id}
    rest = []
    for f in _as_list(filters):
        if _filter_id(f) == codec_id:
            config = f.get_config() if hasattr(f, "get_config") else f
            entry = dict(config) if isinstance(config, dict) else entry
        else:
            rest.append(f)
    return entry, rest or None
