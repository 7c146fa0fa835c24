"""Turning ``create_array`` arguments into validated array metadata."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal

import numpy as np

from asyncarr.abc import ArrayArrayCodec, ArrayBytesCodec, Codec
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
from asyncarr.core._dtype import decode_fill_value, parse_dtype
from asyncarr.core._metadata import ArrayMetadata, plain_attributes, validate_codec_chain
from asyncarr.core._pipeline import CodecPipeline
from asyncarr.core._sharding import ShardingCodec
from asyncarr.core._types_bridge import chunk_spec
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


def _v3_chain(
    *,
    dtype: np.dtype[Any],
    compressor: Any,
    filters: Any,
    codecs: Any,
    order: str,
    ndim: int,
) -> list[Codec]:
    endian: Literal["big", "little"] = "big" if dtype.byteorder == ">" else "little"
    if codecs is not None:
        if compressor not in (DEFAULT_COMPRESSOR, None) or filters:
            raise ConfigError("pass either codecs= or compressor=/filters=, not both")
        chain = [c if isinstance(c, Codec) else codec_from_metadata(c) for c in _as_list(codecs)]
        if not any(isinstance(c, ArrayBytesCodec) for c in chain):
            split = sum(1 for c in chain if isinstance(c, ArrayArrayCodec))
            chain = [*chain[:split], BytesCodec.for_dtype(dtype, endian), *chain[split:]]
        return chain
    chain = list(filters_from_spec(filters, zarr_format=3, dtype=dtype))
    if order == "F" and ndim > 1:
        chain.insert(0, TransposeCodec(order=list(range(ndim))[::-1]))
    chain.append(BytesCodec.for_dtype(dtype, endian))
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
    dt = parse_dtype(dtype)
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
    fv_json = _fill_to_json(fill_value, dt)

    if zarr_format == 2:
        if codecs is not None or shards is not None:
            raise ConfigError("codecs= and shards= need zarr_format=3")
        comp = codecs_from_compressor(compressor, zarr_format=2, dtype=dt)
        filt = filters_from_spec(filters, zarr_format=2, dtype=dt)
        comp_config = comp[0].to_v2_config() if comp else None  # type: ignore[attr-defined]
        if (
            comp_config
            and comp_config.get("id") == "zstd"
            and not comp_config.get("checksum", True)
        ):
            del comp_config["checksum"]  # tensorstore refuses the (default) key
        filter_configs = [f.to_v2_config() for f in filt] or None  # type: ignore[attr-defined]
        sep = parse_chunk_key_encoding(
            chunk_key_encoding or {"name": "v2", "configuration": {"separator": "."}}
        )
        if names is not None:
            attrs.setdefault("_ARRAY_DIMENSIONS", list(names))
        meta = ArrayMetadata(
            zarr_format=2,
            shape=shape_t,
            chunk_grid=chunk_grid,
            dtype=dt,
            fill_value=_user_fill(fv_json, dt, zarr_format=2),
            codecs=tuple(v2_codecs(compressor=comp_config, filters=filter_configs, dtype=dt)),
            chunk_key_encoding=ChunkKeyEncoding("v2", sep.separator),
            dimension_names=names,
            attributes=attrs,
            order=order,  # type: ignore[arg-type]
            v2_compressor=comp_config,
            v2_filters=filter_configs,
        )
        CodecPipeline(meta.codecs, chunk_spec(meta))
        return meta

    native = dt.newbyteorder("=") if dt.byteorder == ">" else dt
    chain = _v3_chain(
        dtype=dt,
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
    fill = _user_fill(0 if fv_json is None else fv_json, native, zarr_format=3)
    meta = ArrayMetadata(
        zarr_format=3,
        shape=shape_t,
        chunk_grid=grid,
        dtype=native,
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


def _user_fill(value: Any, dt: np.dtype[Any], *, zarr_format: int) -> Any:
    """:func:`decode_fill_value` of a fill value the caller gave: a bad one is a
    :class:`ConfigError` (an argument), not a :class:`MetadataError` (a stored document)."""
    try:
        return decode_fill_value(value, dt, zarr_format=zarr_format)
    except MetadataError as exc:
        raise ConfigError(str(exc)) from exc


def _fill_to_json(value: Any, dt: np.dtype[Any]) -> Any:
    """A user fill value in metadata JSON form (validated later against the dtype)."""
    from asyncarr.core._dtype import encode_fill_value

    if value is None:
        return None
    try:
        with np.errstate(over="ignore", invalid="ignore"):  # overflow is refused below
            scalar = (
                np.asarray(value).astype(dt, casting="unsafe")
                if not isinstance(value, str)
                else value
            )
    except (TypeError, ValueError, OverflowError) as exc:
        raise ConfigError(f"fill_value {value!r} is not valid for {dt}") from exc
    if isinstance(scalar, str):
        return scalar
    source = np.asarray(value)
    if dt.kind in "iu" and source.dtype.kind == "f" and not float(value).is_integer():
        raise ConfigError(f"fill_value {value!r} is not valid for {dt}")
    if source.shape == () and source.dtype.kind in "biuf":
        # the cast must keep the value (256 in uint8 is not 0, 1e6 in float16 is not inf);
        # floats may round (0.1 in float32)
        if dt.kind in "biu":
            kept = bool(scalar == source) if dt.kind != "b" else source in (0, 1)
        elif dt.kind in "fc":
            kept = bool(np.isfinite(scalar)) or not bool(np.isfinite(source))
        else:
            kept = True
        if not kept:
            raise ConfigError(f"fill_value {value!r} is out of range for {dt}")
    return encode_fill_value(scalar[()], dt, zarr_format=3)
