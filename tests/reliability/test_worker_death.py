"""Codec worker processes die with their writer: writers SIGKILLed at random points.

Writers forked by ``_crash_zygote.py`` overwrite a whole array with their codec work in
worker processes (executor mode ``processes``, started by ``forkserver`` or ``spawn``, or
``auto`` once it has chosen processes for small local chunk writes), and are SIGKILLed
after a random number of stored values; each batch of chunks takes a while, so there are
batches in flight and queued at the kill.
Right after each kill another writer (this test) completes a full re-write of the array.
Then:

* no process the dead writer started (fork server, resource tracker, workers: all in its
  session) is alive 2 s after the kill;
* nothing changed in the store after the re-write (the dead writer's workers did not run
  their in-flight or queued batches), and the array reads as the re-write;
* reading the dead writer's stdout and stderr to the end does not hang (nothing it
  started holds them open), and none of its shared-memory segments is left.
"""

from __future__ import annotations

import glob
import os
import random
import select
import signal
import time
from pathlib import Path

import numpy as np
import psutil
import pytest
from _reliability_helpers import LAYOUTS, Zygote, array_for_kills, pattern

from asyncarr.runtime._executor import usable_cpus

KILLS = {
    ("processes", "plain"): 9,
    ("processes", "sharded"): 6,
    ("auto", "plain"): 3,  # slower: measures threads, then starts and measures processes
    ("spawn", "plain"): 3,  # slower: spawned workers each import everything
}
"""21 SIGKILLs in all."""
GRACE_SECONDS = 2.0
"""How long what a dead writer started may outlive it."""


def session_survivors(sid: int) -> list[str]:
    """The processes (not zombies) of session ``sid``, described."""
    found = []
    for pid in psutil.pids():
        try:
            if os.getsid(pid) != sid:
                continue
            proc = psutil.Process(pid)
            if proc.status() != psutil.STATUS_ZOMBIE:
                found.append(f"{pid} {' '.join(proc.cmdline())[:100]}")
        except (OSError, psutil.Error):  # gone meanwhile
            continue
    return found


def store_state(root: Path) -> dict[str, tuple[int, int, int]]:
    """Every file under ``root`` (stray temporary files included) with its inode, change
    time and size: any rename, link, unlink or rewrite shows."""
    state = {}
    for dirpath, _dirs, files in os.walk(root):
        for name in files:
            path = os.path.join(dirpath, name)
            try:
                st = os.lstat(path)
            except FileNotFoundError:  # renamed meanwhile
                continue
            state[os.path.relpath(path, root)] = (st.st_ino, st.st_ctime_ns, st.st_size)
    return state


class Output:
    """The reading end of a writer's stdout and stderr (a FIFO), as a supervisor holds it."""

    def __init__(self, fifo: Path) -> None:
        self.fifo = fifo
        os.mkfifo(fifo)
        self.fd = os.open(fifo, os.O_RDONLY | os.O_NONBLOCK)
        self.text = b""

    def read_until(self, marker: bytes | None, timeout: float) -> bool:
        """Read until ``marker`` (``None``: end-of-file) shows up; whether it did."""
        deadline = time.monotonic() + timeout
        while marker is None or marker not in self.text:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([self.fd], [], [], left)[0]:
                return False
            data = os.read(self.fd, 65536)
            if not data:
                return marker is None
            self.text += data
        return True

    def close(self) -> None:
        os.close(self.fd)


@pytest.mark.parametrize("case", sorted(KILLS), ids="-".join)
async def test_killed_writers_workers_die_with_it_and_store_nothing(
    case: tuple[str, str], zygote: Zygote, tmp_path: Path
) -> None:
    mode, layout = case
    if mode == "auto" and usable_cpus() < 2:
        pytest.skip("auto mode never uses processes on one CPU")
    shape = LAYOUTS[layout]["shape"]
    root = tmp_path / "store"
    _store, arr, blocks = await array_for_kills(root, layout)

    rng = random.Random(f"worker-death-{mode}-{layout}")
    killed_mid_write = 0
    for gen in range(1, 1 + KILLS[case]):
        output = Output(tmp_path / f"output-{gen}")
        pid = -1
        try:
            pid = zygote.start_writer(root, layout, gen, mode=mode, output=output.fifo)
            if mode == "auto":
                ready = output.read_until(b"ready\n", timeout=60)
                assert ready, f"the writer did not get to processes: {output.text.decode()}"
            after = rng.randrange(0, len(blocks))  # kill once this many values are stored...
            zygote.wait_for_writes(after)
            time.sleep(rng.uniform(0.0, 0.003))  # ...give or take the writes then in flight
            os.kill(pid, signal.SIGKILL)  # still our zygote's unreaped child: no pid reuse
            killed_at = time.monotonic()
            status = zygote.reap(pid)
            rewrite = pattern(shape, seed=1000 + gen)
            await arr.write(rewrite)  # another writer completes a full re-write
            rewritten = store_state(root)
            assert status in (0, -signal.SIGKILL), output.text.decode()
            killed_mid_write += 0 < after + zygote.drain() < len(blocks)  # (as reported)

            survivors = session_survivors(pid)
            while survivors and time.monotonic() < killed_at + GRACE_SECONDS:
                time.sleep(0.02)
                survivors = session_survivors(pid)
            later = store_state(root)
            changed = sorted(
                k for k in rewritten.keys() | later.keys() if rewritten.get(k) != later.get(k)
            )
            assert not changed, f"the dead writer's workers changed {changed[:5]}... afterwards"
            np.testing.assert_array_equal(await arr.read(), rewrite)
            assert not survivors, f"{GRACE_SECONDS} s after the kill these live on: {survivors}"
            assert output.read_until(None, timeout=10), (
                "the dead writer's stdout stays open: a supervisor reading it to the end hangs"
            )
            assert not glob.glob(f"/dev/shm/asyncarr-{pid}-*"), "its shared memory leaked"
        finally:
            output.close()
            for line in session_survivors(pid) if pid > 0 else ():  # a failed round's
                os.kill(int(line.split()[0]), signal.SIGKILL)

    print(
        f"\n[{mode}/{layout}] {KILLS[case]} SIGKILLs of writers of {len(blocks)} objects: "
        f"{killed_mid_write} killed after storing some values and before the last"
    )
    assert killed_mid_write >= 1
