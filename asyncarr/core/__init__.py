"""The Zarr engine (layer L4): metadata, chunk grids and indexing, codec pipeline,
sharding, :class:`AsyncArray` and :class:`AsyncGroup`."""

from asyncarr.codecs import register_codec as _register_codec
from asyncarr.core._api import (
    AccessMode,
    consolidate_metadata,
    create_array,
    create_group,
    open,
    open_array,
    open_group,
    resolve_store,
    staged_array,
)
from asyncarr.core._array import AsyncArray
from asyncarr.core._chunk_grid import ChunkGrid
from asyncarr.core._create import DEFAULT_COMPRESSOR, build_array_metadata
from asyncarr.core._group import AsyncGroup
from asyncarr.core._info import ArrayInfo, GroupInfo
from asyncarr.core._metadata import ArrayMetadata, GroupMetadata
from asyncarr.core._sharding import ShardingCodec
from asyncarr.core._streaming import BlockIterator, BlockWriter, Unit
from asyncarr.core._transaction import transaction
from asyncarr.core._unsupported import UnsupportedNode

_register_codec("sharding_indexed", ShardingCodec, replace=True)

__all__ = [
    "DEFAULT_COMPRESSOR",
    "AccessMode",
    "ArrayInfo",
    "ArrayMetadata",
    "AsyncArray",
    "AsyncGroup",
    "BlockIterator",
    "BlockWriter",
    "ChunkGrid",
    "GroupInfo",
    "GroupMetadata",
    "ShardingCodec",
    "Unit",
    "UnsupportedNode",
    "build_array_metadata",
    "consolidate_metadata",
    "create_array",
    "create_group",
    "open",
    "open_array",
    "open_group",
    "resolve_store",
    "staged_array",
    "transaction",
]
