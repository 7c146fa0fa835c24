"""Executor scaling: asyncarr's codec executor beside tensorstore, by worker count W.

``python -m bench.scaling`` (``make bench-scaling``), for W in 1, 2, 4, 8, 16
(up to ``os.cpu_count()``): whole-array reads and writes of ``bench/_data.py``
datasets by asyncarr with ``ExecutorConfig(mode="threads", max_workers=W)``
(and ``"processes"``; the local store's 64-request
limit and 32-thread file-I/O pool are above W), by tensorstore with
``data_copy_concurrency`` = ``file_io_concurrency`` = W (``file_io_sync`` off,
as asyncarr does not fsync), and the limit: numcodecs decode of the stored
chunks, already in memory, on W threads. Each (row, W): a checked warm-up, then
3 timed runs; median MB/s of uncompressed bytes. Writes go to a new scratch array
each run, after ``os.sync()``, deleted when the whole run ends
(``bench._runner.WriteDirs`` says why). Combinations that would overrun ``--budget``
(the whole run, dataset generation included) are skipped and listed. Without
zarr-python missing datasets are written with tensorstore (the stamp says so).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import functools
import importlib.metadata
import json
import os
import shutil
import statistics
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager as ContextManager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, cast

import numpy as np

import bench._data as _data
from asyncarr.config import ExecutorConfig, ExecutorMode
from asyncarr.runtime import CodecExecutor, set_executor
from bench._data import DATASETS, RESULTS_DIR, Dataset, ensure_dataset, make_data
from bench._limits import DecodeLimit
from bench._runner import WriteDirs, timed
from bench._tools import AsyncarrTool, Handle, Target

Array = np.ndarray[Any, Any]
Step = tuple[Callable[[], float], Callable[[], bool | None]]
"""Run once (returns the timed seconds); check the first run (None: nothing to check)."""

REPS = 3
SMALL = "zstd-8192-c64"
DEFAULT_DATASETS = f"zstd-4096-c256,blosc-4096-c256,{SMALL}"
LIMIT, TS = "limit (numcodecs decode)", "tensorstore"
FIRST_GUESS_MBPS = 100.0
"""Throughput assumed for a row's first W when checking that it fits the budget."""


log = functools.partial(print, file=sys.stderr, flush=True)
out = functools.partial(print, flush=True)


@dataclass
class Row:
    dataset: str
    op: str
    tool: str
    cells: dict[int, list[float] | str] = field(default_factory=dict)
    """W -> MB/s of each timed run, or why there are none."""

    def median(self, w: int) -> float | None:
        v = self.cells.get(w)
        return statistics.median(v) if isinstance(v, list) and v else None


def generate(ds: Dataset, data: Array) -> str:
    """Make sure ``ds`` is on disk: kept, written by ``ensure_dataset`` or by tensorstore."""
    stamp, want = ds.path / ".bench-stamp", ds.spec_hash()
    if stamp.is_file() and stamp.read_text().split()[:1] == [want]:
        return "cached"
    try:
        import zarr  # noqa: F401
    except ImportError:
        pass
    else:
        ensure_dataset(ds, data, log=log)
        return "zarr-python"
    import tensorstore as ts

    assert ds.zarr_format == 3 and ds.shards is None, "tensorstore fallback: plain v3 only"
    log(f"  writing dataset {ds.name} with tensorstore (no zarr-python) ...")
    blosc = {"cname": "lz4", "clevel": 5, "shuffle": "shuffle", "typesize": 4, "blocksize": 0}
    comp = {"name": "blosc", "configuration": blosc} if ds.codec == "blosc" else None
    meta = {
        "shape": list(ds.shape),
        "chunk_grid": {"name": "regular", "configuration": {"chunk_shape": list(ds.chunks)}},
        "chunk_key_encoding": {"name": "default"},
        "data_type": "float32",
        "fill_value": 0.0,
        "codecs": [
            {"name": "bytes", "configuration": {"endian": "little"}},
            comp or {"name": "zstd", "configuration": {"level": 3, "checksum": False}},
        ],
    }
    kv = {"driver": "file", "path": f"{ds.path}/"}
    spec = {"driver": "zarr3", "kvstore": kv, "metadata": meta}
    ctx = ts.Context({"file_io_sync": False})
    ts.open(spec, create=True, delete_existing=True, context=ctx).result().write(data).result()
    stamp.write_text(f"{want} tensorstore\n")  # python -m bench rewrites it with zarr-python
    return "tensorstore"


class _TsHandle(Handle):
    def __init__(self, path: Path, workers: int | None, *, write: bool = False) -> None:
        import tensorstore as ts

        res: dict[str, Any] = {}
        if workers is not None:  # else tensorstore's defaults
            res = {"data_copy_concurrency": {"limit": workers}, "file_io_sync": False}
            res["file_io_concurrency"] = {"limit": workers}
        spec = {"driver": "zarr3", "kvstore": {"driver": "file", "path": f"{path}/"}}
        self.arr = ts.open(spec, context=ts.Context(res), read=True, write=write).result()

    def read_full(self) -> Array:
        return np.asarray(self.arr.read().result())

    def write_full(self, data: Array) -> None:
        self.arr.write(data).result()


@contextlib.contextmanager
def _executor(mode: ExecutorMode, workers: int) -> Iterator[None]:
    ex = CodecExecutor(ExecutorConfig(mode=mode, max_workers=workers))
    set_executor(ex)
    try:
        yield
    finally:
        set_executor(None)
        ex.shutdown()


def _read_step(h: Handle, data: Array | None) -> Step:
    first: list[Array] = []  # the first run's result, until checked
    checked = data is None

    def run() -> float:
        nonlocal checked
        if checked:
            return timed(h.read_full)
        checked = True
        return timed(lambda: first.append(h.read_full()))

    def check() -> bool | None:
        return None if data is None else bool(np.array_equal(first.pop(), data))

    return run, check


def _write_step(open_: Callable[[Path], Handle], dirs: WriteDirs, data: Array) -> Step:
    def run() -> float:
        h = open_(dirs.next())
        try:
            return timed(lambda: h.write_full(data))
        finally:
            h.close()

    def check() -> bool:
        assert dirs.last is not None
        return bool(np.array_equal(_TsHandle(dirs.last, None).read_full(), data))

    return run, check


class Bench:
    def __init__(self, budget: float, reps: int, workers: list[int], scratch: Path) -> None:
        self.t0 = time.monotonic()
        self.reps = reps
        self.budget = budget
        self.workers = workers
        self.scratch = scratch
        self.rows: list[Row] = []
        self.skipped: list[str] = []
        self.runner = asyncio.Runner()
        self.on_row: Callable[[], None] = lambda: None

    def left(self) -> float:
        return self.budget - (time.monotonic() - self.t0)

    def _skip(self, row: Row, w: int, why: str) -> None:
        row.cells[w] = "skip"
        self.skipped.append(f"{row.dataset} {row.op} {row.tool} W={w}: {why}")
        log(f"    W={w}: SKIPPED ({why})")

    def run_row(self, row: Row, nbytes: int, make: Callable[[int], ContextManager[Step]]) -> None:
        """``make(W)``: a context manager giving the :data:`Step` of one combination."""
        log(f"  {row.dataset} {row.op} {row.tool}")
        rep = nbytes / FIRST_GUESS_MBPS / 1e6 + 0.25  # wall seconds of one run, a guess
        for w in self.workers:
            if (self.reps + 1) * rep > self.left():  # rep: the slowest run at the previous W
                need, left = (self.reps + 1) * rep, max(0.0, self.left())
                self._skip(row, w, f"needs ~{need:.0f} s, {left:.0f} s left")
                continue
            try:
                with make(w) as (run, check):
                    t = time.monotonic()
                    warm = run()
                    walls = [time.monotonic() - t]  # with a write's reset, sync, open, close
                    if check() is False:
                        row.cells[w] = "WRONG DATA"
                        log(f"    W={w}: WRONG DATA - excluded")
                        continue
                    secs: list[float] = []
                    while (
                        len(secs) < self.reps
                        and (self.reps - len(secs)) * max(walls) <= self.left()
                    ):
                        t = time.monotonic()
                        secs.append(run())
                        walls.append(time.monotonic() - t)
                    rep = max(walls)
                    if len(secs) < self.reps:
                        why = f"{len(secs)} of {self.reps} timed runs fit, up to {rep:.1f} s each"
                        self._skip(row, w, why)
                    else:
                        row.cells[w] = [nbytes / s / 1e6 for s in secs]
                        log(f"    W={w}: {row.median(w):8.0f} MB/s (warm-up {warm:.2f} s)")
            except Exception as exc:
                row.cells[w] = f"error: {type(exc).__name__}"
                log(f"    W={w}: FAILED: {type(exc).__name__}: {exc}"[:300])
        self.rows.append(row)
        self.on_row()
        cells = [f"{m:.0f}" if (m := row.median(w)) else str(row.cells[w]) for w in self.workers]
        got = [w for w in self.workers if row.median(w)]
        speedup = ""
        if len(got) > 1:
            speedup = f"{cast(float, row.median(got[-1])) / cast(float, row.median(got[0])):.2f}×"
            speedup += "" if got[-1] == self.workers[-1] else f" (W={got[-1]})"
        out(f"| {row.dataset} | {row.op} | {row.tool} | {' | '.join(cells)} | {speedup} |")

    def ratio_row(self, dataset: str, op: str) -> None:
        mine = [r for r in self.rows if (r.dataset, r.op) == (dataset, op)]
        a = next(r for r in mine if r.tool == "asyncarr threads")
        t = next(r for r in mine if r.tool == TS)
        cells = [
            f"{ma / mt:.2f}×" if (ma := a.median(w)) and (mt := t.median(w)) else "—"
            for w in self.workers
        ]
        out(f"| {dataset} | {op} | asyncarr threads ÷ tensorstore | {' | '.join(cells)} | |")

    def dataset(self, ds: Dataset, data: Array, *, writes: bool) -> None:
        aa = AsyncarrTool(self.runner)

        def opener(tool: str, w: int) -> Callable[[Path, bool], Handle]:
            if tool == TS:
                return lambda p, write: _TsHandle(p, w, write=write)
            if tool == LIMIT:
                lim = DecodeLimit()
                lim.threads = w
                return lambda p, write: lim.open(Target("local", ds, path=p), write=write)
            return lambda p, write: aa.open(Target("local", ds, path=p), write=write)

        @contextlib.contextmanager
        def step(tool: str, op: str, w: int) -> Iterator[Step]:
            with contextlib.ExitStack() as stack:
                if tool.startswith("asyncarr"):  # "asyncarr threads", "asyncarr processes"
                    stack.enter_context(_executor(cast(ExecutorMode, tool.split()[1]), w))
                open_ = opener(tool, w)
                if op == "write":
                    dirs = WriteDirs(self.scratch / ds.name / tool.split()[0], ds)
                    yield _write_step(lambda p: open_(p, True), dirs, data)
                    return
                h = open_(ds.path, False)
                stack.callback(h.close)
                yield _read_step(h, None if tool == LIMIT else data)

        plan = [("read", LIMIT), ("read", "asyncarr threads"), ("read", "asyncarr processes")]
        plan += [("read", TS)]
        if writes:
            plan += [("write", "asyncarr threads"), ("write", "asyncarr processes"), ("write", TS)]
        for op, tool in plan:
            self.run_row(Row(ds.name, op, tool), ds.nbytes, functools.partial(step, tool, op))
            if tool == TS:
                self.ratio_row(ds.name, op)


def _version(name: str) -> str:
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        with contextlib.suppress(ImportError):
            return str(getattr(__import__(name), "__version__", "?"))
    return "missing"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.scaling", description=__doc__)
    p.add_argument("--workers", default="1,2,4,8,16", help="worker counts, e.g. 1,2,4")
    p.add_argument("--datasets", default=DEFAULT_DATASETS, help="comma-separated")
    p.add_argument("--small-writes", action="store_true", help=f"also write {SMALL} (slow)")
    p.add_argument("--reps", type=int, default=REPS, help="timed runs per cell (default 3)")
    p.add_argument("--budget", type=float, default=200.0, help="seconds for the whole run")
    p.add_argument("--data", type=Path, default=_data.DATA_DIR, help="dataset directory")
    p.add_argument("--json", type=Path, default=RESULTS_DIR / "scaling.json", help="output")
    args = p.parse_args(argv)
    names = [n.strip() for n in args.datasets.split(",") if n.strip()]
    if unknown := [n for n in names if n not in DATASETS]:
        p.error(f"unknown datasets {unknown}; known: {', '.join(DATASETS)}")
    _data.DATA_DIR = args.data  # Dataset.path reads this module global
    cpus = os.cpu_count() or 1
    asked = sorted({int(w) for w in args.workers.split(",") if w.strip()})
    workers = [w for w in asked if w <= cpus]
    if not workers:
        p.error(f"no worker count <= os.cpu_count() = {cpus}")
    if dropped := sorted(set(asked) - set(workers)):
        log(f"worker counts above os.cpu_count() = {cpus} dropped: {dropped}")
    bench = Bench(args.budget, args.reps, workers, args.data / "write" / "scaling")
    shm = os.statvfs("/dev/shm") if os.path.isdir("/dev/shm") else None
    meta: dict[str, Any] = {
        "cpu_count": cpus,
        "affinity": len(os.sched_getaffinity(0)),
        "python": sys.version.split()[0],
        **{k: _version(k) for k in ("numpy", "numcodecs", "tensorstore", "asyncarr")},
        "shm_free_gib": round(shm.f_bavail * shm.f_frsize / 2**30, 1) if shm else None,
    }
    out("# " + ", ".join(f"{k}={v}" for k, v in meta.items()))
    meta.update(workers=workers, reps=args.reps, budget_s=args.budget, datasets={})
    out(f"\nMB/s of uncompressed data, median of {args.reps} timed runs after a checked warm-up.\n")
    head = " | ".join(f"W={w}" for w in workers)
    out(f"| dataset | op | tool | {head} | speedup W{workers[-1]}/W{workers[0]} |")
    out("|---|---|---|" + "---:|" * (len(workers) + 1))

    def save() -> None:
        meta["wall_s"] = round(time.monotonic() - bench.t0, 1)
        rows = [{**asdict(r), "median": {w: r.median(w) for w in r.cells}} for r in bench.rows]
        args.json.parent.mkdir(parents=True, exist_ok=True)
        doc = {"meta": meta, "rows": rows, "skipped": bench.skipped}
        args.json.write_text(json.dumps(doc, indent=1) + "\n")

    bench.on_row = save

    try:
        for name in names:
            ds, t0 = DATASETS[name], time.monotonic()
            if bench.left() < (args.reps + 1) * ds.nbytes / FIRST_GUESS_MBPS / 1e6:
                bench.skipped.append(f"{name}: everything (budget)")
                continue
            data = make_data(ds.shape)
            how = generate(ds, data)
            gen_s = round(time.monotonic() - t0, 1)
            meta["datasets"][name] = {"chunks": ds.nchunks, "generated": how, "seconds": gen_s}
            log(f"{name}: {how} ({gen_s} s with make_data), {bench.left():.0f} s of budget left")
            bench.dataset(ds, data, writes=name != SMALL or args.small_writes)
    finally:
        bench.runner.close()
        shutil.rmtree(bench.scratch, ignore_errors=True)  # only now: see WriteDirs
        save()
    out(f"\nwall time {meta['wall_s']} s (budget {args.budget:.0f} s); datasets {meta['datasets']}")
    out("".join(f"- skipped: {s}\n" for s in bench.skipped) + f"JSON: {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
