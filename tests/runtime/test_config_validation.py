"""Configuration values of the wrong type or range are ConfigErrors, at once.

They used to be accepted and fail later (a float worker count at the first read), or
fail with AttributeError/ValueError from inside (a dict of limits for memory://, an int
given to set_chunk_cache, ByteRange(-1, 5)).
"""

from __future__ import annotations

from typing import Any

import pytest

import asyncarr.sync as az
from asyncarr import ByteRange, CacheConfig, ExecutorConfig, OffsetRange, SuffixRange
from asyncarr.config import RetryConfig, StoreLimits, store_limits
from asyncarr.errors import ConfigError
from asyncarr.runtime import get_chunk_cache, set_chunk_cache


@pytest.mark.parametrize(
    ("make", "match"),
    [
        (lambda: ExecutorConfig(max_workers=2.5), "max_workers must be an integer"),
        (lambda: ExecutorConfig(max_workers=True), "max_workers must be an integer"),
        (lambda: ExecutorConfig(batch_bytes=0.5), "batch_bytes must be an integer"),
        (lambda: ExecutorConfig(batch_bytes="4M"), "batch_bytes must be an integer"),
        (lambda: CacheConfig(max_bytes=float("nan")), "max_bytes must be an integer"),
        (lambda: CacheConfig(max_bytes=-1), "max_bytes must be >= 0"),
        (lambda: RetryConfig(max_attempts=2.0), "max_attempts must be an integer"),
        (lambda: RetryConfig(deadline=float("nan")), "deadline must be a number"),
        (lambda: RetryConfig(base_backoff="1"), "base_backoff must be a number"),
        (lambda: StoreLimits(max_concurrency=8.5), "max_concurrency must be an integer"),
        (lambda: StoreLimits(adaptive="yes"), "adaptive must be True or False"),
        (lambda: StoreLimits(retry={"max_attempts": 2}), "retry must be a RetryConfig"),
        (lambda: StoreLimits(decrease_factor=1.5), "decrease_factor"),
        (lambda: ByteRange(-1, 5), "invalid byte range"),
        (lambda: ByteRange(5, 3), "invalid byte range"),
        (lambda: OffsetRange(-2), "invalid offset"),
        (lambda: SuffixRange(-2), "invalid suffix length"),
    ],
    ids=lambda v: v if isinstance(v, str) else "",
)
def test_bad_values_are_config_errors(make: Any, match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        make()


def test_good_values_still_pass() -> None:
    assert ExecutorConfig(max_workers=3, batch_bytes=1 << 20).max_workers == 3
    assert RetryConfig(deadline=float("inf"), request_timeout=None).deadline == float("inf")
    assert StoreLimits(8, 2, decrease_factor=0.25).min_concurrency == 2
    assert CacheConfig(max_bytes=0).max_bytes == 0


@pytest.fixture
def restore_global_cache() -> Any:
    before = get_chunk_cache()
    yield
    set_chunk_cache(None if before is None else CacheConfig(before.max_bytes))


@pytest.mark.usefixtures("restore_global_cache")
@pytest.mark.parametrize("bad", [100, {"max_bytes": 10}, "1G"])
def test_set_chunk_cache_wants_a_cache_config(bad: object) -> None:
    with pytest.raises(ConfigError, match="CacheConfig"):
        set_chunk_cache(bad)  # type: ignore[arg-type]


def test_limits_as_a_mapping_of_fields_work_for_every_store_kind(tmp_path: Any) -> None:
    limits = {"max_concurrency": 4, "adaptive": False, "retry": {"max_attempts": 2}}
    expected = StoreLimits(4, adaptive=False, retry=RetryConfig(max_attempts=2))
    assert store_limits(limits) == expected
    for url in ("memory://limits-as-dict", str(tmp_path / "a.zarr"), f"zip://{tmp_path}/z.zip"):
        arr = az.create_array(url, shape=(2,), dtype="i4", storage_options={"limits": limits})
        assert arr.store.limits == expected
        arr.close()


@pytest.mark.parametrize(
    ("bad", "match"),
    [
        ({"max_concurency": 4}, "unknown limits"),
        ({"retry": {"attempts": 2}}, "unknown retry settings"),
        (4, "limits must be a StoreLimits or a mapping"),
        ({"max_concurrency": "4"}, "max_concurrency must be an integer"),
    ],
)
def test_bad_limits_are_config_errors(bad: object, match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        az.create_array(
            "memory://bad-limits", shape=(2,), dtype="i4", storage_options={"limits": bad}
        )
