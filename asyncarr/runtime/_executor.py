"""The codec executor: where CPU-bound encode/decode work runs.

Modes (:attr:`asyncarr.config.ExecutorConfig.mode`):

``inline``
    ``fn(*args)`` is called directly on the event-loop thread. For tiny work
    and tests.
``threads``
    A pool of ``max_workers`` named threads (``asyncarr-codec-N``; by
    default as many as usable CPUs, at most :data:`DEFAULT_THREADS_CAP`). Parallel
    for codecs that release the GIL (zstd, blosc, zlib, lz4 in numcodecs).
``processes``
    A :class:`~concurrent.futures.ProcessPoolExecutor` started with
    ``forkserver`` (``spawn`` where that is missing; never plain ``fork``
    from a threaded process). numpy and numcodecs are imported once: by the
    forkserver (so workers, replacements after a crash included, fork warm)
    or by each ``spawn`` worker's initializer. Output buffers from
    :meth:`CodecExecutor.allocate` live in shared memory, and arrays viewing
    them - strided and reversed views included - travel to and from workers
    *by reference* (segment name, offset, shape, strides, dtype): workers
    write into them directly. Job *inputs* copied into a :meth:`CodecExecutor.staging`
    buffer (reused shared memory) travel the same way. Other arguments and results
    are pickled. A worker that dies raises
    :class:`~asyncarr.errors.WorkerCrashedError` for the jobs in flight and
    the pool is rebuilt for later calls. Workers die with the process that
    started them and change no store after it (:mod:`asyncarr._lifecycle`).
``auto`` (the default)
    Decided per job kind, from measurements:

    * one usable CPU: ``inline`` (no pool can help);
    * jobs marked ``releases_gil=True``: ``threads``;
    * jobs marked ``releases_gil=False`` are grouped into *profiles* (the
      ``profile=`` key given to :meth:`CodecExecutor.run` and
      :meth:`CodecExecutor.mode_for`; one shared default profile when
      omitted). A profile first runs on threads while the executor measures
      its *effective parallelism*: CPU seconds the jobs consumed per wall
      second during which any of them was pending (submission to result,
      so queueing and transport count). A measurement window is conclusive
      with at least :data:`MIN_SAMPLES` jobs, :data:`MIN_WINDOW_SECONDS` of
      such wall time and real concurrency offered by the callers (on
      average at least :data:`MIN_CONCURRENCY` jobs pending).

      - Threads reach :data:`MIN_GAIN`: the codec scales anyway (it was
        mislabelled) and stays on threads.
      - Otherwise the process pool is started and warmed off the event
        loop (jobs keep running on threads meanwhile), then the next jobs
        run in processes and are measured the same way, pickling and
        shared-memory transport included. The profile moves to processes
        only if that parallelism is at least :data:`MIN_GAIN` times what
        threads achieved, so small chunks whose transport overhead
        dominates stay on threads.
      - A phase still inconclusive after :data:`MAX_PROBE_JOBS` jobs (no
        concurrency offered, or jobs too tiny to matter) settles on threads.

      Jobs that give their ``units`` (the work in them, see :meth:`CodecExecutor.run`)
      are judged by units done per busy second instead of CPU parallelism (threads
      contending for the GIL burn CPU without progress): the threads phase always goes
      on to measure processes, which must reach :data:`MIN_THROUGHPUT_GAIN` times the
      threads' rate. The core marks batches of small chunks written to local files this
      way (``releases_gil=False`` with units) even for GIL-releasing codecs: per chunk
      they run more Python and system calls than codec. The first
      :data:`PROCESS_WARMUP_JOBS` jobs in the process pool are not measured.

      Decisions are final for the executor's lifetime;
      :meth:`CodecExecutor.decisions` reports them with the measurements.
      ``auto`` never uses processes when worker start-up would re-run the
      user's main script (no ``if __name__ == "__main__":`` guard, see
      :func:`main_module_is_reimport_safe`), nor in a process that
      ``multiprocessing`` started (a ``dask.distributed`` worker, which as a
      daemonic process may not start any, or a worker of dask's ``processes``
      scheduler, whose parent spreads the work already).

Only buffers handed out by :meth:`CodecExecutor.allocate` may be *written*
by jobs: a job that views a non-shared buffer from ``allocate`` never goes
to a worker process (it would write into a copy); it runs on a thread
instead. Functions (and arguments) for process mode must be picklable,
i.e. module-level functions; in ``auto`` mode anything unpicklable simply
stays on threads. As with any ``spawn``/``forkserver`` pool, scripts that
use ``processes`` mode need the usual ``if __name__ == "__main__":`` guard.

The executor is thread-safe and may be used from several event loops at once
(the sync portal's loop and users' loops): results are handed back to the
loop that awaited them.
"""

from __future__ import annotations

import asyncio
import contextlib
import multiprocessing
import multiprocessing.util
import os
import queue
import threading
import time
import weakref
from collections import deque
from collections.abc import Callable, Hashable, Iterator
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Literal, TypeVar

import numpy as np

from asyncarr._lifecycle import owner_lifeline
from asyncarr._tasks import Claim, await_unabandoned
from asyncarr.config import ExecutorConfig
from asyncarr.errors import ConfigError, WorkerCrashedError
from asyncarr.runtime import _shm
from asyncarr.runtime._shm import main_module_is_reimport_safe

__all__ = [
    "MAX_PROBE_JOBS",
    "MIN_CONCURRENCY",
    "MIN_GAIN",
    "MIN_SAMPLES",
    "MIN_THROUGHPUT_GAIN",
    "MIN_WINDOW_SECONDS",
    "AutoDecision",
    "CodecExecutor",
    "ResolvedMode",
    "get_executor",
    "main_module_is_reimport_safe",
    "set_executor",
    "usable_cpus",
]

R = TypeVar("R")
NDArray = np.ndarray[Any, np.dtype[Any]]
ResolvedMode = Literal["inline", "threads", "processes"]
_State = Literal["probe-threads", "warming", "probe-processes", "threads", "processes"]

MIN_GAIN = 1.3
"""Parallelism a mode must reach (threads) or gain over threads (processes)."""
PROCESS_WARMUP_JOBS = 8
"""The first jobs in the process pool, left out of its measurement: fresh workers pay
one-off costs (first mappings, codec contexts, input buffers not yet reused)."""
MIN_THROUGHPUT_GAIN = 1.2
"""Units per second processes must gain over threads, for jobs that give their units."""
MIN_CONCURRENCY = 1.4
"""Average number of pending jobs a measurement window needs to be conclusive."""
MIN_SAMPLES = 8
"""Fewest jobs in a conclusive measurement window."""
MIN_WINDOW_SECONDS = 0.1
"""Shortest wall time (jobs pending) of a conclusive window: outlasts scheduler noise."""
MAX_PROBE_JOBS = 256
"""Jobs after which an inconclusive probe phase settles on threads."""
MAX_PICKLE_FAILURES = 3
"""Jobs of a profile that may fail to pickle before it is pinned to threads."""

STAGING_KEEP = 16
"""Shared-memory input buffers (:meth:`CodecExecutor.staging`) kept for reuse, at most."""
STAGING_KEEP_BYTES = 64 << 20
"""Their total size, at most (``/dev/shm`` is 64 MB in a default Docker container; a
buffer that does not fit there sends its job's inputs pickled instead)."""
STAGING_MAX_BYTES = 16 << 20
"""Largest input buffer kept for reuse; larger ones are freed after their job."""

DEFAULT_THREADS_CAP = 8
"""Codec threads when ``max_workers`` is not set: ``min(usable CPUs, this)``.

Measured on a 16-core machine (``make bench-scaling``, 3 runs each): full
reads with 8 threads beat 16 (zstd 2252 vs 1902 MB/s, blosc 2768 vs 1568),
because per-chunk work that holds the GIL convoys the threads; past 8 they
mostly wait for it. Worker processes have no shared GIL and still default to
every usable CPU.
"""

_WARM_MODULES = ("numpy", "numcodecs", "asyncarr.codecs")


def usable_cpus() -> int:
    """CPUs this process may run on (affinity-aware)."""
    count: Callable[[], int | None] | None = getattr(os, "process_cpu_count", None)
    if count is not None:
        n = count()
    else:
        try:
            n = len(os.sched_getaffinity(0))
        except AttributeError:  # pragma: no cover - macOS, Windows
            n = os.cpu_count()
    return max(1, n or 1)


# --------------------------------------------------------------------------- thread pool


def _settle(fut: asyncio.Future[Any], result: Any, exc: BaseException | None) -> None:
    if fut.done():  # cancelled meanwhile
        return
    if isinstance(exc, StopIteration):  # a Future refuses it; coroutines convert it likewise
        err = RuntimeError("codec job raised StopIteration")
        err.__cause__ = exc
        fut.set_exception(err)
    elif exc is not None:
        fut.set_exception(exc)
    else:
        fut.set_result(result)


_Job = tuple[
    Callable[..., Any], tuple[Any, ...], asyncio.AbstractEventLoop, "asyncio.Future[Any]", Claim
]


def _timed(fn: Callable[..., R], args: tuple[Any, ...], cpu: list[float]) -> R:
    """Call ``fn(*args)`` and store the CPU seconds this thread spent in ``cpu[0]``."""
    c0 = time.thread_time()
    try:
        return fn(*args)
    finally:
        cpu[0] = time.thread_time() - c0


class _ThreadPool:
    """Fixed pool of named daemon threads draining one queue.

    Leaner than :class:`~concurrent.futures.ThreadPoolExecutor`: a job is a
    tuple on a :class:`queue.SimpleQueue` and its outcome goes straight to
    the awaiting loop with ``call_soon_threadsafe``.
    """

    def __init__(self, workers: int, prefix: str) -> None:
        self._queue: queue.SimpleQueue[_Job | None] = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._closed = False
        self._threads = [
            threading.Thread(target=self._work, name=f"{prefix}-{i}", daemon=True)
            for i in range(workers)
        ]
        for thread in self._threads:
            thread.start()

    def submit(self, job: _Job) -> None:
        with self._lock:
            if self._closed:
                raise RuntimeError("thread pool is shut down")
            self._queue.put(job)

    def shutdown(self, wait: bool) -> None:
        with self._lock:
            if self._closed:
                return
            self._closed = True
            for _ in self._threads:
                self._queue.put(None)
        if wait:
            me = threading.current_thread()
            for thread in self._threads:
                if thread is not me:
                    thread.join()

    def _work(self) -> None:
        get = self._queue.get
        while (job := get()) is not None:
            fn, args, loop, fut, claim = job
            del job
            result: Any = None
            error: BaseException | None = None
            if claim.start():  # not revoked by a cancelled caller (see await_unabandoned)
                try:
                    result = fn(*args)
                except BaseException as exc:
                    error = exc
            # Drop the job's references before the awaiting task can resume, and before this
            # thread waits for the next job: they may hold a read's whole output array.
            del fn, args
            if not fut.cancelled():
                try:
                    loop.call_soon_threadsafe(_settle, fut, result, error)
                except RuntimeError:  # the awaiting loop is closed: nobody wants the result
                    pass
            del loop, fut, result, error, claim


# --------------------------------------------------------------------------- auto policy


@dataclass(frozen=True, slots=True)
class AutoDecision:
    """Where ``auto`` mode runs one profile of GIL-holding jobs, and why."""

    profile: str
    state: str
    """``probe-threads``, ``warming``, ``probe-processes``, ``threads`` or ``processes``."""
    thread_parallelism: float | None
    process_parallelism: float | None
    reason: str
    thread_throughput: float | None = None
    """Units (see :meth:`CodecExecutor.run`) done per busy second on threads, for
    profiles whose jobs give them; ``process_throughput`` likewise."""
    process_throughput: float | None = None


_Sample = tuple[float, float, float, float]
"""One measured job: start, end, CPU seconds, units (0 where not given)."""


def _window_stats(samples: deque[_Sample]) -> tuple[float, float, float, float]:
    """``(parallelism, concurrency, busy seconds, units)`` of ``(start, end, cpu, units)``
    samples.

    Busy seconds is the wall time during which at least one job was pending;
    parallelism the CPU seconds used per busy second; concurrency the average
    number of jobs pending per busy second; units their sum.
    """
    union = 0.0
    busy = 0.0
    cpu = 0.0
    units = 0.0
    cur_start = cur_end = None
    for start, end, c, u in sorted(samples):
        busy += end - start
        cpu += c
        units += u
        if cur_end is None or start > cur_end:
            if cur_end is not None and cur_start is not None:
                union += cur_end - cur_start
            cur_start, cur_end = start, end
        else:
            cur_end = max(cur_end, end)
    if cur_end is not None and cur_start is not None:
        union += cur_end - cur_start
    if union <= 0:
        return 0.0, 0.0, 0.0, units
    return cpu / union, busy / union, union, units


class _Profile:
    """Measured routing of one kind of GIL-holding job in ``auto`` mode."""

    def __init__(self, key: Hashable, start_warmup: Callable[[_Profile], None]) -> None:
        self.key = key
        self._lock = threading.Lock()
        self._start_warmup = start_warmup
        self.state: _State = "probe-threads"
        self.samples: deque[_Sample] = deque(maxlen=MAX_PROBE_JOBS)
        self.jobs = 0
        self.thread_parallelism: float | None = None
        self.process_parallelism: float | None = None
        self.by_units = False
        """Jobs give their units: compare units per second, not CPU parallelism."""
        self.thread_throughput: float | None = None
        self.process_throughput: float | None = None
        self.reason = "measuring threads"
        self.pickle_failures = 0

    def route(self) -> tuple[ResolvedMode, _Profile | None]:
        """Mode for the next job and whether to measure it."""
        state = self.state
        if state == "probe-threads":
            return "threads", self
        if state == "probe-processes":
            return "processes", self
        if state == "processes":
            return "processes", None
        return "threads", None

    def _decide(self, state: _State, reason: str) -> None:
        self.state = state
        self.reason = reason
        self.samples.clear()

    def record(
        self, mode: ResolvedMode, start: float, end: float, cpu: float, units: float | None = None
    ) -> None:
        """Add one job's measurement; may move the profile to its next phase."""
        warm = False
        with self._lock:
            phase = "threads" if self.state == "probe-threads" else "processes"
            if self.state not in ("probe-threads", "probe-processes") or mode != phase:
                return  # a straggler from an earlier phase
            self.by_units = self.by_units or units is not None
            self.jobs += 1
            if phase == "processes" and self.jobs <= PROCESS_WARMUP_JOBS:
                return  # fresh workers pay one-off costs: not what later jobs will see
            self.samples.append((start, end, cpu, units or 0.0))
            parallelism, concurrency, seconds, done = _window_stats(self.samples)
            if (
                len(self.samples) >= MIN_SAMPLES
                and seconds >= MIN_WINDOW_SECONDS
                and concurrency >= MIN_CONCURRENCY
            ):
                if self.by_units:
                    warm = self._decide_by_throughput(phase, parallelism, done / seconds)
                elif phase == "threads":
                    self.thread_parallelism = parallelism
                    if parallelism >= MIN_GAIN:
                        self._decide("threads", f"threads scale ({parallelism:.2f}x)")
                    else:
                        self._decide("warming", "starting the process pool")
                        self.jobs = 0
                        warm = True
                else:
                    self.process_parallelism = parallelism
                    base = self.thread_parallelism or 1.0
                    if parallelism >= MIN_GAIN * base:
                        self._decide(
                            "processes",
                            f"processes {parallelism:.2f}x vs threads {base:.2f}x",
                        )
                    else:
                        self._decide(
                            "threads",
                            f"process gain too small ({parallelism:.2f}x vs threads {base:.2f}x)",
                        )
            elif self.jobs >= MAX_PROBE_JOBS:
                self._decide(
                    "threads",
                    f"inconclusive after {self.jobs} jobs (concurrency {concurrency:.2f}, "
                    f"{seconds * 1000:.0f} ms busy)",
                )
        if warm:
            self._start_warmup(self)

    def _decide_by_throughput(self, phase: str, parallelism: float, rate: float) -> bool:
        """The decision for jobs that give their units (see :meth:`record`): processes must
        do :data:`MIN_THROUGHPUT_GAIN` times the units per second threads did. (CPU
        parallelism misleads here: threads that contend for the GIL burn CPU handing it
        over.) Returns whether to start warming the process pool."""
        if phase == "threads":
            self.thread_parallelism = parallelism
            self.thread_throughput = rate
            self._decide("warming", "starting the process pool")
            self.jobs = 0
            return True
        self.process_parallelism = parallelism
        self.process_throughput = rate
        base = self.thread_throughput or 0.0
        verdict = f"processes {rate:.0f} vs threads {base:.0f} units/s"
        if rate >= MIN_THROUGHPUT_GAIN * base:
            self._decide("processes", verdict)
        else:
            self._decide("threads", f"process gain too small ({verdict})")
        return False

    def warmed(self, ok: bool) -> None:
        """The process pool is ready (or failed to start)."""
        with self._lock:
            if self.state != "warming":
                return
            if ok:
                self.state = "probe-processes"
                self.reason = "measuring processes"
            else:
                self._decide("threads", "the process pool failed to start")

    def pickle_failed(self, reason: str) -> None:
        """A job could not be sent to a process; repeated failures pin threads."""
        with self._lock:
            self.pickle_failures += 1
            if self.pickle_failures >= MAX_PICKLE_FAILURES:
                self._decide("threads", reason)

    def decision(self) -> AutoDecision:
        with self._lock:
            return AutoDecision(
                _describe(self.key),
                self.state,
                self.thread_parallelism,
                self.process_parallelism,
                self.reason,
                self.thread_throughput,
                self.process_throughput,
            )


def _noop() -> None:
    """Placeholder finalizer callback."""


def _describe(key: Hashable) -> str:
    if key is None:
        return "default"
    module = getattr(key, "__module__", None)
    qualname = getattr(key, "__qualname__", None)
    if isinstance(module, str) and isinstance(qualname, str):
        return f"{module}.{qualname}"
    return repr(key)


# --------------------------------------------------------------------------- executor


class CodecExecutor:
    """Runs CPU-bound codec work inline, on threads or in worker processes.

    See the module documentation for the modes and the ``auto`` policy.
    ``mp_context`` overrides the process start method (``"forkserver"`` or
    ``"spawn"``; ``"fork"`` is refused). ``warm_modules`` are imported by
    every worker process when it starts, besides numpy and numcodecs.
    """

    def __init__(
        self,
        config: ExecutorConfig | None = None,
        *,
        mp_context: str | None = None,
        warm_modules: tuple[str, ...] = (),
    ) -> None:
        self._config = config if config is not None else ExecutorConfig()
        self._cpus = usable_cpus()
        self._workers = self._config.max_workers or min(self._cpus, DEFAULT_THREADS_CAP)
        self._process_workers = self._config.max_workers or self._cpus
        if mp_context is None:
            methods = multiprocessing.get_all_start_methods()
            mp_context = "forkserver" if "forkserver" in methods else "spawn"
        if mp_context not in ("forkserver", "spawn"):
            raise ConfigError(
                f"mp_context must be 'forkserver' or 'spawn' (never 'fork'), got {mp_context!r}"
            )
        self._mp_context = mp_context
        mode = self._config.mode
        # A daemonic process (a dask.distributed worker, a multiprocessing pool's) may not
        # start processes of its own: worker processes are out of the question there. In
        # any other worker process (dask's "processes" scheduler) ``auto`` stays on threads
        # too: its parent already spreads the work over processes.
        daemonic = multiprocessing.current_process().daemon
        in_a_worker = multiprocessing.parent_process() is not None
        if mode == "processes" and daemonic:
            raise ConfigError(
                "executor mode 'processes' cannot start codec worker processes from this "
                "daemonic process (a dask.distributed worker, or a multiprocessing pool's): "
                "use mode 'threads' or 'auto' here"
            )
        self._inline = mode == "inline" or (mode == "auto" and self._cpus <= 1)
        self._auto = mode == "auto" and not self._inline
        self._processes_possible = mode == "processes" or (
            self._auto
            and self._process_workers > 1
            and not in_a_worker
            and main_module_is_reimport_safe()
        )
        self._lock = threading.Lock()
        self._threads: _ThreadPool | None = None
        self._threads_finalizer: weakref.finalize[Any, Any] = weakref.finalize(self, _noop)
        self._procs: ProcessPoolExecutor | None = None
        self._profiles: dict[Hashable, _Profile] = {}
        self._warm_modules = _WARM_MODULES + tuple(warm_modules)
        self._staging: list[NDArray] = []
        _all_executors.add(self)

    def __repr__(self) -> str:
        return (
            f"CodecExecutor(mode={self._config.mode!r}, workers={self._workers}, "
            f"mp_context={self._mp_context!r})"
        )

    @property
    def config(self) -> ExecutorConfig:
        """The configuration this executor was built from."""
        return self._config

    @property
    def max_workers(self) -> int:
        """Codec threads (worker processes: ``config.max_workers``, else every usable CPU)."""
        return self._workers

    # ----------------------------------------------------------------- routing

    def _profile(self, key: Hashable) -> _Profile:
        profile = self._profiles.get(key)
        if profile is None:
            with self._lock:
                profile = self._profiles.setdefault(key, _Profile(key, self._warm_processes))
        return profile

    def _route(self, releases_gil: bool, key: Hashable) -> tuple[ResolvedMode, _Profile | None]:
        if self._inline:
            return "inline", None
        mode = self._config.mode
        if mode != "auto":
            return mode, None
        if releases_gil or not self._processes_possible:
            return "threads", None
        return self._profile(key).route()

    def mode_for(self, releases_gil: bool, *, profile: Hashable = None) -> ResolvedMode:
        """The mode the next job of this kind would run in.

        In ``auto`` mode GIL-holding jobs are routed per ``profile`` (the
        same key as given to :meth:`run`); a profile not seen yet starts on
        threads. Pass the answer to :meth:`run` as ``mode=`` to prepare
        arguments for exactly that mode.
        """
        if self._auto and not releases_gil and self._processes_possible:
            existing = self._profiles.get(profile)
            return existing.route()[0] if existing is not None else "threads"
        return self._route(releases_gil, profile)[0]

    def decisions(self) -> list[AutoDecision]:
        """The ``auto`` mode's per-profile decisions and the measurements behind them."""
        with self._lock:
            profiles = list(self._profiles.values())
        return [p.decision() for p in profiles]

    # ----------------------------------------------------------------- running

    async def run(
        self,
        fn: Callable[..., R],
        *args: Any,
        releases_gil: bool = True,
        profile: Hashable = None,
        mode: ResolvedMode | None = None,
        units: float | None = None,
    ) -> R:
        """Run ``fn(*args)`` in the resolved mode and return its result.

        Exceptions raised by ``fn`` propagate with their type (from a worker
        process, with the remote traceback as ``__cause__``). ``fn`` must be
        a module-level function for process mode. ``profile`` groups jobs for
        the ``auto`` measurements; ``mode`` (e.g. from :meth:`mode_for`) pins
        the mode instead of resolving it now. ``units`` (the work in the job, e.g.
        its chunks) has ``auto`` compare the modes by units done per second
        rather than by CPU parallelism; give it for every job of the profile.
        """
        routed, probe = self._route(releases_gil, profile)
        if mode is None:
            mode = routed
        elif mode not in ("inline", "threads", "processes"):
            raise ConfigError(f"mode must be inline, threads or processes, got {mode!r}")
        elif mode != routed:
            probe = None
        if mode == "inline":
            return fn(*args)
        if mode == "processes":
            outcome = await self._run_in_process(fn, args, profile, probe, units)
            if outcome is not _ON_THREADS:
                return outcome  # type: ignore[no-any-return]
            probe = None
        return await self._run_in_thread(fn, args, probe, units)

    async def _run_in_thread(
        self,
        fn: Callable[..., R],
        args: tuple[Any, ...],
        probe: _Profile | None,
        units: float | None = None,
    ) -> R:
        if probe is not None:
            cpu = [0.0]
            start = time.perf_counter()
            result: R = await self._run_in_thread(_timed, (fn, args, cpu), None)
            probe.record("threads", start, time.perf_counter(), cpu[0], units)
            return result
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[R] = loop.create_future()
        claim = Claim()
        job: _Job = (fn, args, loop, fut, claim)
        pool = self._threads or self._thread_pool()
        try:
            pool.submit(job)
        except RuntimeError:  # shut down concurrently: start afresh
            self._thread_pool(replace=pool).submit(job)
        # cancelled, a job already running is waited for: its chunks land before we return
        return await await_unabandoned(fut, claim.revoke)

    def _thread_pool(self, replace: _ThreadPool | None = None) -> _ThreadPool:
        with self._lock:
            if self._threads is None or self._threads is replace:
                pool = _ThreadPool(self._workers, "asyncarr-codec")
                # idle threads must not outlive an executor that is dropped without shutdown()
                self._threads_finalizer.detach()
                self._threads_finalizer = weakref.finalize(self, pool.shutdown, False)
                self._threads = pool
            return self._threads

    def _process_pool(self) -> ProcessPoolExecutor:
        with self._lock:
            if self._procs is None:
                if self._mp_context == "forkserver":
                    _shm.preload_forkserver(self._warm_modules)
                self._procs = ProcessPoolExecutor(
                    max_workers=self._process_workers,
                    mp_context=multiprocessing.get_context(self._mp_context),
                    initializer=_shm.warm_worker,
                    initargs=(self._warm_modules, owner_lifeline(), self._mp_context),
                )
                # Shut the pool down when this process exits, before multiprocessing joins
                # its children: in a process that multiprocessing started (a dask worker)
                # the exit joins them first, and the pool's workers would wait forever.
                # Priority 20: before the pool's queues stop their feeder threads (10).
                multiprocessing.util.Finalize(
                    self._procs, _shut_down, (weakref.ref(self._procs),), exitpriority=20
                )
            return self._procs

    def _discard_process_pool(self, pool: ProcessPoolExecutor) -> None:
        with self._lock:
            if self._procs is pool:
                self._procs = None
        pool.shutdown(wait=False, cancel_futures=True)

    def _submit(self, payload: bytes) -> tuple[ProcessPoolExecutor, Future[Any]]:
        for attempt in range(2):
            pool = self._process_pool()
            try:
                return pool, pool.submit(_shm.worker_call, payload)
            except (BrokenProcessPool, RuntimeError) as exc:
                # the job never started: rebuild the pool and try once more
                self._discard_process_pool(pool)
                if attempt:
                    raise WorkerCrashedError(f"cannot start codec worker processes: {exc}") from exc
        raise AssertionError("unreachable")  # pragma: no cover

    async def _run_in_process(
        self,
        fn: Callable[..., Any],
        args: tuple[Any, ...],
        key: Hashable,
        probe: _Profile | None,
        units: float | None = None,
    ) -> Any:
        start = time.perf_counter()
        try:
            payload = _shm.dumps((fn, args))
        except _shm.PrivateBufferError:
            return _ON_THREADS
        except Exception as exc:
            if self._auto:
                self._profile(key).pickle_failed(
                    f"cannot send jobs to processes: {type(exc).__name__}: {exc}"
                )
                return _ON_THREADS
            raise ConfigError(
                f"process mode needs a picklable, module-level function and arguments; "
                f"{_describe(fn)} failed to pickle: {type(exc).__name__}: {exc}"
            ) from exc
        pool, cf = self._submit(payload)
        try:
            # cancelled, a job a worker already took is waited for (see _run_in_thread)
            ok, body, cpu = await await_unabandoned(asyncio.wrap_future(cf), cf.cancel)
        except BrokenProcessPool as exc:
            self._discard_process_pool(pool)
            raise WorkerCrashedError(
                f"a codec worker process died while running {_describe(fn)}; "
                "the pool is rebuilt for later calls"
            ) from exc
        if not ok:
            raise _shm.load_exception(body)
        result = _shm.loads(body)
        if probe is not None:
            probe.record("processes", start, time.perf_counter(), cpu, units)
        return result

    def _warm_processes(self, profile: _Profile) -> None:
        """Start and warm the process pool off the event loop, then let ``profile`` probe it."""

        def warm() -> None:
            try:
                seen: set[int] = set()
                for _ in range(20):
                    pool = self._process_pool()
                    futures = [
                        pool.submit(_shm.worker_pid, 0.02) for _ in range(self._process_workers)
                    ]
                    seen.update(f.result(timeout=120) for f in futures)
                    if len(seen) >= self._process_workers:
                        break
            except Exception:
                profile.warmed(ok=False)
            else:
                profile.warmed(ok=True)

        threading.Thread(target=warm, name="asyncarr-codec-warmup", daemon=True).start()

    # ----------------------------------------------------------------- buffers

    def _may_use_processes(self) -> bool:
        if self._config.mode == "processes":
            return True
        if not (self._auto and self._processes_possible):
            return False
        with self._lock:
            profiles = list(self._profiles.values())
        return any(p.state in ("warming", "probe-processes", "processes") for p in profiles)

    def allocate(
        self,
        shape: tuple[int, ...],
        dtype: np.dtype[Any],
        *,
        order: str = "C",
        shared: bool | None = None,
        unguarded: bool = False,
    ) -> NDArray:
        """An uninitialised output buffer for decoded data.

        With ``shared=True`` - or ``shared=None`` when process mode may run
        the jobs - it lives in shared memory so worker processes write into
        it (and views of it) directly. Otherwise it is a plain ``np.empty``,
        registered so that a job viewing it is never sent to a process (it
        would write into a copy). ``unguarded=True`` skips that registration
        (a few microseconds per buffer, which matter for single-chunk reads):
        only for callers that pin every job writing the buffer to ``inline``
        or ``threads``. Pass every buffer to :meth:`finalize` once all jobs
        writing it are done.
        """
        dtype = np.dtype(dtype)
        shape = tuple(int(s) for s in shape)
        if order != "C" and order != "F":
            raise ConfigError(f"order must be 'C' or 'F', got {order!r}")
        layout: Literal["C", "F"] = "C" if order == "C" else "F"
        if any(s < 0 for s in shape):
            raise ConfigError(f"buffer shape must not be negative, got {shape!r}")
        want = self._may_use_processes() if shared is None else shared
        if want and dtype.hasobject:
            if shared:
                raise ConfigError(f"dtype {dtype} holds Python objects; it cannot be shared")
            want = False
        if want and 0 not in shape:
            if shared:
                return _shm.create_array(shape, dtype, layout)
            if _shm.SHM_SUPPORTED:
                try:
                    return _shm.create_array(shape, dtype, layout)
                except ConfigError:  # /dev/shm too small: threads will do the work
                    pass
        arr: NDArray = np.empty(shape, dtype, order=layout)
        if self._processes_possible and not dtype.hasobject and not unguarded:
            _shm.register_private(arr)
        return arr

    @contextlib.contextmanager
    def staging(self, nbytes: int) -> Iterator[NDArray | None]:
        """A shared-memory ``uint8`` buffer of ``nbytes`` for a job's *inputs*, or ``None``
        where there is no shared memory (send the data by value then).

        Copy a job's input into it and pass views of it to :meth:`run`: worker
        processes read it in place, where inputs sent by value are pickled and piped
        to them (measured: 16 KB chunks written at 200 vs 470 MB/s on 2 cores). Up to
        :data:`STAGING_KEEP` buffers (:data:`STAGING_KEEP_BYTES` in all) of at most
        :data:`STAGING_MAX_BYTES` each are kept for reuse, so their memory is not faulted
        in anew for every job. A buffer goes back for reuse only when the block ends
        normally; after an error or a cancellation it is dropped, as a precaution (the
        job has ended by then: :meth:`run` waits for a job a worker took, even when
        cancelled).
        """
        buf: NDArray | None = None
        with self._lock:
            for i, kept in enumerate(self._staging):
                if kept.nbytes == nbytes:
                    buf = self._staging.pop(i)
                    break
        if buf is None and _shm.SHM_SUPPORTED and nbytes > 0:
            try:
                buf = _shm.create_array((nbytes,), np.dtype(np.uint8), "C")
            except (ConfigError, OSError):
                buf = None
        yield buf
        if buf is not None and nbytes <= STAGING_MAX_BYTES:
            with self._lock:
                self._staging.append(buf)
                del self._staging[:-STAGING_KEEP]
                while sum(b.nbytes for b in self._staging) > STAGING_KEEP_BYTES:
                    del self._staging[0]

    def finalize(self, arr: NDArray) -> NDArray:
        """Hand an :meth:`allocate` buffer over to the caller for good.

        Unlinks its shared-memory segment (the mapping, and so ``arr``, stays
        valid without a copy) and returns ``arr``. Call it on error paths
        too; calling it twice, or on any other array, is harmless.
        """
        _shm.release(arr)
        return arr

    # ----------------------------------------------------------------- lifecycle

    def _after_fork(self) -> None:
        """In a forked child: the pools' threads and processes belong to the parent (only
        the forking thread survives a fork), so forget them; the next job starts new ones."""
        self._lock = threading.Lock()
        self._threads = None
        self._threads_finalizer.detach()
        self._threads_finalizer = weakref.finalize(self, _noop)
        self._procs = None
        self._staging = []

    def shutdown(self, wait: bool = True) -> None:
        """Stop the worker threads and processes; a later :meth:`run` starts new ones."""
        with self._lock:
            threads, self._threads = self._threads, None
            procs, self._procs = self._procs, None
            self._staging.clear()
        if threads is not None:
            threads.shutdown(wait)
            self._threads_finalizer.detach()
        if procs is not None:
            procs.shutdown(wait=wait)

    async def aclose(self) -> None:
        """:meth:`shutdown` without blocking the event loop."""
        await asyncio.to_thread(self.shutdown)

    def __enter__(self) -> CodecExecutor:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.shutdown()

    async def __aenter__(self) -> CodecExecutor:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()


def _shut_down(pool_ref: weakref.ref[ProcessPoolExecutor]) -> None:
    pool = pool_ref()
    if pool is not None:
        pool.shutdown(wait=True, cancel_futures=True)


_ON_THREADS: Any = object()
"""Sentinel: the job cannot go to a process; run it on a thread."""

_all_executors: weakref.WeakSet[CodecExecutor] = weakref.WeakSet()


def _after_fork_in_child() -> None:
    global _default_lock
    _default_lock = threading.Lock()
    for executor in list(_all_executors):
        executor._after_fork()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)

# --------------------------------------------------------------------------- default executor

_default: CodecExecutor | None = None
_default_owned = False
_default_lock = threading.Lock()


def get_executor() -> CodecExecutor:
    """The process-wide default executor, created on first use."""
    global _default, _default_owned
    executor = _default
    if executor is None:
        with _default_lock:
            if _default is None:
                _default = CodecExecutor(ExecutorConfig())
                _default_owned = True
            executor = _default
    return executor


def set_executor(config: ExecutorConfig | CodecExecutor | None) -> None:
    """Replace the default executor.

    Give a config to build one, a ready :class:`CodecExecutor` (which the
    caller keeps owning), or ``None`` to go back to a lazily created default.
    A previous default built here is shut down (running jobs finish).
    """
    global _default, _default_owned
    if config is not None and not isinstance(config, ExecutorConfig | CodecExecutor):
        raise ConfigError(
            f"set_executor expects an ExecutorConfig, a CodecExecutor or None, got {config!r}"
        )
    new = CodecExecutor(config) if isinstance(config, ExecutorConfig) else config
    with _default_lock:
        old, old_owned = _default, _default_owned
        _default = new
        _default_owned = isinstance(config, ExecutorConfig)
    if old is not None and old_owned and old is not new:
        old.shutdown(wait=False)
