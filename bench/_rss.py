"""Peak memory of one full read, measured in a fresh subprocess per tool.

The child imports the tool, opens the array, records its resident set size
(RSS), then reads the whole array while a sampler thread polls the RSS of the
process and its children (codec worker processes) every 2 ms; the kernel's
high-water mark (``ru_maxrss``) is used as well when it rose during the
read. The figure reported is the peak *increase* over the RSS just before
the read, so the interpreter and libraries are not counted; the result
array itself is (a full read has to hold it).

Run as ``python -m bench._rss TOOL DATASET``; prints one JSON line.
"""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

__all__ = ["RSS_TOOLS", "measure_rss"]

RSS_TOOLS = ("asyncarr", "zarr", "tensorstore")


def _tree_rss(proc: Any) -> int:
    total = 0
    for p in [proc, *proc.children(recursive=True)]:
        try:
            total += p.memory_info().rss
        except Exception:
            continue
    return int(total)


def _read(tool: str, path: str) -> Any:
    if tool == "asyncarr":
        import asyncio

        import asyncarr

        async def go() -> Any:
            arr = await asyncarr.open_array(path)
            start = _sample_start()
            out = await arr.read()
            await arr.aclose()
            return start, out

        return asyncio.run(go())
    if tool == "zarr":
        import zarr

        arr = zarr.open_array(path, mode="r")
        start = _sample_start()
        return start, arr[...]
    if tool == "tensorstore":
        import tensorstore as ts

        driver = "zarr" if (Path(path) / ".zarray").exists() else "zarr3"
        store = ts.open(
            {"driver": driver, "kvstore": {"driver": "file", "path": path + "/"}}
        ).result()
        start = _sample_start()
        return start, store.read().result()
    raise SystemExit(f"unknown tool {tool!r}")


class _Sampler:
    def __init__(self) -> None:
        import psutil

        self.proc = psutil.Process()
        self.peak = 0
        self.stop = threading.Event()
        self.before = _tree_rss(self.proc)
        self.maxrss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
        self.thread = threading.Thread(target=self._loop, daemon=True)
        self.thread.start()

    def _loop(self) -> None:
        while not self.stop.is_set():
            self.peak = max(self.peak, _tree_rss(self.proc))
            time.sleep(0.002)

    def finish(self) -> dict[str, int]:
        self.peak = max(self.peak, _tree_rss(self.proc))
        self.stop.set()
        self.thread.join()
        maxrss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
        peak = max(self.peak, maxrss if maxrss > self.maxrss_before else 0)
        return {"before": self.before, "peak": peak, "delta": peak - self.before}


_SAMPLER: list[_Sampler] = []


def _sample_start() -> _Sampler:
    import gc

    gc.collect()
    s = _Sampler()
    _SAMPLER.append(s)
    return s


def _child(tool: str, path: str) -> None:
    sampler, out = _read(tool, path)
    doc = sampler.finish()
    doc["nbytes"] = int(out.nbytes)
    print(json.dumps(doc), flush=True)


def measure_rss(tool: str, path: Path, timeout: float = 300) -> dict[str, Any]:
    """Peak RSS increase of a full read of ``path`` by ``tool`` (in a subprocess)."""
    root = str(Path(__file__).resolve().parent.parent)
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(filter(None, [root, os.environ.get("PYTHONPATH")])),
    }
    proc = subprocess.run(
        [sys.executable, "-m", "bench._rss", tool, str(path)],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env,
        check=False,
    )
    if proc.returncode != 0:
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-3:]
        raise RuntimeError(f"rss child for {tool} failed: {' | '.join(tail)}")
    doc: dict[str, Any] = json.loads(proc.stdout.strip().splitlines()[-1])
    doc["ratio"] = doc["delta"] / doc["nbytes"]
    return doc


if __name__ == "__main__":
    _child(sys.argv[1], sys.argv[2])
