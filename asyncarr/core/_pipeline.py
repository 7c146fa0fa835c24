"""The codec pipeline: one chunk's codec chain with every stage's spec precomputed.

Everything here is synchronous CPU work and picklable, so the runtime can
run it in threads or worker processes.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from typing import Any

import numpy as np

from asyncarr._types import ChunkSpec
from asyncarr.abc import ArrayArrayCodec, ArrayBytesCodec, BytesBytesCodec, Codec, NDArray
from asyncarr.errors import AsyncarrError, CodecError

__all__ = ["VARIABLE_CHUNK_MAX_BYTES", "CodecPipeline", "build_chain_specs"]

_BOMB_SLACK = 1 << 16

BATCH_DECODE_MAX_BYTES = 64 << 10
"""Largest decoded chunk that a read batches for one codec call (zstd's
``decode_exact_many``). Larger chunks gain nothing from it, and holding a whole batch of
their encoded bytes costs: buffers over glibc's 128 KiB mmap threshold come back as
fresh pages for every batch (a 256 KiB blosc chunk read and decoded in 338 us of CPU
that way, against 192 when each chunk is decoded as soon as it is read)."""


VARIABLE_CHUNK_MAX_BYTES = 1 << 31
"""The most bytes one chunk of variable-length elements (strings, byte strings, objects)
may take, stored or decoded (their size is not known from the metadata): a larger one is
refused as corrupt or hostile, not read or inflated. Split bigger data into more chunks."""

SHAPES_KEPT = 256
"""Pipelines for other chunk shapes that one pipeline keeps (:meth:`CodecPipeline.for_shape`)."""


def build_chain_specs(
    codecs: Sequence[Codec], spec: ChunkSpec
) -> tuple[list[Codec], list[ChunkSpec]]:
    """Evolve each codec for the spec it sees; return codecs and their input specs."""
    evolved: list[Codec] = []
    specs: list[ChunkSpec] = []
    for codec in codecs:
        codec = codec.evolve(spec)
        codec.validate(spec)
        evolved.append(codec)
        specs.append(spec)
        if isinstance(codec, ArrayArrayCodec):
            spec = codec.resolve_spec(spec)
    return evolved, specs


class CodecPipeline:
    """Encode/decode chunks of one array (or one shard's inner chunks)."""

    def __init__(self, codecs: Sequence[Codec], spec: ChunkSpec) -> None:
        evolved, specs = build_chain_specs(codecs, spec)
        self.source_codecs = tuple(codecs)
        """The codecs as the metadata gives them (before :func:`build_chain_specs`)."""
        self._by_shape: dict[tuple[int, ...], CodecPipeline] = {}
        self.spec = spec
        self.codecs = tuple(evolved)
        self.aa: list[tuple[ArrayArrayCodec, ChunkSpec]] = [
            (c, s) for c, s in zip(evolved, specs) if isinstance(c, ArrayArrayCodec)
        ]
        ab = [(c, s) for c, s in zip(evolved, specs) if isinstance(c, ArrayBytesCodec)]
        if len(ab) != 1:
            raise CodecError(f"a codec chain needs exactly one array->bytes codec, got {len(ab)}")
        self.ab, self.ab_spec = ab[0]
        self.bb: list[tuple[BytesBytesCodec, ChunkSpec]] = [
            (c, s) for c, s in zip(evolved, specs) if isinstance(c, BytesBytesCodec)
        ]
        self.releases_gil = all(getattr(c, "releases_gil", True) for c in evolved)
        self._fixed_size = self.ab.codec_name == "bytes"
        # Fast path: [bytes] or [bytes, one bytes->bytes codec], decoded straight
        # into the caller's buffer (or a reused per-thread scratch buffer).
        endian = self.ab.to_config().get("endian")
        self._stored = (
            self.ab_spec.dtype
            if endian is None or self.ab_spec.dtype.itemsize == 1
            else self.ab_spec.dtype.newbyteorder("<" if endian == "little" else ">")
        )
        bb0 = self.bb[0][0] if len(self.bb) == 1 else None
        self._exact = (
            getattr(bb0, "decode_exact", None)
            if self.ab_spec.nbytes < getattr(bb0, "decode_exact_below", 1 << 62)
            else None
        )
        self._exact_many = (
            getattr(self.bb[0][0], "decode_exact_many", None) if len(self.bb) == 1 else None
        )
        self.decodes_in_batches = (
            self._exact_many is not None and self.ab_spec.nbytes <= BATCH_DECODE_MAX_BYTES
        )
        """Whether whole chunks are best decoded a batch at a time (one call into the codec
        for many small chunks: :meth:`decode_many_into`) rather than each as it is read."""
        self._objects_into = (
            not self.aa
            and getattr(self.ab, "variable_length", False)
            and hasattr(self.ab, "decode_into")
        )
        """Chunks of variable-length elements decode straight into the output (their
        strings converted once, in place)."""
        self._into = (
            not self.aa
            and self._fixed_size
            and spec.order == "C"
            and getattr(self.ab, "supports_decode_into", False)
            and len(self.bb) <= 1
            and all(getattr(c, "supports_decode_into", False) for c, _ in self.bb)
        )

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "_by_shape": {}}  # rebuilt where used

    def for_shape(self, shape: tuple[int, ...] | None) -> CodecPipeline:
        """This pipeline for chunks of ``shape`` (a rectilinear grid's chunks differ in
        shape); ``None`` or this pipeline's own shape: itself. Built once per shape and
        kept (up to :data:`SHAPES_KEPT` shapes)."""
        if shape is None or shape == self.spec.shape:
            return self
        found = self._by_shape.get(shape)
        if found is None:
            if len(self._by_shape) >= SHAPES_KEPT:
                self._by_shape.clear()
            found = CodecPipeline(self.source_codecs, self.spec.with_(shape=shape))
            self._by_shape[shape] = found
        return found

    @property
    def encoded_bound(self) -> int | None:
        """The most bytes a stored chunk of this pipeline can be: what reads ask stores for
        at most, so a broken or hostile server's endless or huge body is refused, not read.
        Each codec's own :meth:`~asyncarr.abc.Codec.max_encoded_size`, or, for codecs that
        give none, a generous allowance (compressors expand incompressible data by 12.5 %
        at worst); for variable-length elements :data:`VARIABLE_CHUNK_MAX_BYTES`. ``None``
        (no bound) only for an object array's serialiser that states none."""
        found = self.__dict__.get("_encoded_bound", ())
        if found != ():
            return found  # type: ignore[no-any-return]
        bound: int | None = None
        dtype = self.ab_spec.dtype
        nbytes = self.ab_spec.nbytes
        if getattr(self.ab, "variable_length", False):
            bound = VARIABLE_CHUNK_MAX_BYTES
        elif (n := self.ab.max_encoded_size(nbytes)) is not None:  # (shards: their inner)
            bound = n
        elif not dtype.hasobject:  # (objects' sizes are not their slots')
            bound = _allowance(nbytes)
        if bound is not None:
            for codec, _spec in self.bb:
                n = codec.max_encoded_size(bound)
                bound = _allowance(bound) if n is None else n
        self.__dict__["_encoded_bound"] = bound
        return bound

    @property
    def decoded_bound(self) -> int | None:
        """An upper bound for intermediate decoded bytes (decompression-bomb guard)."""
        if getattr(self.ab, "variable_length", False):
            return VARIABLE_CHUNK_MAX_BYTES
        if not self._fixed_size:
            return None
        n = self.ab_spec.nbytes
        return n + max(_BOMB_SLACK, n // 8)

    def encode(self, chunk: NDArray, *, key: str | None = None) -> bytes:
        spec = self.spec
        if chunk.shape != spec.shape:
            raise CodecError(f"chunk has shape {chunk.shape}, expected {spec.shape}", key=key)
        data: Any = chunk
        try:
            for aa, s in self.aa:
                data = aa.encode(data, s)
            out: Any = self.ab.encode(data, self.ab_spec)
            for bb, s in self.bb:
                out = bb.encode(out, s)
        except CodecError as exc:
            _add_key(exc, key)
            raise
        except AsyncarrError:
            raise
        except Exception as exc:
            raise CodecError(f"encoding failed: {exc!r}", key=key) from exc
        return bytes(out) if not isinstance(out, bytes) else out

    def decode(self, data: bytes | memoryview, *, key: str | None = None) -> NDArray:
        """Decode one chunk; the result has exactly ``spec.shape`` and ``spec.dtype``."""
        try:
            buf: Any = data
            bound = self.decoded_bound
            for bb, s in reversed(self.bb):
                buf = bb.decode(buf, s, bound)
            arr = self.ab.decode(buf, self.ab_spec)
            for aa, s in reversed(self.aa):
                arr = aa.decode(arr, s)
        except CodecError as exc:
            _add_key(exc, key)
            raise
        except AsyncarrError:
            raise
        except Exception as exc:
            raise CodecError(f"decoding failed: {exc!r}", key=key) from exc
        if arr.shape != self.spec.shape or arr.dtype != self.spec.dtype:
            raise CodecError(
                f"chunk decoded to shape {arr.shape} of {arr.dtype}, expected "
                f"{self.spec.shape} of {self.spec.dtype}",
                key=key,
            )
        return arr

    def decode_into(
        self, data: bytes | memoryview, out: NDArray, *, key: str | None = None
    ) -> None:
        """Decode one whole chunk into ``out`` (``spec.shape``, any strides, e.g. a view
        into the read's output array), without an intermediate array where the chain allows."""
        if self._objects_into and out.shape == self.spec.shape:
            self._decode_objects_into(data, out, key)
            return
        if not self._into or out.shape != self.spec.shape:
            out[...] = self.decode(data, key=key)
            return
        try:
            if not self.bb:
                self.ab.decode_into(data, out, self.ab_spec)  # type: ignore[attr-defined]
                return
            codec, s = self.bb[0]
            nbytes = self.ab_spec.nbytes
            if out.flags.c_contiguous and out.dtype == self._stored:
                codec.decode_into(data, out.reshape(-1).view(np.uint8), s)  # type: ignore[attr-defined]
                return
            if self._exact is not None:  # one exact-size decode, then one copy into place
                raw = self._exact(data, nbytes)
            else:
                raw = _scratch(nbytes)
                codec.decode_into(data, raw, s)  # type: ignore[attr-defined]
            out[...] = np.frombuffer(raw, dtype=self._stored).reshape(self.ab_spec.shape)
        except CodecError as exc:
            _add_key(exc, key)
            raise
        except AsyncarrError:
            raise
        except Exception as exc:
            raise CodecError(f"decoding failed: {exc!r}", key=key) from exc

    def _decode_objects_into(self, data: bytes | memoryview, out: NDArray, key: str | None) -> None:
        try:
            buf: Any = data
            bound = self.decoded_bound
            for bb, s in reversed(self.bb):
                buf = bb.decode(buf, s, bound)
            self.ab.decode_into(buf, out, self.ab_spec)  # type: ignore[attr-defined]
        except CodecError as exc:
            _add_key(exc, key)
            raise
        except AsyncarrError:
            raise
        except Exception as exc:
            raise CodecError(f"decoding failed: {exc!r}", key=key) from exc

    def decode_many_into(
        self, datas: list[bytes | memoryview], outs: list[NDArray], keys: list[str]
    ) -> None:
        """:meth:`decode_into` for several whole chunks; one call into the codec where it
        can decode a batch (zstd: the GIL is released once, not once per chunk)."""
        if self._into and self._exact_many is not None and len(datas) > 1:
            try:
                segments = self._exact_many(datas, self.ab_spec.nbytes)
            except Exception:  # the per-chunk path below reports it with the key
                segments = None
            if segments is not None:
                shape, stored = self.ab_spec.shape, self._stored
                for segment, out in zip(segments, outs, strict=True):
                    out[...] = np.frombuffer(segment, dtype=stored).reshape(shape)
                return
        for data, out, key in zip(datas, outs, keys, strict=True):
            self.decode_into(data, out, key=key)

    def is_fill(self, chunk: NDArray) -> bool:
        """Whether every element equals the fill value (NaN-aware)."""
        return chunk_equals_fill(chunk, self.spec.fill_value)


def _add_key(exc: CodecError, key: str | None) -> None:
    """Name the store key in a codec error raised without one."""
    if key is not None and exc.key is None:
        exc.key = key
        exc.args = (f"{exc.args[0]} (key={key!r})", *exc.args[1:])


_tls = threading.local()


def thread_buffer(slot: str, nbytes: int, *, keep_up_to: int | None = None) -> memoryview:
    """A per-thread buffer of exactly ``nbytes``, reused between calls with the same
    ``slot`` (no fresh memory to allocate and fault in per chunk). A buffer larger than
    ``keep_up_to`` is handed out once and not kept. Each slot's contents last until the
    next call for that slot in the same thread."""
    buf: bytearray | None = getattr(_tls, slot, None)
    if buf is None or len(buf) < nbytes:
        buf = bytearray(nbytes)
        if keep_up_to is None or nbytes <= keep_up_to:
            setattr(_tls, slot, buf)
    return memoryview(buf)[:nbytes]


def _allowance(nbytes: int) -> int:
    """The most bytes a codec without a declared bound may turn ``nbytes`` into."""
    return nbytes + nbytes // 2 + (64 << 10)


def _scratch(nbytes: int) -> memoryview:
    """The decode scratch buffer (:func:`thread_buffer`)."""
    return thread_buffer("scratch", nbytes)


def chunk_equals_fill(chunk: NDArray, fill_value: Any) -> bool:
    """Whether every element equals ``fill_value`` (NaN matches NaN, NaT matches NaT)."""
    kind = chunk.dtype.kind
    if chunk.dtype.hasobject:  # strings, bytes, other objects
        return _objects_equal(chunk, fill_value)
    if fill_value is None:
        fill_value = 0
    if kind in "SUVMm":  # text, bytes, structs, times: compare the stored bytes
        return _bytes_equal(chunk, fill_value)
    if kind == "c":
        # each part on its own, NaN matching NaN: a complex NaN fill such as 1+nanj must
        # neither match nan+nanj nor miss itself (== is false whenever a part is NaN)
        fv = np.asarray(fill_value, dtype=chunk.dtype)
        return _equals_nan_aware(chunk.real, fv.real) and _equals_nan_aware(chunk.imag, fv.imag)
    if chunk.size:  # cheap early exit for the usual case: real data in the chunk
        first = chunk[(0,) * chunk.ndim]  # (.flat stops at 32 dimensions)
        if first != fill_value and not (first != first and fill_value != fill_value):
            return False
    if kind == "f":
        return _equals_nan_aware(chunk, np.asarray(fill_value, dtype=chunk.dtype))
    return bool(np.all(chunk == fill_value))


def _bytes_equal(chunk: NDArray, fill_value: Any) -> bool:
    """Whether every item's bytes are the fill value's (NaT equal to NaT, a struct's NaN
    field to the same NaN)."""
    item = chunk.dtype.itemsize
    if not chunk.size or not item:
        return True
    fill = np.frombuffer(np.asarray(fill_value, dtype=chunk.dtype).tobytes(), np.uint8)
    rows = np.ascontiguousarray(chunk).reshape(-1).view(np.uint8).reshape(-1, item)
    if not np.array_equal(rows[0], fill):
        return False
    return bool((rows == fill).all())


def _objects_equal(chunk: NDArray, fill_value: Any) -> bool:
    """Whether every element of an object (or ``StringDType``) chunk equals the fill."""
    if fill_value is None:
        return all(v is None for v in chunk.flat)
    if chunk.dtype.kind == "T" or isinstance(fill_value, str | bytes):
        try:  # strings or byte strings: compared in one numpy call
            return bool(np.all(chunk == fill_value))
        except (TypeError, ValueError):  # elements without a plain == (arrays)
            pass
    if chunk.size and not _same_object(chunk.flat[0], fill_value):
        return False
    return all(_same_object(v, fill_value) for v in chunk.flat)


def _same_object(value: Any, fill_value: Any) -> bool:
    try:
        return type(value) is type(fill_value) and bool(value == fill_value)
    except (TypeError, ValueError):  # arrays, objects without a plain ==
        return False


def _equals_nan_aware(values: NDArray, fill: NDArray) -> bool:
    """Whether every element of the real array ``values`` equals the scalar ``fill``
    (NaN equal to NaN)."""
    first = values[(0,) * values.ndim] if values.size else None
    if first is not None and first != fill and not (np.isnan(fill) and first != first):
        return False
    if np.isnan(fill):
        return bool(np.all(np.isnan(values)))
    return bool(np.all(values == fill))
