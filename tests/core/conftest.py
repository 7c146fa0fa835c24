"""Fixtures shared by the core tests."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from asyncarr import ExecutorConfig, set_executor


@pytest.fixture
def processes() -> Iterator[None]:
    """The codec executor runs two worker processes for the test's duration."""
    set_executor(ExecutorConfig(mode="processes", max_workers=2))
    try:
        yield
    finally:
        set_executor(None)
