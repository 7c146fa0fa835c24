"""Crash safety of LocalStore writes: writers SIGKILLed at random points.

A fork server (``_crash_zygote.py``) starts writer processes that overwrite
a whole array with the next generation of data; the test kills each one
after a random delay. After every kill, each chunk (or shard) on disk must
decode to either its old or its new content - never a torn mixture - no
temporary or lock file may show up as a key, and re-running the write
must complete the array.
"""

from __future__ import annotations

import os
import random
import signal
import time
from pathlib import Path

import numpy as np
import pytest
from _reliability_helpers import LAYOUTS, Zygote, array_for_kills, pattern

import asyncarr

KILLS = {"plain": 14, "sharded": 10}  # 24 SIGKILLs in all


@pytest.mark.parametrize("layout", sorted(LAYOUTS))
async def test_sigkilled_writers_never_leave_torn_chunks(
    layout: str, zygote: Zygote, tmp_path: Path
) -> None:
    shape = LAYOUTS[layout]["shape"]
    root = tmp_path / "crash"
    store, arr, blocks = await array_for_kills(root, layout)  # one block per object
    expected_keys = {f"{layout}/zarr.json"} | {
        f"{layout}/c/{r.start // (r.stop - r.start)}/{c.start // (c.stop - c.start)}"
        for r, c in blocks
    }

    # One uninterrupted run: the writer works and reports every stored value.
    assert zygote.reap(zygote.start_writer(root, layout, 1)) == 0
    assert zygote.drain() == len(blocks)
    np.testing.assert_array_equal(await arr.read(), pattern(shape, seed=1))

    rng = random.Random(f"crash-{layout}")
    killed_mid_write = 0
    for gen in range(2, 2 + KILLS[layout]):
        old, new = pattern(shape, seed=gen - 1), pattern(shape, seed=gen)
        after = rng.randrange(0, len(blocks))  # kill once this many values are stored...
        pid = zygote.start_writer(root, layout, gen)
        zygote.wait_for_writes(after)
        time.sleep(rng.uniform(0.0, 0.002))  # ...give or take the writes then in flight
        os.kill(pid, signal.SIGKILL)  # still our zygote's unreaped child: the pid is not reused
        status = zygote.reap(pid)
        zygote.drain()
        assert status in (0, -signal.SIGKILL), f"writer failed on its own (status {status})"

        keys = {k async for k in store.list_prefix(f"{layout}/")}
        assert keys == expected_keys  # no temporary or lock files listed, nothing missing
        got = await (await asyncarr.open_array(store, path=layout)).read()  # decodes or raises
        n_new = 0
        for block in blocks:
            if np.array_equal(got[block], new[block]):
                n_new += 1
            else:
                np.testing.assert_array_equal(got[block], old[block], err_msg=f"torn {block}")
        assert n_new >= after
        killed_mid_write += 0 < n_new < len(blocks)

        await arr.write(new)  # re-running the write completes the array
        np.testing.assert_array_equal(await arr.read(), new)

    leftovers = sorted(p.name for p in root.rglob("*") if p.name.endswith(".asyncarr.tmp"))
    print(
        f"\n[{layout}] {KILLS[layout]} SIGKILLs of writers of {len(blocks)} objects: "
        f"{killed_mid_write} left a mix of old and new objects; {len(leftovers)} stray "
        f"temporary files left on disk (never listed)"
    )
    assert killed_mid_write >= 1
