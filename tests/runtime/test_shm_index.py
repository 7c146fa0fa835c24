"""The shared-memory region index survives finalizers that re-enter it."""

from __future__ import annotations

import threading

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
