"""Fixtures of the xarray tests: datasets written by xarray, an S3 bucket on moto. This
directory's helper module is importable by name, whatever pytest's import mode."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from asyncarr.testing._procs import StoreLocation
from asyncarr.testing._servers_s3 import S3TestServer

_HERE = str(Path(__file__).resolve().parent)
if _HERE not in sys.path:
    sys.path.insert(0, _HERE)

from _xr_helpers import sample_dataset, write_with_xarray  # noqa: E402  (after the path)


@pytest.fixture(scope="module")
def written(tmp_path_factory: pytest.TempPathFactory) -> dict[tuple[int, bool], str]:
    """The sample dataset written by xarray: v2 and v3, consolidated or not."""
    root = tmp_path_factory.mktemp("xr")
    ds = sample_dataset()
    return {
        (fmt, consolidated): write_with_xarray(
            ds, root / f"v{fmt}-{consolidated}.zarr", zarr_format=fmt, consolidated=consolidated
        )
        for fmt in (2, 3)
        for consolidated in (True, False)
    }


@pytest.fixture
def moto_location(moto_s3_server: S3TestServer) -> Iterator[StoreLocation]:
    bucket = moto_s3_server.create_bucket()
    try:
        yield StoreLocation(
            url=f"s3://{bucket}/data.zarr", storage_options=moto_s3_server.storage_options()
        )
    finally:
        moto_s3_server.delete_bucket(bucket)
