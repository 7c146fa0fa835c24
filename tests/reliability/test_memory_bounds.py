"""Memory bounds for hostile input: every server-backed store x every hostile body shape.

A fault proxy in front of the real server (moto for both S3 read paths,
fake-gcs-server, Azurite, the HTTP test server) answers the chunk GET of a 40-byte
chunk with an endless chunked body, a 10 GiB ``Content-Length``, a gzip bomb (0.5 MB
inflating to 512 MiB) or a byte-by-byte trickle, and the ``zarr.json`` of another array
with an endless body. Each read runs in a fresh process under a resource limit (a
watcher kills it past +256 MiB of RSS) and must end in an asyncarr error, its RSS growth
bounded; before the fix the same reads grew by gigabytes. Zip archives (a deflate bomb)
and MongoDB (a key document announcing a terabyte) are checked in process.
"""

from __future__ import annotations

import json
import subprocess
import sys
import warnings
import zipfile
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import psutil
import pytest
from _proxied import KINDS, Proxied, proxied_store

import asyncarr
from asyncarr.errors import StoreError, ValueTooLargeError
from asyncarr.stores import store_from_url

HERE = Path(__file__).resolve().parent
CAP = 256 << 20
"""The resource limit: a read whose RSS grows past it is killed (and fails)."""
BOUNDED = 16 << 20
"""What a bounded read may grow by (buffers, first-use imports); the shapes would take
512 MiB (the bomb) to gigabytes (endless, 10 GiB) unbounded."""
CASES = {
    "honest": None,  # (first: what opening a store and reading costs the first time)
    "endless": "endless",
    "huge_length": "huge_length",
    "gzip_bomb": "gzip_bomb",
    "trickle": "trickle",
    "meta": "endless",  # an endless zarr.json
}
LIMITS = {
    "max_concurrency": 4,
    "retry": {"max_attempts": 2, "base_backoff": 0.01, "deadline": 5, "request_timeout": 1.0},
    "max_metadata_bytes": 1 << 20,
}


@pytest.fixture(params=KINDS)
def proxied(request: pytest.FixtureRequest) -> Iterator[Proxied]:
    with proxied_store(request.param, request) as place:
        yield place


async def _arrays(place: Proxied) -> None:
    for case in CASES:
        arr = await asyncarr.create_array(
            place.direct_url, path=case, storage_options=place.direct_options,
            shape=(10,), chunks=(10,), dtype="i4", compressor=None, zarr_format=3,
        )  # fmt: skip
        async with arr:
            await arr.write(np.arange(10, dtype="i4"))


@pytest.mark.servers
async def test_every_hostile_body_ends_in_an_error_within_bounded_memory(
    proxied: Proxied,
) -> None:
    await _arrays(proxied)
    for case, shape in CASES.items():
        target = f"*/{case}/zarr.json" if case == "meta" else f"*/{case}/c/0"
        if shape is not None:
            proxied.proxy.hostile(shape, path=target)
    spec = {
        "url": proxied.url,
        "options": proxied.with_limits(LIMITS),
        "cases": list(CASES),
        "cap": CAP,
    }
    run = subprocess.run(
        [sys.executable, str(HERE / "_bounded_read.py"), json.dumps(spec)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    lines = [json.loads(line) for line in run.stdout.splitlines() if line.startswith("{")]
    report = {line["case"]: line for line in lines}
    print(proxied.kind, json.dumps(report, indent=1))
    assert run.returncode == 0, (run.returncode, report, run.stderr[-2000:])
    assert set(report) == set(CASES)
    assert report.pop("honest")["error"] is None
    for outcome in report.values():
        assert outcome["asyncarr"] is True, outcome
        assert outcome["rss_growth"] < BOUNDED, outcome
    for case in ("endless", "huge_length"):
        assert report[case]["error"] == "ValueTooLargeError", report[case]
    assert report["gzip_bomb"]["error"] == "ValueTooLargeError", report["gzip_bomb"]
    assert report["trickle"]["error"] in ("TransientStoreError", "DeadlineExceededError")
    assert report["meta"]["error"] == "MetadataError", report["meta"]
    assert "max_metadata_bytes" in report["meta"]["message"]


# -- zip: a deflate bomb --------------------------------------------------------------------
def _rss() -> int:
    return int(psutil.Process().memory_info().rss)


async def test_a_zip_bomb_member_is_refused_before_inflating(tmp_path: Path) -> None:
    """A 40-byte chunk stored as a deflated 128 MiB member (130 KB in the archive): the
    old store inflated it whole (+2 GB of RSS for a 1 GiB member) before the codec
    noticed; now its declared size is refused before anything is inflated."""
    path = tmp_path / "bomb.zip"
    arr = await asyncarr.create_array(
        f"zip://{path}", shape=(10,), chunks=(10,), dtype="i4", compressor=None, zarr_format=3
    )
    async with arr:
        await arr.write(np.arange(10, dtype="i4"))
    with (
        warnings.catch_warnings(),  # ("Duplicate name": the store keeps the last entry)
        zipfile.ZipFile(path, "a", compression=zipfile.ZIP_DEFLATED, compresslevel=1) as zf,
    ):
        warnings.simplefilter("ignore", UserWarning)
        bomb = zipfile.ZipInfo("c/0")
        bomb.compress_type = zipfile.ZIP_DEFLATED
        with zf.open(bomb, "w", force_zip64=True) as member:
            zeros = bytes(1 << 20)
            for _ in range(128):
                member.write(zeros)
    assert path.stat().st_size < 2 << 20  # 128 MiB inflated from well under 2 MB
    arr = await asyncarr.open_array(f"zip://{path}", mode="r")
    async with arr:
        before = _rss()
        with pytest.raises(ValueTooLargeError, match="c/0"):
            await arr.read()
        assert _rss() - before < BOUNDED


# -- MongoDB: a key document announcing a terabyte ------------------------------------------
@pytest.mark.servers
async def test_a_mongodb_key_document_announcing_a_huge_value_is_refused(
    request: pytest.FixtureRequest,
) -> None:
    location = request.getfixturevalue("mongodb_location")
    arr = await asyncarr.create_array(
        location.url, shape=(10,), chunks=(10,), dtype="i4", compressor=None, zarr_format=3
    )
    async with arr:
        await arr.write(np.arange(10, dtype="i4"))
    store = store_from_url(location.url)
    async with store:
        full = store._full("c/0")  # type: ignore[attr-defined]
        hostile = {"size": 1 << 40, "cs": 255 * 1024, "fs": "0" * 24, "data": None}
        await store._coll().update_one({"_id": full}, {"$set": hostile})  # type: ignore[attr-defined]
        before = _rss()
        arr = await asyncarr.open_array(store)
        with pytest.raises(ValueTooLargeError, match="c/0"):
            await arr.read()
        assert _rss() - before < BOUNDED
        await store._coll().update_one({"_id": full}, {"$set": {"size": 40, "cs": 0}})  # type: ignore[attr-defined]
        with pytest.raises(StoreError, match="corrupt key document"):
            await arr.read()
