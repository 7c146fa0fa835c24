"""``asyncarr.xarray.to_zarr`` writes what ``Dataset.to_zarr`` writes: xarray's
``open_zarr`` reads both identically (numpy and dask-backed datasets, appends, regions,
groups), on local disk and on S3 (moto), and bad requests are refused by name."""

from __future__ import annotations

import asyncio
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import xarray as xr
from _xr_helpers import sample_dataset, write_with_xarray

from asyncarr.errors import ConfigError, ContainsGroupError, SelectionError
from asyncarr.testing._procs import StoreLocation
from asyncarr.xarray import to_zarr

COMPARED_ENCODING = (
    "chunks",
    "dtype",
    "units",
    "calendar",
    "scale_factor",
    "add_offset",
    "_FillValue",
    "fill_value",
)


def _open(path: str | Path, **kwargs: Any) -> Any:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return xr.open_zarr(path, **kwargs).load()


def _same_as_xarray_wrote(ours: Path, theirs: Path) -> None:
    got, want = _open(ours), _open(theirs)
    xr.testing.assert_identical(got, want)
    for name, var in want.variables.items():
        for key in COMPARED_ENCODING:
            assert repr(got[name].encoding.get(key)) == repr(var.encoding.get(key)), (name, key)


@pytest.mark.parametrize("fmt", [2, 3])
def test_writes_what_xarray_writes(tmp_path: Path, fmt: int) -> None:
    ds = sample_dataset()
    theirs = Path(write_with_xarray(ds, tmp_path / "theirs.zarr", zarr_format=fmt))
    to_zarr(ds, tmp_path / "ours.zarr", zarr_format=fmt)
    _same_as_xarray_wrote(tmp_path / "ours.zarr", theirs)
    # dask-backed, in blocks that do not match the chunks: written block by block, exact
    to_zarr(ds.chunk({"time": 5, "x": 3}), tmp_path / "ours.zarr", mode="w", zarr_format=fmt)
    xr.testing.assert_identical(_open(tmp_path / "ours.zarr"), _open(theirs))
    assert _open(tmp_path / "ours.zarr").elapsed.encoding["chunks"] == (5,)  # the dask chunks
    # what asyncarr's engine reads back is what xarray's reads, and copies lazily
    with xr.open_dataset(tmp_path / "ours.zarr", engine="asyncarr") as lazy:
        to_zarr(lazy, tmp_path / "copy.zarr", zarr_format=fmt)
        xr.testing.assert_identical(lazy.load(), _open(theirs))
    xr.testing.assert_identical(_open(tmp_path / "copy.zarr"), _open(theirs))


@pytest.mark.parametrize("fmt", [2, 3])
def test_append_and_regions(tmp_path: Path, fmt: int) -> None:
    ds = sample_dataset()
    full = _open(write_with_xarray(ds, tmp_path / "full.zarr", zarr_format=fmt))
    path = tmp_path / "a.zarr"
    to_zarr(ds.isel(time=slice(0, 5)), path, zarr_format=fmt)
    to_zarr(ds.isel(time=slice(5, 9)).chunk({"time": 2}), path, append_dim="time")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # xarray appends to what asyncarr wrote
        ds.isel(time=slice(9, None)).to_zarr(path, append_dim="time")
    xr.testing.assert_identical(_open(path), full)

    # regions: explicit slices, then found from the stored coordinates
    zeros = ds.copy(deep=True)
    zeros["temp"][:] = 0.0
    region = zeros.isel(time=slice(3, 7)).drop_vars(["count", "flag"])
    to_zarr(region, path, region={"time": slice(3, 7)})
    got = _open(path)
    assert (got.temp.isel(time=slice(3, 7)) == 0).all()
    xr.testing.assert_identical(got.isel(time=slice(0, 3)), full.isel(time=slice(0, 3)))
    to_zarr(ds.isel(time=slice(3, 7)).drop_vars(["count", "flag"]), path, region="auto")
    xr.testing.assert_identical(_open(path), full)


def test_groups_and_s3(tmp_path: Path, moto_location: StoreLocation) -> None:
    ds = sample_dataset()
    want = _open(write_with_xarray(ds, tmp_path / "w.zarr", zarr_format=3))
    opts = moto_location.storage_options
    to_zarr(ds, moto_location.url, storage_options=opts)
    to_zarr(
        ds.isel(time=slice(0, 2)),
        moto_location.url,
        group="sub/two",
        mode="a",
        storage_options=opts,
    )
    url = moto_location.url
    with xr.open_dataset(url, engine="asyncarr", storage_options=opts, consolidated=True) as got:
        xr.testing.assert_identical(got.load(), want)
    with xr.open_dataset(
        url, engine="asyncarr", storage_options=opts, group="sub/two", consolidated=True
    ) as sub:
        xr.testing.assert_identical(sub.load(), want.isel(time=slice(0, 2)))


def test_bad_requests_are_refused_by_name(tmp_path: Path) -> None:
    ds = sample_dataset()
    path = tmp_path / "b.zarr"
    to_zarr(ds, path)
    with pytest.raises(ContainsGroupError, match="mode='w' to replace"):
        to_zarr(ds, path)
    with pytest.raises(ConfigError, match="unexpected encoding for 'temp': \\['compressors'\\]"):
        to_zarr(ds, path, mode="w", encoding={"temp": {"compressors": None}})
    with pytest.raises(ConfigError, match=r"fill_value.*_FillValue for a v2"):
        to_zarr(ds, tmp_path / "v2.zarr", zarr_format=2, encoding={"temp": {"fill_value": 1.0}})
    with pytest.raises(
        ConfigError, match="names variables the dataset does not have: \\['nope'\\]"
    ):
        to_zarr(ds, path, mode="w", encoding={"nope": {}})
    with pytest.raises(
        ConfigError, match="mode='r\\+' writes only into existing arrays; \\['new'\\]"
    ):
        to_zarr(ds.assign(new=ds["count"] * 2), path, mode="r+")
    with pytest.raises(ConfigError, match="append_dim='depth' is not a dimension"):
        to_zarr(ds, path, append_dim="depth")
    with pytest.raises(SelectionError, match=r"'temp' has shape \(2, 6, 5\).*append_dim="):
        to_zarr(ds.isel(time=slice(0, 2)), path, mode="a")
    with pytest.raises(ConfigError, match="have none of these dimensions"):
        to_zarr(ds.isel(time=slice(0, 2)), path, region={"time": slice(0, 2)})
    shifted = ds.isel(time=slice(0, 2)).drop_vars(["count", "flag"])
    with pytest.raises(SelectionError, match="not in the stored coordinate"):
        to_zarr(
            shifted.assign_coords(time=shifted.time + np.timedelta64(1, "h")), path, region="auto"
        )
    extra = shifted.assign(extra=shifted["temp"] * 2)
    with pytest.raises(ConfigError, match=r"fills existing arrays; \['extra'\]"):
        to_zarr(extra, path, region={"time": slice(0, 2)}, mode="a")
    with pytest.raises(ConfigError, match="writes an xarray Dataset, got DataArray"):
        to_zarr(ds["temp"], path, mode="w")  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="equal chunks"):
        to_zarr(ds.chunk({"time": (2, 5, 5)}), path, mode="w")
    xr.testing.assert_identical(
        _open(path).isel(time=0), _open(write_with_xarray(ds, tmp_path / "x.zarr")).isel(time=0)
    )


async def test_to_zarr_from_a_running_event_loop(tmp_path: Path) -> None:
    """Called (in a thread) while the caller's loop runs, as notebooks do."""
    ds = sample_dataset()
    await asyncio.to_thread(to_zarr, ds, tmp_path / "l.zarr")
    xr.testing.assert_identical(
        _open(tmp_path / "l.zarr"), _open(write_with_xarray(ds, tmp_path / "x.zarr"))
    )
