"""Micro-benchmark: the native batch kernel against the Python worker path.

``python -m bench.kernel`` reads and writes a 64 MiB float32 array of chunks (16 KiB or
256 KiB; zstd level 3, or blosc lz4 with byte shuffle) both ways, as local files
(``read``, ``write``) and in memory (``mread``: encoded chunks held as bytes, as a
MemoryStore holds them; ``encode``: encoded, not stored):

* ``python``: what codec workers run today, called directly: ``decode_jobs`` (read each
  file, zstandard / numcodecs decode, numpy copy into the output) and
  ``encode_full_chunks`` (cut each chunk from the value, encode, ``write_local_many``),
  with the chunks split into ``4 T`` batches on a pool of ``T`` threads;
* ``kernel``: one ``read_chunks`` / ``write_chunks`` / ``encode_chunks`` call with
  ``workers=T`` native threads (the GIL released once).

Variants run interleaved, ``--repeat`` times; each row gives the median and the range
(min-max) of throughput (MB/s of decoded data) and of CPU time per chunk (process CPU
over chunks: what a chunk costs, whatever runs it). This machine is noisy; compare rows
of one run only.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

from asyncarr import kernel as ak
from asyncarr._types import ChunkSpec
from asyncarr.codecs import BloscCodec, BytesCodec, ZstdCodec
from asyncarr.core._pipeline import CodecPipeline
from asyncarr.core._read import DecodeJob, decode_jobs
from asyncarr.core._write import encode_full_chunks
from asyncarr.stores import LocalStore
from bench._data import make_data

TOTAL = 64 << 20
CODECS: dict[str, Callable[[], list[Any]]] = {
    "zstd": lambda: [BytesCodec(), ZstdCodec(level=3)],
    "blosc": lambda: [BytesCodec(), BloscCodec(cname="lz4", clevel=5, shuffle="shuffle")],
}


class Case:
    """One array layout: chunk size, codec, its files, and the per-chunk selections."""

    def __init__(self, root: Path, chunk_kib: int, codec: str) -> None:
        side = int((chunk_kib * 1024 // 4) ** 0.5)
        self.chunks = (side, side)
        rows = int((TOTAL // 4) ** 0.5)
        self.shape = (rows, rows)
        self.grid = (rows // side, rows // side)
        self.label = f"{chunk_kib} KiB {codec}"
        self.value = make_data(self.shape)
        spec = ChunkSpec(self.chunks, np.dtype("float32"), 0.0)
        self.pipeline = CodecPipeline(CODECS[codec](), spec)
        chain = ak.chain_for(self.pipeline.codecs, self.pipeline.spec)
        assert isinstance(chain, ak.KernelChain), chain
        self.chain = chain
        self.store = LocalStore(root / f"{chunk_kib}-{codec}")
        self.files = ak.LocalFiles.of(self.store)
        self.keys: list[str] = []
        self.sels: list[tuple[slice, slice]] = []
        for i in range(self.grid[0]):
            for j in range(self.grid[1]):
                self.keys.append(f"c/{i}/{j}")
                self.sels.append(
                    (slice(i * side, (i + 1) * side, 1), slice(j * side, (j + 1) * side, 1))
                )
        ak.write_chunks(self.chain, self.value, list(zip(self.keys, self.sels)), files=self.files)
        self.encoded = ak.encode_chunks(self.chain, self.value, self.sels)

    @property
    def nchunks(self) -> int:
        return len(self.keys)


def _split(n: int, parts: int) -> list[range]:
    step = -(-n // parts)
    return [range(i, min(i + step, n)) for i in range(0, n, step)]


def python_read(case: Case, threads: int, pool: ThreadPoolExecutor) -> None:
    out = np.empty(case.shape, np.float32)

    def run(span: range) -> None:
        jobs = [
            DecodeJob(case.keys[i], case.store, (), case.sels[i], True, whole=True) for i in span
        ]
        decode_jobs(case.pipeline, jobs, out, 0.0)

    list(pool.map(run, _split(case.nchunks, 4 * threads)))


def kernel_read(case: Case, threads: int, pool: ThreadPoolExecutor) -> None:
    out = np.empty(case.shape, np.float32)
    items = [(k, None, s) for k, s in zip(case.keys, case.sels, strict=True)]
    ak.read_chunks(case.chain, out, items, files=case.files, workers=threads)


def python_mread(case: Case, threads: int, pool: ThreadPoolExecutor) -> None:
    out = np.empty(case.shape, np.float32)

    def run(span: range) -> None:
        jobs = [
            DecodeJob(case.keys[i], case.encoded[i], (), case.sels[i], True, whole=True)
            for i in span
        ]
        decode_jobs(case.pipeline, jobs, out, 0.0)

    list(pool.map(run, _split(case.nchunks, 4 * threads)))


def kernel_mread(case: Case, threads: int, pool: ThreadPoolExecutor) -> None:
    out = np.empty(case.shape, np.float32)
    items = [(e, None, s) for e, s in zip(case.encoded, case.sels, strict=True)]
    ak.read_chunks(case.chain, out, items, workers=threads)


def python_encode(case: Case, threads: int, pool: ThreadPoolExecutor) -> None:
    def run(span: range) -> None:
        sels = [case.sels[i] for i in span]
        keys = [case.keys[i] for i in span]
        encode_full_chunks(case.pipeline, case.value, sels, False, keys)

    list(pool.map(run, _split(case.nchunks, 4 * threads)))


def kernel_encode(case: Case, threads: int, pool: ThreadPoolExecutor) -> None:
    ak.encode_chunks(case.chain, case.value, case.sels, workers=threads)


def python_write(case: Case, threads: int, pool: ThreadPoolExecutor) -> None:
    def run(span: range) -> None:
        sels = [case.sels[i] for i in span]
        keys = [case.keys[i] for i in span]
        encode_full_chunks(case.pipeline, case.value, sels, False, keys, case.store)

    list(pool.map(run, _split(case.nchunks, 4 * threads)))


def kernel_write(case: Case, threads: int, pool: ThreadPoolExecutor) -> None:
    items = list(zip(case.keys, case.sels, strict=True))
    ak.write_chunks(case.chain, case.value, items, files=case.files, workers=threads)


VARIANTS: dict[str, Callable[[Case, int, ThreadPoolExecutor], None]] = {
    "read python": python_read,
    "read kernel": kernel_read,
    "mread python": python_mread,
    "mread kernel": kernel_mread,
    "write python": python_write,
    "write kernel": kernel_write,
    "encode python": python_encode,
    "encode kernel": kernel_encode,
}


def _spread(values: list[float]) -> str:
    return f"{statistics.median(values):8.1f} ({min(values):.1f}-{max(values):.1f})"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeat", type=int, default=7)
    parser.add_argument("--sizes", default="16,256", help="chunk sizes in KiB")
    parser.add_argument("--codecs", default="zstd,blosc")
    parser.add_argument("--threads", default="1,2")
    parser.add_argument("--ops", default="read,mread,write,encode")
    args = parser.parse_args(argv)
    root = Path(tempfile.mkdtemp(prefix="asyncarr-kernel-bench-"))
    try:
        cases = [
            Case(root, int(size), codec)
            for size in args.sizes.split(",")
            for codec in args.codecs.split(",")
        ]
        threads = [int(t) for t in args.threads.split(",")]
        ops = set(args.ops.split(","))
        results: dict[tuple[str, str, int], list[tuple[float, float]]] = {}
        pools = {t: ThreadPoolExecutor(t) for t in threads}
        for rep in range(args.repeat):
            for case in cases:
                for t in threads:
                    names = [n for n in VARIANTS if n.split()[0] in ops]
                    if rep % 2:  # alternate which goes first
                        names.reverse()
                    for name in names:
                        cpu0, wall0 = time.process_time(), time.perf_counter()
                        VARIANTS[name](case, t, pools[t])
                        cpu, wall = time.process_time() - cpu0, time.perf_counter() - wall0
                        results.setdefault((case.label, name, t), []).append((wall, cpu))
        print(f"{os.cpu_count()} CPUs; {args.repeat} interleaved runs; median (min-max)")
        print(f"{'case':18} {'variant':13} {'T':>2} {'MB/s':>22} {'CPU us/chunk':>24}")
        for case in cases:
            for t in threads:
                for name in VARIANTS:
                    if name.split()[0] not in ops:
                        continue
                    runs = results[(case.label, name, t)]
                    mbs = [TOTAL / 1e6 / wall for wall, _ in runs]
                    us = [cpu / case.nchunks * 1e6 for _, cpu in runs]
                    print(f"{case.label:18} {name:13} {t:>2} {_spread(mbs):>22} {_spread(us):>24}")
        for pool in pools.values():
            pool.shutdown()
    finally:
        shutil.rmtree(root, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
