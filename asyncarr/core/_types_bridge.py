"""Small helpers turning array metadata into codec-facing value types."""

from __future__ import annotations

from typing import TYPE_CHECKING

from asyncarr._types import ChunkSpec

if TYPE_CHECKING:
    from asyncarr.core._metadata import ArrayMetadata

__all__ = ["chunk_spec"]


def chunk_spec(meta: ArrayMetadata, shape: tuple[int, ...] | None = None) -> ChunkSpec:
    """The spec of a chunk of ``shape`` (a whole shard for sharded arrays); by default the
    first chunk's, which is every chunk's where the grid's chunks are all alike. Its fill
    value is the one chunks never written hold (the data type's default for a v2 ``null``)."""
    fill = meta.fill_value
    return ChunkSpec(
        shape=meta.chunk_grid.first_chunk_shape if shape is None else shape,
        dtype=meta.dtype,
        fill_value=meta.data_type.default_fill() if fill is None else fill,
        order=meta.order,
    )
