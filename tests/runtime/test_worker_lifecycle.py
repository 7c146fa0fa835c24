"""A process bound to its owner (``asyncarr._lifecycle``) dies with it."""

from __future__ import annotations

import os
import time
import warnings

import psutil
import pytest

from asyncarr import _lifecycle


def _gone(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


@pytest.mark.parametrize("busy", [False, True])
def test_a_bound_process_dies_when_its_owner_exits(busy: bool) -> None:
    """The owner (a forked child) exits; the process bound to it - its child, idle or
    busy holding the GIL - is gone within a second, without anyone signalling it."""
    report_r, report_w = os.pipe()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # fork() with threads running
        owner = os.fork()
    if owner == 0:  # the owner: start the worker, wait until it is bound, exit
        try:
            bound_r, bound_w = os.pipe()
            worker = os.fork()
            if worker == 0:
                _lifecycle.bind_to_owner(os.getppid())
                os.write(bound_w, b"b")
                deadline = time.monotonic() + 30
                n = 0
                while time.monotonic() < deadline:  # outlives the test unless killed
                    if busy:
                        n += 1
                    else:
                        time.sleep(0.01)
                os._exit(3)
            os.read(bound_r, 1)
            os.write(report_w, str(worker).encode())
        finally:
            os._exit(0)
    os.close(report_w)
    worker_pid = int(os.read(report_r, 32))
    os.close(report_r)
    os.waitpid(owner, 0)
    deadline = time.monotonic() + 1.0
    while not _gone(worker_pid) and time.monotonic() < deadline:
        time.sleep(0.01)
    assert _gone(worker_pid), "the bound process outlived its owner by a second"


def test_outside_a_worker_the_check_does_nothing() -> None:
    assert _lifecycle.owner_pid() is None
    _lifecycle.ensure_owner_alive()  # returns: this process is nobody's worker
    _lifecycle.bind_to_owner(os.getpid())  # binding to itself is refused quietly
    assert _lifecycle.owner_pid() is None
