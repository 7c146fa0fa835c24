"""The ``DataType`` extension point: one Zarr data type, as metadata spells it.

A data type knows how array metadata names it (a v3 ``data_type`` value and a v2
``dtype`` value), how its fill values are written in each format, and which numpy
dtype arrays of it are read into. Its chunks are stored either item by item with the
``bytes`` codec (fixed-size items) or by an array -> bytes codec of its own
(:attr:`DataType.object_codec`, e.g. ``vlen-utf8`` for variable-length strings).

Implementations are registered by their v3 names
(:func:`asyncarr.register_data_type`); v2 spellings and numpy dtypes are matched by
asking each registered class in turn (:meth:`DataType.from_json`,
:meth:`DataType.from_numpy`).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any, ClassVar, Literal, Self

import numpy as np

__all__ = ["DataType", "ZarrFormat"]

ZarrFormat = Literal[2, 3]


class DataType(ABC):
    """Base of every data type. Instances are immutable and picklable.

    Subclasses set :attr:`v3_names` (every v3 ``data_type`` name they read; the
    registry maps each to the class) and implement the abstract methods. Parsing
    methods return ``None`` for a spelling that is not theirs and raise
    :class:`~asyncarr.errors.MetadataError` for one that is theirs but malformed.
    """

    v3_names: ClassVar[tuple[str, ...]] = ()
    """The v3 ``data_type`` names this class reads (the first is usually the one it writes)."""

    v3_name_pattern: ClassVar[str | None] = None
    """A regular expression for a family of v3 names this class also reads (``r\\d+``
    for the core spec's raw types), matched when no name is registered exactly."""

    @property
    @abstractmethod
    def dtype(self) -> np.dtype[Any]:
        """The numpy dtype of arrays of this type: reads return it, writes are cast to it.
        v2 types keep the byte order metadata gives; v3 types are in native order."""

    @property
    @abstractmethod
    def name(self) -> str:
        """The v3 ``data_type`` name written for this type."""

    @property
    def object_codec(self) -> str | None:
        """The codec that elements of this type need to be stored (``vlen-utf8``,
        ``vlen-bytes``; for v2 object arrays also ``json2``, ``vlen-array``, ...), or
        ``None`` for fixed-size items, which the ``bytes`` codec stores. Arrays of a type
        with an object codec hold Python objects (or numpy ``StringDType`` strings)."""
        return None

    # -- metadata ----------------------------------------------------------------------
    @classmethod
    @abstractmethod
    def from_json(
        cls, value: object, *, zarr_format: ZarrFormat, object_codec: str | None = None
    ) -> Self | None:
        """The data type ``value`` spells (a v3 ``data_type`` or a v2 ``dtype`` value).

        ``object_codec`` is, for v2, the id of the object codec among the array's
        filters (``vlen-utf8``, ``json2``, ...), which together with ``"|O"`` names the
        type. ``None`` when ``value`` is not this class's spelling.
        """

    @classmethod
    def from_numpy(cls, dtype: np.dtype[Any]) -> Self | None:
        """The data type for arrays of the numpy ``dtype`` (``None``: not this class's)."""
        return None

    @abstractmethod
    def to_json(self, zarr_format: ZarrFormat) -> Any:
        """The ``data_type`` (v3) or ``dtype`` (v2) value that names this type."""

    def native(self) -> DataType:
        """This type with items in native byte order (what v3 arrays hold in memory)."""
        return self

    def describe(self) -> str:
        """A short label for people (``info``, the CLI)."""
        return self.name

    # -- fill values ----------------------------------------------------------------------
    @abstractmethod
    def default_fill(self) -> Any:
        """The fill value when none is given (also for a v2 ``null`` fill value)."""

    @abstractmethod
    def fill_from_json(self, value: object, *, zarr_format: ZarrFormat) -> Any:
        """The fill value a metadata ``fill_value`` spells (``MetadataError`` if invalid;
        a v2 ``null`` is handled by the caller)."""

    @abstractmethod
    def fill_to_json(self, value: Any, *, zarr_format: ZarrFormat) -> Any:
        """The metadata ``fill_value`` for ``value`` (as zarr-python writes it)."""

    @abstractmethod
    def cast_fill(self, value: Any) -> Any:
        """A fill value given by a user (``create_array(fill_value=...)``) as this type's
        scalar; raises :class:`~asyncarr.errors.ConfigError` if it does not fit."""

    # -- identity ---------------------------------------------------------------------------
    def _identity(self) -> tuple[Any, ...]:
        return (type(self), self.dtype.str, str(self.dtype), self.name)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, DataType) and self._identity() == other._identity()

    def __hash__(self) -> int:
        return hash(self._identity())

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.describe()!r}, dtype={self.dtype})"
