"""Abstract bases for the extension points: stores, codecs and data types (layer L1)."""

from asyncarr.abc._codec import (
    ArrayArrayCodec,
    ArrayBytesCodec,
    BytesBytesCodec,
    Codec,
    CodecKind,
    NDArray,
)
from asyncarr.abc._dtype import DataType, ZarrFormat
from asyncarr.abc._store import Store, normalize_key, normalize_prefix, validate_prefix

__all__ = [
    "ArrayArrayCodec",
    "ArrayBytesCodec",
    "BytesBytesCodec",
    "Codec",
    "CodecKind",
    "DataType",
    "NDArray",
    "Store",
    "ZarrFormat",
    "normalize_key",
    "normalize_prefix",
    "validate_prefix",
]
