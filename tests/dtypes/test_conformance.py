"""The DataTypeTests conformance suite, run against every built-in data type (and the
vlen codecs through CodecTests)."""

from __future__ import annotations

import datetime
from collections.abc import Iterator
from typing import Any, ClassVar

import numpy as np
import pytest

import asyncarr
from asyncarr.abc import Codec, DataType
from asyncarr.codecs import VlenBytesCodec, VlenUtf8Codec
from asyncarr.dtypes import (
    FixedBytes,
    FixedUnicode,
    NumericDataType,
    ObjectDataType,
    RawBytes,
    StructDataType,
    TimeDataType,
    VariableBytes,
    VariableString,
    data_type_from_numpy,
)
from asyncarr.testing import CodecTests, DataTypeTests


@pytest.mark.parametrize("dtype", ["|b1", "<i2", ">u4", "<f2", ">f8", "<c8"])
class TestNumeric(DataTypeTests):
    fills = (1,)

    @pytest.fixture
    def data_type(self, dtype: str) -> DataType:
        return NumericDataType(dtype)


@pytest.mark.parametrize("byteorder", ["<", ">"])
class TestFixedUnicode(DataTypeTests):
    fills = ("héllo", "")

    @pytest.fixture
    def data_type(self, byteorder: str) -> DataType:
        return FixedUnicode(7, byteorder)


class TestFixedBytes(DataTypeTests):
    fills = (b"ab", b"\x00\x01\x02\x03\x04", "xy")

    @pytest.fixture
    def data_type(self) -> DataType:
        return FixedBytes(5)


@pytest.mark.parametrize("bits_name", [False, True])
class TestRawBytes(DataTypeTests):
    fills = (b"\x01\x02\x03", b"abcde")

    @pytest.fixture
    def data_type(self, bits_name: bool) -> DataType:
        return RawBytes(5, bits_name=bits_name)

    def expected_dtype(self, data_type: DataType, zarr_format: int) -> np.dtype[Any]:  # type: ignore[override]
        return np.dtype("V5")


@pytest.mark.parametrize(
    "spec",
    [
        ("M", "ns", 1, "<"),
        ("M", "s", 1, ">"),
        ("M", "us", 10, "<"),
        ("m", "ms", 1, "<"),
        ("m", "D", 3, ">"),
    ],
)
class TestTime(DataTypeTests):
    fills = (0, "NaT")

    @pytest.fixture
    def data_type(self, spec: tuple[str, str, int, str]) -> DataType:
        kind, unit, scale, order = spec
        return TimeDataType(kind, unit, scale, order)  # type: ignore[arg-type]


class TestDateFills(DataTypeTests):
    fills = (np.datetime64("2020-01-01"), "2021-06-01T12:00", datetime.date(1999, 12, 31), 12345)

    @pytest.fixture
    def data_type(self) -> DataType:
        return TimeDataType("M", "s")


@pytest.mark.parametrize(
    "dtype",
    [
        [("a", "<i4"), ("b", "<f8")],
        [("a", "u1"), ("b", "u1")],
        [("t", "<M8[s]"), ("s", "S3"), ("u", "<U2"), ("p", [("x", "<f4"), ("y", "u1")])],
    ],
)
class TestStruct(DataTypeTests):
    fills = (0,)

    @pytest.fixture
    def data_type(self, dtype: Any) -> DataType:
        return data_type_from_numpy(np.dtype(dtype))


class TestStructV2Only(DataTypeTests):
    """Per-field byte order and subarray fields: v2 spellings only (v3 has no subarrays)."""

    formats = (2,)
    shardable = False
    fills = ((7, [1.0, 2.0]),)

    @pytest.fixture
    def data_type(self) -> DataType:
        return StructDataType._from_v2_fields([["a", ">i4"], ["b", "<f8", [2]]])


class TestVariableString(DataTypeTests):
    fills = ("n/a", "")

    @pytest.fixture
    def data_type(self) -> DataType:
        return VariableString()


class TestVariableBytes(DataTypeTests):
    fills = (b"\x00\x01", b"")

    @pytest.fixture
    def data_type(self) -> DataType:
        return VariableBytes()


class TestJsonObjects(DataTypeTests):
    formats = (2,)
    shardable = False
    fills = (0, "x")
    create_kwargs: ClassVar[dict[str, Any]] = {"filters": [{"id": "json2"}]}

    @pytest.fixture
    def data_type(self) -> DataType:
        return ObjectDataType("json2")

    def values(self, data_type: DataType, shape: tuple[int, ...], seed: int = 0) -> Any:
        out = np.empty(int(np.prod(shape)), dtype=object)
        choices = [1, "two", [3, 4], {"five": 5}, None, 6.5, True]
        for i in range(out.size):
            out[i] = choices[(i + seed) % len(choices)]
        return out.reshape(shape)


class TestVlenArrayObjects(DataTypeTests):
    formats = (2,)
    shardable = False
    create_kwargs: ClassVar[dict[str, Any]] = {"filters": [{"id": "vlen-array", "dtype": "<i2"}]}

    @pytest.fixture
    def data_type(self) -> DataType:
        return ObjectDataType("vlen-array")

    def values(self, data_type: DataType, shape: tuple[int, ...], seed: int = 0) -> Any:
        out = np.empty(int(np.prod(shape)), dtype=object)
        for i in range(out.size):
            out[i] = np.arange((i + seed) % 4, dtype="<i2")
        return out.reshape(shape)


class TestPickledObjects(DataTypeTests):
    """Pickled object arrays, trusted for the test (see allow_pickle_decoding)."""

    formats = (2,)
    shardable = False
    fills = ("x",)
    create_kwargs: ClassVar[dict[str, Any]] = {"filters": [{"id": "pickle", "protocol": 5}]}

    @pytest.fixture(autouse=True)
    def trusted(self) -> Iterator[None]:
        previous = asyncarr.allow_pickle_decoding(True)
        try:
            yield
        finally:
            asyncarr.allow_pickle_decoding(previous)

    @pytest.fixture
    def data_type(self) -> DataType:
        return ObjectDataType("pickle")

    def values(self, data_type: DataType, shape: tuple[int, ...], seed: int = 0) -> Any:
        return TestJsonObjects.values(self, data_type, shape, seed)  # type: ignore[arg-type]


class TestVlenUtf8Codec(CodecTests):
    dtypes = ("T",)

    @pytest.fixture
    def codec(self) -> Codec:
        return VlenUtf8Codec()


class TestVlenBytesCodec(CodecTests):
    dtypes = ("O",)

    @pytest.fixture
    def codec(self) -> Codec:
        return VlenBytesCodec()
