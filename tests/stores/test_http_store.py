"""HTTPStore against real loopback servers: aiohttp static files and a few odd ones."""

from __future__ import annotations

import asyncio
import base64
from collections.abc import AsyncIterator, Iterator

import numpy as np
import pytest
from aiohttp import web

import asyncarr
from asyncarr._types import ByteRange, OffsetRange, SuffixRange
from asyncarr.errors import (
    ConfigError,
    InvalidKeyError,
    KeyNotFoundError,
    PermissionDeniedError,
    ReadOnlyStoreError,
    StoreError,
    ThrottledError,
    TransientStoreError,
    TruncatedReadError,
    UnsupportedOperationError,
)
from asyncarr.stores import store_from_url
from asyncarr.stores._http import HTTPStore, http_store_from_url
from asyncarr.testing._fixtures_http import HTTPLocation, HTTPServer, serve_app
from asyncarr.testing._procs import LOOPBACK, free_port

pytestmark = pytest.mark.servers

PAYLOAD = bytes(range(256)) * 4  # 1024 bytes


# -- read-only conformance against the static file server -------------------------------------


async def test_get_and_missing(http_location: HTTPLocation, http_store: HTTPStore) -> None:
    http_location.write("a", PAYLOAD)
    http_location.write("x/y/z/c/0/0", b"deep")
    assert await http_store.get("a") == PAYLOAD
    assert await http_store.get("x/y/z/c/0/0") == b"deep"
    assert await http_store.get("nope") is None
    assert await http_store.get("a/b/nope") is None
    assert await http_store.get("x/y/z") is None  # a directory is not a value
    assert await http_store.get("nope", ByteRange(0, 5)) is None
    assert await http_store.get("nope", ByteRange(3, 3)) is None
    assert await http_store.get_ranges("nope", [ByteRange(0, 1)]) is None


async def test_byte_ranges(http_location: HTTPLocation, http_store: HTTPStore) -> None:
    http_location.write("r", PAYLOAD)
    assert await http_store.get("r", ByteRange(10, 20)) == PAYLOAD[10:20]
    assert await http_store.get("r", ByteRange(0, 1)) == PAYLOAD[:1]
    assert await http_store.get("r", ByteRange(1000, 2000)) == PAYLOAD[1000:]
    assert await http_store.get("r", ByteRange(2000, 3000)) == b""  # 416 from the server
    assert await http_store.get("r", ByteRange(7, 7)) == b""
    assert await http_store.get("r", OffsetRange(1000)) == PAYLOAD[1000:]
    assert await http_store.get("r", OffsetRange(0)) == PAYLOAD
    assert await http_store.get("r", SuffixRange(16)) == PAYLOAD[-16:]
    assert await http_store.get("r", SuffixRange(5000)) == PAYLOAD
    assert await http_store.get("r", SuffixRange(0)) == b""
    ranges: list[ByteRange | OffsetRange | SuffixRange] = [
        ByteRange(0, 4), ByteRange(100, 200), SuffixRange(8), OffsetRange(1020),
    ]  # fmt: skip
    got = await http_store.get_ranges("r", ranges)
    assert got == [PAYLOAD[0:4], PAYLOAD[100:200], PAYLOAD[-8:], PAYLOAD[1020:]]


async def test_empty_large_and_odd_keys(http_location: HTTPLocation, http_store: HTTPStore) -> None:
    odd = "dir with space/ü-%20+=,~@!&'()$;:.c.0.1"
    big = (PAYLOAD * 4096)[: 4 * 1024 * 1024 + 3]
    http_location.write("empty", b"")
    http_location.write(odd, b"odd")
    http_location.write("big", big)
    assert await http_store.get("empty") == b""
    assert await http_store.exists("empty")
    assert await http_store.getsize("empty") == 0
    assert await http_store.get(odd) == b"odd"
    assert await http_store.getsize("big") == len(big)
    assert await http_store.get("big") == big
    mid = len(big) // 2
    assert await http_store.get("big", ByteRange(mid, mid + 100)) == big[mid : mid + 100]


async def test_exists_and_getsize(http_location: HTTPLocation, http_store: HTTPStore) -> None:
    assert not await http_store.exists("k")
    http_location.write("k", b"12345")
    assert await http_store.exists("k")
    assert await http_store.getsize("k") == 5
    with pytest.raises(KeyNotFoundError):
        await http_store.getsize("missing")
    assert http_store._head_allowed  # the static server answers HEAD itself


async def test_writes_refused(http_location: HTTPLocation, http_store: HTTPStore) -> None:
    http_location.write("ro", b"data")
    assert http_store.read_only
    with pytest.raises(ReadOnlyStoreError):
        await http_store.set("ro", b"changed")
    with pytest.raises(ReadOnlyStoreError):
        await http_store.set_if_not_exists("new", b"x")
    with pytest.raises(ReadOnlyStoreError):
        await http_store.delete("ro")
    with pytest.raises(ReadOnlyStoreError):
        await http_store.delete_prefix("")
    assert await http_store.get("ro") == b"data"
    assert (http_location.local_dir / "ro").read_bytes() == b"data"
    assert http_store.with_read_only() is http_store
    with pytest.raises(UnsupportedOperationError):
        http_store.with_read_only(False)


@pytest.mark.parametrize("bad_key", ["../escape", "a/../../b", "/abs", "a//b", "a/./b", "", "b\\s"])
async def test_invalid_keys_refused(http_store: HTTPStore, bad_key: str) -> None:
    with pytest.raises(InvalidKeyError):
        await http_store.get(bad_key)
    with pytest.raises(InvalidKeyError):
        await http_store.exists(bad_key)
    with pytest.raises(InvalidKeyError):
        await http_store.set(bad_key, b"x")


async def test_store_from_url_is_read_only(http_location: HTTPLocation) -> None:
    http_location.write("k", b"v")
    store = store_from_url(http_location.url)  # read_only defaults to False: ignored
    assert isinstance(store, HTTPStore)
    assert store.read_only
    assert await store.get("k") == b"v"
    await store.aclose()
    await store.aclose()  # idempotent
    with pytest.raises(StoreError, match="closed"):
        await store.get("k")


async def test_session_is_shared_and_refcounted(http_location: HTTPLocation) -> None:
    http_location.write("k", b"v")
    a = http_store_from_url(http_location.url, read_only=True, storage_options={})
    b = http_store_from_url(
        http_location.url, read_only=True, storage_options={"headers": {"X-Test": "1"}}
    )
    assert await a.get("k") == b"v"
    assert await b.get("k") == b"v"
    session = a._session()
    assert b._session() is session
    await a.aclose()
    assert not session.closed
    assert await b.get("k") == b"v"
    await b.aclose()
    assert session.closed


# -- listing -------------------------------------------------------------------------------------


async def test_listing_needs_consolidated_metadata(
    http_location: HTTPLocation, http_store: HTTPStore
) -> None:
    http_location.write("zarr.json", b'{"zarr_format": 3, "node_type": "group"}')
    assert not http_store.supports_listing
    with pytest.raises(UnsupportedOperationError, match="consolidated"):
        [k async for k in http_store.list_prefix("")]
    with pytest.raises(UnsupportedOperationError):
        await http_store.list_dir("")
    assert await http_store.probe_listing() is False
    assert not http_store.supports_listing


@pytest.mark.filterwarnings("ignore:Consolidated metadata:UserWarning")
@pytest.mark.parametrize("zarr_format", [2, 3])
async def test_listing_from_consolidated_metadata(
    http_location: HTTPLocation, http_store: HTTPStore, zarr_format: int
) -> None:
    zarr = pytest.importorskip("zarr")
    root = zarr.open_group(str(http_location.local_dir), mode="w", zarr_format=zarr_format)
    root.create_group("g").create_array("a", shape=(4,), chunks=(2,), dtype="i4")
    root.create_array("b", shape=(2,), chunks=(2,), dtype="f8")
    zarr.consolidate_metadata(str(http_location.local_dir))
    keys = sorted([k async for k in http_store.list_prefix("")])
    if zarr_format == 3:
        assert keys == ["b/zarr.json", "g/a/zarr.json", "g/zarr.json", "zarr.json"]
    else:
        assert {".zmetadata", ".zgroup", "b/.zarray", "g/.zgroup", "g/a/.zarray"} <= set(keys)
        assert all(k.rsplit("/", 1)[-1].startswith(".z") for k in keys)
    assert http_store.supports_listing
    for key in keys:  # every listed key is really there
        assert await http_store.exists(key), key
    assert sorted([k async for k in http_store.list_prefix("g/")]) == sorted(
        k for k in keys if k.startswith("g/")
    )
    assert "a" in await http_store.list_dir("g")
    assert {"b", "g"} <= set(await http_store.list_dir(""))
    with pytest.raises(InvalidKeyError):
        [k async for k in http_store.list_prefix("../")]
    # such a listing never names chunks: counting them is refused, not answered with 0
    assert not http_store.lists_every_key
    zarr.open_array(str(http_location.local_dir), path="b", mode="r+")[:] = 1.5
    b = await (await asyncarr.open_group(http_store)).get("b")
    np.testing.assert_array_equal(await b.read(), [1.5, 1.5])
    with pytest.raises(UnsupportedOperationError, match="cannot count or size"):
        await b.nchunks_initialized()
    with pytest.raises(UnsupportedOperationError, match="cannot count or size"):
        await b.info_complete()


# -- misbehaving and failing servers ------------------------------------------------------------


def _ignores_range_app() -> web.Application:
    """Whole bodies with 200 whatever the Range header says, and no HEAD."""

    async def handler(request: web.Request) -> web.StreamResponse:
        if request.method == "HEAD":
            return web.Response(status=405)
        name = request.match_info["name"]
        if name == "missing":
            return web.Response(status=404)
        return web.Response(body=PAYLOAD if name == "r" else b"", status=200)

    app = web.Application()
    app.router.add_route("*", "/data/{name}", handler)
    return app


@pytest.fixture(scope="module")
def ignores_range_server() -> Iterator[HTTPServer]:
    with serve_app(_ignores_range_app) as server:
        yield server


async def test_server_that_ignores_range(ignores_range_server: HTTPServer) -> None:
    store = http_store_from_url(
        f"{ignores_range_server.url}/data", read_only=True, storage_options={}
    )
    try:
        assert await store.get("r", ByteRange(10, 20)) == PAYLOAD[10:20]
        assert await store.get("r", SuffixRange(16)) == PAYLOAD[-16:]
        assert await store.get("r", OffsetRange(1000)) == PAYLOAD[1000:]
        assert await store.get("r", ByteRange(2000, 3000)) == b""
        assert await store.get("r") == PAYLOAD
        assert await store.get("missing", ByteRange(0, 1)) is None
        # HEAD is refused (405): exists/getsize fall back to GET
        assert await store.exists("r")
        assert await store.getsize("r") == len(PAYLOAD)
        assert await store.getsize("empty") == 0
        assert not await store.exists("missing")
    finally:
        await store.aclose()


def _status_app() -> web.Application:
    async def status(request: web.Request) -> web.Response:
        return web.Response(status=int(request.match_info["code"]), text="no")

    async def private(request: web.Request) -> web.Response:
        expected = "Basic " + base64.b64encode(b"reader:p@ss w0rd").decode()
        if request.headers.get("Authorization") != expected:
            return web.Response(status=401)
        return web.Response(body=b"secret data")

    app = web.Application()
    app.router.add_get("/status/{code}", status)
    app.router.add_get("/private/{name}", private)
    return app


@pytest.fixture(scope="module")
def status_server() -> Iterator[HTTPServer]:
    with serve_app(_status_app) as server:
        yield server


@pytest.fixture
async def status_store(status_server: HTTPServer) -> AsyncIterator[HTTPStore]:
    store = http_store_from_url(f"{status_server.url}/status", read_only=True, storage_options={})
    yield store
    await store.aclose()


@pytest.mark.parametrize(
    ("code", "error"),
    [
        (429, ThrottledError),
        (503, ThrottledError),
        (500, TransientStoreError),
        (502, TransientStoreError),
        (408, TransientStoreError),
        (403, PermissionDeniedError),
        (401, PermissionDeniedError),
        (418, StoreError),
    ],
)
async def test_status_mapping(status_store: HTTPStore, code: int, error: type[Exception]) -> None:
    with pytest.raises(error) as info:
        await status_store.get(str(code))
    assert info.value.key == str(code)  # type: ignore[attr-defined]
    assert await status_store.get("404") is None
    assert await status_store.get("410") is None


async def test_missing_statuses_option(status_server: HTTPServer) -> None:
    store = http_store_from_url(
        f"{status_server.url}/status",
        read_only=True,
        storage_options={"missing_statuses": [404, 403]},
    )
    try:
        assert await store.get("403") is None
    finally:
        await store.aclose()


async def test_basic_auth_from_url_is_used_and_hidden(status_server: HTTPServer) -> None:
    url = f"http://reader:p%40ss%20w0rd@{LOOPBACK}:{status_server.port}/private"
    store = http_store_from_url(url, read_only=True, storage_options={})
    try:
        assert await store.get("k") == b"secret data"
        text = repr(store) + str(store) + store.endpoint_key + store.url
        assert "p%40ss" not in text
        assert "p@ss" not in text
        assert "reader" not in text
    finally:
        await store.aclose()
    anonymous = http_store_from_url(
        f"{status_server.url}/private", read_only=True, storage_options={}
    )
    try:
        with pytest.raises(PermissionDeniedError):
            await anonymous.get("k")
    finally:
        await anonymous.aclose()


async def test_truncated_body_is_detected() -> None:
    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\nConnection: close\r\n\r\n")
        writer.write(b"x" * 10)
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(handle, LOOPBACK, 0)
    port = server.sockets[0].getsockname()[1]
    store = http_store_from_url(f"http://{LOOPBACK}:{port}/d", read_only=True, storage_options={})
    try:
        with pytest.raises(TruncatedReadError):
            await store.get("k")
    finally:
        await store.aclose()
        server.close()
        await server.wait_closed()


async def test_dead_server_is_transient() -> None:
    port = free_port()  # nothing listens there
    store = http_store_from_url(
        f"http://{LOOPBACK}:{port}/root", read_only=True, storage_options={"timeout": 5}
    )
    try:
        with pytest.raises(TransientStoreError):
            await store.get("k")
        with pytest.raises(TransientStoreError):
            await store.exists("k")
    finally:
        await store.aclose()


# -- options --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "options", "match"),
    [
        ("ftp://h/x", {}, "http"),
        ("http:///x", {}, "host"),
        ("http://h/x", {"bogus": 1}, "unknown storage_options"),
        ("http://h/x", {"timeout": 0}, "timeout"),
        ("http://h/x", {"read_timeout": "5"}, "read_timeout"),
        ("http://h/x", {"verify": "no"}, "verify"),
        ("http://h/x", {"ssl": True, "verify": False}, "either"),
        ("http://h/x", {"ssl": "yes"}, "ssl"),
        ("http://h/x", {"headers": [("a", "b")]}, "headers"),
        ("http://h/x", {"limits": 3}, "StoreLimits"),
        ("http://h/x", {"client_kwargs": 3}, "mapping"),
        ("http://h/x", {"missing_statuses": ["x"]}, "status"),
    ],
)
def test_bad_options(url: str, options: dict[str, object], match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        http_store_from_url(url, read_only=True, storage_options=options)


def test_url_and_identity() -> None:
    store = http_store_from_url(
        "https://example.org:8443/data/run1/?sig=SECRET", read_only=False, storage_options={}
    )
    assert store.url == "https://example.org:8443/data/run1"
    assert store._url("a b/c+d") == "https://example.org:8443/data/run1/a%20b/c+d?sig=SECRET"
    assert repr(store) == "HTTPStore(https://example.org:8443/data/run1, read-only)"
    assert "SECRET" not in repr(store) + store.endpoint_key


async def test_pickled_store_works_in_a_fresh_process(
    http_location: HTTPLocation, status_server: HTTPServer
) -> None:
    """The HTTP store's part of the stores' pickling conformance test (it has no writable
    fixture for the whole suite): a spawned process reads through each copy, the second
    with the Basic credentials that travelled inside the pickle (the server checks them),
    which its repr never shows."""
    import os
    import pickle

    from asyncarr.testing._fresh_process import in_fresh_process, use_pickled_stores

    http_location.write("k", PAYLOAD)
    public = HTTPStore(http_location.url, read_timeout=5)
    private = HTTPStore(
        status_server.url.replace("http://", "http://reader:p%40ss%20w0rd@", 1) + "/private"
    )
    blobs = [pickle.dumps(public), pickle.dumps(private)]
    plain, secret = await in_fresh_process(use_pickled_stores, blobs, "k", "new", b"x")
    assert plain["pid"] != os.getpid()
    assert plain["value"] == PAYLOAD
    assert secret["value"] == b"secret data"
    for report in (plain, secret):
        assert report["read_only"]
        assert report["refused"]
        assert "p@ss" not in report["repr"] and "w0rd" not in report["repr"]
    await public.aclose()
    await private.aclose()
