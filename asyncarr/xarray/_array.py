"""xarray's lazy view of one asyncarr array: a ``BackendArray`` that reads only what is
indexed, orthogonally or point by point, blocking or awaited."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import numpy as np
from xarray.backends import BackendArray
from xarray.core import indexing

from asyncarr.abc import NDArray
from asyncarr.runtime import get_portal
from asyncarr.sync import Array

__all__ = ["AsyncarrBackendArray", "on_portal"]

T = TypeVar("T")


async def on_portal(fn: Callable[..., Awaitable[T]], *args: Any, **kwargs: Any) -> T:
    """``await fn(*args, **kwargs)`` on the sync portal's event loop, where the stores of
    nodes opened through the blocking API live (their client sessions are bound to it),
    awaited from whatever loop calls this: the caller's loop stays free meanwhile, and
    cancelling the caller cancels the work."""
    with get_portal() as portal:
        loop = portal.loop
        assert loop is not None  # (the lease above keeps it running)
        try:
            running: asyncio.AbstractEventLoop | None = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is loop:
            return await fn(*args, **kwargs)
        future = asyncio.run_coroutine_threadsafe(_call(fn, *args, **kwargs), loop)
        return await asyncio.wrap_future(future)


async def _call(fn: Callable[..., Awaitable[T]], *args: Any, **kwargs: Any) -> T:
    return await fn(*args, **kwargs)


def _points(key: tuple[Any, ...], shape: tuple[int, ...]) -> tuple[Any, ...]:
    """A vectorized key (integer arrays of one ndim, and slices) as index arrays only: each
    slice becomes its indices along a new trailing axis (xarray moves sliced axes to the
    end), so that ``vindex`` selects the same elements in the same layout."""
    arrays = [k for k in key if not isinstance(k, slice)]
    if len(arrays) == len(key):
        return key
    slices = [k for k in key if isinstance(k, slice)]
    lead = np.broadcast_shapes(*(np.shape(a) for a in arrays)) if arrays else ()
    trail = len(slices)
    out: list[Any] = []
    position = 0
    for k, n in zip(key, shape, strict=True):
        if isinstance(k, slice):
            indices = np.arange(*k.indices(n), dtype=np.intp)
            layout = [1] * (len(lead) + trail)
            layout[len(lead) + position] = indices.shape[0]
            out.append(indices.reshape(layout))
            position += 1
        else:
            out.append(np.reshape(k, np.shape(k) + (1,) * trail))
    return tuple(out)


class AsyncarrBackendArray(BackendArray):
    """One asyncarr array as xarray indexes it lazily: basic, orthogonal and vectorized
    keys each go to the matching asyncarr selection (``read``, ``oindex``, ``vindex``), so
    only the chunks holding the selected elements are read; ``async_getitem`` awaits the
    same reads, so ``Dataset.load_async()`` reads all its variables at once."""

    __slots__ = ("_array", "dtype", "shape")

    def __init__(self, array: Array) -> None:
        self._array = array
        self.shape = array.shape
        self.dtype = array.dtype

    @property
    def array(self) -> Array:
        """The asyncarr array read from."""
        return self._array

    def __getitem__(self, key: indexing.ExplicitIndexer) -> Any:
        array = self._array

        def read(raw: tuple[Any, ...]) -> NDArray:
            if isinstance(key, indexing.VectorizedIndexer):
                return np.asarray(array.vindex[_points(raw, self.shape)])
            return array.read(raw, orthogonal=isinstance(key, indexing.OuterIndexer))

        return indexing.explicit_indexing_adapter(
            key, self.shape, indexing.IndexingSupport.VECTORIZED, read
        )

    async def async_getitem(self, key: indexing.ExplicitIndexer) -> Any:
        target = self._array.async_array

        async def read(raw: tuple[Any, ...]) -> NDArray:
            if isinstance(key, indexing.VectorizedIndexer):
                return await on_portal(target.get_coordinate_selection, _points(raw, self.shape))
            orthogonal = isinstance(key, indexing.OuterIndexer)
            return await on_portal(target.read, raw, orthogonal=orthogonal)

        return await indexing.async_explicit_indexing_adapter(
            key, self.shape, indexing.IndexingSupport.VECTORIZED, read
        )
