"""GCSStore against a real fake-gcs-server on 127.0.0.1.

Fault cases (HTTP errors, short bodies, a token endpoint) use small real HTTP
servers on loopback: a pass-through proxy in front of fake-gcs-server that can
be told to fail the next requests, a raw socket server that cuts bodies short,
and an OAuth token endpoint that checks the service-account JWT it receives.
"""

from __future__ import annotations

import asyncio
import gc
import json
import sys
import urllib.request
import warnings
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import jwt
import pytest
import pytest_asyncio
from aiohttp import web
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from asyncarr._types import ByteRange, OffsetRange, SuffixRange
from asyncarr.abc import Store
from asyncarr.config import StoreLimits
from asyncarr.errors import (
    ConfigError,
    MissingExtraError,
    PermissionDeniedError,
    PreconditionFailedError,
    StoreError,
    ThrottledError,
    TransientStoreError,
    TruncatedReadError,
)
from asyncarr.stores import store_from_url
from asyncarr.stores._gcs import DEFAULT_ENDPOINT, GCSStore, gcs_store_from_url
from asyncarr.testing import StoreTests
from asyncarr.testing._fixtures_gcs import new_gcs_bucket
from asyncarr.testing._procs import ServerProcess, StoreLocation, free_port

pytestmark = pytest.mark.servers


async def _drain(keys: AsyncIterator[str]) -> list[str]:
    return [k async for k in keys]


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("STORAGE_EMULATOR_HOST", raising=False)
    monkeypatch.delenv("GOOGLE_APPLICATION_CREDENTIALS", raising=False)


class TestGCSStore(StoreTests):
    @pytest_asyncio.fixture
    async def store(self, gcs_store: GCSStore) -> AsyncIterator[Store]:
        yield gcs_store

    @pytest_asyncio.fixture
    async def read_only_store(self, store: GCSStore) -> AsyncIterator[Store]:
        view = store.with_read_only()
        yield view
        await view.aclose()


# -- URL and option parsing (no server) --------------------------------------------------


def test_url_parsing_and_registry() -> None:
    store = store_from_url("gs://my-bucket/run1/temp", storage_options={"anon": True})
    assert isinstance(store, GCSStore)
    assert (store.bucket, store.prefix) == ("my-bucket", "run1/temp/")
    assert store.url == "gs://my-bucket/run1/temp/"
    alias = store_from_url("gcs://my-bucket", read_only=True, storage_options={"token": "anon"})
    assert isinstance(alias, GCSStore)
    assert (alias.prefix, alias.read_only, alias.anonymous) == ("", True, True)
    assert store.endpoint == DEFAULT_ENDPOINT
    assert store.endpoint_key == f"gcs:{DEFAULT_ENDPOINT}"


@pytest.mark.parametrize(
    ("url", "options", "match"),
    [
        ("gs://", {}, "no bucket"),
        ("gs://Bad_Bucket/x", {}, "invalid GCS bucket"),
        ("gs://ab/x", {}, "invalid GCS bucket"),
        ("gs://bucket/../up", {}, "invalid GCS prefix"),
        ("gs://bucket/odd#frag/x", {}, "without query or fragment"),
        ("gs://bucket/odd?q=1/x", {}, "without query or fragment"),
        ("gs://bucket/a", {"region": "eu"}, "unknown storage_options"),
        ("gs://bucket/a", {"endpoint": "ftp://x"}, "http"),
        ("gs://bucket/a", {"endpoint": "http://user:pw@host:1"}, "without user info"),
        ("gs://bucket/a", {"endpoint": "http://a:1", "api_root": "http://b:1"}, "only one"),
        ("gs://bucket/a", {"token": "/x.json", "service_account_file": "/y.json"}, "only one"),
        ("gs://bucket/a", {"anon": True, "credentials": {"type": "service_account"}}, "anon"),
        ("gs://bucket/a", {"anon": "yes"}, "bool"),
        ("gs://bucket/a", {"timeout": 0}, "positive"),
        ("gs://bucket/a", {"limits": {"max_concurrency": 0}}, "max_concurrency"),
        ("gs://bucket/a", {"limits": {"bogus": 1}}, "limits"),
        ("gs://bucket/a", {"credentials": 42}, "credentials must be"),
        ("gs://bucket/a", {"credentials": {"no": "type"}}, "'type'"),
    ],
)
def test_bad_urls_and_options(url: str, options: dict[str, Any], match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        gcs_store_from_url(url, read_only=False, storage_options=options)


def test_options_are_applied() -> None:
    store = gcs_store_from_url(
        "gs://bucket/p",
        read_only=False,
        storage_options={
            "endpoint_url": "http://127.0.0.1:9/",
            "project": "proj",
            "limits": {"max_concurrency": 7},
            "timeout": 5,
        },
    )
    assert store.endpoint == "http://127.0.0.1:9"
    assert store.anonymous  # an explicit endpoint without credentials is anonymous
    assert store.project == "proj"
    assert store.limits.max_concurrency == 7
    view = store.with_read_only()
    assert view.read_only
    assert (view.endpoint, view.limits, view.bucket) == (store.endpoint, store.limits, "bucket")
    assert "read-only" in repr(view)


def test_credentials_files_are_checked(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    missing = tmp_path / "missing.json"
    with pytest.raises(ConfigError, match="cannot be read"):
        gcs_store_from_url(
            "gs://bucket", read_only=False, storage_options={"service_account_file": str(missing)}
        )
    garbage = tmp_path / "garbage.json"
    garbage.write_text("not json at all: SECRET-ISH")
    with pytest.raises(ConfigError, match="not valid JSON") as info:
        gcs_store_from_url("gs://bucket", read_only=False, storage_options={"token": str(garbage)})
    assert "SECRET-ISH" not in str(info.value)
    monkeypatch.setenv("GOOGLE_APPLICATION_CREDENTIALS", str(missing))
    with pytest.raises(ConfigError, match="GOOGLE_APPLICATION_CREDENTIALS"):
        gcs_store_from_url("gs://bucket", read_only=False, storage_options={})
    # anonymous access never looks at the credentials variable
    assert gcs_store_from_url(
        "gs://bucket", read_only=False, storage_options={"anon": True}
    ).anonymous


def test_missing_sdk_is_a_missing_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "gcloud.aio.storage", None)
    with pytest.raises(MissingExtraError, match=r"asyncarr\[gcs\]"):
        store_from_url("gs://bucket/x", storage_options={"anon": True})


# -- the server routes --------------------------------------------------------------------


async def test_storage_emulator_host_is_honoured(
    gcs_server: ServerProcess, monkeypatch: pytest.MonkeyPatch
) -> None:
    bucket = new_gcs_bucket(gcs_server)
    # without the scheme, as many tools set it; gcloud-aio-storage adds http://
    monkeypatch.setenv("STORAGE_EMULATOR_HOST", f"127.0.0.1:{gcs_server.port}")
    store = store_from_url(f"gs://{bucket}/via-env")
    assert isinstance(store, GCSStore)
    assert store.endpoint == gcs_server.endpoint
    assert store.anonymous
    assert store.endpoint_key == f"gcs:{gcs_server.endpoint}"
    try:
        await store.set("k", b"through the emulator")
        assert await store.get("k") == b"through the emulator"
    finally:
        await store.aclose()
    # the data really is at <prefix><key> in that bucket
    direct = GCSStore(bucket, endpoint=gcs_server.endpoint)
    try:
        assert [k async for k in direct.list_prefix("")] == ["via-env/k"]
    finally:
        await direct.aclose()


async def test_dead_endpoint_is_transient() -> None:
    store = GCSStore("bucket", endpoint=f"http://127.0.0.1:{free_port()}", connect_timeout=5)
    try:
        with pytest.raises(TransientStoreError, match="connection"):
            await store.get("k")
        with pytest.raises(TransientStoreError):
            await store.set("k", b"v")
        with pytest.raises(TransientStoreError):
            [k async for k in store.list_prefix("")]
    finally:
        await store.aclose()


async def test_missing_bucket(gcs_server: ServerProcess) -> None:
    store = GCSStore("no-such-bucket-here", endpoint=gcs_server.endpoint)
    try:
        assert await store.get("k") is None
        assert not await store.exists("k")
        with pytest.raises(StoreError, match=r"no-such-bucket-here.*does not exist"):
            [k async for k in store.list_prefix("")]
        with pytest.raises(StoreError, match="does not exist"):
            await store.set("k", b"v")
    finally:
        await store.aclose()


async def test_range_edge_cases(gcs_store: GCSStore) -> None:
    await gcs_store.set("v", b"0123456789")
    await gcs_store.set("empty", b"")
    assert await gcs_store.get("v", ByteRange(20, 30)) == b""
    assert await gcs_store.get("v", ByteRange(3, 3)) == b""
    assert await gcs_store.get("v", SuffixRange(0)) == b""
    assert await gcs_store.get("v", OffsetRange(10)) == b""
    assert await gcs_store.get("v", ByteRange(8, 100)) == b"89"
    assert await gcs_store.get("missing", ByteRange(3, 3)) is None
    assert await gcs_store.get("empty", SuffixRange(4)) == b""
    assert await gcs_store.get("empty", ByteRange(0, 4)) == b""
    assert await gcs_store.get_ranges("v", [ByteRange(0, 2), SuffixRange(2)]) == [b"01", b"89"]


async def test_versions_are_generations(gcs_store: GCSStore) -> None:
    await gcs_store.set("g", b"one")
    got = await gcs_store.get_versioned("g")
    assert got is not None
    assert got.data == b"one"
    assert got.version.isdigit()
    with pytest.raises(PreconditionFailedError, match="not a GCS generation"):
        await gcs_store.set_if_version("g", b"x", "etag-like")
    await gcs_store.set_if_version("g", b"two", got.version)
    assert await gcs_store.get("g") == b"two"


async def test_keys_map_to_prefixed_object_names(gcs_location: StoreLocation) -> None:
    store = gcs_store_from_url(
        gcs_location.url, read_only=False, storage_options=gcs_location.storage_options
    )
    bucket = store.bucket
    root = GCSStore(bucket, endpoint=store.endpoint)
    try:
        await store.set("a/b c+%/ü", b"x")
        await root.set("data-sibling", b"not in the store")
        # a console-style "folder" placeholder object is not a key
        placeholder = urllib.request.Request(
            f"{store.endpoint}/upload/storage/v1/b/{bucket}/o?uploadType=media&name=data/",
            data=b"",
            method="POST",
        )
        with urllib.request.urlopen(placeholder, timeout=10) as resp:
            assert resp.status == 200
        assert [k async for k in root.list_prefix("data/")] == ["data/a/b c+%/ü"]
        assert [k async for k in store.list_prefix("")] == ["a/b c+%/ü"]
        assert await store.list_dir("") == ["a"]
        assert await root.list_dir("") == ["data", "data-sibling"]
        await store.delete_prefix("")  # takes the placeholder along, not the sibling
        assert await root.list_dir("") == ["data-sibling"]
    finally:
        await root.delete("data-sibling")
        await store.aclose()
        await root.aclose()


# -- sessions --------------------------------------------------------------------------


async def test_sessions_are_shared_and_closed(gcs_server: ServerProcess) -> None:
    bucket = new_gcs_bucket(gcs_server)
    limits = StoreLimits(max_concurrency=5)
    a = GCSStore(bucket, endpoint=gcs_server.endpoint, limits=limits)
    b = GCSStore(bucket, "other", endpoint=gcs_server.endpoint)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        await a.set("k", b"1")
        await b.set("k", b"2")
        client = await a._client()
        assert client is await b._client()  # one session per endpoint, credentials, loop
        assert client.session.connector is not None
        assert client.session.connector.limit == 5
        await a.aclose()
        assert not client.session.closed  # b still uses it
        assert await b.get("k") == b"2"
        await b.aclose()
        await b.aclose()
        assert client.session.closed
        del client
        gc.collect()
    assert not [w for w in caught if "Unclosed" in str(w.message)]
    with pytest.raises(StoreError, match="closed"):
        await a.get("k")


# -- credentials -----------------------------------------------------------------------


@dataclass
class TokenServer:
    url: str
    public_key: Any
    token: str = "ya29.SECRET-ACCESS-TOKEN-123"
    assertions: list[dict[str, Any]] = field(default_factory=list)


@pytest.fixture(scope="module")
def rsa_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def token_server(rsa_key: rsa.RSAPrivateKey) -> AsyncIterator[TokenServer]:
    """An OAuth token endpoint that verifies the service-account JWT it gets."""
    server = TokenServer("", rsa_key.public_key())

    async def token(request: web.Request) -> web.Response:
        form = await request.post()
        claims = jwt.decode(
            str(form["assertion"]), server.public_key, algorithms=["RS256"], audience=server.url
        )
        server.assertions.append(claims)
        return web.json_response(
            {"access_token": server.token, "expires_in": 3600, "token_type": "Bearer"}
        )

    app = web.Application()
    app.router.add_post("/token", token)
    runner = web.AppRunner(app)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    server.url = f"http://127.0.0.1:{port}/token"
    yield server
    await runner.cleanup()


@pytest.fixture
def service_account(
    tmp_path: Path, rsa_key: rsa.RSAPrivateKey, token_server: TokenServer
) -> tuple[Path, str]:
    pem = rsa_key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()
    info = {
        "type": "service_account",
        "project_id": "test-project",
        "private_key_id": "KEYID-SECRET-0001",
        "private_key": pem,
        "client_email": "writer@test-project.iam.gserviceaccount.com",
        "token_uri": token_server.url,
    }
    path = tmp_path / "sa.json"
    path.write_text(json.dumps(info))
    return path, pem


# -- a fault-injecting proxy in front of fake-gcs-server --------------------------------------


@dataclass
class FaultProxy:
    endpoint: str
    faults: list[int] = field(default_factory=list)
    authorizations: list[str] = field(default_factory=list)


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def fault_proxy(gcs_server: ServerProcess) -> AsyncIterator[FaultProxy]:
    proxy = FaultProxy("")
    upstream = aiohttp.ClientSession(auto_decompress=False)

    async def forward(request: web.Request) -> web.StreamResponse:
        proxy.authorizations.append(request.headers.get("Authorization", ""))
        if proxy.faults:
            status = proxy.faults.pop(0)
            return web.json_response(
                {"error": {"code": status, "message": "injected"}}, status=status
            )
        headers = {k: v for k, v in request.headers.items() if k.lower() != "host"}
        async with upstream.request(
            request.method,
            gcs_server.endpoint + request.raw_path,
            headers=headers,
            data=await request.read(),
        ) as resp:
            body = await resp.read()
            keep = {
                k: v
                for k, v in resp.headers.items()
                if k.lower() not in ("content-length", "transfer-encoding", "date", "server")
            }
            return web.Response(status=resp.status, body=body, headers=keep)

    app = web.Application(client_max_size=64 << 20)
    app.router.add_route("*", "/{tail:.*}", forward)
    runner = web.AppRunner(app)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    proxy.endpoint = f"http://127.0.0.1:{port}"
    yield proxy
    await runner.cleanup()
    await upstream.close()


async def test_service_account_credentials_are_used_and_hidden(
    gcs_server: ServerProcess,
    fault_proxy: FaultProxy,
    token_server: TokenServer,
    service_account: tuple[Path, str],
) -> None:
    path, pem = service_account
    bucket = new_gcs_bucket(gcs_server)
    store = gcs_store_from_url(
        f"gs://{bucket}/auth",
        read_only=False,
        storage_options={
            "endpoint": fault_proxy.endpoint,
            "service_account_file": str(path),
            "anon": False,
        },
    )
    assert not store.anonymous
    fault_proxy.authorizations.clear()
    try:
        await store.set("k", b"signed")
        assert await store.get("k") == b"signed"
        assert token_server.assertions, "the token endpoint was never asked"
        claims = token_server.assertions[-1]
        assert claims["iss"] == "writer@test-project.iam.gserviceaccount.com"
        assert "devstorage" in claims["scope"]
        assert fault_proxy.authorizations
        assert set(fault_proxy.authorizations) == {f"Bearer {token_server.token}"}
        fault_proxy.faults.append(403)
        with pytest.raises(PermissionDeniedError) as info:
            await store.get("k")
        texts = [repr(store), str(store), store.endpoint_key, str(info.value)]
        for secret in (token_server.token, pem[40:80], "KEYID-SECRET-0001", str(path)):
            assert all(secret not in text for text in texts)
    finally:
        await store.aclose()


async def test_credentials_from_environment(
    gcs_server: ServerProcess,
    fault_proxy: FaultProxy,
    token_server: TokenServer,
    service_account: tuple[Path, str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    path, _ = service_account
    monkeypatch.setenv("GOOGLE_APPLICATION_CREDENTIALS", str(path))
    bucket = new_gcs_bucket(gcs_server)
    store = GCSStore(bucket, endpoint=fault_proxy.endpoint, anon=False)
    fault_proxy.authorizations.clear()
    try:
        await store.set("k", b"v")
        assert fault_proxy.authorizations == [f"Bearer {token_server.token}"]
    finally:
        await store.aclose()


@pytest.mark.parametrize(
    ("status", "error"),
    [
        (401, PermissionDeniedError),
        (403, PermissionDeniedError),
        (429, ThrottledError),
        (500, TransientStoreError),
        (503, TransientStoreError),
        (400, StoreError),
    ],
)
async def test_http_errors_are_translated(
    gcs_server: ServerProcess, fault_proxy: FaultProxy, status: int, error: type[Exception]
) -> None:
    bucket = new_gcs_bucket(gcs_server)
    store = GCSStore(bucket, endpoint=fault_proxy.endpoint)
    try:
        await store.set("k", b"value")
        operations: dict[str, Callable[[], Awaitable[object]]] = {
            "get": lambda: store.get("k"),
            "set": lambda: store.set("k", b"x"),
            "list": lambda: _drain(store.list_prefix("")),
            "exists": lambda: store.exists("k"),
            "delete": lambda: store.delete("k"),
        }
        for name, operation in operations.items():
            fault_proxy.faults[:] = [status]
            with pytest.raises(error) as info:
                await operation()
            assert isinstance(info.value, StoreError), name
            assert (status == 429) == isinstance(info.value, ThrottledError), name
            assert (status in (400, 401, 403)) != isinstance(info.value, TransientStoreError)
        assert await store.get("k") == b"value"  # the injected faults left the data alone
    finally:
        fault_proxy.faults.clear()
        await store.aclose()


# -- short bodies -----------------------------------------------------------------------


@pytest_asyncio.fixture
async def short_body_server() -> AsyncIterator[tuple[str, list[bytes]]]:
    """Answers each request with the next canned raw HTTP response, then hangs up."""
    replies: list[bytes] = []

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(replies.pop(0))
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    yield f"http://127.0.0.1:{port}", replies
    server.close()
    await server.wait_closed()


async def test_short_bodies_are_truncated_reads(
    short_body_server: tuple[str, list[bytes]],
) -> None:
    endpoint, replies = short_body_server
    store = GCSStore("bucket", endpoint=endpoint)
    try:
        replies.append(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n" + b"x" * 10)
        with pytest.raises(TruncatedReadError):
            await store.get("k")
        replies.append(
            b"HTTP/1.1 206 Partial Content\r\nContent-Range: bytes 0-9/1024\r\n"
            b"Content-Length: 10\r\nConnection: close\r\n\r\n" + b"y" * 10
        )
        with pytest.raises(TruncatedReadError, match="asked for bytes"):
            await store.get("k", ByteRange(0, 100))
    finally:
        await store.aclose()
