"""A fork server for the tests that SIGKILL writers: forks writer processes on request.

Run as a script with the path of the progress FIFO; it imports asyncarr and numpy once,
then reads commands from stdin, one per line, and answers on stdout:

``write <root> <path> <generation> <mode> <output>``
    fork a child that overwrites the whole array at ``<path>`` below the
    local store ``<root>`` with generation ``<generation>`` of the test data
    and exits 0 (1 on error); answers ``pid <pid>``. The child leads a new
    session (its pid is the session id of everything it starts), runs its
    codec work with executor mode ``<mode>`` (``threads``, ``processes``,
    ``spawn``: processes started by ``spawn``, or ``auto`` pushed to processes:
    it prints ``ready`` once ``auto`` has chosen them), and sends its stdout and stderr to the FIFO ``<output>``
    (``-``: the zygote's stdout). It writes one byte to the progress FIFO
    after each value it (or one of its codec workers) stored, so the test can
    kill it after a chosen number of writes.
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

from _reliability_helpers import ReportingLocalStore, pattern

import asyncarr
from asyncarr.config import ExecutorConfig
from asyncarr.core._write import SMALL_WRITES
from asyncarr.runtime import CodecExecutor, _executor
from asyncarr.stores import MemoryStore
from asyncarr.stores._local import LocalStore


def generation(shape: tuple[int, ...], gen: int) -> object:
    """The data of generation ``gen`` (shared with the test)."""
    return pattern(shape, seed=gen)


async def _choose_processes(root: str, path: str) -> None:
    """Have ``auto`` mode move small local chunk writes to worker processes, as it does
    where they are faster, by writing a scratch copy of the array with the measurement
    thresholds lowered (and any gain enough)."""
    for name, value in (
        ("MIN_SAMPLES", 2),
        ("MIN_WINDOW_SECONDS", 0.0),
        ("MIN_CONCURRENCY", 0.0),
        ("PROCESS_WARMUP_JOBS", 0),
        ("MIN_THROUGHPUT_GAIN", 0.0),
    ):
        setattr(_executor, name, value)
    model = await asyncarr.open_array(LocalStore(root), path=path)
    scratch = await asyncarr.create_array(
        LocalStore(root),
        path=f"{path}-scratch",
        shape=model.shape,
        chunks=model.chunks,
        dtype=model.dtype,
        overwrite=True,
    )
    executor = _executor.get_executor()
    for _ in range(600):
        if executor.mode_for(False, profile=SMALL_WRITES) == "processes":
            print("ready", flush=True)
            return
        await scratch.write(generation(scratch.shape, 0))
        await asyncio.sleep(0.01)  # the process pool warms up meanwhile
    raise RuntimeError(f"auto did not choose processes: {executor.decisions()}")


async def _write(root: str, path: str, gen: int, mode: str, progress: str) -> None:
    if mode == "auto":
        await _choose_processes(root, path)
    # worker processes: each batch of chunks takes a while (16 KiB batches: 16 ms), as
    # with bigger chunks or slower codecs, so a kill finds batches in flight and queued
    store = ReportingLocalStore(root, progress, delay=0.001 if mode != "threads" else 0.0)
    arr = await asyncarr.open_array(store, path=path, mode="r+")
    await arr.write(generation(arr.shape, gen))


def _child(root: str, path: str, gen: int, mode: str, progress: str) -> None:
    code = 0
    try:
        os.setsid()
        # Small batches (16 KiB: up to 16 of the 1 KiB chunks, 4 of the 4 KiB shards): the
        # writer reports each stored batch, so kills land between batches, mid-array. With
        # the default 4 MiB, the 32 shards went in two batches and the second was usually
        # done before the kill (no mid-write kill in some runs).
        config = ExecutorConfig(
            mode="processes" if mode == "spawn" else mode, max_workers=2, batch_bytes=16 << 10
        )
        asyncarr.set_executor(
            CodecExecutor(config, mp_context="spawn") if mode == "spawn" else config
        )
        asyncio.run(_write(root, path, gen, mode, progress))
    except BaseException:
        traceback.print_exc()
        code = 1
    finally:
        sys.stdout.flush()
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


def _fork_writer(args: list[str], progress: str) -> int:
    root, path, gen, mode, output = args[0], args[1], int(args[2]), args[3], args[4]
    out = os.open(output, os.O_WRONLY) if output != "-" else -1
    pid = os.fork()
    if pid == 0:
        if out >= 0:
            os.dup2(out, 1)
            os.dup2(out, 2)
            os.close(out)
        _child(root, path, gen, mode, progress)
    if out >= 0:
        os.close(out)
    return pid


def main() -> None:
    progress = sys.argv[1]
    asyncarr.set_executor(ExecutorConfig(mode="inline"))
    asyncio.run(_warm_up())
    asyncarr.set_executor(None)
    if threading.active_count() != 1:
        print(f"warning: {threading.active_count()} threads before fork", file=sys.stderr)
    for line in sys.stdin:
        cmd, *args = line.split()
        if cmd == "write":
            print(f"pid {_fork_writer(args, progress)}", flush=True)
        elif cmd == "wait":
            _, status = os.waitpid(int(args[0]), 0)
            print(f"status {os.waitstatus_to_exitcode(status)}", flush=True)
        elif cmd == "quit":
            return
        else:
            print(f"error unknown command {cmd!r}", flush=True)


if __name__ == "__main__":
    main()
