"""Streaming an array block by block: :meth:`AsyncArray.iter_blocks` reads with a bounded
prefetch window, :meth:`AsyncArray.block_writer` writes a stream of blocks so that
whole chunks (shards) are stored without read-modify-write.
"""

from __future__ import annotations

import asyncio
import collections
import itertools
import math
from collections.abc import Iterator, Sequence
from types import TracebackType
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

from asyncarr.core._chunk_grid import ChunkGrid
from asyncarr.errors import ConfigError, SelectionError

if TYPE_CHECKING:
    from asyncarr.core._array import AsyncArray

__all__ = ["BlockIterator", "BlockWriter", "Unit", "block_regions"]

NDArray = np.ndarray[Any, np.dtype[Any]]
Region = tuple[slice, ...]
Unit = Literal["chunk", "shard"] | Sequence[int]
"""How a stream is cut: the array's chunks (inner chunks of a sharded array), its shards
(its chunks when unsharded), or blocks of a given shape."""


def _plain_region(selection: Any, shape: tuple[int, ...]) -> Region:
    """``selection`` as one ``slice(start, stop)`` per axis: slices with step 1,
    ``Ellipsis``, ``None`` (everything) or integers (a block one element thick)."""
    if selection is None or selection is Ellipsis:
        return tuple(slice(0, n) for n in shape)
    items = selection if isinstance(selection, tuple) else (selection,)
    if sum(1 for s in items if s is Ellipsis) > 1:
        raise SelectionError("a selection has at most one Ellipsis")
    if Ellipsis in items:
        at = items.index(Ellipsis)
        missing = len(shape) - (len(items) - 1)
        items = items[:at] + (slice(None),) * missing + items[at + 1 :]
    if len(items) > len(shape):
        raise SelectionError(f"{len(items)} indices for an array of {len(shape)} dimensions")
    items = items + (slice(None),) * (len(shape) - len(items))
    region = []
    for axis, (item, n) in enumerate(zip(items, shape, strict=True)):
        if isinstance(item, int | np.integer) and not isinstance(item, bool):
            i = int(item) + n if int(item) < 0 else int(item)
            if not 0 <= i < n:
                raise SelectionError(f"index {item} is out of bounds for axis {axis} of {n}")
            region.append(slice(i, i + 1))
        elif isinstance(item, slice):
            start, stop, step = item.indices(n)
            if step != 1:
                raise SelectionError(
                    f"streaming takes slices with step 1, got step {step} on axis {axis}"
                )
            region.append(slice(start, max(start, stop)))
        else:
            raise SelectionError(
                f"streaming takes slices and integers, got {type(item).__name__} on axis {axis}"
            )
    return tuple(region)


def _grid_cuts(grid: ChunkGrid, axis: int, lo: int, hi: int) -> Iterator[tuple[int, int]]:
    dim = grid.dims[axis]
    for k in range(dim.index(lo), dim.index(hi - 1) + 1):
        start = dim.offset(k)
        yield max(lo, start), min(hi, start + dim.edge(k))


def _inner_cuts(
    grid: ChunkGrid, inner: int, axis: int, lo: int, hi: int
) -> Iterator[tuple[int, int]]:
    """Cuts at the shard edges and at every ``inner`` elements within each shard."""
    for a, b in _grid_cuts(grid, axis, lo, hi):
        origin = grid.dims[axis].offset(grid.dims[axis].index(a))
        first = origin + (a - origin) // inner * inner
        for start in range(first, b, inner):
            yield max(a, start), min(b, start + inner)


def _unit_axes(arr: AsyncArray, unit: Unit, region: Region) -> list[list[tuple[int, int]]]:
    """For each axis, the cuts of ``region`` by ``unit`` (a list per axis, in order)."""
    grid = arr.chunk_grid
    cuts: list[list[tuple[int, int]]] = []
    if isinstance(unit, str):
        if unit not in ("chunk", "shard"):
            raise ConfigError(f"unit must be 'chunk', 'shard' or a block shape, got {unit!r}")
        inner = arr.chunks if unit == "chunk" and arr.shards is not None else None
        for axis, sl in enumerate(region):
            if sl.stop <= sl.start:
                cuts.append([])
            elif inner is None:
                cuts.append(list(_grid_cuts(grid, axis, sl.start, sl.stop)))
            else:
                cuts.append(list(_inner_cuts(grid, inner[axis], axis, sl.start, sl.stop)))
        return cuts
    shape = tuple(unit)
    if len(shape) != len(region) or any(
        isinstance(s, bool) or not isinstance(s, int | np.integer) or s < 1 for s in shape
    ):
        raise ConfigError(
            f"a block shape needs {len(region)} positive integers, got {tuple(unit)!r}"
        )
    for sl, step in zip(region, shape, strict=True):
        cuts.append([(a, min(sl.stop, a + int(step))) for a in range(sl.start, sl.stop, step)])
    return cuts


def block_regions(arr: AsyncArray, selection: Any = None, unit: Unit = "chunk") -> Iterator[Region]:
    """The blocks of ``selection`` cut by ``unit``, in C order (see :data:`Unit`); a bad
    selection or unit is refused at once, not when iteration starts."""
    region = _plain_region(selection, arr.shape)
    cuts = _unit_axes(arr, unit, region)
    return (tuple(slice(a, b) for a, b in parts) for parts in itertools.product(*cuts))


class BlockIterator:
    """Yields ``(region, block)`` pairs in order; at most ``prefetch`` blocks are being
    read or waiting to be taken at any time (nothing is read beyond that window), and
    closing the iterator - ``aclose()``, leaving an ``async for`` early, or cancelling
    the task - cancels the reads in flight."""

    def __init__(self, arr: AsyncArray, selection: Any, unit: Unit, prefetch: int) -> None:
        if isinstance(prefetch, bool) or not isinstance(prefetch, int) or prefetch < 1:
            raise ConfigError(f"prefetch must be a positive integer, got {prefetch!r}")
        self._arr = arr
        self._regions = block_regions(arr, selection, unit)
        self._prefetch = prefetch
        self._window: collections.deque[tuple[Region, asyncio.Task[NDArray]]] = collections.deque()
        self._closed = False

    def __aiter__(self) -> BlockIterator:
        return self

    def _top_up(self) -> None:
        while len(self._window) < self._prefetch:
            region = next(self._regions, None)
            if region is None:
                return
            self._window.append((region, asyncio.ensure_future(self._arr.read(region))))

    async def __anext__(self) -> tuple[Region, NDArray]:
        if self._closed:
            raise StopAsyncIteration
        self._top_up()
        if not self._window:
            self._closed = True
            raise StopAsyncIteration
        region, task = self._window[0]
        try:
            block = await task
        except BaseException:
            await self.aclose()
            raise
        self._window.popleft()
        self._top_up()  # the window slid by one: the next read starts now
        return region, block

    async def aclose(self) -> None:
        """Stop: cancel the reads in flight and wait for them to end."""
        self._closed = True
        tasks = [task for _, task in self._window]
        self._window.clear()
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.wait(tasks)
            for task in tasks:
                if not task.cancelled():
                    task.exception()  # retrieved: not logged as never retrieved

    async def __aenter__(self) -> BlockIterator:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()


class _Partial:
    """A write unit (chunk or shard) being assembled from blocks that each cover part
    of it."""

    __slots__ = ("covered", "data", "origin", "region")

    def __init__(self, region: Region, dtype: np.dtype[Any], fill: Any) -> None:
        shape = tuple(s.stop - s.start for s in region)
        self.region = region
        self.origin = tuple(s.start for s in region)
        self.data: NDArray = np.full(shape, fill, dtype=dtype)
        self.covered: NDArray = np.zeros(shape, dtype=bool)

    def add(self, region: Region, block: NDArray) -> bool:
        """Copy the part of ``block`` (at ``region``) that falls in this unit; whether the
        unit is now covered whole."""
        local = tuple(
            slice(max(r.start, u.start) - o, min(r.stop, u.stop) - o)
            for r, u, o in zip(region, self.region, self.origin, strict=True)
        )
        source = tuple(
            slice(max(r.start, u.start) - r.start, min(r.stop, u.stop) - r.start)
            for r, u in zip(region, self.region, strict=True)
        )
        self.data[local] = block[source]
        self.covered[local] = True
        return bool(self.covered.all())


class BlockWriter:
    """Writes ``(region, block)`` pairs into an array: the whole write units (shards, or
    chunks when unsharded) a block covers are stored at once; the parts of units it only
    covers in part are kept until later blocks complete them, so an aligned stream never
    reads and rewrites a unit. At most ``max_inflight`` unit writes run at once
    (:meth:`write` waits for room). Units still incomplete when the writer closes are
    written the ordinary way (read-modify-write). A failed write is raised by the next
    :meth:`write` or on leaving the block."""

    def __init__(self, arr: AsyncArray, max_inflight: int) -> None:
        if isinstance(max_inflight, bool) or not isinstance(max_inflight, int) or max_inflight < 1:
            raise ConfigError(f"max_inflight must be a positive integer, got {max_inflight!r}")
        self._arr = arr
        self._slots = asyncio.Semaphore(max_inflight)
        self._tasks: set[asyncio.Task[None]] = set()
        self._partial: dict[tuple[int, ...], _Partial] = {}
        self._failure: BaseException | None = None
        self._closed = False

    @property
    def pending_units(self) -> int:
        """Write units held in part, waiting for the blocks that complete them."""
        return len(self._partial)

    async def __aenter__(self) -> BlockWriter:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if exc is None:
            await self.aclose()
        else:
            await self._abort()

    def _raise_failure(self) -> None:
        if self._failure is not None:
            raise self._failure

    async def _store(self, region: Region, data: NDArray) -> None:
        await self._slots.acquire()
        self._raise_failure()

        async def run() -> None:
            try:
                await self._arr.write(data, region)
            except BaseException as exc:
                if self._failure is None and not isinstance(exc, asyncio.CancelledError):
                    self._failure = exc
                raise
            finally:
                self._slots.release()

        task = asyncio.ensure_future(run())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def write(self, region: Any, block: Any) -> None:
        """Write ``block`` at ``region`` (slices with step 1, as :meth:`iter_blocks`
        yields them)."""
        if self._closed:
            raise ConfigError("the block writer is closed")
        self._raise_failure()
        arr = self._arr
        where = _plain_region(region, arr.shape)
        shape = tuple(s.stop - s.start for s in where)
        data = np.asarray(block, dtype=arr.dtype)
        if data.shape != shape:
            data = np.broadcast_to(data, shape)
        if math.prod(shape) == 0:
            return
        for unit in block_regions(arr, where, "shard"):
            full = _full_unit(arr.chunk_grid, unit)
            coords = tuple(d.index(u.start) for d, u in zip(arr.chunk_grid.dims, unit, strict=True))
            if full == unit and coords not in self._partial:
                local = tuple(
                    slice(u.start - w.start, u.stop - w.start)
                    for u, w in zip(unit, where, strict=True)
                )
                await self._store(unit, data[local])
                continue
            partial = self._partial.get(coords)
            if partial is None:
                partial = self._partial[coords] = _Partial(full, arr.dtype, _fill(arr))
            if partial.add(where, data):
                del self._partial[coords]
                await self._store(partial.region, partial.data)

    async def flush(self) -> None:
        """Wait for the unit writes in flight (partly covered units stay held)."""
        while self._tasks:
            await asyncio.wait(list(self._tasks))
        self._raise_failure()

    async def aclose(self) -> None:
        """Write the units still held in part (read-modify-write) and wait for every
        write; raises the first failure."""
        if self._closed:
            return
        self._closed = True
        try:
            for partial in list(self._partial.values()):
                covered = partial.covered
                if covered.any():
                    await self._store_covered(partial)
            self._partial.clear()
            await self.flush()
        except BaseException:
            await self._abort()
            raise

    async def _store_covered(self, partial: _Partial) -> None:
        """Write what blocks covered of a unit left incomplete: the bounding box of the
        covered part, as one ordinary write (merged with what is stored where the blocks
        left holes in it)."""
        idx = np.nonzero(partial.covered)
        lo = [int(np.min(i)) for i in idx]
        hi = [int(np.max(i)) + 1 for i in idx]
        box = tuple(slice(a, b) for a, b in zip(lo, hi, strict=True))
        if bool(partial.covered[box].all()):
            region = tuple(
                slice(o + s.start, o + s.stop) for o, s in zip(partial.origin, box, strict=True)
            )
            await self._store(region, partial.data[box])
            return
        # scattered coverage: read what is stored, merge, write the box back
        region = tuple(
            slice(o + s.start, o + s.stop) for o, s in zip(partial.origin, box, strict=True)
        )
        await self.flush()
        current = np.array(await self._arr.read(region), copy=True)
        mask = partial.covered[box]
        current[mask] = partial.data[box][mask]
        await self._store(region, current)

    async def _abort(self) -> None:
        self._closed = True
        self._partial.clear()
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.wait(tasks)


def _full_unit(grid: ChunkGrid, unit: Region) -> Region:
    """The whole write unit (grid cell) that ``unit`` - a part of one - lies in."""
    out = []
    for dim, sl, extent in zip(grid.dims, unit, grid.shape, strict=True):
        k = dim.index(sl.start)
        start = dim.offset(k)
        out.append(slice(start, min(start + dim.edge(k), extent)))
    return tuple(out)


def _fill(arr: AsyncArray) -> Any:
    fill = arr.fill_value
    return 0 if fill is None else fill
