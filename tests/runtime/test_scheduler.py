"""bounded_map / bounded_for_each / gather_all: order, bounds, laziness, failures, cancellation."""

from __future__ import annotations

import asyncio
import itertools
import random
from collections.abc import AsyncIterator, Iterator

import pytest

from asyncarr.errors import ConfigError
from asyncarr.runtime import bounded_for_each, bounded_map, gather_all


async def test_results_come_back_in_input_order() -> None:
    rng = random.Random(0)
    delays = [rng.random() * 0.003 for _ in range(60)]

    async def work(i: int) -> int:
        await asyncio.sleep(delays[i])
        return i * i

    assert await bounded_map(work, range(60), limit=7) == [i * i for i in range(60)]
    assert await bounded_map(work, [], limit=3) == []


async def test_never_more_than_limit_calls_in_flight() -> None:
    active = 0
    peak = 0

    async def work(i: int) -> None:
        nonlocal active, peak
        active += 1
        peak = max(peak, active)
        await asyncio.sleep(0)
        active -= 1

    await bounded_for_each(work, range(100), limit=4)
    assert peak == 4


async def test_fixed_pool_of_workers_not_one_task_per_item() -> None:
    tasks_seen: set[asyncio.Task[object]] = set()

    async def work(i: int) -> int:
        task = asyncio.current_task()
        assert task is not None
        tasks_seen.add(task)
        await asyncio.sleep(0)
        return i

    await bounded_map(work, range(500), limit=5)
    assert len(tasks_seen) == 5
    tasks_seen.clear()
    await bounded_map(work, [1, 2], limit=50)  # a sized input needs no more than len()
    assert len(tasks_seen) == 2


async def test_generator_is_consumed_lazily() -> None:
    pulled = 0
    gate = asyncio.Event()

    def items() -> Iterator[int]:
        nonlocal pulled
        for i in range(1000):
            pulled += 1
            yield i

    async def work(i: int) -> int:
        await gate.wait()
        return i

    task = asyncio.create_task(bounded_map(work, items(), limit=3))
    for _ in range(10):
        await asyncio.sleep(0)
    assert pulled == 3  # only what the workers hold
    gate.set()
    assert await task == list(range(1000))


async def test_an_endless_generator_is_fine_until_a_failure_stops_it() -> None:
    async def work(i: int) -> None:
        if i == 500:
            raise ValueError("item 500 is bad")
        await asyncio.sleep(0)

    with pytest.raises(ValueError, match="item 500"):
        await bounded_for_each(work, itertools.count(), limit=8)


async def test_async_iterables_are_accepted_and_closed_on_failure() -> None:
    closed = False

    async def items() -> AsyncIterator[int]:
        nonlocal closed
        try:
            for i in range(100):
                await asyncio.sleep(0)
                yield i
        finally:
            closed = True

    async def double(i: int) -> int:
        return 2 * i

    assert await bounded_map(double, items(), limit=4) == [2 * i for i in range(100)]

    async def fail_at_10(i: int) -> int:
        if i == 10:
            raise KeyError(i)
        return i

    closed = False
    with pytest.raises(KeyError):
        await bounded_map(fail_at_10, items(), limit=4)
    assert closed


async def test_first_failure_cancels_the_rest_and_carries_concurrent_ones_as_notes() -> None:
    release = asyncio.Event()
    cancelled: list[int] = []

    async def work(i: int) -> int:
        if i in (1, 2):
            await release.wait()
            raise RuntimeError(f"boom {i}")
        if i == 0:
            await asyncio.sleep(0.01)
            release.set()
            return 0
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            cancelled.append(i)
            raise
        return i

    with pytest.raises(RuntimeError, match="boom 1") as info:
        await bounded_map(work, range(6), limit=6)
    notes = getattr(info.value, "__notes__", [])
    assert any("boom 2" in n for n in notes)
    assert sorted(cancelled) == [3, 4, 5]


async def test_failure_keeps_its_own_cause() -> None:
    async def work(i: int) -> None:
        try:
            raise OSError("low level")
        except OSError as exc:
            raise ConnectionError("translated") from exc

    with pytest.raises(ConnectionError) as info:
        await bounded_for_each(work, [1], limit=2)
    assert isinstance(info.value.__cause__, OSError)


async def test_an_exception_from_the_iterable_propagates() -> None:
    def items() -> Iterator[int]:
        yield 1
        raise LookupError("source broke")

    async def work(i: int) -> int:
        return i

    with pytest.raises(LookupError, match="source broke"):
        await bounded_map(work, items(), limit=2)


async def test_cancelling_the_caller_cancels_every_call() -> None:
    started = 0
    cancelled = 0

    async def work(i: int) -> None:
        nonlocal started, cancelled
        started += 1
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            cancelled += 1
            raise

    task = asyncio.create_task(bounded_for_each(work, range(100), limit=5))
    for _ in range(10):
        await asyncio.sleep(0)
    assert started == 5
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert cancelled == 5
    assert started == 5


@pytest.mark.parametrize("limit", [0, -1, 1.5, True])
async def test_limit_must_be_a_positive_int(limit: object) -> None:
    async def work(i: int) -> int:
        return i

    with pytest.raises(ConfigError, match="limit"):
        await bounded_map(work, [1], limit=limit)  # type: ignore[arg-type]


async def test_gather_all_cancels_the_rest_at_the_first_failure_and_waits_for_them() -> None:
    """Unlike asyncio.gather, nothing keeps running once it has raised."""
    finished: list[int] = []
    cancelled: list[int] = []

    async def slow(i: int) -> int:
        try:
            await asyncio.sleep(0.2)
        except asyncio.CancelledError:
            cancelled.append(i)
            raise
        finished.append(i)
        return i

    async def fail(message: str) -> int:
        await asyncio.sleep(0.01)
        raise ValueError(message)

    with pytest.raises(ValueError, match="first") as info:
        await gather_all(slow(0), fail("first"), slow(1), fail("second"))
    assert sorted(cancelled) == [0, 1] and not finished  # all done with by the time it raised
    assert any("second" in note for note in getattr(info.value, "__notes__", []))
    assert [t for t in asyncio.all_tasks() if t is not asyncio.current_task()] == []
    assert await gather_all(slow(2), slow(3)) == [2, 3]
    assert await gather_all() == []


async def test_cancelling_gather_all_cancels_every_awaitable() -> None:
    cancelled: list[int] = []

    async def slow(i: int) -> None:
        try:
            await asyncio.sleep(10)
        except asyncio.CancelledError:
            cancelled.append(i)
            raise

    task = asyncio.create_task(gather_all(slow(0), slow(1)))
    await asyncio.sleep(0.01)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert sorted(cancelled) == [0, 1]
