"""Layered containers under concurrent committers in separate processes.

Four spawned processes commit at once to one container: on disjoint chunks every
commit lands (the losers of each race for a generation re-base on the winner); on a
shared counter each lost race is exactly one ConflictError and no increment is lost.
"""

from __future__ import annotations

import asyncio
import multiprocessing
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from _layered_worker import CHUNK, main

import asyncarr
import asyncarr.sync
from asyncarr.stores import LayeredStore, store_from_url
from asyncarr.testing._procs import StoreLocation

WORKERS = 4
ROUNDS = 5


def run_workers(kind: str, url: str, options: dict[str, Any]) -> dict[int, Any]:
    ctx = multiprocessing.get_context("spawn")
    barrier = ctx.Barrier(WORKERS)
    out = ctx.Queue()
    procs = [
        ctx.Process(target=main, args=(kind, url, options, w, ROUNDS, barrier, out), daemon=True)
        for w in range(WORKERS)
    ]
    for proc in procs:
        proc.start()
    try:
        results = dict(out.get(timeout=120) for _ in procs)
        for proc in procs:
            proc.join(timeout=60)
        assert [p.exitcode for p in procs] == [0] * WORKERS
    finally:
        for proc in procs:
            if proc.is_alive():
                proc.kill()
                proc.join()
    return results


@pytest.fixture(params=["local", "s3"])
def location(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[StoreLocation]:
    if request.param == "local":
        yield StoreLocation(url=str(tmp_path / "ds"))
        return
    server = request.getfixturevalue("moto_s3_server")  # conditional PUTs on a real server
    bucket = server.create_bucket()
    yield StoreLocation(url=f"s3://{bucket}/ds", storage_options=server.storage_options())
    server.delete_bucket(bucket)


async def history(url: str, options: dict[str, Any]) -> list[Any]:
    store = store_from_url(url, storage_options=options)
    assert isinstance(store, LayeredStore)
    try:
        return await store.history()
    finally:
        await store.aclose()


@pytest.mark.servers
def test_four_processes_committing_disjoint_chunks_all_land(location: StoreLocation) -> None:
    url, options = f"layered::{location.url}", location.storage_options
    shape = (WORKERS * ROUNDS * CHUNK, CHUNK)
    asyncarr.sync.create_array(
        url, shape=shape, chunks=(CHUNK, CHUNK), dtype="int32", storage_options=options
    ).close()
    results = run_workers("disjoint", url, options)
    assert sum(results.values()) == WORKERS * ROUNDS
    with asyncarr.sync.open_array(url, storage_options=options) as arr:
        got = arr[:]
    want = np.concatenate(
        [
            np.full((CHUNK, CHUNK), w * 100 + r + 1, "int32")
            for w in range(WORKERS)
            for r in range(ROUNDS)
        ]
    )
    np.testing.assert_array_equal(got, want)
    gens = asyncio.run(history(url, options))
    assert len(gens) == 1 + WORKERS * ROUNDS  # the create, then one generation per commit
    assert [m.generation for m in gens] == list(range(len(gens), 0, -1))


def test_overlapping_commits_conflict_once_per_lost_race(tmp_path: Path) -> None:
    url, options = f"layered::{tmp_path / 'ds'}", {}
    shape = ((1 + WORKERS * ROUNDS) * CHUNK, CHUNK)
    asyncarr.sync.create_array(url, shape=shape, chunks=(CHUNK, CHUNK), dtype="int32").close()
    results = run_workers("contended", url, options)
    landed = sum(r["landed"] for r in results.values())
    conflicts = sum(r["conflicts"] for r in results.values())
    assert landed + conflicts == WORKERS * ROUNDS  # every attempt: landed, or one ConflictError
    assert conflicts > 0  # (the sleeps inside the transactions make them overlap)
    for r in results.values():  # each names the one key both sides wrote: the counter's
        assert r["named"] in ([], [("c/0/0",)])
    with asyncarr.sync.open_array(url) as arr:
        got = arr[:]
    assert got[0, 0] == landed  # no increment lost
    markers = got[CHUNK:, 0].reshape(-1, CHUNK)[:, 0]
    assert int(markers.sum()) == landed  # exactly the commits that landed are there
    gens = asyncio.run(history(url, options))
    assert len(gens) == 1 + landed
