"""call_with_retry: what is retried, backoff, attempts, per-attempt timeouts, the deadline."""

from __future__ import annotations

import asyncio
import random

import pytest

from asyncarr.config import RetryConfig
from asyncarr.errors import (
    DeadlineExceededError,
    PermissionDeniedError,
    ThrottledError,
    TransientStoreError,
    TruncatedReadError,
)
from asyncarr.runtime import attempt_timeout, backoff_delay, call_with_retry

FAST = RetryConfig(max_attempts=5, base_backoff=0.0005, max_backoff=0.002, deadline=30)


class Failing:
    """Raises the given errors in turn, then returns "ok"."""

    def __init__(self, *errors: BaseException) -> None:
        self.errors = list(errors)
        self.calls = 0

    async def __call__(self) -> str:
        self.calls += 1
        if self.errors:
            raise self.errors.pop(0)
        return "ok"


class FakeTime:
    """A clock that only moves when the code under test sleeps."""

    def __init__(self) -> None:
        self.now = 0.0
        self.sleeps: list[float] = []

    def clock(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


@pytest.mark.parametrize(
    "error",
    [
        TransientStoreError("503", key="k"),
        ThrottledError("SlowDown", key="k"),
        TruncatedReadError("short body", key="k"),
    ],
)
async def test_transient_faults_are_retried(error: TransientStoreError) -> None:
    fn = Failing(error, error)
    seen: list[tuple[BaseException, int]] = []
    result = await call_with_retry(
        fn, config=FAST, describe="get 'k'", on_retry=lambda e, n: seen.append((e, n))
    )
    assert result == "ok"
    assert fn.calls == 3
    assert seen == [(error, 1), (error, 2)]


@pytest.mark.parametrize(
    "error",
    [ValueError("bad"), PermissionDeniedError("403", key="k"), KeyError("x"), TimeoutError()],
)
async def test_other_errors_are_never_retried(error: BaseException) -> None:
    fn = Failing(error)
    with pytest.raises(type(error)) as info:
        await call_with_retry(fn, config=FAST, describe="get 'k'")
    assert info.value is error
    assert fn.calls == 1


async def test_attempts_run_out_with_the_last_error_and_a_note() -> None:
    errors = [TransientStoreError(f"fault {i}") for i in range(10)]
    fn = Failing(*errors)
    config = FAST.with_(max_attempts=3)
    with pytest.raises(TransientStoreError) as info:
        await call_with_retry(fn, config=config, describe="get 'a/b'")
    assert fn.calls == 3
    assert info.value is errors[2]
    assert any("after 3 attempts" in note for note in info.value.__notes__)
    assert any("get 'a/b'" in note for note in info.value.__notes__)


async def test_request_timeout_expiry_is_a_retried_transient_fault() -> None:
    calls = 0

    async def hangs_once() -> str:
        nonlocal calls
        calls += 1
        if calls == 1:
            await asyncio.Event().wait()
        return "ok"

    seen: list[BaseException] = []
    config = FAST.with_(request_timeout=0.05)
    result = await call_with_retry(
        hangs_once, config=config, describe="get 'k'", on_retry=lambda e, n: seen.append(e)
    )
    assert result == "ok"
    assert calls == 2
    assert isinstance(seen[0], TransientStoreError)
    assert isinstance(seen[0].__cause__, TimeoutError)
    assert "timed out" in str(seen[0])


async def test_deadline_with_a_fake_clock() -> None:
    t = FakeTime()
    errors = [TransientStoreError(f"fault {i}", key="k") for i in range(100)]
    fn = Failing(*errors)
    config = RetryConfig(max_attempts=100, base_backoff=0.5, max_backoff=2.0, deadline=10.0)
    with pytest.raises(DeadlineExceededError) as info:
        await call_with_retry(
            fn,
            config=config,
            describe="get 'k'",
            clock=t.clock,
            sleep=t.sleep,
            rng=random.Random(7),
        )
    err = info.value
    assert isinstance(err.__cause__, TransientStoreError)
    assert err.__cause__ is errors[fn.calls - 1]
    assert f"after {fn.calls} attempts" in str(err)
    assert err.key == "k"
    assert 1 < fn.calls < 100
    assert t.now < 10.0  # no retry was started that could not begin before the deadline
    assert all(0 <= s < 2.0 for s in t.sleeps)


async def test_backoff_grows_exponentially_with_full_jitter() -> None:
    t = FakeTime()
    fn = Failing(*[TransientStoreError("x") for _ in range(6)])
    config = RetryConfig(max_attempts=10, base_backoff=1.0, max_backoff=8.0, deadline=1e6)
    await call_with_retry(
        fn, config=config, describe="d", clock=t.clock, sleep=t.sleep, rng=random.Random(1)
    )
    caps = [1.0, 2.0, 4.0, 8.0, 8.0, 8.0]
    assert len(t.sleeps) == 6
    assert all(0 <= s < cap for s, cap in zip(t.sleeps, caps))
    rng = random.Random(3)
    draws = [backoff_delay(config, 10, rng) for _ in range(200)]
    assert max(draws) < 8.0
    assert max(draws) > 4.0  # jitter spreads over the whole [0, cap) range
    assert backoff_delay(config.with_(base_backoff=0.0), 3) == 0.0


async def test_deadline_cuts_off_a_hanging_attempt() -> None:
    async def hangs() -> None:
        await asyncio.Event().wait()

    config = RetryConfig(request_timeout=None, deadline=0.05)
    with pytest.raises(DeadlineExceededError) as info:
        await call_with_retry(hangs, config=config, describe="get 'slow'")
    assert isinstance(info.value.__cause__, TimeoutError)
    assert isinstance(info.value, TimeoutError)  # also catchable as a plain timeout


async def test_attempt_timeout_converts_only_its_own_expiry() -> None:
    with pytest.raises(TransientStoreError, match="op timed out"):
        async with attempt_timeout(0.01, "op"):
            await asyncio.Event().wait()
    with pytest.raises(TimeoutError) as info:
        async with attempt_timeout(10, "op"):
            raise TimeoutError("from the body")
    assert not isinstance(info.value, TransientStoreError)
    async with attempt_timeout(None, "op"):
        await asyncio.sleep(0)


async def test_cancelling_the_caller_stops_retrying() -> None:
    calls = 0

    async def always_fails() -> None:
        nonlocal calls
        calls += 1
        raise TransientStoreError("x")

    config = RetryConfig(max_attempts=1000, base_backoff=0.01, max_backoff=0.01, deadline=60)
    task = asyncio.create_task(call_with_retry(always_fails, config=config, describe="d"))
    await asyncio.sleep(0.05)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    seen = calls
    await asyncio.sleep(0.05)
    assert calls == seen
