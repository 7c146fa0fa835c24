"""A dataset written by xarray (v2 and v3, consolidated) with string coordinates, CF-encoded
times and packed integers: asyncarr's own API lists it and reads every variable exactly,
one by one and through the group."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pytest

import asyncarr
import asyncarr.sync as az
from asyncarr.testing import assert_same_values

xr = pytest.importorskip("xarray")
pd = pytest.importorskip("pandas")
zarr = pytest.importorskip("zarr")

STATIONS = ["Zürich", "Genève", "Lugano", "Sion"]


def _dataset() -> object:
    rng = np.random.default_rng(4)
    temp = rng.normal(15, 5, (6, 4))
    temp[1, 1] = np.nan
    ds = xr.Dataset(
        {
            "temp": (("time", "station"), temp),
            "flag": (
                ("time",),
                np.array(["ok", "", "late", "ok", "sensor fault", "ok"], dtype=object),
            ),
        },
        coords={
            "time": pd.date_range("2020-01-01", periods=6, freq="6h"),
            "station": np.array(STATIONS, dtype=object),  # variable-length strings
            "label": ("station", np.array(["a", "bb", "ccc", "dddd"], dtype="<U4")),  # fixed
            "code": ("station", np.array([b"ZRH", b"GVA", b"LUG", b"SIR"])),  # bytes
            "lag": ("time", pd.to_timedelta([0, 1, 2, 3, 4, 5], unit="min")),
        },
        attrs={"title": "stations"},
    )
    ds["temp"].encoding = {
        "dtype": "int16",
        "scale_factor": 0.01,
        "add_offset": 10.0,
        "_FillValue": -9999,
    }
    ds["temp"] = ds["temp"].chunk({"time": 4})
    return ds


@pytest.fixture(scope="module", params=[2, 3], ids=["v2", "v3"])
def written(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> tuple[Path, int]:
    path = tmp_path_factory.mktemp("xr") / "ds.zarr"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        _dataset().to_zarr(str(path), zarr_format=request.param, consolidated=True, mode="w")  # type: ignore[attr-defined]
    return path, request.param


def _raw(path: Path, name: str) -> np.ndarray:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return np.asarray(zarr.open_array(str(path / name), mode="r")[...])


async def test_every_variable_reads_exactly(written: tuple[Path, int]) -> None:
    path, fmt = written
    for name in ("temp", "flag", "time", "station", "label", "code", "lag"):
        arr = await asyncarr.open_array(str(path), path=name)
        assert arr.zarr_format == fmt
        got = await arr.read()
        expected = _raw(path, name)
        assert_same_values(got, expected.astype(got.dtype))
    station = await (await asyncarr.open_array(str(path), path="station")).read()
    assert station.tolist() == STATIONS
    temp = await asyncarr.open_array(str(path), path="temp")
    assert temp.dtype == np.dtype("int16") and temp.attrs["scale_factor"] == 0.01
    packed = await temp.read()
    decoded = np.where(packed == -9999, np.nan, packed * 0.01 + 10.0)
    reference = _dataset()["temp"].values  # type: ignore[attr-defined]
    np.testing.assert_allclose(decoded, reference, atol=0.006)
    time = await asyncarr.open_array(str(path), path="time")
    assert "since" in time.attrs["units"]


def test_the_group_lists_and_reads_every_variable(written: tuple[Path, int]) -> None:
    path, _fmt = written
    with az.open_group(str(path)) as group:
        assert group.metadata.consolidated is not None
        names = sorted(group.array_keys())
        assert names == ["code", "flag", "label", "lag", "station", "temp", "time"]
        for name, arr in group.arrays():
            assert isinstance(arr, az.Array)
            got = arr[...]
            assert_same_values(got, _raw(path, name).astype(got.dtype))
        assert "station" in group.tree()
        assert group["flag"][4] == "sensor fault"


def test_xarray_reads_it_back_as_written(written: tuple[Path, int]) -> None:
    """The dataset as xarray decodes it from the data asyncarr reads (a sanity check of
    the fixture: the same values, strings and times)."""
    path, _fmt = written
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ds = xr.open_zarr(str(path), consolidated=True)
        assert list(ds["station"].values) == STATIONS
        assert str(ds["time"].values[1]) == "2020-01-01T06:00:00.000000000"
