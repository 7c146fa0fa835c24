"""A fork server for ``test_crash_safety.py``: forks writer processes on request.

Run as a script; it imports asyncarr and numpy once, then reads commands
from stdin, one per line, and answers on stdout:

``write <root> <path> <generation> <progress fd>``
    fork a child that overwrites the whole array at ``<path>`` below the
    local store ``<root>`` with generation ``<generation>`` of the test data
    and exits 0 (1 on error); answers ``pid <pid>``. The child writes one
    byte to the inherited file descriptor ``<progress fd>`` after each value
    it stored, so the test can kill it after a chosen number of writes.
``wait <pid>``
    reap that child; answers ``status <exit code or -signal>``.
``quit``
    exit.

Forking from this already-warm, single-threaded process (every lazy import
done, no threads started) makes each writer start in milliseconds, so many
kills fit in a fast test.
"""

from __future__ import annotations

import asyncio
import os
import sys
import threading
import traceback
from collections.abc import Iterable

from _reliability_helpers import pattern

import asyncarr
from asyncarr.config import ExecutorConfig
from asyncarr.stores import MemoryStore
from asyncarr.stores._local import LocalStore


def generation(shape: tuple[int, ...], gen: int) -> object:
    """The data of generation ``gen`` (shared with the test)."""
    return pattern(shape, seed=gen)


class ReportingLocalStore(LocalStore):
    """A LocalStore that reports each completed ``set``/``write_local_many`` item with one byte
    on a pipe."""

    def __init__(self, root: str, progress_fd: int) -> None:
        super().__init__(root)
        self._progress_fd = progress_fd

    async def set(self, key: str, value: bytes) -> None:
        await super().set(key, value)
        os.write(self._progress_fd, b".")

    def write_local_many(self, items: Iterable[tuple[str, bytes | None]]) -> None:
        # whole chunks are stored by the codec worker threads through this hook, a batch
        # at a time: they have all been stored when it returns
        items = list(items)
        super().write_local_many(items)
        os.write(self._progress_fd, b"." * len(items))


async def _write(root: str, path: str, gen: int, progress_fd: int) -> None:
    store = ReportingLocalStore(root, progress_fd)
    arr = await asyncarr.open_array(store, path=path, mode="r+")
    await arr.write(generation(arr.shape, gen))


def _child(root: str, path: str, gen: int, progress_fd: int) -> None:
    code = 0
    try:
        # Small batches (16 KiB: up to 16 of the 1 KiB chunks, 4 of the 4 KiB shards): the
        # writer reports each stored batch, so kills land between batches, mid-array. With
        # the default 4 MiB, the 32 shards went in two batches and the second was usually
        # done before the kill (no mid-write kill in some runs).
        asyncarr.set_executor(ExecutorConfig(mode="threads", max_workers=2, batch_bytes=16 << 10))
        asyncio.run(_write(root, path, gen, progress_fd))
    except BaseException:
        traceback.print_exc()
        code = 1
    finally:
        sys.stderr.flush()
        os._exit(code)


async def _warm_up() -> None:
    """Run every lazy import of the write path once, on a memory store, without threads."""
    for shards in (None, (4, 4)):
        arr = await asyncarr.create_array(
            MemoryStore(), shape=(8, 8), chunks=(2, 2), shards=shards, dtype="int32"
        )
        await arr.write(generation((8, 8), 0))
        await arr.read()


def main() -> None:
    asyncarr.set_executor(ExecutorConfig(mode="inline"))
    asyncio.run(_warm_up())
    asyncarr.set_executor(None)
    if threading.active_count() != 1:
        print(f"warning: {threading.active_count()} threads before fork", file=sys.stderr)
    for line in sys.stdin:
        cmd, *args = line.split()
        if cmd == "write":
            root, path, gen, fd = args[0], args[1], int(args[2]), int(args[3])
            pid = os.fork()
            if pid == 0:
                _child(root, path, gen, fd)
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
