"""Round trips with tensorstore (zarr and zarr3 drivers) on the local disk."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

import asyncarr

ts = pytest.importorskip(
    "tensorstore", reason="tensorstore is a test dependency (make test installs it)"
)


def _ts_open(path: Path, driver: str, **extra: Any) -> Any:
    spec = {"driver": driver, "kvstore": {"driver": "file", "path": str(path)}, **extra}
    return ts.open(spec).result()


DATA = np.random.default_rng(7).random((33, 21)).astype("float32")


@pytest.mark.parametrize(
    "codecs",
    [
        None,
        [
            {"name": "bytes", "configuration": {"endian": "big"}},
            {"name": "gzip", "configuration": {"level": 3}},
        ],
        [
            {"name": "transpose", "configuration": {"order": [1, 0]}},
            {"name": "bytes", "configuration": {"endian": "little"}},
            {
                "name": "blosc",
                "configuration": {
                    "cname": "lz4",
                    "clevel": 5,
                    "shuffle": "shuffle",
                    "typesize": 4,
                    "blocksize": 0,
                },
            },
        ],
        [
            {"name": "bytes", "configuration": {"endian": "little"}},
            {"name": "zstd", "configuration": {"level": 3, "checksum": True}},
            {"name": "crc32c"},
        ],
    ],
    ids=["default", "big-gzip", "transpose-blosc", "zstd-crc32c"],
)
async def test_v3_we_write_tensorstore_reads(tmp_path: Path, codecs: Any) -> None:
    url = tmp_path / "a.zarr"
    arr = await asyncarr.create_array(
        str(url), shape=DATA.shape, chunks=(10, 8), dtype="float32", codecs=codecs
    )
    await arr.write(DATA)
    got = _ts_open(url, "zarr3").read().result()
    np.testing.assert_array_equal(got, DATA)


@pytest.mark.parametrize("index_location", ["start", "end"])
async def test_v3_sharded_both_ways(tmp_path: Path, index_location: str) -> None:
    ours = tmp_path / "ours.zarr"
    codecs = [
        {
            "name": "sharding_indexed",
            "configuration": {
                "chunk_shape": [5, 7],
                "codecs": [
                    {"name": "bytes", "configuration": {"endian": "little"}},
                    {"name": "zstd", "configuration": {"level": 1, "checksum": False}},
                ],
                "index_codecs": [
                    {"name": "bytes", "configuration": {"endian": "little"}},
                    {"name": "crc32c"},
                ],
                "index_location": index_location,
            },
        }
    ]
    arr = await asyncarr.create_array(
        str(ours), shape=DATA.shape, chunks=(10, 14), dtype="float32", codecs=codecs
    )
    await arr.write(DATA)
    np.testing.assert_array_equal(_ts_open(ours, "zarr3").read().result(), DATA)

    theirs = tmp_path / "theirs.zarr"
    t = ts.open(
        {
            "driver": "zarr3",
            "kvstore": {"driver": "file", "path": str(theirs)},
            "create": True,
            "metadata": {
                "shape": list(DATA.shape),
                "data_type": "float32",
                "chunk_grid": {"name": "regular", "configuration": {"chunk_shape": [10, 14]}},
                "codecs": codecs,
            },
        }
    ).result()
    t.write(DATA).result()
    back = await asyncarr.open_array(str(theirs))
    np.testing.assert_array_equal(await back.read(), DATA)
    np.testing.assert_array_equal(
        await back.read((slice(11, 12), slice(20, 21))), DATA[11:12, 20:21]
    )


@pytest.mark.parametrize("compressor", [None, "zstd", "blosc", "zlib", "gzip"])
async def test_v2_both_ways(tmp_path: Path, compressor: Any) -> None:
    ours = tmp_path / "ours.zarr"
    arr = await asyncarr.create_array(
        str(ours),
        shape=DATA.shape,
        chunks=(10, 8),
        dtype="<f4",
        zarr_format=2,
        compressor=compressor,
    )
    await arr.write(DATA)
    np.testing.assert_array_equal(_ts_open(ours, "zarr").read().result(), DATA)

    theirs = tmp_path / "theirs.zarr"
    comp = (
        None
        if compressor is None
        else {
            "id": compressor,
            **({"cname": "lz4", "clevel": 5, "shuffle": 1} if compressor == "blosc" else {}),
        }
    )
    t = ts.open(
        {
            "driver": "zarr",
            "kvstore": {"driver": "file", "path": str(theirs)},
            "create": True,
            "metadata": {
                "shape": list(DATA.shape),
                "chunks": [10, 8],
                "dtype": "<f4",
                "compressor": comp,
            },
        }
    ).result()
    t.write(DATA).result()
    np.testing.assert_array_equal(await (await asyncarr.open_array(str(theirs))).read(), DATA)


async def test_v2_big_endian_and_fortran_from_tensorstore(tmp_path: Path) -> None:
    theirs = tmp_path / "be.zarr"
    data = np.arange(60, dtype=">i4").reshape(6, 10)
    t = ts.open(
        {
            "driver": "zarr",
            "kvstore": {"driver": "file", "path": str(theirs)},
            "create": True,
            "metadata": {
                "shape": [6, 10],
                "chunks": [4, 4],
                "dtype": ">i4",
                "order": "F",
                "compressor": None,
            },
        }
    ).result()
    t.write(data).result()
    np.testing.assert_array_equal(await (await asyncarr.open_array(str(theirs))).read(), data)
