"""A writer for ``test_worker_death.py``: rewrites a local array in a loop with codec
worker processes, until it is killed.

``python _worker_death_writer.py ROOT PATH GENERATION START_METHOD``

It starts its worker pool, writes the array once, prints ``ready`` and then keeps
rewriting the whole array (each chunk stored by the worker process that encoded it), so
a SIGKILL at any moment after ``ready`` lands in the middle of a write.
"""

from __future__ import annotations

import asyncio
import sys

from _reliability_helpers import pattern

import asyncarr
from asyncarr.config import ExecutorConfig
from asyncarr.runtime import CodecExecutor


async def _main(root: str, path: str, gen: int, start_method: str) -> None:
    # small batches: many worker jobs queued at once, each storing a few chunks
    config = ExecutorConfig(mode="processes", max_workers=2, batch_bytes=2 << 10)
    asyncarr.set_executor(CodecExecutor(config, mp_context=start_method))
    arr = await asyncarr.open_array(root, path=path, mode="r+")
    data = pattern(arr.shape, seed=gen)
    await arr.write(data)
    print("ready", flush=True)
    while True:
        await arr.write(data)


if __name__ == "__main__":
    asyncio.run(_main(sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]))
