"""Blocking twins of the async API (layer L5).

Every function and method here has the same name and signature as its async
counterpart and simply runs it on the shared event-loop thread
(:class:`asyncarr.runtime.SyncPortal`) and waits. ``Array`` adds numpy
conveniences: ``arr[...]``, ``arr[...] = v``, ``arr.oindex[...]``, ``arr.vindex[...]``
and ``numpy.asarray(arr)``.

Handles pickle (for dask, multiprocessing, Ray): an ``Array`` or ``Group`` pickles as its
async node (store, path, mode, metadata) and unpickles without I/O. The first handle
unpickled in another process than the one that pickled it keeps that process's event-loop
thread running for good, so the handles that come and go in a worker (one per dask task)
share one loop and therefore one connection pool per store endpoint, instead of starting
and stopping both each time. (The loop's clients are closed when it stops, at exit.)

Calling these from inside a running event loop works (the loop's thread is
blocked while the portal does the work, as in Jupyter), except from the
portal's own thread, which raises :class:`asyncarr.errors.SyncFromLoopError`.
"""

from __future__ import annotations

import contextlib
import threading
import weakref
from collections.abc import Awaitable, Callable, Iterator, Mapping, MutableMapping, Sequence
from types import TracebackType
from typing import Any, Generic, Literal, ParamSpec, Self, TypeVar

import numpy as np

from asyncarr import core
from asyncarr._process import process_token
from asyncarr.abc import Codec, NDArray, Store
from asyncarr.core import (
    DEFAULT_COMPRESSOR,
    AccessMode,
    ArrayInfo,
    ArrayMetadata,
    AsyncArray,
    AsyncGroup,
    ChunkGrid,
    GroupInfo,
    GroupMetadata,
    Unit,
    UnsupportedNode,
)
from asyncarr.core import BlockIterator as AsyncBlockIterator
from asyncarr.core import BlockWriter as AsyncBlockWriter
from asyncarr.core._node import NodeBase
from asyncarr.errors import SelectionError
from asyncarr.runtime import SyncPortal, get_portal

__all__ = [
    "Array",
    "BlockWriter",
    "Group",
    "consolidate_metadata",
    "create_array",
    "create_group",
    "open",
    "open_array",
    "open_group",
    "transaction",
]

P = ParamSpec("P")
T = TypeVar("T")


def _run(fn: Callable[P, Awaitable[T]], *args: P.args, **kwargs: P.kwargs) -> T:
    return get_portal().call(fn, *args, **kwargs)


N = TypeVar("N")


def _opened(
    wrap: Callable[[T], N], fn: Callable[P, Awaitable[T]], *args: P.args, **kwargs: P.kwargs
) -> N:
    """Open a node and wrap it while holding a lease, so the event loop that opened
    its store (and the store's client sessions) lives on with the new object."""
    with get_portal():
        return wrap(_run(fn, *args, **kwargs))


class _Leased:
    """Holds a portal lease for as long as the object lives (or until closed)."""

    def __init__(self) -> None:
        portal = get_portal()
        self._finalizer = weakref.finalize(self, portal.release, portal.acquire())

    def _release_lease(self) -> None:
        self._finalizer()


_kept_portal: SyncPortal | None = None
_kept_portal_lock = threading.Lock()


def _keep_portal_running() -> None:
    """Hold one lease on this process's portal for as long as the process lives."""
    global _kept_portal
    portal = get_portal()
    with _kept_portal_lock:
        if _kept_portal is not portal:  # the first time here (or in a forked child)
            portal.acquire()
            _kept_portal = portal


def _reopen(cls: type[_Node[Any]], node: Any, pickled_in: str) -> _Node[Any]:
    """Unpickle an :class:`Array` or :class:`Group` (see the module docs)."""
    if pickled_in != process_token():  # a worker: it keeps its loop (and connections)
        _keep_portal_running()
    return cls(node)


NodeT = TypeVar("NodeT", bound=NodeBase)


class _Node(_Leased, Generic[NodeT]):
    """What the blocking Array and Group share: forwarding to the async node."""

    def __init__(self, node: NodeT) -> None:
        super().__init__()
        self._async: NodeT = node

    def __reduce__(self) -> tuple[Any, ...]:
        return (_reopen, (type(self), self._async, process_token()))

    @property
    def store(self) -> Store:
        return self._async.store

    @property
    def path(self) -> str:
        return self._async.path

    @property
    def name(self) -> str:
        return self._async.name

    @property
    def basename(self) -> str:
        return self._async.basename

    @property
    def zarr_format(self) -> int:
        return self._async.zarr_format

    @property
    def read_only(self) -> bool:
        return self._async.read_only

    @property
    def attrs(self) -> _Attributes:
        """Attributes; assigning ``node.attrs["k"] = v`` persists immediately."""
        return _Attributes(self)

    def update_attributes(self, new: Mapping[str, Any]) -> None:
        _run(self._async.update_attributes, new)

    def set_attributes(self, attributes: Mapping[str, Any]) -> None:
        _run(self._async.set_attributes, attributes)

    def close(self) -> None:
        """Release the store if this node opened it, and the portal lease."""
        try:
            _run(self._async.aclose)
        finally:
            self._release_lease()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


class _Attributes(MutableMapping[str, Any]):
    """``node.attrs``: reads are local, every change is persisted at once."""

    def __init__(self, node: _Node[Any]) -> None:
        self._node = node

    def _current(self) -> Mapping[str, Any]:
        attrs: Mapping[str, Any] = self._node._async.attrs
        return attrs

    def __getitem__(self, key: str) -> Any:
        return self._current()[key]

    def __setitem__(self, key: str, value: Any) -> None:
        self._node.update_attributes({key: value})

    def __delitem__(self, key: str) -> None:
        attrs = dict(self._current())
        del attrs[key]
        self._node.set_attributes(attrs)

    def __iter__(self) -> Iterator[str]:
        return iter(dict(self._current()))

    def __len__(self) -> int:
        return len(self._current())

    def asdict(self) -> dict[str, Any]:
        return dict(self._current())

    def __repr__(self) -> str:
        return repr(dict(self._current()))


class _OrthogonalIndexer:
    def __init__(self, array: Array) -> None:
        self._array = array

    def __getitem__(self, selection: Any) -> NDArray:
        return self._array.read(selection, orthogonal=True)

    def __setitem__(self, selection: Any, value: Any) -> None:
        self._array.write(value, selection, orthogonal=True)


class _VectorizedIndexer:
    def __init__(self, array: Array) -> None:
        self._array = array

    def __getitem__(self, selection: Any) -> Any:
        out = _run(self._array._async.vindex.__getitem__, selection)
        return out[()] if out.ndim == 0 else out

    def __setitem__(self, selection: Any, value: Any) -> None:
        _run(self._array._async.vindex.set, selection, value)


def _uses_arrays(selection: Any) -> bool:
    items = selection if isinstance(selection, tuple) else (selection,)
    n = sum(
        1
        for s in items
        if isinstance(s, list) or (isinstance(s, np.ndarray) and s.ndim)  # 0-d: an integer
    )
    if n > 1:
        raise SelectionError(
            "indexing with several integer/boolean arrays is ambiguous (numpy pairs them up); "
            "use arr.oindex[...] for orthogonal selection, arr.vindex[...] for points"
        )
    return n == 1


def _blocking_blocks(blocks: AsyncBlockIterator) -> Iterator[tuple[tuple[slice, ...], NDArray]]:
    async def step() -> tuple[tuple[slice, ...], NDArray] | None:
        try:
            return await blocks.__anext__()
        except StopAsyncIteration:
            return None

    with get_portal():  # the loop reading ahead lives as long as the generator
        try:
            while (item := _run(step)) is not None:
                yield item
        finally:
            _run(blocks.aclose)


class BlockWriter:
    """Blocking :class:`asyncarr.core.BlockWriter` (see :meth:`Array.block_writer`)."""

    def __init__(self, writer: AsyncBlockWriter) -> None:
        self._writer = writer

    @property
    def pending_units(self) -> int:
        """Write units held in part, waiting for the blocks that complete them."""
        return self._writer.pending_units

    def write(self, region: Any, block: Any) -> None:
        """Write ``block`` at ``region``; waits while ``max_inflight`` writes run."""
        _run(self._writer.write, region, block)

    def flush(self) -> None:
        """Wait for the unit writes in flight."""
        _run(self._writer.flush)

    def close(self) -> None:
        """Write what is held in part and wait for every write."""
        _run(self._writer.aclose)

    def __enter__(self) -> BlockWriter:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        _run(self._writer.__aexit__, exc_type, exc, tb)


class Array(_Node[AsyncArray]):
    """A blocking handle on a Zarr array; wraps an :class:`asyncarr.AsyncArray`."""

    def __init__(self, async_array: AsyncArray) -> None:
        super().__init__(async_array)

    # -- description (same properties as AsyncArray) ---------------------------------------
    @property
    def async_array(self) -> AsyncArray:
        return self._async

    @property
    def metadata(self) -> ArrayMetadata:
        return self._async.metadata

    @property
    def shape(self) -> tuple[int, ...]:
        return self._async.shape

    @property
    def ndim(self) -> int:
        return self._async.ndim

    @property
    def size(self) -> int:
        return self._async.size

    @property
    def dtype(self) -> np.dtype[Any]:
        return self._async.dtype

    @property
    def nbytes(self) -> int:
        return self._async.nbytes

    @property
    def chunks(self) -> tuple[int, ...]:
        return self._async.chunks

    @property
    def shards(self) -> tuple[int, ...] | None:
        return self._async.shards

    @property
    def chunk_grid(self) -> ChunkGrid:
        return self._async.chunk_grid

    @property
    def chunk_sizes(self) -> tuple[tuple[int, ...], ...]:
        return self._async.chunk_sizes

    @property
    def fill_value(self) -> Any:
        return self._async.fill_value

    @property
    def order(self) -> str:
        return self._async.order

    @property
    def dimension_names(self) -> tuple[str | None, ...] | None:
        return self._async.dimension_names

    @property
    def codecs(self) -> tuple[Codec, ...]:
        return self._async.codecs

    @property
    def write_empty_chunks(self) -> bool:
        return self._async.write_empty_chunks

    @property
    def nchunks(self) -> int:
        return self._async.nchunks

    @property
    def info(self) -> ArrayInfo:
        return self._async.info

    @property
    def oindex(self) -> _OrthogonalIndexer:
        return _OrthogonalIndexer(self)

    @property
    def vindex(self) -> _VectorizedIndexer:
        """Vectorized (point) selection: ``arr.vindex[rows, cols]``, ``arr.vindex[mask] = 0``
        (see :attr:`AsyncArray.vindex`)."""
        return _VectorizedIndexer(self)

    def __repr__(self) -> str:
        return repr(self._async).replace("<AsyncArray", "<Array", 1)

    def __len__(self) -> int:
        if not self.shape:
            raise TypeError("len() of a 0-d array")
        return self.shape[0]

    # -- data -----------------------------------------------------------------------------------
    def read(self, selection: Any = Ellipsis, *, orthogonal: bool = False) -> NDArray:
        """Blocking :meth:`AsyncArray.read`."""
        return _run(self._async.read, selection, orthogonal=orthogonal)

    def write(self, value: Any, selection: Any = Ellipsis, *, orthogonal: bool = False) -> None:
        """Blocking :meth:`AsyncArray.write`."""
        _run(self._async.write, value, selection, orthogonal=orthogonal)

    def iter_blocks(
        self, selection: Any = None, *, unit: Unit = "chunk", prefetch: int = 4
    ) -> Iterator[tuple[tuple[slice, ...], NDArray]]:
        """Blocking :meth:`AsyncArray.iter_blocks`: a generator of ``(region, block)``
        pairs; the next ``prefetch`` blocks are read on the event loop while the caller
        works on one. Closing the generator (or leaving the loop) cancels them."""
        return _blocking_blocks(self._async.iter_blocks(selection, unit=unit, prefetch=prefetch))

    def block_writer(self, *, max_inflight: int = 4) -> BlockWriter:
        """Blocking :meth:`AsyncArray.block_writer`: ``with arr.block_writer() as w:
        w.write(region, block)``."""
        return BlockWriter(self._async.block_writer(max_inflight=max_inflight))

    # zarr-python's names for the kinds of selection (see AsyncArray)
    def get_basic_selection(self, selection: Any = Ellipsis) -> NDArray:
        return _run(self._async.get_basic_selection, selection)

    def set_basic_selection(self, selection: Any, value: Any) -> None:
        _run(self._async.set_basic_selection, selection, value)

    def get_orthogonal_selection(self, selection: Any) -> NDArray:
        return _run(self._async.get_orthogonal_selection, selection)

    def set_orthogonal_selection(self, selection: Any, value: Any) -> None:
        _run(self._async.set_orthogonal_selection, selection, value)

    def get_coordinate_selection(self, selection: Any) -> NDArray:
        return _run(self._async.get_coordinate_selection, selection)

    def set_coordinate_selection(self, selection: Any, value: Any) -> None:
        _run(self._async.set_coordinate_selection, selection, value)

    def get_mask_selection(self, mask: Any) -> NDArray:
        return _run(self._async.get_mask_selection, mask)

    def set_mask_selection(self, mask: Any, value: Any) -> None:
        _run(self._async.set_mask_selection, mask, value)

    def __getitem__(self, selection: Any) -> Any:
        out = self.read(selection, orthogonal=_uses_arrays(selection))
        return out[()] if out.ndim == 0 else out

    def __setitem__(self, selection: Any, value: Any) -> None:
        self.write(value, selection, orthogonal=_uses_arrays(selection))

    def __array__(self, dtype: Any = None, copy: bool | None = None) -> NDArray:
        if copy is False:  # numpy 2's protocol: refuse rather than silently copy
            raise ValueError(
                "an asyncarr Array is read from its store into new memory: it has no "
                "buffer to view without a copy (use np.asarray(arr) or arr[...])"
            )
        out = self.read()
        return out if dtype is None else out.astype(dtype, copy=False)

    # -- changes --------------------------------------------------------------------------------
    def resize(self, *shape: int | tuple[int, ...]) -> None:
        _run(self._async.resize, *shape)

    def append(self, data: Any, axis: int = 0) -> tuple[int, ...]:
        return _run(self._async.append, data, axis)

    def nchunks_initialized(self) -> int:
        return _run(self._async.nchunks_initialized)

    def nbytes_stored(self) -> int:
        return _run(self._async.nbytes_stored)

    def info_complete(self) -> ArrayInfo:
        return _run(self._async.info_complete)


def _wrap(node: AsyncArray | AsyncGroup) -> Array | Group:
    return Array(node) if isinstance(node, AsyncArray) else Group(node)


def _wrap_member(
    node: AsyncArray | AsyncGroup | UnsupportedNode,
) -> Array | Group | UnsupportedNode:
    """A listed member for the blocking API (an :class:`UnsupportedNode` does no I/O: the
    same object serves both APIs)."""
    return node if isinstance(node, UnsupportedNode) else _wrap(node)


class Group(_Node[AsyncGroup]):
    """A blocking handle on a Zarr group; wraps an :class:`asyncarr.AsyncGroup`."""

    def __init__(self, async_group: AsyncGroup) -> None:
        super().__init__(async_group)

    @property
    def async_group(self) -> AsyncGroup:
        return self._async

    @property
    def metadata(self) -> GroupMetadata:
        return self._async.metadata

    def __repr__(self) -> str:
        return repr(self._async).replace("<AsyncGroup", "<Group", 1)

    def get(self, name: str) -> Array | Group:
        return _wrap(_run(self._async.get, name))

    def __getitem__(self, name: str) -> Any:
        return self.get(name)

    def contains(self, name: str) -> bool:
        return _run(self._async.contains, name)

    def __contains__(self, name: object) -> bool:
        """``name in group``: :meth:`contains`."""
        return isinstance(name, str) and self.contains(name)

    def members(
        self, max_depth: int | None = 0
    ) -> list[tuple[str, Array | Group | UnsupportedNode]]:
        return [(n, _wrap_member(node)) for n, node in _run(self._async.members, max_depth)]

    def keys(self) -> list[str]:
        return _run(self._async.keys)

    def __iter__(self) -> Iterator[str]:
        """``iter(group)``, ``list(group)``: the names of the direct members (:meth:`keys`)."""
        return iter(self.keys())

    def nmembers(self, max_depth: int | None = 0) -> int:
        return _run(self._async.nmembers, max_depth)

    def __len__(self) -> int:
        """``len(group)``: the number of direct members (:meth:`nmembers`)."""
        return self.nmembers()

    def arrays(self) -> list[tuple[str, Array | UnsupportedNode]]:
        return [(n, _wrap_member(node)) for n, node in _run(self._async.arrays)]  # type: ignore[misc]

    def groups(self) -> list[tuple[str, Group | UnsupportedNode]]:
        return [(n, _wrap_member(node)) for n, node in _run(self._async.groups)]  # type: ignore[misc]

    def array_keys(self) -> list[str]:
        return _run(self._async.array_keys)

    def group_keys(self) -> list[str]:
        return _run(self._async.group_keys)

    def tree(self) -> str:
        return _run(self._async.tree)

    @property
    def info(self) -> GroupInfo:
        return self._async.info

    def info_complete(self) -> GroupInfo:
        return _run(self._async.info_complete)

    def create_group(
        self, name: str, *, attributes: dict[str, Any] | None = None, overwrite: bool = False
    ) -> Group:
        return Group(
            _run(self._async.create_group, name, attributes=attributes, overwrite=overwrite)
        )

    def require_group(self, name: str) -> Group:
        return Group(_run(self._async.require_group, name))

    def create_array(self, name: str, **kwargs: Any) -> Array:
        return Array(_run(self._async.create_array, name, **kwargs))

    def delete(self, name: str) -> None:
        _run(self._async.delete, name)

    def consolidate_metadata(self) -> Group:
        self._async = _run(self._async.consolidate_metadata)
        return self


def create_array(
    store: str | Store,
    *,
    shape: Sequence[int] | int,
    chunks: Sequence[int | Sequence[int]] | int | ChunkGrid | None = None,
    dtype: Any = "float64",
    zarr_format: Literal[2, 3] = 3,
    fill_value: Any = None,
    compressor: Any = DEFAULT_COMPRESSOR,
    filters: Any = None,
    codecs: Any = None,
    shards: Sequence[int | Sequence[int]] | ChunkGrid | None = None,
    order: Literal["C", "F"] = "C",
    dimension_names: Sequence[str | None] | None = None,
    attributes: dict[str, Any] | None = None,
    chunk_key_encoding: Any = None,
    overwrite: bool = False,
    storage_options: Mapping[str, Any] | None = None,
    path: str = "",
    write_empty_chunks: bool = False,
) -> Array:
    """Blocking :func:`asyncarr.create_array`."""
    return _opened(
        Array,
        core.create_array,
        store,
        shape=shape,
        chunks=chunks,
        dtype=dtype,
        zarr_format=zarr_format,
        fill_value=fill_value,
        compressor=compressor,
        filters=filters,
        codecs=codecs,
        shards=shards,
        order=order,
        dimension_names=dimension_names,
        attributes=attributes,
        chunk_key_encoding=chunk_key_encoding,
        overwrite=overwrite,
        storage_options=storage_options,
        path=path,
        write_empty_chunks=write_empty_chunks,
    )


def create_group(
    store: str | Store,
    *,
    zarr_format: Literal[2, 3] = 3,
    attributes: dict[str, Any] | None = None,
    overwrite: bool = False,
    storage_options: Mapping[str, Any] | None = None,
    path: str = "",
) -> Group:
    """Blocking :func:`asyncarr.create_group`."""
    return _opened(
        Group,
        core.create_group,
        store,
        zarr_format=zarr_format,
        attributes=attributes,
        overwrite=overwrite,
        storage_options=storage_options,
        path=path,
    )


def open(
    store: str | Store,
    *,
    mode: AccessMode = "r",
    path: str = "",
    zarr_format: Literal[2, 3] | None = None,
    use_consolidated: bool | None = None,
    storage_options: Mapping[str, Any] | None = None,
) -> Array | Group:
    """Blocking :func:`asyncarr.open`."""
    return _opened(
        _wrap,
        core.open,
        store,
        mode=mode,
        path=path,
        zarr_format=zarr_format,
        use_consolidated=use_consolidated,
        storage_options=storage_options,
    )


def open_array(
    store: str | Store,
    *,
    mode: AccessMode = "r",
    path: str = "",
    zarr_format: Literal[2, 3] | None = None,
    storage_options: Mapping[str, Any] | None = None,
    write_empty_chunks: bool = False,
) -> Array:
    """Blocking :func:`asyncarr.open_array`."""
    return _opened(
        Array,
        core.open_array,
        store,
        mode=mode,
        path=path,
        zarr_format=zarr_format,
        storage_options=storage_options,
        write_empty_chunks=write_empty_chunks,
    )


def open_group(
    store: str | Store,
    *,
    mode: AccessMode = "r",
    path: str = "",
    zarr_format: Literal[2, 3] | None = None,
    use_consolidated: bool | None = None,
    storage_options: Mapping[str, Any] | None = None,
) -> Group:
    """Blocking :func:`asyncarr.open_group`."""
    return _opened(
        Group,
        core.open_group,
        store,
        mode=mode,
        path=path,
        zarr_format=zarr_format,
        use_consolidated=use_consolidated,
        storage_options=storage_options,
    )


def consolidate_metadata(
    store: str | Store,
    *,
    path: str = "",
    storage_options: Mapping[str, Any] | None = None,
) -> Group:
    """Blocking :func:`asyncarr.consolidate_metadata`."""
    return _opened(
        Group, core.consolidate_metadata, store, path=path, storage_options=storage_options
    )


@contextlib.contextmanager
def transaction(
    store: str | Store,
    *,
    message: str,
    storage_options: Mapping[str, Any] | None = None,
) -> Iterator[Store]:
    """Blocking :func:`asyncarr.transaction`: ``with asyncarr.sync.transaction(url,
    message=...) as store:`` commits on leaving the block, discards on an exception."""
    with get_portal():
        manager = core.transaction(store, message=message, storage_options=storage_options)
        view = _run(manager.__aenter__)
        try:
            yield view
        except BaseException as exc:
            if not _run(manager.__aexit__, type(exc), exc, exc.__traceback__):
                raise
        else:
            _run(manager.__aexit__, None, None, None)
