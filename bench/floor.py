"""The stack floor: how fast a full read could go on asyncarr's libraries, with no engine.

``python -m bench.floor`` (``make bench-floor``) reads each unsharded local dataset of
``bench/_data.py`` with as little Python as possible: W threads (or W worker processes
writing into one shared-memory output), each looping over its share of the chunk files:
open, read, close; decode with the library asyncarr uses for that chunk (numcodecs'
blosc; for zstd, zstandard's reused context below ``ZstdCodec.decode_exact_below`` and
numcodecs above) into a reused buffer; copy into place in the output. No selection,
scheduling, store abstraction, checks or error handling. What asyncarr does beyond this
is its cost; what this loop cannot reach, asyncarr cannot either on these libraries in
Python, whereas zarrs and tensorstore do the same steps in native code without the GIL.

Needs the datasets (``make bench`` writes them). Prints median MB/s of 5 runs per row.
``make bench`` times the thread variant too, beside the tools (``floor``).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import threading
import time
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import shared_memory
from pathlib import Path
from typing import Any

import numpy as np

from bench._data import DATASETS, Dataset

Array = np.ndarray[Any, Any]
Task = tuple[int, int, str]
"""(chunk row, chunk column, file path)."""


def _decoder(ds: Dataset) -> Callable[[bytes, Array], None]:
    """Decode one chunk's bytes into ``buf`` (a reused, contiguous chunk buffer)."""
    if ds.codec == "blosc":
        from numcodecs import blosc

        return lambda data, buf: blosc.decompress(data, buf)
    from asyncarr.codecs import ZstdCodec

    if ds.chunks[0] * ds.chunks[1] * 4 < ZstdCodec.decode_exact_below:
        import zstandard

        local = threading.local()

        def small(data: bytes, buf: Array) -> None:
            d = getattr(local, "d", None) or zstandard.ZstdDecompressor()
            local.d = d
            buf[...] = np.frombuffer(d.decompress(data), buf.dtype).reshape(buf.shape)

        return small
    from numcodecs import zstd

    return lambda data, buf: zstd.decompress(data, buf)


def _tasks(ds: Dataset, root: Path) -> list[Task]:
    gy, gx = ds.inner_grid
    if ds.zarr_format == 2:
        return [(i, j, f"{root}/{i}.{j}") for i in range(gy) for j in range(gx)]
    return [(i, j, f"{root}/c/{i}/{j}") for i in range(gy) for j in range(gx)]


def _read_share(ds: Dataset, out: Array, tasks: list[Task]) -> None:
    cy, cx = ds.chunks
    decode = _decoder(ds)
    buf = np.empty((cy, cx), np.float32)
    for i, j, path in tasks:
        fd = os.open(path, os.O_RDONLY)
        try:
            data = os.read(fd, os.fstat(fd).st_size)
        finally:
            os.close(fd)
        decode(data, buf)
        out[i * cy : (i + 1) * cy, j * cx : (j + 1) * cx] = buf


def read_on_threads(ds: Dataset, root: Path, workers: int) -> float:
    """One full read of the dataset at ``root`` on ``workers`` threads; its seconds."""
    tasks = _tasks(ds, root)
    start = time.perf_counter()
    out = np.empty(ds.shape, np.float32)
    threads = [
        threading.Thread(target=_read_share, args=(ds, out, tasks[k::workers]))
        for k in range(workers)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return time.perf_counter() - start


def _process_share(name: str, ds: Dataset, tasks: list[Task]) -> None:
    shm = shared_memory.SharedMemory(name)
    try:
        out: Array = np.ndarray(ds.shape, np.float32, buffer=shm.buf)
        _read_share(ds, out, tasks)
        del out
    finally:
        shm.close()


def _processes(ds: Dataset, pool: ProcessPoolExecutor, workers: int) -> float:
    tasks = _tasks(ds, ds.path)
    start = time.perf_counter()
    shm = shared_memory.SharedMemory(create=True, size=ds.nbytes)
    try:
        futures = [
            pool.submit(_process_share, shm.name, ds, tasks[k::workers]) for k in range(workers)
        ]
        for f in futures:
            f.result()
        return time.perf_counter() - start
    finally:
        shm.close()
        shm.unlink()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.floor", description=__doc__)
    parser.add_argument("--workers", type=int, default=len(os.sched_getaffinity(0)))
    parser.add_argument("--reps", type=int, default=5)
    args = parser.parse_args(argv)
    rows = []
    with ProcessPoolExecutor(args.workers) as pool:
        for ds in DATASETS.values():
            if ds.shards is not None or not ds.path.exists():
                continue
            for kind in ("threads", "processes"):
                runs = []
                for _ in range(args.reps + 1):  # the first run warms the page cache and pool
                    if kind == "threads":
                        runs.append(read_on_threads(ds, ds.path, args.workers))
                    else:
                        runs.append(_processes(ds, pool, args.workers))
                mbps = ds.nbytes / statistics.median(runs[1:]) / 1e6
                rows.append(
                    {"dataset": ds.name, "workers": args.workers, "kind": kind, "mbps": mbps}
                )
                print(f"{ds.name:<20} {args.workers} {kind:<9} {mbps:8.1f} MB/s", flush=True)
    print(json.dumps(rows))


if __name__ == "__main__":
    main()
