"""Selections → per-chunk projections.

A selection is normalised per dimension into either a ``slice`` with a
positive step or a sorted-or-not integer array (orthogonal indexing).
Integer indices become length-1 slices and are dropped from the result
shape at the end (:attr:`Selection.drop_axes`). Negative-step slices become
integer arrays. Projections are generated lazily, one chunk at a time.

A point selection (vectorized indexing, ``vindex``) is one flat integer array per
dimension, paired element by element: its projections group the points by chunk (one
projection per chunk touched, never one per point), with :class:`PointDims` as their
chunk selection.
"""

from __future__ import annotations

import itertools
import math
import operator
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal, TypeAlias

import numpy as np

from asyncarr.core._chunk_grid import DimChunking, EdgesDim
from asyncarr.errors import SelectionError

__all__ = [
    "ChunkProjection",
    "DimSelection",
    "PointDims",
    "PointForm",
    "Selection",
    "local_selection",
    "normalize_points",
    "normalize_selection",
    "project",
    "project_slice",
]

DimSelection: TypeAlias = slice | np.ndarray[Any, np.dtype[np.intp]]


@dataclass(frozen=True)
class Selection:
    """A normalised selection over an array of ``shape``."""

    dims: tuple[DimSelection, ...]
    shape: tuple[int, ...]
    drop_axes: tuple[int, ...]
    points: tuple[int, ...] | None = None
    """For a point selection (``dims``: equally long index arrays, paired), the shape the
    points were given in: the result's shape. ``None`` for orthogonal selections."""

    @property
    def out_shape(self) -> tuple[int, ...]:
        """Result shape before dropping integer-indexed axes (a point selection: one axis
        of points)."""
        if self.points is not None:
            return (math.prod(self.points),)
        return tuple(_dim_len(d) for d in self.dims)

    @property
    def result_shape(self) -> tuple[int, ...]:
        if self.points is not None:
            return self.points
        full = self.out_shape
        return tuple(n for i, n in enumerate(full) if i not in self.drop_axes)

    @property
    def reshaped(self) -> bool:
        """Whether the result's shape differs from :attr:`out_shape`."""
        return bool(self.drop_axes) or self.points is not None

    @property
    def is_orthogonal_array(self) -> bool:
        return any(isinstance(d, np.ndarray) for d in self.dims)


def _dim_len(d: DimSelection) -> int:
    if isinstance(d, slice):
        return len(range(d.start, d.stop, d.step))
    return int(d.shape[0])


def _normalize_int(value: Any, n: int, axis: int) -> int:
    try:
        i: int = operator.index(value)
    except TypeError as exc:
        raise SelectionError(f"invalid index {value!r} for axis {axis}") from exc
    if i < -n or i >= n:
        raise SelectionError(f"index {i} is out of bounds for axis {axis} with size {n}")
    return i + n if i < 0 else i


def _normalize_dim(sel: Any, n: int, axis: int, *, allow_arrays: bool) -> tuple[DimSelection, bool]:
    """(normalised selection, dropped?) for one axis."""
    if isinstance(sel, slice):
        try:
            start, stop, step = sel.indices(n)
        except (TypeError, ValueError) as exc:
            raise SelectionError(f"invalid slice {sel!r} for axis {axis}: {exc}") from exc
        if step > 0:
            stop = max(stop, start)
            count = len(range(start, stop, step))
            return slice(start, start + (count - 1) * step + 1 if count else start, step), False
        return np.arange(start, stop, step, dtype=np.intp), False
    if isinstance(sel, np.ndarray) and sel.ndim == 0 and sel.dtype.kind in "iu":
        sel = sel[()]  # a 0-d integer array indexes like the integer it holds (numpy)
    if isinstance(sel, int | np.integer) and not isinstance(sel, bool):
        i = _normalize_int(sel, n, axis)
        return slice(i, i + 1, 1), True
    if not allow_arrays:
        raise SelectionError(
            f"unsupported selection {sel!r} for axis {axis}; use ints, slices and Ellipsis, "
            "or .oindex[...] for integer/boolean arrays"
        )
    arr = np.asarray(sel)
    if arr.ndim == 1 and arr.size == 0 and not isinstance(sel, np.ndarray):
        return np.empty(0, dtype=np.intp), False  # [] selects nothing, as in numpy
    if arr.dtype == bool:
        if arr.ndim != 1 or arr.shape[0] != n:
            raise SelectionError(
                f"boolean selection for axis {axis} must be 1-d with length {n}, got shape {arr.shape}"
            )
        return np.flatnonzero(arr).astype(np.intp), False
    if arr.dtype.kind in "iu":
        if arr.ndim != 1:
            raise SelectionError(
                f"integer array selection for axis {axis} must be 1-d, got {arr.shape}"
            )
        idx = arr.astype(np.intp, copy=True)
        if idx.size and (int(np.min(idx)) < -n or int(np.max(idx)) >= n):
            raise SelectionError(f"index out of bounds for axis {axis} with size {n}")
        idx[idx < 0] += n
        return idx, False
    raise SelectionError(f"unsupported selection {sel!r} for axis {axis}")


def normalize_selection(
    selection: Any,
    shape: tuple[int, ...],
    *,
    dimension_names: Sequence[str | None] | None = None,
    orthogonal: bool = False,
) -> Selection:
    """Normalise a user selection (numpy-style basic, or orthogonal when ``orthogonal``).

    A mapping selects by dimension name: ``{"time": slice(0, 31)}``.
    """
    ndim = len(shape)
    if type(selection) is tuple and len(selection) == ndim:
        fast = _unit_slices(selection, shape)
        if fast is not None:
            return fast
    if isinstance(selection, Mapping):
        if dimension_names is None:
            raise SelectionError("selection by dimension name needs an array with dimension_names")
        names = list(dimension_names)
        parts: list[Any] = [slice(None)] * ndim
        for name, sel in selection.items():
            if name not in names:
                raise SelectionError(f"unknown dimension name {name!r}; known: {names}")
            if names.count(name) > 1:
                raise SelectionError(
                    f"dimension name {name!r} names {names.count(name)} dimensions; "
                    "select by position instead"
                )
            parts[names.index(name)] = sel
        selection = tuple(parts)
    if not isinstance(selection, tuple):
        selection = (selection,)
    n_ellipsis = sum(1 for s in selection if s is Ellipsis)
    if n_ellipsis > 1:
        raise SelectionError("a selection may contain only one Ellipsis")
    if n_ellipsis:
        i = next(k for k, s in enumerate(selection) if s is Ellipsis)
        fill = ndim - (len(selection) - 1)
        if fill < 0:
            raise SelectionError(f"too many indices for an array with {ndim} dimensions")
        selection = selection[:i] + (slice(None),) * fill + selection[i + 1 :]
    if any(s is None for s in selection):
        raise SelectionError("np.newaxis (None) is not supported in selections")
    if len(selection) > ndim:
        raise SelectionError(
            f"too many indices for an array with {ndim} dimensions: got {len(selection)}"
        )
    selection = selection + (slice(None),) * (ndim - len(selection))
    dims: list[DimSelection] = []
    drop: list[int] = []
    for axis, (sel, n) in enumerate(zip(selection, shape, strict=True)):
        d, dropped = _normalize_dim(sel, n, axis, allow_arrays=orthogonal)
        dims.append(d)
        if dropped:
            drop.append(axis)
    return Selection(tuple(dims), tuple(shape), tuple(drop))


def _unit_slices(selection: tuple[Any, ...], shape: tuple[int, ...]) -> Selection | None:
    """The usual selection (one slice of step 1 per axis, e.g. a chunk-aligned block)
    normalised without the general path's checks; ``None`` for anything else (the general
    path handles it, errors included)."""
    dims: list[DimSelection] = []
    for sel, n in zip(selection, shape, strict=True):
        if type(sel) is not slice or sel.step not in (None, 1):
            return None
        try:
            start, stop, _ = sel.indices(n)
        except (TypeError, ValueError):
            return None
        dims.append(slice(start, max(start, stop), 1))
    return Selection(tuple(dims), tuple(shape), ())


@dataclass(frozen=True, slots=True)
class ChunkProjection:
    """How one chunk contributes: which part of it, to which part of the output."""

    coords: tuple[int, ...]
    chunk_sel: tuple[DimSelection, ...]
    out_sel: tuple[DimSelection, ...]
    is_complete: bool
    """The selection covers every valid element of the chunk (edge padding excluded)."""
    shape: tuple[int, ...] = ()
    """The chunk's shape as its codecs see it (overhanging edges included)."""

    def index_pair(self) -> tuple[Any, Any]:
        """(chunk index, output index) usable with numpy: orthogonally, or for points
        (:class:`PointDims`) pairwise."""
        if isinstance(self.chunk_sel, PointDims):
            return tuple(self.chunk_sel), self.out_sel
        if any(isinstance(s, np.ndarray) for s in self.chunk_sel + self.out_sel):
            return _ix(self.chunk_sel), _ix(self.out_sel)
        return self.chunk_sel, self.out_sel


def _ix(sel: tuple[DimSelection, ...]) -> Any:
    arrays = [
        np.arange(s.start, s.stop, s.step, dtype=np.intp) if isinstance(s, slice) else s
        for s in sel
    ]
    return np.ix_(*arrays)


_DimPart = tuple[int, DimSelection, DimSelection, bool, int]
"""One chunk along one axis: (chunk index, selection in the chunk, selection in the output,
whether it covers the chunk's valid part, the chunk's edge length)."""


def project_slice(s: slice, n: int, c: DimChunking) -> list[_DimPart]:
    """The chunks along an axis of length ``n`` that ``s`` touches (``c``: the axis's
    chunk length, or its edges where they differ)."""
    if isinstance(c, EdgesDim):
        return _project_slice_edges(s, n, c)
    start, stop, step = s.start, s.stop, s.step
    if stop <= start:
        return []
    if step == 1 and start // c == (stop - 1) // c:  # within one chunk: random reads
        k = start // c
        lo = k * c
        a = start - lo
        return [
            (
                k,
                slice(a, stop - lo, 1),
                slice(0, stop - start, 1),
                a == 0 and stop == min(lo + c, n),
                c,
            )
        ]
    parts: list[_DimPart] = []
    if step >= c:  # at most one element per chunk: visit the elements, not the chunks
        for o, e in enumerate(range(start, stop, step)):  # between them, maybe billions
            k, a = divmod(e, c)
            complete = step == 1 and a == 0 and min(k * c + c, n) - k * c == 1
            parts.append((k, slice(a, a + 1, step), slice(o, o + 1, 1), complete, c))
        return parts
    last = stop - 1
    for k in range(start // c, last // c + 1):  # every chunk holds an element (step < c)
        part = _chunk_part(s, n, k, k * c, c)
        if part is not None:
            parts.append(part)
    return parts


def _chunk_part(s: slice, n: int, k: int, lo: int, edge: int) -> _DimPart | None:
    """What of chunk ``k`` (starting at ``lo``, ``edge`` long) the slice ``s`` selects
    along an axis of length ``n``; ``None`` where its step skips the chunk."""
    start, stop, step = s.start, s.stop, s.step
    hi = min(lo + edge, n)
    first = start if start >= lo else start + -(-(lo - start) // step) * step
    if first >= min(stop, hi):
        return None
    count = -(-(min(stop, hi) - first) // step)
    a = first - lo
    o = (first - start) // step
    complete = step == 1 and a == 0 and count == hi - lo
    return (k, slice(a, a + (count - 1) * step + 1, step), slice(o, o + count, 1), complete, edge)


def _project_slice_edges(s: slice, n: int, dim: EdgesDim) -> list[_DimPart]:
    """:func:`project_slice` over chunks of differing lengths: the work is per chunk
    touched (or per element selected, where there are fewer), never per edge."""
    start, stop, step = s.start, s.stop, s.step
    if stop <= start:
        return []
    count = len(range(start, stop, step))
    last = start + (count - 1) * step
    k0, k1 = dim.index(start), dim.index(last)
    parts: list[_DimPart] = []
    if k1 - k0 + 1 > count:  # fewer elements than chunks between them: visit the elements
        elements = np.arange(start, last + 1, step, dtype=np.int64)
        ks = dim.indices(elements)
        cuts = np.flatnonzero(np.diff(ks)) + 1
        for o, m in zip([0, *cuts.tolist()], [*cuts.tolist(), count], strict=True):
            k = int(ks[o])
            lo, edge = dim.offset(k), dim.edge(k)
            a = int(elements[o]) - lo
            m -= o
            complete = step == 1 and a == 0 and m == min(lo + edge, n) - lo
            parts.append(
                (k, slice(a, a + (m - 1) * step + 1, step), slice(o, o + m, 1), complete, edge)
            )
        return parts
    los, edges = dim.offsets_and_edges(np.arange(k0, k1 + 1, dtype=np.int64))
    for k, lo, edge in zip(range(k0, k1 + 1), los.tolist(), edges.tolist(), strict=True):
        part = _chunk_part(s, n, k, lo, edge)
        if part is not None:
            parts.append(part)
    return parts


def _as_slice_if_contiguous(idx: np.ndarray[Any, np.dtype[np.intp]]) -> DimSelection:
    if idx.size and idx[-1] - idx[0] == idx.size - 1 and np.all(np.diff(idx) == 1):
        return slice(int(idx[0]), int(idx[-1]) + 1, 1)
    return idx


def _project_array(
    idx: np.ndarray[Any, np.dtype[np.intp]], n: int, c: DimChunking
) -> list[_DimPart]:
    if idx.size == 0:
        return []
    chunk_ids = dim_indices(idx, c)
    order = np.argsort(chunk_ids, kind="stable")
    sorted_ids = chunk_ids[order]
    bounds = np.flatnonzero(np.diff(sorted_ids)) + 1
    parts: list[_DimPart] = []
    for group in np.split(order, bounds):
        k = int(chunk_ids[group[0]])
        lo, edge = (k * c, c) if isinstance(c, int) else (c.offset(k), c.edge(k))
        local = idx[group] - lo
        out_pos = group.astype(np.intp)
        valid = min(edge, n - lo)
        chunk_sel = _as_slice_if_contiguous(local)
        complete = isinstance(chunk_sel, slice) and chunk_sel.start == 0 and chunk_sel.stop == valid
        parts.append((k, chunk_sel, _as_slice_if_contiguous(out_pos), complete, edge))
    return parts


def dim_indices(elements: np.ndarray[Any, Any], c: DimChunking) -> np.ndarray[Any, Any]:
    """The chunk of each element along an axis."""
    return elements // c if isinstance(c, int) else c.indices(elements)


def project(selection: Selection, chunking: tuple[DimChunking, ...]) -> Iterator[ChunkProjection]:
    """Lazily yield the chunks a selection touches (C order of chunk coordinates);
    ``chunking``: each axis's chunk length, or its edges (:attr:`ChunkGrid.chunking`)."""
    if selection.points is not None:
        yield from _project_points(selection.dims, chunking)
        return
    per_dim: list[list[_DimPart]] = []
    for d, n, c in zip(selection.dims, selection.shape, chunking, strict=True):
        per_dim.append(project_slice(d, n, c) if isinstance(d, slice) else _project_array(d, n, c))
    for combo in itertools.product(*per_dim):
        yield ChunkProjection(
            coords=tuple(p[0] for p in combo),
            chunk_sel=tuple(p[1] for p in combo),
            out_sel=tuple(p[2] for p in combo),
            is_complete=all(p[3] for p in combo),
            shape=tuple(p[4] for p in combo),
        )


def count_chunks(selection: Selection, chunking: tuple[DimChunking, ...]) -> int:
    """Number of chunks :func:`project` yields (without generating them)."""
    if selection.points is not None:
        return len(_group_points(selection.dims, chunking)[2])
    total = 1
    for d, c in zip(selection.dims, chunking, strict=True):
        if not isinstance(d, slice):
            total *= len(np.unique(dim_indices(d, c))) if d.size else 0
            continue
        count = len(range(d.start, d.stop, d.step))
        if not count:
            return 0
        if isinstance(c, EdgesDim):
            total *= _count_edges(d, count, c)
        elif d.step >= c:  # one element per chunk
            total *= count
        else:  # no chunk between the first and the last is skipped
            total *= (d.start + (count - 1) * d.step) // c - d.start // c + 1
    return total


def _count_edges(d: slice, count: int, dim: EdgesDim) -> int:
    """How many chunks of ``dim`` the slice ``d`` (of ``count`` elements) touches."""
    last = d.start + (count - 1) * d.step
    k0, k1 = dim.index(d.start), dim.index(last)
    if d.step == 1:
        return k1 - k0 + 1
    if k1 - k0 + 1 > count:  # fewer elements than chunks: count the chunks they fall in
        ks = dim.indices(np.arange(d.start, last + 1, d.step, dtype=np.int64))
        return int(np.count_nonzero(np.diff(ks))) + 1
    los, edges = dim.offsets_and_edges(np.arange(k0, k1 + 1, dtype=np.int64))
    # the first selected element at or after each chunk's start, and whether it is in it
    first = np.where(los <= d.start, d.start, d.start + -((d.start - los) // d.step) * d.step)
    return int(np.count_nonzero(first < np.minimum(los + edges, d.stop)))


# -- point selections (vectorized indexing) ----------------------------------------------


class PointDims(tuple[np.ndarray[Any, np.dtype[np.intp]], ...]):
    """The chunk selection of a point projection: one index array per dimension, paired
    element by element (numpy's advanced indexing), not crossed as orthogonal selections
    are."""

    __slots__ = ()


_VINDEX_FORMS = (
    "one integer (array) per dimension, broadcast together, or one boolean mask "
    "of the array's shape"
)


PointForm: TypeAlias = Literal["coordinate", "mask"]


def normalize_points(
    selection: Any, shape: tuple[int, ...], form: PointForm | None = None
) -> Selection:
    """Normalise a vectorized selection (``vindex``), as numpy and zarr-python define it:
    a tuple of one integer or integer array per dimension, broadcast together (the
    result has their broadcast shape), or one boolean array of the array's shape (the
    result is 1-d, its ``True`` elements in C order). ``form`` admits only the one kind
    (``None``: either)."""
    ndim = len(shape)
    if ndim == 0:
        raise SelectionError("a 0-d array has no points to select; use arr[()] instead")
    items = selection if isinstance(selection, tuple) else (selection,)
    mask = _as_array(items[0], 0) if len(items) == 1 else None
    if form == "mask" and (mask is None or mask.dtype != bool):
        raise SelectionError(
            f"a mask selection takes one boolean array of the array's shape {shape}; "
            f"got {selection!r}"
        )
    if form == "coordinate" and mask is not None and mask.dtype == bool:
        raise SelectionError(
            "a coordinate selection takes integer arrays; select with a boolean mask "
            "through get_mask_selection or vindex"
        )
    if mask is not None and mask.dtype == bool:
        if mask.shape != shape:
            raise SelectionError(
                f"a boolean mask selects points only with the array's shape {shape}, "
                f"got shape {mask.shape}; use .oindex[...] for one mask per dimension"
            )
        dims = tuple(np.asarray(d, dtype=np.intp) for d in np.nonzero(mask))
        return Selection(dims, shape, (), points=(int(dims[0].shape[0]),))
    if len(items) != ndim:
        raise SelectionError(
            f"a vectorized selection of a {ndim}-d array takes {_VINDEX_FORMS}; "
            f"got {len(items)} item(s): {selection!r}"
        )
    arrays = [_point_axis(item, n, axis) for axis, (item, n) in enumerate(zip(items, shape))]
    try:
        broadcast = np.broadcast_arrays(*arrays)
    except ValueError as exc:
        raise SelectionError(
            "the index arrays of a vectorized selection must broadcast together; got shapes "
            + ", ".join(str(a.shape) for a in arrays)
        ) from exc
    points = tuple(broadcast[0].shape)
    return Selection(tuple(b.reshape(-1) for b in broadcast), shape, (), points=points)


def _as_array(item: Any, axis: int) -> np.ndarray[Any, Any]:
    if item is None or item is Ellipsis or isinstance(item, slice):
        raise SelectionError(
            f"a vectorized selection takes {_VINDEX_FORMS}; got {item!r} for axis {axis} "
            "(use .oindex[...] or plain indexing to mix slices in)"
        )
    try:
        return np.asarray(item)
    except (TypeError, ValueError) as exc:
        raise SelectionError(f"invalid index {item!r} for axis {axis}: {exc}") from exc


def _point_axis(item: Any, n: int, axis: int) -> np.ndarray[Any, np.dtype[np.intp]]:
    arr = _as_array(item, axis)
    if arr.size == 0 and arr.dtype.kind == "f" and not isinstance(item, np.ndarray):
        arr = arr.astype(np.intp)  # [] selects nothing, as in numpy
    if arr.dtype.kind not in "iu":
        what = "a boolean array" if arr.dtype == bool else f"dtype {arr.dtype}"
        raise SelectionError(
            f"a vectorized selection takes {_VINDEX_FORMS}; got {what} for axis {axis}"
        )
    if arr.size:
        low, high = int(arr.min()), int(arr.max())  # (before a cast could wrap uint64)
        if low < -n or high >= n:
            bad = low if low < -n else high
            raise SelectionError(f"index {bad} is out of bounds for axis {axis} with size {n}")
    idx = arr.astype(np.intp, copy=True)
    idx[idx < 0] += n
    return idx


def local_selection(dims: tuple[DimSelection, ...], shape: tuple[int, ...]) -> Selection:
    """The selection a projection's ``chunk_sel`` makes within its chunk of ``shape``
    (for projecting it again, onto a shard's inner chunks)."""
    if isinstance(dims, PointDims):
        return Selection(tuple(dims), shape, (), points=(int(dims[0].shape[0]),))
    return Selection(tuple(dims), shape, ())


def _group_points(
    dims: tuple[DimSelection, ...], chunking: tuple[DimChunking, ...]
) -> tuple[np.ndarray[Any, Any], list[np.ndarray[Any, Any]], np.ndarray[Any, Any]]:
    """The points sorted by chunk (C order, stable: points in one chunk keep their
    order, so the last of repeated points wins a write, as in numpy): ``(order, each
    axis's chunk index of the sorted points, where each chunk's run starts)``."""
    arrays = [d for d in dims if isinstance(d, np.ndarray)]
    chunk_ids = [dim_indices(d, c) for d, c in zip(arrays, chunking, strict=True)]
    order = np.lexsort(chunk_ids[::-1]) if arrays[0].size else np.empty(0, np.intp)
    ordered = [k[order] for k in chunk_ids]
    change = np.zeros(order.shape[0], dtype=bool)
    if change.size:
        change[0] = True
        for k in ordered:
            change[1:] |= k[1:] != k[:-1]
    return order, ordered, np.flatnonzero(change)


def _project_points(
    dims: tuple[DimSelection, ...], chunking: tuple[DimChunking, ...]
) -> Iterator[ChunkProjection]:
    """One projection per chunk the points touch (C order of chunk coordinates)."""
    order, ordered, starts = _group_points(dims, chunking)
    local: list[np.ndarray[Any, Any]] = []
    edges: list[np.ndarray[Any, Any] | int] = []
    for d, k, c in zip(dims, ordered, chunking, strict=True):
        assert isinstance(d, np.ndarray)
        if isinstance(c, int):
            local.append(d[order] - k * c)
            edges.append(c)
        else:
            lo, edge = c.offsets_and_edges(k)
            local.append(d[order] - lo)
            edges.append(edge)
    ends = [*starts[1:].tolist(), int(order.shape[0])]
    for a, b in zip(starts.tolist(), ends, strict=True):
        yield ChunkProjection(
            coords=tuple(int(k[a]) for k in ordered),
            chunk_sel=PointDims(p[a:b].astype(np.intp, copy=False) for p in local),
            out_sel=(order[a:b],),
            is_complete=False,
            shape=tuple(e if isinstance(e, int) else int(e[a]) for e in edges),
        )
