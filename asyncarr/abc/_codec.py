"""The ``Codec`` extension point, following the Zarr v3 codec model.

A chunk is encoded by a chain: zero or more array→array codecs, exactly one
array→bytes codec, then zero or more bytes→bytes codecs. Encode and decode
are synchronous CPU work; the runtime runs them in the codec executor.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any, ClassVar, Literal, Self

import numpy as np

from asyncarr._types import ChunkSpec

__all__ = [
    "ArrayArrayCodec",
    "ArrayBytesCodec",
    "BytesBytesCodec",
    "Codec",
    "CodecKind",
    "NDArray",
]

NDArray = np.ndarray[Any, np.dtype[Any]]
CodecKind = Literal["array_to_array", "array_to_bytes", "bytes_to_bytes"]


class Codec(ABC):
    """Base of every codec.

    Subclasses set :attr:`codec_name` (the v3 ``name`` in metadata) and
    implement :meth:`from_config` / :meth:`to_config`, which must round-trip.
    """

    codec_name: ClassVar[str]
    kind: ClassVar[CodecKind]
    releases_gil: ClassVar[bool] = True
    """Whether encode/decode release the GIL (decides threads vs. processes)."""

    @classmethod
    @abstractmethod
    def from_config(cls, configuration: dict[str, Any]) -> Self:
        """Build from the ``configuration`` object of v3 metadata."""

    @abstractmethod
    def to_config(self) -> dict[str, Any]:
        """The ``configuration`` object for v3 metadata."""

    def to_metadata(self) -> dict[str, Any]:
        """``{"name": ..., "configuration": ...}`` as written to ``zarr.json``."""
        config = self.to_config()
        if config:
            return {"name": self.codec_name, "configuration": config}
        return {"name": self.codec_name}

    def validate(self, spec: ChunkSpec) -> None:  # noqa: B027 - optional hook
        """Raise :class:`asyncarr.errors.CodecError` if unusable for ``spec``."""

    def evolve(self, spec: ChunkSpec) -> Self:
        """A copy specialised for ``spec`` (e.g. fill in blosc's typesize)."""
        return self

    def resolve_spec(self, spec: ChunkSpec) -> ChunkSpec:
        """The spec of this codec's *output* given its input spec."""
        return spec

    def max_encoded_size(self, input_size: int) -> int | None:
        """Upper bound on the encoded size, where known."""
        return None

    def __eq__(self, other: object) -> bool:
        return (
            isinstance(other, Codec)
            and type(self) is type(other)
            and self.to_config() == other.to_config()
        )

    def __hash__(self) -> int:
        return hash((type(self), repr(sorted(self.to_config().items()))))

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.to_config()!r})"


class ArrayArrayCodec(Codec):
    """Transforms an array into another array (transpose, filters)."""

    kind: ClassVar[CodecKind] = "array_to_array"

    @abstractmethod
    def encode(self, chunk: NDArray, spec: ChunkSpec) -> NDArray: ...

    @abstractmethod
    def decode(self, chunk: NDArray, spec: ChunkSpec) -> NDArray:
        """``spec`` describes the *decoded* (input-side) chunk."""


class ArrayBytesCodec(Codec):
    """Serialises an array into bytes (``bytes``, ``sharding_indexed``)."""

    kind: ClassVar[CodecKind] = "array_to_bytes"

    @abstractmethod
    def encode(self, chunk: NDArray, spec: ChunkSpec) -> bytes: ...

    @abstractmethod
    def decode(self, data: bytes | memoryview, spec: ChunkSpec) -> NDArray:
        """Must return an array of exactly ``spec.shape`` / ``spec.dtype`` or raise CodecError."""


class BytesBytesCodec(Codec):
    """Transforms bytes into bytes (compressors, checksums)."""

    kind: ClassVar[CodecKind] = "bytes_to_bytes"

    @abstractmethod
    def encode(self, data: bytes | memoryview, spec: ChunkSpec) -> bytes: ...

    @abstractmethod
    def decode(
        self, data: bytes | memoryview, spec: ChunkSpec, max_size: int | None = None
    ) -> bytes | memoryview:
        """``max_size``, where known, bounds the decoded size (decompression bombs)."""
