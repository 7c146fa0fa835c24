"""A killed writer's codec worker processes die with it and never write again.

A writer process rewrites a local array in a loop with worker processes that store the
chunks they encode (``_worker_death_writer.py``). It is SIGKILLed at a random moment;
then this test, like a supervisor taking over, rewrites the whole array with other
data. Nothing the dead writer started may change the store after that, nor outlive it
by more than two seconds, nor keep its standard output open.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

import numpy as np
import psutil
import pytest
from _reliability_helpers import pattern

import asyncarr
import asyncarr.sync as az
from asyncarr.config import ExecutorConfig

HERE = Path(__file__).resolve().parent
WRITER = HERE / "_worker_death_writer.py"
MARK = "ASYNCARR_WORKER_DEATH_TEST"
SHAPE = (256, 256)
CHUNKS = (8, 8)  # 1,024 chunks of 256 bytes
SURVIVAL_LIMIT = 2.0


def marked_processes(mark: str) -> list[psutil.Process]:
    """Live processes whose environment carries ``MARK=mark`` (the writer's descendants
    inherit it, whoever their parent is now)."""
    found = []
    for proc in psutil.process_iter():
        try:
            if proc.status() == psutil.STATUS_ZOMBIE:
                continue
            if proc.environ().get(MARK) == mark:
                found.append(proc)
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
    return found


def store_state(root: Path) -> dict[str, tuple[int, int, int]]:
    """Every file under ``root`` with its inode, change time and size: any rename, link,
    unlink or rewrite shows."""
    state = {}
    for dirpath, _dirs, files in os.walk(root):
        for name in files:
            st = os.lstat(os.path.join(dirpath, name))
            rel = os.path.relpath(os.path.join(dirpath, name), root)
            state[rel] = (st.st_ino, st.st_ctime_ns, st.st_size)
    return state


def read_to_eof(stream: object, timeout: float) -> bool:
    """Whether reading ``stream`` to its end finishes within ``timeout`` seconds."""
    done = threading.Event()

    def drain() -> None:
        stream.read()  # type: ignore[attr-defined]
        done.set()

    threading.Thread(target=drain, daemon=True).start()
    return done.wait(timeout)


@pytest.mark.parametrize(("start_method", "rounds"), [("forkserver", 12), ("spawn", 8)])
def test_killed_writers_workers_die_and_never_write_again(
    start_method: str, rounds: int, tmp_path: Path
) -> None:
    root = tmp_path / "data.zarr"
    arr = az.create_array(str(root), shape=SHAPE, chunks=CHUNKS, dtype="int32", compressor=None)
    arr.close()
    asyncarr.set_executor(ExecutorConfig(mode="threads", max_workers=2))
    rng = random.Random(start_method)
    try:
        for round_no in range(rounds):
            mark = uuid.uuid4().hex
            proc = subprocess.Popen(
                [sys.executable, str(WRITER), str(root), "", str(round_no + 1), start_method],
                stdout=subprocess.PIPE,
                stderr=subprocess.DEVNULL,
                env={**os.environ, MARK: mark},
            )
            try:
                assert proc.stdout is not None
                assert proc.stdout.readline() == b"ready\n", "the writer did not start"
                assert len(marked_processes(mark)) > 1, "the writer started no worker process"
                time.sleep(rng.uniform(0.0, 0.25))
            finally:
                proc.send_signal(signal.SIGKILL)
                proc.wait()
            killed_at = time.monotonic()

            # A supervisor takes over at once: the whole array rewritten with other data.
            expected = pattern(SHAPE, seed=1000 + round_no)
            with az.open_array(str(root), mode="r+") as again:
                again[...] = expected
            after_takeover = store_state(root)

            # Reading the dead writer's output to the end does not wait for its workers.
            assert read_to_eof(proc.stdout, SURVIVAL_LIMIT + 1), (
                f"round {round_no}: the writer's stdout stayed open after it was killed"
            )
            survivors: list[psutil.Process] = []
            while time.monotonic() - killed_at < SURVIVAL_LIMIT:
                survivors = marked_processes(mark)
                if not survivors:
                    break
                time.sleep(0.02)
            assert not survivors, (
                f"round {round_no}: processes outlived the killed writer by "
                f"{SURVIVAL_LIMIT} s: {[(p.pid, p.name()) for p in survivors]}"
            )
            # Its shared memory does not leak: the resource tracker it started unlinks
            # the segments once the last process holding its pipe (a worker) is gone.
            leaked = list(Path("/dev/shm").glob(f"asyncarr-{proc.pid}-*"))
            while leaked and time.monotonic() - killed_at < SURVIVAL_LIMIT + 1:
                time.sleep(0.02)
                leaked = list(Path("/dev/shm").glob(f"asyncarr-{proc.pid}-*"))
            assert not leaked, f"round {round_no}: shared memory left behind: {leaked}"
            # Everything it started is gone: nothing can write any more. Nothing did.
            assert store_state(root) == after_takeover, (
                f"round {round_no}: the store changed after the writer was killed"
            )
            with az.open_array(str(root)) as check:
                np.testing.assert_array_equal(check[...], expected)
    finally:
        asyncarr.set_executor(None)
