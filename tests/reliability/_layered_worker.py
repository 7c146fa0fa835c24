"""Code run in spawned processes by ``test_layered_concurrency.py``."""

from __future__ import annotations

import asyncio
from typing import Any

import numpy as np

import asyncarr
from asyncarr.config import ExecutorConfig
from asyncarr.errors import ConflictError

CHUNK = 8


async def _disjoint(url: str, options: dict[str, Any], worker: int, rounds: int) -> int:
    """Write ``rounds`` chunks of our own, one commit each; how many landed."""
    arr = await asyncarr.open_array(url, mode="r+", storage_options=options)
    for r in range(rounds):
        row = (worker * rounds + r) * CHUNK
        await arr.write(
            np.full((CHUNK, CHUNK), worker * 100 + r + 1, "int32"), slice(row, row + CHUNK)
        )
    await arr.aclose()
    return rounds


async def _contended(url: str, options: dict[str, Any], worker: int, rounds: int) -> dict[str, Any]:
    """Increment a shared counter in a transaction per round (read, then write the same
    chunk), marking our own chunk too; count commits and conflicts."""
    landed = conflicts = 0
    named: set[tuple[str, ...]] = set()
    for r in range(rounds):
        try:
            async with asyncarr.transaction(
                url, message=f"w{worker} r{r}", storage_options=options
            ) as st:
                arr = await asyncarr.open_array(st, mode="r+")
                counter = int((await arr.read(slice(0, 1)))[0, 0])
                await asyncio.sleep(0.002 * (worker + 1))  # widen the race
                await arr.write(counter + 1, (slice(0, CHUNK), slice(0, CHUNK)))
                row = (1 + worker * rounds + r) * CHUNK
                await arr.write(1, (slice(row, row + CHUNK), slice(0, CHUNK)))
            landed += 1
        except ConflictError as exc:
            conflicts += 1
            named.add(exc.keys)
    return {"landed": landed, "conflicts": conflicts, "named": sorted(named)}


def main(
    kind: str, url: str, options: dict[str, Any], worker: int, rounds: int, barrier: Any, out: Any
) -> None:
    asyncarr.set_executor(ExecutorConfig(mode="inline"))
    barrier.wait(timeout=120)
    if kind == "disjoint":
        out.put((worker, asyncio.run(_disjoint(url, options, worker, rounds))))
    else:
        out.put((worker, asyncio.run(_contended(url, options, worker, rounds))))
