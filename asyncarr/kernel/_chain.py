"""Which codec chains the native kernel runs, and their description for it.

A chain is described once per array (or once per shard's inner chunks): the chunk's
shape and data type, where each decoded axis lies in the stored bytes (C or F order,
after any ``transpose`` codecs), the stored byte order, the one compressor and its
settings, and the fill value. Anything else is refused with the reason, and the
caller takes the Python path for that array.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from asyncarr._types import ChunkSpec
from asyncarr.abc import ArrayArrayCodec, ArrayBytesCodec, BytesBytesCodec, Codec
from asyncarr.codecs import (
    BloscCodec,
    BytesCodec,
    GzipCodec,
    NumcodecsBytesBytesCodec,
    TransposeCodec,
    ZstdCodec,
)
from asyncarr.kernel._loader import native

__all__ = ["KernelChain", "Refused", "chain_for"]

RAW, ZSTD, BLOSC, LZ4, GZIP, ZLIB = range(6)
"""The kernel's codec numbers (``enum ak_codec`` in ``csrc/kernel.h``)."""

_FILL_BITS, _FILL_FLOAT, _FILL_COMPLEX = range(3)
_SHUFFLES = {"noshuffle": 0, "shuffle": 1, "bitshuffle": 2}
_AUTOSHUFFLE = -1
_MAX_NDIM = 32
_ENCODED_SLACK = 1 << 20
"""Encoded chunks (whole files or shard ranges) may be up to twice their decoded size
plus this much; anything larger is refused as corrupt before it is read, so a lying
shard index or a stray huge file cannot make the kernel allocate without bound. Every
codec here encodes a chunk in far less (zstd, lz4, blosc and deflate add at most a
fraction of a percent plus a few bytes)."""


@dataclass(frozen=True)
class Refused:
    """The kernel cannot run this chain; ``reason`` says why (for logs and docs)."""

    reason: str


@dataclass(frozen=True, eq=False)
class KernelChain:
    """A codec chain the kernel runs, with everything it needs precomputed.

    ``dtype`` is the data type of the arrays the kernel reads into and writes from (the
    array's own); ``stored`` is how the items are stored. ``codec`` is the chain's
    compressor (or its ``bytes`` codec): errors name it, as the Python path's do.
    Picklable (it is rebuilt from its parameters).
    """

    spec: ChunkSpec
    stored: np.dtype[Any]
    codec: Codec
    params: tuple[Any, ...]
    description: str
    _capsule: Any = field(default=None, repr=False, compare=False)

    def __post_init__(self) -> None:
        if self._capsule is None:
            object.__setattr__(self, "_capsule", native().make_chain(*self.params))

    @property
    def dtype(self) -> np.dtype[Any]:
        """The data type of the arrays read into and written from."""
        return self.spec.dtype

    @property
    def shape(self) -> tuple[int, ...]:
        """The chunk shape."""
        return self.spec.shape

    @property
    def capsule(self) -> Any:
        """The native description (for ``asyncarr.kernel._batch``)."""
        return self._capsule

    def __reduce__(self) -> tuple[Any, ...]:
        return (KernelChain, (self.spec, self.stored, self.codec, self.params, self.description))


def chain_for(codecs: Sequence[Codec], spec: ChunkSpec) -> KernelChain | Refused:
    """The kernel's description of the chain ``codecs`` (evolved for ``spec``, as a codec
    pipeline holds them) for chunks of ``spec``, or why it cannot run it.

    The kernel runs: any number of ``transpose`` codecs, then ``bytes`` (either byte
    order), then at most one of ``zstd``, ``blosc``, ``gzip`` and their numcodecs
    twins, or numcodecs ``zstd``, ``blosc``, ``lz4``, ``gzip``, ``zlib``; for booleans,
    integers, floats and complex numbers (not ``longdouble``), in C or F order, with a
    fill value (not a v2 ``null`` fill value for integers).
    """
    try:
        native()
    except ImportError as exc:
        return Refused(f"the native kernel is not available: {exc}")
    dtype = spec.dtype
    why = _refuse_dtype(dtype, spec)
    if why:
        return Refused(why)
    perm = list(range(len(spec.shape)))
    shape = spec.shape
    rest = list(codecs)
    while rest and isinstance(rest[0], ArrayArrayCodec):
        aa = rest.pop(0)
        if not isinstance(aa, TransposeCodec):
            return Refused(f"the array -> array codec {aa.codec_name!r} runs in Python only")
        perm = [perm[i] for i in aa.order]
        shape = tuple(shape[i] for i in aa.order)
    bytes_codec = rest.pop(0) if rest else None
    if not isinstance(bytes_codec, BytesCodec):
        name = bytes_codec.codec_name if bytes_codec is not None else "none"
        return Refused(f"the array -> bytes codec {name!r} runs in Python only")
    if any(isinstance(c, ArrayArrayCodec | ArrayBytesCodec) for c in rest):
        return Refused("array codecs after the bytes codec")
    if len(rest) > 1:
        return Refused(f"{len(rest)} bytes -> bytes codecs (the kernel runs one)")
    stored = _stored_dtype(bytes_codec, dtype)
    compressor = _compressor(rest[0], stored) if rest else (RAW, 0, 0, 0, 0, 0, "")
    if isinstance(compressor, Refused):
        return compressor
    strides = _strides(shape, stored.itemsize, spec.order, perm)
    fills = _fills(spec, stored)
    if isinstance(fills, Refused):
        return fills
    swap = 0
    if stored != dtype and dtype.itemsize > 1:
        swap = dtype.itemsize // 2 if dtype.kind == "c" else dtype.itemsize
    nbytes = spec.nbytes
    limit = nbytes if compressor[0] == RAW else 2 * nbytes + _ENCODED_SLACK
    kind = {"f": _FILL_FLOAT, "c": _FILL_COMPLEX}.get(dtype.kind, _FILL_BITS)
    params = (
        *compressor,
        tuple(spec.shape),
        strides,
        dtype.itemsize,
        swap,
        kind,
        int(stored.isnative or stored.itemsize == 1),
        *fills,
        limit,
    )
    label = rest[0] if rest else bytes_codec
    described = " -> ".join(c.codec_name for c in codecs)
    return KernelChain(spec, stored, label, params, f"{described} ({dtype.str}, {spec.shape})")


def _refuse_dtype(dtype: np.dtype[Any], spec: ChunkSpec) -> str | None:
    if dtype.kind not in "biufc" or dtype.fields is not None or dtype.subdtype is not None:
        return f"data type {dtype} runs in Python only"
    if dtype.kind in "fc" and dtype.itemsize // (2 if dtype.kind == "c" else 1) not in (2, 4, 8):
        return f"data type {dtype} (extended precision) runs in Python only"
    if len(spec.shape) > _MAX_NDIM:
        return f"{len(spec.shape)} dimensions (the kernel takes up to {_MAX_NDIM})"
    if spec.order not in ("C", "F"):
        return f"memory order {spec.order!r}"
    return None


def _stored_dtype(codec: BytesCodec, dtype: np.dtype[Any]) -> np.dtype[Any]:
    if codec.endian is None or dtype.itemsize == 1:
        return dtype
    return dtype.newbyteorder("<" if codec.endian == "little" else ">")


def _strides(shape: tuple[int, ...], itemsize: int, order: str, perm: list[int]) -> tuple[int, ...]:
    """Byte strides of each decoded axis in the stored layout: the bytes codec lays the
    (transposed) chunk of ``shape`` out in ``order``; encoded axis ``i`` is decoded axis
    ``perm[i]``."""
    encoded = [0] * len(shape)
    step = itemsize
    axes = range(len(shape)) if order == "F" else reversed(range(len(shape)))
    for i in axes:
        encoded[i] = step
        step *= shape[i]
    decoded = [0] * len(shape)
    for i, axis in enumerate(perm):
        decoded[axis] = encoded[i]
    return tuple(decoded)


def _compressor(codec: Codec, stored: np.dtype[Any]) -> tuple[Any, ...] | Refused:
    """``(codec number, level, checksum, shuffle, typesize, blocksize, cname)``."""
    if not isinstance(codec, BytesBytesCodec):
        return Refused(f"codec {codec.codec_name!r} runs in Python only")
    if isinstance(codec, ZstdCodec):
        return (ZSTD, codec.level, int(codec.checksum), 0, 0, 0, "")
    if isinstance(codec, BloscCodec):
        return (
            BLOSC,
            codec.clevel,
            0,
            _SHUFFLES[codec.shuffle],
            codec.typesize,
            codec.blocksize,
            codec.cname,
        )
    if isinstance(codec, GzipCodec):
        return (GZIP, codec.level, 0, 0, 0, 0, "")
    if isinstance(codec, NumcodecsBytesBytesCodec):
        return _numcodecs_compressor(codec, stored)
    return Refused(f"codec {codec.codec_name!r} runs in Python only")


def _numcodecs_compressor(
    codec: NumcodecsBytesBytesCodec, stored: np.dtype[Any]
) -> tuple[Any, ...] | Refused:
    nc = codec.numcodecs_codec
    cid = codec.codec_id
    if cid == "zstd":
        return (ZSTD, int(nc.level), int(bool(getattr(nc, "checksum", False))), 0, 0, 0, "")
    if cid == "lz4":
        return (LZ4, int(nc.acceleration), 0, 0, 0, 0, "")
    if cid == "zlib":
        return (ZLIB, int(nc.level), 0, 0, 0, 0, "")
    if cid == "gzip":
        return (GZIP, int(nc.level), 0, 0, 0, 0, "")
    if cid == "blosc":
        # as numcodecs.Blosc.encode: the item size of what it is given (the chunk's items
        # for v2 arrays, bytes otherwise) unless a typesize is configured
        typesize = getattr(nc, "_typesize", None)
        if not isinstance(typesize, int):
            typesize = stored.itemsize if codec.typed_input and stored.itemsize > 1 else 1
        shuffle = int(nc.shuffle)
        if shuffle == _AUTOSHUFFLE:
            shuffle = 2 if typesize == 1 else 1
        if shuffle not in (0, 1, 2) or not isinstance(nc.cname, str):
            return Refused(f"numcodecs blosc configuration {codec.to_config()!r}")
        return (BLOSC, int(nc.clevel), 0, shuffle, typesize, int(nc.blocksize), nc.cname)
    return Refused(f"codec {codec.codec_name!r} runs in Python only")


def _fills(spec: ChunkSpec, stored: np.dtype[Any]) -> tuple[bytes, bytes, bytes] | Refused:
    """The fill value as the Python path uses it: assigned into the output for a missing
    chunk, ``np.full`` for the padding of an edge chunk (stored byte order), and what
    "all fill value" compares with (``None`` compares as 0)."""
    dtype = spec.dtype
    value = spec.fill_value
    try:
        out = np.empty((), dtype=dtype)
        out[()] = value
        padding = np.full((), value, dtype=dtype).astype(stored)
        compare = np.asarray(0 if value is None else value).astype(dtype).astype(stored)
    except (TypeError, ValueError, OverflowError) as exc:
        return Refused(f"fill value {value!r} for {dtype}: {exc}")
    if math.prod(out.shape) != 1:
        return Refused(f"fill value {value!r} is not a scalar")
    return out.tobytes(), padding.tobytes(), compare.tobytes()
