"""asyncarr.dask against real schedulers: threads, ``scheduler="processes"`` and a
``dask.distributed`` LocalCluster of two worker processes (loopback only), on local disk
and on S3 (moto). Results are compared exactly."""

from __future__ import annotations

import multiprocessing
import os
import pickle
import warnings
from collections.abc import Callable, Iterator
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import dask
import dask.array as da
import numpy as np
import pytest
from distributed import Client, LocalCluster

import asyncarr
import asyncarr.dask as ad
import asyncarr.sync as az
from asyncarr.errors import (
    ConfigError,
    ContainsArrayError,
    DTypeError,
    NodeNotFoundError,
    ReadOnlyStoreError,
    SelectionError,
)
from asyncarr.stores import FaultyStore, LocalStore
from asyncarr.testing._fresh_process import open_clients
from asyncarr.testing._procs import StoreLocation
from asyncarr.testing._servers_s3 import S3TestServer

SHAPE = (60, 50)
VALUES = np.arange(SHAPE[0] * SHAPE[1], dtype="f8").reshape(SHAPE) / 7


@pytest.fixture(scope="module")
def client() -> Iterator[Client]:
    """Two worker processes on loopback, for the whole module."""
    with (
        LocalCluster(
            n_workers=2,
            threads_per_worker=2,
            processes=True,
            host="127.0.0.1",
            dashboard_address="127.0.0.1:0",
            worker_dashboard_address="127.0.0.1:0",
        ) as cluster,
        Client(cluster, set_as_default=False) as client,
    ):
        yield client


@pytest.fixture(scope="module")
def process_pool() -> Iterator[ProcessPoolExecutor]:
    """The pool of ``scheduler="processes"`` (spawned workers), reused by the module's
    computations instead of a new pool for each."""
    with ProcessPoolExecutor(2, mp_context=multiprocessing.get_context("spawn")) as pool:
        yield pool


@pytest.fixture
def location(local_or_s3_location: StoreLocation) -> StoreLocation:
    return local_or_s3_location


def _source(location: StoreLocation, name: str, **kwargs: object) -> str:
    """A written array at ``location.url/name`` (sharded 20 x 25, chunks 10 x 25)."""
    url = f"{location.url}/{name}"
    options = {"chunks": (10, 25), "shards": (20, 25), **kwargs}
    with az.create_array(
        url, shape=SHAPE, dtype="f8", storage_options=location.storage_options, **options
    ) as arr:
        arr[:] = VALUES
    return url


SCHEDULERS = ["threads", "processes", "distributed"]


@pytest.fixture(params=SCHEDULERS)
def compute(
    request: pytest.FixtureRequest, process_pool: ProcessPoolExecutor
) -> Callable[..., tuple[object, ...]]:
    """``dask.compute`` with the scheduler of the parameter."""
    scheduler: str = request.param
    if scheduler == "distributed":
        client: Client = request.getfixturevalue("client")
        return lambda *collections: tuple(client.compute(list(collections), sync=True))
    if scheduler == "processes":
        return lambda *collections: dask.compute(
            *collections, scheduler="processes", pool=process_pool
        )
    return lambda *collections: dask.compute(*collections, scheduler="threads")


def test_read_and_write_under_every_scheduler(
    compute: Callable[..., tuple[object, ...]], location: StoreLocation
) -> None:
    opts = location.storage_options
    url = _source(location, "src")
    darr = ad.from_url(url, storage_options=opts)
    assert darr.chunks == ((60,), (50,))  # "auto": whole shards, up to dask's block size
    by_chunk = ad.from_url(url, chunks="chunks", storage_options=opts)
    (total, block) = compute(darr.sum(), by_chunk[15:45, 5:40])
    assert total == VALUES.sum()
    np.testing.assert_array_equal(block, VALUES[15:45, 5:40])

    aligned = f"{location.url}/aligned"
    misaligned = f"{location.url}/misaligned"
    shards = {"chunks": (10, 25), "shards": (20, 25)}
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # aligned blocks: no warning
        first = ad.store(
            by_chunk.rechunk((20, 25)) * 2, aligned, compute=False, storage_options=opts,
            **shards,
        )  # fmt: skip
    with pytest.warns(ad.MisalignedWritesWarning, match=r"darr.rechunk\(\(20, 25\)\)") as seen:
        second = ad.store(
            da.from_array(VALUES, chunks=(7, 13)), misaligned, compute=False,
            storage_options=opts, **shards,
        )  # fmt: skip
    assert len(seen) == 1
    compute(first, second)
    with az.open_array(aligned, storage_options=opts) as arr:
        np.testing.assert_array_equal(arr[:], VALUES * 2)
    with az.open_array(misaligned, storage_options=opts) as arr:
        np.testing.assert_array_equal(arr[:], VALUES)


def test_many_handles_in_a_worker_share_one_client(location: StoreLocation, client: Client) -> None:
    """Tasks that each carry the pickled array (20 of them over two workers) find one
    event loop and one S3 client per worker process."""
    url = _source(location, "src")
    with az.open_array(url, storage_options=location.storage_options) as arr:
        futures = client.map(_block_sum, [arr] * 20, range(20), pure=False)
        assert client.gather(futures) == [VALUES[i % 6 * 10].sum() for i in range(20)]
    per_worker = client.run(open_clients)
    assert len(per_worker) == 2
    if location.url.startswith("s3://"):
        assert all(counts["s3"] == 1 for counts in per_worker.values()), per_worker


def _block_sum(arr: az.Array, i: int) -> float:
    return float(arr[i % 6 * 10].sum())


@pytest.mark.servers
def test_a_store_without_conditional_writes_gets_aligned_blocks(
    moto_s3_server: S3TestServer, client: Client
) -> None:
    """No store-side check could keep two processes' read-modify-writes of one shard
    apart: the blocks are rechunked to the shards instead, and the result is exact."""
    bucket = moto_s3_server.create_bucket()
    try:
        opts = {**moto_s3_server.storage_options(), "conditional_writes": False}
        url = f"s3://{bucket}/plain"
        with pytest.warns(ad.MisalignedWritesWarning, match="rechunked to align"):
            graph = ad.store(
                da.from_array(VALUES, chunks=(7, 13)), url, compute=False,
                storage_options=opts, chunks=(10, 25), shards=(20, 50),
            )  # fmt: skip
        client.compute(graph, sync=True)
        with az.open_array(url, storage_options=opts) as arr:
            np.testing.assert_array_equal(arr[:], VALUES)
    finally:
        moto_s3_server.delete_bucket(bucket)


# -- threads only: chunking choices, what is read, and refusals -------------------------------


def test_chunking_choices(tmp_path: Path) -> None:
    where = StoreLocation(url=str(tmp_path), storage_options={})
    url = _source(where, "sharded")
    plain = _source(where, "plain", shards=None)
    assert ad.from_url(url, chunks="shards").chunks == ((20, 20, 20), (25, 25))
    assert ad.from_url(url, chunks="chunks").chunks == ((10,) * 6, (25, 25))
    assert ad.from_url(plain, chunks="shards").chunks == ((10,) * 6, (25, 25))
    assert ad.from_url(url, chunks=(30, -1)).chunks == ((30, 30), (50,))
    with dask.config.set({"array.chunk-size": "16KiB"}):  # 2 shards of 4 KiB fit, not 3
        assert ad.from_url(url).chunks == ((40, 20), (50,))
        assert ad.from_url(plain).chunks == ((40, 20), (50,))
    with dask.config.set({"array.chunk-size": "2KiB"}):  # a shard alone is too big
        assert ad.from_url(url).chunks == ((10,) * 6, (25, 25))
    with az.open_array(url) as arr:
        for handle in (arr, arr.async_array):
            np.testing.assert_array_equal(ad.from_url(handle).compute(), VALUES)
        with pytest.raises(ConfigError, match="open already"):
            ad.from_url(arr, path="x")
    with pytest.raises(ConfigError, match="chunks must be"):
        ad.from_url(url, chunks="blocks")  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="do not fit"):
        ad.from_url(url, chunks=(7, 7, 7))
    # the same array and blocks give the same graph name (dask deduplicates the reads)
    assert ad.from_url(url).name == ad.from_url(url).name != ad.from_url(plain).name


async def test_aligned_blocks_are_not_read_back(tmp_path: Path) -> None:
    """Aligned blocks are stored whole: no chunk is read or conditionally replaced. The
    misaligned ones merge into what is there."""
    store = FaultyStore(LocalStore(tmp_path / "w"))
    arr = await asyncarr.create_array(store, shape=SHAPE, chunks=(10, 25), dtype="f8")
    store.stats.reset()
    ad.store(da.from_array(VALUES, chunks=(20, 25)), arr)
    assert store.stats.calls["get"] == store.stats.calls["get_versioned"] == 0
    assert store.stats.calls["set"] == 12
    with pytest.warns(ad.MisalignedWritesWarning, match="chunk boundaries"):
        ad.store(da.ones((8, 50)), arr, region=(slice(5, 13), slice(None)))
    assert store.stats.calls["get_versioned"] == 4  # 2 rows of chunks x 2 columns
    expected = VALUES.copy()
    expected[5:13] = 1
    np.testing.assert_array_equal(await arr.read(), expected)


def test_store_modes_and_refusals(tmp_path: Path) -> None:
    url = str(tmp_path / "m")
    darr = da.from_array(VALUES, chunks=(10, 25))
    ad.store(darr, url, mode="w-", chunks=(10, 25))
    with pytest.raises(ContainsArrayError):
        ad.store(darr, url, mode="w-")
    ad.store(darr + 1, url)  # "a": into the array that is there
    with az.open_array(url) as arr:
        np.testing.assert_array_equal(arr[:], VALUES + 1)
        assert arr.chunks == (10, 25)
        with pytest.raises(ReadOnlyStoreError, match="mode='r\\+'"):
            ad.store(darr, arr)
        with pytest.raises(ConfigError, match="not to an open one"):
            ad.store(darr, az.open_array(url, mode="r+"), shards=(20, 50))
    with pytest.raises(NodeNotFoundError):
        ad.store(darr, str(tmp_path / "missing"), mode="r+")
    with pytest.raises(ConfigError, match="region writes into an existing array"):
        ad.store(darr, str(tmp_path / "missing"), region=(slice(0, 60), slice(0, 50)))
    with pytest.raises(SelectionError, match=r"shape \(60, 50\) does not match"):
        ad.store(darr, url, region=(slice(0, 10), slice(None)))
    with pytest.raises(DTypeError, match="astype"):
        ad.store(darr.astype("c16"), url)
    with pytest.raises(ConfigError, match="mode must be"):
        ad.store(darr, url, mode="x")  # type: ignore[arg-type]
    assert not any(name.startswith("missing") for name in os.listdir(tmp_path))


def test_a_pickled_graph_reads_the_same(tmp_path: Path) -> None:
    url = _source(StoreLocation(url=str(tmp_path), storage_options={}), "p")
    darr = pickle.loads(pickle.dumps(ad.from_url(url, chunks="chunks")))
    np.testing.assert_array_equal(darr.compute(), VALUES)


def test_worker_processes_are_not_started_from_a_dask_worker(client: Client) -> None:
    """A dask.distributed worker is a daemonic process, which may not start processes:
    ``auto`` keeps codec work on threads there, and ``processes`` says why it cannot."""
    for auto_can_use_processes, error in client.run(_executor_modes_here).values():
        assert not auto_can_use_processes
        assert "daemonic" in error and "'threads' or 'auto'" in error


def _executor_modes_here() -> tuple[bool, str]:
    from asyncarr.config import ExecutorConfig
    from asyncarr.runtime import CodecExecutor

    auto = CodecExecutor(ExecutorConfig(mode="auto", max_workers=2))
    try:
        CodecExecutor(ExecutorConfig(mode="processes", max_workers=2))
    except ConfigError as exc:
        return auto._processes_possible, str(exc)
    return auto._processes_possible, ""
