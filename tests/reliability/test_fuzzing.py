"""Property-based fuzzing: metadata parsers and codec pipelines raise only asyncarr errors.

Hypothesis feeds random JSON-ish documents (and mutations of valid ones)
to the ``zarr.json`` / ``.zarray`` parsers, and random or damaged bytes to
the decode side of several codec pipelines. Whatever the input, the only
exceptions allowed out are :class:`AsyncarrError` subclasses; a decode that
succeeds must give an array of exactly the chunk's shape and dtype.
"""

from __future__ import annotations

import asyncio
import copy
import json
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import asyncarr
from asyncarr.core._metadata import ArrayMetadata, dumps_json, loads_json
from asyncarr.core._nodes import node_from_documents
from asyncarr.core._pipeline import CodecPipeline
from asyncarr.core._types_bridge import chunk_spec
from asyncarr.errors import AsyncarrError
from asyncarr.stores import MemoryStore

FUZZ = settings(
    max_examples=200,
    deadline=None,
    database=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)

BYTES_LE = {"name": "bytes", "configuration": {"endian": "little"}}

V3_DOCS: dict[str, dict[str, Any]] = {
    "zstd": {
        "zarr_format": 3,
        "node_type": "array",
        "shape": [20, 20],
        "data_type": "int32",
        "chunk_grid": {"name": "regular", "configuration": {"chunk_shape": [8, 8]}},
        "chunk_key_encoding": {"name": "default", "configuration": {"separator": "/"}},
        "fill_value": 0,
        "codecs": [BYTES_LE, {"name": "zstd", "configuration": {"level": 1, "checksum": True}}],
        "attributes": {"a": 1},
        "dimension_names": ["y", "x"],
    },
    "sharded": {
        "zarr_format": 3,
        "node_type": "array",
        "shape": [16, 16],
        "data_type": "uint16",
        "chunk_grid": {"name": "regular", "configuration": {"chunk_shape": [8, 8]}},
        "chunk_key_encoding": {"name": "v2", "configuration": {"separator": "."}},
        "fill_value": 7,
        "codecs": [
            {
                "name": "sharding_indexed",
                "configuration": {
                    "chunk_shape": [4, 4],
                    "codecs": [BYTES_LE, {"name": "gzip", "configuration": {"level": 1}}],
                    "index_codecs": [BYTES_LE, {"name": "crc32c"}],
                    "index_location": "start",
                },
            }
        ],
        "attributes": {},
    },
    "transpose-blosc": {
        "zarr_format": 3,
        "node_type": "array",
        "shape": [6, 10],
        "data_type": "float32",
        "chunk_grid": {"name": "regular", "configuration": {"chunk_shape": [3, 5]}},
        "chunk_key_encoding": {"name": "default"},
        "fill_value": "NaN",
        "codecs": [
            {"name": "transpose", "configuration": {"order": [1, 0]}},
            {"name": "bytes", "configuration": {"endian": "big"}},
            {
                "name": "blosc",
                "configuration": {
                    "cname": "lz4",
                    "clevel": 5,
                    "shuffle": "shuffle",
                    "typesize": 4,
                    "blocksize": 0,
                },
            },
            {"name": "crc32c"},
        ],
        "attributes": {},
    },
}
V2_DOCS: dict[str, dict[str, Any]] = {
    "zstd": {
        "zarr_format": 2,
        "shape": [20, 20],
        "chunks": [8, 8],
        "dtype": "<i4",
        "compressor": {"id": "zstd", "level": 1},
        "fill_value": 0,
        "order": "C",
        "filters": None,
        "dimension_separator": "/",
    },
    "filters": {
        "zarr_format": 2,
        "shape": [12],
        "chunks": [5],
        "dtype": "<f8",
        "compressor": {"id": "zlib", "level": 1},
        "fill_value": "NaN",
        "order": "F",
        "filters": [{"id": "delta", "dtype": "<f8"}],
    },
    "blosc-bool": {
        "zarr_format": 2,
        "shape": [9, 9],
        "chunks": [4, 4],
        "dtype": "|b1",
        "compressor": {"id": "blosc", "cname": "zstd", "clevel": 3, "shuffle": 2},
        "fill_value": False,
        "order": "C",
        "filters": None,
    },
}

# -- strategies ---------------------------------------------------------------------------------
scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.sampled_from([0, 1, -1, 2, 3, 4, 5, 8, 2**31, 2**32, 2**63 - 1, 2**63, 2**64])
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=12)
    | st.sampled_from(
        ["NaN", "Infinity", "-Infinity", "0x7fc00000", "bytes", "zstd", "gzip", "crc32c",
         "blosc", "transpose", "sharding_indexed", "regular", "default", "v2", "little", "big",
         "/", ".", "<i4", "|b1", "int32", "float64", "array", "group", "C", "F", "zlib"]
    )
)  # fmt: skip
json_values = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4),
    max_leaves=12,
)  # fmt: skip


def _paths(value: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    out = [prefix]
    if isinstance(value, dict):
        for k, v in value.items():
            out.extend(_paths(v, (*prefix, k)))
    elif isinstance(value, list):
        for i, v in enumerate(value):
            out.extend(_paths(v, (*prefix, i)))
    return out


@st.composite
def mutated(draw: st.DrawFn, bases: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """A valid document with 1-3 of its values replaced, removed or added."""
    doc = copy.deepcopy(bases[draw(st.sampled_from(sorted(bases)))])
    for _ in range(draw(st.integers(1, 3))):
        paths = [p for p in _paths(doc) if p]
        path = draw(st.sampled_from(paths))
        parent: Any = doc
        for part in path[:-1]:
            parent = parent[part]
        action = draw(st.sampled_from(["replace", "replace", "delete", "add"]))
        if action == "replace":
            parent[path[-1]] = draw(json_values)
        elif action == "delete":
            del parent[path[-1]]
        elif isinstance(parent, dict):
            parent[draw(st.text(max_size=8))] = draw(json_values)
        else:
            parent.insert(path[-1], draw(json_values))
    return doc


def documents(bases: dict[str, dict[str, Any]]) -> st.SearchStrategy[bytes]:
    as_json = (mutated(bases) | json_values).map(lambda d: json.dumps(d).encode())
    return as_json | st.binary(max_size=64)


# -- metadata parsers ---------------------------------------------------------------------------
def parse_and_use(raw: bytes, fmt: int) -> None:
    """Everything opening an array does with its metadata, then a serialisation round trip."""
    key = "zarr.json" if fmt == 3 else ".zarray"
    doc = loads_json(raw, key=key)
    node = node_from_documents(
        "", doc if fmt == 3 else None, doc if fmt == 2 else None, None, None, zarr_format=fmt
    )
    if isinstance(node, ArrayMetadata):
        pipeline = CodecPipeline(node.codecs, chunk_spec(node))
        again = loads_json(dumps_json(node.to_json()), key=key)
        reparsed = node_from_documents(
            "", again if fmt == 3 else None, again if fmt == 2 else None, None, None
        )
        assert isinstance(reparsed, ArrayMetadata)
        assert reparsed.shape == node.shape and reparsed.chunk_shape == node.chunk_shape
        if pipeline.spec.nbytes <= 1 << 16:  # a small chunk of fill value round-trips
            chunk = np.full(pipeline.spec.shape, pipeline.spec.fill_value, pipeline.spec.dtype)
            np.testing.assert_array_equal(pipeline.decode(pipeline.encode(chunk)), chunk)


@FUZZ
@given(raw=documents(V3_DOCS))
def test_fuzzed_zarr_json_raises_only_asyncarr_errors(raw: bytes) -> None:
    try:
        parse_and_use(raw, 3)
    except AsyncarrError:
        pass


@FUZZ
@given(raw=documents(V2_DOCS), attrs=st.none() | json_values)
def test_fuzzed_zarray_raises_only_asyncarr_errors(raw: bytes, attrs: Any) -> None:
    try:
        parse_and_use(raw, 2)
        doc = loads_json(raw, key=".zarray")
        node_from_documents("", None, doc, None, attrs, zarr_format=2)  # with any .zattrs
    except AsyncarrError:
        pass


@st.composite
def consolidated_groups(draw: st.DrawFn) -> dict[str, Any]:
    members: dict[str, Any] = {
        name: draw(mutated(V3_DOCS) | json_values)
        for name in draw(st.lists(st.sampled_from(["a", "b", "a/c"]), min_size=1, unique=True))
    }
    return {
        "zarr_format": 3,
        "node_type": "group",
        "attributes": {},
        "consolidated_metadata": {"kind": "inline", "must_understand": False, "metadata": members},
    }


@settings(FUZZ, max_examples=100)
@given(doc=consolidated_groups())
def test_fuzzed_consolidated_metadata_raises_only_asyncarr_errors(doc: dict[str, Any]) -> None:
    async def open_members() -> None:
        store = MemoryStore()
        await store.set("zarr.json", json.dumps(doc).encode())
        group = await asyncarr.open_group(store)
        for name in doc["consolidated_metadata"]["metadata"]:
            try:
                await group.get(name)
            except AsyncarrError:
                pass

    asyncio.run(open_members())


# -- codec pipelines ----------------------------------------------------------------------------
def _pipeline(doc: dict[str, Any]) -> CodecPipeline:
    fmt = doc["zarr_format"]
    meta = node_from_documents("", doc if fmt == 3 else None, doc if fmt == 2 else None, None, None)
    assert isinstance(meta, ArrayMetadata)
    return CodecPipeline(meta.codecs, chunk_spec(meta))


PIPELINES = {f"v3 {k}": _pipeline(d) for k, d in V3_DOCS.items()} | {
    f"v2 {k}": _pipeline(d) for k, d in V2_DOCS.items()
}


def _valid_chunk(pipeline: CodecPipeline, seed: int) -> bytes:
    spec = pipeline.spec
    rng = np.random.default_rng(seed)
    values = rng.integers(0, 100, size=spec.shape)
    return pipeline.encode(values.astype(spec.dtype))


@st.composite
def damaged(draw: st.DrawFn, good: bytes) -> bytes:
    """``good`` with bytes flipped, cut, inserted or spliced."""
    data = bytearray(good)
    for _ in range(draw(st.integers(1, 4))):
        action = draw(st.sampled_from(["flip", "cut", "insert", "splice"]))
        if not data:
            data.extend(draw(st.binary(min_size=1, max_size=8)))
            continue
        i = draw(st.integers(0, len(data) - 1))
        if action == "flip":
            data[i] ^= 1 << draw(st.integers(0, 7))
        elif action == "cut":
            del data[i : i + draw(st.integers(1, 64))]
        elif action == "insert":
            data[i:i] = draw(st.binary(min_size=1, max_size=16))
        else:
            data[i : i + 8] = draw(st.binary(min_size=8, max_size=8))
    return bytes(data)


@pytest.mark.parametrize("name", sorted(PIPELINES))
@settings(FUZZ, max_examples=150)
@given(data=st.data())
def test_fuzzed_chunks_decode_or_raise_codec_errors(name: str, data: st.DataObject) -> None:
    pipeline = PIPELINES[name]
    good = _valid_chunk(pipeline, seed=len(name))
    raw = data.draw(damaged(good) | st.binary(max_size=512), label="chunk")
    try:
        out = pipeline.decode(raw, key="c/0/0")
    except AsyncarrError as exc:
        message = str(exc)
    else:
        assert out.shape == pipeline.spec.shape and out.dtype == pipeline.spec.dtype
        return
    assert "'c/0/0" in message  # the error names the chunk (or inner chunk) key


# -- bugs the fuzzers found, pinned as plain regression tests ------------------------------------
async def test_a_consolidated_member_that_is_not_an_object_is_a_metadata_error() -> None:
    store = MemoryStore()
    doc = {
        "zarr_format": 3,
        "node_type": "group",
        "attributes": {},
        "consolidated_metadata": {
            "kind": "inline",
            "must_understand": False,
            "metadata": {"b": [1]},
        },
    }
    await store.set("zarr.json", json.dumps(doc).encode())
    group = await asyncarr.open_group(store)
    with pytest.raises(AsyncarrError, match=r"zarr\.json"):
        await group.get("b")


@pytest.mark.parametrize(
    ("key", "doc"),
    [
        (".zarray", {**V2_DOCS["zstd"], "note": float("nan")}),
        ("zarr.json", {**V3_DOCS["zstd"], "attributes": {"x": float("inf")}}),
    ],
    ids=["v2 extra field", "v3 attribute"],
)
async def test_non_finite_floats_in_stored_metadata_never_raise_raw_errors(
    key: str, doc: dict[str, Any]
) -> None:
    store = MemoryStore()
    await store.set(key, json.dumps(doc).encode())  # NaN/Infinity tokens, as Python writes them
    arr = await asyncarr.open_array(store, mode="r+")
    try:
        await arr.resize(21, 20)  # rewrites the metadata document
    except AsyncarrError:
        pass  # refusing clearly is fine; a raw ValueError is not
