"""Run by ``test_memory_bounds.py`` in a fresh process: for each case, open an array and
read it while a watcher thread samples the resident set size; prints one JSON line per
case (the error it ended in, the peak RSS growth, the seconds it took). A case whose RSS
grows past the cap kills the process (exit status 3) after saying so: the suite's
resource limit, which also keeps an unbounded read from taking the test run down."""

from __future__ import annotations

import asyncio
import json
import os
import sys
import threading
import time
from typing import Any

import psutil


def main() -> None:
    spec: dict[str, Any] = json.loads(sys.argv[1])
    import asyncarr
    from asyncarr.errors import AsyncarrError

    process = psutil.Process()
    state: dict[str, Any] = {"base": process.memory_info().rss, "peak": 0, "case": None}
    stop = threading.Event()

    def watch() -> None:
        while not stop.is_set():
            rss = process.memory_info().rss
            state["peak"] = max(state["peak"], rss)
            if rss - state["base"] > spec["cap"]:
                report = {"case": state["case"], "error": "RSS cap exceeded"}
                print(json.dumps({**report, "rss_growth": rss - state["base"]}), flush=True)
                os._exit(3)
            time.sleep(0.002)

    async def run() -> None:
        for case in spec["cases"]:
            state["case"] = case
            state["base"] = state["peak"] = process.memory_info().rss
            start = time.monotonic()
            outcome: dict[str, Any] = {"error": None}
            try:
                arr = await asyncarr.open_array(
                    spec["url"], path=case, storage_options=spec["options"]
                )
                async with arr:
                    await arr.read()
            except Exception as exc:
                outcome = {
                    "error": type(exc).__name__,
                    "asyncarr": isinstance(exc, AsyncarrError),
                    "message": str(exc)[:400],
                }
            outcome.update(
                case=case,
                rss_growth=state["peak"] - state["base"],
                seconds=round(time.monotonic() - start, 2),
            )
            print(json.dumps(outcome), flush=True)

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    try:
        asyncio.run(run())
    finally:
        stop.set()


if __name__ == "__main__":
    main()
