"""Layered containers under concurrent committers in separate processes.

Four processes (forked by ``_layered_zygote.py`` and started at one moment) commit at once
to one container: on disjoint chunks every commit lands (the losers of each race for a
generation re-base on the winner), on local disk and on S3 (moto: conditional PUTs on a
real server); on a shared counter each lost race is exactly one ConflictError and no
increment is lost.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from _layered_zygote import CHUNK
from _reliability_helpers import Zygote

import asyncarr
import asyncarr.sync
from asyncarr.stores import LayeredStore, store_from_url
from asyncarr.testing._procs import StoreLocation

WORKERS = 4
ROUNDS = 5
S3_ROUNDS = 2
"""Commits per process on moto (a slow server: each commit takes a few requests)."""


@pytest.fixture(scope="module")
def server() -> Iterator[Zygote]:
    z = Zygote("_layered_zygote.py")
    yield z
    z.close()


def run_workers(
    server: Zygote, command: str, location: StoreLocation, tmp_path: Path, rounds: int = ROUNDS
) -> list[dict[str, Any]]:
    """Start ``WORKERS`` children of ``command`` together; their results (``contend``)."""
    options = tmp_path / "options.json"
    options.write_text(json.dumps(location.storage_options))
    start = time.time() + 0.3
    url = f"layered::{location.url}"
    outs = [tmp_path / f"out{w}.json" for w in range(WORKERS)]
    pids = [
        server.ask(f"{command} {url} {options} {w} {rounds} {start} {outs[w]}").split()[1]
        for w in range(WORKERS)
    ]
    assert [server.reap(int(pid)) for pid in pids] == [0] * WORKERS
    return [json.loads(o.read_text()) for o in outs if o.exists()]


@pytest.fixture(params=["local", "s3"])
def location(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[StoreLocation]:
    if request.param == "local":
        yield StoreLocation(url=str(tmp_path / "ds"))
        return
    s3 = request.getfixturevalue("moto_s3_server")
    bucket = s3.create_bucket()
    yield StoreLocation(url=f"s3://{bucket}/ds", storage_options=s3.storage_options())
    s3.delete_bucket(bucket)


async def history(url: str, options: dict[str, Any]) -> list[Any]:
    store = store_from_url(url, storage_options=options)
    assert isinstance(store, LayeredStore)
    try:
        return await store.history()
    finally:
        await store.aclose()


@pytest.mark.servers
def test_four_processes_committing_disjoint_chunks_all_land(
    server: Zygote, location: StoreLocation, tmp_path: Path
) -> None:
    url, options = f"layered::{location.url}", location.storage_options
    rounds = S3_ROUNDS if location.url.startswith("s3://") else ROUNDS
    shape = (WORKERS * rounds * CHUNK, CHUNK)
    asyncarr.sync.create_array(
        url, shape=shape, chunks=(CHUNK, CHUNK), dtype="int32", storage_options=options
    ).close()
    run_workers(server, "disjoint", location, tmp_path, rounds)
    with asyncarr.sync.open_array(url, storage_options=options) as arr:
        got = arr[:]
    want = np.concatenate(
        [
            np.full((CHUNK, CHUNK), w * 100 + r + 1, "int32")
            for w in range(WORKERS)
            for r in range(rounds)
        ]
    )
    np.testing.assert_array_equal(got, want)
    gens = asyncio.run(history(url, options))
    assert len(gens) == 1 + WORKERS * rounds  # the create, then one generation per commit
    assert [m.generation for m in gens] == list(range(len(gens), 0, -1))


def test_overlapping_commits_conflict_once_per_lost_race(server: Zygote, tmp_path: Path) -> None:
    location = StoreLocation(url=str(tmp_path / "ds"))
    url = f"layered::{location.url}"
    shape = ((1 + WORKERS * ROUNDS) * CHUNK, CHUNK)
    asyncarr.sync.create_array(url, shape=shape, chunks=(CHUNK, CHUNK), dtype="int32").close()
    results = run_workers(server, "contend", location, tmp_path)
    assert len(results) == WORKERS
    landed = sum(r["landed"] for r in results)
    conflicts = sum(r["conflicts"] for r in results)
    assert landed + conflicts == WORKERS * ROUNDS  # every attempt: landed, or one ConflictError
    assert conflicts > 0  # (the sleeps inside the transactions make them overlap)
    for r in results:  # each names the one key both sides wrote: the counter's
        assert r["named"] in ([], [["c/0/0"]])
    with asyncarr.sync.open_array(url) as arr:
        got = arr[:]
    assert got[0, 0] == landed  # no increment lost
    markers = got[CHUNK:, 0].reshape(-1, CHUNK)[:, 0]
    assert int(markers.sum()) == landed  # exactly the commits that landed are there
    gens = asyncio.run(history(url, {}))
    assert len(gens) == 1 + landed
