"""Small helpers turning array metadata into codec-facing value types."""

from __future__ import annotations

from typing import TYPE_CHECKING

from asyncarr._types import ChunkSpec
from asyncarr.core._dtype import fill_value_or_default

if TYPE_CHECKING:
    from asyncarr.core._metadata import ArrayMetadata

__all__ = ["chunk_spec"]


def chunk_spec(meta: ArrayMetadata) -> ChunkSpec:
    """The spec of one chunk of the chunk grid (a whole shard for sharded arrays)."""
    return ChunkSpec(
        shape=meta.chunk_shape,
        dtype=meta.dtype,
        fill_value=fill_value_or_default(meta.fill_value, meta.dtype),
        order=meta.order,
    )
