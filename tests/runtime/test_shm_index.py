"""Shared-memory bookkeeping survives finalizers that re-enter it."""

from __future__ import annotations

import gc
import threading
import weakref
from collections.abc import Callable
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
            index.discard(old)
        index.add(fresh)
        done.set()

    t = threading.Thread(target=add_while_a_finalizer_fires, daemon=True)
    t.start()
    t.join(timeout=10)
    assert done.is_set(), "re-entrant removal deadlocked"
    assert index.find(0, 10) is None
    assert index.find(210, 220) is fresh
    assert index.names() == ["fresh"]


def _run_with_gc_disabled(target: Callable[[], None]) -> None:
    """Run ``target`` on a daemon thread (a deadlock there must not hang the suite), with
    automatic collection off so reference cycles live until ``target`` collects them."""
    gc.disable()
    try:
        t = threading.Thread(target=target, daemon=True)
        t.start()
        t.join(timeout=10)
    finally:
        gc.enable()


def test_a_collection_anywhere_in_a_critical_section_does_not_deadlock() -> None:
    # Python 3.12 collects garbage at any bytecode boundary, so a finalizer may run
    # right after the index lock is taken, before any bookkeeping: the CI hang.
    index = _Index()
    doomed = _Region(0, 100, "doomed")
    index.add(doomed)

    class Owner:
        pass

    done = threading.Event()

    def collect_inside_the_section() -> None:
        owner = Owner()
        weakref.finalize(owner, index.discard, doomed)
        cycle: list[Any] = [owner]
        cycle.append(cycle)
        del owner, cycle
        with index._section():
            gc.collect()  # runs index.discard(doomed) on this thread, lock held
        done.set()

    _run_with_gc_disabled(collect_inside_the_section)
    assert done.is_set(), "a finalizer run inside the index's critical section deadlocked"
    assert index.find(10, 20) is None, "a dead region must not answer a lookup"
    assert index.names() == []


def test_discard_from_another_thread_while_the_lock_is_held_is_applied_before_lookups() -> None:
    index = _Index()
    doomed = _Region(0, 100, "doomed")
    index.add(doomed)
    with index._section():
        t = threading.Thread(target=index.discard, args=(doomed,))
        t.start()
        t.join(timeout=10)
        assert not t.is_alive(), "discard must never wait for the lock"
    assert index.find(0, 10) is None


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

    _run_with_gc_disabled(allocate_with_garbage_pending)
    assert done.is_set(), "an unlink finalizer run by the collector deadlocked"
    assert _shm.live_segment_names() == []
