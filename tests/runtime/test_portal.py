"""SyncPortal: blocking calls from threads and foreign loops, leases, deadlock guard, fork."""

from __future__ import annotations

import asyncio
import contextvars
import os
import signal
import subprocess
import sys
import textwrap
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from asyncarr.errors import SyncFromLoopError
from asyncarr.runtime import SyncPortal, get_portal

request_id: contextvars.ContextVar[str] = contextvars.ContextVar("request_id", default="-")


@pytest.fixture
def portal() -> Iterator[SyncPortal]:
    p = SyncPortal(name="asyncarr-test-portal")
    yield p
    while p.leases:
        p.release()


async def where(x: int) -> tuple[int, str, str]:
    await asyncio.sleep(0)
    return x * 2, threading.current_thread().name, request_id.get()


def test_call_from_plain_threads(portal: SyncPortal) -> None:
    portal.acquire()
    results: dict[int, tuple[int, str, str]] = {}

    def caller(i: int) -> None:
        results[i] = portal.call(where, i)

    threads = [threading.Thread(target=caller, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert sorted(results) == list(range(8))
    assert all(r[0] == 2 * i for i, r in results.items())
    assert {r[1] for r in results.values()} == {"asyncarr-test-portal"}
    portal.release()


def test_exceptions_propagate_unchanged_and_context_is_copied(portal: SyncPortal) -> None:
    error = LookupError("from the loop")

    async def boom() -> None:
        raise error

    with pytest.raises(LookupError) as info:
        portal.call(boom)
    assert info.value is error
    token = request_id.set("req-42")
    try:
        assert portal.call(where, 1)[2] == "req-42"
    finally:
        request_id.reset(token)
    assert portal.call(where, x=3)[0] == 6


def test_call_from_inside_a_running_loop_in_another_thread(portal: SyncPortal) -> None:
    """The Jupyter case: the calling thread runs its own loop; the call blocks it, and works."""
    out: list[object] = []

    async def notebook_cell() -> None:
        out.append(portal.call(where, 21))

    def kernel() -> None:
        try:
            asyncio.run(notebook_cell())
        except BaseException as exc:
            out.append(exc)

    t = threading.Thread(target=kernel)
    t.start()
    t.join(30)
    assert not t.is_alive()
    assert out[0][:2] == (42, "asyncarr-test-portal")  # type: ignore[index]


async def test_call_from_the_test_loop_itself_works(portal: SyncPortal) -> None:
    # A loop thread other than the portal's may block on it (it is not the portal loop).
    assert portal.call(where, 5)[0] == 10


def test_blocking_call_from_a_loop_whose_tasks_hold_the_endpoint_budget_completes() -> None:
    """A coroutine starts an async write that holds the endpoint's only slot, then calls
    the blocking API on the same endpoint (Jupyter, or a service calling asyncarr.sync):
    the slot cannot come back while its loop is blocked, so the blocking call must not
    wait for it (it hung forever)."""
    import numpy as np

    import asyncarr
    import asyncarr.sync as az
    from asyncarr.config import StoreLimits
    from asyncarr.stores import FaultyStore, MemoryStore

    outcome: list[object] = []

    async def scenario() -> None:
        limits = StoreLimits(max_concurrency=1, adaptive=False)
        store = FaultyStore(MemoryStore(limits=limits), seed=1)
        store.delay(ops="*", seconds=(0.2, 0.2))
        arr = await asyncarr.create_array(store, shape=(10,), chunks=(5,), dtype="i4")
        write = asyncio.create_task(arr.write(1))  # holds the one slot, then waits for more
        await asyncio.sleep(0.05)
        blocking = az.open_array(store, mode="r")  # the same endpoint, from this loop
        outcome.append(blocking[:].shape)
        blocking.close()
        await write
        outcome.append(np.asarray(await arr.read()).tolist())

    thread = threading.Thread(target=asyncio.run, args=(scenario(),), daemon=True)
    thread.start()
    thread.join(60)
    assert not thread.is_alive(), "the blocking call deadlocked"
    assert outcome == [(10,), [1] * 10]


def test_blocking_call_from_the_portal_thread_raises_instead_of_deadlocking(
    portal: SyncPortal,
) -> None:
    async def nested() -> int:
        return portal.call(where, 1)[0]

    portal.acquire()
    with pytest.raises(SyncFromLoopError, match="deadlock"):
        portal.call(nested)
    assert portal.call(where, 2)[0] == 4  # the portal is still healthy
    portal.release()


def test_lease_counting_starts_and_stops_the_thread(portal: SyncPortal) -> None:
    assert portal.thread is None
    assert portal.loop is None
    portal.acquire()
    thread = portal.thread
    assert thread is not None
    assert thread.is_alive()
    loop = portal.loop
    portal.acquire()
    assert portal.leases == 2
    portal.release()
    assert portal.thread is thread
    assert thread.is_alive()
    portal.release()
    assert portal.thread is None
    assert portal.loop is None
    assert not thread.is_alive()
    assert loop is not None
    assert loop.is_closed()
    with pytest.raises(RuntimeError, match="without a matching acquire"):
        portal.release()


def test_call_without_a_lease_uses_a_temporary_one(portal: SyncPortal) -> None:
    assert portal.call(where, 4)[0] == 8
    assert portal.leases == 0
    assert portal.thread is None
    with portal:  # context manager form of a lease
        first = portal.thread
        portal.call(where, 1)
        assert portal.thread is first


def test_last_lease_release_waits_for_pending_work(portal: SyncPortal) -> None:
    started = threading.Event()
    gate = threading.Event()
    out: list[str] = []

    async def slow() -> str:
        started.set()
        await asyncio.to_thread(gate.wait, 30)
        return "done"

    portal.acquire()

    def caller() -> None:
        out.append(portal.call(slow))

    t = threading.Thread(target=caller)
    t.start()
    assert started.wait(30)
    portal.release()  # the in-flight call still holds its temporary lease
    assert portal.thread is not None
    gate.set()
    t.join(30)
    assert out == ["done"]
    assert portal.thread is None


def test_get_portal_is_process_wide() -> None:
    assert get_portal() is get_portal()


def test_forked_child_gets_a_fresh_portal(fork_child: Callable[..., int]) -> None:
    parent = get_portal()
    parent.acquire()
    try:
        assert parent.call(where, 1)[0] == 2

        def child() -> bool:  # only async-signal-safe-ish work
            fresh = get_portal()
            ok = fresh is not parent and fresh.call(where, 5)[0] == 10
            return ok and parent.leases == 0 and parent.call(where, 6)[0] == 12

        assert fork_child(child) == 0
        assert parent.call(where, 7)[0] == 14  # the parent's portal is untouched
    finally:
        parent.release()


def test_objects_inherited_by_a_forked_child_work_and_close_quietly(
    fork_child: Callable[..., int],
) -> None:
    """Leases taken before a fork are not held in the child: closing an inherited sync
    array there gives nothing back (it raised "release() without a matching acquire()")."""
    import asyncarr.sync as az

    arr = az.create_array("memory://forked", shape=(4,), dtype="i4")
    arr[:] = 1
    leases = get_portal().leases

    def child() -> bool:
        ok = arr[:].tolist() == [1, 1, 1, 1]
        arr.close()
        arr.close()
        return ok and get_portal().leases == 0

    assert fork_child(child) == 0
    assert get_portal().leases == leases  # the parent's lease is still held
    assert arr[:].tolist() == [1, 1, 1, 1]
    arr.close()


CTRL_C_SCRIPT = textwrap.dedent(
    """
    import asyncio, sys
    from asyncarr.runtime import SyncPortal

    portal = SyncPortal()

    async def forever():
        print("started", flush=True)
        try:
            await asyncio.sleep(3600)
        except asyncio.CancelledError:
            print("cancelled", flush=True)
            raise

    try:
        portal.call(forever)
    except KeyboardInterrupt:
        print("interrupted", flush=True)
        sys.exit(0)
    sys.exit(3)
    """
)


def test_ctrl_c_in_the_caller_cancels_the_coroutine() -> None:
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    proc = subprocess.Popen(
        [sys.executable, "-c", CTRL_C_SCRIPT],
        cwd=root,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline().strip() == "started"
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, err
    assert out.split() == ["cancelled", "interrupted"]


def test_exit_with_a_lease_held_prints_no_traceback(tmp_path: Path) -> None:
    """An unclosed sync array holds a lease; at interpreter exit its loop thread shut its
    default executor down, which starts a thread: 'Exception in thread asyncarr-portal'."""
    script = tmp_path / "held.py"
    script.write_text(
        "import asyncio, asyncarr.runtime as rt\n"
        "async def use_default_executor():\n"
        "    return await asyncio.get_running_loop().run_in_executor(None, sum, [1, 2])\n"
        "portal = rt.get_portal()\n"
        "portal.acquire()\n"
        "print(portal.call(use_default_executor))\n"
    )
    done = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0 and done.stdout.strip() == "3"
    assert "Traceback" not in done.stderr and "Exception in thread" not in done.stderr
