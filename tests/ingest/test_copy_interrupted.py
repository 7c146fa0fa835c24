"""A copy that fails or is interrupted leaves no array at its destination.

``copy_array`` stores the destination's metadata only after every block is written and
removes the chunk objects it wrote when it stops early: an interrupted copy can never be
opened as if it were complete (it used to be: metadata first, then 0..N of the chunks,
the rest reading as fill values).
"""

from __future__ import annotations

import asyncio
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

import asyncarr
from asyncarr.errors import NodeNotFoundError, PermissionDeniedError
from asyncarr.ingest import copy_array
from asyncarr.stores import FaultyStore, LocalStore, MemoryStore

DATA = np.arange(60 * 50, dtype="int32").reshape(60, 50) + 1  # no element is fill (0)


async def _source(zarr_format: int = 3) -> MemoryStore:
    store = MemoryStore()
    arr = await asyncarr.create_array(
        store, shape=DATA.shape, chunks=(10, 10), dtype="int32", zarr_format=zarr_format
    )
    await arr.write(DATA)
    return store


def _files(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file())


@pytest.mark.parametrize("zarr_format", [2, 3])
async def test_a_failed_copy_leaves_no_array_and_no_chunks(
    tmp_path: Path, zarr_format: int
) -> None:
    source = FaultyStore(await _source(zarr_format))
    chunk = "c/4/2" if zarr_format == 3 else "4.2"
    source.fail(ops="get", keys=chunk, error=PermissionDeniedError)  # not retried
    dest = tmp_path / "dest.zarr"
    with pytest.raises(PermissionDeniedError) as caught:
        await copy_array(source, str(dest), block_bytes=800, concurrency=2)
    assert any("no array was created" in note for note in caught.value.__notes__)
    with pytest.raises(NodeNotFoundError):
        await asyncarr.open_array(str(dest))
    assert _files(dest) == []  # the chunks written before the failure were removed


async def test_an_interrupted_copy_leaves_no_array(tmp_path: Path) -> None:
    dest = FaultyStore(LocalStore(str(tmp_path / "dest.zarr")))
    dest.delay(ops="set", seconds=0.02)  # a slow destination: the copy is cut midway
    task = asyncio.ensure_future(copy_array(await _source(), dest, block_bytes=800))
    while dest.stats.calls["set"] < 5:
        await asyncio.sleep(0.01)
    task.cancel()
    with pytest.raises(asyncio.CancelledError) as caught:
        await task
    assert any("no array was created" in note for note in caught.value.__notes__)
    with pytest.raises(NodeNotFoundError):
        await asyncarr.open_array(dest.inner)
    assert _files(tmp_path / "dest.zarr") == []


async def test_a_completed_copy_is_whole_and_overwrite_replaces(tmp_path: Path) -> None:
    dest = str(tmp_path / "dest.zarr")
    old = await asyncarr.create_array(dest, shape=(3,), dtype="f8")
    await old.write(np.ones(3))
    report = await copy_array(await _source(), dest, overwrite=True, block_bytes=800)
    assert report.blocks > 1
    np.testing.assert_array_equal(await (await asyncarr.open_array(dest)).read(), DATA)


_COPY = """
import sys
from asyncarr.cli import main
sys.exit(main(["copy", sys.argv[1], sys.argv[2]]))
"""


def test_ctrl_c_on_the_command_line_copy_says_no_array_was_created(tmp_path: Path) -> None:
    import asyncarr.sync as az

    source = tmp_path / "src.zarr"
    arr = az.create_array(str(source), shape=(400, 400), chunks=(10, 10), dtype="int32")
    arr[...] = np.arange(400 * 400, dtype="int32").reshape(400, 400) + 1
    dest = tmp_path / "dest.zarr"
    proc = subprocess.Popen(
        [sys.executable, "-c", _COPY, str(source), str(dest)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.monotonic() + 60
    while not list(dest.rglob("c/*/*")) and time.monotonic() < deadline:  # copying now
        if proc.poll() is not None:
            pytest.skip("the copy finished before it could be interrupted")
        time.sleep(0.005)
    proc.send_signal(signal.SIGINT)
    _out, err = proc.communicate(timeout=60)
    if proc.returncode == 0:
        pytest.skip("the copy finished before the interrupt arrived")
    assert proc.returncode == 130, err
    assert "no array was created" in err and "interrupted" in err
    assert not (dest / "zarr.json").exists()
    assert _files(dest) == []
