"""Codec worker processes die with the process that started them (their owner).

Most tests fork an owner that starts a one-worker process pool, then kill that owner with
SIGKILL and check that what it started is gone within 2 s: under ``spawn`` (the lifeline
alone) with a child the owner forked still alive (it must not keep the owner's lifeline
open), and under ``forkserver`` with the worker stuck in a job that never lets go of the
GIL (only the kernel's parent-death signal, once the fork server has ended with the
owner, can end it there).
"""

from __future__ import annotations

import asyncio
import os
import signal
import threading
import time
import warnings
from collections.abc import Callable
from pathlib import Path

import psutil
import pytest

from asyncarr import _lifecycle
from asyncarr.config import ExecutorConfig
from asyncarr.runtime import CodecExecutor
from asyncarr.stores import LocalStore

GRACE_SECONDS = 2.0

# --------------------------------------------------------------------------- job functions
# Module-level so that worker processes can unpickle them by reference.


def worker_and_its_parent() -> tuple[int, int]:
    return os.getpid(), os.getppid()


def hold_the_gil(marker: str) -> int:
    """Never return, never release the GIL (a C loop that checks for nothing)."""
    Path(marker).touch()
    return sum(range(10**15))


# --------------------------------------------------------------------------- helpers


def start_owner(mp_context: str, marker: Path | None) -> tuple[int, list[psutil.Process]]:
    """Fork an owner that starts a one-worker pool, forks a child that sleeps, reports
    the worker, the worker's parent and that child, then runs ``hold_the_gil`` (with a
    ``marker``) or sleeps. Returns its pid and those processes."""
    read_fd, write_fd = os.pipe()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # fork() with threads running
        pid = os.fork()
    if pid == 0:
        try:
            os.close(read_fd)
            config = ExecutorConfig(mode="processes", max_workers=1)
            executor = CodecExecutor(config, mp_context=mp_context)
            worker, server = asyncio.run(executor.run(worker_and_its_parent))
            child = os.fork()
            if child == 0:
                time.sleep(60)
                os._exit(0)
            os.write(write_fd, f"{worker} {server} {child}\n".encode())
            if marker is not None:
                asyncio.run(executor.run(hold_the_gil, str(marker)))
            time.sleep(60)
        finally:
            os._exit(1)
    os.close(write_fd)
    with os.fdopen(read_fd) as answers:
        line = answers.readline()
    assert line, "the owner failed to start its worker"
    return pid, [psutil.Process(int(p)) for p in line.split()]


def alive(procs: list[psutil.Process]) -> list[psutil.Process]:
    """Those of ``procs`` still running (zombies count as gone: they can do nothing)."""
    found = []
    for proc in procs:
        try:
            if proc.is_running() and proc.status() != psutil.STATUS_ZOMBIE:
                found.append(proc)
        except psutil.Error:
            continue
    return found


def kill_and_watch(owner: int, started: list[psutil.Process]) -> list[psutil.Process]:
    """SIGKILL ``owner``; what of ``started`` is still alive after the grace time."""
    os.kill(owner, signal.SIGKILL)
    os.waitpid(owner, 0)
    deadline = time.monotonic() + GRACE_SECONDS
    while (survivors := alive(started)) and time.monotonic() < deadline:
        time.sleep(0.02)
    return survivors


def clean_up(procs: list[psutil.Process]) -> None:
    for proc in alive(procs):
        proc.kill()


# --------------------------------------------------------------------------- tests


def test_outside_a_worker_the_check_does_nothing() -> None:
    assert not _lifecycle.owner_is_gone()
    _lifecycle.ensure_owner_alive()  # returns: this process is nobody's worker


def test_a_worker_whose_owner_died_makes_no_store_change(
    fork_child: Callable[..., int], tmp_path: Path
) -> None:
    """The check itself, without the thread that would usually end the worker first."""
    store = LocalStore(tmp_path)

    def body() -> bool:
        read_fd, write_fd = os.pipe()
        _lifecycle._owner_fd = read_fd  # a worker's lifeline, no watcher thread
        store.write_local_many([("a/0", b"stored while the owner lives")])
        os.close(write_fd)  # the owner dies
        store.write_local_many([("a/1", b"never stored")])
        return True

    assert fork_child(body) == -signal.SIGKILL
    assert sorted(p.name for p in (tmp_path / "a").iterdir()) == ["0"]


def test_spawned_workers_outlive_the_thread_that_started_them() -> None:
    """No parent-death signal under ``spawn``: the worker's parent is whichever of the
    owner's threads started it, and the signal would come when that thread ends."""
    config = ExecutorConfig(mode="processes", max_workers=1)
    with CodecExecutor(config, mp_context="spawn") as executor:
        first: list[int] = []
        starter = threading.Thread(
            target=lambda: first.append(asyncio.run(executor.run(worker_and_its_parent))[0])
        )
        starter.start()
        starter.join()
        time.sleep(0.2)  # a signal on the thread's end would have struck by now
        assert asyncio.run(executor.run(worker_and_its_parent))[0] == first[0]


def test_spawned_workers_die_with_their_owner_while_its_forked_child_lives() -> None:
    owner, (worker, server, child) = start_owner("spawn", None)
    assert server.pid == owner
    try:
        survivors = kill_and_watch(owner, [worker])
        assert alive([child]), "the owner's forked child should still run"
        assert not survivors, f"{GRACE_SECONDS} s after its owner's death: {survivors}"
    finally:
        clean_up([worker, child])


@pytest.mark.skipif(not os.path.exists("/proc/self"), reason="parent-death signal: Linux only")
def test_forkserver_workers_holding_the_gil_die_with_their_owner(tmp_path: Path) -> None:
    marker = tmp_path / "job-started"
    owner, (worker, server, child) = start_owner("forkserver", marker)
    try:
        deadline = time.monotonic() + 60
        while not marker.exists():
            assert time.monotonic() < deadline, "the GIL-holding job did not start"
            time.sleep(0.01)
        survivors = kill_and_watch(owner, [worker, server])
        assert not survivors, f"{GRACE_SECONDS} s after their owner's death: {survivors}"
    finally:
        clean_up([worker, server, child])
