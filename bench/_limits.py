"""What the machine can do at best, measured in the same rotation as the tools.

The limits are pseudo-tools, timed interleaved with the real ones so that
drift in the machine's load affects them alike:

* ``limit`` - every stored chunk, already in memory, decoded (reads) or every
  chunk of the source array encoded (writes) with numcodecs on a thread pool
  of one thread per core (numcodecs' zstd and blosc release the GIL);
* ``limit-zstd-ctx`` - the same decode with one reused ``zstandard``
  decompression context per thread (zstd datasets only);
* ``limit-raw`` - every chunk (or shard) file read into memory on a thread
  pool (from the page cache: the data was just written or read);
* ``floor`` - a full read on asyncarr's libraries with no engine (``bench/floor.py``):
  one thread per core loops over its chunk files, reading, decoding and copying each
  into place. Not a limit of the machine but of the stack: what a Python engine on
  these libraries can reach at best (unsharded local datasets).

All figures are uncompressed MB/s of the whole array, so they compare
directly with the tools' throughput.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np

from bench._data import Dataset, chunk_files
from bench._tools import Handle, Target, Tool

__all__ = [
    "DecodeLimit",
    "RawReadLimit",
    "StackFloor",
    "ZstdContextLimit",
    "limit_tools",
    "stored_chunks",
]

_MISSING = 2**64 - 1


def _codec(ds: Dataset) -> Any:
    import numcodecs

    if ds.codec == "blosc":
        return numcodecs.Blosc(cname="lz4", clevel=5, shuffle=numcodecs.Blosc.SHUFFLE)
    return numcodecs.Zstd(level=3)


def _inner_chunks(ds: Dataset, blob: bytes) -> list[bytes]:
    """Split a shard (index at the end: uint64 offset/nbytes pairs, then crc32c)."""
    assert ds.shards is not None
    n = (ds.shards[0] // ds.chunks[0]) * (ds.shards[1] // ds.chunks[1])
    index = np.frombuffer(blob[-(n * 16 + 4) : -4], dtype="<u8").reshape(n, 2)
    return [blob[int(o) : int(o) + int(s)] for o, s in index if int(o) != _MISSING]


def stored_chunks(ds: Dataset) -> list[bytes]:
    """Every encoded (inner) chunk of the dataset, in memory."""
    blobs = [p.read_bytes() for p in chunk_files(ds.path, ds)]
    if ds.shards is None:
        return blobs
    return [c for b in blobs for c in _inner_chunks(ds, b)]


def _drain(pool: ThreadPoolExecutor, fn: Callable[[Any], Any], items: Sequence[Any]) -> None:
    """``fn`` over ``items`` on every pool thread, in a few large batches.

    One pool task per item would measure ``concurrent.futures`` overhead
    (tens of microseconds per task, more than decoding a small chunk), so each
    task loops over a contiguous slice.
    """
    n = max(1, min(len(items), 4 * pool._max_workers))
    step = -(-len(items) // n)

    def run(lo: int) -> None:
        for item in items[lo : lo + step]:
            fn(item)

    for _ in pool.map(run, range(0, len(items), step)):
        pass


class _PoolHandle(Handle):
    def __init__(self, threads: int) -> None:
        self.pool = ThreadPoolExecutor(threads, thread_name_prefix="bench-limit")

    def read_many(self, sels: Sequence[tuple[slice, slice]]) -> np.ndarray[Any, Any]:
        raise NotImplementedError("limits are measured for full reads and writes only")

    def close(self) -> None:
        self.pool.shutdown()


class _DecodeHandle(_PoolHandle):
    def __init__(self, ds: Dataset, decode: Callable[[bytes], Any], threads: int) -> None:
        super().__init__(threads)
        self.ds = ds
        self.decode = decode
        self.chunks: list[bytes] | None = None

    def read_full(self) -> np.ndarray[Any, Any]:
        if self.chunks is None:
            self.chunks = stored_chunks(self.ds)  # once, on the untimed warm-up
        _drain(self.pool, self.decode, self.chunks)
        return np.empty(0)

    def write_full(self, data: np.ndarray[Any, Any]) -> None:
        codec = _codec(self.ds)
        cy, cx = self.ds.chunks
        blocks = [
            data[i : i + cy, j : j + cx]
            for i in range(0, self.ds.shape[0], cy)
            for j in range(0, self.ds.shape[1], cx)
        ]
        _drain(self.pool, lambda b: codec.encode(np.ascontiguousarray(b)), blocks)


class _Limit(Tool):
    """A limit pseudo-tool: nothing to check, run on all cores (``threads``)."""

    ops = ("read",)
    checkable = False
    is_limit = True

    def __init__(self) -> None:
        self.threads = os.cpu_count() or 1


class DecodeLimit(_Limit):
    """numcodecs decode (reads) / encode (writes) of every chunk on all cores."""

    key = "limit"
    ops = ("read", "write")

    def __init__(self) -> None:
        super().__init__()
        self.label = f"limit: numcodecs on {self.threads} threads"

    def unsupported(self, target: Target) -> str | None:
        return "no codec limit for S3" if target.kind == "s3" else None

    def open(self, target: Target, *, write: bool) -> Handle:
        return _DecodeHandle(target.ds, _codec(target.ds).decode, self.threads)


class ZstdContextLimit(_Limit):
    """zstd decode of every chunk with one reused ``zstandard`` context per thread."""

    key = "limit-zstd-ctx"
    label = "  zstd decode, reused context"

    def unsupported(self, target: Target) -> str | None:
        try:
            import zstandard  # noqa: F401
        except ImportError:
            return "zstandard is not installed"
        if target.ds.codec != "zstd" or target.kind == "s3":
            return "zstd on local or memory stores only"
        return None

    def open(self, target: Target, *, write: bool) -> Handle:
        import zstandard

        local = threading.local()
        size = target.ds.chunks[0] * target.ds.chunks[1] * 4

        def dec(b: bytes) -> bytes:
            d = getattr(local, "d", None)
            if d is None:
                d = local.d = zstandard.ZstdDecompressor()
            out: bytes = d.decompress(b, max_output_size=size)
            return out

        return _DecodeHandle(target.ds, dec, self.threads)


class _RawHandle(_PoolHandle):
    def __init__(self, root: Any, ds: Dataset, threads: int) -> None:
        super().__init__(threads)
        self.files = list(chunk_files(root, ds))

    def read_full(self) -> np.ndarray[Any, Any]:
        def read(p: os.PathLike[str]) -> int:
            with open(p, "rb") as f:
                return len(f.read())

        _drain(self.pool, read, self.files)
        return np.empty(0)


class RawReadLimit(_Limit):
    """Every chunk/shard file read into memory (page cache), no decoding (on at least 4
    threads: file reads wait on I/O, not on cores)."""

    key = "limit-raw"
    label = "  raw file read (page cache)"

    def unsupported(self, target: Target) -> str | None:
        return None if target.kind == "local" else "raw file reads: local stores only"

    def open(self, target: Target, *, write: bool) -> Handle:
        return _RawHandle(target.path, target.ds, max(4, self.threads))


class _FloorHandle(Handle):
    def __init__(self, root: Any, ds: Dataset, threads: int) -> None:
        self.root = root
        self.ds = ds
        self.threads = threads

    def read_full(self) -> np.ndarray[Any, Any]:
        from bench.floor import read_on_threads

        read_on_threads(self.ds, self.root, self.threads)
        return np.empty(0)

    def read_many(self, sels: Sequence[tuple[slice, slice]]) -> np.ndarray[Any, Any]:
        raise NotImplementedError("the floor is measured for full reads only")


class StackFloor(_Limit):
    """A full read with the least Python on asyncarr's libraries (``bench/floor.py``)."""

    key = "floor"

    def __init__(self) -> None:
        super().__init__()
        self.label = f"  stack floor: Python loop, {self.threads} threads"

    def unsupported(self, target: Target) -> str | None:
        if target.kind != "local" or target.ds.shards is not None:
            return "the floor: unsharded local datasets only"
        return None

    def open(self, target: Target, *, write: bool) -> Handle:
        return _FloorHandle(target.path, target.ds, self.threads)


def limit_tools() -> list[Tool]:
    """The limit pseudo-tools, in report order."""
    return [DecodeLimit(), ZstdContextLimit(), RawReadLimit(), StackFloor()]
