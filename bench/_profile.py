"""``--profile WORKLOAD[:OP]``: pyinstrument on asyncarr's read (or write) of a workload.

Two profiles are taken: one with asyncarr's default executor (what the
benchmark measures: it shows the event-loop thread - scheduling, store
calls, assembly - while codec work runs on worker threads, which
pyinstrument does not sample), and one with the ``inline`` executor, where
decode/encode runs on the profiled thread so its share becomes visible.
Each writes ``bench/results/profile-<name>[-inline].html`` and prints a
text summary.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

import numpy as np

from bench._data import RESULTS_DIR, Workload, random_chunks

__all__ = ["profile_workload"]


def _executor(mode: str | None) -> None:
    import asyncarr

    asyncarr.set_executor(asyncarr.ExecutorConfig(mode=mode or "auto"))  # type: ignore[arg-type]


def profile_workload(
    wl: Workload,
    op: str,
    data: np.ndarray[Any, Any],
    open_target: Callable[[asyncio.Runner, bool], Any],
    *,
    runs: int = 5,
    log: Callable[[str], None] = print,
) -> list[str]:
    """Profile ``runs`` repetitions of asyncarr's ``op`` on ``wl``; returns the HTML paths."""
    from pyinstrument import Profiler

    written = []
    sels = random_chunks(wl.ds, 200)
    for mode, suffix in ((None, ""), ("inline", "-inline")):
        _executor(mode)
        runner = asyncio.Runner()
        profiler = Profiler(interval=0.0005, async_mode="enabled")
        elapsed = 0.0
        try:
            # writes go into a fresh copy of the metadata each run, as in the benchmark
            handle = open_target(runner, op == "write")
            for i in range(runs + 1):  # run 0 is the warm-up (executor start, connections)
                if op == "write" and i > 0:
                    handle.close()
                    handle = open_target(runner, True)
                if i > 0:
                    profiler.start()
                t0 = time.perf_counter()
                if op == "read":
                    handle.read_full()
                elif op == "random":
                    handle.read_many(sels)
                else:
                    handle.write_full(data)
                if i > 0:
                    elapsed += time.perf_counter() - t0
                    profiler.stop()
            handle.close()
        finally:
            runner.close()
        elapsed /= runs
        name = f"profile-{wl.name}{'' if op == 'read' else '-' + op}{suffix}"
        path = RESULTS_DIR / f"{name}.html"
        RESULTS_DIR.mkdir(parents=True, exist_ok=True)
        path.write_text(profiler.output_html())
        text = profiler.output_text(unicode=True, color=False, show_all=False)
        (RESULTS_DIR / f"{name}.txt").write_text(text)
        executor = mode or "default (auto)"
        log(
            f"\n=== asyncarr {op} of {wl.name}, executor {executor}: {elapsed * 1e3:.1f} ms/run ==="
        )
        log(text)
        written.append(str(path))
    _executor(None)
    return written
