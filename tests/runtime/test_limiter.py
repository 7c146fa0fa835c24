"""AdaptiveLimiter: fairness, AIMD, cancellation, cross-loop use, the endpoint registry."""

from __future__ import annotations

import asyncio
import threading

import pytest

from asyncarr.config import StoreLimits
from asyncarr.runtime import AdaptiveLimiter, limiter_for
from asyncarr.stores import MemoryStore


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def fixed(n: int) -> StoreLimits:
    return StoreLimits(max_concurrency=n, adaptive=False)


async def settle() -> None:
    for _ in range(5):
        await asyncio.sleep(0)


async def test_waiters_are_served_in_fifo_order() -> None:
    limiter = AdaptiveLimiter(fixed(1), "fifo")
    order: list[int] = []
    release = asyncio.Event()

    async def user(i: int) -> None:
        async with limiter:
            order.append(i)
            await release.wait()

    holder = asyncio.create_task(user(-1))
    await settle()
    tasks = []
    for i in range(6):
        tasks.append(asyncio.create_task(user(i)))
        await settle()
    assert limiter.in_flight == 1
    assert limiter.waiting == 6
    release.set()
    await asyncio.gather(holder, *tasks)
    assert order == [-1, 0, 1, 2, 3, 4, 5]
    assert (limiter.in_flight, limiter.waiting) == (0, 0)


async def test_newcomer_does_not_overtake_a_queued_waiter() -> None:
    limiter = AdaptiveLimiter(fixed(1), "no-barging")
    await limiter.acquire()
    order: list[str] = []

    async def take(name: str) -> None:
        async with limiter:
            order.append(name)

    queued = asyncio.create_task(take("queued"))
    await settle()
    limiter.release()  # the slot is handed to "queued" ...
    newcomer = asyncio.create_task(take("newcomer"))  # ... not to a task arriving now
    await asyncio.gather(queued, newcomer)
    assert order == ["queued", "newcomer"]


async def test_never_more_than_the_limit_in_flight() -> None:
    limiter = AdaptiveLimiter(fixed(3), "bound")
    peak = 0

    async def user() -> None:
        nonlocal peak
        async with limiter:
            peak = max(peak, limiter.in_flight)
            await asyncio.sleep(0)

    await asyncio.gather(*(user() for _ in range(50)))
    assert peak == 3
    assert limiter.in_flight == 0


async def test_cancelled_waiter_does_not_leak_a_slot() -> None:
    limiter = AdaptiveLimiter(fixed(1), "cancel-waiting")
    await limiter.acquire()
    waiter = asyncio.create_task(limiter.acquire())
    await settle()
    assert limiter.waiting == 1
    waiter.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiter
    assert (limiter.in_flight, limiter.waiting) == (1, 0)
    limiter.release()
    assert limiter.in_flight == 0
    async with limiter:
        assert limiter.in_flight == 1


async def test_waiter_cancelled_right_after_being_granted_gives_the_slot_back() -> None:
    limiter = AdaptiveLimiter(fixed(1), "cancel-granted")
    await limiter.acquire()
    waiter = asyncio.create_task(limiter.acquire())
    follower = asyncio.create_task(limiter.acquire())
    await settle()
    limiter.release()  # granted to `waiter`, which has not resumed yet
    waiter.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiter
    await asyncio.wait_for(follower, 5)  # the slot went on to the next waiter
    assert (limiter.in_flight, limiter.waiting) == (1, 0)
    limiter.release()
    assert limiter.in_flight == 0


async def test_cancellation_inside_the_block_releases_the_slot() -> None:
    limiter = AdaptiveLimiter(fixed(2), "cancel-holding")

    async def hold() -> None:
        async with limiter:
            await asyncio.Event().wait()

    tasks = [asyncio.create_task(hold()) for _ in range(5)]
    await settle()
    assert (limiter.in_flight, limiter.waiting) == (2, 3)
    for t in tasks:
        t.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    assert (limiter.in_flight, limiter.waiting) == (0, 0)


def test_throttle_burst_is_one_decrease_and_later_bursts_decrease_again() -> None:
    clock = FakeClock()
    limits = StoreLimits(max_concurrency=64, min_concurrency=2, decrease_factor=0.5)
    limiter = AdaptiveLimiter(limits, "aimd", clock=clock, min_cooldown=1.0)
    assert limiter.current_limit == 64
    for _ in range(40):  # 40 requests in flight all see 503 SlowDown
        limiter.on_throttle()
    assert limiter.current_limit == 32
    clock.now += 0.5
    limiter.on_throttle()
    assert limiter.current_limit == 32  # still within the cooldown
    clock.now += 0.6
    limiter.on_throttle()
    assert limiter.current_limit == 16
    for _ in range(10):
        clock.now += 2
        limiter.on_throttle()
    assert limiter.current_limit == 2  # never below min_concurrency


def test_cooldown_follows_the_observed_round_trip() -> None:
    clock = FakeClock()
    limiter = AdaptiveLimiter(StoreLimits(), "rtt", clock=clock, min_cooldown=0.01)
    for _ in range(50):
        limiter.on_success(2.0)
    assert limiter.cooldown == pytest.approx(2.0)
    limiter.on_throttle(2.0)
    before = limiter.current_limit
    clock.now += 1.0
    limiter.on_throttle(2.0)
    assert limiter.current_limit == before
    clock.now += 1.5
    limiter.on_throttle(2.0)
    assert limiter.current_limit == pytest.approx(before / 2)


def test_additive_recovery_is_about_one_step_per_window() -> None:
    clock = FakeClock()
    limits = StoreLimits(max_concurrency=32, increase_step=1.0)
    limiter = AdaptiveLimiter(limits, "recover", clock=clock)
    for _ in range(3):
        clock.now += 10
        limiter.on_throttle()
    assert limiter.current_limit == 4
    for _ in range(4):  # one window of 4 requests at limit 4
        limiter.on_success()
    assert 4.8 < limiter.current_limit < 5.0
    for _ in range(5000):
        limiter.on_success()
    assert limiter.current_limit == 32  # capped at max_concurrency


def test_non_adaptive_limits_do_not_move() -> None:
    limiter = AdaptiveLimiter(fixed(8), "fixed")
    limiter.on_throttle()
    limiter.on_success()
    assert limiter.current_limit == 8


async def test_growing_limit_admits_waiters() -> None:
    clock = FakeClock()
    limits = StoreLimits(max_concurrency=4, min_concurrency=1, increase_step=1.0)
    limiter = AdaptiveLimiter(limits, "grow", clock=clock)
    for _ in range(3):
        clock.now += 10
        limiter.on_throttle()
    assert limiter.current_limit == 1
    await limiter.acquire()
    waiter = asyncio.create_task(limiter.acquire())
    await settle()
    assert limiter.waiting == 1
    limiter.on_success()  # 1 -> 2: a second slot opens
    await asyncio.wait_for(waiter, 5)
    assert limiter.in_flight == 2
    limiter.release()
    limiter.release()


def test_shared_by_tasks_on_two_event_loops_at_once() -> None:
    limiter = AdaptiveLimiter(fixed(2), "two-loops")
    lock = threading.Lock()
    active = 0
    peak = 0
    done = 0
    errors: list[BaseException] = []

    async def user() -> None:
        nonlocal active, peak, done
        async with limiter:
            with lock:
                active += 1
                peak = max(peak, active)
            await asyncio.sleep(0.001)
            with lock:
                active -= 1
                done += 1

    def run_loop() -> None:
        async def main() -> None:
            await asyncio.gather(*(user() for _ in range(40)))

        try:
            asyncio.run(main())
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=run_loop) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not errors
    assert done == 80
    assert peak <= 2
    assert (limiter.in_flight, limiter.waiting) == (0, 0)


def test_limiter_for_is_one_per_endpoint() -> None:
    a = MemoryStore()
    a_view = a.with_read_only()  # same data, same endpoint
    b = MemoryStore()
    assert limiter_for(a) is limiter_for(a)
    assert limiter_for(a_view) is limiter_for(a)
    assert limiter_for(b) is not limiter_for(a)
    assert limiter_for(a).name == a.endpoint_key
    assert limiter_for(a).limits == a.limits
