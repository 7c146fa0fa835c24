"""Shared pytest configuration.

Real-server fixtures live in ``asyncarr.testing._fixtures_*`` modules and are
loaded as plugins, so every test module (and users' own suites) can use them.
"""

from __future__ import annotations

import importlib.util
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from asyncarr.testing._procs import StoreLocation

_FIXTURE_MODULES = [
    "asyncarr.testing._fixtures_s3",
    "asyncarr.testing._fixtures_gcs",
    "asyncarr.testing._fixtures_azure",
    "asyncarr.testing._fixtures_mongodb",
    "asyncarr.testing._fixtures_http",
    "asyncarr.testing._fixtures_local",
]

pytest_plugins = [m for m in _FIXTURE_MODULES if importlib.util.find_spec(m) is not None]


@pytest.fixture(scope="session")
def zarr_implementations() -> Path:
    """The third-party Zarr v2 data in ``shared/testdata`` (beside the checkout, as in CI;
    else under ``$ASYNCARR_TESTDATA``)."""
    path = Path(__file__).resolve().parents[2] / "shared" / "testdata" / "zarr_implementations"
    if not path.exists():
        base = Path(os.environ.get("ASYNCARR_TESTDATA", "/work/shared/testdata"))
        path = base / "zarr_implementations"
    assert (path / "expected.npy").exists(), f"shared test data missing at {path}"
    return path


@pytest.fixture(params=["local", pytest.param("s3", marks=pytest.mark.servers)])
def local_or_s3_location(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[StoreLocation]:
    """A location on local disk, then one in a fresh bucket of the moto S3 server."""
    if request.param == "local":
        yield StoreLocation(url=str(tmp_path / "data"), storage_options={})
        return
    server = request.getfixturevalue("moto_s3_server")
    bucket = server.create_bucket()
    try:
        yield StoreLocation(url=f"s3://{bucket}/data", storage_options=server.storage_options())
    finally:
        server.delete_bucket(bucket)
