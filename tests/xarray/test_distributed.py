"""The xarray engine and writer under dask.distributed: a cluster of two worker
processes (started here, on 127.0.0.1) reads and writes through pickled asyncarr arrays
on S3 (moto), exactly."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import xarray as xr
from _xr_helpers import open_with_zarr, sample_dataset, write_with_xarray

from asyncarr.testing._procs import StoreLocation
from asyncarr.xarray import to_zarr

distributed = pytest.importorskip("dask.distributed")


@pytest.fixture(scope="module")
def client() -> Iterator[Any]:
    with (
        distributed.LocalCluster(
            n_workers=2,
            threads_per_worker=1,
            processes=True,
            host="127.0.0.1",
            dashboard_address=None,
        ) as cluster,
        distributed.Client(cluster) as client,
    ):
        yield client


@pytest.mark.usefixtures("client")
def test_write_and_read_on_worker_processes(tmp_path: Path, moto_location: StoreLocation) -> None:
    ds = sample_dataset()
    want = open_with_zarr(write_with_xarray(ds, tmp_path / "want.zarr", zarr_format=3)).load()
    url, options = moto_location.url, moto_location.storage_options
    # dask blocks that straddle chunks: written by the workers, partial chunks safely
    to_zarr(ds.chunk({"time": 5, "y": 4}), url, storage_options=options)
    with xr.open_dataset(url, engine="asyncarr", storage_options=options, chunks={}) as got:
        xr.testing.assert_identical(got.compute(), want)
        xr.testing.assert_allclose(got.temp.mean("time").compute(), want.temp.mean("time"))
