"""Shared-memory bookkeeping survives finalizers that re-enter it."""

from __future__ import annotations

import gc
import threading
from typing import Any

import numpy as np
import pytest

from asyncarr.runtime import _shm
from asyncarr.runtime._shm import _Index, _Region


def test_removal_from_inside_a_critical_section_is_deferred_not_deadlocked() -> None:
    index = _Index()
    old = _Region(0, 100, "old")
    index.add(old)
    fresh = _Region(200, 300, "fresh")

    done = threading.Event()

    def add_while_a_finalizer_fires() -> None:
        with index._section():  # what a GC-triggered weakref.finalize sees mid-add
            assert index.remove(old) is True
        index.add(fresh)
        done.set()

    t = threading.Thread(target=add_while_a_finalizer_fires, daemon=True)
    t.start()
    t.join(timeout=10)
    assert done.is_set(), "re-entrant removal deadlocked"
    assert index.find(0, 10) is None
    assert index.find(210, 220) is fresh
    assert index.names() == ["fresh"]


def test_segment_freed_by_the_collector_mid_bookkeeping_does_not_deadlock(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # The garbage collector may free a shared-memory array (and so run its unlink
    # finalizer) on any allocation, including one made while this thread is updating
    # the segment table. A lock around that table deadlocked the thread against itself.
    class CollectsOnInsert(dict[str, Any]):
        def __setitem__(self, key: str, value: Any) -> None:
            gc.collect()  # what an allocation inside the update may trigger
            super().__setitem__(key, value)

    monkeypatch.setattr(_shm, "_OWNED", CollectsOnInsert())
    done = threading.Event()

    def allocate_with_garbage_pending() -> None:
        garbage: list[Any] = [_shm.create_array((8,), np.dtype("f8"), "C")]
        garbage.append(garbage)  # a reference cycle: only the collector frees it
        del garbage
        fresh = _shm.create_array((8,), np.dtype("f8"), "C")
        fresh[:] = 1
        _shm.release(fresh)
        done.set()

    gc.disable()  # keep the cycle alive until the collection inside the insert
    try:
        t = threading.Thread(target=allocate_with_garbage_pending, daemon=True)
        t.start()
        t.join(timeout=10)
    finally:
        gc.enable()
    assert done.is_set(), "an unlink finalizer run by the collector deadlocked"
    assert _shm.live_segment_names() == []
