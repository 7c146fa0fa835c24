"""S3Store against real moto and SeaweedFS servers on 127.0.0.1."""

from __future__ import annotations

import asyncio
import logging
import os
import subprocess
import sys
import textwrap
from collections.abc import AsyncIterator, Iterator
from typing import Any, ClassVar

import pytest

from asyncarr._types import ByteRange, OffsetRange, SuffixRange
from asyncarr.abc import Store
from asyncarr.config import StoreLimits
from asyncarr.errors import (
    ConfigError,
    KeyNotFoundError,
    PermissionDeniedError,
    PreconditionFailedError,
    StoreError,
    ThrottledError,
    TransientStoreError,
    TruncatedReadError,
    UnsupportedOperationError,
)
from asyncarr.runtime import managed
from asyncarr.stores import store_from_url
from asyncarr.stores._s3 import S3Store, s3_store_from_url
from asyncarr.stores._s3_errors import ConditionalRequestConflict
from asyncarr.testing import StoreTests
from asyncarr.testing._procs import StoreLocation, free_port
from asyncarr.testing._servers_s3 import S3TestServer

pytestmark = pytest.mark.servers


class _S3Suite(StoreTests):
    server_fixture: ClassVar[str]

    @pytest.fixture
    def server(self, request: pytest.FixtureRequest) -> S3TestServer:
        server: S3TestServer = request.getfixturevalue(self.server_fixture)
        self._secrets = [server.secret_key, server.access_key]
        return server

    @pytest.fixture
    def bucket(self, server: S3TestServer) -> Iterator[str]:
        name = server.create_bucket()
        yield name
        server.delete_bucket(name)

    @pytest.fixture
    async def store(self, server: S3TestServer, bucket: str) -> AsyncIterator[Store]:
        s = S3Store(bucket, "data/root", **server.storage_options())  # type: ignore[arg-type]
        yield s
        await s.aclose()

    @pytest.fixture
    async def read_only_store(self, store: S3Store) -> AsyncIterator[Store]:
        ro = store.with_read_only()
        yield ro
        await ro.aclose()

    def secrets(self) -> list[str]:
        return self._secrets

    async def test_conditional_write_race_has_one_winner(self, store: Store) -> None:
        """Like the suite's test, but no racer rewrites the base value's bytes.

        S3 versions are ETags, i.e. content digests: a racer writing the very
        bytes it read (the suite's racer 0 writes b"0" over b"0") leaves the
        version unchanged, so a second racer then legitimately wins too.
        """
        await store.set("ctr", b"0")
        base = await store.get_versioned("ctr")
        assert base is not None

        async def attempt(i: int) -> bool:
            try:
                await store.set_if_version("ctr", str(i + 1).encode(), base.version)
            except PreconditionFailedError:
                return False
            return True

        results = await asyncio.gather(*(attempt(i) for i in range(8)))
        assert sum(results) == 1
        assert await store.get("ctr") == str(results.index(True) + 1).encode()


class TestS3StoreMoto(_S3Suite):
    server_fixture = "moto_s3_server"
    many_keys = 300  # pagination is exercised on SeaweedFS (faster per request)


class TestS3StoreSeaweedFS(_S3Suite):
    server_fixture = "seaweedfs_s3_server"
    many_keys = 1100  # two listing pages, two DeleteObjects batches


# -- helpers ---------------------------------------------------------------------------------
def _store(server: S3TestServer, bucket: str, prefix: str = "", **options: Any) -> S3Store:
    url = f"s3://{bucket}/{prefix}"
    return s3_store_from_url(
        url, read_only=False, storage_options=server.storage_options(**options)
    )


# -- URL parsing and storage_options ---------------------------------------------------------
def test_url_parsing() -> None:
    s = s3_store_from_url("s3://my-bucket/a/b/", read_only=True, storage_options={})
    assert (s.bucket, s.prefix, s.read_only) == ("my-bucket", "a/b/", True)
    s = s3_store_from_url("s3://my-bucket", read_only=False, storage_options={})
    assert (s.bucket, s.prefix) == ("my-bucket", "")
    assert isinstance(store_from_url("s3://my-bucket/x"), S3Store)


@pytest.mark.parametrize(
    "url",
    [
        "s3://",
        "s3:///prefix",
        "s3://bucket/x?versionId=1",
        "s3://bucket/x#frag",
        "s3://key:secret@bucket/x",
        "s3://bucket:9000/x",
        "s3://b/x",
        "s3://bad_bucket!/x",
        "s3://bucket/a/../../b",
        "s3://bucket/a//b",
    ],
)
def test_bad_urls(url: str) -> None:
    with pytest.raises(ConfigError):
        s3_store_from_url(url, read_only=False, storage_options={})


@pytest.mark.parametrize(
    ("options", "match"),
    [
        ({"bogus": 1}, "unknown storage_options"),
        ({"endpoint": "http://x"}, "unknown storage_options"),
        ({"anon": "yes"}, "anon"),
        ({"conditional_writes": 1}, "conditional_writes"),
        ({"connect_timeout": -1}, "connect_timeout"),
        ({"read_timeout": True}, "read_timeout"),
        ({"read_timeout": "5"}, "read_timeout"),
        ({"addressing_style": "weird"}, "addressing_style"),
        ({"limits": {"max_concurency": 4}}, "limits"),  # a dict is fine; a misspelt field is not
        ({"endpoint_url": "ftp://host"}, "endpoint_url"),
        ({"endpoint_url": "localhost:9000"}, "endpoint_url"),
        ({"aws_access_key_id": "AKIA"}, "both"),
        ({"aws_secret_access_key": "s"}, "both"),
        ({"aws_session_token": "t"}, "aws_session_token"),
        ({"anon": True, "aws_access_key_id": "k", "aws_secret_access_key": "s"}, "anon"),
    ],
)
def test_bad_storage_options(options: dict[str, Any], match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        s3_store_from_url("s3://bucket/x", read_only=False, storage_options=options)


def test_options_are_applied() -> None:
    limits = StoreLimits(max_concurrency=7)
    s = s3_store_from_url(
        "s3://bucket/x",
        read_only=False,
        storage_options={
            "endpoint_url": "http://user:pw@127.0.0.1:9/path/?token=abc",
            "region_name": "eu-west-3",
            "limits": limits,
            "conditional_writes": False,
            "anon": None,  # None means "not given"
        },
    )
    assert s.limits is limits
    assert not s.supports_conditional_writes
    assert s.endpoint_key == "s3:http://127.0.0.1:9/path:eu-west-3"
    text = repr(s) + str(s) + s.endpoint_key
    assert "pw" not in text and "abc" not in text and "user" not in text


def test_endpoint_and_region_from_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:1")
    monkeypatch.setenv("AWS_ENDPOINT_URL_S3", "http://127.0.0.1:2")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "ap-south-1")
    monkeypatch.delenv("AWS_REGION", raising=False)
    s = s3_store_from_url("s3://bucket", read_only=False, storage_options={})
    assert s.endpoint_key == "s3:http://127.0.0.1:2:ap-south-1"
    monkeypatch.setenv("AWS_IGNORE_CONFIGURED_ENDPOINT_URLS", "true")
    s = s3_store_from_url("s3://bucket", read_only=False, storage_options={})
    assert s.endpoint_key == "s3:aws:ap-south-1"


# -- credentials, permissions, anonymous access ------------------------------------------------
@pytest.fixture
def weed_bucket(seaweedfs_s3_server: S3TestServer) -> Iterator[str]:
    name = seaweedfs_s3_server.create_bucket()
    yield name
    seaweedfs_s3_server.delete_bucket(name)


async def test_credentials_from_environment(
    seaweedfs_s3_server: S3TestServer, weed_bucket: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    server = seaweedfs_s3_server
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", server.access_key)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", server.secret_key)
    monkeypatch.delenv("AWS_SESSION_TOKEN", raising=False)
    monkeypatch.delenv("AWS_PROFILE", raising=False)
    monkeypatch.setenv("AWS_ENDPOINT_URL", server.endpoint)
    monkeypatch.setenv("AWS_DEFAULT_REGION", server.region)
    opts = {"addressing_style": "path"}
    async with store_from_url(f"s3://{weed_bucket}/env", storage_options=opts) as s:
        await s.set("k", b"from env")
        assert await s.get("k") == b"from env"
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "not-the-secret")
    async with store_from_url(f"s3://{weed_bucket}/env", storage_options=opts) as s:
        with pytest.raises(PermissionDeniedError) as info:
            await s.get("k")
        assert "not-the-secret" not in str(info.value)


@pytest.mark.parametrize(
    "creds",
    [
        {"aws_secret_access_key": "wrong-secret-value"},
        {"aws_access_key_id": "AKIANOSUCHKEY", "aws_secret_access_key": "wrong-secret-value"},
    ],
)
async def test_wrong_credentials_are_permission_errors(
    seaweedfs_s3_server: S3TestServer, weed_bucket: str, creds: dict[str, str]
) -> None:
    async with _store(seaweedfs_s3_server, weed_bucket, **creds) as s:
        for call in (
            lambda: s.get("k"),
            lambda: s.set("k", b"v"),
            lambda: s.exists("k"),
            lambda: s.list_dir(""),
        ):
            with pytest.raises(PermissionDeniedError) as info:
                await call()
            assert "wrong-secret-value" not in str(info.value)
            assert weed_bucket in str(info.value)


async def test_anonymous_access(s3_server: S3TestServer) -> None:
    public = s3_server.public_bucket
    async with _store(s3_server, public, "anon-test") as writer:
        await writer.set("k", b"public data")
    url = f"s3://{public}/anon-test"
    opts = {"endpoint_url": s3_server.endpoint, "region_name": s3_server.region, "anon": True}
    async with store_from_url(url, storage_options=opts) as anon:
        assert await anon.get("k") == b"public data"
        assert await anon.get("k", ByteRange(0, 6)) == b"public"
        assert await anon.get("missing") is None
        assert await anon.list_dir("") == ["k"]
        if s3_server.checks_credentials:  # moto lets anyone write to a public-read bucket
            with pytest.raises(PermissionDeniedError):
                await anon.set("k", b"vandalised")
    async with writer:
        await writer.delete("k")


async def test_anonymous_read_of_private_bucket_is_refused(s3_location: StoreLocation) -> None:
    opts = {**s3_location.storage_options, "anon": True}
    del opts["aws_access_key_id"], opts["aws_secret_access_key"]
    async with store_from_url(s3_location.url, storage_options=s3_location.storage_options) as s:
        await s.set("k", b"secret data")
    async with store_from_url(s3_location.url, storage_options=opts) as anon:
        with pytest.raises(PermissionDeniedError):
            await anon.get("k")


async def test_missing_bucket(s3_server: S3TestServer) -> None:
    bucket = s3_server.new_bucket_name()
    async with _store(s3_server, bucket) as s:
        for call in (
            lambda: s.get("k"),
            lambda: s.set("k", b"v"),
            lambda: s.list_dir(""),
            lambda: s.get("k", ByteRange(0, 2)),
        ):
            with pytest.raises(StoreError, match=f"bucket '{bucket}' does not exist") as info:
                await call()
            assert not isinstance(info.value, KeyNotFoundError | TransientStoreError)
        with pytest.raises(StoreError, match="does not exist"):
            [k async for k in s.list_prefix("")]


async def test_dead_endpoint_is_transient() -> None:
    port = free_port()  # nothing listens there
    opts = {
        "endpoint_url": f"http://127.0.0.1:{port}",
        "aws_access_key_id": "AKIADEAD",
        "aws_secret_access_key": "dead-secret",
        "connect_timeout": 1,
        "read_timeout": 1,
        "region_name": "us-east-1",
    }
    async with store_from_url("s3://bucket/x", storage_options=opts) as s:
        for call in (lambda: s.get("k"), lambda: s.set("k", b"v"), lambda: s.exists("k")):
            with pytest.raises(TransientStoreError) as info:
                await asyncio.wait_for(call(), timeout=20)
            assert not isinstance(info.value, ThrottledError)
            assert "dead-secret" not in str(info.value)


async def test_credentials_absent_from_repr_and_errors(s3_server: S3TestServer) -> None:
    async with _store(s3_server, s3_server.new_bucket_name(), "p") as s:
        text = repr(s) + str(s) + s.endpoint_key
        with pytest.raises(StoreError) as info:
            await s.get("k")
        text += str(info.value) + repr(info.value)
    assert s3_server.secret_key not in text
    assert s3_server.access_key not in text
    assert "S3Store(s3://" in repr(s)
    assert s3_server.endpoint in repr(s)


# -- behaviour details -----------------------------------------------------------------------
async def test_zero_length_and_edge_ranges(s3_store: S3Store) -> None:
    s = s3_store
    await s.set("empty", b"")
    await s.set("v", b"0123456789")
    for key, value in (("empty", b""), ("v", b"0123456789")):
        for rng in (
            ByteRange(0, 0),
            ByteRange(3, 3),
            ByteRange(20, 30),
            ByteRange(5, 100),
            OffsetRange(0),
            OffsetRange(10),
            OffsetRange(50),
            SuffixRange(0),
            SuffixRange(3),
            SuffixRange(100),
        ):
            expected = value[slice(*_py_slice(rng, len(value)))]
            assert await s.get(key, rng) == expected, (key, rng)
    for rng in (ByteRange(0, 0), SuffixRange(0), OffsetRange(5), ByteRange(1, 2)):
        assert await s.get("missing", rng) is None
    assert await s.get_ranges("v", []) == []
    assert await s.get_ranges("missing", [ByteRange(0, 1), SuffixRange(1)]) is None


def _py_slice(rng: ByteRange | OffsetRange | SuffixRange, size: int) -> tuple[int, int]:
    if isinstance(rng, ByteRange):
        return min(rng.start, size), min(rng.end, size)
    if isinstance(rng, OffsetRange):
        return min(rng.offset, size), size
    return max(size - rng.length, 0), size


async def test_prefixes_isolate_stores(s3_server: S3TestServer, s3_location: StoreLocation) -> None:
    bucket = s3_location.url.removeprefix("s3://").split("/")[0]
    async with (
        _store(s3_server, bucket, "one") as one,
        _store(s3_server, bucket, "one2") as two,
        _store(s3_server, bucket) as root,
    ):
        await one.set("a/k", b"1")
        await two.set("a/k", b"2")
        assert [k async for k in one.list_prefix("")] == ["a/k"]
        assert await one.list_dir("") == ["a"]
        assert await two.get("a/k") == b"2"
        assert await root.list_dir("") == ["one", "one2"]
        assert sorted([k async for k in root.list_prefix("one")]) == ["one/a/k", "one2/a/k"]
        await one.delete_prefix("")
        assert await two.get("a/k") == b"2"
        assert await root.list_dir("") == ["one2"]


async def test_values_written_by_other_clients(s3_server: S3TestServer, s3_store: S3Store) -> None:
    """Keys and directory markers made by other tools are listed sensibly."""
    client = s3_server.admin
    bucket = s3_store.bucket
    await asyncio.to_thread(client.put_object, Bucket=bucket, Key="root/dir/", Body=b"")
    await asyncio.to_thread(client.put_object, Bucket=bucket, Key="root/dir/x", Body=b"abc")
    assert await s3_store.list_dir("") == ["dir"]
    assert await s3_store.list_dir("dir") == ["x"]
    assert await s3_store.get("dir/x") == b"abc"


async def test_conditional_writes_disabled(s3_location: StoreLocation, caplog: Any) -> None:
    opts = {**s3_location.storage_options, "conditional_writes": False}
    async with store_from_url(s3_location.url, storage_options=opts) as s:
        assert not s.supports_conditional_writes
        with pytest.raises(UnsupportedOperationError):
            await s.get_versioned("k")
        with pytest.raises(UnsupportedOperationError):
            await s.set_if_version("k", b"v", None)
        with caplog.at_level(logging.WARNING, logger="asyncarr.stores._s3"):
            assert await s.set_if_not_exists("k", b"first") is True
            assert await s.set_if_not_exists("k", b"second") is False
        assert await s.get("k") == b"first"
        assert "not atomic" in caplog.text or "non-atomic" in caplog.text


async def test_set_if_version_on_deleted_key(s3_store: S3Store) -> None:
    await s3_store.set("k", b"v1")
    got = await s3_store.get_versioned("k")
    assert got is not None
    await s3_store.delete("k")
    with pytest.raises(PreconditionFailedError):
        await s3_store.set_if_version("k", b"v2", got.version)
    assert await s3_store.get("k") is None


async def test_getsize_missing_and_exists(s3_store: S3Store) -> None:
    with pytest.raises(KeyNotFoundError):
        await s3_store.getsize("nope/deeper")
    assert not await s3_store.exists("nope")


# -- the shared client ----------------------------------------------------------------------------
async def test_client_is_shared_and_refcounted(
    s3_server: S3TestServer, s3_location: StoreLocation
) -> None:
    bucket = s3_location.url.removeprefix("s3://").split("/")[0]
    a = _store(s3_server, bucket, "a")
    b = _store(s3_server, bucket, "b")
    other = _store(s3_server, bucket, "a", read_timeout=33)
    ro = a.with_read_only()
    client_a, client_b = await a._client(), await b._client()
    assert client_a is client_b
    assert await ro._client() is client_a
    assert await other._client() is not client_a
    config = client_a.meta.config
    assert config.retries["total_max_attempts"] == 1  # asyncarr retries, not botocore
    assert config.max_pool_connections == a.limits.max_concurrency
    http_session = client_a._endpoint.http_session
    await a.aclose()
    await a.aclose()
    await ro.aclose()
    assert await b.get("x") is None  # still open for b
    await b.aclose()
    assert http_session._sessions is None  # aiohttp sessions closed
    await other.aclose()
    # a closed store reconnects on use (and must be closed again)
    assert await a.get("x") is None
    await a.aclose()


async def test_concurrent_first_use_opens_one_client(s3_location: StoreLocation) -> None:
    async with store_from_url(s3_location.url, storage_options=s3_location.storage_options) as s:
        assert isinstance(s, S3Store)
        results = await asyncio.gather(*(s.get(f"k{i}") for i in range(32)))
        assert results == [None] * 32
        assert len(s._entries) == 1
        entry = next(iter(s._entries.values()))
        assert entry.refs == 1


_NO_WARNINGS_SCRIPT = """
import asyncio, gc, sys, warnings
warnings.simplefilter("always")
from asyncarr.runtime import managed
from asyncarr.stores import store_from_url

URL, OPTS = sys.argv[1], {k: v for k, v in (a.split("=", 1) for a in sys.argv[2:])}

async def main():
    loop = asyncio.get_running_loop()
    problems = []
    loop.set_exception_handler(lambda l, ctx: problems.append(ctx.get("message")))
    stores = [store_from_url(URL, storage_options=OPTS) for _ in range(3)]
    await stores[0].set("k", b"v")
    await asyncio.gather(*(s.get("k") for s in stores))
    ro = stores[1].with_read_only()
    assert await ro.get("k") == b"v"
    for s in [*stores, ro]:
        await s.aclose()
    del stores, ro, s
    gc.collect()
    await asyncio.sleep(0.05)
    gc.collect()
    assert not problems, problems

asyncio.run(main())
gc.collect()
print("done")
"""


def test_no_unclosed_session_warnings(seaweedfs_s3_server: S3TestServer, weed_bucket: str) -> None:
    options = seaweedfs_s3_server.storage_options()
    args = [f"{k}={v}" for k, v in options.items() if isinstance(v, str)]
    proc = subprocess.run(
        [
            sys.executable,
            "-X",
            "dev",
            "-c",
            textwrap.dedent(_NO_WARNINGS_SCRIPT),
            f"s3://{weed_bucket}/p",
            *args,
        ],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "PYTHONWARNINGS": "always"},
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "done"
    assert "Unclosed" not in proc.stderr, proc.stderr
    assert "ResourceWarning" not in proc.stderr, proc.stderr


# -- a connection cut mid-body -----------------------------------------------------------------
class _CuttingProxy:
    """A TCP proxy to a real server that cuts responses after ``limit`` bytes."""

    def __init__(self, target_port: int, limit: int) -> None:
        self.target_port = target_port
        self.limit = limit
        self.server: asyncio.Server | None = None

    async def start(self) -> int:
        self.server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        port: int = self.server.sockets[0].getsockname()[1]
        return port

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.target_port)

        async def upstream() -> None:
            while data := await reader.read(65536):
                up_writer.write(data)
                await up_writer.drain()

        async def downstream() -> None:
            sent = 0
            while sent < self.limit and (data := await up_reader.read(65536)):
                data = data[: self.limit - sent]
                writer.write(data)
                await writer.drain()
                sent += len(data)

        task = asyncio.ensure_future(upstream())
        try:
            await downstream()
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
            for w in (writer, up_writer):
                w.close()

    async def aclose(self) -> None:
        assert self.server is not None
        self.server.close()
        await self.server.wait_closed()


async def test_body_cut_short_is_truncated_read(moto_s3_server: S3TestServer) -> None:
    server = moto_s3_server
    bucket = server.create_bucket()
    try:
        async with _store(server, bucket) as s:
            await s.set("big", b"x" * 200_000)
            await s.set("small", b"y" * 100)
        port = int(server.endpoint.rsplit(":", 1)[1])
        proxy = _CuttingProxy(port, limit=50_000)
        proxy_port = await proxy.start()
        try:
            opts = server.storage_options(endpoint_url=f"http://127.0.0.1:{proxy_port}")
            async with store_from_url(f"s3://{bucket}", storage_options=opts) as cut:
                with pytest.raises(TruncatedReadError):
                    await cut.get("big")  # through botocore
                assert await cut.get("small") == b"y" * 100  # shows the lean path the way
                with pytest.raises(TruncatedReadError):
                    await cut.get("big")  # through the lean path
        finally:
            await proxy.aclose()
    finally:
        server.delete_bucket(bucket)


async def test_delete_prefix_in_batches(s3_store: S3Store, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("asyncarr.stores._s3._DELETE_BATCH", 7)
    keys = [f"del/{i}" for i in range(23)] + ["keep/0", "delx"]
    await asyncio.gather(*(s3_store.set(k, b"v") for k in keys))
    await s3_store.delete_prefix("del/")
    assert sorted([k async for k in s3_store.list_prefix("")]) == ["delx", "keep/0"]
    await s3_store.delete_prefix("")
    assert [k async for k in s3_store.list_prefix("")] == []


# -- error translation (botocore's own exception objects, as the SDK raises them) -------------
def _client_error(code: str, status: int) -> Exception:
    from botocore.exceptions import ClientError

    response: Any = {
        "Error": {"Code": code, "Message": f"message for {code}"},
        "ResponseMetadata": {"HTTPStatusCode": status},
    }
    error: Exception = ClientError(response, "GetObject")
    return error


@pytest.mark.parametrize(
    ("code", "status", "expected"),
    [
        ("SlowDown", 503, ThrottledError),
        ("TooManyRequests", 429, ThrottledError),
        ("RequestLimitExceeded", 400, ThrottledError),
        ("Throttling", 400, ThrottledError),
        ("ServiceUnavailable", 503, TransientStoreError),
        ("InternalError", 500, TransientStoreError),
        ("BadGateway", 502, TransientStoreError),
        ("RequestTimeout", 400, TransientStoreError),
        ("AccessDenied", 403, PermissionDeniedError),
        ("InvalidAccessKeyId", 403, PermissionDeniedError),
        ("SignatureDoesNotMatch", 403, PermissionDeniedError),
        ("ExpiredToken", 400, PermissionDeniedError),
        ("PreconditionFailed", 412, PreconditionFailedError),
        ("ConditionalRequestConflict", 409, ConditionalRequestConflict),
        ("NoSuchKey", 404, KeyNotFoundError),
        ("NoSuchBucket", 404, StoreError),
        ("InvalidArgument", 400, StoreError),
        ("", 503, TransientStoreError),
        ("BadDigest", 400, TransientStoreError),  # a body damaged on its way: sent again
        ("NoSuchUpload", 404, TransientStoreError),  # a multipart upload aborted elsewhere
        ("EntityTooLarge", 400, StoreError),
    ],
)
def test_client_error_translation(code: str, status: int, expected: type[Exception]) -> None:
    """botocore's errors, and the lean path's answers (the XML error body) alike."""
    from asyncarr.stores._http1 import HTTPResponse

    s = S3Store("my-bucket", "p")
    err = s._translate(_client_error(code, status), "k")
    body = f"<Error><Code>{code}</Code><Message>m</Message></Error>".encode() if code else b""
    lean = s._answer_error(HTTPResponse(status, {}, body), "k")
    assert type(err) is type(lean) is expected
    assert err.key == lean.key == "k"
    if code == "NoSuchBucket":
        assert "'my-bucket' does not exist" in str(err) and "does not exist" in str(lean)


def test_transport_error_translation() -> None:
    import aiohttp
    from botocore import exceptions as bx

    s = S3Store("my-bucket")
    cases: list[tuple[Exception, type[Exception]]] = [
        (bx.EndpointConnectionError(endpoint_url="http://x"), TransientStoreError),
        (bx.ConnectTimeoutError(endpoint_url="http://x"), TransientStoreError),
        (bx.ReadTimeoutError(endpoint_url="http://x"), TransientStoreError),
        (bx.ConnectionClosedError(endpoint_url="http://x"), TransientStoreError),
        (bx.ResponseStreamingError(error="reset"), TransientStoreError),
        (bx.IncompleteReadError(actual_bytes=1, expected_bytes=2), TruncatedReadError),
        (aiohttp.ClientPayloadError("cut"), TransientStoreError),
        (TimeoutError(), TransientStoreError),
        (bx.NoCredentialsError(), PermissionDeniedError),
        (bx.ParamValidationError(report="bad"), StoreError),
    ]
    for exc, expected in cases:
        assert type(s._translate(exc, None)) is expected, exc


def test_missing_sdk_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    from asyncarr.errors import MissingExtraError
    from asyncarr.stores import _s3_client

    _s3_client.sdk.cache_clear()
    for name in [m for m in sys.modules if m.split(".")[0] == "aiobotocore"] + ["aiobotocore"]:
        monkeypatch.setitem(sys.modules, name, None)
    try:
        with pytest.raises(MissingExtraError, match=r"asyncarr\[s3\]"):
            s3_store_from_url("s3://bucket/x", read_only=False, storage_options={})
    finally:
        _s3_client.sdk.cache_clear()


# -- the lean read path (asyncarr.stores._s3_lean) -------------------------------------------
def _count_botocore_gets(store: S3Store, client: Any) -> list[int]:
    sent = [0]

    def count(**_: Any) -> None:
        sent[0] += 1

    client.meta.events.register("before-send.s3.GetObject", count)
    return sent


@pytest.mark.parametrize(
    ("lean", "direct"),
    [(True, True), (True, False), (False, True)],
    ids=["lean over asyncarr's HTTP client", "lean over aiohttp", "botocore only"],
)
async def test_value_reads_leave_botocore_after_the_first_get(
    s3_server: S3TestServer, lean: bool, direct: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    from asyncarr.stores._s3_lean import LeanReader

    monkeypatch.setattr(LeanReader, "direct", direct)  # aiohttp: what proxies go through
    bucket = s3_server.create_bucket()
    try:
        async with _store(s3_server, bucket, "p r/é", lean_reads=lean) as s:
            value = bytes(range(256)) * 40
            # written by another client: this store's first object call is a GET
            s3_server.admin.put_object(Bucket=bucket, Key="p r/é/a/k+1", Body=value)
            sent = _count_botocore_gets(s, await s._client())
            for _ in range(3):
                assert await s.get("a/k+1") == value
                assert await s.get("a/missing") is None
                assert await s.get("a/k+1", ByteRange(10, 20)) == value[10:20]
                assert await s.get("a/k+1", OffsetRange(10_230)) == value[10_230:]
                assert await s.get("a/k+1", SuffixRange(7)) == value[-7:]
                assert await s.get("a/k+1", ByteRange(20_000, 20_010)) == b""
                assert await s.get_ranges("a/k+1", [ByteRange(0, 3), SuffixRange(2)]) == [
                    value[:3],
                    value[-2:],
                ]
            # botocore sends the first GET (and, lean or not, nothing is read differently)
            assert sent[0] == (1 if lean else 3 * 8)
    finally:
        s3_server.delete_bucket(bucket)


async def test_lean_reads_of_two_buckets_with_the_same_keys_never_mix(
    s3_server: S3TestServer,
) -> None:
    """Two buckets of one endpoint share the client; each learns its own route, even when
    the other bucket's URL ends with the same key (it used to be adopted: the second
    bucket's reads went to the first bucket and returned its data)."""
    buckets = [s3_server.create_bucket(), s3_server.create_bucket()]
    try:
        stores = [_store(s3_server, b, "run") for b in buckets]
        try:
            for i, s in enumerate(stores):
                await s.set("c/0", b"bucket %d" % i)
            for _ in range(2):  # learned by botocore's GET, then read over the lean path
                for i, s in enumerate(stores):
                    assert await s.get("c/0") == b"bucket %d" % i
            for b, s in zip(buckets, stores, strict=True):
                lean = (await s._clients()).lean
                assert lean is not None
                route = lean.route(b)
                assert route is not None and b in route.path_prefix + route.host
        finally:
            for s in stores:
                await s.aclose()
    finally:
        for b in buckets:
            s3_server.delete_bucket(b)


def test_checksum_mismatch_checks_whole_bodies_against_what_the_service_sent() -> None:
    import base64
    import zlib

    from asyncarr.stores._s3_lean import LeanResponse, checksum_mismatch

    body = b"chunk bytes"
    crc = base64.b64encode(zlib.crc32(body).to_bytes(4, "big")).decode()

    def resp(status: int, data: bytes, sums: dict[str, str], kind: str | None = None) -> Any:
        return LeanResponse(status, data, len(data), None, sums, kind)

    assert checksum_mismatch(resp(200, body, {"crc32": crc})) is None
    assert "crc32" in (checksum_mismatch(resp(200, b"chunk bytez", {"crc32": crc})) or "")
    assert checksum_mismatch(resp(206, b"chunk", {"crc32": crc})) is None  # a range
    assert checksum_mismatch(resp(200, b"x", {"crc32": crc}, "COMPOSITE")) is None
    assert checksum_mismatch(resp(200, b"x", {"crc32": crc + "-3"})) is None  # multipart
    assert checksum_mismatch(resp(200, b"x", {"crc64nvme": "AAAAAAAAAAA="})) is None
    assert checksum_mismatch(resp(200, b"x", {})) is None


async def test_a_lean_read_damaged_in_transit_fails_its_checksum_and_is_read_again(
    s3_server: S3TestServer,
) -> None:
    """The lean path asks for the object's checksum, as botocore does, and checks it: a
    body of the right length but wrong bytes is a transient fault (read again), never data."""
    import dataclasses

    bucket = s3_server.create_bucket()
    try:
        async with _store(s3_server, bucket) as s:
            await s.set("c/0", b"the real chunk bytes")
            assert await s.get("c/0") == b"the real chunk bytes"  # botocore: route learned
            lean = (await s._clients()).lean
            assert lean is not None and lean.route(bucket) is not None
            real_get = lean.get
            damaged: list[bool] = []

            async def damage_once(*args: Any, **kw: Any) -> Any:
                resp = await real_get(*args, **kw)
                if not resp.checksums:
                    pytest.skip("this service sends no checksum with GetObject")
                if not damaged:
                    damaged.append(True)
                    return dataclasses.replace(resp, body=resp.body.replace(b"real", b"fake"))
                return resp

            lean.get = damage_once  # type: ignore[method-assign]
            with pytest.raises(TruncatedReadError, match="checksum"):
                await s.get("c/0")  # the store itself reports it; ManagedStore retries it
            damaged.clear()
            assert await managed(s).get("c/0") == b"the real chunk bytes"  # read again
            assert damaged == [True]
    finally:
        s3_server.delete_bucket(bucket)


async def test_lean_reads_are_signed_and_refusals_are_permission_errors(
    seaweedfs_s3_server: S3TestServer, weed_bucket: str
) -> None:
    from botocore.credentials import Credentials

    async with _store(seaweedfs_s3_server, weed_bucket) as s:
        await s.set("k", b"value")
        assert await s.get("k") == b"value"  # botocore: the route is learned
        lean = (await s._clients()).lean
        assert lean is not None and lean.route(weed_bucket) is not None
        assert await s.get("k") == b"value"  # lean, accepted: the signature is right
        good = lean._credentials
        lean._credentials = Credentials(seaweedfs_s3_server.access_key, "wrong-secret-value")
        try:
            with pytest.raises(PermissionDeniedError) as info:
                await s.get("k")  # SeaweedFS checks SigV4 signatures
            assert "wrong-secret-value" not in str(info.value)
        finally:
            lean._credentials = good
        assert await s.get("k") == b"value"


async def test_lean_reads_ignore_netrc_and_take_proxies_from_the_environment(
    moto_s3_server: S3TestServer, tmp_path: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A ``~/.netrc`` entry for the endpoint must not turn into basic auth on signed GETs
    (aiohttp refuses an Authorization header next to it); proxies still come from the
    environment, decided once per endpoint."""
    import yarl

    netrc = tmp_path / "netrc"
    netrc.write_text("machine 127.0.0.1 login someone password secret\n")
    netrc.chmod(0o600)
    monkeypatch.setenv("NETRC", str(netrc))
    for var in ("HTTP_PROXY", "http_proxy", "HTTPS_PROXY", "https_proxy", "ALL_PROXY"):
        monkeypatch.delenv(var, raising=False)
    bucket = moto_s3_server.create_bucket()
    try:
        async with _store(moto_s3_server, bucket) as s:
            await s.set("k", b"value")
            for _ in range(3):  # the first GET through botocore, then lean ones
                assert await s.get("k") == b"value"
            lean = (await s._clients()).lean
            assert lean is not None and lean.route(bucket) is not None
            origin = lean.route(bucket).origin  # type: ignore[union-attr]
            assert lean._proxy(origin) == (None, None)

            monkeypatch.setenv("HTTP_PROXY", "http://proxy.invalid:3128")
            monkeypatch.setenv("NO_PROXY", "")
            lean._proxies.clear()
            assert lean._proxy(origin)[0] == yarl.URL("http://proxy.invalid:3128")
            monkeypatch.setenv("NO_PROXY", "127.0.0.1")
            lean._proxies.clear()
            assert lean._proxy(origin) == (None, None)
    finally:
        moto_s3_server.delete_bucket(bucket)
