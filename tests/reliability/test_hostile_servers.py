"""Broken and hostile answers from real servers (moto, fake-gcs-server, Azurite, the HTTP
test server) behind the fault proxy: short ranged answers with a lying Content-Range, bit
flips on reads and uploads, upload answers cut short, junk and trickling metadata,
refused certificates and tokens, and botocore's DEBUG log records.

Each is retried to the right data, or ends in the asyncarr error that names it; the
memory and time bounds of endless, huge and compressed bodies are in
``test_memory_bounds.py``.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import pytest_asyncio
from _proxied import KINDS, Proxied, proxied_store
from aiohttp import web

import asyncarr
from asyncarr import RetryConfig, StoreLimits
from asyncarr.errors import (
    PermissionDeniedError,
    StoreError,
    TransientStoreError,
)
from asyncarr.runtime import managed
from asyncarr.stores import store_from_url
from asyncarr.testing._fixtures_http import serve_app, static_app
from asyncarr.testing._tls import self_signed_tls

pytestmark = pytest.mark.servers

RETRY = RetryConfig(max_attempts=4, base_backoff=0.001, max_backoff=0.01, deadline=30)
LIMITS = StoreLimits(retry=RETRY, max_concurrency=8)


@pytest.fixture(params=KINDS)
def proxied(request: pytest.FixtureRequest) -> Iterator[Proxied]:
    with proxied_store(request.param, request) as place:
        yield place


async def _write(place: Proxied, path: str, data: np.ndarray, **kwargs: Any) -> None:
    """Write an array directly (not through the proxy)."""
    arr = await asyncarr.create_array(
        place.direct_url,
        path=path,
        storage_options=place.direct_options,
        shape=data.shape,
        dtype=data.dtype,
        zarr_format=3,
        **kwargs,
    )
    async with arr:
        await arr.write(data)


# -- a short ranged answer (a lying Content-Range) is retried, on every store ---------------
async def test_a_short_shard_index_answer_is_a_retried_truncation(proxied: Proxied) -> None:
    """The shard index is read with a suffix GET; the proxy halves the first answer, its
    Content-Length consistent, its Content-Range announcing the full range: a retried
    TruncatedReadError (the old S3 store decoded it: CodecError, shorter than its index)."""
    data = np.arange(64, dtype="i4").reshape(8, 8)
    await _write(proxied, "arr", data, chunks=(2, 2), shards=(8, 8), compressor=None)
    proxied.proxy.hostile("short_body", path="*arr/c/0/0", times=1)
    arr = await asyncarr.open_array(
        proxied.url, path="arr", storage_options=proxied.with_limits(LIMITS)
    )
    async with arr:
        np.testing.assert_array_equal(await arr.read((slice(2, 4), slice(0, 2))), data[2:4, 0:2])
        stats = asyncarr.store_stats(arr.store)
    assert proxied.proxy.hostile_answers == 1
    assert stats.retries >= 1 and stats.truncated >= 1


# -- bit flips: the checksums services send are verified ------------------------------------
@pytest.mark.parametrize("kind", ["s3", "s3-botocore", "gcs", "azure"])
async def test_a_flipped_bit_in_a_read_is_caught_and_retried(
    kind: str, request: pytest.FixtureRequest
) -> None:
    """An unsharded array without crc32c: the service's checksum (S3 x-amz-checksum, GCS
    x-goog-hash, Azure Content-MD5) catches the flipped bit; the read is retried."""
    with proxied_store(kind, request) as place:
        data = np.arange(100, dtype="i8")
        await _write(place, "arr", data, chunks=(100,), compressor=None)
        place.proxy.hostile("bit_flip", path="*arr/c/0", times=1)
        arr = await asyncarr.open_array(
            place.url, path="arr", storage_options=place.with_limits(LIMITS)
        )
        async with arr:
            np.testing.assert_array_equal(await arr.read(), data)
            retries = asyncarr.store_stats(arr.store).retries
        assert place.proxy.hostile_answers == 1 and retries >= 1


async def test_a_flipped_bit_in_an_azure_upload_is_refused_and_retried(
    request: pytest.FixtureRequest,
) -> None:
    """Uploads carry Content-MD5: Azurite refuses the damaged body (Md5Mismatch), the write
    is retried, and the stored chunk is exact."""
    with proxied_store("azure", request) as place:
        data = np.arange(100, dtype="i8")
        options = place.with_limits(LIMITS)
        arr = await asyncarr.create_array(
            place.url, path="arr", storage_options=options, shape=(100,), chunks=(100,),
            dtype="i8", compressor=None, zarr_format=3,
        )  # fmt: skip
        place.proxy.hostile("flip_request", method="PUT", path="*arr/c/0", times=1)
        async with arr:
            await arr.write(data)
        assert place.proxy.hostile_answers == 1
        direct = await asyncarr.open_array(
            place.direct_url, path="arr", storage_options=place.direct_options
        )
        async with direct:
            np.testing.assert_array_equal(await direct.read(), data)


# -- GCS: an applied upload whose answer is cut short -----------------------------------------
@pytest.mark.parametrize("conditional", [False, True])
async def test_a_gcs_upload_whose_answer_is_unreadable_is_retried_or_resolved(
    conditional: bool, request: pytest.FixtureRequest
) -> None:
    """The upload lands, its JSON answer arrives cut short (valid length, not JSON): a
    plain write is retried; a create-if-absent reads the object back and counts it as
    written (it was), instead of failing with a JSONDecodeError."""
    with proxied_store("gcs", request) as place:
        store = store_from_url(place.url, storage_options=place.with_limits(LIMITS))
        async with store:
            io = managed(store)
            place.proxy.hostile("short_body", method="POST", path="*/upload/*", times=1)
            if conditional:
                assert await io.set_if_not_exists("k", b"value") is True
                assert await io.set_if_not_exists("k", b"other") is False
            else:
                await io.set("k", b"value")
            assert place.proxy.hostile_answers == 1
            assert await io.get("k") == b"value"


async def test_a_flipped_bit_in_a_gcs_upload_is_caught_and_the_object_replaced(
    request: pytest.FixtureRequest,
) -> None:
    """Uploads carry their crc32c, and the object the answer describes is checked against
    it: a damaged object that was stored is replaced at once (a create-if-absent still
    counts as written: it was, damaged, and is now repaired under its own generation)."""
    with proxied_store("gcs", request) as place:
        store = store_from_url(place.url, storage_options=place.with_limits(LIMITS))
        async with store:
            io = managed(store)
            value = bytes(range(256)) * 4
            place.proxy.hostile("flip_request", method="POST", path="*/upload/*", times=1)
            await io.set("plain", value)
            place.proxy.hostile("flip_request", method="POST", path="*/upload/*", times=1)
            assert await io.set_if_not_exists("created", value) is True
            assert place.proxy.hostile_answers == 2
            assert await io.get("plain") == value and await io.get("created") == value


# -- opening over HTTP: a server answering every path, a trickling .zarray ---------------------
def _catch_all_app(root: Path) -> web.Application:
    """Serves the files under ``root`` and an HTML page, with 200, for any other path."""
    static = static_app(root)
    serve_file = static.router.routes()._routes[0].handler  # type: ignore[attr-defined]

    async def serve(request: web.Request) -> web.StreamResponse:
        try:
            return await serve_file(request)
        except web.HTTPNotFound:
            return web.Response(text="<html><body>Welcome!</body></html>", content_type="text/html")

    app = web.Application()
    app.router.add_get("/{path:.+}", serve, allow_head=True)
    return app


async def test_a_server_answering_every_path_does_not_fail_a_valid_node(tmp_path: Path) -> None:
    data = np.arange(12, dtype="u2")
    local = str(tmp_path)
    for fmt in (3, 2):
        arr = await asyncarr.create_array(
            local, path=f"v{fmt}", shape=(12,), chunks=(4,), dtype="u2", zarr_format=fmt,
            attributes={"fmt": fmt},
        )  # fmt: skip
        async with arr:
            await arr.write(data)
    with serve_app(lambda: _catch_all_app(tmp_path)) as server:
        for fmt in (3, 2):
            arr = await asyncarr.open_array(f"{server.url}/v{fmt}")
            async with arr:
                assert arr.zarr_format == fmt and dict(arr.attrs) == {"fmt": fmt}
                np.testing.assert_array_equal(await arr.read(), data)


async def test_a_trickling_zarray_does_not_hold_a_v3_open(request: pytest.FixtureRequest) -> None:
    with proxied_store("http", request) as place:
        data = np.arange(8, dtype="i4")
        await _write(place, "arr", data, chunks=(4,))
        Path(place.direct_url, "arr", ".zarray").write_text('{"zarr_format": 2}')
        place.proxy.hostile("trickle", path="*/.zarray")
        slow = StoreLimits(retry=RetryConfig(request_timeout=60, deadline=120))
        opening = asyncarr.open_array(place.url, path="arr", storage_options={"limits": slow})
        arr = await asyncio.wait_for(opening, 10)  # (the trickle alone would take 60 s)
        async with arr:
            np.testing.assert_array_equal(await arr.read(), data)
        assert place.proxy.hostile_answers >= 1


# -- refused certificates are permanent; a refused token fails at once --------------------------
@pytest_asyncio.fixture
async def tls_server(tmp_path: Path) -> AsyncIterator[str]:
    """``127.0.0.1:<port>`` of a TLS server whose certificate nobody trusts."""
    server_ctx, _ = self_signed_tls(tmp_path)
    handshakes: list[int] = []

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        handshakes.append(1)
        writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0, ssl=server_ctx)
    port = server.sockets[0].getsockname()[1]
    async with server:
        yield f"127.0.0.1:{port}"


def _untrusted_store(kind: str, where: str) -> Any:
    limits = {"retry": {"max_attempts": 5, "base_backoff": 0.01, "deadline": 60}}
    if kind == "http":
        return store_from_url(f"https://{where}/data", storage_options={"limits": limits})
    if kind == "gcs":
        options = {"endpoint": f"https://{where}", "anon": True, "limits": limits}
        return store_from_url("gs://bucket/data", storage_options=options)
    if kind == "azure":
        options = {
            "account_url": f"https://{where}/devstoreaccount1",
            "account_key": "a2V5a2V5a2V5a2V5",
            "account_name": "devstoreaccount1",
            "limits": limits,
        }
        return store_from_url("az://container/data", storage_options=options)
    url = f"mongodb://{where}/db/coll/data?tls=true&serverSelectionTimeoutMS=2000"
    return store_from_url(url, storage_options={"limits": limits})


@pytest.mark.parametrize("kind", ["http", "gcs", "azure", "mongodb"])
async def test_a_refused_certificate_is_permanent(kind: str, tls_server: str) -> None:
    store = _untrusted_store(kind, tls_server)
    async with store:
        with pytest.raises(StoreError, match=r"(?i)certificate") as info:
            await managed(store).get("k")
        assert not isinstance(info.value, TransientStoreError)
        assert asyncarr.store_stats(store).retries == 0


async def test_a_refused_gcs_token_fails_at_the_first_refusal(
    tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    asked: list[float] = []

    async def refuse(request: web.Request) -> web.Response:
        asked.append(time.monotonic())
        return web.json_response({"error": "invalid_grant"}, status=400)

    def app() -> web.Application:
        application = web.Application()
        application.router.add_post("/token", refuse)
        return application

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()
    gcs_server = request.getfixturevalue("gcs_server")
    with serve_app(app) as token_server:
        account = {
            "type": "service_account",
            "client_email": "nobody@example.iam.gserviceaccount.com",
            "private_key": pem,
            "private_key_id": "k1",
            "token_uri": f"{token_server.url}/token",
        }
        options = {"endpoint": gcs_server.endpoint, "credentials": account, "anon": False}
        store = store_from_url("gs://bucket/data", storage_options=options)
        async with store:
            with pytest.raises(PermissionDeniedError):
                await managed(store).get("k")
    assert len(asked) == 1  # (gcloud-aio asked 5 times over 6-10 s)


async def test_botocore_debug_records_never_carry_the_session_token(
    request: pytest.FixtureRequest, caplog: pytest.LogCaptureFixture
) -> None:
    server = request.getfixturevalue("moto_s3_server")
    bucket = server.create_bucket()
    token = "FwoGZXIvYXdzEXAMPLE-SESSION-TOKEN-0123456789abcdef"
    options = server.storage_options(aws_session_token=token, lean_reads=False, lean_writes=False)
    try:
        with caplog.at_level(logging.DEBUG):
            store = store_from_url(f"s3://{bucket}/data", storage_options=options)
            async with store:
                io = managed(store)
                await io.set("k", b"value")
                assert await io.get("k") == b"value"
                assert [k async for k in io.list_prefix("")] == ["k"]
        botocore = [r for r in caplog.records if r.name.startswith(("botocore", "aiobotocore"))]
        assert any("security-token" in r.getMessage().lower() for r in botocore)  # masked
        assert all(token not in r.getMessage() for r in caplog.records)
        assert all(token not in record for record in caplog.text.splitlines())
    finally:
        server.delete_bucket(bucket)
