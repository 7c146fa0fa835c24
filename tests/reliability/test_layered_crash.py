"""Crash safety of layered containers: commits, compactions and garbage collections
SIGKILLed at random moments (22 kills).

A fork server (``_layered_zygote.py``) starts each operation in a fresh child on a
local container; the test kills it after a random number of the objects it stores or
deletes (plus a random few hundred microseconds, so some kills land mid-write). After
every kill the container must open at its last completed generation with exact data,
every retained generation must read exactly what was committed then, and running the
operation again must complete it.
"""

from __future__ import annotations

import asyncio
import os
import random
import re
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from _layered_zygote import CHUNKS, SHAPE
from _reliability_helpers import Zygote, pattern

import asyncarr
from asyncarr.stores import LayeredStore
from asyncarr.stores._local import LocalStore

KILLS = {"commit": 10, "compact": 6, "gc": 6}


@pytest.fixture(scope="module")
def server() -> Iterator[Zygote]:
    z = Zygote("_layered_zygote.py")
    yield z
    z.close()


class Container:
    """The container under test and what each of its generations must hold."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.data_of: dict[int, int] = {}
        """generation -> the data generation (seed) it holds (0: all zero)."""

    def store(self) -> LayeredStore:
        return LayeredStore(LocalStore(str(self.root)))

    async def check(self, *, every: bool = False) -> int:
        """The generations not seen before (``every``: all retained ones; only garbage
        collection removes objects) read exactly what they should; the newest one."""
        store = self.store()
        manifests = sorted(await store.history(), key=lambda m: m.generation)
        gens = [m.generation for m in manifests]
        assert gens == list(range(gens[0], gens[-1] + 1))  # contiguous
        fresh = [m.generation for m in manifests if m.generation not in self.data_of]
        for m in manifests:
            if m.generation in self.data_of:
                continue
            found = re.fullmatch(r"data (\d+)", m.message)
            if found:
                self.data_of[m.generation] = int(found.group(1))
            elif m.kind == "compact":
                self.data_of[m.generation] = self.data_of[m.generation - 1]
            else:
                self.data_of[m.generation] = 0  # the array's creation
        for gen in gens if every else fresh:
            arr = await asyncarr.open_array(store.snapshot(gen))
            seed = self.data_of[gen]
            want = pattern(SHAPE, seed=seed) if seed else np.zeros(SHAPE, "int32")
            np.testing.assert_array_equal(await arr.read(), want, err_msg=f"generation {gen}")
        latest = await asyncarr.open_array(store)
        seed = self.data_of[gens[-1]]
        if seed:
            np.testing.assert_array_equal(await latest.read(), pattern(SHAPE, seed=seed))
        await store.aclose()
        return gens[-1]


def run_and_kill(server: Zygote, command: str, rng: random.Random, expected_steps: int) -> None:
    pid = int(server.ask(command).split()[1])
    steps = rng.randrange(0, expected_steps)
    try:
        server.wait_for_writes(steps, timeout=2)
    except TimeoutError:
        pass  # it ended in fewer steps: the kill then comes after the end
    time.sleep(rng.uniform(0, 0.0005))
    os.kill(pid, signal.SIGKILL)  # an unreaped child of the server: its pid is not reused
    status = server.reap(pid)
    assert status in (0, -signal.SIGKILL), f"{command}: exit status {status}"
    server.drain()


def run_to_end(server: Zygote, command: str) -> None:
    pid = int(server.ask(command).split()[1])
    assert server.reap(pid) == 0, command
    server.drain()


def test_sigkill_during_commit_compaction_and_gc(server: Zygote, tmp_path: Path) -> None:
    root = tmp_path / "ds"
    container = Container(root)
    rng = random.Random(2024)

    async def create() -> None:
        store = container.store()
        await asyncarr.create_array(store, shape=SHAPE, chunks=CHUNKS, dtype="int32")

    asyncio.run(create())
    gen = 0
    # commits: 16 chunks of 256 bytes spilled every KiB: 4 layers and a manifest
    for _ in range(KILLS["commit"]):
        gen += 1
        before = asyncio.run(container.check())
        run_and_kill(server, f"commit {root} {gen}", rng, 6)  # 5 + the end
        after = asyncio.run(container.check())
        assert after in (before, before + 1)
        run_to_end(server, f"commit {root} {gen}")  # again: it completes
        assert container.data_of[asyncio.run(container.check())] == gen
    # compactions of the newest generation's ~40 layers, cut into 2 parts, a manifest and
    # the hint
    for _ in range(KILLS["compact"]):
        gen += 1
        run_to_end(server, f"commit {root} {gen}")
        run_and_kill(server, f"compact {root}", rng, 5)  # 4 + the end
        asyncio.run(container.check())
        run_to_end(server, f"compact {root}")
        newest = asyncio.run(container.check())
        assert container.data_of[newest] == gen
    # garbage collections of many generations and layers
    for _ in range(KILLS["gc"]):
        for _ in range(3):
            gen += 1
            run_to_end(server, f"commit {root} {gen}")
        run_and_kill(server, f"gc {root}", rng, 12)  # of ~20
        asyncio.run(container.check(every=True))
        run_to_end(server, f"gc {root}")
        asyncio.run(container.check(every=True))
        names = os.listdir(root / "layers")
        manifests = [n for n in os.listdir(root) if n.startswith("manifest.")]
        assert len(manifests) == 1  # completed: only the newest generation is left
        store = container.store()
        (only,) = asyncio.run(store.history())
        assert sorted(f"layers/{n}" for n in names) == sorted(r.name for r in only.layers)
