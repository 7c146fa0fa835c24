"""Data type name -> data type class registry, and resolving every way a data type is named.

v3 ``data_type`` values are looked up by name: data types registered here (built-ins
and :func:`register_data_type`), then entry points in the ``asyncarr.data_types`` group
(loaded once, on the first miss), then name patterns (``r<bits>``). v2 ``dtype``
values and numpy dtypes are offered to each registered class in turn, the most
recently registered first, so a registration can take over a spelling.
"""

from __future__ import annotations

import importlib
import re
import threading
from importlib.metadata import entry_points
from typing import Any

import numpy as np

from asyncarr.abc import DataType, ZarrFormat
from asyncarr.errors import ConfigError, MetadataError, UnknownDataTypeError

__all__ = [
    "ENTRY_POINT_GROUP",
    "data_type_from_json",
    "data_type_from_numpy",
    "data_type_from_user",
    "register_data_type",
    "registered_data_types",
    "unregister_data_type",
]

ENTRY_POINT_GROUP = "asyncarr.data_types"

_BUILTIN: tuple[str, ...] = (
    "asyncarr.dtypes._numeric:NumericDataType",
    "asyncarr.dtypes._fixed:FixedUnicode",
    "asyncarr.dtypes._fixed:FixedBytes",
    "asyncarr.dtypes._fixed:RawBytes",
    "asyncarr.dtypes._time:TimeDataType",
    "asyncarr.dtypes._struct:StructDataType",
    "asyncarr.dtypes._variable:VariableString",
    "asyncarr.dtypes._variable:VariableBytes",
    "asyncarr.dtypes._variable:ObjectDataType",
)
_lock = threading.RLock()
_classes: list[type[DataType]] = []
"""Registered classes, in the order they are asked (latest registration first)."""
_names: dict[str, type[DataType]] = {}
_builtin_names: dict[str, type[DataType]] = {}
_entry_points_loaded = False


def _load(path: str) -> type[DataType]:
    module_name, _, attr = path.partition(":")
    cls = getattr(importlib.import_module(module_name), attr)
    if not (isinstance(cls, type) and issubclass(cls, DataType)):  # pragma: no cover
        raise UnknownDataTypeError(f"{path} is not an asyncarr DataType class")
    return cls


def _ensure_builtins() -> None:
    if _builtin_names:
        return
    with _lock:
        if _builtin_names:
            return
        for path in _BUILTIN:
            cls = _load(path)
            _classes.append(cls)
            for name in cls.v3_names:
                _names.setdefault(name, cls)
                _builtin_names[name] = cls


def register_data_type(cls: type[DataType], *, replace: bool = False) -> None:
    """Make ``cls`` read and write the data types it names (its ``v3_names``, and the v2
    and numpy dtypes its ``from_json`` / ``from_numpy`` accept).

    Raises :class:`~asyncarr.errors.ConfigError` if one of its v3 names is taken (pass
    ``replace=True`` to override, e.g. a built-in) or ``cls`` is not a
    :class:`~asyncarr.abc.DataType` subclass.
    """
    if not (isinstance(cls, type) and issubclass(cls, DataType)):
        raise ConfigError(f"{cls!r} is not a subclass of asyncarr.abc.DataType")
    _ensure_builtins()
    with _lock:
        taken = [n for n in cls.v3_names if n in _names and _names[n] is not cls]
        if taken and not replace:
            raise ConfigError(f"data type names {taken} are already registered (pass replace=True)")
        for name in cls.v3_names:
            _names[name] = cls
        if cls in _classes:
            _classes.remove(cls)
        _classes.insert(0, cls)
        _prune()


def unregister_data_type(name: str) -> None:
    """Remove the registration of the v3 name ``name``; a built-in name goes back to its
    built-in class. A class left with no registered name is no longer asked for v2
    spellings or numpy dtypes either."""
    _ensure_builtins()
    with _lock:
        _names.pop(name, None)
        builtin = _builtin_names.get(name)
        if builtin is not None:
            _names[name] = builtin
            if builtin not in _classes:
                _classes.append(builtin)
        _prune()


def _prune() -> None:
    """Drop classes left with none of their names (holding the lock): a class whose names
    were all taken over no longer answers for v2 spellings or numpy dtypes either. (A
    class with no v3 name, a v2-only type, stays.)"""
    named = set(_names.values())
    _classes[:] = [c for c in _classes if c in named or not c.v3_names]


def registered_data_types() -> list[str]:
    """The registered v3 data type names, sorted."""
    _ensure_builtins()
    return sorted(_names)


def _load_entry_points() -> None:
    global _entry_points_loaded
    with _lock:
        if _entry_points_loaded:
            return
        _entry_points_loaded = True
        for ep in entry_points(group=ENTRY_POINT_GROUP):
            try:
                cls = ep.load()
            except Exception as exc:
                raise UnknownDataTypeError(
                    f"data type entry point {ep.name!r} ({ep.value}) could not be loaded: {exc}"
                ) from exc
            if ep.name not in _names:
                register_data_type(cls)


def _class_for_name(name: str) -> type[DataType] | None:
    _ensure_builtins()
    cls = _names.get(name)
    if cls is None and not _entry_points_loaded:
        _load_entry_points()
        cls = _names.get(name)
    if cls is None:
        with _lock:
            patterned = [c for c in _classes if c.v3_name_pattern]
        for c in patterned:
            if re.fullmatch(c.v3_name_pattern or "", name):
                return c
    return cls


def _v3_name(value: object) -> str | None:
    if isinstance(value, str):
        return value
    if isinstance(value, dict) and isinstance(value.get("name"), str):
        return str(value["name"])
    return None


def data_type_from_json(
    value: object,
    *,
    zarr_format: ZarrFormat,
    object_codec: str | None = None,
    key: str | None = None,
) -> DataType:
    """The data type a metadata document names: a v3 ``data_type`` value, or a v2
    ``dtype`` value (with ``object_codec``, the id of the object codec among a v2
    array's filters, if any).

    Raises :class:`~asyncarr.errors.UnknownDataTypeError` (a ``MetadataError``) naming
    the value and the known names, or ``MetadataError`` for a malformed spelling.
    """
    try:
        found = _resolve(value, zarr_format, object_codec)
    except MetadataError as exc:
        if key is not None and exc.key is None:
            raise type(exc)(str(exc), key=key) from None
        raise
    except (TypeError, ValueError, RecursionError) as exc:
        raise MetadataError(f"invalid data type {value!r}: {exc}", key=key) from None
    return found


def _resolve(value: object, zarr_format: ZarrFormat, object_codec: str | None) -> DataType:
    if zarr_format == 3:
        name = _v3_name(value)
        if name is None:
            raise MetadataError(
                f"data_type must be a name or an object with a 'name', got {value!r}"
            )
        cls = _class_for_name(name)
        if cls is None:
            raise UnknownDataTypeError(
                f"unknown or unsupported data_type {name!r}; known data types: "
                f"{', '.join(registered_data_types())} (and r<bits> raw types)"
            )
        try:
            found = cls.from_json(value, zarr_format=3)
        except ConfigError as exc:
            raise MetadataError(f"invalid data_type {value!r}: {exc}") from None
        if found is None:
            raise MetadataError(f"malformed data_type {value!r} for {name!r}")
        return found
    _ensure_builtins()
    with _lock:
        classes = list(_classes)
    for cls in classes:
        try:
            found = cls.from_json(value, zarr_format=2, object_codec=object_codec)
        except ConfigError as exc:
            raise MetadataError(f"invalid v2 dtype {value!r}: {exc}") from None
        if found is not None:
            return found
    raise UnknownDataTypeError(
        f"unsupported v2 dtype {value!r}"
        + (f" with the object codec {object_codec!r}" if object_codec else "")
        + "; supported: numpy type strings of booleans, integers, floats, complex numbers, "
        "text (U), bytes (S, V), datetimes (M8, m8), structured lists, and '|O' with "
        "vlen-utf8, vlen-bytes, json2, vlen-array or pickle"
    )


def data_type_from_numpy(dtype: np.dtype[Any]) -> DataType:
    """The data type of arrays of the numpy ``dtype`` (``ConfigError`` if none, or if
    ``dtype`` is ``object``, which could be strings, bytes or anything)."""
    dtype = np.dtype(dtype)
    if dtype == np.dtype(object):
        raise ConfigError(
            "dtype=object is ambiguous: use dtype=str for variable-length strings or "
            "dtype=bytes for variable-length byte strings (Zarr v2 object arrays of other "
            "objects: dtype=object with an object codec filter such as {'id': 'json2'})"
        )
    _ensure_builtins()
    with _lock:
        classes = list(_classes)
    for cls in classes:
        found = cls.from_numpy(dtype)
        if found is not None:
            return found
    raise ConfigError(f"unsupported dtype {dtype}: no Zarr data type holds it")


def data_type_from_user(value: Any) -> DataType:
    """A data type as ``create_array(dtype=...)`` takes it: a :class:`DataType`, ``str``
    or ``bytes`` (variable-length strings or byte strings), a v3 name (``"string"``,
    ``"float32"``), a v3 ``data_type`` object, or anything numpy takes as a dtype."""
    from asyncarr.dtypes._variable import VariableBytes, VariableString, is_string_dtype

    if isinstance(value, DataType):
        return value
    if value is str or (isinstance(value, str) and value == "str") or is_string_dtype(value):
        return data_type_from_numpy(value) if is_string_dtype(value) else VariableString()
    if value is bytes or (isinstance(value, str) and value == "bytes"):
        return VariableBytes()  # (written as zarr-python names it: variable_length_bytes)
    if isinstance(value, dict) or (isinstance(value, str) and _class_for_name(value) is not None):
        try:
            return data_type_from_json(value, zarr_format=3)
        except MetadataError as exc:
            raise ConfigError(str(exc)) from None
    try:
        dtype = np.dtype(value)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"invalid dtype {value!r}: {exc}") from None
    return data_type_from_numpy(dtype)
