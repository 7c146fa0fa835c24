"""``DataTypeTests``: the conformance suite every data type must pass.

Subclass it in a test module and provide a ``data_type`` fixture::

    class TestMyType(DataTypeTests):
        fills = (b"x",)                    # user fill values to try

        @pytest.fixture
        def data_type(self):
            return MyType(...)

Each data type is checked for its metadata spellings (round trip through JSON text,
registry lookup, pickling), its fill values (default and given, in both formats), bad
spellings and fill values (a ``MetadataError``, never another exception), and whole
arrays: written and read back through ``create_array`` in every format it has, sharded
and not, with never-written chunks reading as the fill value.
"""

from __future__ import annotations

import json
import pickle
from typing import Any, ClassVar

import numpy as np
import pytest

import asyncarr
from asyncarr.abc import DataType, NDArray, ZarrFormat
from asyncarr.dtypes import data_type_from_json, registered_data_types
from asyncarr.errors import MetadataError
from asyncarr.stores import MemoryStore
from asyncarr.testing._codec_tests import sample_array

__all__ = ["DataTypeTests", "assert_same_values", "sample_values"]

_GARBAGE_FILLS: tuple[Any, ...] = (
    [],
    {},
    {"no such field": 1},
    "~~~ not base64 ~~~",
    1.5,
    True,
    [1, "a"],
    [[[[[]]]]],
    "x" * 10_000,
    -(2**70),
)


def sample_values(data_type: DataType, shape: tuple[int, ...], seed: int = 0) -> NDArray:
    """Deterministic, varied values of ``data_type`` (text of several lengths and scripts,
    bytes with zero bytes inside, NaT among the dates, ...)."""
    n = int(np.prod(shape)) if shape else 1
    rng = np.random.default_rng(seed)
    codec = data_type.object_codec
    dtype = data_type.dtype
    if codec == "vlen-utf8":
        words = ["", "a", "héllo", "日本語", "x" * 40, "emoji 😀", "tab\tnew\nline"]
        flat = np.array([words[int(i)] + str(j % 7) for j, i in enumerate(rng.integers(0, 7, n))])
        return flat.astype(dtype).reshape(shape)
    if codec is not None:
        out = np.empty(n, dtype=object)
        for i in range(n):
            out[i] = bytes(rng.integers(0, 256, int(rng.integers(0, 9)), dtype=np.uint8))
        return out.reshape(shape)
    if dtype.fields is not None:
        out = np.zeros(n, dtype)
        assert dtype.names is not None
        for k, name in enumerate(dtype.names):
            field = dtype.fields[name][0]
            base, sub = (field.base, field.shape) if field.subdtype is not None else (field, ())
            part = sample_array((n, *sub), base, seed=seed + k)
            out[name] = part
        return out.reshape(shape)
    values = sample_array((n,), dtype, seed=seed)
    if dtype.kind in "Mm" and n > 2:
        values[1] = np.array("NaT", dtype=dtype)
    return values.reshape(shape)


def assert_same_values(got: NDArray, expected: NDArray) -> None:
    """Equal shape, dtype and values; NaN equal to NaN and NaT to NaT (by their bytes for
    fixed-size types), element by element for objects."""
    assert got.shape == expected.shape, (got.shape, expected.shape)
    assert got.dtype == expected.dtype, (got.dtype, expected.dtype)
    if got.dtype == object:
        for a, b in zip(got.flat, expected.flat, strict=True):
            if isinstance(a, np.ndarray) or isinstance(b, np.ndarray):
                assert np.array_equal(a, b), (a, b)
            else:
                assert a == b and type(a) is type(b), (a, b)
        return
    if got.dtype.hasobject:
        assert got.tolist() == expected.tolist()
        return
    assert np.ascontiguousarray(got).tobytes() == np.ascontiguousarray(expected).tobytes()


def _same_scalar(a: Any, b: Any, dtype: np.dtype[Any]) -> bool:
    if dtype.hasobject or a is None or b is None:
        return bool(a == b) and type(a) is type(b)
    return np.asarray(a, dtype).tobytes() == np.asarray(b, dtype).tobytes()


class DataTypeTests:
    """Conformance tests for :class:`asyncarr.abc.DataType` implementations."""

    formats: ClassVar[tuple[ZarrFormat, ...]] = (2, 3)
    """The Zarr formats that can spell the type."""
    fills: ClassVar[tuple[Any, ...]] = ()
    """Fill values (as users give them) the type must accept."""
    create_kwargs: ClassVar[dict[str, Any]] = {}
    """Extra ``create_array`` arguments the type needs (e.g. an object codec filter)."""
    shardable: ClassVar[bool] = True

    def values(self, data_type: DataType, shape: tuple[int, ...], seed: int = 0) -> NDArray:
        return sample_values(data_type, shape, seed)

    def expected_dtype(self, data_type: DataType, zarr_format: ZarrFormat) -> np.dtype[Any]:
        return data_type.dtype if zarr_format == 2 else data_type.native().dtype

    # -- metadata ------------------------------------------------------------------------
    def test_spelling_round_trips(self, data_type: DataType) -> None:
        for fmt in self.formats:
            spelled = json.loads(json.dumps(data_type.to_json(fmt)))
            codec = data_type.object_codec if fmt == 2 else None
            again = data_type_from_json(spelled, zarr_format=fmt, object_codec=codec)
            assert again == (data_type if fmt == 2 else data_type.native())
            assert again.dtype == self.expected_dtype(data_type, fmt)
            assert again.to_json(fmt) == spelled

    def test_registered_by_name(self, data_type: DataType) -> None:
        if 3 in self.formats:
            assert data_type.name in registered_data_types() or type(data_type).v3_name_pattern
        assert data_type.describe()
        assert repr(data_type)

    def test_pickle_and_hash(self, data_type: DataType) -> None:
        clone = pickle.loads(pickle.dumps(data_type))
        assert clone == data_type
        assert hash(clone) == hash(data_type)
        assert clone.dtype == data_type.dtype
        assert clone.to_json(self.formats[0]) == data_type.to_json(self.formats[0])

    def test_default_fill_round_trips(self, data_type: DataType) -> None:
        fill = data_type.default_fill()
        for fmt in self.formats:
            spelled = json.loads(json.dumps(data_type.fill_to_json(fill, zarr_format=fmt)))
            assert _same_scalar(
                data_type.fill_from_json(spelled, zarr_format=fmt), fill, data_type.dtype
            )

    def test_user_fills_round_trip(self, data_type: DataType) -> None:
        for given in self.fills:
            fill = data_type.cast_fill(given)
            for fmt in self.formats:
                spelled = json.loads(json.dumps(data_type.fill_to_json(fill, zarr_format=fmt)))
                back = data_type.fill_from_json(spelled, zarr_format=fmt)
                assert _same_scalar(back, fill, data_type.dtype), (given, fmt, spelled)

    def test_bad_fills_are_metadata_errors(self, data_type: DataType) -> None:
        for fmt in self.formats:
            for bad in _GARBAGE_FILLS:
                try:
                    data_type.fill_from_json(bad, zarr_format=fmt)
                except MetadataError:
                    pass

    def test_bad_spellings_are_metadata_errors(self, data_type: DataType) -> None:
        for fmt in self.formats:
            spelled = data_type.to_json(fmt)
            variants: list[Any] = [None, 7, [], {}, {"name": None}, "no.such.type"]
            if isinstance(spelled, dict):
                variants += [
                    {**spelled, "extra": 1},
                    {"name": spelled["name"]},
                    {"name": spelled["name"], "configuration": None},
                    {"name": spelled["name"], "configuration": {"x": 1}},
                    {
                        "name": spelled["name"],
                        "configuration": {k: -1 for k in spelled.get("configuration", {})},
                    },
                    {
                        "name": spelled["name"],
                        "configuration": {k: "?" for k in spelled.get("configuration", {})},
                    },
                ]
            if isinstance(spelled, list):
                variants += [
                    [["a"]],
                    [[1, "<i4"]],
                    [["a", "<i4"], ["a", "<i4"]],
                    [["a", "<i4", "x"]],
                ]
            for bad in variants:
                try:
                    data_type_from_json(bad, zarr_format=fmt, object_codec=data_type.object_codec)
                except MetadataError:
                    pass

    # -- arrays --------------------------------------------------------------------------
    @pytest.mark.parametrize("sharded", [False, True])
    async def test_array_round_trip(self, data_type: DataType, sharded: bool) -> None:
        for fmt in self.formats:
            if sharded and (fmt == 2 or not self.shardable):
                continue
            store = MemoryStore()
            fills = (None, *self.fills[:1])
            for i, given in enumerate(fills):
                path = f"a{i}"
                arr = await asyncarr.create_array(
                    store,
                    path=path,
                    shape=(7, 5),
                    chunks=(2, 2),
                    shards=(4, 4) if sharded else None,
                    dtype=data_type,
                    fill_value=given,
                    zarr_format=fmt,
                    **self.create_kwargs,
                )
                assert arr.dtype == self.expected_dtype(data_type, fmt)
                data = self.values(data_type, (5, 3), seed=i).astype(arr.dtype)
                await arr.write(data, (slice(1, 6), slice(0, 3)))
                reopened = await asyncarr.open_array(store, path=path)
                assert reopened.metadata.data_type == arr.metadata.data_type
                got = await reopened.read()
                assert_same_values(got[1:6, 0:3], data)
                fill = (
                    reopened.metadata.data_type.default_fill()
                    if reopened.fill_value is None
                    else reopened.fill_value
                )
                never = got[6:, 3:]  # chunks never written
                expected = np.full(never.shape, fill, dtype=arr.dtype)
                assert_same_values(never, expected)
                # a strided read and a point read see the same values
                assert_same_values(
                    await reopened.read((slice(1, 6, 2), slice(None, None, 2))), got[1:6:2, ::2]
                )
                assert_same_values(await reopened.read((slice(2, 4), 1)), got[2:4, 1])
