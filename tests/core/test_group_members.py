"""Groups list every member, one asyncarr cannot open included; zarr-python's group habits."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import asyncarr
import asyncarr.sync as az
from asyncarr import Store, UnsupportedNode
from asyncarr.errors import CodecError, MetadataError
from asyncarr.testing._procs import StoreLocation

ODD_V3 = {
    "odd_dtype": {"data_type": "quaternion128"},
    "odd_codec": {"codecs": [{"name": "mystery", "configuration": {}}]},
    "odd_grid": {"chunk_grid": {"name": "hexagonal", "configuration": {"cell": 3}}},
}
"""Changes to a valid ``zarr.json`` that asyncarr cannot use (each names what it lacks)."""

ODD_V2 = {
    "odd_dtype": {"dtype": "<q16"},
    "odd_codec": {"compressor": {"id": "mystery"}},
}

WHY = {
    "odd_dtype": ("quaternion128", "<q16"),
    "odd_codec": ("mystery",),
    "odd_grid": ("hexagonal",),
}


@pytest.fixture(params=["local", pytest.param("s3-moto", marks=pytest.mark.servers)])
def location(request: pytest.FixtureRequest) -> Iterator[StoreLocation]:
    if request.param == "local":
        yield request.getfixturevalue("local_location")
        return
    server = request.getfixturevalue("moto_s3_server")
    bucket = server.create_bucket()
    yield StoreLocation(url=f"s3://{bucket}/odd", storage_options=server.storage_options())
    server.delete_bucket(bucket)


async def _make_odd(store: Store, name: str, change: dict[str, Any], fmt: int) -> None:
    """An array ``name`` as asyncarr writes it, then its metadata changed by ``change``."""
    arr = await asyncarr.create_array(
        store,
        path=name,
        shape=(5, 4),
        chunks=(2, 2),
        dtype="i4",
        zarr_format=fmt,  # type: ignore[arg-type]
    )
    await arr.write(np.ones((5, 4), "i4"))
    key = f"{name}/{'zarr.json' if fmt == 3 else '.zarray'}"
    raw = await store.get(key)
    assert raw is not None
    doc = json.loads(raw)
    for field, value in change.items():
        if field == "codecs":
            doc["codecs"] = doc["codecs"] + value
        else:
            doc[field] = value
    await store.set(key, json.dumps(doc).encode())


async def _odd_group(store: Store, fmt: int) -> dict[str, np.ndarray]:
    """A group with good members beside odd ones; returns the good arrays' data."""
    root = await asyncarr.create_group(store, zarr_format=fmt, attributes={"title": "odd"})  # type: ignore[arg-type]
    good = np.arange(30, dtype="f8").reshape(6, 5)
    arr = await root.create_array("good", shape=good.shape, chunks=(4, 4), dtype="f8")
    await arr.write(good)
    sub = await root.create_group("sub")
    inner = await sub.create_array("inner", shape=(3,), chunks=(2,), dtype="u1")
    await inner.write(np.array([7, 8, 9], "u1"))
    for name, change in (ODD_V3 if fmt == 3 else ODD_V2).items():
        await _make_odd(store, name, change, fmt)
    await _make_odd(store, "sub/deep_odd", (ODD_V3 if fmt == 3 else ODD_V2)["odd_dtype"], fmt)
    return {"good": good, "sub/inner": np.array([7, 8, 9], "u1")}


@pytest.mark.parametrize("fmt", [2, 3])
async def test_every_member_is_listed_and_only_reading_an_odd_one_raises(
    location: StoreLocation, fmt: int
) -> None:
    store = asyncarr.store_from_url(location.url, storage_options=location.storage_options)
    try:
        data = await _odd_group(store, fmt)
        odd = sorted(ODD_V3 if fmt == 3 else ODD_V2)
        group = await asyncarr.open_group(store)

        members = dict(await group.members())
        assert sorted(members) == sorted(["good", "sub", *odd])
        assert isinstance(members["good"], asyncarr.AsyncArray)
        assert isinstance(members["sub"], asyncarr.AsyncGroup)
        for name in odd:
            node = members[name]
            assert isinstance(node, UnsupportedNode)
            assert node.node_type == "array" and node.zarr_format == fmt
            assert node.shape == (5, 4) and node.name == f"/{name}"
            assert any(word in node.reason for word in WHY[name]), node.reason
            with pytest.raises(MetadataError, match=f"'/{name}'"):
                node.read()
            with pytest.raises(MetadataError, match=f"'/{name}'"):
                await node.read((slice(0, 1),))
            # opening it by name (not listing) is where its metadata is used: it raises
            with pytest.raises(MetadataError, match=name):
                await group.get(name)
            assert await group.contains(name)

        assert await group.array_keys() == sorted(["good", *odd])
        assert await group.group_keys() == ["sub"]
        assert [n for n, _ in await group.arrays()] == sorted(["good", *odd])
        assert [n for n, _ in await group.groups()] == ["sub"]
        deep = dict(await group.members(max_depth=None))
        assert isinstance(deep["sub/deep_odd"], UnsupportedNode)
        assert isinstance(deep["sub/inner"], asyncarr.AsyncArray)

        tree = await group.tree()
        for name in odd:
            assert f"{name} (5, 4)" in tree and "[unsupported:" in tree
        assert "deep_odd (5, 4)" in tree and "inner (3,) uint8" in tree

        info = await group.info_complete()
        assert (info.narrays, info.ngroups) == (len(odd) + 3, 1)
        assert info.unsupported is not None
        assert sorted(p for p, _, _ in info.unsupported) == sorted([*odd, "sub/deep_odd"])
        assert group.info.narrays is None  # no I/O

        for path, expected in data.items():  # the good members read as ever
            node = deep[path]
            assert isinstance(node, asyncarr.AsyncArray)
            np.testing.assert_array_equal(await node.read(), expected)
    finally:
        await store.aclose()


@pytest.mark.parametrize("fmt", [2, 3])
def test_consolidated_listing_keeps_odd_members_as_stored(tmp_path: Path, fmt: int) -> None:
    url = str(tmp_path / "c.zarr")

    async def build() -> None:
        store = asyncarr.store_from_url(url)
        await _odd_group(store, fmt)
        await store.aclose()

    asyncio.run(build())
    az.consolidate_metadata(url)
    group = az.open_group(url, use_consolidated=True)
    odd = sorted(ODD_V3 if fmt == 3 else ODD_V2)
    assert group.array_keys() == sorted(["good", *odd])
    members = dict(group.members())
    for name in odd:
        node = members[name]
        assert isinstance(node, UnsupportedNode)
        stored = json.loads((tmp_path / "c.zarr" / name / node_file(fmt)).read_text())
        assert node.documents[node_file(fmt)] == stored  # consolidated as stored, verbatim
    np.testing.assert_array_equal(group["good"][:], np.arange(30.0).reshape(6, 5))


def node_file(fmt: int) -> str:
    return "zarr.json" if fmt == 3 else ".zarray"


def test_listing_reads_no_chunk_and_a_corrupt_document_is_listed(tmp_path: Path) -> None:
    url = tmp_path / "g.zarr"
    g = az.create_group(str(url))
    arr = g.create_array("x", shape=(4,), chunks=(2,), dtype="i4")
    arr[:] = [1, 2, 3, 4]
    (url / "x" / "c" / "0").write_bytes(b"garbage")  # a corrupt chunk: never decoded by listing
    (url / "junk").mkdir()
    (url / "junk" / "zarr.json").write_text("{not json")
    (url / "notes.txt").write_text("not a node")  # neither a node nor listed
    g = az.open_group(str(url))
    members = dict(g.members())
    assert sorted(members) == ["junk", "x"]
    junk = members["junk"]
    assert isinstance(junk, UnsupportedNode)
    assert junk.node_type is None and "not valid JSON" in junk.reason
    assert g.array_keys() == ["x"] and g.group_keys() == []
    with pytest.raises(MetadataError, match="consolidate"):
        az.open_group(
            str(url), mode="r+"
        ).consolidate_metadata()  # it cannot write what it cannot read
    with pytest.raises(CodecError):
        g["x"][:]


def test_zarr_python_group_habits(tmp_path: Path) -> None:
    g = az.create_group(str(tmp_path / "h.zarr"))
    g.create_array("b", shape=(2,), dtype="i1")
    g.create_group("a").create_array("deep", shape=(1,), dtype="i1")
    g.create_array("c", shape=(2,), dtype="i1")
    assert len(g) == 3 and g.nmembers() == 3 and g.nmembers(max_depth=None) == 4
    assert list(g) == ["a", "b", "c"] == g.keys() == [name for name in g]
    assert "a" in g and "a/deep" in g and "z" not in g and 3 not in g  # type: ignore[operator]
    assert [n for n, a in g.arrays()] == ["b", "c"]
    assert all(isinstance(a, az.Array) for _, a in g.arrays())
    assert [(n, type(x)) for n, x in g.groups()] == [("a", az.Group)]
    assert len(az.create_group(str(tmp_path / "empty.zarr"))) == 0


async def test_async_group_habits(tmp_path: Path) -> None:
    g = await asyncarr.create_group(str(tmp_path / "h.zarr"))
    await g.create_array("y", shape=(2,), dtype="i1")
    await g.create_group("x")
    assert [name async for name in g] == ["x", "y"] == await g.keys()
    assert await g.nmembers() == 2
    assert [n for n, _ in await g.arrays()] == ["y"]
    assert [n for n, _ in await g.groups()] == ["x"]
    assert await g.contains("x") and not await g.contains("nope")


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "asyncarr", *args], capture_output=True, text=True, timeout=120
    )


def test_cli_lists_an_odd_member(tmp_path: Path) -> None:
    root = tmp_path / "g.zarr"

    async def build() -> None:
        store = asyncarr.store_from_url(str(root))
        await _odd_group(store, 3)
        await store.aclose()

    asyncio.run(build())
    tree = _cli("tree", str(root))
    assert tree.returncode == 0, tree.stderr
    assert "good (6, 5) float64" in tree.stdout
    assert "odd_dtype (5, 4) quaternion128 [unsupported:" in tree.stdout
    info = _cli("info", str(root))
    assert info.returncode == 0, info.stderr
    assert "No. arrays   : 6" in info.stdout and "odd_codec (array)" in info.stdout
    doc = json.loads(_cli("info", "--json", str(root)).stdout)
    assert doc["arrays"] == 6 and doc["groups"] == 1
    assert {u["path"] for u in doc["unsupported"]} == {
        "odd_codec",
        "odd_dtype",
        "odd_grid",
        "sub/deep_odd",
    }
    one = _cli("info", str(root / "odd_grid"))
    assert one.returncode == 1 and "hexagonal" in one.stderr and "Traceback" not in one.stderr
