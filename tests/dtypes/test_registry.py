"""Data types are an extension point: a registered type is read and written everywhere,
by name (v3), by v2 spelling and by numpy dtype; unregistering restores the built-ins."""

from __future__ import annotations

import json
from typing import Any, ClassVar, Self

import numpy as np
import pytest

import asyncarr
from asyncarr.abc import DataType, ZarrFormat
from asyncarr.dtypes import data_type_from_numpy, data_type_from_user
from asyncarr.errors import ConfigError, MetadataError, UnknownDataTypeError
from asyncarr.stores import MemoryStore

RGB = np.dtype([("r", "u1"), ("g", "u1"), ("b", "u1")])


class Rgb(DataType):
    """A colour: three bytes, spelled "example.rgb" (v3) and "|V3rgb" (v2, made up)."""

    v3_names: ClassVar[tuple[str, ...]] = ("example.rgb",)

    @property
    def dtype(self) -> np.dtype[Any]:
        return RGB

    @property
    def name(self) -> str:
        return "example.rgb"

    @classmethod
    def from_json(
        cls, value: object, *, zarr_format: ZarrFormat, object_codec: str | None = None
    ) -> Self | None:
        return cls() if value == ("example.rgb" if zarr_format == 3 else "|V3rgb") else None

    @classmethod
    def from_numpy(cls, dtype: np.dtype[Any]) -> Self | None:
        return cls() if dtype == RGB else None

    def to_json(self, zarr_format: ZarrFormat) -> Any:
        return "example.rgb" if zarr_format == 3 else "|V3rgb"

    def default_fill(self) -> Any:
        return np.zeros((), RGB)[()]

    def fill_from_json(self, value: object, *, zarr_format: ZarrFormat) -> Any:
        if not (isinstance(value, list) and len(value) == 3):
            raise MetadataError(f"an rgb fill value is [r, g, b], got {value!r}")
        return np.array(tuple(value), RGB)[()]

    def fill_to_json(self, value: Any, *, zarr_format: ZarrFormat) -> Any:
        return [int(v) for v in np.asarray(value, RGB).item()]

    def cast_fill(self, value: Any) -> Any:
        return np.array(tuple(value), RGB)[()]


@pytest.fixture
def rgb() -> Any:
    asyncarr.register_data_type(Rgb)
    try:
        yield Rgb
    finally:
        asyncarr.unregister_data_type("example.rgb")


@pytest.mark.usefixtures("rgb")
@pytest.mark.parametrize("zarr_format", [2, 3])
async def test_a_registered_type_is_written_and_read(zarr_format: int) -> None:
    store = MemoryStore()
    arr = await asyncarr.create_array(
        store, shape=(4,), dtype=RGB, fill_value=(1, 2, 3), zarr_format=zarr_format
    )
    assert isinstance(arr.metadata.data_type, Rgb)
    await arr.write(np.array([(9, 8, 7)], RGB), slice(0, 1))
    doc = json.loads(await store.get("zarr.json" if zarr_format == 3 else ".zarray"))  # type: ignore[arg-type]
    assert doc["data_type" if zarr_format == 3 else "dtype"] in ("example.rgb", "|V3rgb")
    assert doc["fill_value"] == [1, 2, 3]
    again = await asyncarr.open_array(store)
    assert (await again.read()).tolist() == [(9, 8, 7), (1, 2, 3), (1, 2, 3), (1, 2, 3)]
    assert "example.rgb" in asyncarr.registered_data_types()


async def test_unregistering_restores_the_built_ins(rgb: Any) -> None:
    store = MemoryStore()
    await asyncarr.create_array(store, shape=(2,), dtype=RGB)
    asyncarr.unregister_data_type("example.rgb")
    with pytest.raises(UnknownDataTypeError, match=r"example\.rgb"):
        await asyncarr.open_array(store)
    assert isinstance(data_type_from_numpy(RGB), asyncarr.dtypes.StructDataType)
    asyncarr.register_data_type(rgb)  # (the fixture unregisters it again)


def test_names_are_not_taken_silently(rgb: Any) -> None:
    class Other(Rgb):
        pass

    with pytest.raises(ConfigError, match="already registered"):
        asyncarr.register_data_type(Other)
    with pytest.raises(ConfigError, match="not a subclass"):
        asyncarr.register_data_type(int)  # type: ignore[arg-type]
    asyncarr.register_data_type(Other, replace=True)
    assert isinstance(data_type_from_user("example.rgb"), Other)
    assert type(data_type_from_numpy(RGB)) is Other  # Rgb, with no name left, answers nothing


def test_user_spellings_write_zarr_pythons_names() -> None:
    assert data_type_from_user("bytes").to_json(3) == "variable_length_bytes"
    assert data_type_from_user(bytes).to_json(3) == "variable_length_bytes"
    assert data_type_from_user("str").to_json(3) == "string"
    assert data_type_from_user("string").to_json(2) == "|O"


def test_a_built_in_can_be_replaced_and_restored() -> None:
    class LoudString(asyncarr.dtypes.VariableString):
        pass

    asyncarr.register_data_type(LoudString, replace=True)
    try:
        assert isinstance(data_type_from_user("string"), LoudString)
    finally:
        asyncarr.unregister_data_type("string")
        asyncarr.unregister_data_type("variable_length_utf8")
    assert type(data_type_from_user("string")) is asyncarr.dtypes.VariableString
    assert type(data_type_from_user(str)) is asyncarr.dtypes.VariableString


def test_a_replaced_class_answers_nothing_once_its_names_are_gone() -> None:
    class Other(Rgb):
        pass

    asyncarr.register_data_type(Rgb)
    asyncarr.register_data_type(Other, replace=True)
    asyncarr.unregister_data_type("example.rgb")
    assert isinstance(data_type_from_numpy(RGB), asyncarr.dtypes.StructDataType)
    with pytest.raises(ConfigError):
        data_type_from_user("example.rgb")
