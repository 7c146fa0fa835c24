"""The ``sharding_indexed`` codec: many inner chunks stored in one object.

A shard is the concatenation of its encoded inner chunks plus an index of
``(offset, nbytes)`` pairs (``2**64-1`` for missing inner chunks), encoded
with ``index_codecs`` and placed at the start or end. Readers fetch the
index and then only the byte ranges of the inner chunks they need
(see :mod:`asyncarr.core._read`); this module does the CPU work.
"""

from __future__ import annotations

import itertools
import math
import threading
from collections.abc import Iterable, Mapping
from typing import Any, ClassVar, Literal, Self

import numpy as np

from asyncarr._types import ByteRange, ChunkSpec, RangeRequest, SuffixRange
from asyncarr.abc import ArrayBytesCodec, Codec, NDArray
from asyncarr.core._pipeline import CodecPipeline
from asyncarr.errors import CodecError, MetadataError

__all__ = ["MISSING", "ShardingCodec"]

MISSING = np.uint64(2**64 - 1)

INDEX_MEMO_BYTES = 16 << 20
"""Most memory one sharded array's memo of decoded shard indexes holds (raw and decoded
bytes together); the oldest entries go first. See :meth:`ShardingCodec.decode_index`."""


def _codec_list(value: object, what: str) -> list[Codec]:
    from asyncarr.codecs import codec_from_metadata

    if not isinstance(value, list):
        raise MetadataError(f"sharding_indexed {what} must be a list, got {value!r}")
    return [v if isinstance(v, Codec) else codec_from_metadata(v) for v in value]


INDEX_PROBE_MAX_BYTES = 64 * 1024 * 1024
"""Largest shard index sized by encoding an empty one (index codecs other than ``bytes``
and ``crc32c``, whose size is known without encoding)."""


def _encoded_index_size(index: CodecPipeline) -> int:
    """The encoded size of a shard index (the spec requires index codecs of fixed size).

    ``bytes`` plus any number of ``crc32c`` (what every implementation writes) is worked
    out: 16 bytes per inner chunk, 4 per checksum. That needs no memory, so an array with
    millions of inner chunks per shard opens at once. Other chains encode an empty index,
    up to :data:`INDEX_PROBE_MAX_BYTES`."""
    spec = index.spec
    fixed = index.ab.codec_name == "bytes" and not index.aa
    if fixed and all(c.codec_name == "crc32c" for c, _ in index.bb):
        return spec.nbytes + 4 * len(index.bb)
    if spec.nbytes > INDEX_PROBE_MAX_BYTES:
        codecs = [c.codec_name for c, _ in index.aa] + [index.ab.codec_name]
        codecs += [c.codec_name for c, _ in index.bb]
        raise MetadataError(
            f"a shard index of {spec.nbytes} bytes with index codecs {codecs}: its encoded "
            f"size is only worked out for 'bytes' and 'crc32c' (other chains are sized by "
            f"encoding an empty index, up to {INDEX_PROBE_MAX_BYTES} bytes)"
        )
    probe = np.full(spec.shape, MISSING, dtype=np.uint64)
    return len(index.encode(probe))


class ShardingCodec(ArrayBytesCodec):
    """Zarr v3 ``sharding_indexed``."""

    codec_name: ClassVar[str] = "sharding_indexed"

    def __init__(
        self,
        *,
        chunk_shape: tuple[int, ...],
        codecs: list[Codec] | None = None,
        index_codecs: list[Codec] | None = None,
        index_location: Literal["start", "end"] = "end",
    ) -> None:
        from asyncarr.codecs import codec_from_metadata

        if index_location not in ("start", "end"):
            raise MetadataError(f"index_location must be 'start' or 'end', got {index_location!r}")
        if not chunk_shape or any(not isinstance(c, int) or c <= 0 for c in chunk_shape):
            raise MetadataError(
                f"sharding chunk_shape must be positive integers, got {chunk_shape!r}"
            )
        self.chunk_shape = tuple(int(c) for c in chunk_shape)
        self.inner_codecs = (
            list(codecs)
            if codecs
            else [codec_from_metadata({"name": "bytes", "configuration": {"endian": "little"}})]
        )
        self.index_codecs = (
            list(index_codecs)
            if index_codecs
            else [
                codec_from_metadata({"name": "bytes", "configuration": {"endian": "little"}}),
                codec_from_metadata({"name": "crc32c"}),
            ]
        )
        self.index_location: Literal["start", "end"] = index_location
        self._inner: CodecPipeline | None = None
        self._index: CodecPipeline | None = None
        self._index_size: int | None = None
        self._shard_shape: tuple[int, ...] | None = None
        self._memo: dict[bytes, tuple[NDArray, int]] = {}
        self._memo_bytes = 0
        self._memo_lock = threading.Lock()

    def __getstate__(self) -> dict[str, Any]:
        """Pickled (to worker processes) without the index memo or its lock."""
        state = self.__dict__.copy()
        state.update(_memo={}, _memo_bytes=0, _memo_lock=None)
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._memo_lock = threading.Lock()

    # -- metadata ---------------------------------------------------------------------------
    @classmethod
    def from_config(cls, configuration: dict[str, Any]) -> Self:
        if not isinstance(configuration, dict) or "chunk_shape" not in configuration:
            raise MetadataError(
                f"sharding_indexed needs a configuration with chunk_shape: {configuration!r}"
            )
        shape = configuration["chunk_shape"]
        if not isinstance(shape, list):
            raise MetadataError(f"sharding chunk_shape must be a list, got {shape!r}")
        return cls(
            chunk_shape=tuple(shape),
            codecs=_codec_list(configuration.get("codecs", []), "codecs"),
            index_codecs=_codec_list(configuration.get("index_codecs", []), "index_codecs"),
            index_location=configuration.get("index_location", "end"),
        )

    def to_config(self) -> dict[str, Any]:
        return {
            "chunk_shape": list(self.chunk_shape),
            "codecs": [c.to_metadata() for c in self.inner_codecs],
            "index_codecs": [c.to_metadata() for c in self.index_codecs],
            "index_location": self.index_location,
        }

    @property
    def releases_gil(self) -> bool:  # type: ignore[override]
        return all(getattr(c, "releases_gil", True) for c in self.inner_codecs)

    def evolve(self, spec: ChunkSpec) -> Self:
        if self._shard_shape == spec.shape:
            return self
        new = type(self)(
            chunk_shape=self.chunk_shape,
            codecs=self.inner_codecs,
            index_codecs=self.index_codecs,
            index_location=self.index_location,
        )
        new._setup(spec)
        return new

    def validate(self, spec: ChunkSpec) -> None:
        if len(spec.shape) != len(self.chunk_shape):
            raise MetadataError(
                f"sharding chunk_shape {list(self.chunk_shape)} does not match the "
                f"{len(spec.shape)}-d shard shape {list(spec.shape)}"
            )
        if len(spec.shape) >= 64:  # the index is an array of one more dimension
            raise MetadataError(
                f"sharded arrays have at most 63 dimensions (numpy's 64, less the shard "
                f"index's own), got {len(spec.shape)}"
            )
        if any(s % c for s, c in zip(spec.shape, self.chunk_shape, strict=True)):
            raise MetadataError(
                f"shard shape {list(spec.shape)} is not a multiple of the inner chunk shape "
                f"{list(self.chunk_shape)}"
            )

    def _setup(self, spec: ChunkSpec) -> None:
        self.validate(spec)
        self._shard_shape = spec.shape
        inner_spec = spec.with_(shape=self.chunk_shape)
        self._inner = CodecPipeline(self.inner_codecs, inner_spec)
        grid = self.inner_grid
        index_spec = ChunkSpec((*grid, 2), np.dtype("uint64"), MISSING)
        self._index = CodecPipeline(self.index_codecs, index_spec)
        self._index_size = _encoded_index_size(self._index)

    # -- geometry ------------------------------------------------------------------------------
    @property
    def inner(self) -> CodecPipeline:
        assert self._inner is not None, "ShardingCodec used before evolve(spec)"
        return self._inner

    @property
    def inner_grid(self) -> tuple[int, ...]:
        assert self._shard_shape is not None
        return tuple(s // c for s, c in zip(self._shard_shape, self.chunk_shape, strict=True))

    @property
    def index_size(self) -> int:
        assert self._index_size is not None
        return self._index_size

    def max_encoded_size(self, input_size: int) -> int | None:
        """A shard at most: every inner chunk at its bound, and the index."""
        inner = self.inner.encoded_bound
        return None if inner is None else self.n_inner() * inner + self.index_size

    def index_range(self) -> RangeRequest:
        if self.index_location == "end":
            return SuffixRange(self.index_size)
        return ByteRange(0, self.index_size)

    def decode_index(
        self, data: bytes | memoryview, *, shard_size: int | None = None, key: str | None = None
    ) -> NDArray:
        """Decode and validate a shard index (read-only); corrupt indexes raise CodecError.

        Decoded indexes are remembered by their raw bytes (up to :data:`INDEX_MEMO_BYTES`
        per array), so reading many inner chunks of the same shards, one at a time, checks
        each index once. Keyed by content, a memo entry can never be stale.
        """
        if len(data) != self.index_size:
            raise CodecError(
                f"shard index is {len(data)} bytes, expected {self.index_size}",
                key=key,
                codec="sharding_indexed",
            )
        raw = bytes(data)
        found = self._memo.get(raw)
        if found is None:
            found = self._decode_index(raw, key)
            self._remember(raw, found)
        index, end = found
        if shard_size is not None and end > shard_size:
            raise CodecError(
                f"corrupt shard index: an inner chunk ends at byte {end} of a "
                f"{shard_size}-byte shard",
                key=key,
                codec="sharding_indexed",
            )
        return index

    def _decode_index(self, raw: bytes, key: str | None) -> tuple[NDArray, int]:
        """The decoded index and where its last inner chunk ends."""
        assert self._index is not None
        index = self._index.decode(raw, key=key)
        index.flags.writeable = False
        flat = index.reshape(-1, 2)
        offsets, sizes = flat[:, 0], flat[:, 1]
        absent = offsets == MISSING
        if (absent != (sizes == MISSING)).any():
            raise CodecError(
                "corrupt shard index: half-missing entry", key=key, codec="sharding_indexed"
            )
        # uint64 sums wrap around on overflow (then end < offset): checked so, not with
        # Python integers (an object array cost ~90 us per index of 64 entries).
        ends = offsets + sizes
        if absent.any():
            present = ~absent
            offsets, ends = offsets[present], ends[present]
        if (ends < offsets).any():
            raise CodecError(
                "corrupt shard index: an inner chunk's end overflows 64 bits",
                key=key,
                codec="sharding_indexed",
            )
        return index, int(ends.max()) if ends.size else 0

    def _remember(self, raw: bytes, entry: tuple[NDArray, int]) -> None:
        cost = len(raw) + entry[0].nbytes
        if cost > INDEX_MEMO_BYTES // 4:
            return
        with self._memo_lock:
            if raw in self._memo:
                return
            while self._memo and self._memo_bytes + cost > INDEX_MEMO_BYTES:
                old_raw, (old, _end) = next(iter(self._memo.items()))
                del self._memo[old_raw]
                self._memo_bytes -= len(old_raw) + old.nbytes
            self._memo[raw] = entry
            self._memo_bytes += cost

    # -- whole-shard encode/decode -------------------------------------------------------
    def encode(self, chunk: NDArray, spec: ChunkSpec) -> bytes:
        return self.encode_parts(self.encode_inner_all(chunk))

    def encode_inner_all(self, shard: NDArray) -> dict[tuple[int, ...], bytes]:
        """Encoded bytes of every inner chunk that is not entirely fill value."""
        return self.encode_inner(shard, self.inner_coords())

    def inner_coords(self) -> list[tuple[int, ...]]:
        """The coordinates of every inner chunk, in C order."""
        return list(itertools.product(*(range(n) for n in self.inner_grid)))

    def encode_inner(
        self, shard: NDArray, inner_coords: Iterable[tuple[int, ...]]
    ) -> dict[tuple[int, ...], bytes]:
        """Encoded bytes of the inner chunks at ``inner_coords`` of ``shard`` (a whole
        shard's array), leaving out those that are entirely fill value."""
        parts: dict[tuple[int, ...], bytes] = {}
        c = self.chunk_shape
        for coords in inner_coords:
            region = tuple(slice(i * s, (i + 1) * s) for i, s in zip(coords, c, strict=True))
            sub = shard[region]
            if self.inner.is_fill(sub):
                continue
            parts[coords] = self.inner.encode(sub)  # strided is fine: serialising copies once
        return parts

    def encode_parts(
        self, parts: Mapping[tuple[int, ...], bytes | memoryview], *, key: str | None = None
    ) -> bytes:
        """Assemble a shard from encoded inner chunks (C order), index included."""
        assert self._index is not None
        grid = self.inner_grid
        try:
            index = np.full((*grid, 2), MISSING, dtype=np.uint64)
        except MemoryError as exc:
            raise CodecError(
                f"the index of a shard of {math.prod(grid)} inner chunks "
                f"({self._index.spec.nbytes} bytes) cannot be allocated: {exc}",
                key=key,
                codec="sharding_indexed",
            ) from exc
        base = self.index_size if self.index_location == "start" else 0
        chunks: list[bytes | memoryview] = []
        offset = base
        for coords in itertools.product(*(range(n) for n in grid)):
            data = parts.get(coords)
            if data is None:
                continue
            index[coords] = (offset, len(data))
            chunks.append(data)
            offset += len(data)
        encoded_index = self._index.encode(index)
        if self.index_location == "start":
            return b"".join([encoded_index, *chunks])
        return b"".join([*chunks, encoded_index])

    def split_parts(
        self, data: bytes, *, key: str | None = None
    ) -> dict[tuple[int, ...], bytes | memoryview]:
        """The encoded inner chunks of a whole shard, by inner coordinates."""
        if len(data) < self.index_size:
            raise CodecError(
                f"shard is {len(data)} bytes, shorter than its {self.index_size}-byte index",
                key=key,
                codec="sharding_indexed",
            )
        raw = (
            data[: self.index_size]
            if self.index_location == "start"
            else data[len(data) - self.index_size :]
        )
        index = self.decode_index(raw, shard_size=len(data), key=key)
        parts: dict[tuple[int, ...], bytes | memoryview] = {}
        view = memoryview(data)
        for coords in itertools.product(*(range(n) for n in self.inner_grid)):
            off, size = (int(v) for v in index[coords])
            if off == int(MISSING):
                continue
            parts[coords] = view[off : off + size]  # no copy
        return parts

    def decode(self, data: bytes | memoryview, spec: ChunkSpec) -> NDArray:
        out = np.empty(spec.shape, dtype=spec.dtype)
        self.decode_into(bytes(data), out)
        return out

    def decode_into(self, data: bytes, out: NDArray, *, key: str | None = None) -> None:
        """Decode a whole shard into ``out`` (shard-shaped), filling missing inner chunks."""
        parts = self.split_parts(data, key=key)
        fill = self.inner.spec.fill_value
        c = self.chunk_shape
        for coords in itertools.product(*(range(n) for n in self.inner_grid)):
            region = tuple(slice(i * s, (i + 1) * s) for i, s in zip(coords, c, strict=True))
            part = parts.get(coords)
            if part is None:
                out[region] = 0 if fill is None else fill
            else:
                out[region] = self.inner.decode(part, key=key)

    def n_inner(self) -> int:
        return math.prod(self.inner_grid)
