"""Micro-benchmark: arrays of variable-length strings, asyncarr beside zarr-python.

``python -m bench.strings`` writes and reads a 1,000 x 1,000 array of strings (1 to 23
characters, drawn from a vocabulary of 4,000 words; 100 x 100 chunks; zstd level 3) on
the local disk, with asyncarr (its sync API, default executor) and with zarr-python 3.
Each tool reads the array the other wrote too, so both read the same bytes. Tools run
interleaved, ``--repeat`` times; each row gives the median and the range (min-max) of
the wall time and of the rate in strings per second. This machine is noisy; compare
rows of one run only.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import tempfile
import time
import warnings
from collections.abc import Callable
from pathlib import Path

import numpy as np

SHAPE = (1000, 1000)
CHUNKS = (100, 100)


def make_strings(seed: int = 20240917) -> np.ndarray:
    rng = np.random.default_rng(seed)
    lengths = rng.integers(1, 24, 4000)
    words = np.array(
        ["".join(chr(97 + c) for c in rng.integers(0, 26, n)) for n in lengths], dtype=object
    )
    return words[rng.integers(0, len(words), SHAPE)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=7)
    args = parser.parse_args()

    import zarr

    import asyncarr.sync as az

    data = make_strings()
    root = Path(tempfile.mkdtemp(prefix="bench-strings-"))
    mine, theirs = str(root / "asyncarr.zarr"), str(root / "zarr.zarr")

    def az_write() -> None:
        arr = az.create_array(mine, shape=SHAPE, chunks=CHUNKS, dtype=str, overwrite=True)
        arr[...] = data

    def zarr_write() -> None:
        arr = zarr.create_array(
            theirs,
            shape=SHAPE,
            chunks=CHUNKS,
            dtype=str,
            overwrite=True,
            compressors=[zarr.codecs.ZstdCodec(level=3)],
        )
        arr[...] = data

    def az_read(path: str) -> Callable[[], object]:
        return lambda: az.open_array(path)[...]

    def zarr_read(path: str) -> Callable[[], object]:
        return lambda: zarr.open_array(path, mode="r")[...]

    cases: dict[str, Callable[[], object]] = {
        "write   asyncarr": az_write,
        "write   zarr-python": zarr_write,
        "read    asyncarr (its own data)": az_read(mine),
        "read    asyncarr (zarr-python's)": az_read(theirs),
        "read    zarr-python (its own data)": zarr_read(theirs),
        "read    zarr-python (asyncarr's)": zarr_read(mine),
    }
    times: dict[str, list[float]] = {name: [] for name in cases}
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            az_write()
            zarr_write()
            for _ in range(args.repeat):
                for name, run in cases.items():
                    start = time.perf_counter()
                    run()
                    times[name].append(time.perf_counter() - start)
    finally:
        shutil.rmtree(root, ignore_errors=True)
    n = SHAPE[0] * SHAPE[1]
    print(f"{n:,} strings, {CHUNKS[0]}x{CHUNKS[1]} chunks, zstd-3; {args.repeat} rounds")
    for name, ts in times.items():
        med = statistics.median(ts)
        print(
            f"{name:36s} {med * 1000:7.0f} ms ({min(ts) * 1000:.0f}-{max(ts) * 1000:.0f})"
            f"  {n / med / 1e6:5.2f} M strings/s"
        )


if __name__ == "__main__":
    main()
