"""Records of named fields: v3 ``struct`` (and the legacy ``structured`` list form), v2
lists of ``[name, dtype]`` or ``[name, dtype, shape]`` (numpy structured dtypes).

Fields are packed (no padding), in declaration order, and may nest. A v2 field keeps
its own byte order and may be a fixed-shape subarray; v3 has no spelling for a
subarray field, so such a struct is v2 only.
"""

from __future__ import annotations

import base64
import math
from typing import Any, ClassVar, Self

import numpy as np

from asyncarr.abc import DataType, ZarrFormat
from asyncarr.dtypes._common import bad_fill, bad_user_fill, bytes_from_json, is_json_int
from asyncarr.errors import ConfigError, MetadataError

__all__ = ["MAX_STRUCT_DEPTH", "StructDataType"]

MAX_STRUCT_DEPTH = 16
"""Deepest nesting of structs read from metadata (deeper is refused, not recursed into)."""

Field = tuple[str, DataType, tuple[int, ...]]


def _field_type(value: object, zarr_format: ZarrFormat, depth: int, where: str) -> DataType:
    from asyncarr.dtypes._registry import data_type_from_json

    if depth >= MAX_STRUCT_DEPTH:
        raise MetadataError(f"structs nested deeper than {MAX_STRUCT_DEPTH} levels at {where}")
    if zarr_format == 2 and isinstance(value, list):
        return StructDataType._from_v2_fields(value, depth + 1)
    if (
        zarr_format == 3
        and isinstance(value, dict)
        and value.get("name") in StructDataType.v3_names
    ):
        return StructDataType._from_v3(value, depth + 1)
    try:
        field = data_type_from_json(value, zarr_format=zarr_format)
    except MetadataError as exc:
        raise MetadataError(f"field {where}: {exc}") from None
    if field.object_codec is not None:
        raise MetadataError(
            f"field {where} has the variable-length type {field.describe()}; struct fields "
            "must be of fixed size"
        )
    return field


def _check_name(name: object, seen: set[str], where: str) -> str:
    if not isinstance(name, str) or not name:
        raise MetadataError(f"struct field {where} needs a non-empty string name, got {name!r}")
    if name in seen:
        raise MetadataError(f"struct field name {name!r} appears twice")
    seen.add(name)
    return name


class StructDataType(DataType):
    """A record of named, typed fields (a numpy structured dtype)."""

    v3_names: ClassVar[tuple[str, ...]] = ("struct", "structured")

    def __init__(self, fields: list[Field] | tuple[Field, ...]) -> None:
        if not fields:
            raise ConfigError("a struct needs at least one field")
        self.fields: tuple[Field, ...] = tuple(fields)
        try:
            self._dtype = np.dtype(
                [(name, f.dtype, shape) if shape else (name, f.dtype) for name, f, shape in fields]
            )
        except (TypeError, ValueError) as exc:
            raise ConfigError(f"invalid struct fields: {exc}") from None
        sizes = sum(f.dtype.itemsize * math.prod(shape) for _, f, shape in fields)
        if sizes != self._dtype.itemsize:  # pragma: no cover - numpy packs the list form
            raise ConfigError(f"struct fields add up to {sizes} bytes, not {self._dtype.itemsize}")

    @property
    def dtype(self) -> np.dtype[Any]:
        return self._dtype

    @property
    def name(self) -> str:
        return "struct"

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (list(self.fields),))

    def describe(self) -> str:
        parts = []
        for name, f, shape in self.fields:
            sub = f"[{','.join(map(str, shape))}]" if shape else ""
            parts.append(f"{name}: {f.describe()}{sub}")
        return "struct{" + ", ".join(parts) + "}"

    # -- parsing ------------------------------------------------------------------------
    @classmethod
    def _from_v3(cls, value: dict[str, Any], depth: int = 0) -> Self:
        name = value.get("name")
        config = value.get("configuration")
        if set(value) != {"name", "configuration"} or not isinstance(config, dict):
            raise MetadataError(f"data type {name!r} needs a configuration with fields")
        if set(config) != {"fields"} or not isinstance(config["fields"], list):
            raise MetadataError(f"the configuration of {name!r} must be {{'fields': [...]}}")
        fields: list[Field] = []
        seen: set[str] = set()
        for i, entry in enumerate(config["fields"]):
            if isinstance(entry, dict) and set(entry) == {"name", "data_type"}:
                field_name, spelled = entry["name"], entry["data_type"]
            elif isinstance(entry, list) and len(entry) == 2:  # the legacy "structured" form
                field_name, spelled = entry
            else:
                raise MetadataError(
                    f"struct field {i} must be {{'name': ..., 'data_type': ...}}, got {entry!r}"
                )
            field_name = _check_name(field_name, seen, str(i))
            fields.append((field_name, _field_type(spelled, 3, depth, repr(field_name)), ()))
        if not fields:
            raise MetadataError(f"data type {name!r} needs at least one field")
        return cls(fields)

    @classmethod
    def _from_v2_fields(cls, value: list[Any], depth: int = 0) -> Self:
        fields: list[Field] = []
        seen: set[str] = set()
        for i, entry in enumerate(value):
            if not isinstance(entry, list) or len(entry) not in (2, 3):
                raise MetadataError(
                    f"v2 struct field {i} must be [name, dtype] or [name, dtype, shape], got {entry!r}"
                )
            field_name = _check_name(entry[0], seen, str(i))
            shape: tuple[int, ...] = ()
            if len(entry) == 3:
                raw = entry[2]
                if not isinstance(raw, list) or not all(is_json_int(n) and n >= 0 for n in raw):
                    raise MetadataError(
                        f"the shape of field {field_name!r} must be a list of sizes, got {raw!r}"
                    )
                shape = tuple(raw)
                if math.prod(shape) > 1 << 31:
                    raise MetadataError(f"field {field_name!r} has an absurd shape {list(shape)}")
            fields.append((field_name, _field_type(entry[1], 2, depth, repr(field_name)), shape))
        if not fields:
            raise MetadataError("a v2 struct dtype needs at least one field")
        return cls(fields)

    @classmethod
    def from_json(
        cls, value: object, *, zarr_format: ZarrFormat, object_codec: str | None = None
    ) -> Self | None:
        if zarr_format == 3:
            if isinstance(value, dict) and value.get("name") in cls.v3_names:
                return cls._from_v3(value)
            return None
        if not isinstance(value, list) or object_codec is not None:
            return None
        return cls._from_v2_fields(value)

    @classmethod
    def from_numpy(cls, dtype: np.dtype[Any]) -> Self | None:
        from numpy.lib.recfunctions import repack_fields

        from asyncarr.dtypes._registry import data_type_from_numpy

        if dtype.fields is None:
            return None
        assert dtype.names is not None
        if any(len(dtype.fields[n]) > 2 for n in dtype.names):
            raise ConfigError(f"struct fields with titles are not supported: {dtype}")
        dtype = repack_fields(dtype, recurse=True)  # packed, as the specs store them
        assert dtype.fields is not None and dtype.names is not None
        fields: list[Field] = []
        for name in dtype.names:
            field_dtype: np.dtype[Any] = dtype.fields[name][0]
            shape: tuple[int, ...] = ()
            if field_dtype.subdtype is not None:
                field_dtype, shape = field_dtype.subdtype
            fields.append((name, data_type_from_numpy(field_dtype), shape))
        return cls(fields)

    def to_json(self, zarr_format: ZarrFormat) -> Any:
        if zarr_format == 2:
            out: list[Any] = []
            for name, f, shape in self.fields:
                entry: list[Any] = [name, f.to_json(2)]
                if shape:
                    entry.append(list(shape))
                out.append(entry)
            return out
        for name, _f, shape in self.fields:
            if shape:
                raise MetadataError(
                    f"struct field {name!r} is a subarray of shape {list(shape)}, which Zarr v3 "
                    "cannot spell; use zarr_format=2"
                )
        fields = [{"name": name, "data_type": f.to_json(3)} for name, f, _ in self.fields]
        return {"name": "struct", "configuration": {"fields": fields}}

    def native(self) -> StructDataType:
        fields = [(name, f.native(), shape) for name, f, shape in self.fields]
        return (
            self if all(a[1] is b[1] for a, b in zip(fields, self.fields)) else type(self)(fields)
        )

    # -- fill values ----------------------------------------------------------------------
    def default_fill(self) -> Any:
        return np.zeros((), self._dtype)[()]

    def _from_packed(self, raw: bytes, zarr_format: ZarrFormat, fail: Any) -> Any:
        if len(raw) != self._dtype.itemsize:
            fail(
                raw,
                self.describe(),
                f"{self._dtype.itemsize} bytes (the struct's fields add up to that), got {len(raw)}",
            )
        stored = self._dtype if zarr_format == 2 else self._dtype.newbyteorder("<")
        return np.frombuffer(raw, stored).astype(self._dtype)[0]

    def fill_from_json(self, value: object, *, zarr_format: ZarrFormat) -> Any:
        if isinstance(value, dict) and zarr_format == 3:
            unknown = set(value) - {name for name, _, _ in self.fields}
            if unknown:
                bad_fill(
                    value, self.describe(), f"values for its fields only, not {sorted(unknown)}"
                )
            out = np.zeros((), self._dtype)
            for name, f, _ in self.fields:
                if name in value:
                    out[name] = f.fill_from_json(value[name], zarr_format=3)
                else:  # zarr-python reads a missing field as its default
                    out[name] = f.default_fill()
            return out[()]
        if zarr_format == 2 and is_json_int(value) and value == 0:  # zarr 2's default fill
            return self.default_fill()
        if isinstance(value, str):
            return self._from_packed(bytes_from_json(value, self.describe()), zarr_format, bad_fill)
        bad_fill(
            value, self.describe(), "an object of field values (or base64 of the packed bytes)"
        )

    def fill_to_json(self, value: Any, *, zarr_format: ZarrFormat) -> Any:
        scalar = np.asarray(value, self._dtype)
        if zarr_format == 2:
            return base64.standard_b64encode(scalar.tobytes()).decode("ascii")
        return {name: f.fill_to_json(scalar[name][()], zarr_format=3) for name, f, _ in self.fields}

    def cast_fill(self, value: Any) -> Any:
        if isinstance(value, bytes):  # the packed item, fields in the dtype's byte order
            return self._from_packed(value, 2, bad_user_fill)
        if is_json_int(value) and value == 0:
            return self.default_fill()
        if isinstance(value, dict):
            unknown = set(value) - {name for name, _, _ in self.fields}
            if unknown:
                bad_user_fill(
                    value, self.describe(), f"values for its fields only, not {sorted(unknown)}"
                )
            out = np.zeros((), self._dtype)
            for name, f, shape in self.fields:
                if name not in value:
                    out[name] = f.default_fill()
                elif shape:
                    out[name] = self._cast(value[name], np.dtype((f.dtype, shape)))
                else:
                    out[name] = f.cast_fill(value[name])
            return out[()]
        if isinstance(value, np.void | tuple | list):
            return self._cast(value if isinstance(value, np.void) else tuple(value), self._dtype)
        bad_user_fill(value, self.describe(), "a tuple, a dict of field values or a numpy void")

    def _cast(self, value: Any, dtype: np.dtype[Any]) -> Any:
        try:
            return np.array(value, dtype=dtype)[()]
        except (TypeError, ValueError, OverflowError) as exc:
            raise ConfigError(
                f"fill_value {value!r} is not valid for {self.describe()}: {exc}"
            ) from None
