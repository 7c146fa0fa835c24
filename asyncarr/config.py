"""Frozen configuration dataclasses (layer L0).

All tunables live here so that every layer reads the same definitions.
"""

from __future__ import annotations

import math
import numbers
import os
from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace
from typing import Literal

from asyncarr.errors import ConfigError

__all__ = [
    "CacheConfig",
    "KERNEL_ENV",
    "ExecutorConfig",
    "ExecutorMode",
    "KernelMode",
    "RetryConfig",
    "StoreLimits",
    "kernel_mode",
    "store_limits",
]

ExecutorMode = Literal["inline", "threads", "processes", "auto"]
KernelMode = Literal["auto", "on", "off"]
"""Whether chunk batches of local files and memory run on the native batch kernel:
``auto`` where it is built and takes the array's codecs, ``on`` the same but an error
where it is not built, ``off`` never (the pure-Python path)."""

KERNEL_ENV = "ASYNCARR_KERNEL"
"""The environment variable that sets :data:`KernelMode` where the configuration does not."""


def _positive(name: str, value: float, *, allow_zero: bool = False, integer: bool = False) -> None:
    """``value`` must be a number (an integer with ``integer``; never a bool or NaN)
    above zero (or zero, with ``allow_zero``)."""
    kind = numbers.Integral if integer else numbers.Real
    if isinstance(value, bool) or not isinstance(value, kind) or math.isnan(value):
        what = "an integer" if integer else "a number"
        raise ConfigError(f"{name} must be {what}, got {value!r}")
    if value < 0 or (value == 0 and not allow_zero):
        raise ConfigError(f"{name} must be {'>= 0' if allow_zero else '> 0'}, got {value!r}")


def _flag(name: str, value: object) -> None:
    if not isinstance(value, bool):
        raise ConfigError(f"{name} must be True or False, got {value!r}")


@dataclass(frozen=True, slots=True)
class RetryConfig:
    """How transient store faults are retried.

    Exponential backoff with full jitter: attempt ``n`` sleeps a uniform
    random time in ``[0, min(max_backoff, base_backoff * 2**n))``.
    """

    max_attempts: int = 8
    base_backoff: float = 0.05
    max_backoff: float = 5.0
    deadline: float = 120.0
    """Overall seconds across all attempts of one operation."""
    request_timeout: float | None = 60.0
    """Seconds one attempt may take before it counts as a transient fault."""

    def __post_init__(self) -> None:
        _positive("max_attempts", self.max_attempts, integer=True)
        _positive("base_backoff", self.base_backoff, allow_zero=True)
        _positive("max_backoff", self.max_backoff, allow_zero=True)
        _positive("deadline", self.deadline)
        if self.request_timeout is not None:
            _positive("request_timeout", self.request_timeout)

    def with_(self, **changes: object) -> RetryConfig:
        return replace(self, **changes)  # type: ignore[arg-type]


@dataclass(frozen=True, slots=True)
class StoreLimits:
    """Concurrency budget of one store endpoint, shared by every caller, and the size
    limits of what is read from it.

    With ``adaptive=True`` the limit backs off multiplicatively on throttling
    and recovers additively (AIMD) between ``min_concurrency`` and
    ``max_concurrency``.
    """

    max_concurrency: int = 64
    min_concurrency: int = 1
    adaptive: bool = True
    decrease_factor: float = 0.5
    increase_step: float = 1.0
    hedge_after_p95: bool = False
    """Send a second GET when the first takes longer than the observed p95."""
    retry: RetryConfig = field(default_factory=RetryConfig)
    max_metadata_bytes: int = 64 << 20
    """Largest metadata document read from this store (``zarr.json``, ``.zarray``,
    ``.zgroup``, ``.zattrs``, ``.zmetadata``, consolidated metadata included), in bytes:
    a larger one is refused with :class:`~asyncarr.errors.MetadataError` before it is
    parsed (and not read past the limit). 64 MiB by default."""

    def __post_init__(self) -> None:
        _positive("max_concurrency", self.max_concurrency, integer=True)
        _positive("min_concurrency", self.min_concurrency, integer=True)
        _flag("adaptive", self.adaptive)
        _flag("hedge_after_p95", self.hedge_after_p95)
        if not isinstance(self.retry, RetryConfig):
            raise ConfigError(f"retry must be a RetryConfig, got {self.retry!r}")
        _positive("decrease_factor", self.decrease_factor)
        if self.min_concurrency > self.max_concurrency:
            raise ConfigError(
                f"min_concurrency ({self.min_concurrency}) > max_concurrency ({self.max_concurrency})"
            )
        if not 0 < self.decrease_factor < 1:
            raise ConfigError(f"decrease_factor must be in (0, 1), got {self.decrease_factor!r}")
        _positive("increase_step", self.increase_step)
        _positive("max_metadata_bytes", self.max_metadata_bytes, integer=True)

    def with_(self, **changes: object) -> StoreLimits:
        return replace(self, **changes)  # type: ignore[arg-type]


@dataclass(frozen=True, slots=True)
class ExecutorConfig:
    """Where CPU-bound codec work runs."""

    mode: ExecutorMode = "auto"
    max_workers: int | None = None
    """Codec threads and worker processes. Defaults: threads, the number of usable CPUs
    but at most 8 (more convoy on the GIL); processes, the number of usable CPUs."""
    batch_bytes: int = 4 << 20
    """Small chunks are grouped into executor calls of about this many decoded bytes."""
    kernel: KernelMode | None = None
    """The native batch kernel (:data:`KernelMode`); ``None``: ``$ASYNCARR_KERNEL``, else
    ``auto``."""

    def __post_init__(self) -> None:
        if self.mode not in ("inline", "threads", "processes", "auto"):
            raise ConfigError(
                f"executor mode must be inline, threads, processes or auto, got {self.mode!r}"
            )
        if self.kernel is not None:
            kernel_mode(self.kernel)
        if self.max_workers is not None:
            _positive("max_workers", self.max_workers, integer=True)
        _positive("batch_bytes", self.batch_bytes, integer=True)


@dataclass(frozen=True, slots=True)
class CacheConfig:
    """Decoded-chunk LRU cache shared across arrays; 0 bytes disables it."""

    max_bytes: int = 0

    def __post_init__(self) -> None:
        _positive("max_bytes", self.max_bytes, allow_zero=True, integer=True)


def kernel_mode(value: object = None) -> KernelMode:
    """The :data:`KernelMode` in force: ``value`` where given, else the
    ``ASYNCARR_KERNEL`` environment variable, else ``"auto"``."""
    source = "kernel"
    if value is None:
        value = os.environ.get(KERNEL_ENV) or "auto"
        source = KERNEL_ENV
    if value == "auto" or value == "on" or value == "off":
        return value
    raise ConfigError(f"{source} must be 'auto', 'on' or 'off', got {value!r}")


def store_limits(value: object) -> StoreLimits | None:
    """``storage_options["limits"]`` as every store takes it: ``None`` (the store's
    default), a :class:`StoreLimits`, or a mapping of its fields (``retry`` may be a
    mapping of :class:`RetryConfig`'s), as the command line's ``-o limits='{...}'`` gives."""
    if value is None or isinstance(value, StoreLimits):
        return value
    if not isinstance(value, Mapping):
        raise ConfigError(f"limits must be a StoreLimits or a mapping of its fields, got {value!r}")
    known = {f.name for f in fields(StoreLimits)}
    unknown = sorted(str(k) for k in value if k not in known)
    if unknown:
        raise ConfigError(f"unknown limits {unknown}; expected some of {sorted(known)}")
    options = dict(value)
    retry = options.get("retry")
    if isinstance(retry, Mapping):
        retry_known = {f.name for f in fields(RetryConfig)}
        bad = sorted(str(k) for k in retry if k not in retry_known)
        if bad:
            raise ConfigError(
                f"unknown retry settings {bad}; expected some of {sorted(retry_known)}"
            )
        options["retry"] = RetryConfig(**retry)
    return StoreLimits(**options)
