"""Array and group metadata for Zarr v2 and v3: parsing, validation, serialisation."""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any, Literal

import numpy as np

from asyncarr.abc import ArrayArrayCodec, ArrayBytesCodec, BytesBytesCodec, Codec, DataType
from asyncarr.core._chunk_grid import ChunkGrid, parse_chunk_grid
from asyncarr.core._chunk_key import ChunkKeyEncoding, parse_chunk_key_encoding
from asyncarr.dtypes import OBJECT_CODECS, data_type_from_json, data_type_from_numpy
from asyncarr.errors import AsyncarrError, ConfigError, MetadataError

__all__ = [
    "ArrayMetadata",
    "GroupMetadata",
    "MAX_CHUNK_BYTES",
    "MAX_NDIM",
    "ZARR_JSON",
    "ZARRAY",
    "ZATTRS",
    "ZGROUP",
    "ZMETADATA",
    "dumps_json",
    "fill_from_json",
    "loads_json",
    "parse_array_metadata_v2",
    "parse_array_metadata_v3",
    "parse_group_metadata_v2",
    "parse_group_metadata_v3",
    "v2_object_codec",
    "validate_codec_chain",
]

ZARR_JSON = "zarr.json"
ZARRAY = ".zarray"
ZGROUP = ".zgroup"
ZATTRS = ".zattrs"
ZMETADATA = ".zmetadata"

MAX_CHUNK_BYTES = 1 << 34
"""Chunks (shards) whose decoded size exceeds this are refused as absurd metadata."""
MAX_DIM = (1 << 63) - 1
MAX_NDIM = 64
"""numpy's limit on the number of dimensions of an array (``NPY_MAXDIMS``)."""


def loads_json(data: bytes, *, key: str, max_bytes: int | None = None) -> dict[str, Any]:
    """Parse a metadata document; anything but a JSON object is a MetadataError, and so
    is a document longer than ``max_bytes`` (checked before parsing)."""
    if max_bytes is not None and len(data) > max_bytes:
        raise MetadataError(document_too_large(len(data), max_bytes), key=key)
    try:
        doc = json.loads(data)
    except (ValueError, UnicodeDecodeError, RecursionError) as exc:
        raise MetadataError(f"metadata is not valid JSON: {exc}", key=key) from exc
    if not isinstance(doc, dict):
        raise MetadataError(f"metadata must be a JSON object, got {type(doc).__name__}", key=key)
    return doc


def document_too_large(size: int | None, limit: int) -> str:
    """The message for a metadata document over the size limit."""
    what = "more than" if size is None else f"{size} bytes,"
    return (
        f"metadata document is {what} {limit} bytes (the store's "
        "StoreLimits.max_metadata_bytes); refused before parsing"
    )


def plain_attributes(attributes: Mapping[str, Any]) -> dict[str, Any]:
    """User attributes ready for JSON: numpy scalars and arrays become the Python values
    they hold (``np.float32(1.5)`` is ``1.5``), tuples lists; raises :class:`ConfigError`
    naming what JSON cannot hold."""

    def plain(value: Any) -> Any:
        if isinstance(value, np.generic):
            return value.item()
        if isinstance(value, np.ndarray):
            return value.tolist()
        if isinstance(value, Mapping):
            return {k: plain(v) for k, v in value.items()}
        if isinstance(value, list | tuple):
            return [plain(v) for v in value]
        return value

    out = {k: plain(v) for k, v in attributes.items()}
    try:
        json.dumps(out, allow_nan=True)
    except (TypeError, ValueError, RecursionError) as exc:
        raise ConfigError(f"attributes must be JSON-serialisable: {exc}") from exc
    return out


def dumps_json(doc: dict[str, Any]) -> bytes:
    """Serialise metadata. Fill values are already JSON-safe strings; NaN or
    Infinity inside user attributes are written as zarr-python writes them
    (``NaN``/``Infinity`` literals, which every Python JSON reader accepts)."""
    try:
        return json.dumps(doc, indent=2, allow_nan=True, sort_keys=False).encode()
    except (TypeError, ValueError, RecursionError) as exc:
        raise MetadataError(f"metadata cannot be written as JSON: {exc}") from exc


def _int_tuple(value: object, what: str, key: str | None, *, positive: bool) -> tuple[int, ...]:
    if not isinstance(value, list | tuple):
        raise MetadataError(f"{what} must be a list of integers, got {value!r}", key=key)
    if len(value) > MAX_NDIM:
        raise MetadataError(
            f"{what} has {len(value)} dimensions; numpy arrays have at most {MAX_NDIM}", key=key
        )
    out = []
    for v in value:
        if isinstance(v, bool) or not isinstance(v, int | np.integer):
            raise MetadataError(f"{what} must be a list of integers, got {value!r}", key=key)
        v = int(v)
        if v < (1 if positive else 0) or v > MAX_DIM:
            bound = "> 0" if positive else ">= 0"
            raise MetadataError(
                f"{what} entries must be {bound} and < 2**63, got {value!r}", key=key
            )
        out.append(v)
    return tuple(out)


def _check_attrs(value: object, key: str | None) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise MetadataError(
            f"attributes must be a JSON object, got {type(value).__name__}", key=key
        )
    return value


def validate_codec_chain(codecs: tuple[Codec, ...], *, key: str | None = None) -> None:
    """Array→array codecs, then exactly one array→bytes, then bytes→bytes."""
    stage = 0
    n_ab = 0
    for c in codecs:
        if isinstance(c, ArrayArrayCodec):
            if stage > 0:
                raise MetadataError(
                    f"array->array codec {c.codec_name!r} after the array->bytes codec", key=key
                )
        elif isinstance(c, ArrayBytesCodec):
            n_ab += 1
            stage = 1
        elif isinstance(c, BytesBytesCodec):
            if stage == 0:
                raise MetadataError(
                    f"bytes->bytes codec {c.codec_name!r} before any array->bytes codec", key=key
                )
        else:
            raise MetadataError(f"{c!r} is not a codec", key=key)
    if n_ab != 1:
        raise MetadataError(
            f"the codec chain needs exactly one array->bytes codec, found {n_ab}", key=key
        )


@dataclass(frozen=True)
class ArrayMetadata:
    """Everything needed to read and write one array, whatever its format."""

    zarr_format: Literal[2, 3]
    shape: tuple[int, ...]
    chunk_grid: ChunkGrid
    """How the shape is cut into chunks (shards, for sharded arrays)."""
    dtype: np.dtype[Any]
    fill_value: Any
    codecs: tuple[Codec, ...]
    chunk_key_encoding: ChunkKeyEncoding
    dimension_names: tuple[str | None, ...] | None = None
    attributes: dict[str, Any] = field(default_factory=dict)
    order: Literal["C", "F"] = "C"
    extra: dict[str, Any] = field(default_factory=dict)
    v2_compressor: dict[str, Any] | None = None
    """v2 only: the ``.zarray`` ``compressor`` entry (the chain in ``codecs`` runs it)."""
    v2_filters: list[dict[str, Any]] | None = None
    """v2 only: the ``.zarray`` ``filters`` entry."""
    data_type: DataType = None  # type: ignore[assignment]
    """The Zarr data type (its numpy dtype is :attr:`dtype`); derived from :attr:`dtype`
    when not given, which object dtypes cannot be (strings or bytes?)."""

    def __post_init__(self) -> None:
        if len(self.shape) > MAX_NDIM:
            raise MetadataError(
                f"{len(self.shape)} dimensions; numpy arrays have at most {MAX_NDIM}"
            )
        if self.dtype.itemsize <= 0:
            raise MetadataError(f"data type {self.dtype} has no size; elements need >= 1 byte")
        if self.data_type is None:
            object.__setattr__(self, "data_type", data_type_from_numpy(self.dtype))
        elif self.data_type.dtype != self.dtype:
            raise MetadataError(
                f"dtype {self.dtype} is not the {self.data_type.describe()} data type's "
                f"{self.data_type.dtype}"
            )
        if self.chunk_grid.shape != self.shape:
            raise MetadataError(
                f"shape {list(self.shape)} and chunk grid {self.chunk_grid.describe()} differ "
                "in length"
                if self.chunk_grid.ndim != len(self.shape)
                else f"the chunk grid is for shape {list(self.chunk_grid.shape)}, not "
                f"{list(self.shape)}"
            )
        if self.zarr_format == 2 and not self.chunk_grid.is_regular:
            raise MetadataError("Zarr format 2 has only regular chunk grids")
        if self.dimension_names is not None and len(self.dimension_names) != len(self.shape):
            raise MetadataError(
                f"dimension_names {list(self.dimension_names)} do not match {len(self.shape)} dimensions"
            )
        largest = self.chunk_grid.max_chunk_shape
        nbytes = self.dtype.itemsize * math.prod(largest)
        if nbytes > MAX_CHUNK_BYTES:
            raise MetadataError(
                f"chunk shape {list(largest)} of {self.dtype} is {nbytes} bytes, over the "
                f"{MAX_CHUNK_BYTES}-byte limit"
            )

    @property
    def ndim(self) -> int:
        return len(self.shape)

    @property
    def chunk_shape(self) -> tuple[int, ...]:
        """The chunk (shard) shape of a regular grid; a rectilinear grid has none
        (:class:`MetadataError`; see :attr:`chunk_grid`)."""
        return self.chunk_grid.chunk_shape

    @property
    def chunk_grid_shape(self) -> tuple[int, ...]:
        return self.chunk_grid.grid_shape

    @property
    def nchunks(self) -> int:
        return self.chunk_grid.nchunks

    def chunk_key(self, coords: tuple[int, ...]) -> str:
        return self.chunk_key_encoding.encode(coords)

    def evolve(self, **changes: Any) -> ArrayMetadata:
        """A copy with ``changes``; a new ``shape`` without a new ``chunk_grid`` resizes the
        grid (:meth:`ChunkGrid.resized`)."""
        if "shape" in changes and "chunk_grid" not in changes:
            changes["chunk_grid"] = self.chunk_grid.resized(changes["shape"])
        return replace(self, **changes)

    # -- serialisation --------------------------------------------------------------
    def to_json(self) -> dict[str, Any]:
        """``zarr.json`` (v3) or ``.zarray`` (v2; attributes go to ``.zattrs``)."""
        if self.zarr_format == 2:
            doc: dict[str, Any] = {
                "zarr_format": 2,
                "shape": list(self.shape),
                "chunks": list(self.chunk_shape),
                "dtype": self.data_type.to_json(2),
                "compressor": self.v2_compressor,
                "fill_value": None
                if self.fill_value is None
                else self.data_type.fill_to_json(self.fill_value, zarr_format=2),
                "order": self.order,
                "filters": self.v2_filters or None,
                "dimension_separator": self.chunk_key_encoding.separator,
            }
            doc.update(self.extra)
            return doc
        doc = {
            "zarr_format": 3,
            "node_type": "array",
            "shape": list(self.shape),
            "data_type": self.data_type.to_json(3),
            "chunk_grid": self.chunk_grid.to_json(),
            "chunk_key_encoding": self.chunk_key_encoding.to_json(),
            "fill_value": self.data_type.fill_to_json(
                self.data_type.default_fill() if self.fill_value is None else self.fill_value,
                zarr_format=3,
            ),
            "codecs": [c.to_metadata() for c in self.codecs],
            "attributes": self.attributes,
        }
        if self.dimension_names is not None:
            doc["dimension_names"] = list(self.dimension_names)
        doc.update(self.extra)
        return doc


def parse_array_metadata_v3(doc: dict[str, Any], *, key: str | None = None) -> ArrayMetadata:
    """Validate and parse an array ``zarr.json`` document."""
    from asyncarr.core._codec_lookup import codec_chain_from_metadata

    if doc.get("zarr_format") != 3:
        raise MetadataError(f"expected zarr_format 3, got {doc.get('zarr_format')!r}", key=key)
    if doc.get("node_type") != "array":
        raise MetadataError(f"expected node_type 'array', got {doc.get('node_type')!r}", key=key)
    known = {
        "zarr_format",
        "node_type",
        "shape",
        "data_type",
        "chunk_grid",
        "chunk_key_encoding",
        "fill_value",
        "codecs",
        "attributes",
        "dimension_names",
        "storage_transformers",
    }
    extra: dict[str, Any] = {}
    for name, value in doc.items():
        if name in known:
            continue
        if isinstance(value, dict) and value.get("must_understand") is False:
            extra[name] = value
            continue
        raise MetadataError(f"unknown metadata field {name!r} that must be understood", key=key)
    for required in (
        "shape",
        "data_type",
        "chunk_grid",
        "chunk_key_encoding",
        "fill_value",
        "codecs",
    ):
        if required not in doc:
            raise MetadataError(f"array metadata lacks the required field {required!r}", key=key)
    if doc.get("storage_transformers"):
        raise MetadataError("storage_transformers are not supported", key=key)
    shape = _int_tuple(doc["shape"], "shape", key, positive=False)
    grid = parse_chunk_grid(doc["chunk_grid"], shape, key=key)
    data_type = data_type_from_json(doc["data_type"], zarr_format=3, key=key)
    fill_value = fill_from_json(data_type, doc["fill_value"], 3, key)
    names = doc.get("dimension_names")
    if names is not None:
        if not isinstance(names, list) or not all(n is None or isinstance(n, str) for n in names):
            raise MetadataError(
                f"dimension_names must be a list of strings or nulls: {names!r}", key=key
            )
        names = tuple(names)
    try:
        meta = ArrayMetadata(
            zarr_format=3,
            shape=shape,
            chunk_grid=grid,
            dtype=data_type.dtype,
            data_type=data_type,
            fill_value=fill_value,
            codecs=(),
            chunk_key_encoding=parse_chunk_key_encoding(doc["chunk_key_encoding"], key=key),
            dimension_names=names,
            attributes=_check_attrs(doc.get("attributes"), key),
            extra=extra,
        )
    except MetadataError as exc:
        if exc.key is not None:
            raise
        raise MetadataError(str(exc), key=key) from exc
    codecs = codec_chain_from_metadata(doc["codecs"], meta, key=key)
    return meta.evolve(codecs=codecs)


def parse_array_metadata_v2(
    doc: dict[str, Any], attrs: dict[str, Any] | None = None, *, key: str | None = None
) -> ArrayMetadata:
    """Validate and parse a ``.zarray`` document (plus its ``.zattrs``)."""
    if doc.get("zarr_format") != 2:
        raise MetadataError(f"expected zarr_format 2, got {doc.get('zarr_format')!r}", key=key)
    for required in ("shape", "chunks", "dtype"):
        if required not in doc:
            raise MetadataError(f"array metadata lacks the required field {required!r}", key=key)
    shape = _int_tuple(doc["shape"], "shape", key, positive=False)
    chunks = _int_tuple(doc["chunks"], "chunks", key, positive=True)
    if len(chunks) != len(shape):
        raise MetadataError(
            f"shape {list(shape)} and chunks {list(chunks)} differ in length", key=key
        )
    filters = doc.get("filters")
    if filters is not None and not isinstance(filters, list):
        raise MetadataError(f"filters must be a list or null, got {filters!r}", key=key)
    compressor = doc.get("compressor")
    if compressor is not None and not isinstance(compressor, dict):
        raise MetadataError(f"compressor must be an object or null, got {compressor!r}", key=key)
    data_type = data_type_from_json(
        doc["dtype"],
        zarr_format=2,
        object_codec=v2_object_codec(doc["dtype"], filters, compressor),
        key=key,
    )
    dtype = data_type.dtype
    order = doc.get("order", "C")
    if order not in ("C", "F"):
        raise MetadataError(f"order must be 'C' or 'F', got {order!r}", key=key)
    sep = doc.get("dimension_separator", ".")
    if sep is None:
        sep = "."
    if sep not in ("/", "."):
        raise MetadataError(f"dimension_separator must be '.' or '/', got {sep!r}", key=key)
    from asyncarr.codecs import v2_codecs

    try:
        codecs = tuple(
            v2_codecs(
                compressor=compressor,
                filters=filters,
                dtype=dtype,
                object_codec=data_type.object_codec,
            )
        )
    except AsyncarrError as exc:
        if getattr(exc, "key", None) is None:
            exc.key = key  # type: ignore[attr-defined]
            exc.args = (f"{exc.args[0]} (key={key!r})",)
        raise
    attrs = _check_attrs(attrs, key)
    names = attrs.get("_ARRAY_DIMENSIONS")
    dimension_names = (
        tuple(names)
        if isinstance(names, list)
        and len(names) == len(shape)
        and all(isinstance(n, str) for n in names)
        else None
    )
    known = {
        "zarr_format",
        "shape",
        "chunks",
        "dtype",
        "compressor",
        "fill_value",
        "order",
        "filters",
        "dimension_separator",
    }
    try:
        return _v2_metadata(
            shape,
            chunks,
            data_type,
            doc,
            codecs,
            sep,
            dimension_names,
            attrs,
            order,
            known,
            compressor,
            filters,
            key,
        )
    except MetadataError as exc:
        if exc.key is not None:
            raise
        raise MetadataError(str(exc), key=key) from exc


def _v2_metadata(
    shape: tuple[int, ...],
    chunks: tuple[int, ...],
    data_type: DataType,
    doc: dict[str, Any],
    codecs: tuple[Codec, ...],
    sep: Literal["/", "."],
    dimension_names: tuple[str | None, ...] | None,
    attrs: dict[str, Any],
    order: Literal["C", "F"],
    known: set[str],
    compressor: dict[str, Any] | None,
    filters: list[dict[str, Any]] | None,
    key: str | None,
) -> ArrayMetadata:
    return ArrayMetadata(
        zarr_format=2,
        shape=shape,
        chunk_grid=ChunkGrid.regular(shape, chunks),
        dtype=data_type.dtype,
        data_type=data_type,
        fill_value=fill_from_json(data_type, doc.get("fill_value"), 2, key),
        codecs=codecs,
        chunk_key_encoding=ChunkKeyEncoding("v2", sep),
        dimension_names=dimension_names,
        attributes=attrs,
        order=order,
        extra={k: v for k, v in doc.items() if k not in known},
        v2_compressor=compressor,
        v2_filters=filters,
    )


def fill_from_json(data_type: DataType, value: object, zarr_format: int, key: str | None) -> Any:
    """The fill value a metadata ``fill_value`` spells for ``data_type`` (a v2 ``null``
    stays ``None``: chunks then fill with the type's default)."""
    if value is None:
        if zarr_format == 3:
            raise MetadataError("fill_value must not be null in Zarr v3", key=key)
        return None
    try:
        return data_type.fill_from_json(value, zarr_format=2 if zarr_format == 2 else 3)
    except MetadataError as exc:
        if exc.key is not None or key is None:
            raise
        raise MetadataError(str(exc), key=key) from None
    except (TypeError, ValueError, OverflowError) as exc:
        raise MetadataError(
            f"fill_value {value!r} is not valid for {data_type.describe()}: {exc}", key=key
        ) from None


def v2_object_codec(
    dtype: object, filters: list[Any] | None, compressor: dict[str, Any] | None
) -> str | None:
    """The id of a v2 object array's object codec: the first filter (or the compressor)
    whose id is one (``vlen-utf8``, ``json2``, ...), as zarr-python finds it. ``None`` for
    other dtypes."""
    if not isinstance(dtype, str) or not dtype.endswith("O"):
        return None
    for entry in [*(filters or []), compressor]:
        if isinstance(entry, dict) and entry.get("id") in OBJECT_CODECS:
            return str(entry["id"])
    return None


@dataclass(frozen=True)
class GroupMetadata:
    """A group's format, attributes and (optionally) consolidated child metadata."""

    zarr_format: Literal[2, 3]
    attributes: dict[str, Any] = field(default_factory=dict)
    consolidated: dict[str, dict[str, Any]] | None = None
    """Path (relative to the group) -> raw metadata document of every descendant."""

    def to_json(self) -> dict[str, Any]:
        if self.zarr_format == 2:
            return {"zarr_format": 2}
        doc: dict[str, Any] = {
            "zarr_format": 3,
            "node_type": "group",
            "attributes": self.attributes,
        }
        if self.consolidated is not None:
            doc["consolidated_metadata"] = {
                "kind": "inline",
                "must_understand": False,
                "metadata": self.consolidated,
            }
        return doc


def parse_group_metadata_v3(doc: dict[str, Any], *, key: str | None = None) -> GroupMetadata:
    if doc.get("zarr_format") != 3 or doc.get("node_type") != "group":
        raise MetadataError("expected a v3 group document", key=key)
    consolidated = None
    block = doc.get("consolidated_metadata")
    if isinstance(block, dict) and isinstance(block.get("metadata"), dict):
        consolidated = block["metadata"]
    return GroupMetadata(3, _check_attrs(doc.get("attributes"), key), consolidated)


def parse_group_metadata_v2(
    doc: dict[str, Any], attrs: dict[str, Any] | None = None, *, key: str | None = None
) -> GroupMetadata:
    if doc.get("zarr_format") != 2:
        raise MetadataError(f"expected zarr_format 2, got {doc.get('zarr_format')!r}", key=key)
    return GroupMetadata(2, _check_attrs(attrs, key))
