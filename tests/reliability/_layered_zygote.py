"""A fork server for ``test_layered_crash.py`` and ``test_layered_concurrency.py``: forks
processes that commit, compact or collect garbage in a layered container, to be killed
at random moments, or that commit concurrently.

Commands, one per line on stdin (answers on stdout):

``commit <root> <generation>``
    fork a child that overwrites the array at the container's root with generation
    ``<generation>`` of the test data in one transaction (message ``data <generation>``),
    spilling every KiB so the commit uploads several layers; answers ``pid <pid>``.
``compact <root>`` / ``gc <root>``
    the same for a compaction (output cut into 2 KiB layers) and a garbage collection
    (keep the newest generation, no grace period).
``disjoint <url> <options json file> <worker> <rounds> <start time>``
    fork a child that, from ``<start time>`` (seconds since the epoch) on, writes
    ``<rounds>`` chunk rows of its own, one commit each (``test_layered_concurrency.py``).
``contend <url> <options json file> <worker> <rounds> <start time> <result file>``
    the same for a child that increments a shared counter chunk in a transaction per
    round, and writes how many landed and how many conflicted to ``<result file>``.
``wait <pid>``
    reap that child; answers ``status <exit code or -signal>``.

The children write one byte to the progress FIFO (the script's argument) after each
object they store or delete, so the test can kill them between (or during) any two. Forking from
this warm, single-threaded process makes each start in milliseconds.
"""

from __future__ import annotations

import asyncio
import functools
import json
import os
import sys
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from _reliability_helpers import ReportingLocalStore, pattern

import asyncarr
import asyncarr.stores._s3  # (imported once here, not in every child)
from asyncarr.config import ExecutorConfig
from asyncarr.errors import ConflictError
from asyncarr.stores import LayeredStore, MemoryStore
from asyncarr.stores._layered._maintenance import collect_garbage, compact

SHAPE = (32, 32)
CHUNKS = (8, 8)
CHUNK = 8
"""The chunk edge of the concurrency tests' arrays (one column of chunks)."""


class ReportingStore(ReportingLocalStore):
    """Reports manifests (created with put-if-absent) and deletions too."""

    async def set_if_not_exists(self, key: str, value: bytes) -> bool:
        done = await super().set_if_not_exists(key, value)
        self._report(1)
        return done

    async def delete(self, key: str) -> None:
        await super().delete(key)
        self._report(1)


async def run(command: str, root: str, gen: int, progress: str) -> None:
    base = ReportingStore(root, progress)
    store = LayeredStore(base, spill_bytes=1024)
    container = store._shared.container
    if command == "commit":
        async with asyncarr.transaction(store, message=f"data {gen}") as st:
            arr = await asyncarr.open_array(st, mode="r+")
            await arr.write(pattern(SHAPE, seed=gen))
    elif command == "compact":
        await compact(container, part_bytes=2048)
    else:
        await collect_garbage(container, keep=1, older_than=0, grace=0)


def _child(command: str, root: str, gen: int, progress: str) -> None:
    _exit_with(lambda: asyncio.run(run(command, root, gen, progress)))


def _exit_with(work: Callable[[], object]) -> None:
    """In a forked child: do ``work`` on the inline executor, then exit (1 on error)."""
    code = 0
    try:
        asyncarr.set_executor(ExecutorConfig(mode="inline"))
        work()
    except BaseException:
        traceback.print_exc()
        code = 1
    finally:
        sys.stderr.flush()
        os._exit(code)


async def _disjoint(url: str, options: dict[str, Any], worker: int, rounds: int) -> None:
    """Write ``rounds`` chunk rows of our own, one commit each."""
    arr = await asyncarr.open_array(url, mode="r+", storage_options=options)
    for r in range(rounds):
        row = (worker * rounds + r) * CHUNK
        value = np.full((CHUNK, CHUNK), worker * 100 + r + 1, "int32")
        await arr.write(value, slice(row, row + CHUNK))
    await arr.aclose()


async def _contend(url: str, options: dict[str, Any], worker: int, rounds: int) -> dict[str, Any]:
    """Increment the counter (element 0, in chunk ``c/0/0``) in a transaction per round,
    and mark a chunk row of our own; count commits and conflicts."""
    landed = conflicts = 0
    named: set[tuple[str, ...]] = set()
    for r in range(rounds):
        try:
            async with asyncarr.transaction(
                url, message=f"w{worker} r{r}", storage_options=options
            ) as st:
                arr = await asyncarr.open_array(st, mode="r+")
                counter = int((await arr.read(slice(0, 1)))[0, 0])
                await asyncio.sleep(0.002 * (worker + 1))  # widen the race
                await arr.write(counter + 1, (slice(0, CHUNK), slice(0, CHUNK)))
                row = (1 + worker * rounds + r) * CHUNK
                await arr.write(1, (slice(row, row + CHUNK), slice(0, CHUNK)))
            landed += 1
        except ConflictError as exc:
            conflicts += 1
            named.add(exc.keys)
    return {"landed": landed, "conflicts": conflicts, "named": sorted(named)}


def _concurrent(command: str, args: list[str]) -> None:
    url, options_file, worker, rounds, start = args[:5]
    options = json.loads(Path(options_file).read_text())
    time.sleep(max(0.0, float(start) - time.time()))  # all start together
    if command == "disjoint":
        asyncio.run(_disjoint(url, options, int(worker), int(rounds)))
        return
    result = asyncio.run(_contend(url, options, int(worker), int(rounds)))
    Path(args[5]).write_text(json.dumps(result))


async def _warm_up() -> None:
    """Every lazy import of these paths, on a memory store, without threads."""
    store = LayeredStore(MemoryStore())
    arr = await asyncarr.create_array(store, shape=SHAPE, chunks=CHUNKS, dtype="int32")
    for seed in (1, 2):
        async with asyncarr.transaction(store, message="warm") as st:
            await (await asyncarr.open_array(st, mode="r+")).write(pattern(SHAPE, seed=seed))
    await compact(store._shared.container)
    await collect_garbage(store._shared.container, keep=1, older_than=0, grace=0)
    await (await asyncarr.open_array(LayeredStore(store.base))).read()
    await arr.aclose()


def main() -> None:
    progress = sys.argv[1]
    asyncarr.set_executor(ExecutorConfig(mode="inline"))
    asyncio.run(_warm_up())
    for line in sys.stdin:
        cmd, *args = line.split()
        if cmd in ("commit", "compact", "gc"):
            root = args[0]
            gen = int(args[1]) if cmd == "commit" else 0
            pid = os.fork()
            if pid == 0:
                _child(cmd, root, gen, progress)
            print(f"pid {pid}", flush=True)
        elif cmd in ("disjoint", "contend"):
            pid = os.fork()
            if pid == 0:
                _exit_with(functools.partial(_concurrent, cmd, args))
            print(f"pid {pid}", flush=True)
        elif cmd == "wait":
            _, status = os.waitpid(int(args[0]), 0)
            print(f"status {os.waitstatus_to_exitcode(status)}", flush=True)
        elif cmd == "quit":
            return
        else:
            print(f"error unknown command {cmd!r}", flush=True)


if __name__ == "__main__":
    main()
