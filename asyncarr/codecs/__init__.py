"""Codec implementations (layer L2): Zarr v3 core codecs, numcodecs adapters, registry.

Core v3 codecs: :class:`BytesCodec`, :class:`TransposeCodec`,
:class:`GzipCodec`, :class:`ZstdCodec`, :class:`BloscCodec`,
:class:`Crc32cCodec` (``sharding_indexed`` lives in ``asyncarr.core``); for
variable-length data types :class:`VlenUtf8Codec` and :class:`VlenBytesCodec`, and for
v2 object arrays :class:`VlenArrayCodec`, :class:`JsonObjectCodec`, :class:`PickleCodec`.
Any numcodecs codec runs through an adapter, named ``numcodecs.<id>`` in v3
metadata (:func:`numcodecs_adapter`) or built from a v2 config
(:func:`numcodecs_from_v2_config`, :func:`v2_codecs`).

Contract of every codec here:

* bad input raises :class:`~asyncarr.errors.CodecError`; bad configuration
  :class:`CodecConfigError` (also a ``MetadataError``); add the store key
  with :func:`with_key`;
* ``BytesBytesCodec.decode(data, spec, max_size)`` never inflates past
  ``max_size`` for zstd, gzip, zlib, bz2, lzma, blosc and lz4 (other
  numcodecs codecs are checked after decoding);
* codecs with ``supports_decode_into = True`` (bytes, zstd, blosc and their
  numcodecs twins) offer ``decode_into(data, out, spec)``, which decodes
  straight into a caller's buffer (:class:`DecodeInto`);
  :func:`decode_bytes_into` uses it or falls back to decode + copy;
* codecs are immutable after construction, thread-safe, picklable, and set
  ``releases_gil`` from measurement.

Bytes -> bytes codecs receive the spec of the array that the array -> bytes
codec serialised (its dtype drives blosc's typesize and numcodecs' v2
behaviour).
"""

from asyncarr.codecs._base import (
    CodecConfigError,
    DecodeInto,
    decode_bytes_into,
    with_key,
)
from asyncarr.codecs._blosc import BloscCodec
from asyncarr.codecs._builders import (
    DEFAULT_COMPRESSOR,
    codecs_from_compressor,
    filters_from_spec,
)
from asyncarr.codecs._bytes import BytesCodec, endian_sensitive
from asyncarr.codecs._crc32c import Crc32cCodec
from asyncarr.codecs._numcodecs import (
    NumcodecsArrayArrayCodec,
    NumcodecsArrayBytesCodec,
    NumcodecsBytesBytesCodec,
    NumcodecsCodec,
    numcodecs_adapter,
    numcodecs_adapter_class,
    numcodecs_kind,
)
from asyncarr.codecs._registry import (
    codec_from_metadata,
    get_codec_class,
    register_codec,
    registered_codecs,
    unregister_codec,
)
from asyncarr.codecs._stdlib import GzipCodec
from asyncarr.codecs._transpose import TransposeCodec
from asyncarr.codecs._v2 import numcodecs_from_v2_config, v2_codecs, v2_endian
from asyncarr.codecs._vlen import (
    PICKLE_ENV_VAR,
    JsonObjectCodec,
    PickleCodec,
    VlenArrayCodec,
    VlenBytesCodec,
    VlenCodec,
    VlenUtf8Codec,
    allow_pickle_decoding,
    object_codec_from_v2,
    pickle_decoding_allowed,
)
from asyncarr.codecs._zstd import ZstdCodec

__all__ = [
    "DEFAULT_COMPRESSOR",
    "PICKLE_ENV_VAR",
    "BloscCodec",
    "BytesCodec",
    "CodecConfigError",
    "Crc32cCodec",
    "DecodeInto",
    "GzipCodec",
    "JsonObjectCodec",
    "NumcodecsArrayArrayCodec",
    "NumcodecsArrayBytesCodec",
    "NumcodecsBytesBytesCodec",
    "NumcodecsCodec",
    "PickleCodec",
    "TransposeCodec",
    "VlenArrayCodec",
    "VlenBytesCodec",
    "VlenCodec",
    "VlenUtf8Codec",
    "ZstdCodec",
    "allow_pickle_decoding",
    "codec_from_metadata",
    "codecs_from_compressor",
    "decode_bytes_into",
    "endian_sensitive",
    "filters_from_spec",
    "get_codec_class",
    "numcodecs_adapter",
    "numcodecs_adapter_class",
    "numcodecs_from_v2_config",
    "numcodecs_kind",
    "object_codec_from_v2",
    "pickle_decoding_allowed",
    "register_codec",
    "registered_codecs",
    "unregister_codec",
    "v2_codecs",
    "v2_endian",
    "with_key",
]
