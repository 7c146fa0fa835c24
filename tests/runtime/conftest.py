"""Fixtures of the runtime tests: running a body in a child made by ``os.fork()``."""

from __future__ import annotations

import os
import signal
import time
import warnings
from collections.abc import Callable
from typing import TypeAlias

import pytest


def in_forked_child(body: Callable[[], bool], timeout: float = 60) -> int:
    """Run ``body`` in a child made by ``os.fork()``; its exit code (0: it returned true),
    failing the test if it hangs. The child leaves with ``os._exit``: no exit handlers."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # fork() with threads running
        pid = os.fork()
    if pid == 0:
        code = 1
        try:
            code = 0 if body() else 2
        finally:
            os._exit(code)
    deadline = time.monotonic() + timeout
    while True:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            return os.waitstatus_to_exitcode(status)
        if time.monotonic() > deadline:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
            pytest.fail("the forked child hung")
        time.sleep(0.01)


InForkedChild: TypeAlias = Callable[..., int]


@pytest.fixture
def fork_child() -> InForkedChild:
    """:func:`in_forked_child`, for tests to call."""
    return in_forked_child
