"""The codec executor inside a process that multiprocessing started (a worker of dask's
``processes`` scheduler, of a ProcessPoolExecutor): ``auto`` keeps to threads there, and
an explicit ``processes`` pool is shut down when the worker exits, which used to wait for
the pool's own workers forever."""

from __future__ import annotations

import multiprocessing
import threading
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np


def _use_worker_processes(path: str) -> tuple[bool, float]:
    import asyncarr
    import asyncarr.sync as az
    from asyncarr.config import ExecutorConfig
    from asyncarr.runtime import CodecExecutor, get_executor

    auto_can_use_processes = CodecExecutor(ExecutorConfig(mode="auto"))._processes_possible
    asyncarr.set_executor(ExecutorConfig(mode="processes", max_workers=1))
    with az.create_array(path, shape=(64, 64), chunks=(16, 16), dtype="f8") as arr:
        arr[:] = np.ones((64, 64))
        total = float(arr[:].sum())
    assert get_executor()._procs is not None  # the pool ran
    return auto_can_use_processes, total


def test_a_worker_with_codec_processes_exits(tmp_path: Path) -> None:
    pool = ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn"))
    auto, total = pool.submit(_use_worker_processes, str(tmp_path / "a")).result(timeout=120)
    assert not auto
    assert total == 64 * 64
    done = threading.Event()

    def shut_down() -> None:
        pool.shutdown(wait=True)
        done.set()

    threading.Thread(target=shut_down, daemon=True).start()
    exited = done.wait(60)
    if not exited:  # leave nothing behind for the rest of the suite
        for process in list(pool._processes.values()):
            for child in multiprocessing.active_children():
                child.kill()
            process.kill()
    assert exited, "the worker did not exit: its codec worker processes were never shut down"
