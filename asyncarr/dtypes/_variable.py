"""Variable-length elements: v3 ``string`` and ``variable_length_bytes`` (also named
``bytes``), and v2 object arrays (``"|O"`` with an object codec among the filters).

Strings read as numpy ``StringDType`` arrays, as zarr-python 3 reads them (``object``
arrays of ``str`` where numpy is older than 2.0); byte strings as ``object`` arrays of
``bytes``; other v2 object arrays (``json2``, ``vlen-array``, ``pickle``, ``msgpack2``)
as ``object`` arrays of whatever their codec decodes.
"""

from __future__ import annotations

import base64
import json
from typing import Any, ClassVar, Self

import numpy as np

from asyncarr.abc import DataType, ZarrFormat
from asyncarr.dtypes._common import bad_fill, bad_user_fill, bytes_from_json
from asyncarr.errors import ConfigError, MetadataError

__all__ = [
    "OBJECT_CODECS",
    "STRING_DTYPE",
    "ObjectDataType",
    "VariableBytes",
    "VariableString",
    "is_string_dtype",
]

_STRING_DTYPE_CLASS: Any = getattr(np.dtypes, "StringDType", None)
STRING_DTYPE: np.dtype[Any] = (
    _STRING_DTYPE_CLASS() if _STRING_DTYPE_CLASS is not None else np.dtype(object)
)
"""What strings read as: ``StringDType()`` (numpy >= 2), else ``object``."""

OBJECT_CODECS = ("vlen-utf8", "vlen-bytes", "vlen-array", "json2", "pickle", "msgpack2")
"""The v2 filter ids that make a ``"|O"`` array's type (as zarr-python looks for them)."""
_V2_OBJECT = ("|O", "<O", ">O", "=O", "O")


def is_string_dtype(dtype: object) -> bool:
    """Whether ``dtype`` is numpy's variable-length ``StringDType``."""
    return _STRING_DTYPE_CLASS is not None and isinstance(dtype, _STRING_DTYPE_CLASS)


class VariableString(DataType):
    """Variable-length UTF-8 text: v3 ``string`` with the ``vlen-utf8`` codec, v2 ``"|O"``
    with the ``vlen-utf8`` filter."""

    v3_names: ClassVar[tuple[str, ...]] = ("string", "variable_length_utf8")

    @property
    def dtype(self) -> np.dtype[Any]:
        return STRING_DTYPE

    @property
    def name(self) -> str:
        return "string"

    @property
    def object_codec(self) -> str | None:
        return "vlen-utf8"

    def _identity(self) -> tuple[Any, ...]:
        return (type(self),)

    @classmethod
    def from_json(
        cls, value: object, *, zarr_format: ZarrFormat, object_codec: str | None = None
    ) -> Self | None:
        if zarr_format == 3:
            return cls() if value in cls.v3_names else None
        return cls() if value in _V2_OBJECT and object_codec == "vlen-utf8" else None

    @classmethod
    def from_numpy(cls, dtype: np.dtype[Any]) -> Self | None:
        if not is_string_dtype(dtype):
            return None
        if hasattr(dtype, "na_object"):
            raise ConfigError(
                f"{dtype} has a missing-value object, which Zarr strings cannot store; "
                "use numpy.dtypes.StringDType()"
            )
        return cls()

    def to_json(self, zarr_format: ZarrFormat) -> Any:
        return "string" if zarr_format == 3 else "|O"

    def default_fill(self) -> Any:
        return ""

    def fill_from_json(self, value: object, *, zarr_format: ZarrFormat) -> Any:
        if isinstance(value, str):
            return value
        if isinstance(value, int | float) and not isinstance(value, bool):
            return str(value)  # zarr 2 wrote its default fill, 0; zarr-python 3 reads "0"
        bad_fill(value, "string", "a string")

    def fill_to_json(self, value: Any, *, zarr_format: ZarrFormat) -> Any:
        return str(value)

    def cast_fill(self, value: Any) -> Any:
        if isinstance(value, str):
            return str(value)
        bad_user_fill(value, "string", "a string")


class VariableBytes(DataType):
    """Variable-length byte strings: v3 ``variable_length_bytes`` (or ``bytes``) with the
    ``vlen-bytes`` codec, v2 ``"|O"`` with the ``vlen-bytes`` filter."""

    v3_names: ClassVar[tuple[str, ...]] = ("variable_length_bytes", "bytes")

    def __init__(self, *, spelled: str = "variable_length_bytes") -> None:
        if spelled not in self.v3_names:
            raise ConfigError(f"variable-length bytes are named {self.v3_names}, not {spelled!r}")
        self._spelled = spelled

    @property
    def dtype(self) -> np.dtype[Any]:
        return np.dtype(object)

    @property
    def name(self) -> str:
        return self._spelled

    @property
    def object_codec(self) -> str | None:
        return "vlen-bytes"

    def __reduce__(self) -> tuple[Any, ...]:
        return (_variable_bytes, (self._spelled,))

    def _identity(self) -> tuple[Any, ...]:
        return (type(self),)

    @classmethod
    def from_json(
        cls, value: object, *, zarr_format: ZarrFormat, object_codec: str | None = None
    ) -> Self | None:
        if zarr_format == 3:
            return cls(spelled=value) if value in cls.v3_names else None
        return cls() if value in _V2_OBJECT and object_codec == "vlen-bytes" else None

    def to_json(self, zarr_format: ZarrFormat) -> Any:
        return self._spelled if zarr_format == 3 else "|O"

    def default_fill(self) -> Any:
        return b""

    def fill_from_json(self, value: object, *, zarr_format: ZarrFormat) -> Any:
        return bytes_from_json(value, self.name)

    def fill_to_json(self, value: Any, *, zarr_format: ZarrFormat) -> Any:
        return base64.standard_b64encode(bytes(value)).decode("ascii")

    def cast_fill(self, value: Any) -> Any:
        if isinstance(value, bytes | bytearray | np.bytes_):
            return bytes(value)
        bad_user_fill(value, self.name, "bytes")


def _variable_bytes(spelled: str) -> VariableBytes:
    return VariableBytes(spelled=spelled)


class ObjectDataType(DataType):
    """A v2 object array whose elements an object codec other than ``vlen-utf8`` /
    ``vlen-bytes`` stores: ``json2`` (JSON values), ``vlen-array`` (1-d arrays),
    ``pickle`` (anything; refused unless trusted), ``msgpack2``. Zarr v3 has no spelling
    for them. Fill values are kept as the JSON metadata gives them."""

    v3_names: ClassVar[tuple[str, ...]] = ()

    def __init__(self, codec_id: str) -> None:
        if codec_id not in OBJECT_CODECS or codec_id in ("vlen-utf8", "vlen-bytes"):
            raise ConfigError(f"{codec_id!r} is not an object codec for generic object arrays")
        self._codec_id = codec_id

    @property
    def dtype(self) -> np.dtype[Any]:
        return np.dtype(object)

    @property
    def name(self) -> str:
        return f"object ({self._codec_id})"

    @property
    def object_codec(self) -> str | None:
        return self._codec_id

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (self._codec_id,))

    def _identity(self) -> tuple[Any, ...]:
        return (type(self), self._codec_id)

    @classmethod
    def from_json(
        cls, value: object, *, zarr_format: ZarrFormat, object_codec: str | None = None
    ) -> Self | None:
        if zarr_format != 2 or value not in _V2_OBJECT:
            return None
        if object_codec is None:
            raise MetadataError(
                f"the object dtype {value!r} needs an object codec among the filters (one of "
                f"{', '.join(OBJECT_CODECS)}), and there is none"
            )
        return cls(object_codec) if object_codec not in ("vlen-utf8", "vlen-bytes") else None

    def to_json(self, zarr_format: ZarrFormat) -> Any:
        if zarr_format == 3:
            raise MetadataError(
                f"object arrays stored with {self._codec_id!r} have no Zarr v3 spelling; use "
                "zarr_format=2 (or dtype=str / dtype=bytes for text and byte strings)"
            )
        return "|O"

    def default_fill(self) -> Any:
        return None

    def fill_from_json(self, value: object, *, zarr_format: ZarrFormat) -> Any:
        return value

    def fill_to_json(self, value: Any, *, zarr_format: ZarrFormat) -> Any:
        return value

    def cast_fill(self, value: Any) -> Any:
        try:
            json.dumps(value)
        except (TypeError, ValueError) as exc:
            raise ConfigError(
                f"fill_value {value!r} of an object array must be a JSON value: {exc}"
            ) from None
        return value
