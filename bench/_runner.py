"""Running the workloads: targets per tool, verification, interleaved repetitions.

For every operation of a workload each tool opens its own handle on the same
stored data (not timed), runs once as warm-up and is checked against the
source array (once, outside the timing), then the timed repetitions go round
robin over the tools, the starting tool rotating each round, so that drift in
the machine's load hits every tool alike.
"""

from __future__ import annotations

import contextlib
import gc
import os
import shutil
import statistics
import time
import traceback
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from bench._data import DATA_DIR, Dataset, Workload, random_chunks
from bench._tools import Handle, Target, Tool, target_files

__all__ = ["Result", "Runner", "WriteDirs", "remove_write_outputs", "timed"]

N_RANDOM = 200


@dataclass
class Result:
    """One tool's measurements for one workload and operation."""

    workload: str
    op: str
    tool: str
    label: str
    unit: str
    """``MB/s`` (higher is better) or ``ms/chunk`` (lower is better)."""
    values: list[float] = field(default_factory=list)
    note: str = ""
    error: str = ""
    limit: bool = False
    """A limit (codec work on all cores, raw reads or raw GETs), not a Zarr implementation."""

    @property
    def median(self) -> float:
        return statistics.median(self.values) if self.values else float("nan")

    @property
    def lo(self) -> float:
        return min(self.values) if self.values else float("nan")

    @property
    def hi(self) -> float:
        return max(self.values) if self.values else float("nan")

    @property
    def higher_is_better(self) -> bool:
        return self.unit == "MB/s"

    def to_json(self) -> dict[str, Any]:
        return {
            "workload": self.workload,
            "op": self.op,
            "tool": self.tool,
            "label": self.label,
            "unit": self.unit,
            "median": self.median if self.values else None,
            "min": self.lo if self.values else None,
            "max": self.hi if self.values else None,
            "values": self.values,
            "reps": len(self.values),
            "note": self.note,
            "error": self.error,
            "limit": self.limit,
        }


@dataclass
class _Entry:
    tool: Tool
    result: Result
    run: Callable[[], float]
    """Runs the operation once; returns the timed seconds."""
    reps: int = 0
    cleanup: Callable[[], None] = lambda: None


def timed(fn: Callable[[], object]) -> float:
    """Seconds ``fn()`` takes, after a garbage collection (not timed)."""
    gc.collect()
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


WRITE_DIR = DATA_DIR / "write"
KEEP_WRITES_MIN_FREE = 20e9
"""Below this much free disk, write outputs are deleted after each run, not at the end."""


class WriteDirs:
    """A new directory under ``base`` for each write run of ``ds``: an empty array (the
    dataset's metadata only), with earlier runs' dirty pages flushed before the timing.

    Earlier runs' output stays until the bench ends (:func:`remove_write_outputs`) instead
    of being deleted before the next run. Why: on an ext4 without a journal (this machine's
    root filesystem), the kernel will not reuse an inode freed in the last 60 s
    (``recently_deleted()`` in its inode allocator) and scans past each one for every new
    file. After deleting the previous run's 16,384 small chunks, creating a file cost
    300-700 us instead of ~30 us, whichever tool it was, so the small-chunk write numbers
    measured who had deleted last rather than the tools. Short of disk
    (:data:`KEEP_WRITES_MIN_FREE`), the previous run's output is deleted first after all.
    """

    def __init__(self, base: Path, ds: Dataset) -> None:
        self.base = base
        self.ds = ds
        self.last: Path | None = None
        """The directory of the latest run."""

    def next(self) -> Path:
        if self.last is not None and shutil.disk_usage(self.base).free < KEEP_WRITES_MIN_FREE:
            shutil.rmtree(self.last, ignore_errors=True)
        self.base.mkdir(parents=True, exist_ok=True)
        n = 0
        while (self.base / f"run{n}").exists():
            n += 1
        path = self.last = self.base / f"run{n}"
        path.mkdir()
        for m in self.ds.metadata_files():
            shutil.copyfile(self.ds.path / m, path / m)
        # Flush earlier runs' dirty pages first (untimed): otherwise whichever tool runs
        # while the kernel writes back the previous 64+ MB pays for it, and write numbers
        # drift down over a long `make bench` (seen: 158 vs 641 MB/s for the same write).
        os.sync()
        return path


def remove_write_outputs() -> None:
    """Delete every write run's output (at the end of the bench, see :class:`WriteDirs`)."""
    shutil.rmtree(WRITE_DIR, ignore_errors=True)


def _nothing_to_check() -> bool:
    return True


def _read_entry(
    tool: Tool,
    result: Result,
    handle: Handle,
    op: str,
    data: np.ndarray[Any, Any],
    sels: list[tuple[slice, slice]],
) -> tuple[_Entry, Callable[[], bool]]:
    """The timed run and the (untimed) equality check of a read or random op."""
    if op == "sum":  # a dask reduction: the handle's read_full computes the sum
        expected = float(data.sum(dtype="f8"))

        def check_sum() -> bool:
            return bool(np.isclose(float(handle.read_full()), expected, rtol=1e-5))

        return _Entry(tool, result, lambda: timed(handle.read_full)), check_sum
    if op == "read":

        def check() -> bool:
            out = handle.read_full()
            return not tool.checkable or bool(np.array_equal(out, data))

        return _Entry(tool, result, lambda: timed(handle.read_full)), check

    def check_random() -> bool:
        return bool(np.array_equal(handle.read_many(sels[-3:]), data[sels[-1]]))

    return _Entry(tool, result, lambda: timed(lambda: handle.read_many(sels))), check_random


_WriteOps = tuple[Callable[[], float], Callable[[], bool], Callable[[], None]]


def _memory_write(tool: Tool, wl: Workload, data: np.ndarray[Any, Any]) -> _WriteOps:
    """Each run writes into a fresh in-memory store holding only the metadata."""
    ds = wl.ds
    meta = target_files(ds.path, ds, metadata_only=True)
    state: dict[str, Handle] = {}

    def cleanup() -> None:
        if "h" in state:
            state.pop("h").close()

    def run() -> float:
        cleanup()
        handle = state["h"] = tool.open(Target("memory", ds, files=meta), write=True)
        return timed(lambda: handle.write_full(data))

    def check() -> bool:
        return bool(np.array_equal(state["h"].read_full(), data))

    return run, check, cleanup


def _local_write(tool: Tool, wl: Workload, data: np.ndarray[Any, Any]) -> _WriteOps:
    """Each run writes into a new directory holding only the metadata (:class:`WriteDirs`)."""
    ds = wl.ds
    dirs = WriteDirs(WRITE_DIR / wl.name / tool.key, ds)

    def run() -> float:
        handle = tool.open(Target("local", ds, path=dirs.next()), write=True)
        try:
            return timed(lambda: handle.write_full(data))
        finally:
            handle.close()

    def check() -> bool:
        import zarr  # the reference implementation reads every tool's output

        assert dirs.last is not None
        config = {"async.concurrency": 64, "array.rectilinear_chunks": ds.rectilinear}
        with zarr.config.set(config):
            return bool(np.array_equal(zarr.open_array(str(dirs.last), mode="r")[...], data))

    return run, check, lambda: None


class Runner:
    """Runs workloads for a list of tools and collects :class:`Result` s."""

    def __init__(
        self,
        tools: list[Tool],
        *,
        reps: int,
        budget_s: float,
        log: Callable[[str], None] = print,
    ) -> None:
        self.tools = tools
        self.reps = reps
        self.budget_s = budget_s
        self.log = log
        self.results: list[Result] = []

    # -- targets ---------------------------------------------------------------------------
    def read_target(self, wl: Workload, s3: Any = None) -> Target:
        ds = wl.ds
        if wl.store == "memory":
            return Target("memory", ds, files=target_files(ds.path, ds))
        if wl.store == "s3":
            return Target("s3", ds, s3=s3)
        return Target("local", ds, path=ds.path, dask=wl.dask)

    # -- the operations --------------------------------------------------------------------
    def run_workload(self, wl: Workload, data: np.ndarray[Any, Any], s3: Any = None) -> None:
        """Every operation of ``wl`` for every applicable tool."""
        for op in wl.ops:
            self.log(f"  {wl.name}: {op}")
            if op == "write":
                self._run_op(wl, op, self._write_entries(wl, data))
            else:
                target = self.read_target(wl, s3)
                with self._read_handles(wl, op, target, data) as entries:
                    self._run_op(wl, op, entries)

    def _applicable(self, wl: Workload, op: str, target: Target) -> Iterator[tuple[Tool, Result]]:
        unit = "ms/chunk" if op == "random" else "MB/s"
        for tool in self.tools:
            if op not in tool.ops:
                continue
            reason = tool.unsupported(target)
            if reason is not None:
                if not tool.is_limit:
                    self.log(f"    {tool.label}: not run ({reason})")
                continue
            yield tool, Result(wl.name, op, tool.key, tool.label, unit, limit=tool.is_limit)

    @contextlib.contextmanager
    def _read_handles(
        self, wl: Workload, op: str, target: Target, data: np.ndarray[Any, Any]
    ) -> Iterator[list[_Entry]]:
        entries: list[_Entry] = []
        handles: list[Handle] = []
        sels = random_chunks(wl.ds, N_RANDOM)
        try:
            for tool, result in self._applicable(wl, op, target):
                try:
                    handle = tool.open(target, write=False)
                except Exception as exc:
                    self._fail(result, "open", exc)
                    continue
                handles.append(handle)
                result.note = handle.note
                entry, check = _read_entry(tool, result, handle, op, data, sels)
                if self._warm_up(entry, check):
                    entries.append(entry)
            yield entries
        finally:
            for h in handles:
                with contextlib.suppress(Exception):
                    h.close()

    def _write_entries(self, wl: Workload, data: np.ndarray[Any, Any]) -> list[_Entry]:
        entries: list[_Entry] = []
        for tool, result in self._applicable(wl, "write", Target(wl.store, wl.ds)):
            ops = (
                _memory_write(tool, wl, data)
                if wl.store == "memory"
                else _local_write(tool, wl, data)
            )
            run, check, cleanup = ops
            entry = _Entry(tool, result, run, cleanup=cleanup)
            if self._warm_up(entry, check if tool.checkable else _nothing_to_check):
                entries.append(entry)
        return entries

    # -- timing ------------------------------------------------------------------------------
    def _fail(self, result: Result, stage: str, exc: BaseException) -> None:
        result.error = f"{stage}: {type(exc).__name__}: {exc}"[:300]
        self.log(f"    {result.label}: FAILED at {stage}: {type(exc).__name__}: {exc}")
        self.log("      " + traceback.format_exc().strip().splitlines()[-1])
        self.results.append(result)

    def _warm_up(self, entry: _Entry, check: Callable[[], bool]) -> bool:
        """One untimed run plus the equality check; sets the repetition count."""
        try:
            if entry.result.op == "write":
                first = entry.run()
                ok = check()
            else:  # the checked read doubles as the warm-up
                t0 = time.perf_counter()
                ok = check()
                first = time.perf_counter() - t0
        except Exception as exc:
            self._fail(entry.result, "warm-up", exc)
            entry.cleanup()
            return False
        if not ok:
            entry.result.error = "read back different data than was written/generated"
            self.log(f"    {entry.result.label}: WRONG DATA - excluded")
            self.results.append(entry.result)
            entry.cleanup()
            return False
        fit = int(self.budget_s / max(first, 1e-6))
        entry.reps = max(min(3, self.reps), min(self.reps, fit))
        return True

    def _value(self, entry: _Entry, wl: Workload, seconds: float) -> float:
        if entry.result.unit == "ms/chunk":
            return seconds / N_RANDOM * 1e3
        return wl.ds.nbytes / seconds / 1e6

    def _run_op(self, wl: Workload, op: str, entries: list[_Entry]) -> None:
        for rnd in range(self.reps):
            k = rnd % max(1, len(entries))
            for entry in entries[k:] + entries[:k]:
                if rnd >= entry.reps or entry.result.error:
                    continue
                try:
                    seconds = entry.run()
                except Exception as exc:
                    self._fail(entry.result, f"repetition {rnd + 1}", exc)
                    continue
                entry.result.values.append(self._value(entry, wl, seconds))
        for entry in entries:
            entry.cleanup()
            if not entry.result.error:
                self.results.append(entry.result)
            if entry.reps < self.reps:
                extra = f"{entry.reps} reps (time budget)"
                entry.result.note = "; ".join(filter(None, [entry.result.note, extra]))
            r = entry.result
            if r.values:
                self.log(f"    {r.label:<48} {r.median:9.2f} {r.unit}  [{r.lo:.2f}–{r.hi:.2f}]")
