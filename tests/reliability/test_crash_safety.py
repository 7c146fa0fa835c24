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
import select
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from _reliability_helpers import pattern

import asyncarr
from asyncarr.stores._local import LocalStore

HERE = Path(__file__).resolve().parent
LAYOUTS: dict[str, dict[str, Any]] = {
    "plain": {"shape": (128, 256), "chunks": (16, 16)},  # 128 chunk files of 1 KiB
    "sharded": {"shape": (128, 256), "chunks": (8, 8), "shards": (32, 32)},  # 32 shards
}
KILLS = {"plain": 14, "sharded": 10}  # 24 SIGKILLs in all


class Zygote:
    """Drives ``_crash_zygote.py`` over its stdin/stdout, and its writers' progress pipe."""

    def __init__(self) -> None:
        env = {**os.environ, "OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1"}
        self.progress_r, self.progress_w = os.pipe()
        self.proc = subprocess.Popen(
            [sys.executable, str(HERE / "_crash_zygote.py")],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            bufsize=1,
            cwd=HERE,
            env=env,
            pass_fds=(self.progress_w,),
        )

    def ask(self, line: str) -> str:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.write(line + "\n")
        self.proc.stdin.flush()
        answer = self.proc.stdout.readline().strip()
        if not answer:
            raise RuntimeError(f"the crash zygote died (exit code {self.proc.poll()})")
        return answer

    def start_writer(self, root: Path, path: str, gen: int) -> int:
        return int(self.ask(f"write {root} {path} {gen} {self.progress_w}").split()[1])

    def wait_for_writes(self, count: int, timeout: float = 60.0) -> None:
        """Block until the running writer has stored ``count`` more values."""
        seen = 0
        deadline = time.monotonic() + timeout
        while seen < count:
            ready, _, _ = select.select([self.progress_r], [], [], deadline - time.monotonic())
            if not ready:
                raise TimeoutError(f"the writer stored only {seen} of {count} values")
            seen += len(os.read(self.progress_r, count - seen))

    def drain(self) -> int:
        """Forget (and count) progress bytes of writers that are gone."""
        drained = 0
        while select.select([self.progress_r], [], [], 0)[0]:
            drained += len(os.read(self.progress_r, 65536))
        return drained

    def reap(self, pid: int) -> int:
        return int(self.ask(f"wait {pid}").split()[1])

    def close(self) -> None:
        try:
            if self.proc.poll() is None:
                self.ask("quit")
        except (RuntimeError, BrokenPipeError):
            pass
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        os.close(self.progress_r)
        os.close(self.progress_w)


@pytest.fixture(scope="module")
def zygote() -> Iterator[Zygote]:
    z = Zygote()
    yield z
    z.close()


def chunk_blocks(shape: tuple[int, int], chunks: tuple[int, int]) -> list[tuple[slice, slice]]:
    return [
        (slice(i, min(i + chunks[0], shape[0])), slice(j, min(j + chunks[1], shape[1])))
        for i in range(0, shape[0], chunks[0])
        for j in range(0, shape[1], chunks[1])
    ]


@pytest.mark.parametrize("layout", sorted(LAYOUTS))
async def test_sigkilled_writers_never_leave_torn_chunks(
    layout: str, zygote: Zygote, tmp_path: Path
) -> None:
    spec = LAYOUTS[layout]
    shape = spec["shape"]
    root = tmp_path / "crash"
    store = LocalStore(root)
    arr = await asyncarr.create_array(store, path=layout, dtype="int32", **spec)
    await arr.write(pattern(shape, seed=0))
    blocks = chunk_blocks(shape, spec.get("shards", spec["chunks"]))  # one block per object
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
