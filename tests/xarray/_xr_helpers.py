"""Datasets written by xarray's own Zarr engine, and copies of them on S3."""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import xarray as xr

import asyncarr
from asyncarr.testing._procs import StoreLocation


def sample_dataset() -> Any:
    """Numbers of several kinds, CF-encoded times, a packed (scale/offset) variable, NaNs
    and a fill value, several chunks per variable, attributes everywhere."""
    rng = np.random.default_rng(7)
    temp = rng.standard_normal((12, 6, 5)).astype("float32")
    temp[0, 0, 0] = np.nan
    ds = xr.Dataset(
        {
            "temp": (("time", "y", "x"), temp, {"units": "K", "long_name": "temperature"}),
            "count": (("y", "x"), np.arange(30, dtype="int16").reshape(6, 5)),
            "flag": (("x",), np.array([True, False, True, True, False])),
            "packed": (("time",), np.linspace(0.0, 1.0, 12)),
            "elapsed": (("time",), pd.to_timedelta(np.arange(12), unit="h")),
        },
        coords={
            "time": pd.date_range("2001-02-03", periods=12, freq="6h"),
            "y": np.linspace(-1.0, 1.0, 6),
            "x": np.arange(5, dtype="int64"),
        },
        attrs={"title": "sample", "version": 3, "ratios": [0.5, 0.25]},
    )
    ds["packed"].encoding = {
        "scale_factor": 0.01,
        "add_offset": 1.0,
        "dtype": "int16",
        "_FillValue": -1,
    }
    ds["packed"][3] = np.nan
    ds["count"].encoding = {"_FillValue": 7}
    for name in ("temp", "count", "packed"):
        ds[name].encoding["chunks"] = tuple(max(1, n // 2) for n in ds[name].shape)
    return ds


def write_with_xarray(ds: Any, path: Path, **kwargs: Any) -> str:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # zarr-python's notes on v3 consolidated metadata
        ds.to_zarr(path, mode="w", **kwargs)
    return str(path)


def open_with_zarr(path: str, **kwargs: Any) -> Any:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return xr.open_dataset(path, engine="zarr", **kwargs)


async def upload_tree(local: str, location: StoreLocation) -> None:
    """Copy a local Zarr directory, file by file, under ``location`` (through asyncarr's
    own stores)."""
    async with (
        asyncarr.store_from_url(local, read_only=True) as src,
        asyncarr.store_from_url(location.url, storage_options=location.storage_options) as dst,
    ):
        async for key in src.list_prefix(""):
            data = await src.get(key)
            assert data is not None
            await dst.set(key, data)
