"""Chunk grids: how an array's shape is cut into chunks.

Two kinds, behind one :class:`ChunkGrid`: ``regular`` (every chunk has the same shape;
the last ones along an axis may overhang the array) and ``rectilinear`` (the chunk grid
of the zarr-extensions: each axis either a regular step, or its own list of chunk edge
lengths, stored run-length encoded where that is shorter).

Each axis is a :class:`RegularDim` or an :class:`EdgesDim`. An :class:`EdgesDim` keeps its
edges as runs (``(edge, count)``) with their prefix sums, so an axis of a billion equal
edges costs one run, and finding the chunk of an element is a bisection over the runs plus
a division (``numpy.searchsorted`` for many elements at once), never a walk over edges.
Where every chunk an axis has within the array is equally long, the axis reports that
length as :attr:`uniform`, and indexing treats it exactly as a regular axis: a
rectilinear grid of equal chunks plans reads and writes as fast as a regular one.
"""

from __future__ import annotations

import bisect
import itertools
import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Literal, TypeAlias

import numpy as np

from asyncarr.errors import MetadataError

__all__ = [
    "MAX_EXTENT",
    "ChunkGrid",
    "DimChunking",
    "EdgesDim",
    "RegularDim",
    "parse_chunk_grid",
]

MAX_EXTENT = (1 << 63) - 1
"""Largest array extent, chunk edge or sum of the edges along an axis (int64 offsets)."""


@dataclass(frozen=True, slots=True)
class RegularDim:
    """An axis cut into chunks of ``size`` (the last may overhang ``extent``)."""

    size: int
    extent: int

    @property
    def nchunks(self) -> int:
        """Chunks overlapping ``[0, extent)``."""
        return -(-self.extent // self.size)

    @property
    def uniform(self) -> int:
        return self.size

    @property
    def max_edge(self) -> int:
        return self.size

    def index(self, i: int) -> int:
        return i // self.size

    def offset(self, k: int) -> int:
        return k * self.size

    def edge(self, k: int) -> int:
        return self.size

    def distinct_edges(self) -> tuple[int, ...]:
        return (self.size,)

    def resized(self, extent: int, multiple: int = 1) -> RegularDim:
        return RegularDim(self.size, extent)

    def to_json(self) -> int:
        return self.size

    def describe(self) -> str:
        return str(self.size)


class EdgesDim:
    """An axis cut into chunks of listed edge lengths, kept as runs of equal edges.

    The edges may reach past ``extent`` (their sum is at least the extent): chunks that
    start at or after it are not part of the array (:attr:`nchunks` counts those that
    overlap it) but stay in the metadata, as zarr-python keeps them.
    """

    __slots__ = ("_edges", "_firsts", "_hash", "_np", "_starts", "extent", "ncells", "runs")

    def __init__(self, runs: Sequence[tuple[int, int]], extent: int) -> None:
        merged: list[tuple[int, int]] = []
        for edge, count in runs:
            if merged and merged[-1][0] == edge:
                merged[-1] = (edge, merged[-1][1] + count)
            else:
                merged.append((edge, count))
        if not merged:
            raise MetadataError("a rectilinear axis needs at least one chunk edge")
        self.runs: tuple[tuple[int, int], ...] = tuple(merged)
        self.extent = extent
        firsts = [0]
        starts = [0]
        for edge, count in self.runs:
            firsts.append(firsts[-1] + count)
            starts.append(starts[-1] + edge * count)
        self._firsts = firsts
        """The index of each run's first chunk (and, last, the number of chunks)."""
        self._starts = starts
        """Where each run's first chunk starts (and, last, the sum of the edges)."""
        self._edges = [edge for edge, _ in self.runs]
        self.ncells: int = firsts[-1]
        """Every chunk the edges describe, overlapping the array or not."""
        self._hash = hash((self.runs, extent))
        self._np: tuple[np.ndarray[Any, Any], ...] | None = None

    def __reduce__(self) -> tuple[Any, ...]:
        return (EdgesDim, (self.runs, self.extent))

    def __eq__(self, other: object) -> bool:
        return (
            isinstance(other, EdgesDim)
            and self._hash == other._hash
            and (self.runs, self.extent) == (other.runs, other.extent)
        )

    def __hash__(self) -> int:
        return self._hash

    def __repr__(self) -> str:
        return f"EdgesDim({self.describe()}, extent={self.extent})"

    @property
    def total(self) -> int:
        """The sum of the edges."""
        return self._starts[-1]

    @property
    def nchunks(self) -> int:
        """Chunks overlapping ``[0, extent)``."""
        return 0 if self.extent == 0 else self.index(self.extent - 1) + 1

    @property
    def uniform(self) -> int | None:
        """The edge of every chunk within the extent, where they are all one length."""
        edge, count = self.runs[0]
        return edge if edge * count >= self.extent else None

    @property
    def max_edge(self) -> int:
        return max(self._edges)

    def _run_of_element(self, i: int) -> int:
        return min(bisect.bisect_right(self._starts, i), len(self.runs)) - 1

    def _run_of_chunk(self, k: int) -> int:
        return min(bisect.bisect_right(self._firsts, k), len(self.runs)) - 1

    def index(self, i: int) -> int:
        """The chunk holding element ``i`` (``0 <= i < total``)."""
        r = self._run_of_element(i)
        return self._firsts[r] + (i - self._starts[r]) // self._edges[r]

    def offset(self, k: int) -> int:
        """Where chunk ``k`` starts."""
        r = self._run_of_chunk(k)
        return self._starts[r] + (k - self._firsts[r]) * self._edges[r]

    def edge(self, k: int) -> int:
        return self._edges[self._run_of_chunk(k)]

    def _arrays(self) -> tuple[np.ndarray[Any, Any], ...]:
        if self._np is None:
            self._np = (
                np.asarray(self._starts, dtype=np.int64),
                np.asarray(self._firsts, dtype=np.int64),
                np.asarray(self._edges, dtype=np.int64),
            )
        return self._np

    def indices(self, elements: np.ndarray[Any, Any]) -> np.ndarray[Any, Any]:
        """:meth:`index` of many elements at once."""
        starts, firsts, edges = self._arrays()
        r = np.minimum(np.searchsorted(starts, elements, side="right"), len(edges)) - 1
        out: np.ndarray[Any, Any] = firsts[r] + (elements - starts[r]) // edges[r]
        return out

    def offsets_and_edges(
        self, chunks: np.ndarray[Any, Any]
    ) -> tuple[np.ndarray[Any, Any], np.ndarray[Any, Any]]:
        """:meth:`offset` and :meth:`edge` of many chunks at once."""
        starts, firsts, edges = self._arrays()
        r = np.minimum(np.searchsorted(firsts, chunks, side="right"), len(edges)) - 1
        return starts[r] + (chunks - firsts[r]) * edges[r], edges[r]

    def distinct_edges(self) -> tuple[int, ...]:
        return tuple(sorted(set(self._edges)))

    def resized(self, extent: int, multiple: int = 1) -> EdgesDim:
        """The axis for a new extent: growing past the edges adds one chunk covering the
        growth (rounded up to ``multiple``: a shard holds whole inner chunks); shrinking
        keeps every edge (they may reach past the extent), as zarr-python does."""
        if extent <= self.total:
            return EdgesDim(self.runs, extent)
        grow = extent - self.total
        grow = -(-grow // multiple) * multiple
        return EdgesDim((*self.runs, (grow, 1)), extent)

    def to_json(self) -> list[Any]:
        """The edges as zarr-python writes them: a run of one edge as the edge, a longer
        run as ``[edge, count]`` (the same as the plain list where no edge repeats)."""
        return [edge if count == 1 else [edge, count] for edge, count in self.runs]

    def describe(self) -> str:
        text = str(self.to_json()).replace(" ", "")
        return text if len(text) <= 60 else text[:57] + "..."

    def data_sizes(self) -> Iterator[int]:
        """The valid length of each chunk within the extent."""
        left = self.extent
        for edge, count in self.runs:
            for _ in range(count):
                if left <= 0:
                    return
                yield min(edge, left)
                left -= edge


Dim: TypeAlias = RegularDim | EdgesDim

DimChunking: TypeAlias = int | EdgesDim
"""How indexing sees one axis: its chunk length where every chunk it has within the array
is equally long (then the arithmetic of a regular axis applies), else its edges."""


@dataclass(frozen=True)
class ChunkGrid:
    """How an array of ``shape`` is cut into chunks (each axis: :class:`RegularDim` or
    :class:`EdgesDim`). ``kind`` is how the metadata names it."""

    kind: Literal["regular", "rectilinear"]
    dims: tuple[Dim, ...]

    @classmethod
    def regular(cls, shape: Sequence[int], chunk_shape: Sequence[int]) -> ChunkGrid:
        return cls(
            "regular",
            tuple(RegularDim(int(c), int(n)) for n, c in zip(shape, chunk_shape, strict=True)),
        )

    @property
    def ndim(self) -> int:
        return len(self.dims)

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(d.extent for d in self.dims)

    @property
    def grid_shape(self) -> tuple[int, ...]:
        """Chunks per axis (those overlapping the array)."""
        return tuple(d.nchunks for d in self.dims)

    @property
    def nchunks(self) -> int:
        return math.prod(self.grid_shape)

    @property
    def is_regular(self) -> bool:
        return self.kind == "regular"

    @property
    def chunking(self) -> tuple[DimChunking, ...]:
        """Each axis as indexing sees it (:data:`DimChunking`)."""
        out: list[DimChunking] = []
        for d in self.dims:
            uniform = d.uniform
            out.append(d if uniform is None else uniform)  # type: ignore[arg-type]
        return tuple(out)

    @property
    def uniform_shape(self) -> tuple[int, ...] | None:
        """The shape of every chunk of the array, where they all have one (a regular grid,
        or a rectilinear one whose chunks within the shape are all alike)."""
        shape = self.chunking
        if all(isinstance(c, int) for c in shape):
            return shape  # type: ignore[return-value]
        return None

    @property
    def chunk_shape(self) -> tuple[int, ...]:
        """The chunk shape of a regular grid (:class:`MetadataError` for a rectilinear one:
        see :meth:`chunk_shape_at` and :attr:`chunk_sizes`)."""
        if not self.is_regular:
            raise MetadataError(
                f"a rectilinear chunk grid ({self.describe()}) has no single chunk shape"
            )
        return tuple(d.uniform for d in self.dims)  # type: ignore[misc]

    @property
    def max_chunk_shape(self) -> tuple[int, ...]:
        """The longest edge of each axis: no chunk is larger."""
        return tuple(d.max_edge for d in self.dims)

    def chunk_shape_at(self, coords: Sequence[int]) -> tuple[int, ...]:
        """The shape of the chunk at ``coords`` as its codecs see it (edges overhanging
        the array included)."""
        return tuple(d.edge(k) for d, k in zip(self.dims, coords, strict=True))

    def chunk_origin(self, coords: Sequence[int]) -> tuple[int, ...]:
        return tuple(d.offset(k) for d, k in zip(self.dims, coords, strict=True))

    @property
    def first_chunk_shape(self) -> tuple[int, ...]:
        """The shape of chunk ``(0, 0, ...)``: the array's chunk shape where they all have
        one, else a representative one (sizing heuristics, the default codec spec)."""
        return tuple(d.edge(0) for d in self.dims)

    @property
    def chunk_sizes(self) -> tuple[tuple[int, ...], ...]:
        """Per axis, the length of each chunk within the array (dask's ``chunks``)."""
        out = []
        for d in self.dims:
            if isinstance(d, RegularDim):
                n = d.nchunks
                sizes = [d.size] * n
                if n:
                    sizes[-1] = d.extent - (n - 1) * d.size
                out.append(tuple(sizes))
            else:
                out.append(tuple(d.data_sizes()))
        return tuple(out)

    def chunk_shapes_for_validation(self) -> Iterator[tuple[int, ...]]:
        """Chunk shapes that between them have every edge of every axis: enough to check
        codecs whose constraints are per axis (sharding: every edge a multiple of the
        inner chunk)."""
        base = self.first_chunk_shape
        yield base
        for axis, d in enumerate(self.dims):
            for edge in d.distinct_edges():
                if edge != base[axis]:
                    yield (*base[:axis], edge, *base[axis + 1 :])

    def resized(self, shape: Sequence[int], multiple: Sequence[int] | None = None) -> ChunkGrid:
        """The grid for a new shape (see :meth:`EdgesDim.resized`)."""
        if len(shape) != self.ndim:
            raise MetadataError(f"shape {list(shape)} does not have {self.ndim} dimensions")
        units = multiple or (1,) * self.ndim
        return ChunkGrid(
            self.kind,
            tuple(d.resized(n, u) for d, n, u in zip(self.dims, shape, units, strict=True)),
        )

    def to_json(self) -> dict[str, Any]:
        if self.is_regular:
            return {"name": "regular", "configuration": {"chunk_shape": list(self.chunk_shape)}}
        return {
            "name": "rectilinear",
            "configuration": {"kind": "inline", "chunk_shapes": [d.to_json() for d in self.dims]},
        }

    def describe(self) -> str:
        """A short description for people (``info``)."""
        if self.is_regular:
            return str(self.chunk_shape)
        return "rectilinear [" + ", ".join(d.describe() for d in self.dims) + "]"

    def all_coords(self) -> Iterator[tuple[int, ...]]:
        return itertools.product(*(range(n) for n in self.grid_shape))


# -- parsing ------------------------------------------------------------------------------


def _positive(value: object, what: str, key: str | None) -> int:
    if isinstance(value, bool) or not isinstance(value, int | np.integer):
        raise MetadataError(f"{what} must be a positive integer, got {value!r}", key=key)
    out = int(value)
    if out < 1 or out > MAX_EXTENT:
        raise MetadataError(f"{what} must be between 1 and 2**63-1, got {out}", key=key)
    return out


def parse_edges(spec: object, axis: int, extent: int, key: str | None) -> Dim:
    """One axis of a rectilinear ``chunk_shapes``: a bare integer (a regular step), or a
    list of edge lengths and ``[edge, count]`` runs whose sum covers ``extent``."""
    what = f"the chunk edges of dimension {axis}"
    if not isinstance(spec, list):
        return RegularDim(_positive(spec, f"the chunk size of dimension {axis}", key), extent)
    if not spec:
        raise MetadataError(f"{what} must not be empty", key=key)
    runs: list[tuple[int, int]] = []
    total = 0
    for item in spec:
        if isinstance(item, list):
            if len(item) != 2:
                raise MetadataError(f"{what}: a run must be [edge, count], got {item!r}", key=key)
            edge = _positive(item[0], f"{what}: an edge", key)
            count = _positive(item[1], f"{what}: a run's count", key)
        else:
            edge, count = _positive(item, f"{what}: an edge", key), 1
        total += edge * count
        if total > MAX_EXTENT:
            raise MetadataError(f"{what} sum to more than 2**63-1", key=key)
        runs.append((edge, count))
    if total < extent:
        raise MetadataError(
            f"{what} sum to {total}, less than the array's extent {extent} there", key=key
        )
    return EdgesDim(runs, extent)


def parse_chunk_grid(doc: object, shape: tuple[int, ...], *, key: str | None = None) -> ChunkGrid:
    """A v3 ``chunk_grid`` document for an array of ``shape``."""
    if not isinstance(doc, dict):
        raise MetadataError(f"chunk_grid must be an object, got {doc!r}", key=key)
    name = doc.get("name")
    config = doc.get("configuration")
    if name not in ("regular", "rectilinear"):
        raise MetadataError(
            f"unsupported chunk grid {name!r}; known: 'regular', 'rectilinear'", key=key
        )
    if not isinstance(config, dict):
        raise MetadataError(f"chunk_grid configuration must be an object, got {config!r}", key=key)
    if name == "regular":
        chunk_shape = config.get("chunk_shape")
        if not isinstance(chunk_shape, list) or len(chunk_shape) != len(shape):
            raise MetadataError(
                f"chunk_shape must be a list of {len(shape)} integers, got {chunk_shape!r}",
                key=key,
            )
        sizes = [_positive(c, "chunk_shape entries", key) for c in chunk_shape]
        return ChunkGrid.regular(shape, sizes)
    if config.get("kind") != "inline":
        raise MetadataError(
            f"rectilinear chunk grid kind must be 'inline', got {config.get('kind')!r}", key=key
        )
    shapes = config.get("chunk_shapes")
    if not isinstance(shapes, list) or len(shapes) != len(shape):
        raise MetadataError(
            f"chunk_shapes must be a list of {len(shape)} entries (one per dimension), "
            f"got {_short(shapes)}",
            key=key,
        )
    return ChunkGrid(
        "rectilinear",
        tuple(parse_edges(s, axis, n, key) for axis, (s, n) in enumerate(zip(shapes, shape))),
    )


def _short(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."
