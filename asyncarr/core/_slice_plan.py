"""The chunks of an all-slice selection as a small, picklable plan.

A full or slab read of many small chunks hands its work to the codec executor in
batches. Spelled out chunk by chunk (a key and two tuples of slices each), a batch
costs the event loop more to plan and to pickle for a worker process than the worker
spends reading the chunks: 16,384 chunks of 16 KB took ~0.38 s of the event loop's CPU
per read on 2 cores, against ~1.4 s in the workers. A batch is instead ``(plan, start,
stop)``: the worker expands chunks ``start..stop`` of the plan itself.
"""

from __future__ import annotations

import functools
import itertools
import math
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

from asyncarr.core._chunk_grid import DimChunking, EdgesDim
from asyncarr.core._indexing import project_slice

__all__ = ["PlannedChunk", "SlicePlan"]

PlannedChunk = tuple[str, tuple[slice, ...], tuple[slice, ...], bool, bool, tuple[int, ...] | None]
"""(key, selection in the chunk, selection in the output, whether the selection covers the
chunk's valid region, whether it covers the whole chunk: no edge padding either, and the
chunk's shape where the grid's chunks differ in shape (``None``: the array's one shape))."""

_DimEntry = tuple[str, slice, slice, bool, bool, int]
"""One chunk index along one dimension: (key part, chunk slice, output slice, complete,
whole, edge length)."""

_Bounds = tuple[tuple[int, int, int], ...]


@dataclass(slots=True, unsafe_hash=True)
class SlicePlan:
    """Every chunk that an all-slice selection touches, in C order of their coordinates.

    ``bounds`` holds the selection's normalised slices as ``(start, stop, step)``;
    ``chunking`` each axis's chunk length, or its edges where they differ
    (:attr:`~asyncarr.core._chunk_grid.ChunkGrid.chunking`); ``head`` and ``sep`` spell
    the keys (``head + sep.join(indices)``; a 0-d array's
    single key is ``zero_d_key``). The per-dimension work (key parts, slices,
    completeness) is done once per dimension, not per chunk, and kept per process for
    the plans used last, so the batches of one read that reach a worker share it.
    Treat it as immutable (it is hashed); it is not frozen only because a frozen
    dataclass takes several times longer to build, once per random read.
    """

    bounds: _Bounds
    shape: tuple[int, ...]
    chunking: tuple[DimChunking, ...]
    head: str
    sep: str
    zero_d_key: str
    varying: bool = False
    """Whether ``chunking`` has an axis of differing edges (then chunks carry their shape)."""

    def __len__(self) -> int:
        """The number of chunks the selection touches."""
        return math.prod(len(dim) for dim in _per_dim(self))

    def chunks(self, start: int = 0, stop: int | None = None) -> Iterator[PlannedChunk]:
        """Chunks ``start`` (inclusive) to ``stop`` (exclusive) of the plan."""
        per_dim = _per_dim(self)
        total = 1
        for dim in per_dim:
            total *= len(dim)
        stop = total if stop is None else min(stop, total)
        if start >= stop:
            return
        head, sep = self.head, self.sep
        if not per_dim:  # 0-d: one chunk
            yield (self.zero_d_key, (), (), True, True, None)
            return
        varying = self.varying
        combos: Iterable[tuple[_DimEntry, ...]]
        if total == 1:  # one chunk (a random read): no iterator machinery
            combos = (tuple([dim[0] for dim in per_dim]),)
        else:
            combos = _combos(per_dim, start, stop, total)
        for combo in combos:
            yield (
                head + sep.join([part[0] for part in combo]),
                tuple([part[1] for part in combo]),
                tuple([part[2] for part in combo]),
                all([part[3] for part in combo]),
                all([part[4] for part in combo]),
                tuple([part[5] for part in combo]) if varying else None,
            )

    def only_chunk(self) -> PlannedChunk | None:
        """The plan's one chunk, worked out directly where the selection is one unit-step
        slice per axis within one chunk (a random read of a chunk or part of one);
        ``None`` otherwise (use :meth:`chunks`). The same tuple :meth:`chunks` yields,
        without building the per-dimension entries."""
        if not self.bounds:
            return None
        parts: list[str] = []
        chunk_sel: list[slice] = []
        out_sel: list[slice] = []
        complete = whole = True
        for (start, stop, step), n, c in zip(self.bounds, self.shape, self.chunking, strict=True):
            if step != 1 or stop <= start:
                return None
            if type(c) is int:
                k = start // c
                if k != (stop - 1) // c:
                    return None
                lo = k * c
            else:
                assert isinstance(c, EdgesDim)
                k = c.index(start)
                if k != c.index(stop - 1):
                    return None
                lo = c.offset(k)
                c = c.edge(k)
            a = start - lo
            parts.append(str(k))
            chunk_sel.append(slice(a, stop - lo, 1))
            out_sel.append(slice(0, stop - start, 1))
            full = a == 0 and stop == min(lo + c, n)
            complete = complete and full
            whole = whole and full and stop - lo == c
        return (
            self.head + self.sep.join(parts),
            tuple(chunk_sel),
            tuple(out_sel),
            complete,
            whole,
            self._shape_of(parts) if self.varying else None,
        )

    def _shape_of(self, parts: list[str]) -> tuple[int, ...]:
        """The shape of the chunk whose indices are ``parts``."""
        return tuple(
            c if isinstance(c, int) else c.edge(int(k))
            for c, k in zip(self.chunking, parts, strict=True)
        )


def _combos(
    per_dim: tuple[list[_DimEntry], ...], start: int, stop: int, total: int
) -> Iterator[tuple[_DimEntry, ...]]:
    """The per-dimension entries of chunks ``start..stop`` (of ``total``), in C order."""
    first, rest = per_dim[0], per_dim[1:]
    inner = total // len(first)
    for i in range(start // inner, -(-stop // inner)):
        lead = (first[i],)
        lo = max(start - i * inner, 0)
        hi = min(stop - i * inner, inner)
        for tail in itertools.islice(itertools.product(*rest), lo, hi):
            yield lead + tail


def _per_dim(plan: SlicePlan) -> tuple[list[_DimEntry], ...]:
    """Each dimension's chunk entries; cached where the plan has more than one chunk
    (every batch of a read asks again), worked out afresh for a single chunk (a random
    read: cheaper than a cache lookup, and it would only evict the plans that matter)."""
    for (start, stop, _step), c in zip(plan.bounds, plan.chunking, strict=True):
        if stop <= start:
            continue
        if isinstance(c, int):
            if start // c != (stop - 1) // c:
                return _per_dim_cached(plan)
        elif c.index(start) != c.index(stop - 1):
            return _per_dim_cached(plan)
    return _dim_entries(plan)


@functools.lru_cache(maxsize=8)
def _per_dim_cached(plan: SlicePlan) -> tuple[list[_DimEntry], ...]:
    return _dim_entries(plan)


def _dim_entries(plan: SlicePlan) -> tuple[list[_DimEntry], ...]:
    per_dim = []
    for (start, stop, step), n, c in zip(plan.bounds, plan.shape, plan.chunking, strict=True):
        entries: list[_DimEntry] = []
        for k, cs, osel, complete, edge in project_slice(slice(start, stop, step), n, c):
            assert isinstance(cs, slice) and isinstance(osel, slice)
            entries.append(
                (str(k), cs, osel, complete, complete and cs.stop - cs.start == edge, edge)
            )
        per_dim.append(entries)
    return tuple(per_dim)
