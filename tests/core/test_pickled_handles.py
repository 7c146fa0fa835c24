"""Arrays and groups, sync and async, pickle as what reopens them: a spawned process
reads and writes through the copies, on local disk and on S3 (moto), and the handles a
worker unpickles one after another share one event loop and one client per endpoint."""

from __future__ import annotations

import copy
import pickle
from pathlib import Path

import numpy as np
import pytest

import asyncarr
import asyncarr.sync as az
from asyncarr.errors import ReadOnlyStoreError
from asyncarr.runtime import get_portal
from asyncarr.testing._fresh_process import run_in_fresh_process, use_pickled_nodes
from asyncarr.testing._procs import StoreLocation

ROUNDS = 4


@pytest.fixture
def location(local_or_s3_location: StoreLocation) -> StoreLocation:
    return local_or_s3_location


def test_every_node_kind_is_used_through_its_copy_in_a_fresh_process(
    location: StoreLocation,
) -> None:
    with az.create_group(location.url, storage_options=location.storage_options) as root:
        arr = root.create_array("x", shape=(6, 5), chunks=(2, 5), dtype="i4")
        arr[:] = np.arange(30).reshape(6, 5)
        handles = {
            "array": arr,
            "group": root,
            "async_array": arr.async_array,
            "async_group": root.async_group,
        }
        report = run_in_fresh_process(use_pickled_nodes, pickle.dumps(handles), ROUNDS)
        expected = np.arange(30).reshape(6, 5)
        expected[0], expected[1] = -1, -2  # written by the other process
        np.testing.assert_array_equal(arr[:], expected)
    before_async, after = 435 - 10 - 5, 435 - 10 - 5 - 35 - 10
    assert report["sums"] == [435, 435, before_async, after] + [after] * 2 * (ROUNDS - 1)
    assert report["loops"] == 1  # one portal loop for every round's handles ...
    if location.url.startswith("s3://"):
        assert report["clients"]["s3"] == 1  # ... so one S3 client for all of them


def test_a_copy_in_this_process_shares_the_data() -> None:
    """Loaded where it was pickled, a copy is the same data, and it leaves this process's
    event-loop thread to its leases (only other processes keep theirs running)."""
    leases = get_portal().leases
    arr = az.create_array("memory://pickled-here", shape=(4,), chunks=(2,), dtype="f8")
    for clone in (pickle.loads(pickle.dumps(arr)), copy.deepcopy(arr)):
        clone[:2] = 7.0
        np.testing.assert_array_equal(arr[:], [7, 7, 0, 0])
        assert clone.metadata == arr.metadata and not clone.read_only
        arr[:] = 0
        clone.close()
    arr.close()
    assert get_portal().leases == leases


def test_a_memory_array_in_another_process_is_a_read_only_snapshot() -> None:
    arr = az.create_array("memory://pickled-away", shape=(4,), chunks=(2,), dtype="i2")
    arr[:] = [1, 2, 3, 4]
    got, error = run_in_fresh_process(_read_then_write, pickle.dumps(arr))
    assert got == [1, 2, 3, 4]
    assert "read-only snapshot" in error and "file://" in error
    assert arr[:].tolist() == [1, 2, 3, 4]


def _read_then_write(blob: bytes) -> tuple[list[int], str]:
    arr = pickle.loads(blob)
    values = arr[:].tolist()
    try:
        arr[0] = 9
    except ReadOnlyStoreError as exc:
        return values, str(exc)
    return values, ""


async def test_async_handles_reopen_without_io(tmp_path: Path) -> None:
    arr = await asyncarr.create_array(str(tmp_path / "a"), shape=(3,), chunks=(3,), dtype="u1")
    await arr.write([1, 2, 3])
    clone = pickle.loads(pickle.dumps(arr))
    assert clone.metadata == arr.metadata and clone.path == arr.path
    (tmp_path / "a" / "zarr.json").unlink()  # the copy holds the metadata: no reload
    assert (await clone.read()).tolist() == [1, 2, 3]
    await clone.aclose()
    await arr.aclose()
