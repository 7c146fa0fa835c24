"""Zarr v2 codecs: ``.zarray`` ``compressor`` / ``filters`` entries as asyncarr codecs.

A v2 chunk is ``compressor(filters(chunk))`` where every entry is a
numcodecs config. :func:`v2_codecs` maps that onto the v3 model, which is
what the codec pipeline runs::

    [array->array filters...] + BytesCodec(byte order of the filtered items)
        + [bytes->bytes filters...] + [compressor]

Filters that zarr-python 3 treats as bytes -> bytes (e.g. ``shuffle``,
checksums, compressors used as filters) must come after every array -> array
filter, which is how they are used in practice; other orders raise
:class:`~asyncarr.codecs.CodecConfigError`. The chunk's memory order
(``.zarray`` ``order``) is carried by ``ChunkSpec.order``: the bytes codec and
the filters flatten in that order, exactly as zarr-python does.
"""

from __future__ import annotations

import sys
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from asyncarr._types import ChunkSpec
from asyncarr.abc import Codec
from asyncarr.codecs._base import CodecConfigError
from asyncarr.codecs._bytes import BytesCodec, Endian
from asyncarr.codecs._numcodecs import NumcodecsCodec, numcodecs_adapter
from asyncarr.codecs._vlen import object_codec_from_v2

__all__ = ["numcodecs_from_v2_config", "v2_codecs", "v2_endian"]


def numcodecs_from_v2_config(config: Mapping[str, Any]) -> NumcodecsCodec:
    """The adapter for one v2 ``compressor`` or ``filters`` entry.

    ``config`` is a numcodecs config (``{"id": "blosc", "cname": "lz4", ...}``).
    Its :meth:`~NumcodecsCodec.to_v2_config` gives back the numcodecs config
    to write into ``.zarray``. Raises
    :class:`~asyncarr.errors.UnknownCodecError` for ids numcodecs does not
    know and :class:`CodecConfigError` for malformed entries.
    """
    if not isinstance(config, Mapping):
        raise CodecConfigError(f"a v2 codec entry must be an object, got {config!r}")
    codec_id = config.get("id")
    if not isinstance(codec_id, str) or not codec_id:
        raise CodecConfigError(f"a v2 codec entry needs a string 'id', got {dict(config)!r}")
    rest = {k: v for k, v in config.items() if k != "id"}
    return numcodecs_adapter(codec_id, rest).as_v2()


def v2_endian(dtype: np.dtype[Any]) -> Endian | None:
    """The ``bytes`` codec byte order that stores ``dtype`` as-is."""
    order = dtype.byteorder
    if order == "|" or dtype.newbyteorder("<") == dtype.newbyteorder(">"):
        return None  # (structs too: their fields keep the byte orders the dtype gives)
    if order == "=":
        return "little" if sys.byteorder == "little" else "big"
    return "little" if order == "<" else "big"


def v2_codecs(
    *,
    compressor: Mapping[str, Any] | NumcodecsCodec | None,
    filters: Sequence[Mapping[str, Any] | NumcodecsCodec] | None,
    dtype: np.dtype[Any] | str,
    object_codec: str | None = None,
) -> list[Codec]:
    """The v3-style codec chain equivalent to a v2 ``compressor`` + ``filters``.

    ``dtype`` is the array's v2 dtype (with its byte order). Filters missing
    a dtype are completed from it, as zarr-python does. For an object array,
    ``object_codec`` is the id of the filter (or compressor) that serialises its
    elements (``vlen-utf8``, ``json2``, ...): it takes the bytes codec's place.
    """
    dtype = np.dtype(dtype)
    if object_codec is not None:
        return _object_chain(compressor, filters, dtype, object_codec)
    adapters = [
        f if isinstance(f, NumcodecsCodec) else numcodecs_from_v2_config(f) for f in filters or ()
    ]
    spec = ChunkSpec(shape=(1,), dtype=dtype, fill_value=None)
    array_filters: list[Codec] = []
    bytes_filters: list[Codec] = []
    for codec in adapters:
        codec = codec.evolve(spec)
        if codec.kind == "array_to_array":
            if bytes_filters:
                raise CodecConfigError(
                    f"v2 filter {codec.codec_name!r} works on arrays but follows a bytes filter "
                    f"({bytes_filters[-1].codec_name!r}); this filter order is not supported"
                )
            array_filters.append(codec)
            spec = codec.resolve_spec(spec)
        elif codec.kind == "bytes_to_bytes":
            bytes_filters.append(codec)
        else:
            raise CodecConfigError(
                f"v2 filter {codec.codec_name!r} serialises arrays; it cannot be a filter here"
            )
    chain: list[Codec] = [*array_filters, BytesCodec(endian=v2_endian(spec.dtype))]
    chain.extend(c.evolve(spec) for c in bytes_filters)
    if compressor is not None:
        comp = (
            compressor
            if isinstance(compressor, NumcodecsCodec)
            else numcodecs_from_v2_config(compressor)
        )
        if comp.kind != "bytes_to_bytes":
            raise CodecConfigError(f"v2 compressor {comp.codec_name!r} is not a bytes codec")
        chain.append(comp.evolve(spec))
    return chain


def _object_chain(
    compressor: Mapping[str, Any] | NumcodecsCodec | None,
    filters: Sequence[Mapping[str, Any] | NumcodecsCodec] | None,
    dtype: np.dtype[Any],
    object_codec: str,
) -> list[Codec]:
    """``[object codec] + bytes filters after it + compressor`` for a v2 object array."""
    entries = [*(filters or []), compressor]
    at = next(
        (
            i
            for i, f in enumerate(entries)
            if isinstance(f, Mapping) and f.get("id") == object_codec
        ),
        None,
    )
    if at is None:
        raise CodecConfigError(f"the object codec {object_codec!r} is not among the filters")
    if at > 0:
        raise CodecConfigError(
            f"v2 filters before the object codec {object_codec!r} are not supported: "
            f"{[f.get('id') if isinstance(f, Mapping) else f for f in entries[:at]]}"
        )
    object_entry = entries[at]
    assert isinstance(object_entry, Mapping)
    spec = ChunkSpec(shape=(1,), dtype=dtype, fill_value=None)
    chain: list[Codec] = [object_codec_from_v2(dict(object_entry))]
    for entry in entries[at + 1 :]:
        if entry is None:
            continue
        codec = entry if isinstance(entry, NumcodecsCodec) else numcodecs_from_v2_config(entry)
        if codec.kind != "bytes_to_bytes":
            raise CodecConfigError(
                f"v2 filter {codec.codec_name!r} after the object codec {object_codec!r} must "
                "work on bytes"
            )
        chain.append(codec.evolve(spec))
    return chain
