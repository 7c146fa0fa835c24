"""``FaultyStore``: a fault-injection wrapper around any :class:`Store`.

For testing retry, throttling and integrity handling (ours and users')::

    store = FaultyStore(MemoryStore(), seed=7)
    store.fail(ops="get", keys="data/c/*", rate=0.2)          # TransientStoreError
    store.throttle(rate=0.1)                                  # ThrottledError on any op
    store.delay(ops="read", seconds=(0.01, 0.05))
    store.truncate(rate=0.05, keep_fraction=0.5)
    ...
    store.stats.injected["fail"], store.stats.calls["get"]

Rules are checked in the order they were added, each matching call drawing
from that rule's own random generator (seeded from ``seed`` and the rule's
position), so a given sequence of calls gets the same faults on every run.
``times`` caps how often a rule fires. Everything else is delegated to the
wrapped store, except that :attr:`endpoint_key` is the wrapper's own (its
concurrency budget is separate from the inner store's) and
:attr:`supports_local_files` is ``False`` (so every read passes through the
wrapper).

**Truncation** models a body that ends early. For a :class:`ByteRange`
request the caller knows how many bytes to expect, but an adapter cannot
tell a cut-off range from a range that runs past the end of the value, so
the wrapper returns the first ``keep_fraction`` of the bytes (for
``get_ranges`` of byte ranges only: of the last non-empty part), and the
caller must detect the short read. For a full ``get`` or an open-ended range
(:class:`OffsetRange`, :class:`SuffixRange`) a real adapter compares the
body with its ``Content-Length`` and raises :class:`TruncatedReadError`; so
does the wrapper, after the inner read succeeded. Missing keys and empty
values are never truncated (nor counted).
"""

from __future__ import annotations

import asyncio
import contextlib
import fnmatch
import random
from collections import Counter
from collections.abc import AsyncIterator, Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, TypeAlias, cast

from asyncarr._types import ByteRange, RangeRequest, Versioned
from asyncarr.abc import Store
from asyncarr.config import StoreLimits
from asyncarr.errors import (
    ConfigError,
    StoreError,
    ThrottledError,
    TransientStoreError,
    TruncatedReadError,
)

__all__ = ["ALL_OPS", "FaultRule", "FaultStats", "FaultyStore"]

READ_OPS = ("get", "get_ranges", "get_versioned", "exists", "getsize")
WRITE_OPS = ("set", "set_if_not_exists", "set_if_version", "delete", "delete_prefix")
LIST_OPS = ("list_prefix", "list_dir")
ALL_OPS = READ_OPS + WRITE_OPS + LIST_OPS
"""Operation names rules can target (also the groups ``"read"``, ``"write"``,
``"list"`` and ``"*"``)."""
_GROUPS = {"read": READ_OPS, "write": WRITE_OPS, "list": LIST_OPS, "*": ALL_OPS, "all": ALL_OPS}

KeyMatcher: TypeAlias = str | Callable[[str], bool] | None
"""A glob (``fnmatch``, ``*`` also crosses ``/``), a predicate, or ``None`` for every key.
List operations match against their prefix."""
ErrorSpec: TypeAlias = type[BaseException] | BaseException | Callable[[str, str], BaseException]


def _ops(ops: str | Iterable[str], *, allowed: Sequence[str] = ALL_OPS) -> frozenset[str]:
    names = [ops] if isinstance(ops, str) else list(ops)
    out: set[str] = set()
    for name in names:
        group = _GROUPS.get(name, (name,))
        bad = [n for n in group if n not in allowed]
        if bad:
            raise ConfigError(f"unknown or unsupported operation {name!r}; choose from {allowed}")
        out.update(group)
    if not out:
        raise ConfigError("a fault rule needs at least one operation")
    return frozenset(out)


def _check_rate(rate: float) -> float:
    if not 0.0 <= rate <= 1.0:
        raise ConfigError(f"rate must be in [0, 1], got {rate!r}")
    return float(rate)


@dataclass(eq=False)
class FaultRule:
    """One injection rule; returned by :meth:`FaultyStore.fail` and friends."""

    kind: Literal["fail", "delay", "truncate"]
    label: str
    """The counter name in :attr:`FaultStats.injected` (``fail``, ``throttle``, ...)."""
    ops: frozenset[str]
    keys: KeyMatcher
    rate: float
    times: int | None
    rng: random.Random = field(repr=False)
    error: ErrorSpec = TransientStoreError
    when: Literal["before", "after"] = "before"
    seconds: tuple[float, float] = (0.0, 0.0)
    keep_fraction: float = 0.5
    injected: int = 0
    """How often this rule has fired."""

    def matches(self, op: str, key: str) -> bool:
        if op not in self.ops:
            return False
        if self.keys is None:
            return True
        if isinstance(self.keys, str):
            return fnmatch.fnmatchcase(key, self.keys)
        return bool(self.keys(key))

    def fire(self) -> bool:
        """Decide (and count) whether this matching call gets the fault."""
        if self.times is not None and self.injected >= self.times:
            return False
        if self.rate < 1.0 and self.rng.random() >= self.rate:
            return False
        self.injected += 1
        return True

    def make_error(self, op: str, key: str, store: Store) -> BaseException:
        spec = self.error
        message = f"injected {self.label} fault on {op}"
        if isinstance(spec, BaseException):
            return spec
        if isinstance(spec, type):
            if issubclass(spec, StoreError):
                return spec(message, store=store, key=key or None)
            return cast(type[BaseException], spec)(message)
        return spec(op, key)


@dataclass
class FaultStats:
    """Counters of a :class:`FaultyStore` (shared with its read-only views)."""

    calls: Counter[str] = field(default_factory=Counter)
    """Calls per operation name, faulted or not."""
    injected: Counter[str] = field(default_factory=Counter)
    """Injected faults per rule label (``fail``, ``throttle``, ``delay``, ``truncate``)."""
    by_op: Counter[tuple[str, str]] = field(default_factory=Counter)
    """Injected faults per ``(label, operation)``."""

    def reset(self) -> None:
        self.calls.clear()
        self.injected.clear()
        self.by_op.clear()


class _State:
    def __init__(self, seed: int | None) -> None:
        self.seed = seed
        self.rules: list[FaultRule] = []
        self.stats = FaultStats()
        self.created = 0


class FaultyStore(Store):
    """Wraps ``inner`` and injects failures, delays and truncated reads by rule.

    ``seed`` makes the injected faults reproducible; ``close_inner`` (default
    ``True``) closes the wrapped store in :meth:`aclose`; ``limits`` default to
    the inner store's.
    """

    def __init__(
        self,
        inner: Store,
        *,
        seed: int | None = None,
        limits: StoreLimits | None = None,
        close_inner: bool = True,
        _state: _State | None = None,
    ) -> None:
        super().__init__(read_only=inner.read_only, limits=limits or inner.limits)
        self._inner = inner
        self._state = _state if _state is not None else _State(seed)
        self._close_inner = close_inner

    # -- rules --------------------------------------------------------------------
    def _add(self, **kwargs: Any) -> FaultRule:
        state = self._state
        seed = state.seed
        rng = random.Random(f"{seed}/{state.created}") if seed is not None else random.Random()
        state.created += 1
        if kwargs["times"] is not None and kwargs["times"] < 0:
            raise ConfigError(f"times must be >= 0 or None, got {kwargs['times']!r}")
        rule = FaultRule(rng=rng, **kwargs)
        state.rules.append(rule)
        return rule

    def fail(
        self,
        ops: str | Iterable[str] = "*",
        keys: KeyMatcher = None,
        rate: float = 1.0,
        error: ErrorSpec = TransientStoreError,
        times: int | None = None,
        *,
        when: Literal["before", "after"] = "before",
    ) -> FaultRule:
        """Raise ``error`` from matching calls.

        ``error`` is an exception class (store errors get ``store`` and
        ``key``), an instance, or ``callable(op, key) -> exception``. With
        ``when="after"`` the inner operation runs first and its result is then
        lost, as when a write succeeds but the response never arrives.
        """
        if when not in ("before", "after"):
            raise ConfigError(f"when must be 'before' or 'after', got {when!r}")
        return self._add(
            kind="fail",
            label="fail",
            ops=_ops(ops),
            keys=keys,
            rate=_check_rate(rate),
            times=times,
            error=error,
            when=when,
        )

    def throttle(
        self,
        rate: float = 1.0,
        ops: str | Iterable[str] = "*",
        keys: KeyMatcher = None,
        times: int | None = None,
    ) -> FaultRule:
        """Raise :class:`ThrottledError` (S3 ``503 SlowDown``, HTTP 429) from matching calls."""
        return self._add(
            kind="fail",
            label="throttle",
            ops=_ops(ops),
            keys=keys,
            rate=_check_rate(rate),
            times=times,
            error=ThrottledError,
        )

    def delay(
        self,
        ops: str | Iterable[str] = "*",
        seconds: float | tuple[float, float] = 0.05,
        rate: float = 1.0,
        keys: KeyMatcher = None,
        times: int | None = None,
    ) -> FaultRule:
        """Sleep ``seconds`` (or a uniform random time in ``(min, max)``) before matching calls."""
        span = seconds if isinstance(seconds, tuple) else (seconds, seconds)
        if len(span) != 2 or not 0 <= span[0] <= span[1]:
            raise ConfigError(f"seconds must be >= 0 or a (min, max) pair, got {seconds!r}")
        return self._add(
            kind="delay",
            label="delay",
            ops=_ops(ops),
            keys=keys,
            rate=_check_rate(rate),
            times=times,
            seconds=span,
        )

    def truncate(
        self,
        ops: str | Iterable[str] = ("get",),
        rate: float = 1.0,
        keep_fraction: float = 0.5,
        keys: KeyMatcher = None,
        times: int | None = None,
    ) -> FaultRule:
        """Cut bodies of matching reads short (see the module docs for what the caller sees)."""
        if not 0.0 <= keep_fraction < 1.0:
            raise ConfigError(f"keep_fraction must be in [0, 1), got {keep_fraction!r}")
        return self._add(
            kind="truncate",
            label="truncate",
            ops=_ops(ops, allowed=("get", "get_ranges")),
            keys=keys,
            rate=_check_rate(rate),
            times=times,
            keep_fraction=keep_fraction,
        )

    @property
    def rules(self) -> list[FaultRule]:
        """The active rules, in the order they are applied (a copy)."""
        return list(self._state.rules)

    def remove(self, rule: FaultRule) -> None:
        """Deactivate one rule (no-op if it is not active)."""
        if rule in self._state.rules:
            self._state.rules.remove(rule)

    def clear(self) -> None:
        """Remove every rule; :attr:`stats` are kept (see :meth:`FaultStats.reset`)."""
        self._state.rules.clear()

    @property
    def stats(self) -> FaultStats:
        return self._state.stats

    @property
    def inner(self) -> Store:
        """The wrapped store."""
        return self._inner

    # -- identity and capabilities ------------------------------------------------------
    @property
    def location(self) -> str | None:
        return self._inner.location

    @property
    def endpoint_key(self) -> str:
        return f"faulty:{id(self._state):x}"

    @property
    def supports_listing(self) -> bool:
        return self._inner.supports_listing

    @property
    def lists_every_key(self) -> bool:
        return self._inner.lists_every_key

    @property
    def supports_conditional_writes(self) -> bool:
        return self._inner.supports_conditional_writes

    def _reopen_arguments(self) -> tuple[tuple[Any, ...], dict[str, Any]]:
        """Pickled with the inner store (pickled in turn), its rules, their random
        generators and the counters as they are now: the copy injects the same faults from
        there on, counting on its own."""
        kwargs = {"limits": self.limits, "close_inner": self._close_inner, "_state": self._state}
        return (self._inner,), kwargs

    def with_read_only(self, read_only: bool = True) -> FaultyStore:
        """The inner store's view, wrapped with the same rules and counters."""
        return FaultyStore(
            self._inner.with_read_only(read_only),
            limits=self.limits,
            close_inner=self._close_inner,
            _state=self._state,
        )

    def operation(self, name: str, *, write: bool) -> contextlib.AbstractAsyncContextManager[None]:
        """The inner store's operation (a layered container's commit, say): the calls made
        through the wrapper inside it belong to it."""
        return self._inner.operation(name, write=write)

    def __repr__(self) -> str:
        return f"FaultyStore({self._inner!r}, rules={len(self._state.rules)})"

    __str__ = __repr__

    # -- the injection points ---------------------------------------------------------------
    def _record(self, rule: FaultRule, op: str) -> None:
        self._state.stats.injected[rule.label] += 1
        self._state.stats.by_op[(rule.label, op)] += 1

    async def _before(self, op: str, key: str) -> list[FaultRule]:
        """Count the call, apply delays and up-front failures; the rules to apply afterwards."""
        self._state.stats.calls[op] += 1
        later: list[FaultRule] = []
        for rule in list(self._state.rules):
            if not rule.matches(op, key):
                continue
            if rule.kind == "delay":
                if rule.fire():
                    self._record(rule, op)
                    await asyncio.sleep(rule.rng.uniform(*rule.seconds))
            elif rule.kind == "fail" and rule.when == "before":
                if rule.fire():
                    self._record(rule, op)
                    raise rule.make_error(op, key, self)
            else:
                later.append(rule)
        return later

    def _after(self, op: str, key: str, later: list[FaultRule]) -> None:
        for rule in later:
            if rule.kind == "fail" and rule.fire():
                self._record(rule, op)
                raise rule.make_error(op, key, self)

    def _truncated(
        self, op: str, key: str, later: list[FaultRule], data: bytes, known: bool
    ) -> bytes:
        """``data`` cut short (``known``: the caller knows the length) or an error."""
        for rule in later:
            if rule.kind != "truncate" or not data or not rule.fire():
                continue
            self._record(rule, op)
            kept = int(len(data) * rule.keep_fraction)
            if known:
                return data[:kept]
            raise TruncatedReadError(
                f"injected truncation on {op}: body ended after {kept} of {len(data)} bytes",
                store=self,
                key=key,
            )
        return data

    # -- reads ------------------------------------------------------------------------------
    async def get(
        self, key: str, byte_range: RangeRequest | None = None, *, max_size: int | None = None
    ) -> bytes | None:
        later = await self._before("get", key)
        data = await self._inner.get(key, byte_range, max_size=max_size)
        self._after("get", key, later)
        if data is None:
            return None
        return self._truncated("get", key, later, data, isinstance(byte_range, ByteRange))

    async def get_ranges(self, key: str, ranges: Sequence[RangeRequest]) -> list[bytes] | None:
        later = await self._before("get_ranges", key)
        parts = await self._inner.get_ranges(key, ranges)
        self._after("get_ranges", key, later)
        if parts is None:
            return None
        known = all(isinstance(r, ByteRange) for r in ranges)
        last = max((i for i, p in enumerate(parts) if p), default=None)
        if last is not None:
            parts = list(parts)
            parts[last] = self._truncated("get_ranges", key, later, parts[last], known)
        return parts

    async def get_versioned(self, key: str, *, max_size: int | None = None) -> Versioned | None:
        later = await self._before("get_versioned", key)
        result = await self._inner.get_versioned(key, max_size=max_size)
        self._after("get_versioned", key, later)
        return result

    async def exists(self, key: str) -> bool:
        later = await self._before("exists", key)
        result = await self._inner.exists(key)
        self._after("exists", key, later)
        return result

    async def getsize(self, key: str) -> int:
        later = await self._before("getsize", key)
        result = await self._inner.getsize(key)
        self._after("getsize", key, later)
        return result

    # -- writes ------------------------------------------------------------------------------
    async def set(self, key: str, value: bytes) -> None:
        later = await self._before("set", key)
        await self._inner.set(key, value)
        self._after("set", key, later)

    async def set_if_not_exists(self, key: str, value: bytes) -> bool:
        later = await self._before("set_if_not_exists", key)
        result = await self._inner.set_if_not_exists(key, value)
        self._after("set_if_not_exists", key, later)
        return result

    async def set_if_version(self, key: str, value: bytes, version: str | None) -> None:
        later = await self._before("set_if_version", key)
        await self._inner.set_if_version(key, value, version)
        self._after("set_if_version", key, later)

    async def delete(self, key: str) -> None:
        later = await self._before("delete", key)
        await self._inner.delete(key)
        self._after("delete", key, later)

    async def delete_prefix(self, prefix: str) -> None:
        later = await self._before("delete_prefix", prefix)
        await self._inner.delete_prefix(prefix)
        self._after("delete_prefix", prefix, later)

    # -- listing ------------------------------------------------------------------------------
    async def list_prefix(self, prefix: str) -> AsyncIterator[str]:
        later = await self._before("list_prefix", prefix)
        async for key in self._inner.list_prefix(prefix):
            yield key
        self._after("list_prefix", prefix, later)

    async def list_dir(self, prefix: str) -> list[str]:
        later = await self._before("list_dir", prefix)
        result = await self._inner.list_dir(prefix)
        self._after("list_dir", prefix, later)
        return result

    async def aclose(self) -> None:
        """Close the wrapper (and the inner store unless ``close_inner=False``)."""
        if not self._closed:
            self._closed = True
            if self._close_inner:
                await self._inner.aclose()
