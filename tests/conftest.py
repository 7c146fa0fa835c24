"""Shared pytest configuration.

Real-server fixtures live in ``asyncarr.testing._fixtures_*`` modules and are
loaded as plugins, so every test module (and users' own suites) can use them.
"""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

import pytest

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
