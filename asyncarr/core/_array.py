"""``AsyncArray``: the async handle on one Zarr array."""

from __future__ import annotations

import itertools
import math
from typing import Any

import numpy as np

from asyncarr.abc import Codec, NDArray, Store
from asyncarr.core._chunk_grid import ChunkGrid
from asyncarr.core._coerce import coerce_values
from asyncarr.core._context import ArrayContext, chunk_lock, forget_cached_prefix
from asyncarr.core._indexing import PointForm, Selection, normalize_points, normalize_selection
from asyncarr.core._info import ArrayInfo
from asyncarr.core._metadata import ArrayMetadata
from asyncarr.core._node import NodeBase
from asyncarr.core._nodes import save_array_metadata
from asyncarr.core._operation import store_operation
from asyncarr.core._read import read_selection
from asyncarr.core._streaming import BlockIterator, BlockWriter, Unit
from asyncarr.core._write import write_selection
from asyncarr.errors import ConfigError, SelectionError, UnsupportedOperationError
from asyncarr.runtime import bounded_for_each, bounded_map

__all__ = ["AsyncArray"]


class _AsyncOrthogonalIndexer:
    """``await arr.oindex[sel]`` reads an orthogonal selection."""

    def __init__(self, array: AsyncArray) -> None:
        self._array = array

    def __getitem__(self, selection: Any) -> Any:
        return self._array.read(selection, orthogonal=True)


class _AsyncVectorizedIndexer:
    """``await arr.vindex[sel]`` reads points (vectorized selection);
    ``await arr.vindex.set(sel, value)`` writes them."""

    def __init__(self, array: AsyncArray) -> None:
        self._array = array

    def __getitem__(self, selection: Any) -> Any:
        return self._array._read_points(selection, None)

    async def set(self, selection: Any, value: Any) -> None:
        """Write ``value`` (broadcast to the points' shape) at the points ``selection``."""
        await self._array._write_points(selection, value, None)


class AsyncArray(NodeBase):
    """An open Zarr array (v2 or v3). Create one with :func:`asyncarr.create_array`
    or :func:`asyncarr.open_array`.

    Reads return new :class:`numpy.ndarray` objects; writes take anything
    numpy can broadcast to the selection. Use ``async with`` or :meth:`aclose`
    to release a store the array opened itself.
    """

    _kind = "array"

    def __init__(
        self,
        store: Store,
        path: str,
        metadata: ArrayMetadata,
        *,
        write_empty_chunks: bool = False,
        owns_store: bool = False,
        read_only: bool = False,
    ) -> None:
        super().__init__(store, path, owns_store=owns_store, read_only=read_only)
        self._ctx = ArrayContext(store, self._path, metadata, write_empty_chunks)

    # -- description -------------------------------------------------------------------
    @property
    def metadata(self) -> ArrayMetadata:
        return self._ctx.meta

    @property
    def shape(self) -> tuple[int, ...]:
        return self.metadata.shape

    @property
    def ndim(self) -> int:
        return len(self.shape)

    @property
    def size(self) -> int:
        return math.prod(self.shape)

    @property
    def dtype(self) -> np.dtype[Any]:
        return self.metadata.dtype

    @property
    def nbytes(self) -> int:
        return self.size * self.dtype.itemsize

    @property
    def chunks(self) -> tuple[int, ...]:
        """The shape of one chunk (the inner chunk for sharded arrays). An unsharded array
        with a rectilinear chunk grid has no one chunk shape: :class:`MetadataError` (see
        :attr:`chunk_sizes`)."""
        sharding = self._ctx.sharding
        return sharding.chunk_shape if sharding is not None else self.metadata.chunk_shape

    @property
    def shards(self) -> tuple[int, ...] | None:
        """The shape of one shard, or ``None`` when the array is not sharded (a rectilinear
        grid of shards has no one shard shape: :class:`MetadataError`)."""
        return self.metadata.chunk_shape if self._ctx.sharding is not None else None

    @property
    def chunk_grid(self) -> ChunkGrid:
        """How the array is cut into chunks (shards, for sharded arrays): regular or
        rectilinear."""
        return self.metadata.chunk_grid

    @property
    def chunk_sizes(self) -> tuple[tuple[int, ...], ...]:
        """Per dimension, the length of each chunk within the array (dask's ``chunks``;
        the inner chunks for sharded arrays), for regular and rectilinear grids alike."""
        sharding = self._ctx.sharding
        if sharding is not None:
            return ChunkGrid.regular(self.shape, sharding.chunk_shape).chunk_sizes
        return self.metadata.chunk_grid.chunk_sizes

    @property
    def fill_value(self) -> Any:
        return self.metadata.fill_value

    @property
    def order(self) -> str:
        return self.metadata.order

    @property
    def dimension_names(self) -> tuple[str | None, ...] | None:
        return self.metadata.dimension_names

    @property
    def codecs(self) -> tuple[Codec, ...]:
        return self.metadata.codecs

    @property
    def write_empty_chunks(self) -> bool:
        return self._ctx.write_empty_chunks

    @property
    def nchunks(self) -> int:
        """Number of chunks (shards for sharded arrays) in the grid."""
        return self.metadata.nchunks

    @property
    def info(self) -> ArrayInfo:
        """A readable summary (no I/O); see :meth:`info_complete` for stored sizes."""
        return ArrayInfo.from_array(self)

    @property
    def oindex(self) -> _AsyncOrthogonalIndexer:
        return _AsyncOrthogonalIndexer(self)

    @property
    def vindex(self) -> _AsyncVectorizedIndexer:
        """Vectorized (point) selection, as numpy and zarr-python define it: one integer
        array per dimension, broadcast together, or one boolean mask of the array's shape
        (``await arr.vindex[rows, cols]``, ``await arr.vindex.set(mask, 0)``)."""
        return _AsyncVectorizedIndexer(self)

    def __reduce__(self) -> tuple[Any, ...]:
        """Pickled as its store (see :class:`asyncarr.abc.Store`), path, mode and the
        metadata it holds now: the copy does no I/O until it is used, and owns its store."""
        return (
            _reopen_array,
            (type(self), self._store, self._path, self.metadata, self.write_empty_chunks,
             self._read_only),
        )  # fmt: skip

    def __repr__(self) -> str:
        return (
            f"<AsyncArray {self._store}{self.name} shape={self.shape} dtype={self.dtype} "
            f"chunks={self._chunks_label()} zarr_format={self.zarr_format}>"
        )

    def _chunks_label(self) -> str:
        grid = self.metadata.chunk_grid
        if self._ctx.sharding is not None or grid.is_regular:
            return str(self.chunks)
        return grid.describe()

    # -- data ----------------------------------------------------------------------------
    def _selection(self, selection: Any, orthogonal: bool) -> Selection:
        return normalize_selection(
            selection, self.shape, dimension_names=self.dimension_names, orthogonal=orthogonal
        )

    @store_operation("read", write=False)
    async def read(self, selection: Any = Ellipsis, *, orthogonal: bool = False) -> NDArray:
        """Read ``selection`` (numpy basic indexing, or orthogonal with ``orthogonal=True``).

        A mapping selects by dimension name: ``await arr.read({"time": slice(0, 31)})``.
        """
        return await read_selection(self._ctx, self._selection(selection, orthogonal))

    @store_operation("write", write=True)
    async def write(
        self, value: Any, selection: Any = Ellipsis, *, orthogonal: bool = False
    ) -> None:
        """Write ``value`` (broadcast like numpy) into ``selection``."""
        self._check_writable()
        sel = self._selection(selection, orthogonal)
        arr = self._coerce(value, sel)
        await write_selection(self._ctx, sel, arr)

    def iter_blocks(
        self, selection: Any = None, *, unit: Unit = "chunk", prefetch: int = 4
    ) -> BlockIterator:
        """Stream ``selection`` (slices with step 1; everything by default) as ``(region,
        block)`` pairs in C order, cut by ``unit``: ``"chunk"`` (the inner chunks of a
        sharded array), ``"shard"``, or a block shape. At most ``prefetch`` blocks are read
        ahead; leaving the loop early (or ``aclose()``) cancels the reads in flight::

            async for region, block in arr.iter_blocks(unit="shard", prefetch=8):
                total += block.sum()
        """
        return BlockIterator(self, selection, unit, prefetch)

    def block_writer(self, *, max_inflight: int = 4) -> BlockWriter:
        """A writer for a stream of blocks: ``async with arr.block_writer() as w: await
        w.write(region, block)``. Whole write units (shards, or chunks when unsharded) are
        stored as soon as they are complete - from one block or assembled from several -
        so an aligned stream never reads and rewrites one; at most ``max_inflight`` unit
        writes run at once (``write`` waits). What is still incomplete at the end is
        written the ordinary way."""
        self._check_writable()
        return BlockWriter(self, max_inflight)

    # zarr-python's names for the kinds of selection
    async def get_basic_selection(self, selection: Any = Ellipsis) -> NDArray:
        """Read a basic selection (ints, slices, Ellipsis): :meth:`read`."""
        return await self.read(selection)

    async def set_basic_selection(self, selection: Any, value: Any) -> None:
        """Write ``value`` at a basic selection: :meth:`write`."""
        await self.write(value, selection)

    async def get_orthogonal_selection(self, selection: Any) -> NDArray:
        """Read an orthogonal selection (integer or boolean arrays per axis, crossed)."""
        return await self.read(selection, orthogonal=True)

    async def set_orthogonal_selection(self, selection: Any, value: Any) -> None:
        """Write ``value`` at an orthogonal selection."""
        await self.write(value, selection, orthogonal=True)

    async def get_coordinate_selection(self, selection: Any) -> NDArray:
        """Read the points at one integer array per dimension (broadcast together); the
        result has their broadcast shape."""
        return await self._read_points(selection, "coordinate")

    async def set_coordinate_selection(self, selection: Any, value: Any) -> None:
        """Write ``value`` at the points of one integer array per dimension."""
        await self._write_points(selection, value, "coordinate")

    async def get_mask_selection(self, mask: Any) -> NDArray:
        """Read the elements where the boolean ``mask`` (of the array's shape) is true,
        as a 1-d array in C order."""
        return await self._read_points(mask, "mask")

    async def set_mask_selection(self, mask: Any, value: Any) -> None:
        """Write ``value`` where the boolean ``mask`` (of the array's shape) is true."""
        await self._write_points(mask, value, "mask")

    @store_operation("read", write=False)
    async def _read_points(self, selection: Any, form: PointForm | None) -> NDArray:
        return await read_selection(self._ctx, normalize_points(selection, self.shape, form))

    @store_operation("write", write=True)
    async def _write_points(self, selection: Any, value: Any, form: PointForm | None) -> None:
        self._check_writable()
        sel = normalize_points(selection, self.shape, form)
        await write_selection(self._ctx, sel, self._coerce(value, sel))

    def _coerce(self, value: Any, sel: Selection) -> NDArray:
        arr = coerce_values(value, self.metadata.data_type, self.name, sel.result_shape)
        try:
            arr = np.broadcast_to(arr, sel.result_shape)
        except ValueError as exc:
            raise SelectionError(
                f"value of shape {arr.shape} cannot be broadcast to the selection shape {sel.result_shape}"
            ) from exc
        return arr.reshape(sel.out_shape)

    # -- shape changes ---------------------------------------------------------------------
    @store_operation("resize", write=True)
    async def resize(self, *shape: int | tuple[int, ...]) -> None:
        """Change the shape; data outside the new shape is deleted, new regions read as fill.

        A rectilinear chunk grid keeps its edges when the array shrinks (they may reach
        past the shape) and gains one chunk covering the growth where the array grows past
        them (for shards, rounded up to whole inner chunks), as zarr-python does.
        """
        self._check_writable()
        new_shape = self._parse_shape(shape)
        old = self.metadata
        if new_shape == old.shape:
            return
        sharding = self._ctx.sharding
        grid = old.chunk_grid.resized(
            new_shape, sharding.chunk_shape if sharding is not None else None
        )
        new_meta = old.evolve(shape=new_shape, chunk_grid=grid)
        grown = any(n > o for n, o in zip(new_shape, old.shape, strict=True))
        try:
            if grown:
                # Clear anything stale in the region that becomes visible before it does.
                await self._clear_outside(grid, old.shape, new_shape)
            await save_array_metadata(self._ctx.io, self._path, new_meta)
            self._set_metadata(new_meta)
            await self._clear_outside(grid, new_shape, old.shape)
        finally:
            # the chunks changed above may be cached (cheap; resizes are rare)
            forget_cached_prefix(self._store, self._ctx.prefix)

    def _parse_shape(self, shape: tuple[int | tuple[int, ...], ...]) -> tuple[int, ...]:
        if len(shape) == 1 and isinstance(shape[0], tuple | list):
            shape = tuple(shape[0])
        if len(shape) != self.ndim or any(
            not isinstance(s, int | np.integer) or s < 0 for s in shape
        ):
            raise ConfigError(f"new shape must be {self.ndim} non-negative integers, got {shape!r}")
        return tuple(int(s) for s in shape)  # type: ignore[arg-type]

    async def _clear_outside(
        self, grid: ChunkGrid, keep: tuple[int, ...], bound: tuple[int, ...]
    ) -> None:
        """Delete chunks of ``grid`` entirely outside ``keep`` and fill the outside part of
        edge chunks.

        Where the store lists every key, only the chunks stored are visited (a request per
        chunk that exists, none per chunk that might: growing a 10 x 10 array to 1000 x 1000
        used to send 10,000 deletes; a huge sparse array never finished). Elsewhere the
        chunks of the grid within ``bound`` (and ``keep``) that cross or lie past ``keep``.
        """
        dims = grid.dims

        def outside(coords: tuple[int, ...]) -> bool:
            return any(
                d.offset(ci) + d.edge(ci) > k for ci, d, k in zip(coords, dims, keep, strict=True)
            )

        async def visit(coords: tuple[int, ...]) -> None:
            key = self._ctx.chunk_key(coords)
            if any(d.offset(ci) >= k for ci, d, k in zip(coords, dims, keep, strict=True)):
                await self._ctx.io.delete(key)
                return
            await self._fill_chunk_outside(grid, coords, keep)

        if self._ctx.store.lists_every_key:
            found = [coords async for coords in self._iter_stored_chunks() if outside(coords)]
            await bounded_for_each(visit, found, limit=self._ctx.io_concurrency())
            return
        counts = tuple(
            d.index(m - 1) + 1 if m else 0
            for d, m in ((d, max(b, k)) for d, b, k in zip(dims, bound, keep, strict=True))
        )
        candidates = (
            coords for coords in itertools.product(*(range(g) for g in counts)) if outside(coords)
        )
        await bounded_for_each(visit, candidates, limit=self._ctx.io_concurrency())

    async def _fill_chunk_outside(
        self, grid: ChunkGrid, coords: tuple[int, ...], keep: tuple[int, ...]
    ) -> None:
        ctx = self._ctx
        key = ctx.chunk_key(coords)
        shape = grid.chunk_shape_at(coords)
        pipeline = ctx.pipeline.for_shape(shape)
        async with chunk_lock(self._store, key):
            data = await ctx.io.get(key, max_size=pipeline.encoded_bound)
            if data is None:
                return
            chunk = np.array(pipeline.decode(data, key=key), copy=True)
            valid = tuple(
                slice(0, max(0, min(c, k - o)))
                for o, c, k in zip(grid.chunk_origin(coords), shape, keep, strict=True)
            )
            cleared = np.full(chunk.shape, ctx.fill, dtype=chunk.dtype)
            cleared[valid] = chunk[valid]
            if not ctx.write_empty_chunks and pipeline.is_fill(cleared):
                await ctx.io.delete(key)
            else:
                await ctx.io.set(key, pipeline.encode(cleared, key=key))

    @store_operation("append to", write=True)
    async def append(self, data: Any, axis: int = 0) -> tuple[int, ...]:
        """Grow along ``axis`` and write ``data`` there; returns the new shape."""
        self._check_writable()
        arr = np.asarray(data)
        if arr.ndim != self.ndim:
            raise SelectionError(f"appended data must have {self.ndim} dimensions, got {arr.ndim}")
        if not -self.ndim <= axis < self.ndim:
            raise SelectionError(f"axis {axis} is out of range for {self.ndim} dimensions")
        axis %= self.ndim
        for d in range(self.ndim):
            if d != axis and arr.shape[d] != self.shape[d]:
                raise SelectionError(
                    f"appended data has shape {arr.shape}; all axes but {axis} must match {self.shape}"
                )
        old = self.shape[axis]
        new_shape = tuple(s + arr.shape[axis] if d == axis else s for d, s in enumerate(self.shape))
        await self.resize(new_shape)
        sel = tuple(slice(old, None) if d == axis else slice(None) for d in range(self.ndim))
        await self.write(arr, sel)
        return new_shape

    # -- attributes ---------------------------------------------------------------------
    def _attributes_owner(self) -> ArrayMetadata:
        return self.metadata

    async def _save_attributes(self, attrs: dict[str, Any]) -> None:
        meta = self.metadata.evolve(attributes=attrs)
        await save_array_metadata(self._ctx.io, self._path, meta)
        self._set_metadata(meta)

    # -- inspection ----------------------------------------------------------------------
    async def _iter_stored_chunks(self) -> Any:
        """Coordinates of every chunk object present in the store (by listing)."""
        store = self._ctx.store
        if not store.lists_every_key:
            raise UnsupportedOperationError(
                f"cannot count or size the stored chunks of {self._path or 'the root array'!r}"
                f": {store} cannot list them (at most metadata documents)",
                store=store,
            )
        meta = self.metadata
        enc = meta.chunk_key_encoding
        prefix = self._ctx.prefix
        root = prefix + ("c" + enc.separator if enc.kind == "default" else "")
        if enc.kind == "default" and meta.ndim == 0:
            root = prefix + "c"
        async for key in self._ctx.io.list_prefix(root):
            rest = key[len(root) :]
            parts = rest.split(enc.separator) if rest else []
            if enc.kind == "default" and meta.ndim == 0:
                if key == prefix + "c":
                    yield ()
                continue
            if meta.ndim == 0 and enc.kind == "v2":
                if rest == "0":
                    yield ()
                continue
            if len(parts) != meta.ndim or not all(p.isdigit() for p in parts):
                continue
            yield tuple(int(p) for p in parts)

    @store_operation("count chunks of", write=False)
    async def nchunks_initialized(self) -> int:
        """How many chunks (shards for sharded arrays) exist in the store."""
        grid = self.metadata.chunk_grid_shape
        n = 0
        async for coords in self._iter_stored_chunks():
            if all(c < g for c, g in zip(coords, grid, strict=True)):
                n += 1
        return n

    @store_operation("size", write=False)
    async def nbytes_stored(self) -> int:
        """Bytes of metadata and chunks this array occupies in the store."""
        prefix = self._ctx.prefix
        names = {"zarr.json", ".zarray", ".zattrs"}
        keys = [k async for k in self._ctx.io.list_prefix(prefix)]
        chunk_keys = set()
        async for coords in self._iter_stored_chunks():
            chunk_keys.add(self._ctx.chunk_key(coords))
        wanted = [k for k in keys if k in chunk_keys or k[len(prefix) :] in names]
        sizes = await bounded_map(self._ctx.io.getsize, wanted, limit=self._ctx.io_concurrency())
        return sum(sizes)

    @store_operation("inspect", write=False)
    async def info_complete(self) -> ArrayInfo:
        """:attr:`info` plus stored bytes, compression ratio and initialised chunks."""
        return ArrayInfo.from_array(
            self,
            nbytes_stored=await self.nbytes_stored(),
            nchunks_initialized=await self.nchunks_initialized(),
        )

    # -- lifecycle -----------------------------------------------------------------------
    def _set_metadata(self, meta: ArrayMetadata) -> None:
        self._ctx = ArrayContext(self._store, self._path, meta, self._ctx.write_empty_chunks)


def _reopen_array(
    cls: type[AsyncArray],
    store: Store,
    path: str,
    metadata: ArrayMetadata,
    write_empty_chunks: bool,
    read_only: bool,
) -> AsyncArray:
    """Unpickle an :class:`AsyncArray`."""
    return cls(
        store,
        path,
        metadata,
        write_empty_chunks=write_empty_chunks,
        owns_store=True,
        read_only=read_only,
    )
