"""Writing chunked (dask) variables into asyncarr arrays."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from asyncarr.sync import Array

__all__ = ["store_chunked"]


def store_chunked(items: Sequence[tuple[Any, Array, tuple[slice, ...]]]) -> None:
    """Write each dask array into its asyncarr array at its region, all in one dask
    computation: each block is written by the task that computes it."""
    if not items:
        return
    import dask.array as da

    sources, targets, regions = zip(*items, strict=True)
    da.store(list(sources), list(targets), regions=list(regions), lock=False, compute=True)
