"""The Azure Blob store against a real Azurite server on 127.0.0.1.

Faults Azurite cannot produce (503 ServerBusy, 429, 500, truncated bodies)
come from a small real HTTP server on loopback that answers like Azure does.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import sys
import warnings
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from azure.core.credentials import AzureNamedKeyCredential, AzureSasCredential
from azure.storage.blob import ContainerSasPermissions, generate_container_sas

from asyncarr._types import ByteRange, OffsetRange, SuffixRange
from asyncarr.abc import Store
from asyncarr.config import StoreLimits
from asyncarr.errors import (
    ConfigError,
    KeyNotFoundError,
    MissingExtraError,
    PermissionDeniedError,
    StoreError,
    ThrottledError,
    TransientStoreError,
    TruncatedReadError,
)
from asyncarr.stores import _azure as azure_mod
from asyncarr.stores import store_from_url
from asyncarr.stores._azure import AzureBlobStore, azure_store_from_url
from asyncarr.testing import StoreTests
from asyncarr.testing._fixtures_azure import create_container
from asyncarr.testing._procs import StoreLocation, free_port
from asyncarr.testing._servers_azure import (
    AZURITE_ACCOUNT,
    AZURITE_KEY,
    AzuriteServer,
    new_container_name,
)

pytestmark = pytest.mark.servers


def container_of(location: StoreLocation) -> str:
    return location.url.removeprefix("az://").split("/", 1)[0]


def sas_for(container: str, permission: str, *, hours: int = 1) -> str:
    return generate_container_sas(
        AZURITE_ACCOUNT,
        container,
        account_key=AZURITE_KEY,
        permission=ContainerSasPermissions.from_string(permission),
        expiry=datetime.now(UTC) + timedelta(hours=hours),
    )


def open_store(url: str, **options: Any) -> AzureBlobStore:
    store = azure_store_from_url(url, read_only=False, storage_options=options)
    assert isinstance(store, AzureBlobStore)
    return store


class TestAzureStore(StoreTests):
    """The conformance suite under a prefix, with small listing pages to exercise paging."""

    many_keys = 120

    @pytest.fixture
    async def store(self, azure_location: StoreLocation) -> AsyncIterator[Store]:
        s = AzureBlobStore(
            container_of(azure_location), "data",
            storage_options=azure_location.storage_options, page_size=40,
        )  # fmt: skip
        yield s
        await s.aclose()

    @pytest.fixture
    async def read_only_store(self, store: AzureBlobStore) -> AsyncIterator[Store]:
        ro = store.with_read_only()
        yield ro
        await ro.aclose()

    def secrets(self) -> list[str]:
        return [AZURITE_KEY]


# -- URLs and options --------------------------------------------------------------------------
async def test_registry_opens_az_and_abfs(
    azure_location: StoreLocation, azurite_server: AzuriteServer
) -> None:
    container = container_of(azure_location)
    opts = azure_location.storage_options
    a = store_from_url(f"az://{container}/p/q", storage_options=opts)
    b = store_from_url(f"abfs://{container}/p/q", storage_options=opts, read_only=True)
    c = store_from_url(
        f"abfs://{container}@{AZURITE_ACCOUNT}.dfs.core.windows.net/p/q/",
        storage_options={"account_url": azurite_server.account_url, "account_key": AZURITE_KEY},
    )
    try:
        assert isinstance(a, AzureBlobStore)
        assert isinstance(b, AzureBlobStore)
        await a.set("zarr.json", b"{}")
        assert await b.get("zarr.json") == b"{}"
        assert await c.get("zarr.json") == b"{}"
        assert b.read_only
        assert a.endpoint_key == b.endpoint_key == c.endpoint_key
        assert a.endpoint_key == f"azure:{azurite_server.account_url}"
        assert [k async for k in a.list_prefix("")] == ["zarr.json"]
    finally:
        for s in (a, b, c):
            await s.aclose()


def test_abfs_account_form_targets_that_account() -> None:
    s = open_store("abfs://data@myacct.dfs.core.windows.net/run1", sas_token="sv=1&sig=abc")
    assert s.endpoint_key == "azure:https://myacct.blob.core.windows.net"
    china = open_store("abfs://data@acct2.dfs.core.chinacloudapi.cn/x", anon=True)
    assert china.endpoint_key == "azure:https://acct2.blob.core.chinacloudapi.cn"
    named = open_store("az://data/x", account_name="other", anon=True)
    assert named.endpoint_key == "azure:https://other.blob.core.windows.net"


@pytest.mark.parametrize(
    ("url", "options", "match"),
    [
        ("az://", {"anon": True, "account_name": "a"}, "needs a container"),
        ("az://Upper/x", {"anon": True, "account_name": "a"}, "container name"),
        ("az://ab/x", {"anon": True, "account_name": "a"}, "container name"),
        ("az://bad--name/x", {"anon": True, "account_name": "a"}, "container name"),
        ("az://data/x?sig=1", {"anon": True, "account_name": "a"}, "no query"),
        ("az://data/a/../b", {"anon": True, "account_name": "a"}, "invalid path"),
        ("s3://data/x", {}, "not an Azure URL"),
        ("az://data/x", {"anon": True, "account_name": "a", "region": "x"}, "unknown"),
        ("az://data/x", {"account_name": "a"}, "no Azure credential"),
        (
            "az://data/x",
            {"account_key": "k", "sas_token": "s", "account_name": "a"},
            "more than one",
        ),
        ("az://data/x", {"anon": True, "sas_token": "s", "account_name": "a"}, "more than one"),
        (
            "az://data/x",
            {"connection_string": "AccountName=a;AccountKey=k", "anon": True},
            "cannot be combined",
        ),
        ("az://data/x", {"connection_string": "garbage"}, "malformed"),
        ("az://data/x", {"account_url": "ftp://host/", "anon": True}, "http"),
        ("az://data/x", {"anon": "yes", "account_name": "a"}, "bool"),
        ("az://data/x", {"anon": True, "account_name": "a", "limits": 5}, "StoreLimits"),
        ("az://data/x", {"anon": True, "account_name": "a", "timeouts": -1}, "timeouts"),
        ("az://data/x", {"anon": True, "account_name": "a", "timeouts": {"total": 1}}, "timeouts"),
        (
            "abfs://data@acct.dfs.core.windows.net/x",
            {"account_name": "other", "anon": True},
            "names account",
        ),
    ],
)
def test_bad_urls_and_options_raise_config_error(
    url: str, options: dict[str, Any], match: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("AZURE_STORAGE_CONNECTION_STRING", raising=False)
    with pytest.raises(ConfigError, match=match) as info:
        azure_store_from_url(url, read_only=False, storage_options=options)
    assert "garbage" not in str(info.value)


def test_no_account_at_all_is_a_clear_config_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("AZURE_STORAGE_CONNECTION_STRING", raising=False)
    with pytest.raises(ConfigError, match="AZURE_STORAGE_CONNECTION_STRING"):
        store_from_url("az://data/x")


def test_development_storage_shortcut() -> None:
    s = open_store("az://data", connection_string="UseDevelopmentStorage=true")
    assert s.endpoint_key == "azure:http://127.0.0.1:10000/devstoreaccount1"
    assert AZURITE_KEY not in repr(s)


async def test_connection_string_from_environment(
    azure_location: StoreLocation, azurite_server: AzuriteServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AZURE_STORAGE_CONNECTION_STRING", azurite_server.connection_string)
    async with open_store(azure_location.url) as s:
        await s.set("k", b"from env")
        assert await s.get("k") == b"from env"
        assert s.endpoint_key == f"azure:{azurite_server.account_url}"


# -- credential forms ---------------------------------------------------------------------------
def credential_forms(server: AzuriteServer, container: str) -> dict[str, dict[str, Any]]:
    url = server.account_url
    sas = sas_for(container, "racwdl")
    return {
        "connection_string": {"connection_string": server.connection_string},
        "account_url+key": {"account_url": url, "account_key": AZURITE_KEY},
        "account_name+key": {"account_url": url, "account_name": AZURITE_ACCOUNT,
                             "account_key": AZURITE_KEY},
        "sas_token": {"account_url": url, "sas_token": sas},
        "sas_token_with_?": {"account_url": url, "sas_token": "?" + sas},
        "sas_in_account_url": {"account_url": f"{url}?{sas}"},
        "sas_string_credential": {"account_url": url, "credential": sas},
        "named_key_credential": {
            "account_url": url, "credential": AzureNamedKeyCredential(AZURITE_ACCOUNT, AZURITE_KEY)
        },
        "key_dict_credential": {
            "account_url": url,
            "credential": {"account_name": AZURITE_ACCOUNT, "account_key": AZURITE_KEY},
        },
        "sas_credential": {"account_url": url, "credential": AzureSasCredential(sas)},
    }  # fmt: skip


FORMS = [
    "connection_string", "account_url+key", "account_name+key", "sas_token", "sas_token_with_?",
    "sas_in_account_url", "sas_string_credential", "named_key_credential", "key_dict_credential",
    "sas_credential",
]  # fmt: skip


@pytest.mark.parametrize("form", FORMS)
async def test_each_credential_form_reads_writes_lists(
    form: str, azure_location: StoreLocation, azurite_server: AzuriteServer
) -> None:
    container = container_of(azure_location)
    options = credential_forms(azurite_server, container)[form]
    secrets = [AZURITE_KEY, sas_for(container, "racwdl")]
    async with open_store(f"az://{container}/creds", **options) as s:
        await s.set("a/b", b"1")
        assert await s.set_if_not_exists("a/c", b"2")
        assert await s.get("a/b") == b"1"
        assert await s.list_dir("a") == ["b", "c"]
        await s.delete_prefix("a/")
        assert [k async for k in s.list_prefix("")] == []
        text = repr(s) + str(s) + s.endpoint_key
        sig = secrets[1].split("sig=")[1].split("&")[0]
        assert AZURITE_KEY not in text
        assert sig not in text
        assert "sig=" not in text


async def test_read_only_sas_is_permission_denied_without_leaking_it(
    azure_location: StoreLocation, azurite_server: AzuriteServer
) -> None:
    container = container_of(azure_location)
    sas = sas_for(container, "rl")
    async with open_store(azure_location.url, **azure_location.storage_options) as rw:
        await rw.set("k", b"v")
    async with open_store(
        azure_location.url, account_url=azurite_server.account_url, sas_token=sas
    ) as s:
        assert await s.get("k") == b"v"
        with pytest.raises(PermissionDeniedError) as info:
            await s.set("k", b"nope")
        sig = sas.split("sig=")[1].split("&")[0]
        for text in (str(info.value), repr(info.value)):
            assert sig not in text
            assert "sig=" not in text.replace("sig=***", "")
        assert await s.get("k") == b"v"


async def test_wrong_key_is_permission_denied(
    azure_location: StoreLocation, azurite_server: AzuriteServer
) -> None:
    wrong = AZURITE_KEY[:-8] + "AAAAAAA="
    async with open_store(
        azure_location.url, account_url=azurite_server.account_url, account_key=wrong
    ) as s:
        with pytest.raises(PermissionDeniedError) as info:
            await s.get("k")
        assert wrong not in str(info.value)
        assert AZURITE_KEY not in str(info.value)


async def test_anonymous_access_to_a_public_container(azurite_server: AzuriteServer) -> None:
    name = new_container_name("pub")
    create_container(azurite_server, name, public=True)
    async with open_store(f"az://{name}", connection_string=azurite_server.connection_string) as w:
        await w.set("open/data", b"public bytes")
    async with open_store(f"az://{name}", account_url=azurite_server.account_url, anon=True) as s:
        assert await s.get("open/data") == b"public bytes"
        assert await s.get("open/missing") is None
        assert [k async for k in s.list_prefix("open/")] == ["open/data"]
        with pytest.raises(PermissionDeniedError):
            await s.set("open/data", b"vandal")


# -- failures -------------------------------------------------------------------------------------
@pytest.mark.timeout(60)
async def test_dead_endpoint_is_transient() -> None:
    url = f"http://127.0.0.1:{free_port()}/{AZURITE_ACCOUNT}"
    async with open_store("az://data/x", account_url=url, account_key=AZURITE_KEY) as s:
        with pytest.raises(TransientStoreError) as info:
            await s.get("k")
        assert AZURITE_KEY not in str(info.value)
        with pytest.raises(TransientStoreError):
            await s.set("k", b"v")
        with pytest.raises(TransientStoreError):
            [k async for k in s.list_prefix("")]


async def test_missing_container_is_a_clear_store_error(azurite_server: AzuriteServer) -> None:
    name = new_container_name("gone")
    async with open_store(
        f"az://{name}/x", connection_string=azurite_server.connection_string
    ) as s:
        for call in (s.get("k"), s.set("k", b"v"), s.exists("k"), s.list_dir("")):
            with pytest.raises(StoreError, match=name) as info:
                await call
            assert not isinstance(info.value, KeyNotFoundError)
        with pytest.raises(StoreError, match="no Azure container"):
            [k async for k in s.list_prefix("")]


# -- ranges, versions, deletes ----------------------------------------------------------------
async def test_range_edge_cases(azure_store: AzureBlobStore) -> None:
    data = bytes(range(100))
    await azure_store.set("r", data)
    assert await azure_store.get("r", ByteRange(5, 5)) == b""
    assert await azure_store.get("missing", ByteRange(5, 5)) is None
    assert await azure_store.get("r", ByteRange(200, 300)) == b""
    assert await azure_store.get("r", OffsetRange(100)) == b""
    assert await azure_store.get("r", OffsetRange(250)) == b""
    assert await azure_store.get("r", SuffixRange(0)) == b""
    assert await azure_store.get("missing", SuffixRange(4)) is None
    assert await azure_store.get_ranges("r", []) == []
    assert await azure_store.get_ranges("missing", []) is None
    assert await azure_store.get_ranges("missing", [SuffixRange(3)]) is None
    got = await azure_store.get_ranges("r", [SuffixRange(3), ByteRange(0, 2), OffsetRange(98)])
    assert got == [data[-3:], data[:2], data[98:]]


async def test_versions_are_etags(azure_store: AzureBlobStore) -> None:
    await azure_store.set("v", b"one")
    first = await azure_store.get_versioned("v")
    assert first is not None
    assert first.version.startswith('"')
    await azure_store.set("v", b"two")
    second = await azure_store.get_versioned("v")
    assert second is not None
    assert second.data == b"two"
    assert second.version != first.version
    await azure_store.delete("v")
    with pytest.raises(StoreError):  # If-Match on a deleted blob loses the race
        await azure_store.set_if_version("v", b"three", second.version)


async def test_delete_prefix_many_keys_and_batch_fallback(azure_store: AzureBlobStore) -> None:
    await asyncio.gather(*(azure_store.set(f"d/{i}", b"x") for i in range(60)))
    await azure_store.set("keep", b"k")
    await azure_store.delete_prefix("d/")
    assert [k async for k in azure_store.list_prefix("")] == ["keep"]
    shared = azure_store._held[asyncio.get_running_loop()][0]
    # Azurite 3.35 answers the SDK's Blob Batch body with one 400 part: the store falls back
    # to single deletes and remembers that for this endpoint.
    assert shared.batch_ok is False


async def test_delete_prefix_root_empties_only_this_prefix(
    azure_location: StoreLocation,
) -> None:
    container = container_of(azure_location)
    opts = azure_location.storage_options
    async with (
        open_store(f"az://{container}/a", **opts) as a,
        open_store(f"az://{container}/b", **opts) as b,
    ):
        await a.set("x", b"1")
        await b.set("x", b"2")
        await a.delete_prefix("")
        assert await a.get("x") is None
        assert await b.get("x") == b"2"


# -- connection pool lifecycle -------------------------------------------------------------------
def clients_for(store: AzureBlobStore) -> list[Any]:
    return [c for c in azure_mod._clients.values() if c.key[1] == store._config.fingerprint]


@contextlib.contextmanager
def no_unclosed_warnings() -> Iterator[None]:
    """Fail if an aiohttp session/connector is reported unclosed inside the block."""
    loop = asyncio.get_running_loop()
    reports: list[str] = []
    previous = loop.get_exception_handler()
    loop.set_exception_handler(lambda _loop, ctx: reports.append(str(ctx.get("message"))))
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            yield
            gc.collect()
    finally:
        loop.set_exception_handler(previous)
    reports += [str(w.message) for w in caught]
    assert not [r for r in reports if "nclosed" in r], reports


async def test_stores_share_one_client_and_close_it_cleanly(
    azure_location: StoreLocation,
) -> None:
    with no_unclosed_warnings():
        opts = {**azure_location.storage_options, "limits": StoreLimits(max_concurrency=8)}
        a = open_store(azure_location.url, **opts)
        b = open_store(azure_location.url, **opts)
        await a.set("k", b"v")
        assert await b.get("k") == b"v"
        (shared,) = clients_for(a)
        assert shared.refs == 2
        assert shared.session.connector.limit == 8
        ro = a.with_read_only()
        assert await ro.get("k") == b"v"
        assert shared.refs == 3
        await a.aclose()
        await ro.aclose()
        assert await b.get("k") == b"v"  # still open for b
        await b.aclose()
        assert shared.session.closed
        assert clients_for(b) == []
        await b.aclose()  # idempotent
        assert await b.get("k") == b"v"  # reopens lazily after close
        await b.aclose()
        del a, b, ro, shared


# -- faults from a server that answers like Azure under stress ---------------------------------
FAULTS = {
    "busy": (503, "ServerBusy"),
    "slowdown": (429, "TooManyRequests"),
    "boom": (500, "InternalError"),
    "denied": (403, "AuthorizationPermissionMismatch"),
}


async def _serve_fault(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        head = await reader.readuntil(b"\r\n\r\n")
        method, target, _ = head.split(b"\r\n", 1)[0].decode().split(" ", 2)
        length = 0
        for line in head.decode().split("\r\n")[1:]:
            if line.lower().startswith("content-length:"):
                length = int(line.split(":", 1)[1])
        if length:
            await reader.readexactly(length)
        container = target.split("?", 1)[0].split("/")[2]
        if container == "truncated":
            writer.write(
                b"HTTP/1.1 206 Partial Content\r\nContent-Length: 100\r\n"
                b'Content-Range: bytes 0-99/100\r\nETag: "0x1"\r\n'
                b"Last-Modified: Wed, 01 Jan 2025 00:00:00 GMT\r\nx-ms-blob-type: BlockBlob\r\n"
                b"Content-Type: application/octet-stream\r\nConnection: close\r\n\r\n"
                + b"0123456789"
            )
        else:
            status, code = FAULTS[container]
            body = b"" if method == "HEAD" else (
                f'<?xml version="1.0" encoding="utf-8"?><Error><Code>{code}</Code>'
                f"<Message>injected {code}</Message></Error>"
            ).encode()  # fmt: skip
            writer.write(
                f"HTTP/1.1 {status} Injected\r\nx-ms-error-code: {code}\r\n"
                f"Content-Type: application/xml\r\nContent-Length: {len(body)}\r\n"
                "Connection: close\r\n\r\n".encode()
                + body
            )
        await writer.drain()
    finally:
        writer.close()


@pytest.fixture
async def fault_url() -> AsyncIterator[str]:
    server = await asyncio.start_server(_serve_fault, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    yield f"http://127.0.0.1:{port}/{AZURITE_ACCOUNT}"
    server.close()
    await server.wait_closed()


@pytest.mark.parametrize(
    ("container", "error"),
    [("busy", ThrottledError), ("slowdown", ThrottledError), ("boom", TransientStoreError),
     ("denied", PermissionDeniedError), ("truncated", TruncatedReadError)],
)  # fmt: skip
async def test_service_faults_are_translated(
    fault_url: str, container: str, error: type[Exception]
) -> None:
    sas = sas_for(container if container != "truncated" else "trunc", "r")
    async with open_store(f"az://{container}/p", account_url=fault_url, sas_token=sas) as s:
        with pytest.raises(error) as info:
            await s.get("k")
        assert "sig=" not in str(info.value).replace("sig=***", "")
        if container != "truncated":
            with pytest.raises(error):
                await s.exists("k")  # HEAD: the code comes from x-ms-error-code only


async def test_store_used_from_a_second_event_loop(azure_location: StoreLocation) -> None:
    store = open_store(azure_location.url, **azure_location.storage_options)
    await store.set("k", b"main loop")
    main_client = clients_for(store)[0]

    async def in_other_loop() -> bytes | None:
        await store.set("k2", b"other loop")
        got = await store.get("k")
        assert len(store._held) == 2  # one shared client per event loop
        other = next(c for c in clients_for(store) if c is not main_client)
        await store.aclose()  # closes this loop's client, schedules the main loop's close
        assert other.session.closed
        return got

    with no_unclosed_warnings():
        assert await asyncio.to_thread(asyncio.run, in_other_loop()) == b"main loop"
        for _ in range(100):
            if main_client.session.closed:
                break
            await asyncio.sleep(0.01)
        assert main_client.session.closed
        assert clients_for(store) == []
    async with open_store(azure_location.url, **azure_location.storage_options) as again:
        assert await again.get("k2") == b"other loop"


async def test_closing_after_the_other_loop_ended_drops_its_client(
    azure_location: StoreLocation,
) -> None:
    store = open_store(azure_location.url, **azure_location.storage_options)

    async def in_other_loop() -> None:
        await store.set("k", b"v")

    await asyncio.to_thread(asyncio.run, in_other_loop())
    (client,) = clients_for(store)
    assert client.loop.is_closed()
    # Nothing can await a close on a finished loop: the session is detached (no leak
    # report for it) and its idle sockets go with the garbage collector.
    await store.aclose()
    assert client.session.closed
    assert clients_for(store) == []
    del client
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ResourceWarning)
        gc.collect()


def test_missing_sdk_raises_missing_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "azure.storage.blob.aio", None)
    azure_mod._sdk.cache_clear()
    try:
        with pytest.raises(MissingExtraError, match=r"asyncarr\[azure\]"):
            open_store("az://data/x", account_name="acct", anon=True)
    finally:
        monkeypatch.undo()
        azure_mod._sdk.cache_clear()
    assert open_store("az://data/x", account_name="acct", anon=True).read_only is False
