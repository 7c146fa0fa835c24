"""``populate_shared``: a worker process faults in the shared-memory pages of its batch's
output with one call; it changes no data, and does nothing outside a worker's job or for
memory that is not shared."""

from __future__ import annotations

import sys

import numpy as np
import pytest

from asyncarr.runtime import _shm, populate_shared


def _rss_shmem_kib() -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("RssShmem:"):
                return int(line.split()[1])
    raise AssertionError("no RssShmem line")


@pytest.mark.skipif(sys.platform != "linux", reason="MADV_POPULATE_WRITE is Linux's")
def test_the_span_between_two_views_becomes_resident_and_keeps_its_data() -> None:
    out = _shm.create_array((2048, 1024), np.dtype("f4"), "C")  # 8 MiB, nothing touched
    try:
        out[:4] = 7.0
        before = _rss_shmem_kib()
        # the first and last chunk of a batch covering rows 512..1535, outside a job:
        # nothing (the main process and threads never populate)
        first, last = out[512:640, 0:128], out[1408:1536, 896:1024]
        populate_shared(first, last)
        assert _rss_shmem_kib() - before < 64
        # as a worker process's job (run here, the way a worker runs it)
        ok, _body, _cpu = _shm.worker_call(_shm.dumps((populate_shared, (first, last))))
        assert ok
        grown = _rss_shmem_kib() - before
        assert 4096 - 8 <= grown <= 4096 + 8  # 4 MiB: those rows, no more
        assert (out[:4] == 7.0).all()
        assert (out[512:1536] == 0).all()  # fresh pages read as zeros, as before
    finally:
        del out


def test_private_memory_and_empty_spans_are_left_alone() -> None:
    private = np.zeros((64, 64), "f8")
    out = _shm.create_array((16,), np.dtype("u1"), "C")
    try:
        for first, last in [
            (private[:8], private[-8:]),
            (out[8:8], out[8:8]),
            (out[12:], out[:4]),  # reversed: nothing to do
        ]:
            assert _shm.worker_call(_shm.dumps((populate_shared, (first, last))))[0]
        assert (private == 0).all()
    finally:
        del out
