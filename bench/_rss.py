"""Peak memory of one full read, measured in a fresh subprocess per tool.

The child imports the tool, opens the array, records the memory of its process
tree (itself and any codec worker processes), then reads the whole array while
a sampler thread polls that memory every 5 ms. The figure reported is the peak
*increase* over the memory just before the read, so the interpreter and
libraries are not counted; the result array itself is (a full read has to hold
it).

Memory is the tree's proportional set size (PSS, Linux): each page counts once
in all, split among the processes that map it. A plain sum of the processes'
RSS counts a shared page once per process: worker processes fork from a
forkserver and share its interpreter, libraries and preloaded modules, so a sum
of RSS overstates a pool's memory (for asyncarr's 2 workers by about twice).
That sum is reported too (``rss_sum_delta``, with the kernel's high-water mark
``ru_maxrss`` of the main process where it rose during the read); where PSS is
not available (not Linux) it is the figure.

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


def _tree_memory(proc: Any) -> tuple[int, int | None]:
    """(sum of RSS, sum of PSS or ``None`` where unavailable) over ``proc`` and its
    descendants."""
    rss = 0
    pss: int | None = 0
    for p in [proc, *proc.children(recursive=True)]:
        try:
            info = p.memory_full_info()
        except Exception:
            continue
        rss += info.rss
        value = getattr(info, "pss", None)
        pss = None if pss is None or value is None else pss + value
    return int(rss), pss


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
        self.stop = threading.Event()
        self.before_rss, self.before_pss = _tree_memory(self.proc)
        self.peak_rss, self.peak_pss = self.before_rss, self.before_pss
        self.maxrss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
        self.thread = threading.Thread(target=self._loop, daemon=True)
        self.thread.start()

    def _sample(self) -> None:
        rss, pss = _tree_memory(self.proc)
        self.peak_rss = max(self.peak_rss, rss)
        if pss is not None and self.peak_pss is not None:
            self.peak_pss = max(self.peak_pss, pss)

    def _loop(self) -> None:
        while not self.stop.is_set():
            self._sample()
            time.sleep(0.005)

    def finish(self) -> dict[str, Any]:
        self._sample()
        self.stop.set()
        self.thread.join()
        maxrss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
        peak_rss = max(self.peak_rss, maxrss if maxrss > self.maxrss_before else 0)
        doc: dict[str, Any] = {
            "rss_sum_before": self.before_rss,
            "rss_sum_peak": peak_rss,
            "rss_sum_delta": peak_rss - self.before_rss,
        }
        if self.peak_pss is not None and self.before_pss is not None:
            doc.update(
                measure="pss",
                before=self.before_pss,
                peak=self.peak_pss,
                delta=self.peak_pss - self.before_pss,
            )
        else:
            doc.update(measure="rss-sum", before=self.before_rss, peak=peak_rss)
            doc["delta"] = peak_rss - self.before_rss
        return doc


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
    """Peak memory increase of a full read of ``path`` by ``tool`` (in a subprocess)."""
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
    doc["rss_sum_ratio"] = doc["rss_sum_delta"] / doc["nbytes"]
    return doc


if __name__ == "__main__":
    _child(sys.argv[1], sys.argv[2])
