"""asyncarr: an asyncio-first I/O engine for Zarr v2 and v3 arrays.

The async API lives here; ``asyncarr.sync`` has blocking twins with the same
names and signatures.

    import asyncarr
    arr = await asyncarr.create_array("memory://demo", shape=(1000, 1000), chunks=(100, 100), dtype="f4")
    await arr.write(1.0, (slice(0, 100), slice(None)))
    block = await arr.read((slice(0, 10), slice(0, 10)))
"""

from asyncarr import errors
from asyncarr._types import ByteRange, ChunkSpec, OffsetRange, SuffixRange, Versioned
from asyncarr.abc import (
    ArrayArrayCodec,
    ArrayBytesCodec,
    BytesBytesCodec,
    Codec,
    DataType,
    Store,
)
from asyncarr.codecs import (
    allow_pickle_decoding,
    register_codec,
    registered_codecs,
    unregister_codec,
)
from asyncarr.config import CacheConfig, ExecutorConfig, RetryConfig, StoreLimits
from asyncarr.core import (
    ArrayInfo,
    ArrayMetadata,
    AsyncArray,
    AsyncGroup,
    ChunkGrid,
    GroupInfo,
    GroupMetadata,
    UnsupportedNode,
    consolidate_metadata,
    create_array,
    create_group,
    open,
    open_array,
    open_group,
    transaction,
)
from asyncarr.dtypes import register_data_type, registered_data_types, unregister_data_type
from asyncarr.errors import AsyncarrError
from asyncarr.runtime import StoreStats, set_chunk_cache, set_executor, store_stats
from asyncarr.stores import MemoryStore, register_store, store_from_url, unregister_store

__version__ = "0.1.0"

__all__ = [
    "ArrayArrayCodec",
    "ArrayBytesCodec",
    "ArrayInfo",
    "ArrayMetadata",
    "AsyncArray",
    "AsyncGroup",
    "AsyncarrError",
    "ByteRange",
    "BytesBytesCodec",
    "CacheConfig",
    "ChunkGrid",
    "ChunkSpec",
    "Codec",
    "DataType",
    "ExecutorConfig",
    "GroupInfo",
    "GroupMetadata",
    "MemoryStore",
    "OffsetRange",
    "RetryConfig",
    "Store",
    "StoreLimits",
    "StoreStats",
    "SuffixRange",
    "UnsupportedNode",
    "Versioned",
    "__version__",
    "allow_pickle_decoding",
    "consolidate_metadata",
    "create_array",
    "create_group",
    "errors",
    "open",
    "open_array",
    "open_group",
    "register_codec",
    "register_data_type",
    "register_store",
    "registered_codecs",
    "registered_data_types",
    "set_chunk_cache",
    "set_executor",
    "store_from_url",
    "store_stats",
    "transaction",
    "unregister_codec",
    "unregister_data_type",
    "unregister_store",
]
