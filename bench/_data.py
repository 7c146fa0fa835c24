"""Benchmark data: the generated field, the datasets on disk and the workloads.

Every dataset is written once, with zarr-python (the reference
implementation), into ``bench/results/data/<dataset>``; all tools then read
those same files. A stamp file records the generator version and the
dataset spec, so a later run reuses the data when nothing changed.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

__all__ = [
    "DATASETS",
    "RESULTS_DIR",
    "SEED",
    "WORKLOADS",
    "Dataset",
    "Workload",
    "chunk_files",
    "ensure_dataset",
    "make_data",
    "random_chunks",
]

SEED = 20240917
GENERATOR_VERSION = 1
RESULTS_DIR = Path(__file__).resolve().parent / "results"
DATA_DIR = RESULTS_DIR / "data"


@dataclass(frozen=True)
class Dataset:
    """One array on disk: shape, chunking and codecs, in one Zarr format."""

    name: str
    shape: tuple[int, int]
    chunks: tuple[int, int]
    codec: str
    """``zstd`` (level 3, no checksum) or ``blosc`` (lz4, clevel 5, byte shuffle)."""
    zarr_format: int = 3
    shards: tuple[int, int] | None = None
    rectilinear: bool = False
    """Stored with a rectilinear chunk grid: each axis's edges listed (all ``chunks``
    long, so the same chunks and data as the regular dataset of the same shape)."""

    @property
    def path(self) -> Path:
        return DATA_DIR / self.name

    @property
    def nbytes(self) -> int:
        return int(np.prod(self.shape)) * 4

    @property
    def inner_grid(self) -> tuple[int, int]:
        """Number of (inner) chunks along each axis."""
        return (self.shape[0] // self.chunks[0], self.shape[1] // self.chunks[1])

    @property
    def nchunks(self) -> int:
        g = self.inner_grid
        return g[0] * g[1]

    @property
    def zarr_chunks(self) -> Any:
        """``chunks`` as zarr-python's ``create_array`` takes them."""
        if not self.rectilinear:
            return self.chunks
        return [[c] * (n // c) for n, c in zip(self.shape, self.chunks, strict=True)]

    def spec_hash(self) -> str:
        spec = asdict(self)
        if not self.rectilinear:  # (datasets written before the field keep their stamp)
            del spec["rectilinear"]
        doc = {"dataset": spec, "generator": GENERATOR_VERSION, "seed": SEED}
        return hashlib.sha256(json.dumps(doc, sort_keys=True).encode()).hexdigest()[:16]

    def metadata_files(self) -> list[str]:
        return [".zarray"] if self.zarr_format == 2 else ["zarr.json"]


DATASETS: dict[str, Dataset] = {
    d.name: d
    for d in [
        Dataset("zstd-4096-c256", (4096, 4096), (256, 256), "zstd"),
        Dataset("zstd-4096-c256-rect", (4096, 4096), (256, 256), "zstd", rectilinear=True),
        Dataset("blosc-4096-c256", (4096, 4096), (256, 256), "blosc"),
        Dataset("v2blosc-4096-c256", (4096, 4096), (256, 256), "blosc", zarr_format=2),
        Dataset("sharded-4096-s2048-c256", (4096, 4096), (256, 256), "zstd", shards=(2048, 2048)),
        Dataset("zstd-8192-c64", (8192, 8192), (64, 64), "zstd"),
    ]
}


@dataclass(frozen=True)
class Workload:
    """A named benchmark: a dataset, where it lives, and which operations run."""

    name: str
    title: str
    dataset: str
    store: str = "local"
    """``local``, ``memory``, ``s3`` or ``layered`` (bench/_layered.py: its own runs)."""
    ops: tuple[str, ...] = ("read", "write", "random")
    """``ingest``: copied from local disk into S3 (:mod:`bench._ingest`)."""
    s3_server: str | None = None
    """``moto`` or ``seaweedfs`` for S3 workloads."""
    latency_ms: float = 0.0
    """Delay added to every request by the loopback proxy (S3 only)."""
    dask: str = ""
    """``threads`` or ``cluster`` (two worker processes): the dask scheduler of a ``sum``."""
    tags: tuple[str, ...] = field(default_factory=tuple)

    @property
    def ds(self) -> Dataset:
        return DATASETS[self.dataset]


WORKLOADS: dict[str, Workload] = {
    w.name: w
    for w in [
        Workload("zstd", "4096² f4, 256² chunks, zstd-3", "zstd-4096-c256", tags=("quick",)),
        Workload(
            "zstd-rect",
            "zstd, as a rectilinear grid (the same 256² chunks and data)",
            "zstd-4096-c256-rect",
        ),
        Workload("blosc", "4096² f4, 256² chunks, blosc lz4+shuffle", "blosc-4096-c256"),
        Workload("v2-blosc", "4096² f4, 256² chunks, Zarr v2 blosc", "v2blosc-4096-c256"),
        Workload("sharded", "4096² f4, shards 2048² / inner 256², zstd", "sharded-4096-s2048-c256"),
        Workload("small-chunks", "8192² f4, 64² chunks (16,384), zstd", "zstd-8192-c64"),
        Workload(
            "memory",
            "in-memory store, 256 chunks, zstd",
            "zstd-4096-c256",
            store="memory",
            tags=("quick",),
        ),
        Workload(
            "dask-threads",
            "dask .sum().compute(), threaded scheduler, 256 chunks, zstd",
            "zstd-4096-c256",
            ops=("sum",),
            dask="threads",
        ),
        Workload(
            "dask-cluster",
            "dask .sum().compute(), LocalCluster of 2 worker processes, 256 chunks, zstd",
            "zstd-4096-c256",
            ops=("sum",),
            dask="cluster",
        ),
        Workload(
            "layered",
            "layered container (1 and 10 layers) vs the plain store: random chunks, a 1% commit",
            "zstd-4096-c256",
            store="layered",
            ops=("random", "commit"),
        ),
        Workload(
            "s3-moto",
            "S3 moto, 256 chunks, zstd",
            "zstd-4096-c256",
            store="s3",
            ops=("read",),
            s3_server="moto",
        ),
        Workload(
            "s3-moto-20ms",
            "S3 moto +20 ms/request, 256 chunks, zstd",
            "zstd-4096-c256",
            store="s3",
            ops=("read",),
            s3_server="moto",
            latency_ms=20.0,
            tags=("quick",),
        ),
        Workload(
            "s3-seaweedfs",
            "S3 SeaweedFS, 256 chunks, zstd",
            "zstd-4096-c256",
            store="s3",
            ops=("read",),
            s3_server="seaweedfs",
        ),
        Workload(
            "s3-seaweedfs-20ms",
            "S3 SeaweedFS +20 ms/request, 256 chunks, zstd",
            "zstd-4096-c256",
            store="s3",
            ops=("read",),
            s3_server="seaweedfs",
            latency_ms=20.0,
        ),
        Workload(
            "s3-ingest-seaweedfs",
            "local -> S3 SeaweedFS, 256 chunks, zstd",
            "zstd-4096-c256",
            store="s3",
            ops=("ingest",),
            s3_server="seaweedfs",
            latency_ms=0.0,
        ),
        Workload(
            "s3-ingest-seaweedfs-20ms",
            "local -> S3 SeaweedFS +20 ms/request, 256 chunks, zstd",
            "zstd-4096-c256",
            store="s3",
            ops=("ingest",),
            s3_server="seaweedfs",
            latency_ms=20.0,
        ),
        Workload(
            "s3-ingest-moto",
            "local -> S3 moto, 256 chunks, zstd",
            "zstd-4096-c256",
            store="s3",
            ops=("ingest",),
            s3_server="moto",
            latency_ms=0.0,
        ),
        Workload(
            "s3-ingest-moto-20ms",
            "local -> S3 moto +20 ms/request, 256 chunks, zstd",
            "zstd-4096-c256",
            store="s3",
            ops=("ingest",),
            s3_server="moto",
            latency_ms=20.0,
        ),
        Workload(
            "s3-ingest-sharded-seaweedfs",
            "local -> S3 SeaweedFS, 4 shards of 64 chunks, zstd",
            "sharded-4096-s2048-c256",
            store="s3",
            ops=("ingest",),
            s3_server="seaweedfs",
            latency_ms=0.0,
        ),
        Workload(
            "s3-ingest-sharded-seaweedfs-20ms",
            "local -> S3 SeaweedFS +20 ms/request, 4 shards of 64 chunks, zstd",
            "sharded-4096-s2048-c256",
            store="s3",
            ops=("ingest",),
            s3_server="seaweedfs",
            latency_ms=20.0,
        ),
        Workload(
            "s3-ingest-sharded-moto",
            "local -> S3 moto, 4 shards of 64 chunks, zstd",
            "sharded-4096-s2048-c256",
            store="s3",
            ops=("ingest",),
            s3_server="moto",
            latency_ms=0.0,
        ),
        Workload(
            "s3-ingest-sharded-moto-20ms",
            "local -> S3 moto +20 ms/request, 4 shards of 64 chunks, zstd",
            "sharded-4096-s2048-c256",
            store="s3",
            ops=("ingest",),
            s3_server="moto",
            latency_ms=20.0,
        ),
    ]
}


def make_data(shape: tuple[int, int], seed: int = SEED) -> np.ndarray[Any, np.dtype[np.float32]]:
    """A smooth field plus Gaussian noise (float32), the same for a given seed."""
    rng = np.random.default_rng(seed)
    y = np.linspace(0.0, 5.0 * np.pi, shape[0], dtype=np.float32)
    x = np.linspace(0.0, 7.0 * np.pi, shape[1], dtype=np.float32)
    out = rng.standard_normal(shape, dtype=np.float32)
    out *= np.float32(0.05)
    out += (np.float32(10.0) * np.sin(y))[:, None] * np.cos(x)[None, :]
    out += (np.float32(0.5) * y)[:, None]
    return out


def _zarr_codecs(ds: Dataset) -> dict[str, Any]:
    """zarr-python ``create_array`` keyword arguments for ``ds``'s codecs."""
    import numcodecs
    from zarr.codecs import BloscCodec, ZstdCodec

    if ds.zarr_format == 2:
        if ds.codec == "blosc":
            comp: Any = numcodecs.Blosc(cname="lz4", clevel=5, shuffle=numcodecs.Blosc.SHUFFLE)
        else:
            comp = numcodecs.Zstd(level=3)
        return {"compressors": comp, "filters": None}
    if ds.codec == "blosc":
        return {
            "compressors": BloscCodec(cname="lz4", clevel=5, shuffle="shuffle", typesize=4),
            "filters": None,
        }
    return {"compressors": ZstdCodec(level=3, checksum=False), "filters": None}


def ensure_dataset(ds: Dataset, data: np.ndarray[Any, Any], *, log: Any = print) -> Path:
    """Write ``ds`` with zarr-python unless an identical copy is already on disk."""
    stamp = ds.path / ".bench-stamp"
    want = ds.spec_hash()
    if stamp.is_file() and stamp.read_text().strip() == want:
        return ds.path
    import zarr

    log(f"  writing dataset {ds.name} with zarr-python ...")
    if ds.path.exists():
        shutil.rmtree(ds.path)
    ds.path.parent.mkdir(parents=True, exist_ok=True)
    with zarr.config.set({"async.concurrency": 64, "array.rectilinear_chunks": True}):
        arr = zarr.create_array(
            store=str(ds.path),
            shape=ds.shape,
            chunks=ds.zarr_chunks,
            shards=ds.shards,
            dtype="float32",
            zarr_format=ds.zarr_format,  # type: ignore[arg-type]
            fill_value=0.0,
            **_zarr_codecs(ds),
        )
        arr[...] = data
    stamp.write_text(want + "\n")
    return ds.path


def chunk_files(root: Path, ds: Dataset) -> Iterator[Path]:
    """Every stored chunk (or shard) file of the dataset at ``root``."""
    skip = {".zarray", ".zattrs", ".zgroup", "zarr.json", ".bench-stamp"}
    for dirpath, _dirs, files in os.walk(root):
        for f in files:
            if f not in skip:
                yield Path(dirpath) / f


def random_chunks(ds: Dataset, n: int = 200, seed: int = SEED) -> list[tuple[slice, slice]]:
    """``n`` random (inner) chunk selections, the same list for every tool."""
    rng = np.random.default_rng(seed + 1)
    gy, gx = ds.inner_grid
    flat = rng.choice(gy * gx, size=min(n, gy * gx), replace=False)
    cy, cx = ds.chunks
    out = []
    for f in flat:
        i, j = divmod(int(f), gx)
        out.append((slice(i * cy, (i + 1) * cy), slice(j * cx, (j + 1) * cx)))
    return out
