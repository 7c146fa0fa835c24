"""Small value types shared by every layer: byte ranges, chunk specs, versions."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, TypeAlias

import numpy as np

from asyncarr.errors import ConfigError

__all__ = [
    "ByteRange",
    "ChunkCoords",
    "ChunkSpec",
    "OffsetRange",
    "RangeRequest",
    "SuffixRange",
    "Versioned",
    "http_range_header",
    "range_to_slice",
]

ChunkCoords: TypeAlias = tuple[int, ...]


@dataclass(frozen=True, slots=True)
class ByteRange:
    """Bytes ``[start, end)`` of a value (``end`` exclusive)."""

    start: int
    end: int

    def __post_init__(self) -> None:
        if self.start < 0 or self.end < self.start:
            raise ConfigError(f"invalid byte range [{self.start}, {self.end})")

    @property
    def length(self) -> int:
        return self.end - self.start


@dataclass(frozen=True, slots=True)
class OffsetRange:
    """Every byte from ``offset`` to the end of the value."""

    offset: int

    def __post_init__(self) -> None:
        if self.offset < 0:
            raise ConfigError(f"invalid offset {self.offset}")


@dataclass(frozen=True, slots=True)
class SuffixRange:
    """The last ``length`` bytes of the value (all of it if shorter)."""

    length: int

    def __post_init__(self) -> None:
        if self.length < 0:
            raise ConfigError(f"invalid suffix length {self.length}")


RangeRequest: TypeAlias = ByteRange | OffsetRange | SuffixRange


def range_to_slice(rng: RangeRequest | None, size: int) -> slice:
    """The Python slice that ``rng`` selects from a value of ``size`` bytes."""
    if rng is None:
        return slice(0, size)
    if isinstance(rng, ByteRange):
        return slice(min(rng.start, size), min(rng.end, size))
    if isinstance(rng, OffsetRange):
        return slice(min(rng.offset, size), size)
    return slice(max(size - rng.length, 0), size)


@dataclass(frozen=True, slots=True)
class Versioned:
    """A value together with the opaque version token a conditional write needs.

    ``version`` is an ETag (S3, Azure), a generation (GCS), a counter
    (MongoDB) or a content fingerprint (local, memory, zip).
    """

    data: bytes
    version: str


@dataclass(frozen=True, slots=True)
class ChunkSpec:
    """What a codec needs to know about the chunk it encodes or decodes."""

    shape: tuple[int, ...]
    dtype: np.dtype[Any]
    fill_value: Any
    order: str = "C"

    @property
    def nbytes(self) -> int:
        n = self.dtype.itemsize
        for s in self.shape:
            n *= s
        return n

    def with_(self, **changes: Any) -> ChunkSpec:
        values = {
            "shape": self.shape,
            "dtype": self.dtype,
            "fill_value": self.fill_value,
            "order": self.order,
        }
        values.update(changes)
        return ChunkSpec(**values)


def http_range_header(rng: RangeRequest) -> str | None:
    """The HTTP ``Range`` value for ``rng``, or ``None`` for a range that selects no bytes."""
    if isinstance(rng, ByteRange):
        return None if rng.end <= rng.start else f"bytes={rng.start}-{rng.end - 1}"
    if isinstance(rng, OffsetRange):
        return f"bytes={rng.offset}-"
    return None if rng.length <= 0 else f"bytes=-{rng.length}"
