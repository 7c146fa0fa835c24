"""LoopClientPool: one client per (event loop, key), shared, reference-counted, closed on its loop.

The pool is generic, so these tests pool plain fake client objects that record
how (and on which loop) they were closed.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Awaitable, Callable, Iterator
from concurrent.futures import Future
from typing import TypeVar

import pytest

from asyncarr.stores._client_pool import Lease, LoopClientPool

T = TypeVar("T")


class FakeClient:
    """Stands in for an SDK client bound to the loop that created it."""

    def __init__(self, name: str = "") -> None:
        self.name = name
        self.loop = asyncio.get_running_loop()
        self.closed_on: list[asyncio.AbstractEventLoop] = []
        self.abandoned = False
        self.usable = True

    @property
    def closed(self) -> bool:
        return bool(self.closed_on)


async def close_fake(client: FakeClient) -> None:
    await asyncio.sleep(0)
    client.closed_on.append(asyncio.get_running_loop())


def abandon_fake(client: FakeClient) -> None:
    client.abandoned = True


def new_pool(**kwargs: object) -> LoopClientPool[str, FakeClient]:
    return LoopClientPool(
        "fake",
        close=close_fake,
        abandon=abandon_fake,
        is_usable=lambda c: c.usable,
        **kwargs,  # type: ignore[arg-type]
    )


class Opener:
    """Counts opens; can hold them until released and fail the first ``failures`` of them."""

    def __init__(self, failures: int = 0, gate: asyncio.Event | None = None) -> None:
        self.calls = 0
        self.failures = failures
        self.gate = gate

    async def __call__(self) -> FakeClient:
        self.calls += 1
        if self.gate is not None:
            await self.gate.wait()
        else:
            await asyncio.sleep(0)
        if self.calls <= self.failures:
            raise ConnectionError(f"open #{self.calls} failed")
        return FakeClient(f"client-{self.calls}")


def opens(name: str) -> Callable[[], Awaitable[FakeClient]]:
    async def opener() -> FakeClient:
        return FakeClient(name)

    return opener


class LoopThread:
    """An event loop running forever in its own thread (another loop than the test's)."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()

    def run(self, make: Callable[[], Awaitable[T]]) -> T:
        async def call() -> T:
            return await make()

        future: Future[T] = asyncio.run_coroutine_threadsafe(call(), self.loop)
        return future.result(timeout=30)

    def stop(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(timeout=30)
        self.loop.close()


@pytest.fixture
def other_loop() -> Iterator[LoopThread]:
    runner = LoopThread()
    yield runner
    if not runner.loop.is_closed():
        runner.stop()


# -- sharing -------------------------------------------------------------------------------------
async def test_one_client_per_key_within_a_loop() -> None:
    pool = new_pool()
    opener = Opener()
    a = await pool.acquire("k", opener)
    b = await pool.acquire("k", opener)
    c = await pool.acquire("other", opener)
    assert a.client is b.client
    assert c.client is not a.client
    assert opener.calls == 2
    assert a.refs == b.refs == 2
    assert a.loop is asyncio.get_running_loop()
    assert sorted(client.name for client in pool.values()) == ["client-1", "client-2"]
    by_key = pool.get(asyncio.get_running_loop())
    assert by_key is not None and sorted(by_key) == ["k", "other"]
    assert by_key["k"].client is a.client and by_key["k"].refs == 2
    unseen = asyncio.new_event_loop()
    unseen.close()
    assert pool.get(unseen, {}) == {}
    await pool.release_all([a, b, c])
    assert pool.values() == []


async def test_each_loop_gets_its_own_client(other_loop: LoopThread) -> None:
    pool = new_pool()
    here = await pool.acquire("k", Opener())
    there = other_loop.run(lambda: pool.acquire("k", Opener()))
    assert here.client is not there.client
    assert here.client.loop is asyncio.get_running_loop()
    assert there.client.loop is other_loop.loop
    assert here.refs == there.refs == 1
    assert len(pool.values()) == 2
    other_loop.run(lambda: pool.release(there))
    assert there.client.closed_on == [other_loop.loop]
    assert not here.client.closed
    await pool.release(here)
    assert here.client.closed_on == [asyncio.get_running_loop()]


async def test_two_threads_each_running_a_loop_share_nothing() -> None:
    pool = new_pool()
    barrier = threading.Barrier(2, timeout=30)
    seen: dict[str, tuple[FakeClient, FakeClient, list[asyncio.AbstractEventLoop]]] = {}

    async def use(name: str) -> None:
        first = await pool.acquire("k", Opener())
        second = await pool.acquire("k", Opener())
        await asyncio.to_thread(barrier.wait)  # both loops hold their client now
        await pool.release_all([first, second])
        seen[name] = (first.client, second.client, first.client.closed_on)

    threads = [threading.Thread(target=asyncio.run, args=(use(n),)) for n in ("a", "b")]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    (a1, a2, a_closed), (b1, b2, b_closed) = seen["a"], seen["b"]
    assert a1 is a2 and b1 is b2 and a1 is not b1
    assert a_closed == [a1.loop] and b_closed == [b1.loop] and a1.loop is not b1.loop
    assert pool.values() == []


async def test_concurrent_first_acquire_opens_once() -> None:
    pool = new_pool()
    gate = asyncio.Event()
    opener = Opener(gate=gate)
    tasks = [asyncio.ensure_future(pool.acquire("k", opener)) for _ in range(20)]
    await asyncio.sleep(0)
    gate.set()
    leases = await asyncio.gather(*tasks)
    assert opener.calls == 1
    assert len({id(lease.client) for lease in leases}) == 1
    assert leases[0].refs == 20
    await pool.release_all(leases[:-1])
    assert not leases[0].client.closed
    await pool.release(leases[-1])
    assert leases[0].client.closed_on == [asyncio.get_running_loop()]


# -- failed and cancelled opens ----------------------------------------------------------------
async def test_failed_open_is_not_cached() -> None:
    pool = new_pool()
    opener = Opener(failures=1)
    with pytest.raises(ConnectionError, match="open #1 failed"):
        await pool.acquire("k", opener)
    assert pool.values() == []
    lease = await pool.acquire("k", opener)
    assert opener.calls == 2
    assert lease.client.name == "client-2"
    await pool.release(lease)


async def test_waiters_retry_after_the_open_they_waited_for_failed() -> None:
    pool = new_pool()
    gate = asyncio.Event()
    opener = Opener(failures=1, gate=gate)
    tasks = [asyncio.ensure_future(pool.acquire("k", opener)) for _ in range(5)]
    await asyncio.sleep(0)
    gate.set()
    results = await asyncio.gather(*tasks, return_exceptions=True)
    errors = [r for r in results if isinstance(r, BaseException)]
    leases = [r for r in results if isinstance(r, Lease)]
    assert [str(e) for e in errors] == ["open #1 failed"]  # only the task that ran it
    assert len(leases) == 4 and len({id(lease.client) for lease in leases}) == 1
    assert opener.calls == 2
    await pool.release_all(leases)


async def test_cancelled_opener_lets_a_waiter_open() -> None:
    pool = new_pool()
    gate = asyncio.Event()
    opener = Opener(gate=gate)
    first = asyncio.ensure_future(pool.acquire("k", opener))
    await asyncio.sleep(0)
    second = asyncio.ensure_future(pool.acquire("k", opener))
    await asyncio.sleep(0)
    first.cancel()
    with pytest.raises(asyncio.CancelledError):
        await first
    gate.set()
    lease = await second
    assert opener.calls == 2 and lease.refs == 1
    await pool.release(lease)
    assert lease.client.closed


async def test_unusable_client_is_replaced() -> None:
    pool = new_pool()
    old = await pool.acquire("k", Opener())
    old.client.usable = False
    new = await pool.acquire("k", Opener())
    assert new.client is not old.client
    assert pool.values() == [new.client]
    await pool.release(old)  # the old client's last lease still closes it
    assert old.client.closed and not new.client.closed
    assert pool.values() == [new.client]
    await pool.release(new)
    assert new.client.closed and pool.values() == []


# -- releasing ---------------------------------------------------------------------------------
async def test_last_release_closes_exactly_once_and_double_release_is_ignored() -> None:
    pool = new_pool()
    a = await pool.acquire("k", Opener())
    b = await pool.acquire("k", Opener())
    await pool.release(a)
    await pool.release(a)  # must not count as b's release
    assert a.released and not b.released
    assert b.refs == 1 and not b.client.closed
    await pool.release(b)
    await pool.release(b)
    assert b.client.closed_on == [asyncio.get_running_loop()]  # once
    assert b.refs == 0
    again = await pool.acquire("k", Opener())  # a fresh client after the close
    assert again.client is not b.client
    await pool.release(again)


async def test_release_from_another_loop_closes_on_the_owner_loop(
    other_loop: LoopThread,
) -> None:
    pool = new_pool()
    lease = other_loop.run(lambda: pool.acquire("k", Opener()))
    await pool.release(lease)  # released here, closed there (and waited for)
    assert lease.client.closed_on == [other_loop.loop]
    assert not lease.client.abandoned
    assert pool.values() == []


async def test_release_after_the_owner_loop_closed_does_not_raise(
    caplog: pytest.LogCaptureFixture,
) -> None:
    pool = new_pool()

    async def take() -> Lease[str, FakeClient]:
        return await pool.acquire("k", Opener())

    lease = await asyncio.to_thread(asyncio.run, take())
    assert lease.client.loop.is_closed()
    with caplog.at_level(logging.DEBUG, logger="asyncarr.stores._client_pool"):
        await pool.release(lease)
    assert not lease.client.closed and lease.client.abandoned
    assert "event loop is closed" in caplog.text
    assert pool.values() == []


async def test_release_while_the_owner_loop_is_stopped_abandons_the_client(
    caplog: pytest.LogCaptureFixture,
) -> None:
    pool = new_pool()
    loop = asyncio.new_event_loop()
    try:
        lease = await asyncio.to_thread(loop.run_until_complete, pool.acquire("k", Opener()))
        with caplog.at_level(logging.WARNING, logger="asyncarr.stores._client_pool"):
            await pool.release(lease)
        assert not lease.client.closed and lease.client.abandoned
        assert "not running" in caplog.text
    finally:
        loop.close()


async def test_close_errors_propagate_and_the_client_is_gone() -> None:
    async def failing_close(client: FakeClient) -> None:
        raise OSError("close failed")

    pool: LoopClientPool[str, FakeClient] = LoopClientPool("fake", close=failing_close)
    lease = await pool.acquire("k", Opener())
    with pytest.raises(OSError, match="close failed"):
        await pool.release(lease)
    assert pool.values() == []
    await pool.release(lease)  # already released: nothing happens


async def test_release_all_releases_every_lease_before_raising() -> None:
    calls: list[str] = []

    async def close(client: FakeClient) -> None:
        calls.append(client.name)
        if client.name == "a":
            raise OSError("a failed")

    pool: LoopClientPool[str, FakeClient] = LoopClientPool("fake", close=close)
    leases = [await pool.acquire(name, opens(name)) for name in ("a", "b")]
    with pytest.raises(OSError, match="a failed"):
        await pool.release_all(leases)
    assert calls == ["a", "b"]
    assert all(lease.released for lease in leases)


async def test_a_lease_goes_back_to_its_own_pool() -> None:
    pool, other = new_pool(), new_pool()
    lease = await pool.acquire("k", Opener())
    with pytest.raises(ValueError, match="does not belong"):
        await other.release(lease)
    await pool.release(lease)


# -- synchronous builders ----------------------------------------------------------------------
async def test_acquire_nowait_shares_and_does_not_cache_failures() -> None:
    pool = new_pool()
    made: list[FakeClient] = []

    def make() -> FakeClient:
        if not made:
            made.append(FakeClient("broken"))
            raise ValueError("bad settings")
        made.append(FakeClient("ok"))
        return made[-1]

    with pytest.raises(ValueError, match="bad settings"):
        pool.acquire_nowait("k", make)
    a = pool.acquire_nowait("k", make)
    b = pool.acquire_nowait("k", make)
    assert a.client is b.client and a.client.name == "ok" and a.refs == 2
    await pool.release_all([a, b])
    assert a.client.closed_on == [asyncio.get_running_loop()]


async def test_acquire_nowait_refuses_a_client_that_acquire_is_opening() -> None:
    pool = new_pool()
    gate = asyncio.Event()
    opening = asyncio.ensure_future(pool.acquire("k", Opener(gate=gate)))
    await asyncio.sleep(0)
    with pytest.raises(RuntimeError, match="being opened"):
        pool.acquire_nowait("k", FakeClient)
    gate.set()
    await pool.release(await opening)


def test_a_stopping_portal_closes_the_clients_of_its_loop() -> None:
    """Clients still leased (by stores never closed) are closed on the portal's loop when
    its thread stops, once: a later release closes nothing again."""
    from asyncarr.runtime import SyncPortal

    pool = new_pool()
    portal = SyncPortal(name="test-closing-portal")
    with portal:

        async def open_two() -> list[Lease[str, FakeClient]]:
            return [await pool.acquire(key, Opener()) for key in ("a", "b")]

        leases = portal.call(open_two)
        loop = portal.loop
    clients = [lease.client for lease in leases]
    assert [c.closed_on for c in clients] == [[loop], [loop]]
    assert pool.entries() == []
    asyncio.run(pool.release_all(leases))
    assert [len(c.closed_on) for c in clients] == [1, 1]
    assert not any(c.abandoned for c in clients)
