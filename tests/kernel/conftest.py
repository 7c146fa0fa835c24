"""Fixtures of the native kernel's tests.

Tests that need the compiled kernel use the ``kernel`` fixture: skipped where it is not
built, unless it must be - ``ASYNCARR_KERNEL=on``, or in CI (``CI=true``), where ``make``
installs the codec headers - then they fail, naming why.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest

from asyncarr import kernel as ak
from asyncarr._types import ChunkSpec
from asyncarr.abc import Codec
from asyncarr.core._pipeline import CodecPipeline


@pytest.fixture
def kernel() -> None:
    if not ak.kernel_available():
        if os.environ.get("ASYNCARR_KERNEL") == "on" or os.environ.get("CI") == "true":
            pytest.fail(
                f"the native kernel must be built here, but {ak.kernel_unavailable_reason()}"
            )
        pytest.skip(f"the native kernel is not built: {ak.kernel_unavailable_reason()}")


Chain = tuple[CodecPipeline, ak.KernelChain]


@pytest.fixture
def make_chain(kernel: None) -> Callable[[list[Codec], ChunkSpec], Chain]:
    """The Python pipeline and the kernel chain of ``codecs`` for ``spec``."""

    def make(codecs: list[Codec], spec: ChunkSpec) -> Chain:
        pipeline = CodecPipeline(codecs, spec)
        chain = ak.chain_for(pipeline.codecs, pipeline.spec)
        assert isinstance(chain, ak.KernelChain), chain
        return pipeline, chain

    return make


def python_read(
    pipeline: CodecPipeline, data: Any, chunk_sel: Any, out: np.ndarray, out_sel: Any
) -> None:
    """What the Python read path does for one chunk (``decode_jobs``)."""
    if data is None:
        out[out_sel] = pipeline.spec.fill_value
    else:
        out[out_sel] = pipeline.decode(data)[chunk_sel]


@pytest.fixture
def reference_read() -> Callable[..., None]:
    return python_read


def same_bits(a: np.ndarray, b: np.ndarray) -> bool:
    """Equal bit for bit (NaN payloads and signed zeros included)."""
    return a.shape == b.shape and a.dtype == b.dtype and a.tobytes() == b.tobytes()


@pytest.fixture
def bits_equal() -> Callable[[np.ndarray, np.ndarray], bool]:
    return same_bits
