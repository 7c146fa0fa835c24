"""Shared helpers of the reliability tests (imported by module name: the test files'
directory is on ``sys.path`` under pytest's default import mode)."""

from __future__ import annotations

import os
import select
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

import asyncarr
from asyncarr.abc import Store
from asyncarr.config import RetryConfig, StoreLimits
from asyncarr.runtime import StoreStats, store_stats
from asyncarr.stores._local import LocalStore

HERE = Path(__file__).resolve().parent

FAST_RETRY = RetryConfig(
    max_attempts=30, base_backoff=0.001, max_backoff=0.02, deadline=60.0, request_timeout=10.0
)
"""Fast backoff, many attempts: a 20% fault rate never exhausts 30 attempts (0.2**30)."""


def fast_limits(**changes: Any) -> StoreLimits:
    """Store limits with :data:`FAST_RETRY` (non-adaptive unless asked)."""
    changes.setdefault("retry", FAST_RETRY)
    changes.setdefault("adaptive", False)
    changes.setdefault("max_concurrency", 32)
    return StoreLimits(**changes)


async def snapshot(store: Store) -> dict[str, bytes]:
    """Every key of ``store`` with its bytes (to prove a store was left unchanged)."""
    out: dict[str, bytes] = {}
    async for key in store.list_prefix(""):
        value = await store.get(key)
        assert value is not None, key
        out[key] = value
    return out


@dataclass
class Timer:
    """Wall-clock time of a block (printed in reports, never asserted)."""

    seconds: float = 0.0


@contextmanager
def timed() -> Iterator[Timer]:
    timer = Timer()
    start = time.perf_counter()
    try:
        yield timer
    finally:
        timer.seconds = time.perf_counter() - start


def stats_delta(before: StoreStats, after: StoreStats) -> dict[str, int]:
    """Counter differences between two snapshots of the same endpoint."""
    names = ("completed", "failed", "retries", "throttled", "timeouts", "truncated")
    return {n: getattr(after, n) - getattr(before, n) for n in names}


def stats_of(store: Store) -> StoreStats:
    return store_stats(store)


def pattern(shape: tuple[int, ...], seed: int, dtype: str = "int32") -> np.ndarray[Any, Any]:
    """A deterministic array whose every element differs from its neighbours."""
    n = int(np.prod(shape))
    base = np.arange(n, dtype=np.int64) * 7919 + seed * 1_000_003
    return (base % (2**31 - 1)).astype(dtype).reshape(shape)


def split_points(total: int, parts: int, offset: int) -> list[int]:
    """``parts + 1`` increasing cut points over ``[0, total]``, shifted off any chunk grid."""
    cuts = [0]
    for i in range(1, parts):
        cuts.append(min(total - 1, max(cuts[-1] + 1, (total * i) // parts + offset)))
    cuts.append(total)
    return cuts


def disjoint_regions(
    shape: tuple[int, int], rows: int, cols: int, offset: int = 3
) -> list[tuple[slice, slice]]:
    """``rows * cols`` rectangles tiling ``shape`` whose edges avoid the chunk boundaries."""
    r = split_points(shape[0], rows, offset)
    c = split_points(shape[1], cols, offset)
    return [
        (slice(r[i], r[i + 1]), slice(c[j], c[j + 1])) for i in range(rows) for j in range(cols)
    ]


# --------------------------------------------------------------------------- killed writers

LAYOUTS: dict[str, dict[str, Any]] = {
    "plain": {"shape": (128, 256), "chunks": (16, 16)},  # 128 chunk files of 1 KiB
    "sharded": {"shape": (128, 256), "chunks": (8, 8), "shards": (32, 32)},  # 32 shards
}
"""The arrays SIGKILLed writers overwrite (see ``_crash_zygote.py``)."""


def chunk_blocks(shape: tuple[int, int], chunks: tuple[int, int]) -> list[tuple[slice, slice]]:
    return [
        (slice(i, min(i + chunks[0], shape[0])), slice(j, min(j + chunks[1], shape[1])))
        for i in range(0, shape[0], chunks[0])
        for j in range(0, shape[1], chunks[1])
    ]


async def array_for_kills(
    root: Path, layout: str
) -> tuple[LocalStore, Any, list[tuple[slice, slice]]]:
    """A local store at ``root`` with the ``layout`` array holding generation 0; the
    array; and the blocks of its stored objects (chunks or shards)."""
    spec = LAYOUTS[layout]
    store = LocalStore(root)
    arr = await asyncarr.create_array(store, path=layout, dtype="int32", **spec)
    await arr.write(pattern(spec["shape"], seed=0))
    return store, arr, chunk_blocks(spec["shape"], spec.get("shards", spec["chunks"]))


class ReportingLocalStore(LocalStore):
    """A LocalStore that reports each value it stored with one byte on the FIFO
    ``progress``, from whichever process stores it (pickled into codec worker processes,
    it reopens the FIFO there). ``delay``: seconds each value of a batch of chunks takes
    to come (a slow codec), so batches are still in flight or queued when a test kills
    the writer."""

    def __init__(self, root: str, progress: str, delay: float = 0.0) -> None:
        super().__init__(root)
        self._progress = progress
        self._progress_fd = -1
        self._delay = delay

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (str(self.root), self._progress, self._delay))

    def _report(self, count: int) -> None:
        if self._progress_fd < 0:  # the test holds the FIFO open for reading
            self._progress_fd = os.open(self._progress, os.O_WRONLY | os.O_NONBLOCK)
        os.write(self._progress_fd, b"." * count)

    async def set(self, key: str, value: bytes) -> None:
        await super().set(key, value)
        self._report(1)

    def write_local_many(self, items: Iterable[tuple[str, bytes | None]]) -> None:
        # whole chunks are stored by the codec workers (threads or processes) through this
        # hook, a batch at a time: they have all been stored when it returns
        items = list(items)

        def slowly() -> Iterator[tuple[str, bytes | None]]:
            for item in items:
                time.sleep(self._delay)
                yield item

        super().write_local_many(slowly() if self._delay else items)
        self._report(len(items))


class Zygote:
    """Drives a fork server (``_crash_zygote.py``, or ``script``) over its stdin/stdout,
    and reads its children's progress FIFO (its path is the script's argument)."""

    def __init__(self, script: str = "_crash_zygote.py") -> None:
        env = {**os.environ, "OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1"}
        self._dir = tempfile.TemporaryDirectory(prefix="asyncarr-zygote-")
        progress = os.path.join(self._dir.name, "progress")
        os.mkfifo(progress)
        # read-write: the FIFO never reads as end-of-file between writers
        self.progress_r = os.open(progress, os.O_RDWR)
        self.proc = subprocess.Popen(
            [sys.executable, str(HERE / script), progress],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            bufsize=1,
            cwd=HERE,
            env=env,
        )

    def ask(self, line: str) -> str:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.write(line + "\n")
        self.proc.stdin.flush()
        answer = self.proc.stdout.readline().strip()
        if not answer:
            raise RuntimeError(f"the crash zygote died (exit code {self.proc.poll()})")
        return answer

    def start_writer(
        self, root: Path, path: str, gen: int, mode: str = "threads", output: Path | None = None
    ) -> int:
        """Fork a writer of generation ``gen`` with executor ``mode``; its stdout and
        stderr go to the FIFO ``output`` (opened for reading by the caller) if given."""
        answer = self.ask(f"write {root} {path} {gen} {mode} {output or '-'}")
        return int(answer.split()[1])

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
        self._dir.cleanup()
