"""The demo job behind ``make demo``: write, read back and verify arrays on local disk."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np

from asyncarr.core import create_array, open_array
from asyncarr.errors import ConfigError

__all__ = ["run_demo", "smooth_field"]


def smooth_field(n: int, seed: int = 0) -> np.ndarray:
    """A float32 ``n × n`` field: smooth waves plus a little noise (compresses like real data)."""
    rng = np.random.default_rng(seed)
    y, x = np.meshgrid(
        np.linspace(0, 8 * np.pi, n, dtype=np.float32),
        np.linspace(0, 6 * np.pi, n, dtype=np.float32),
        indexing="ij",
    )
    field = np.sin(x) * np.cos(y) * 10 + rng.normal(0, 0.1, size=(n, n)).astype(np.float32)
    return field.astype(np.float32)


async def run_demo(path: str | Path = ".cache/demo", *, size: int = 4096) -> str:
    """Create a v3 zstd array, a sharded one and a v2 blosc one; time writes and reads."""
    if isinstance(size, bool) or not isinstance(size, int) or size < 1:
        raise ConfigError(f"the demo array's size must be a positive integer, got {size!r}")
    root = Path(path).resolve()  # noqa: ASYNC240 - one-off set-up of the demo job
    try:
        root.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ConfigError(f"cannot use {str(root)!r} for the demo data: {exc}") from exc
    data = smooth_field(size)
    mb = data.nbytes / 1e6
    lines = [f"asyncarr demo: {size}x{size} float32 ({mb:.0f} MB) under {root}"]
    variants: list[tuple[str, str, dict[str, Any]]] = [
        ("v3 zstd, 256x256 chunks", "v3_zstd.zarr", {"zarr_format": 3, "compressor": "zstd"}),
        (
            "v3 sharded 2048x2048 / 256x256, zstd",
            "v3_sharded.zarr",
            {"zarr_format": 3, "compressor": "zstd", "shards": (min(2048, size), min(2048, size))},
        ),
        (
            "v2 blosc lz4",
            "v2_blosc.zarr",
            {
                "zarr_format": 2,
                # lz4 as labelled: a bare "blosc" means blosc with zstd inside (zarr-python's
                # default), several times slower to write
                "compressor": {"id": "blosc", "cname": "lz4", "clevel": 5, "shuffle": 1},
            },
        ),
    ]
    for label, name, kwargs in variants:
        url = str(root / name)
        chunks = (min(256, size), min(256, size))
        t0 = time.perf_counter()
        arr = await create_array(
            url, shape=data.shape, chunks=chunks, dtype="float32", overwrite=True, **kwargs
        )
        await arr.write(data)
        t_write = time.perf_counter() - t0
        t0 = time.perf_counter()
        reopened = await open_array(url)
        back = await reopened.read()
        t_read = time.perf_counter() - t0
        if not np.array_equal(back, data):
            raise AssertionError(f"{label}: data read back differs from data written")
        info = await reopened.info_complete()
        ratio = info.compression_ratio or 0.0
        lines.append(
            f"  {label:<40} write {mb / t_write:7.0f} MB/s   read {mb / t_read:7.0f} MB/s   "
            f"stored {info.nbytes_stored / 1e6 if info.nbytes_stored else 0:6.1f} MB (ratio {ratio:.2f})  verified"
        )
    lines.append(f"try: asyncarr info {root / 'v3_sharded.zarr'}")
    return "\n".join(lines)
