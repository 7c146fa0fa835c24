"""Zarr data types (layer L2): every ``data_type`` (v3) and ``dtype`` (v2) spelling, fill
values, and the registry that maps names to data type classes.

Built-in data types:

* :class:`NumericDataType`: ``bool``, ``(u)int8..64``, ``float16..64``, ``complex64/128``;
* :class:`FixedUnicode` (``fixed_length_utf32``, v2 ``<U7``), :class:`FixedBytes`
  (``null_terminated_bytes``, v2 ``|S5``), :class:`RawBytes` (``raw_bytes`` and
  ``r<bits>``, v2 ``|V5``);
* :class:`TimeDataType`: ``numpy.datetime64`` / ``numpy.timedelta64`` (v2 ``<M8[ns]``);
* :class:`StructDataType`: ``struct`` / legacy ``structured`` (v2 field lists);
* :class:`VariableString` (``string``), :class:`VariableBytes` (``variable_length_bytes``,
  ``bytes``) and, for v2 only, :class:`ObjectDataType` (``"|O"`` with ``json2``,
  ``vlen-array``, ``pickle``, ``msgpack2``).

Add one with :func:`register_data_type` (a :class:`~asyncarr.abc.DataType` subclass) or
an entry point in the ``asyncarr.data_types`` group.
"""

from asyncarr.dtypes._fixed import FixedBytes, FixedUnicode, RawBytes
from asyncarr.dtypes._numeric import NumericDataType
from asyncarr.dtypes._registry import (
    ENTRY_POINT_GROUP,
    data_type_from_json,
    data_type_from_numpy,
    data_type_from_user,
    register_data_type,
    registered_data_types,
    unregister_data_type,
)
from asyncarr.dtypes._struct import StructDataType
from asyncarr.dtypes._time import TimeDataType
from asyncarr.dtypes._variable import (
    OBJECT_CODECS,
    STRING_DTYPE,
    ObjectDataType,
    VariableBytes,
    VariableString,
    is_string_dtype,
)

__all__ = [
    "ENTRY_POINT_GROUP",
    "OBJECT_CODECS",
    "STRING_DTYPE",
    "FixedBytes",
    "FixedUnicode",
    "NumericDataType",
    "ObjectDataType",
    "RawBytes",
    "StructDataType",
    "TimeDataType",
    "VariableBytes",
    "VariableString",
    "data_type_from_json",
    "data_type_from_numpy",
    "data_type_from_user",
    "is_string_dtype",
    "register_data_type",
    "registered_data_types",
    "unregister_data_type",
]
