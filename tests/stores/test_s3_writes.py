"""The S3 store's lean write path (:mod:`asyncarr.stores._s3_write`) on moto and SeaweedFS:
PUTs, conditional PUTs and DELETEs off botocore, multipart uploads, aborts, integrity, and
errors mapped as botocore's are. (The conformance suite runs on both servers in
``test_s3_store.py``.)"""

from __future__ import annotations

import asyncio
import base64
from collections.abc import Iterator
from typing import Any

import crc32c
import pytest

from asyncarr.errors import (
    ConfigError,
    PermissionDeniedError,
    PreconditionFailedError,
    TransientStoreError,
    UnsupportedOperationError,
)
from asyncarr.runtime import managed
from asyncarr.stores._http1 import HTTPResponse
from asyncarr.stores._s3 import S3Store, s3_store_from_url
from asyncarr.stores._s3_lean import LeanReader
from asyncarr.stores._s3_write import LeanWriter
from asyncarr.testing._servers_s3 import S3TestServer

pytestmark = pytest.mark.servers

MiB = 1 << 20


def _store(server: S3TestServer, bucket: str, **options: Any) -> S3Store:
    return s3_store_from_url(
        f"s3://{bucket}/w", read_only=False, storage_options=server.storage_options(**options)
    )


def _crc32c(data: bytes) -> str:
    return base64.b64encode(crc32c.crc32c(data).to_bytes(4, "big")).decode()


@pytest.fixture
def bucket(s3_server: S3TestServer) -> Iterator[str]:
    name = s3_server.create_bucket()
    yield name
    s3_server.delete_bucket(name)


@pytest.fixture
def weed_bucket(seaweedfs_s3_server: S3TestServer) -> Iterator[str]:
    name = seaweedfs_s3_server.create_bucket()
    yield name
    seaweedfs_s3_server.delete_bucket(name)


def _count_botocore(client: Any, *operations: str) -> dict[str, int]:
    sent = dict.fromkeys(operations, 0)
    for operation in operations:

        def count(_op: str = operation, **_: Any) -> None:
            sent[_op] += 1

        client.meta.events.register(f"before-send.s3.{operation}", count)
    return sent


def _uploads_left(server: S3TestServer, bucket: str) -> list[Any]:
    return list(server.admin.list_multipart_uploads(Bucket=bucket).get("Uploads") or [])


@pytest.mark.parametrize("direct", [True, False], ids=["asyncarr's HTTP client", "aiohttp"])
async def test_value_writes_leave_botocore_after_the_first_object_call(
    s3_server: S3TestServer, bucket: str, direct: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(LeanReader, "direct", direct)  # aiohttp: what proxies go through
    async with _store(s3_server, bucket) as s:
        sent = _count_botocore(await s._client(), "PutObject", "DeleteObject")
        await s.set("a/k+1 é", b"first")  # botocore: it shows the route
        await s.set("a/k+1 é", b"value")
        assert await s.set_if_not_exists("b", b"one") is True
        assert await s.set_if_not_exists("b", b"two") is False
        base = await s.get_versioned("b")
        assert base is not None and base.data == b"one"
        await s.set_if_version("b", b"three", base.version)
        with pytest.raises(PreconditionFailedError):
            await s.set_if_version("b", b"four", base.version)  # stale
        with pytest.raises(PreconditionFailedError):
            await s.set_if_version("never", b"x", '"0123456789abcdef0123456789abcdef"')
        current = await s.get_versioned("b")
        assert current is not None
        with pytest.raises(PreconditionFailedError):
            await s.delete_if_version("b", base.version)  # stale
        await s.delete_if_version("b", current.version)
        with pytest.raises(PreconditionFailedError):
            await s.delete_if_version("b", current.version)  # gone since
        await s.delete("b")  # missing: no error
        await s.set("c", b"")  # an empty value
        assert sent == {"PutObject": 1, "DeleteObject": 0}
        assert await s.get("a/k+1 é") == b"value"
        assert await s.get("b") is None and await s.get("c") == b""
    stored = s3_server.admin.get_object(Bucket=bucket, Key="w/a/k+1 é", ChecksumMode="ENABLED")
    assert stored["Body"].read() == b"value"
    assert stored.get("ChecksumCRC32C") == _crc32c(b"value")  # kept with the object


async def test_large_values_go_up_in_parts_with_a_whole_object_checksum(
    s3_server: S3TestServer, bucket: str
) -> None:
    value = bytes(range(256)) * (44 * 1024) + b"tail!!!"  # 11 MiB + 7: three parts
    other = value[::-1]
    async with _store(
        s3_server, bucket, multipart_threshold=6 * MiB, multipart_part_size=5 * MiB
    ) as s:
        await s.set("small", b"shows the route")
        sent = _count_botocore(await s._client(), "CreateMultipartUpload", "PutObject")
        await s.set("big", value)
        stored = s3_server.admin.get_object(Bucket=bucket, Key="w/big", ChecksumMode="ENABLED")
        assert stored["Body"].read() == value
        assert stored["ETag"].endswith('-3"')  # three parts
        assert stored.get("ChecksumCRC32C") == _crc32c(value)
        assert stored.get("ChecksumType") == "FULL_OBJECT"
        assert sent == {"CreateMultipartUpload": 0, "PutObject": 0}  # all lean
        # conditional writes go in one PUT (below 5 GiB)
        assert await s.set_if_not_exists("big", other) is False
        assert await s.set_if_not_exists("big2", other) is True
        base = await s.get_versioned("big")
        assert base is not None and base.data == value
        await s.set_if_version("big", other, base.version)
        with pytest.raises(PreconditionFailedError):
            await s.set_if_version("big", value, base.version)
        assert await s.get("big") == other == await s.get("big2")
    assert _uploads_left(s3_server, bucket) == []


async def test_conditions_of_values_past_the_single_put_limit_go_on_the_completion(
    seaweedfs_s3_server: S3TestServer, weed_bucket: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Past 5 GiB a conditional write must go in parts; S3 (and SeaweedFS, not moto)
    checks ``If-None-Match``/``If-Match`` on the completion. A refused completion leaves
    no upload behind."""
    from asyncarr.stores import _s3

    monkeypatch.setattr(_s3, "SINGLE_PUT_LIMIT", 6 * MiB)  # 5 GiB is too much for a test
    server, bucket = seaweedfs_s3_server, weed_bucket
    value, other = b"u" * (7 * MiB), b"v" * (7 * MiB)
    async with _store(
        server, bucket, multipart_threshold=6 * MiB, multipart_part_size=5 * MiB
    ) as s:
        await s.set("small", b"shows the route")
        assert await s.set_if_not_exists("big", value) is True
        assert await s.set_if_not_exists("big", other) is False
        base = await s.get_versioned("big")
        assert base is not None and base.version.endswith('-2"')  # in parts
        await s.set_if_version("big", other, base.version)
        with pytest.raises(PreconditionFailedError):
            await s.set_if_version("big", value, base.version)
        assert await s.get("big") == other
    assert _uploads_left(server, bucket) == []


async def test_the_first_write_of_a_large_value_learns_the_route_and_goes_in_parts(
    s3_server: S3TestServer, bucket: str
) -> None:
    value = b"p" * (5 * MiB) + b"q" * 100
    async with _store(
        s3_server, bucket, multipart_threshold=5 * MiB, multipart_part_size=5 * MiB
    ) as s:
        await s.set("big", value)  # a botocore HEAD shows the way first
        assert await s.get("big") == value
    stored = s3_server.admin.head_object(Bucket=bucket, Key="w/big")
    assert stored["ETag"].endswith('-2"')


class _FailingParts:
    """Makes the lean path's sends of chosen parts fail (``ConnectionResetError``) or hang
    until cancelled, in front of the real server."""

    def __init__(self, writer: LeanWriter, monkeypatch: pytest.MonkeyPatch) -> None:
        self.sent: list[str] = []
        self.fail: dict[str, int] = {}  # part number -> failures left
        self.hang: set[str] = set()
        self.hanging = asyncio.Event()
        real = writer._send

        async def send(*args: Any, query: Any = None, **kwargs: Any) -> HTTPResponse:
            number = (query or {}).get("partNumber")
            if number is not None:
                self.sent.append(number)
                if self.fail.get(number, 0) > 0:
                    self.fail[number] -= 1
                    raise ConnectionResetError("injected: connection reset by peer")
                if number in self.hang:
                    self.hanging.set()
                    await asyncio.Event().wait()
            return await real(*args, query=query, **kwargs)

        monkeypatch.setattr(writer, "_send", send)


async def _multipart_store(server: S3TestServer, bucket: str) -> tuple[S3Store, LeanWriter]:
    s = _store(server, bucket, multipart_threshold=5 * MiB, multipart_part_size=5 * MiB)
    await s.set("small", b"shows the route")
    writer = (await s._clients()).writer
    assert writer is not None
    return s, writer


@pytest.mark.parametrize("failures", [1, 99], ids=["fails once", "keeps failing"])
async def test_a_failing_part_is_sent_again_or_the_upload_is_aborted(
    s3_server: S3TestServer, bucket: str, failures: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    s, writer = await _multipart_store(s3_server, bucket)
    async with s:
        faults = _FailingParts(writer, monkeypatch)
        faults.fail["2"] = failures
        value = b"r" * (12 * MiB)
        if failures == 1:
            await s.set("big", value)
            assert sorted(faults.sent) == ["1", "2", "2", "3"]
            assert await s.get("big") == value
        else:
            with pytest.raises(TransientStoreError, match="connection reset") as info:
                await s.set("big", value)
            assert info.value.key == "big"
            assert faults.sent.count("2") == 3  # PART_ATTEMPTS
            assert await s.get("big") is None
    assert _uploads_left(s3_server, bucket) == []


async def test_a_cancelled_upload_is_aborted(
    s3_server: S3TestServer, bucket: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    s, writer = await _multipart_store(s3_server, bucket)
    async with s:
        faults = _FailingParts(writer, monkeypatch)
        faults.hang.add("3")
        task = asyncio.create_task(s.set("big", b"t" * (11 * MiB)))
        await asyncio.wait_for(faults.hanging.wait(), 30)
        assert _uploads_left(s3_server, bucket) != []  # under way
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert await s.get("big") is None
    assert _uploads_left(s3_server, bucket) == []


async def test_a_body_damaged_on_its_way_is_refused_and_sent_again(
    seaweedfs_s3_server: S3TestServer, weed_bucket: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The checksum header is the body's integrity: SeaweedFS (as AWS) refuses a body that
    does not match it (``BadDigest``), a transient fault the runtime retries. (moto keeps
    whatever it is sent.)"""
    from asyncarr.stores import _s3_write

    async with _store(seaweedfs_s3_server, weed_bucket) as s:
        await s.set("k", b"shows the route")
        real = _s3_write.crc32c_b64
        damaged: list[bool] = []

        def checksum_of_other_bytes(data: bytes | memoryview) -> str:
            if not damaged:
                damaged.append(True)
                return real(b"not the bytes that were sent")
            return real(data)

        monkeypatch.setattr(_s3_write, "crc32c_b64", checksum_of_other_bytes)
        with pytest.raises(TransientStoreError, match="BadDigest"):
            await s.set("k", b"the value")
        assert await s.get("k") == b"shows the route"  # nothing was stored
        damaged.clear()
        await managed(s).set("k", b"the value")  # retried: stored
        assert damaged == [True] and await s.get("k") == b"the value"


async def test_lean_writes_are_signed_and_refusals_are_permission_errors(
    seaweedfs_s3_server: S3TestServer, weed_bucket: str
) -> None:
    from botocore.credentials import Credentials

    async with _store(seaweedfs_s3_server, weed_bucket) as s:
        await s.set("k", b"value")  # botocore: the route is learned
        lean = (await s._clients()).lean
        assert lean is not None and lean.route(weed_bucket) is not None
        good = lean._credentials
        lean._credentials = Credentials(seaweedfs_s3_server.access_key, "wrong-secret-value")
        try:
            for write in (s.set("k", b"other"), s.delete("k"), s.set_if_not_exists("n", b"")):
                with pytest.raises(PermissionDeniedError) as info:
                    await write  # SeaweedFS checks SigV4 signatures
                assert "wrong-secret-value" not in str(info.value)
        finally:
            lean._credentials = good
        assert await s.get("k") == b"value"


def test_conditional_deletes_default_to_aws_only() -> None:
    assert S3Store("bk")._conditional_deletes is True
    assert S3Store("bk", endpoint_url="http://127.0.0.1:9")._conditional_deletes is False
    assert S3Store("bk", endpoint_url="http://x", conditional_deletes=True)._conditional_deletes


async def test_conditional_deletes_off_are_unsupported(
    moto_s3_server: S3TestServer,
) -> None:
    bucket = moto_s3_server.create_bucket()
    try:
        async with _store(moto_s3_server, bucket, conditional_deletes=False) as s:
            await s.set("k", b"v")
            version = await s.get_versioned("k")
            assert version is not None
            with pytest.raises(UnsupportedOperationError, match="conditional_deletes"):
                await s.delete_if_version("k", version.version)
            assert await s.get("k") == b"v"
    finally:
        moto_s3_server.delete_bucket(bucket)


@pytest.mark.parametrize(
    ("options", "match"),
    [
        ({"multipart_part_size": 1 * MiB}, "between 5 MiB and 5 GiB"),
        ({"multipart_part_size": 6 << 30}, "between 5 MiB and 5 GiB"),
        ({"multipart_threshold": 0}, "integer >= 1"),
        ({"multipart_threshold": 6 << 30}, "at most 5 GiB"),
        ({"multipart_threshold": 1.5}, "must be int"),
    ],
)
def test_bad_multipart_options(options: dict[str, Any], match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        s3_store_from_url("s3://bucket", read_only=False, storage_options=options)
