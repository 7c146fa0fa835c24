"""MongoDBStore against a real server (nx-27017 on 127.0.0.1, started by the fixture)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from asyncarr._types import ByteRange, OffsetRange, SuffixRange
from asyncarr.abc import Store
from asyncarr.config import StoreLimits
from asyncarr.errors import ConfigError, StoreError, TransientStoreError
from asyncarr.stores import store_from_url
from asyncarr.stores._mongodb import MongoDBStore, mongodb_store_from_url
from asyncarr.testing import StoreTests
from asyncarr.testing._procs import StoreLocation, free_port
from asyncarr.testing._servers_mongodb import MongoServer, drop_database

pytestmark = pytest.mark.servers


class TestMongoDBStore(StoreTests):
    """Default settings: everything below 1 MiB inline, the 12 MiB value in GridFS."""

    @pytest.fixture
    async def store(self, mongodb_store: MongoDBStore) -> Store:
        return mongodb_store

    @pytest.fixture
    async def read_only_store(self, store: MongoDBStore) -> AsyncIterator[Store]:
        ro = store.with_read_only()
        yield ro
        await ro.aclose()


class TestMongoDBStoreGridFS(StoreTests):
    """A tiny inline threshold: nearly every value goes through GridFS."""

    many_keys = 300
    concurrency = 16

    @pytest.fixture
    async def store(self, mongodb_location: StoreLocation) -> AsyncIterator[Store]:
        s = mongodb_store_from_url(
            mongodb_location.url,
            read_only=False,
            storage_options={"inline_threshold": 4, "gridfs_chunk_size": 1024},
        )
        yield s
        await s.aclose()

    @pytest.fixture
    async def read_only_store(self, store: MongoDBStore) -> AsyncIterator[Store]:
        ro = store.with_read_only()
        yield ro
        await ro.aclose()


async def test_repr_hides_credentials() -> None:
    secret = "s3cr3t-Pa55"
    s = mongodb_store_from_url(
        f"mongodb://admin:{secret}@127.0.0.1:1/db/coll/p?authSource=admin",
        read_only=False,
        storage_options={"client_kwargs": {"password": "kw-pa55"}},
    )
    text = repr(s) + str(s) + s.endpoint_key + repr(s.with_read_only())
    assert secret not in text
    assert "kw-pa55" not in text
    assert "admin" not in text
    assert s._scrub(f"boom {secret} kw-pa55") == "boom *** ***"
    await s.aclose()
    short = mongodb_store_from_url(
        "mongodb://u:a@127.0.0.1:1/db/c", read_only=False, storage_options={}
    )
    # a short password is masked where it stands alone, not inside every word
    assert short._scrub("KeyError: 'payload' (password a)") == "KeyError: 'payload' (password ***)"
    await short.aclose()


# -- GridFS specifics -----------------------------------------------------------------------


@pytest.fixture
async def gridfs_store(mongodb_location: StoreLocation) -> AsyncIterator[MongoDBStore]:
    s = mongodb_store_from_url(
        mongodb_location.url,
        read_only=False,
        storage_options={"inline_threshold": 1000, "gridfs_chunk_size": 4096},
    )
    yield s
    await s.aclose()


async def test_gridfs_ranges_cross_chunk_boundaries(gridfs_store: MongoDBStore) -> None:
    value = bytes(i % 251 for i in range(50_000))  # 13 chunks of 4096, the last one short
    await gridfs_store.set("v", value)
    cases: list[ByteRange | OffsetRange | SuffixRange | None] = [
        ByteRange(0, 1), ByteRange(4095, 4097), ByteRange(4096, 8192), ByteRange(100, 40_000),
        ByteRange(49_999, 50_000), ByteRange(49_000, 60_000), ByteRange(70_000, 80_000),
        ByteRange(5, 5), OffsetRange(12_000), SuffixRange(1), SuffixRange(9000), None,
    ]  # fmt: skip
    for rng in cases:
        sl = slice(0, len(value)) if rng is None else _py_slice(rng, len(value))
        assert await gridfs_store.get("v", rng) == value[sl], rng
    # several far-apart ranges in one call
    got = await gridfs_store.get_ranges(
        "v", [ByteRange(10, 20), SuffixRange(8), ByteRange(20_000, 20_010)]
    )
    assert got == [value[10:20], value[-8:], value[20_000:20_010]]


async def test_gridfs_reads_are_split_into_bounded_queries(
    gridfs_store: MongoDBStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A query asks for at most ``_REPLY_BYTES`` of chunks (nx-27017 sends one reply per
    query, and refuses replies over 48 MB): here 3 chunks of 4096 per query."""
    from asyncarr.stores import _mongodb

    monkeypatch.setattr(_mongodb, "_REPLY_BYTES", 3 * 4096)
    value = bytes(i % 253 for i in range(50_000))
    await gridfs_store.set("v", value)
    assert await gridfs_store.get("v") == value
    assert await gridfs_store.get("v", ByteRange(4000, 45_000)) == value[4000:45_000]


async def test_values_larger_than_the_servers_message_limit_read_back(
    mongodb_location: StoreLocation,
) -> None:
    s = mongodb_store_from_url(mongodb_location.url, read_only=False, storage_options={})
    try:
        value = bytes(range(256)) * (50 * 4096)  # 50 MiB: past nx-27017's 48 MB replies
        await s.set("big", value)
        assert await s.get("big") == value
    finally:
        await s.aclose()


async def test_a_driver_failure_outside_its_error_types_is_a_store_error(
    mongodb_location: StoreLocation,
) -> None:
    """Credentials for a server without authentication made pymongo's SCRAM code raise a
    bare KeyError; asyncarr reports a StoreError instead."""
    url = mongodb_location.url.replace("mongodb://", "mongodb://user:secretpw@", 1)
    s = mongodb_store_from_url(url, read_only=True, storage_options={})
    try:
        with pytest.raises(StoreError) as info:
            await s.get("zarr.json")
        assert "secretpw" not in str(info.value)
    finally:
        await s.aclose()


def _py_slice(rng: ByteRange | OffsetRange | SuffixRange, size: int) -> slice:
    if isinstance(rng, ByteRange):
        return slice(rng.start, rng.end)
    if isinstance(rng, OffsetRange):
        return slice(rng.offset, None)
    return slice(max(size - rng.length, 0), None)


async def test_switching_between_inline_and_gridfs_leaves_no_files(
    gridfs_store: MongoDBStore, mongodb_server: MongoServer, mongodb_location: StoreLocation
) -> None:
    big, small = b"B" * 10_000, b"s" * 10
    await gridfs_store.set("k", big)
    assert await gridfs_store.get("k") == big
    await gridfs_store.set("k", small)
    assert await gridfs_store.get("k") == small
    await gridfs_store.set("k", big[:5000])
    await gridfs_store.set("k", big)  # GridFS -> GridFS: old file deleted
    assert await gridfs_store.get("k") == big
    await gridfs_store.set_if_version("k", b"x" * 2000, (await _version(gridfs_store, "k")))
    assert await gridfs_store.get("k") == b"x" * 2000
    assert await gridfs_store.set_if_not_exists("k", big) is False
    assert await _gridfs_file_count(mongodb_server, mongodb_location) == 1
    await gridfs_store.delete("k")
    assert await gridfs_store.get("k") is None
    assert await _gridfs_file_count(mongodb_server, mongodb_location) == 0


async def _version(store: MongoDBStore, key: str) -> str:
    got = await store.get_versioned(key)
    assert got is not None
    return got.version


async def _gridfs_file_count(server: MongoServer, location: StoreLocation) -> int:
    from pymongo import AsyncMongoClient

    database = location.url.split("/")[3]
    client: AsyncMongoClient[dict[str, object]] = AsyncMongoClient(server.uri)
    try:
        return len([d async for d in client[database]["zarr_fs.files"].find({}, {"_id": 1})])
    finally:
        await client.close()


async def test_readers_never_see_half_written_values(gridfs_store: MongoDBStore) -> None:
    values = [bytes([i]) * 30_000 for i in range(1, 6)]
    await gridfs_store.set("hot", values[0])
    stop = asyncio.Event()

    async def writer() -> None:
        for v in values[1:] * 3:
            await gridfs_store.set("hot", v)
        stop.set()

    async def reader() -> int:
        seen = 0
        while not stop.is_set():
            got = await gridfs_store.get("hot")
            assert got in values
            seen += 1
        return seen

    results = await asyncio.gather(writer(), reader(), reader())
    assert results[1] + results[2] > 0


async def test_prefix_in_url_isolates_stores(mongodb_location: StoreLocation) -> None:
    base = mongodb_location.url.split("?")[0].rsplit("/", 1)[0]  # .../<db>/zarr
    a = mongodb_store_from_url(
        f"{base}/one?serverSelectionTimeoutMS=5000", read_only=False, storage_options={}
    )
    b = mongodb_store_from_url(
        f"{base}/one-two?serverSelectionTimeoutMS=5000", read_only=False, storage_options={}
    )
    whole = mongodb_store_from_url(
        f"{base}?serverSelectionTimeoutMS=5000", read_only=False, storage_options={}
    )
    try:
        await a.set("x/k", b"a")
        await b.set("x/k", b"b")
        assert [k async for k in a.list_prefix("")] == ["x/k"]
        assert await a.list_dir("") == ["x"]
        assert await a.get("x/k") == b"a"
        assert await b.get("x/k") == b"b"
        assert sorted([k async for k in whole.list_prefix("")]) == ["one-two/x/k", "one/x/k"]
        assert await whole.list_dir("") == ["one", "one-two"]
        await a.delete_prefix("")
        assert await b.get("x/k") == b"b"
    finally:
        for s in (a, b, whole):
            await s.aclose()


async def test_client_is_shared_and_refcounted(mongodb_location: StoreLocation) -> None:
    a = mongodb_store_from_url(mongodb_location.url, read_only=False, storage_options={})
    b = store_from_url(mongodb_location.url, read_only=True)
    assert isinstance(b, MongoDBStore)
    await a.set("k", b"v")
    assert await b.get("k") == b"v"
    assert a._shared() is b._shared()
    shared = a._shared()
    assert shared.refs == 2
    await a.aclose()
    assert shared.refs == 1
    assert await b.get("k") == b"v"  # the client is still open for b
    await b.aclose()
    assert shared.refs == 0
    with pytest.raises(StoreError, match="closed"):
        await a.get("k")


# -- URL parsing and options -------------------------------------------------------------------


def test_url_parsing() -> None:
    s = mongodb_store_from_url(
        "mongodb://u:p%40ss@h1:1,h2:2/mydb/arrays/run%201/temp?replicaSet=rs0&authSource=admin",
        read_only=True,
        storage_options={"inline_threshold": 10, "limits": StoreLimits(max_concurrency=7)},
    )
    assert s._database == "mydb"
    assert s._collection == "arrays"
    assert s._root == "run 1/temp/"
    assert s._uri == "mongodb://u:p%40ss@h1:1,h2:2/?replicaSet=rs0&authSource=admin"
    assert s._client_kwargs["maxPoolSize"] == 7
    assert s.read_only
    assert s.inline_threshold == 10
    assert s.endpoint_key == "mongodb:h1:1,h2:2"
    text = repr(s) + str(s) + s.endpoint_key
    assert "p%40ss" not in text
    assert "p@ss" not in text
    assert "u:" not in text
    assert repr(s) == "MongoDBStore(mongodb://h1:1,h2:2/mydb/arrays/run 1/temp, read-only)"
    srv = mongodb_store_from_url(
        "mongodb+srv://cluster.example.net/db/c", read_only=False, storage_options={}
    )
    assert srv._uri == "mongodb+srv://cluster.example.net/"
    assert srv._root == ""
    pooled = mongodb_store_from_url(
        "mongodb://h/db/c?maxPoolSize=3", read_only=False, storage_options={}
    )
    assert "maxPoolSize" not in pooled._client_kwargs
    # a server that is not there fails an attempt in 5 s, not pymongo's 30 (per attempt:
    # the whole retry deadline); the URI or client_kwargs decide where they say
    assert s._client_kwargs["serverSelectionTimeoutMS"] == 5000
    waits = mongodb_store_from_url(
        "mongodb://h/db/c?serverSelectionTimeoutMS=900", read_only=False, storage_options={}
    )
    assert "serverSelectionTimeoutMS" not in waits._client_kwargs
    kw = {"client_kwargs": {"serverselectiontimeoutms": 100}}
    chosen = mongodb_store_from_url("mongodb://h/db/c", read_only=False, storage_options=kw)
    assert chosen._client_kwargs == {"serverselectiontimeoutms": 100, "maxPoolSize": 64}


@pytest.mark.parametrize(
    ("url", "options", "match"),
    [
        ("mongodb://h/db", {}, "database and a collection"),
        ("mongodb:///db/c", {}, "needs a host"),
        ("mongodb://h/bad.db/c", {}, "database name"),
        ("mongodb://h/db/system.x", {}, "collection name"),
        ("mongodb://h/db/c", {"bogus": 1}, "unknown storage_options"),
        ("mongodb://h/db/c", {"inline_threshold": 64 << 20}, "inline_threshold"),
        ("mongodb://h/db/c", {"inline_threshold": -1}, "inline_threshold"),
        ("mongodb://h/db/c", {"gridfs_chunk_size": 10}, "gridfs_chunk_size"),
        ("mongodb://h/db/c", {"limits": 5}, "StoreLimits"),
        ("mongodb://h/db/c", {"client_kwargs": [1]}, "mapping"),
        ("mongodb://h/db/c/../x", {}, "'..'"),
        ("mongodb://h/db/c/run#1", {}, "fragment"),
    ],
)
def test_bad_urls_and_options(url: str, options: dict[str, object], match: str) -> None:
    with pytest.raises((ConfigError, StoreError), match=match):
        mongodb_store_from_url(url, read_only=False, storage_options=options)


@pytest.mark.parametrize("kwargs", [{"bogus": 1}, {"maxPoolSize": -1}])
async def test_bad_client_option_is_config_error(kwargs: dict[str, object]) -> None:
    s = mongodb_store_from_url(
        "mongodb://127.0.0.1:1/db/c", read_only=False, storage_options={"client_kwargs": kwargs}
    )
    try:
        with pytest.raises(ConfigError):
            await s.get("k")
    finally:
        await s.aclose()


# -- failures --------------------------------------------------------------------------------


@pytest.fixture
def dead_url() -> str:
    port = free_port()  # nothing listens there
    return f"mongodb://127.0.0.1:{port}/db/coll?serverSelectionTimeoutMS=300&connectTimeoutMS=300"


async def test_dead_server_is_transient(dead_url: str) -> None:
    s = mongodb_store_from_url(dead_url, read_only=False, storage_options={})
    try:
        with pytest.raises(TransientStoreError):
            await s.get("k")
        with pytest.raises(TransientStoreError):
            await s.set("k", b"v")
        with pytest.raises(TransientStoreError):
            [k async for k in s.list_prefix("")]
    finally:
        await s.aclose()


async def test_fixture_drops_its_database(mongodb_server: MongoServer) -> None:
    from pymongo import AsyncMongoClient

    url = mongodb_server.url_for("asyncarr_dropme", "zarr")
    s = mongodb_store_from_url(url, read_only=False, storage_options={})
    await s.set("k", b"v")
    await s.aclose()
    drop_database(mongodb_server, "asyncarr_dropme")
    client: AsyncMongoClient[dict[str, object]] = AsyncMongoClient(mongodb_server.uri)
    try:
        assert await client["asyncarr_dropme"]["zarr"].find_one({"_id": "k"}) is None
    finally:
        await client.close()
