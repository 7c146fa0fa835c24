"""S3 behind a fault-injecting loopback proxy: SlowDown backs the adaptive limit off.

The proxy (:mod:`asyncarr.testing._proxy`) forwards to the moto S3 server
started by the session fixture and answers a share of requests with
``503 SlowDown``, or cuts response bodies short. The store must slow down
(AIMD), retry, and finish with the right data.
"""

from __future__ import annotations

import asyncio
import urllib.error
import urllib.request
from collections.abc import AsyncIterator, Iterator
from urllib.parse import urlsplit

import numpy as np
import pytest
from _reliability_helpers import pattern, stats_delta, stats_of, timed

import asyncarr
from asyncarr.config import RetryConfig, StoreLimits
from asyncarr.stores._s3 import S3Store, s3_store_from_url
from asyncarr.testing._procs import free_port
from asyncarr.testing._proxy import FaultProxy, fault_proxy
from asyncarr.testing._servers_s3 import S3TestServer, _sync_client

pytestmark = pytest.mark.servers

RETRY = RetryConfig(max_attempts=25, base_backoff=0.005, max_backoff=0.05, deadline=60)
MAX_CONCURRENCY = 32


@pytest.fixture
def bucket(moto_s3_server: S3TestServer) -> Iterator[str]:
    name = moto_s3_server.create_bucket()
    yield name
    moto_s3_server.delete_bucket(name)


def upstream_port(server: S3TestServer) -> int:
    port = urlsplit(server.endpoint).port
    assert port is not None
    return port


def s3_via(proxy: FaultProxy, server: S3TestServer, bucket: str, **limits: object) -> S3Store:
    options = dict(max_concurrency=MAX_CONCURRENCY, adaptive=True, retry=RETRY)
    options.update(limits)
    return s3_store_from_url(
        f"s3://{bucket}/data",
        read_only=False,
        storage_options=server.storage_options(
            endpoint_url=proxy.url,
            limits=StoreLimits(**options),  # type: ignore[arg-type]
        ),
    )


@pytest.fixture
async def closing() -> AsyncIterator[list[S3Store]]:
    stores: list[S3Store] = []
    yield stores
    for store in stores:
        await store.aclose()


# -- the proxy itself ---------------------------------------------------------------------------
def test_proxy_forwards_faithfully(moto_s3_server: S3TestServer, bucket: str) -> None:
    """Signed requests pass unchanged (Host included); HEAD keeps its Content-Length."""
    with fault_proxy(upstream_port(moto_s3_server)) as proxy:
        client = _sync_client(proxy.url, moto_s3_server.access_key, moto_s3_server.secret_key)
        client.put_object(Bucket=bucket, Key="a/b c", Body=b"x" * 1000)
        assert client.get_object(Bucket=bucket, Key="a/b c")["Body"].read() == b"x" * 1000
        assert client.head_object(Bucket=bucket, Key="a/b c")["ContentLength"] == 1000
        with pytest.raises(Exception, match="NoSuchKey") as missing:
            client.get_object(Bucket=bucket, Key="nothing-here")
        assert missing.value.response["ResponseMetadata"]["HTTPStatusCode"] == 404
        assert (proxy.requests, proxy.forwarded, proxy.throttled) == (4, 4, 0)
        client.close()


def test_proxy_answers_slow_down_without_forwarding(moto_s3_server: S3TestServer) -> None:
    with fault_proxy(upstream_port(moto_s3_server), error_rate=1.0) as proxy:
        for _ in range(3):
            with pytest.raises(urllib.error.HTTPError) as info:
                urllib.request.urlopen(f"{proxy.url}/any-bucket/key", timeout=10)
            assert info.value.code == 503
            body = info.value.read().decode()
            assert "<Code>SlowDown</Code>" in body and "/any-bucket/key" in body
        assert (proxy.requests, proxy.throttled, proxy.forwarded) == (3, 3, 0)
        proxy.error_rate = 0.0  # settings apply to later requests
        with pytest.raises(urllib.error.HTTPError) as info:
            urllib.request.urlopen(f"{proxy.url}/no-such-bucket-here/key", timeout=10)
        assert info.value.code == 404
        assert proxy.forwarded == 1


def test_proxy_reports_an_unreachable_upstream_as_bad_gateway() -> None:
    with fault_proxy(free_port()) as proxy:  # nothing listens there
        with pytest.raises(urllib.error.HTTPError) as info:
            urllib.request.urlopen(f"{proxy.url}/x", timeout=10)
        assert info.value.code == 502
        assert proxy.upstream_errors == 1


def test_proxy_rejects_bad_settings() -> None:
    for kwargs in ({"error_rate": 1.5}, {"truncate_rate": -0.1}, {"delay": -1.0}):
        with pytest.raises(ValueError, match="must be"):
            FaultProxy(9000, **kwargs)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="upstream_port"):
        FaultProxy(0)


# -- 4. throttling: the adaptive limit backs off, the job finishes with the right data ---------
async def test_slow_down_backs_the_adaptive_limit_off(
    moto_s3_server: S3TestServer, bucket: str, closing: list[S3Store]
) -> None:
    source = pattern((96, 96), seed=7)
    lowest = float(MAX_CONCURRENCY)
    with fault_proxy(
        upstream_port(moto_s3_server), delay=(0.0, 0.002), error_rate=0.2, seed=4
    ) as proxy:
        store = s3_via(proxy, moto_s3_server, bucket, min_concurrency=4)
        closing.append(store)
        done = asyncio.Event()

        async def watch_limit() -> None:
            nonlocal lowest
            while not done.is_set():
                lowest = min(lowest, stats_of(store).current_limit)
                await asyncio.sleep(0.002)

        watcher = asyncio.create_task(watch_limit())
        before = stats_of(store)
        try:
            with timed() as elapsed:
                arr = await asyncarr.create_array(
                    store, shape=(96, 96), chunks=(16, 16), dtype="int32"
                )
                await arr.write(source)  # 36 chunks
                got = await (await asyncarr.open_array(store, mode="r+")).read()
        finally:
            done.set()
            await watcher
        after = stats_of(store)
    delta = stats_delta(before, after)
    print(
        f"\n[S3 via SlowDown proxy] {proxy.requests} requests, {proxy.throttled} answered 503 "
        f"SlowDown, {delta['retries']} retries, limit {MAX_CONCURRENCY} -> lowest "
        f"{lowest:.2f} (now {after.current_limit:.2f}), {elapsed.seconds:.2f}s"
    )
    np.testing.assert_array_equal(got, source)
    assert proxy.throttled > 0
    assert delta["throttled"] == proxy.throttled
    assert delta["retries"] >= proxy.throttled
    assert delta["failed"] == 0
    assert lowest < MAX_CONCURRENCY


async def test_cut_off_bodies_through_the_proxy_are_retried(
    moto_s3_server: S3TestServer, bucket: str, closing: list[S3Store]
) -> None:
    source = pattern((96, 96), seed=8)
    with fault_proxy(upstream_port(moto_s3_server), seed=9) as proxy:
        store = s3_via(proxy, moto_s3_server, bucket, adaptive=False)
        closing.append(store)
        arr = await asyncarr.create_array(
            store, shape=(96, 96), chunks=(8, 8), shards=(32, 32), dtype="int32"
        )
        await arr.write(source)
        proxy.truncate_rate = 0.3
        before = stats_of(store)
        got = await arr.read()
        small = [await arr.read((slice(i, i + 5), slice(i + 2, i + 4))) for i in range(0, 90, 9)]
        delta = stats_delta(before, stats_of(store))
    print(f"\n[S3 via truncating proxy] {proxy.truncated} bodies cut off, {delta}")
    np.testing.assert_array_equal(got, source)
    for i, block in zip(range(0, 90, 9), small, strict=True):
        np.testing.assert_array_equal(block, source[i : i + 5, i + 2 : i + 4])
    assert proxy.truncated > 0
    assert delta["retries"] >= proxy.truncated
    assert delta["failed"] == 0


async def test_read_only_views_do_not_keep_the_s3_client_open(
    moto_s3_server: S3TestServer, bucket: str
) -> None:
    from asyncarr.stores import _s3_client

    loop = asyncio.get_running_loop()

    def client_refs() -> dict[object, int]:
        entries = _s3_client.client_pool.get(loop, {})
        return {k: e.refs for k, e in entries.items() if k[0] == moto_s3_server.endpoint}

    before = client_refs()
    store = s3_store_from_url(
        f"s3://{bucket}/data", read_only=False, storage_options=moto_s3_server.storage_options()
    )
    arr = await asyncarr.create_array(store, shape=(4,), chunks=(2,), dtype="int32")
    await arr.write(np.arange(4, dtype="int32"))
    view = await asyncarr.open_array(store)  # mode "r": a read-only view of the store
    np.testing.assert_array_equal(await view.read(), np.arange(4))
    await view.aclose()
    await store.aclose()
    after = client_refs()
    await view.store.aclose()  # release what the view still holds (a no-op once fixed)
    assert after == before
