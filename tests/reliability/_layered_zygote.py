"""A fork server for ``test_layered_crash.py``: forks processes that commit, compact or
collect garbage in a layered container on local disk, to be killed at random moments.

Commands, one per line on stdin (answers on stdout):

``commit <root> <generation>``
    fork a child that overwrites the array at the container's root with generation
    ``<generation>`` of the test data in one transaction (message ``data <generation>``),
    spilling every KiB so the commit uploads several layers; answers ``pid <pid>``.
``compact <root>`` / ``gc <root>``
    the same for a compaction (output cut into 2 KiB layers) and a garbage collection
    (keep the newest generation, no grace period).
``wait <pid>``
    reap that child; answers ``status <exit code or -signal>``.

The children write one byte to the progress FIFO (the script's argument) after each
object they store or delete, so the test can kill them between (or during) any two. Forking from
this warm, single-threaded process makes each start in milliseconds.
"""

from __future__ import annotations

import asyncio
import os
import sys
import traceback

from _reliability_helpers import ReportingLocalStore, pattern

import asyncarr
from asyncarr.config import ExecutorConfig
from asyncarr.stores import LayeredStore, MemoryStore
from asyncarr.stores._layered._maintenance import collect_garbage, compact

SHAPE = (32, 32)
CHUNKS = (8, 8)


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
    code = 0
    try:
        asyncarr.set_executor(ExecutorConfig(mode="inline"))
        asyncio.run(run(command, root, gen, progress))
    except BaseException:
        traceback.print_exc()
        code = 1
    finally:
        sys.stderr.flush()
        os._exit(code)


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
        elif cmd == "wait":
            _, status = os.waitpid(int(args[0]), 0)
            print(f"status {os.waitstatus_to_exitcode(status)}", flush=True)
        elif cmd == "quit":
            return
        else:
            print(f"error unknown command {cmd!r}", flush=True)


if __name__ == "__main__":
    main()
