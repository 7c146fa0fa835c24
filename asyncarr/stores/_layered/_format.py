"""The byte layout of a layer object: packed values, a footer index, a fixed trailer.

::

    [value 0][value 1]...[value n-1][index][manifest (packs only)][trailer: 64 bytes]

The **trailer** (little-endian) says where the index is, how it is encoded and checks
itself; the **index** lists every key of the layer (sorted, unique) with where its value
is, its length stored and decoded, the CRC32C of the stored bytes, the codec of the value
(raw or zstd) and whether it is a tombstone (a deletion). A reader fetches the tail of
the object (trailer and, usually, the whole index) with one range request, a second one
when the index is larger than that first read. ``docs/layered.md`` is the full
specification; this module is the reference implementation of it.

Every size, offset and count read from an object is checked before it is used (against
the object's size and fixed limits), so a damaged or hostile layer is a
:class:`CorruptContainerError` naming it, never an oversized allocation or wrong data.
"""

from __future__ import annotations

import itertools
import operator
import struct
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, Final

import crc32c as _crc32c
import numpy as np
import zstandard

from asyncarr.abc import normalize_key
from asyncarr.errors import CorruptContainerError, InvalidKeyError

__all__ = [
    "CODEC_RAW",
    "CODEC_ZSTD",
    "FIRST_TAIL_READ",
    "MANIFEST_LIMIT",
    "TRAILER_SIZE",
    "LayerBuilder",
    "LayerIndex",
    "Trailer",
    "checksum",
    "decode_value",
    "parse_footer",
    "parse_layer_object",
]

MAGIC: Final = b"AZLAYER\x00"
FORMAT_VERSION: Final = 1
TRAILER: Final = struct.Struct("<8sHHIQQQQIIII")
TRAILER_SIZE: Final = TRAILER.size  # 64
FLAG_INDEX_ZSTD: Final = 1
FLAG_MANIFEST: Final = 2
_KNOWN_FLAGS: Final = FLAG_INDEX_ZSTD | FLAG_MANIFEST

CODEC_RAW: Final = 0
CODEC_ZSTD: Final = 1
ENTRY_TOMBSTONE: Final = 1

ENTRY_FIXED_BYTES: Final = 8 + 8 + 8 + 4 + 4 + 1 + 1  # per entry, key bytes aside
INDEX_RAW_LIMIT: Final = 1 << 31
"""Largest decoded index a reader accepts (2 GiB: some 40 million keys)."""
INDEX_RATIO_LIMIT: Final = 4096
"""A compressed index decodes to at most this many times its stored size (plus 1 MiB).
Real ones stay far below (about 200x at most: empty values, sequential keys); a frame
claiming more is refused before anything is allocated for it. Decoding is streamed, so
memory never exceeds what the frame really holds, bounded by the declared size."""
ZSTD_VALUE_LIMIT: Final = 64 << 20
"""Largest decoded size of a zstd-coded value a reader accepts (writers compress values
up to :data:`COMPRESS_UP_TO` only)."""
MANIFEST_LIMIT: Final = 64 << 20
COMPRESS_UP_TO: Final = 1 << 20
"""``compression="auto"`` tries zstd on values up to this size (larger ones stay raw, so
a range of them is a range request, as the sharding codec's inner-chunk reads need)."""
FIRST_TAIL_READ: Final = 64 << 10
"""The first read of a layer's tail: the trailer and, for layers of up to ~1,500 keys,
the whole index (and a pack's manifest) in one request."""


def checksum(data: bytes | memoryview) -> int:
    """CRC32C (Castagnoli), as every checksum in the format."""
    return int(_crc32c.crc32c(data))


def _corrupt(name: str, what: str) -> CorruptContainerError:
    return CorruptContainerError(f"corrupt layer: {what}", key=name)


@dataclass(frozen=True, slots=True)
class Trailer:
    """The fixed 64 bytes at the end of a layer."""

    flags: int
    index_offset: int
    index_length: int
    index_raw_length: int
    entry_count: int
    index_crc: int
    manifest_length: int
    manifest_crc: int

    def pack(self) -> bytes:
        head = TRAILER.pack(
            MAGIC,
            FORMAT_VERSION,
            self.flags,
            0,
            self.index_offset,
            self.index_length,
            self.index_raw_length,
            self.entry_count,
            self.index_crc,
            self.manifest_length,
            self.manifest_crc,
            0,
        )
        return head[:-4] + struct.pack("<I", checksum(head[:-4]))

    @classmethod
    def unpack(cls, data: bytes, *, name: str, size: int) -> Trailer:
        """Parse and check the trailer of the ``size``-byte layer ``name``."""
        if len(data) != TRAILER_SIZE:
            raise _corrupt(name, f"{size} bytes is too short for a layer (no trailer)")
        (
            magic,
            version,
            flags,
            _reserved,
            index_offset,
            index_length,
            raw_length,
            count,
            index_crc,
            manifest_length,
            manifest_crc,
            own_crc,
        ) = TRAILER.unpack(data)
        if magic != MAGIC:
            raise _corrupt(name, "no layer trailer at its end (truncated, or not a layer)")
        if own_crc != checksum(data[:-4]):
            raise _corrupt(name, "the trailer's checksum does not match")
        if version != FORMAT_VERSION:
            raise _corrupt(name, f"format version {version}; this reader knows {FORMAT_VERSION}")
        if flags & ~_KNOWN_FLAGS:
            raise _corrupt(name, f"unknown trailer flags {flags:#x}")
        if index_offset + index_length + manifest_length + TRAILER_SIZE != size:
            raise _corrupt(
                name,
                f"index at {index_offset} (+{index_length}), manifest of {manifest_length} "
                f"and the trailer do not end at the object's end ({size} bytes)",
            )
        compressed = flags & FLAG_INDEX_ZSTD
        if (
            raw_length > INDEX_RAW_LIMIT
            or (compressed and raw_length > INDEX_RATIO_LIMIT * index_length + (1 << 20))
            or (not compressed and raw_length != index_length)
        ):
            raise _corrupt(
                name, f"implausible decoded index length {raw_length} (stored: {index_length})"
            )
        if count * ENTRY_FIXED_BYTES > raw_length:
            raise _corrupt(name, f"{count} entries cannot fit in an index of {raw_length} bytes")
        if manifest_length > MANIFEST_LIMIT or bool(manifest_length) != bool(flags & FLAG_MANIFEST):
            raise _corrupt(name, f"implausible embedded manifest length {manifest_length}")
        return cls(
            flags,
            index_offset,
            index_length,
            raw_length,
            count,
            index_crc,
            manifest_length,
            manifest_crc,
        )

    @property
    def footer_offset(self) -> int:
        """Where the index starts: everything from there to the end is the footer."""
        return self.index_offset


def bounded_zstd(data: bytes | memoryview, size: int, *, name: str, what: str) -> bytes:
    """Decode a zstd frame that must decode to exactly ``size`` bytes: decoded in 1 MiB
    steps, so memory follows what the frame really holds, never what it claims."""
    parts: list[bytes] = []
    got = 0
    try:
        declared = zstandard.frame_content_size(data)
        if declared not in (-1, size):
            raise _corrupt(name, f"{what}: zstd frame says {declared} bytes, expected {size}")
        with zstandard.ZstdDecompressor().stream_reader(data) as reader:
            while got <= size:
                part = reader.read(min(1 << 20, size + 1 - got))
                if not part:
                    break
                parts.append(part)
                got += len(part)
    except zstandard.ZstdError as exc:
        raise _corrupt(name, f"{what}: {exc}") from exc
    if got != size:
        raise _corrupt(name, f"{what}: decodes to {got}+ bytes, expected {size}")
    return parts[0] if len(parts) == 1 else b"".join(parts)


def decode_value(stored: bytes, codec: int, raw_length: int, *, name: str, key: str) -> bytes:
    """A value as the layer stores it, decoded."""
    if codec == CODEC_RAW:
        return stored
    return bounded_zstd(stored, raw_length, name=name, what=f"value of {key!r}")


class LayerIndex:
    """The parsed, checked index of one layer: its sorted keys and, per key, where the
    value is (columns of numpy arrays, one row per key)."""

    __slots__ = (
        "__weakref__",
        "_positions",
        "codecs",
        "crcs",
        "data_end",
        "flags",
        "keys",
        "name",
        "offsets",
        "raw_lengths",
        "size",
        "stored_lengths",
    )

    def __init__(
        self,
        name: str,
        size: int,
        keys: list[str],
        columns: tuple[np.ndarray[Any, Any], ...],
        data_end: int,
    ) -> None:
        self.name = name
        self.size = size
        self.keys = keys
        self.offsets, self.stored_lengths, self.raw_lengths, self.crcs, self.codecs, self.flags = (
            columns
        )
        self.data_end = data_end
        self._positions: dict[str, int] | None = None

    def __len__(self) -> int:
        return len(self.keys)

    def __repr__(self) -> str:
        return f"LayerIndex({self.name!r}, {len(self.keys)} keys, {self.size} bytes)"

    @property
    def nbytes(self) -> int:
        """About how much memory the index takes."""
        return sum(len(k) + 60 for k in self.keys) + 34 * len(self.keys)

    def position(self, key: str) -> int | None:
        """The row of ``key``, or ``None`` if the layer does not mention it."""
        positions = self._positions
        if positions is None:
            positions = self._positions = {k: i for i, k in enumerate(self.keys)}
        return positions.get(key)

    def is_tombstone(self, row: int) -> bool:
        return bool(self.flags[row] & ENTRY_TOMBSTONE)

    def tombstone_rows(self) -> set[int]:
        """The rows that are tombstones (deletions)."""
        return set(np.flatnonzero(self.flags & ENTRY_TOMBSTONE).tolist())

    def rows(self) -> Iterator[tuple[str, int]]:
        return ((k, i) for i, k in enumerate(self.keys))

    @classmethod
    def parse(cls, name: str, size: int, trailer: Trailer, stored_index: bytes) -> LayerIndex:
        """Decode and check the index of the layer ``name`` (``stored_index``: its bytes
        as the layer stores them)."""
        if checksum(stored_index) != trailer.index_crc:
            raise _corrupt(name, "the index's checksum does not match")
        raw = (
            bounded_zstd(stored_index, trailer.index_raw_length, name=name, what="index")
            if trailer.flags & FLAG_INDEX_ZSTD
            else stored_index
        )
        n = trailer.entry_count
        pos = 0

        def column(dtype: str, width: int) -> np.ndarray[Any, Any]:
            nonlocal pos
            col = np.frombuffer(raw, dtype=dtype, count=n, offset=pos)
            pos += width * n
            return col

        offsets = column("<u8", 8)
        stored = column("<u8", 8)
        raw_lengths = column("<u8", 8)
        key_lengths = column("<u4", 4)
        crcs = column("<u4", 4)
        codecs = column("u1", 1)
        flags = column("u1", 1)
        if pos + int(key_lengths.sum(dtype=np.uint64)) != len(raw):
            raise _corrupt(name, "the index's key lengths do not add up to its size")
        data_end = trailer.index_offset
        keys = _decode_keys(raw, pos, key_lengths, name)
        _check_rows(name, data_end, offsets, stored, raw_lengths, codecs, flags)
        return cls(name, size, keys, (offsets, stored, raw_lengths, crcs, codecs, flags), data_end)


def parse_layer_object(name: str, data: bytes) -> tuple[LayerIndex, bytes | None]:
    """The index (and a pack's embedded manifest) of a whole layer object in memory."""
    size = len(data)
    trailer = Trailer.unpack(data[-TRAILER_SIZE:], name=name, size=size)
    return parse_footer(name, size, trailer, data, 0)


def parse_footer(
    name: str, size: int, trailer: Trailer, tail: bytes, tail_start: int
) -> tuple[LayerIndex, bytes | None]:
    """The index and embedded manifest of a layer from ``tail``, its bytes from
    ``tail_start`` to the end (which must include the whole footer)."""
    start = trailer.index_offset - tail_start
    index = LayerIndex.parse(name, size, trailer, tail[start : start + trailer.index_length])
    if not trailer.manifest_length:
        return index, None
    at = start + trailer.index_length
    manifest = tail[at : at + trailer.manifest_length]
    if checksum(manifest) != trailer.manifest_crc:
        raise _corrupt(name, "the embedded manifest's checksum does not match")
    return index, manifest


def _all_valid(keys: list[str]) -> bool:
    """Whether no key has an empty, ``.`` or ``..`` segment, a NUL or a backslash (what
    :func:`normalize_key` refuses), checked on all of them at once: joined with ``/``
    between and around them, any such segment shows as ``//``, ``/./`` or ``/../``."""
    joined = "/" + "/".join(keys) + "/"
    return not any(bad in joined for bad in ("//", "/./", "/../", "\\", "\x00"))


def _decode_keys(raw: bytes, start: int, lengths: np.ndarray[Any, Any], name: str) -> list[str]:
    """The keys of an index: UTF-8, valid store keys, sorted and unique. (The common case
    is checked in bulk: one decode, one scan, one comparison pass; a failure is then
    located key by key for the message.)"""
    blob = raw[start:]
    bounds = [0, *np.cumsum(lengths, dtype=np.int64).tolist()]
    try:
        text = blob.decode("ascii") if blob.isascii() else None
    except UnicodeDecodeError:  # pragma: no cover - isascii() said so
        text = None
    if text is not None:
        keys = [text[a:b] for a, b in itertools.pairwise(bounds)]
    else:
        keys = []
        for a, b in itertools.pairwise(bounds):
            try:
                keys.append(blob[a:b].decode("utf-8"))
            except UnicodeDecodeError as exc:
                raise _corrupt(name, f"a key is not UTF-8 (byte {start + a})") from exc
    if not _all_valid(keys):
        for key in keys:
            try:
                normalize_key(key)
            except InvalidKeyError as exc:
                raise _corrupt(name, f"invalid key {key!r}") from exc
    if not all(map(operator.lt, keys, keys[1:])):
        for first, second in itertools.pairwise(keys):
            if not first < second:
                raise _corrupt(name, f"keys are not sorted and unique ({first!r}, {second!r})")
    return keys


def _check_rows(
    name: str,
    data_end: int,
    offsets: np.ndarray[Any, Any],
    stored: np.ndarray[Any, Any],
    raw_lengths: np.ndarray[Any, Any],
    codecs: np.ndarray[Any, Any],
    flags: np.ndarray[Any, Any],
) -> None:
    """Every value lies inside the data region, no two overlap, codes are known."""
    if not len(offsets):
        return
    if int(offsets.max()) > data_end or int(stored.max()) > data_end:
        raise _corrupt(name, f"a value lies past the end of the data region ({data_end})")
    ends = offsets + stored
    if int(ends.max()) > data_end:
        raise _corrupt(name, f"a value runs past the end of the data region ({data_end})")
    if int(codecs.max()) > CODEC_ZSTD or int(flags.max()) > ENTRY_TOMBSTONE:
        raise _corrupt(name, "an entry has an unknown codec or flag")
    tomb = (flags & ENTRY_TOMBSTONE).astype(bool)
    if bool(np.any(stored[tomb])) or bool(np.any(raw_lengths[tomb])):
        raise _corrupt(name, "a tombstone has a value")
    raw_codec = codecs == CODEC_RAW
    if bool(np.any(raw_lengths[raw_codec] != stored[raw_codec])):
        raise _corrupt(name, "a raw value's decoded length differs from its stored length")
    if bool(np.any(raw_lengths[~raw_codec] > ZSTD_VALUE_LIMIT)):
        raise _corrupt(name, f"a compressed value claims more than {ZSTD_VALUE_LIMIT} bytes")
    order = np.argsort(offsets, kind="stable")
    if len(order) > 1 and bool(np.any(offsets[order][1:] < ends[order][:-1])):
        raise _corrupt(name, "the index lists overlapping values")


class LayerBuilder:
    """Assembles a layer: values are appended as they come, the index is written at the
    end (:meth:`finish`). Keys may come in any order but each only once."""

    def __init__(self, *, compression: str = "auto") -> None:
        self._data = bytearray()
        self._rows: list[tuple[str, int, int, int, int, int, int]] = []
        self._keys: set[str] = set()
        self._compression = compression
        self._zstd: Any = None

    def __len__(self) -> int:
        return len(self._rows)

    @property
    def nbytes(self) -> int:
        """Bytes of values so far."""
        return len(self._data)

    def add(self, key: str, value: bytes | memoryview | None) -> None:
        """Add ``key`` with ``value`` (``None``: a tombstone), compressed as configured."""
        if value is None:
            self.add_stored(key, b"", 0, 0, CODEC_RAW, ENTRY_TOMBSTONE)
            return
        raw_length = len(value)
        mode = self._compression
        if mode != "none" and (mode == "zstd" or 64 <= raw_length <= COMPRESS_UP_TO):
            if self._zstd is None:
                self._zstd = zstandard.ZstdCompressor(level=3)
            packed = self._zstd.compress(value)
            if mode == "zstd" or len(packed) <= raw_length - raw_length // 8:
                self.add_stored(key, packed, raw_length, checksum(packed), CODEC_ZSTD, 0)
                return
        self.add_stored(key, value, raw_length, checksum(value), CODEC_RAW, 0)

    def add_stored(
        self,
        key: str,
        stored: bytes | memoryview,
        raw_length: int,
        crc: int,
        codec: int,
        flags: int,
    ) -> None:
        """Add a value already encoded as a layer stores it (copied from another layer)."""
        if key in self._keys:
            raise ValueError(f"key {key!r} added twice to one layer")
        self._keys.add(key)
        self._rows.append((key, len(self._data), len(stored), raw_length, crc, codec, flags))
        self._data += stored

    def finish(self, *, manifest: bytes | None = None) -> bytes:
        """The whole layer object (with ``manifest`` embedded: a pack)."""
        rows = sorted(self._rows)
        n = len(rows)
        keys = [r[0].encode("utf-8") for r in rows]
        columns = [
            np.array([r[1] for r in rows], dtype="<u8").tobytes(),
            np.array([r[2] for r in rows], dtype="<u8").tobytes(),
            np.array([r[3] for r in rows], dtype="<u8").tobytes(),
            np.array([len(k) for k in keys], dtype="<u4").tobytes(),
            np.array([r[4] for r in rows], dtype="<u4").tobytes(),
            np.array([r[5] for r in rows], dtype="u1").tobytes(),
            np.array([r[6] for r in rows], dtype="u1").tobytes(),
            b"".join(keys),
        ]
        raw_index = b"".join(columns)
        stored_index = zstandard.ZstdCompressor(level=3).compress(raw_index)
        flags = FLAG_INDEX_ZSTD
        if manifest:
            flags |= FLAG_MANIFEST
        trailer = Trailer(
            flags=flags,
            index_offset=len(self._data),
            index_length=len(stored_index),
            index_raw_length=len(raw_index),
            entry_count=n,
            index_crc=checksum(stored_index),
            manifest_length=len(manifest or b""),
            manifest_crc=checksum(manifest) if manifest else 0,
        )
        out = self._data
        out += stored_index
        if manifest:
            out += manifest
        out += trailer.pack()
        self._data = bytearray()
        return bytes(out)
