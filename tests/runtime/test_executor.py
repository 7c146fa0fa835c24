"""Tests of the codec executor: modes, shared-memory transport, crashes, auto policy."""

from __future__ import annotations

import asyncio
import gc
import mmap
import os
import sys
import threading
import time
import zlib
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import pytest

from asyncarr.config import ExecutorConfig
from asyncarr.errors import AsyncarrError, CodecError, ConfigError, WorkerCrashedError
from asyncarr.runtime import _executor, _shm
from asyncarr.runtime._executor import (
    MAX_PROBE_JOBS,
    MIN_GAIN,
    MIN_THROUGHPUT_GAIN,
    PROCESS_WARMUP_JOBS,
    CodecExecutor,
    _Profile,
    get_executor,
    set_executor,
)

# --------------------------------------------------------------------------- job functions
# Module-level so that worker processes can unpickle them by reference.


def add(a: int, b: int) -> int:
    return a + b


def whoami() -> tuple[int, str]:
    return os.getpid(), threading.current_thread().name


def raise_codec_error(key: str) -> None:
    raise CodecError("bad chunk", key=key, codec="zstd")


def raise_key_error() -> None:
    raise KeyError("missing")


def raise_stop_iteration() -> None:
    raise StopIteration


class _Unpicklable(Exception):
    def __init__(self, a: int, b: int) -> None:  # cls(*args) fails when unpickled
        super().__init__(f"{a}/{b}")


def raise_unpicklable() -> None:
    raise _Unpicklable(1, 2)


def fill(view: np.ndarray[Any, Any], value: float) -> bool:
    """Write ``value`` into ``view``; report whether it maps shared memory."""
    view[...] = value
    base = view
    while isinstance(base, np.ndarray) and base.base is not None:
        base = base.base
    return isinstance(base, mmap.mmap)


def fill_then_fail(view: np.ndarray[Any, Any]) -> None:
    view[...] = 1
    raise ValueError("decode failed after writing")


def same_view(view: np.ndarray[Any, Any]) -> np.ndarray[Any, Any]:
    view += 1
    return view


def crash() -> None:
    os._exit(17)


def slow_add(a: int, b: int) -> int:
    import time

    time.sleep(0.3)
    return a + b


def mark_wait_mark(directory: str, name: str, seconds: float) -> None:
    """Create ``<name>.started``, sleep, then create ``<name>.done``."""
    open(os.path.join(directory, f"{name}.started"), "w").close()
    time.sleep(seconds)
    open(os.path.join(directory, f"{name}.done"), "w").close()


def py_work(n: int) -> int:
    """Pure-Python loop: holds the GIL the whole time."""
    total = 0
    for i in range(n):
        total += i * i % 7
    return total


# --------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def proc_executor() -> Iterator[CodecExecutor]:
    ex = CodecExecutor(ExecutorConfig(mode="processes", max_workers=2))
    yield ex
    ex.shutdown()


@pytest.fixture
def thread_executor() -> Iterator[CodecExecutor]:
    ex = CodecExecutor(ExecutorConfig(mode="threads", max_workers=2))
    yield ex
    ex.shutdown()


def _shm_path(name: str) -> str:
    return "/dev/shm/" + name.lstrip("/")


def _my_segments() -> set[str]:
    prefix = f"{_shm.SEGMENT_PREFIX}{os.getpid()}-"
    return {f for f in os.listdir("/dev/shm") if f.startswith(prefix)}


# --------------------------------------------------------------------------- every mode


@pytest.mark.parametrize("mode", ["inline", "threads", "processes"])
async def test_each_mode_runs_and_propagates_errors(mode: str) -> None:
    with CodecExecutor(ExecutorConfig(mode=mode, max_workers=2)) as ex:  # type: ignore[arg-type]
        assert ex.mode_for(True) == mode
        assert ex.mode_for(False) == mode
        assert await ex.run(add, 2, 3) == 5
        results = await asyncio.gather(*(ex.run(add, i, i) for i in range(20)))
        assert results == [2 * i for i in range(20)]

        with pytest.raises(CodecError) as info:
            await ex.run(raise_codec_error, "c/0/1")
        assert info.value.key == "c/0/1"
        assert info.value.codec == "zstd"
        with pytest.raises(KeyError):
            await ex.run(raise_key_error)
        with pytest.raises(RuntimeError):  # as for any coroutine (PEP 479), not a hang
            await ex.run(raise_stop_iteration)

        pid, name = await ex.run(whoami)
        if mode == "inline":
            assert name == threading.current_thread().name
        elif mode == "threads":
            assert pid == os.getpid()
            assert name.startswith("asyncarr-codec-")
        else:
            assert pid != os.getpid()


async def test_process_errors_carry_the_remote_traceback(proc_executor: CodecExecutor) -> None:
    with pytest.raises(KeyError) as info:
        await proc_executor.run(raise_key_error)
    assert isinstance(info.value.__cause__, _shm.RemoteTraceback)
    assert "raise_key_error" in str(info.value.__cause__)
    # an exception that cannot be rebuilt in the parent still arrives, as an AsyncarrError
    with pytest.raises(AsyncarrError, match="_Unpicklable: 1/2"):
        await proc_executor.run(raise_unpicklable)


async def test_process_mode_refuses_unpicklable_functions(proc_executor: CodecExecutor) -> None:
    with pytest.raises(ConfigError, match="picklable"):
        await proc_executor.run(lambda: 1)


async def test_spawn_context_works_too() -> None:
    with CodecExecutor(ExecutorConfig(mode="processes", max_workers=1), mp_context="spawn") as ex:
        buf = ex.allocate((3, 4), np.dtype("int32"))
        try:
            assert await ex.run(fill, buf[:, ::-2], 8)
            assert buf[:, ::-2].tolist() == [[8, 8]] * 3
        finally:
            ex.finalize(buf)


async def test_dropped_executor_stops_its_threads() -> None:
    ex = CodecExecutor(ExecutorConfig(mode="threads", max_workers=2))
    await ex.run(add, 1, 1)
    names = {t.name for t in threading.enumerate()}
    assert sum(n.startswith("asyncarr-codec-") for n in names) >= 2
    pool = ex._threads
    assert pool is not None
    del ex
    gc.collect()
    for thread in pool._threads:
        thread.join(10)
        assert not thread.is_alive()


def test_fork_is_refused() -> None:
    with pytest.raises(ConfigError, match="fork"):
        CodecExecutor(ExecutorConfig(mode="processes"), mp_context="fork")


# --------------------------------------------------------------------------- shared memory


async def test_workers_write_into_buffers_and_strided_views(proc_executor: CodecExecutor) -> None:
    ex = proc_executor
    buf = ex.allocate((64, 48), np.dtype("float64"))
    try:
        assert buf.shape == (64, 48)
        buf[...] = 0
        # rows, a reversed strided view, a column view and a 2-D strided block
        assert await ex.run(fill, buf[3], 3.0)
        assert await ex.run(fill, buf[::-5, 1::7], -1.0)
        assert await ex.run(fill, buf[:, 47], 9.0)
        assert await ex.run(fill, buf[10:20:3, 2:40:9].T, 7.0)
        expected = np.zeros((64, 48))
        expected[3] = 3.0
        expected[::-5, 1::7] = -1.0
        expected[:, 47] = 9.0
        expected[10:20:3, 2:40:9] = 7.0
        np.testing.assert_array_equal(buf, expected)

        # results that view shared memory come back by reference too
        back = await ex.run(same_view, buf[::2, ::3])
        assert np.shares_memory(back, buf)
        np.testing.assert_array_equal(buf[::2, ::3], expected[::2, ::3] + 1)
    finally:
        out = ex.finalize(buf)
    assert out is buf


async def test_fortran_order_and_structured_dtypes(proc_executor: CodecExecutor) -> None:
    ex = proc_executor
    buf = ex.allocate((6, 5), np.dtype("int16"), order="F")
    rec = ex.allocate((4,), np.dtype([("a", "<i4"), ("b", "<f8")]))
    try:
        assert buf.flags.f_contiguous
        buf[...] = 0
        await ex.run(fill, buf[1:4, ::2], 5)
        assert buf[1:4, ::2].tolist() == [[5, 5, 5]] * 3
        assert buf.sum() == 45
        await ex.run(fill, rec["b"], 2.5)
        assert rec["b"].tolist() == [2.5] * 4
    finally:
        ex.finalize(buf)
        ex.finalize(rec)


def test_shared_arrays_are_pickled_by_reference(proc_executor: CodecExecutor) -> None:
    ex = proc_executor
    big = ex.allocate((200, 1024, 1024), np.dtype("uint8"))  # 200 MiB
    try:
        view = big[::-3, 5:700:2, 1::4]
        payload = _shm.dumps((fill, (view, 1.0)))
        assert len(payload) < 1000  # a reference, not 200 MB of data
        plain = np.zeros((256, 1024), np.uint8)
        assert len(_shm.dumps((plain,))) >= plain.nbytes  # ordinary arrays travel by value
    finally:
        ex.finalize(big)
    # once finalized the segment is gone: the buffer is an ordinary array again
    assert len(_shm.dumps((big[:1],))) >= 1 << 20


async def test_200mb_buffer_shared_by_100_jobs(proc_executor: CodecExecutor) -> None:
    ex = proc_executor
    big = ex.allocate((100, 2 << 20), np.dtype("uint8"))
    try:
        # every job receives the *whole* 200 MB buffer and writes its own row
        jobs = [ex.run(fill, big[i], i % 251) for i in range(100)]
        via_shm = await asyncio.gather(*jobs)
        assert all(via_shm)
        assert big[:, 0].tolist() == [i % 251 for i in range(100)]
        assert big[:, -1].tolist() == [i % 251 for i in range(100)]
        assert int(big[57].min()) == int(big[57].max()) == 57
    finally:
        ex.finalize(big)


async def test_finalize_unlinks_and_keeps_data(proc_executor: CodecExecutor) -> None:
    ex = proc_executor
    before = _my_segments()
    buf = ex.allocate((1000,), np.dtype("float32"))
    (new,) = _my_segments() - before
    assert os.path.exists("/dev/shm/" + new)
    await ex.run(fill, buf, 4.0)
    out = ex.finalize(buf)
    assert _my_segments() == before
    assert type(out) is np.ndarray
    assert out.sum() == 4000.0
    out[:] = 1.0  # still ordinary, writable memory after the unlink
    assert out.sum() == 1000.0
    assert ex.finalize(out) is out  # twice is harmless


async def test_failing_job_leaves_no_segment(proc_executor: CodecExecutor) -> None:
    ex = proc_executor
    before = _my_segments()
    buf = ex.allocate((128, 128), np.dtype("uint8"))
    try:
        with pytest.raises(ValueError, match="after writing"):
            await ex.run(fill_then_fail, buf[::2])
    finally:
        ex.finalize(buf)
    assert _my_segments() == before
    assert buf[::2].min() == 1


def test_forgotten_buffer_is_unlinked_when_collected(proc_executor: CodecExecutor) -> None:
    before = _my_segments()
    buf = proc_executor.allocate((4096,), np.dtype("float64"))
    view = buf[::3]
    assert len(_my_segments() - before) == 1
    del buf
    gc.collect()
    assert len(_my_segments() - before) == 1  # a view still uses it
    del view
    gc.collect()
    assert _my_segments() == before


def total(view: np.ndarray[Any, Any]) -> float:
    return float(view.sum())


async def test_staging_buffers_are_read_in_place_and_reused() -> None:
    ex = CodecExecutor(ExecutorConfig(mode="processes", max_workers=2))
    try:
        before = _my_segments()
        with ex.staging(8 * 1000) as buf:
            assert buf is not None and buf.dtype == np.uint8 and buf.nbytes == 8000
            values = buf.view(np.float64)
            values[:] = np.arange(1000)
            assert _shm.dumps(values[::2]).__len__() < 1000  # a reference, not the data
            assert await ex.run(total, values[::2]) == float(np.arange(0, 1000, 2).sum())
        with ex.staging(8000) as again:
            assert again is buf  # kept for reuse: no fresh memory to fault in
        with ex.staging(16) as other:
            assert other is not buf
        assert len(_my_segments() - before) == 2
        ex.shutdown()
        del buf, again, other, values
        gc.collect()
        assert _my_segments() == before  # unlinked once the executor lets go
    finally:
        ex.shutdown()


def test_staging_buffer_is_not_reused_after_an_error() -> None:
    """A failed or cancelled job's worker may still read its input: never hand it out."""
    ex = CodecExecutor(ExecutorConfig(mode="processes", max_workers=2))
    try:
        with pytest.raises(asyncio.CancelledError), ex.staging(4096) as buf:
            raise asyncio.CancelledError
        with ex.staging(4096) as fresh:
            assert fresh is not buf
        with ex.staging(_executor.STAGING_MAX_BYTES + 1) as big:
            assert big is not None
        with ex.staging(_executor.STAGING_MAX_BYTES + 1) as big_again:
            assert big_again is not big  # too big to keep
        size = _executor.STAGING_MAX_BYTES
        held = [ex.staging(size) for _ in range(_executor.STAGING_KEEP_BYTES // size + 2)]
        for cm in held:
            cm.__enter__()
        for cm in held:
            cm.__exit__(None, None, None)
        assert sum(b.nbytes for b in ex._staging) <= _executor.STAGING_KEEP_BYTES
    finally:
        ex.shutdown()


def test_allocate_chooses_plain_memory_where_no_process_will_write() -> None:
    with CodecExecutor(ExecutorConfig(mode="threads")) as ex:
        arr = ex.allocate((10, 10), np.dtype("float64"))
        assert arr.base is None
        assert ex.finalize(arr) is arr
        shared = ex.allocate((10,), np.dtype("float64"), shared=True)
        assert isinstance(shared.base, mmap.mmap)
        ex.finalize(shared)
    with CodecExecutor(ExecutorConfig(mode="processes")) as ex:
        assert ex.allocate((0, 3), np.dtype("f4")).shape == (0, 3)
        objs = ex.allocate((3,), np.dtype(object))
        assert objs.base is None
        with pytest.raises(ConfigError, match="Python objects"):
            ex.allocate((3,), np.dtype(object), shared=True)
        with pytest.raises(ConfigError, match="order"):
            ex.allocate((3,), np.dtype("f4"), order="K")


async def test_private_output_buffers_never_go_to_a_process(proc_executor: CodecExecutor) -> None:
    ex = proc_executor
    buf = ex.allocate((8, 8), np.dtype("float64"), shared=False)
    try:
        with pytest.raises(_shm.PrivateBufferError):
            _shm.dumps((buf[1:3],))
        buf[...] = 0
        # runs on a thread instead of writing into a worker's copy
        assert not await ex.run(fill, buf[2:4, ::2], 6.0)
        assert buf.sum() == 6.0 * 8
    finally:
        ex.finalize(buf)
    assert len(_shm.dumps((buf,))) >= buf.nbytes  # forgotten: an ordinary array now


# --------------------------------------------------------------------------- crashes


async def test_crashing_worker_raises_and_pool_recovers(proc_executor: CodecExecutor) -> None:
    ex = proc_executor
    first_pid, _ = await ex.run(whoami)
    in_flight = asyncio.ensure_future(ex.run(slow_add, 1, 2))
    await asyncio.sleep(0.05)
    with pytest.raises(WorkerCrashedError, match="crash"):
        await ex.run(crash)
    outcome = await asyncio.gather(in_flight, return_exceptions=True)
    # the job running beside the crash either finished or was reported as crashed
    assert outcome[0] == 3 or isinstance(outcome[0], WorkerCrashedError)
    assert await ex.run(add, 20, 22) == 42
    pids = {pid for pid, _ in await asyncio.gather(*(ex.run(whoami) for _ in range(4)))}
    assert first_pid not in pids  # a fresh pool


# --------------------------------------------------------------------------- cancellation


@pytest.mark.parametrize("mode", ["threads", "processes"])
async def test_a_cancelled_caller_outlives_its_running_job(tmp_path: Any, mode: str) -> None:
    """Cancelling the caller of a job a worker already runs waits for the job to end before
    the CancelledError propagates (a cancelled write's chunks must not land after it was
    reported cancelled); a job still queued is revoked and never runs."""
    ex = CodecExecutor(ExecutorConfig(mode=mode, max_workers=1))  # type: ignore[arg-type]
    try:
        await ex.run(add, 1, 1)  # the pool is up
        d = str(tmp_path)
        running = asyncio.ensure_future(ex.run(mark_wait_mark, d, "running", 0.5))
        queued = asyncio.ensure_future(ex.run(mark_wait_mark, d, "queued", 0.0))
        deadline = time.monotonic() + 30
        while not (tmp_path / "running.started").exists():
            assert time.monotonic() < deadline, "the job never started"
            await asyncio.sleep(0.01)
        running.cancel()
        queued.cancel()
        for task in (running, queued):
            with pytest.raises(asyncio.CancelledError):
                await task
        assert (tmp_path / "running.done").exists(), "the cancellation returned mid-job"
        if mode == "threads":  # (a process pool may have handed the second job out already)
            await asyncio.sleep(0.2)
            assert not (tmp_path / "queued.started").exists()
        assert await ex.run(add, 2, 3) == 5  # and the executor goes on
    finally:
        ex.shutdown()


# --------------------------------------------------------------------------- several loops


@pytest.mark.parametrize("mode", ["threads", "processes"])
def test_usable_from_two_event_loops_at_once(mode: str, proc_executor: CodecExecutor) -> None:
    ex = proc_executor if mode == "processes" else CodecExecutor(ExecutorConfig(mode="threads"))
    results: dict[int, list[int]] = {}
    errors: list[BaseException] = []

    async def work(offset: int) -> list[int]:
        return list(await asyncio.gather(*(ex.run(add, offset, i) for i in range(30))))

    def loop_thread(offset: int) -> None:
        try:
            results[offset] = asyncio.run(work(offset))
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=loop_thread, args=(k * 1000,)) for k in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    if mode == "threads":
        ex.shutdown()
    assert not errors
    assert results == {k * 1000: [k * 1000 + i for i in range(30)] for k in range(2)}


# --------------------------------------------------------------------------- auto mode


@pytest.mark.parametrize(
    ("source", "safe"),
    [
        ("import asyncarr\nrun()\n", False),
        ("def main(): ...\nif __name__ == '__main__':\n    main()\n", True),
        ('if "__main__" == __name__:\n    pass\n', True),
    ],
)
def test_auto_avoids_processes_that_would_rerun_the_main_script(
    source: str, safe: bool, tmp_path: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    import types

    script = tmp_path / "script.py"
    script.write_text(source)
    fake_main = types.ModuleType("__main__")
    fake_main.__file__ = str(script)
    fake_main.__spec__ = None
    monkeypatch.setitem(sys.modules, "__main__", fake_main)
    assert _executor.main_module_is_reimport_safe() is safe
    monkeypatch.setattr(_executor, "usable_cpus", lambda: 4)
    ex = CodecExecutor(ExecutorConfig(mode="auto"))
    ex._profile(py_work).state = "processes"
    assert ex.mode_for(False, profile=py_work) == ("processes" if safe else "threads")


@pytest.mark.parametrize(("cpus", "threads"), [(2, 2), (8, 8), (16, 8), (64, 8)])
def test_default_thread_count_is_capped(
    monkeypatch: pytest.MonkeyPatch, cpus: int, threads: int
) -> None:
    monkeypatch.setattr(_executor, "usable_cpus", lambda: cpus)
    ex = CodecExecutor(ExecutorConfig(mode="threads"))
    assert ex.max_workers == threads
    assert ex._process_workers == cpus  # no shared GIL: every CPU
    assert CodecExecutor(ExecutorConfig(mode="threads", max_workers=16)).max_workers == 16


def test_auto_is_inline_on_one_cpu(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_executor, "usable_cpus", lambda: 1)
    ex = CodecExecutor(ExecutorConfig(mode="auto"))
    assert ex.mode_for(True) == ex.mode_for(False) == "inline"


@pytest.fixture
def two_cpus(monkeypatch: pytest.MonkeyPatch) -> None:
    """``auto`` as on a machine with 2 usable CPUs (on one it is plain ``inline``);
    the routing logic under test must not depend on the machine running the tests."""
    monkeypatch.setattr(_executor, "usable_cpus", lambda: 2)


@pytest.mark.usefixtures("two_cpus")
async def test_auto_keeps_gil_releasing_codecs_on_threads() -> None:
    ex = CodecExecutor(ExecutorConfig(mode="auto", max_workers=2))
    with ex:
        blob = zlib.compress(os.urandom(1 << 16) * 64)
        outs = await asyncio.gather(*(ex.run(zlib.decompress, blob) for _ in range(8)))
        assert all(len(o) == 64 << 16 for o in outs)
        assert ex.mode_for(True) == "threads"
        assert ex.decisions() == []  # nothing to measure: threads by contract
        assert ex.allocate((4,), np.dtype("f8")).base is None  # no process may write it


async def _until_decided(ex: CodecExecutor, run_kwargs: dict[str, Any]) -> Any:
    """Run batches of 4 GIL-holding ``py_work`` jobs until ``auto`` decides; the decision."""
    for _ in range(500):
        outs = await asyncio.gather(
            *(ex.run(py_work, 20_000, releases_gil=False, **run_kwargs) for _ in range(4))
        )
        assert len(set(outs)) == 1
        (decision,) = ex.decisions()
        if decision.state in ("threads", "processes"):
            return decision
        if decision.state == "warming":
            await asyncio.sleep(0.05)
    pytest.fail(f"auto did not decide: {decision}")


@pytest.mark.usefixtures("two_cpus")
async def test_auto_measures_gil_holding_jobs() -> None:
    ex = CodecExecutor(ExecutorConfig(mode="auto", max_workers=2))
    with ex:
        assert ex.mode_for(False) == "threads"
        decision = await _until_decided(ex, {})
        state = decision.state
        assert decision.profile == "default"
        # threads cannot run GIL-holding Python code in parallel, whatever the load
        assert decision.thread_parallelism is not None
        assert decision.thread_parallelism < MIN_GAIN
        # the decision follows the measurements
        if decision.process_parallelism is not None:
            gain = decision.process_parallelism >= MIN_GAIN * decision.thread_parallelism
            assert state == ("processes" if gain else "threads"), decision
        assert ex.mode_for(False) == state
        if state == "processes":
            assert isinstance(ex.allocate((4,), np.dtype("f8")).base, mmap.mmap)
        assert await ex.run(py_work, 10, releases_gil=False) == py_work(10)


@pytest.mark.usefixtures("two_cpus")
async def test_auto_compares_throughput_for_jobs_that_give_their_units() -> None:
    """Jobs that give ``units`` are routed by units done per second; the threads phase
    never ends the probe early, since CPU parallelism says nothing about GIL contention."""
    ex = CodecExecutor(ExecutorConfig(mode="auto", max_workers=2))
    with ex:
        decision = await _until_decided(ex, {"profile": "py", "units": 3})
        state = decision.state
        assert decision.profile == "'py'"
        assert decision.thread_throughput is not None and decision.thread_throughput > 0
        if decision.process_throughput is not None:
            gain = decision.process_throughput >= MIN_THROUGHPUT_GAIN * decision.thread_throughput
            assert state == ("processes" if gain else "threads"), decision
            assert "units/s" in decision.reason
        assert ex.mode_for(False, profile="py") == state


def test_first_jobs_in_fresh_worker_processes_are_not_measured() -> None:
    profile = _Profile("p", lambda _p: None)
    profile.state = "probe-processes"
    for i in range(PROCESS_WARMUP_JOBS):
        profile.record("processes", float(i), i + 0.5, 0.5, 1)
    assert not profile.samples
    profile.record("processes", 100.0, 100.5, 0.5, 1)
    assert len(profile.samples) == 1


async def test_pinned_mode_is_honoured() -> None:
    ex = CodecExecutor(ExecutorConfig(mode="auto", max_workers=2))
    with ex:
        assert (await ex.run(whoami, mode="inline"))[1] == threading.current_thread().name
        assert (await ex.run(whoami, mode="threads"))[1].startswith("asyncarr-codec-")
        with pytest.raises(ConfigError, match="mode must be"):
            await ex.run(whoami, mode="auto")  # type: ignore[arg-type]
    assert ex.decisions() == []


@pytest.mark.usefixtures("two_cpus")
async def test_auto_keeps_unpicklable_gil_holding_jobs_on_threads() -> None:
    ex = CodecExecutor(ExecutorConfig(mode="auto", max_workers=2))
    profile = ex._profile("closure")
    profile.state = "probe-processes"

    def local(x: int) -> int:
        return x + 1

    with ex:
        for _ in range(3):
            assert ex.mode_for(False, profile="closure") == "processes"
            assert await ex.run(local, 1, releases_gil=False, profile="closure") == 2
    (decision,) = ex.decisions()
    assert decision.state == "threads"
    assert "pickle" in decision.reason.lower()


def _samples(profile: _Profile, mode: Any, n: int, cpu: float, overlap: bool) -> None:
    """Feed ``n`` synthetic jobs finishing 20 ms apart, all pending from t=0 if ``overlap``."""
    for i in range(n):
        start = 0.0 if overlap else i * 0.02
        end = (i + 1) * 0.02 if overlap else start + 0.02
        profile.record(mode, start, end, cpu)


def _state(profile: _Profile) -> str:
    return profile.state


class TestAutoPolicy:
    """The decision rules, fed with synthetic measurements."""

    def _profile(self) -> tuple[_Profile, list[_Profile]]:
        warmups: list[_Profile] = []
        return _Profile("codec", warmups.append), warmups

    def test_threads_that_scale_stay_on_threads(self) -> None:
        p, warmups = self._profile()
        # two jobs at a time, each 20 ms of CPU in 20 ms of wall: 2x parallelism
        for i in range(4):
            p.record("threads", i * 0.02, i * 0.02 + 0.02, 0.02)
            p.record("threads", i * 0.02, i * 0.02 + 0.02, 0.02)
        assert _state(p) == "probe-threads"  # 80 ms: too short a window to conclude
        for i in range(4, 8):
            p.record("threads", i * 0.02, i * 0.02 + 0.02, 0.02)
            p.record("threads", i * 0.02, i * 0.02 + 0.02, 0.02)
        assert _state(p) == "threads"
        assert p.thread_parallelism is not None
        assert p.thread_parallelism >= MIN_GAIN
        assert not warmups

    def test_gil_bound_with_real_process_gain_moves_to_processes(self) -> None:
        p, warmups = self._profile()
        _samples(p, "threads", 8, cpu=0.02, overlap=True)  # serialised by the GIL: 1x
        assert _state(p) == "warming"
        assert warmups == [p]
        assert p.route() == ("threads", None)
        p.warmed(ok=True)
        assert p.route() == ("processes", p)
        _samples(p, "threads", 3, cpu=0.02, overlap=True)  # stragglers are ignored
        _samples(p, "processes", PROCESS_WARMUP_JOBS, cpu=1.0, overlap=False)  # not measured
        _samples(p, "processes", 8, cpu=0.04, overlap=True)  # 2x
        assert _state(p) == "processes"
        assert p.route() == ("processes", None)

    def test_transport_overhead_keeps_threads(self) -> None:
        p, _ = self._profile()
        _samples(p, "threads", 8, cpu=0.02, overlap=True)
        p.warmed(ok=True)
        _samples(p, "processes", PROCESS_WARMUP_JOBS, cpu=1.0, overlap=False)  # not measured
        _samples(p, "processes", 8, cpu=0.024, overlap=True)  # 1.2x: not worth it
        assert _state(p) == "threads"
        assert p.process_parallelism == pytest.approx(1.2)
        assert "too small" in p.reason

    def test_no_concurrency_is_inconclusive_then_threads(self) -> None:
        p, warmups = self._profile()
        _samples(p, "threads", MAX_PROBE_JOBS - 1, cpu=0.02, overlap=False)
        assert _state(p) == "probe-threads"
        _samples(p, "threads", 1, cpu=0.02, overlap=False)
        assert _state(p) == "threads"
        assert "inconclusive" in p.reason
        assert not warmups

    @pytest.mark.parametrize(("process_units", "verdict"), [(3, "processes"), (2, "threads")])
    def test_jobs_with_units_are_judged_by_units_per_second(
        self, process_units: int, verdict: str
    ) -> None:
        """Threads burning 2 CPUs (handing a GIL back and forth) still get compared with
        processes; processes win only by doing :data:`MIN_THROUGHPUT_GAIN` times the units."""
        p, warmups = self._profile()
        for i in range(8):  # 2 jobs at a time, 2x parallelism, 2 units each per 20 ms
            p.record("threads", i * 0.02, i * 0.02 + 0.02, 0.02, 2)
            p.record("threads", i * 0.02, i * 0.02 + 0.02, 0.02, 2)
        assert _state(p) == "warming" and warmups == [p]
        p.warmed(ok=True)
        for _ in range(PROCESS_WARMUP_JOBS):
            p.record("processes", 0.0, 1.0, 1.0, 0)  # not measured
        for i in range(8):
            p.record("processes", i * 0.02, i * 0.02 + 0.02, 0.02, process_units)
            p.record("processes", i * 0.02, i * 0.02 + 0.02, 0.02, process_units)
        assert _state(p) == verdict
        assert p.thread_throughput == pytest.approx(200, rel=0.15)  # (concluded mid-pair)
        assert p.process_throughput == pytest.approx(100 * process_units, rel=0.15)
        assert "units/s" in p.reason

    def test_failed_pool_start_keeps_threads(self) -> None:
        p, _ = self._profile()
        _samples(p, "threads", 8, cpu=0.02, overlap=True)
        p.warmed(ok=False)
        assert _state(p) == "threads"


# --------------------------------------------------------------------------- default executor


async def test_default_executor_is_lazy_and_replaceable() -> None:
    try:
        set_executor(None)
        first = get_executor()
        assert get_executor() is first
        assert first.config == ExecutorConfig()
        set_executor(ExecutorConfig(mode="inline"))
        assert get_executor().mode_for(True) == "inline"
        assert await get_executor().run(add, 1, 1) == 2
        mine = CodecExecutor(ExecutorConfig(mode="threads", max_workers=1))
        set_executor(mine)
        assert get_executor() is mine
        assert await get_executor().run(add, 2, 2) == 4
        mine.shutdown()
        assert await mine.run(add, 3, 3) == 6  # usable again after shutdown
        mine.shutdown()
        with pytest.raises(ConfigError):
            set_executor("threads")  # type: ignore[arg-type]
    finally:
        set_executor(None)


def test_forked_child_runs_jobs_on_fresh_threads(
    thread_executor: CodecExecutor, fork_child: Callable[..., int]
) -> None:
    """Only the forking thread survives a fork: the child's jobs must not wait for the
    parent's pool threads (they hung before)."""
    assert asyncio.run(thread_executor.run(add, 1, 2)) == 3  # the pool's threads exist

    def child() -> bool:
        results = asyncio.run(asyncio.wait_for(_many_adds(thread_executor), 20))
        return results == [i + 1 for i in range(20)]

    assert fork_child(child) == 0
    assert asyncio.run(thread_executor.run(add, 2, 3)) == 5  # the parent's pool still works


async def _many_adds(ex: CodecExecutor) -> list[int]:
    return list(await asyncio.gather(*(ex.run(add, i, 1) for i in range(20))))


def test_forked_child_starts_worker_processes_of_its_own(
    proc_executor: CodecExecutor, fork_child: Callable[..., int]
) -> None:
    """The parent's forkserver is not the child's: multiprocessing's check that it still
    runs failed there with a raw ChildProcessError, so a forked child could not use
    worker processes at all."""
    assert asyncio.run(proc_executor.run(add, 1, 2, releases_gil=False)) == 3

    def child() -> bool:
        try:
            return asyncio.run(proc_executor.run(add, 20, 22, releases_gil=False)) == 42
        finally:
            proc_executor.shutdown()  # os._exit skips exit handlers: stop its workers

    assert fork_child(child) == 0
    assert asyncio.run(proc_executor.run(add, 2, 3, releases_gil=False)) == 5  # still works


def test_forked_child_never_unlinks_the_parents_segments(
    proc_executor: CodecExecutor, fork_child: Callable[..., int]
) -> None:
    """A child that lets go of a shared buffer it inherited must not unlink the segment:
    the parent's worker processes still attach to it by name."""
    before = _my_segments()
    holder = [proc_executor.allocate((1024,), np.dtype("uint8"))]
    (name,) = _my_segments() - before

    def child() -> bool:
        holder.clear()  # the child's last reference to its copy of the mapping
        gc.collect()
        return True

    try:
        assert fork_child(child) == 0
        assert os.path.exists(_shm_path(name))
    finally:
        proc_executor.finalize(holder.pop())
    assert _my_segments() == before
