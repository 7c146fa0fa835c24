"""``from_url``: a dask array that reads its blocks through asyncarr."""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable, Mapping
from typing import Any, Literal

import dask.array as da
import numpy as np
from dask.array.core import normalize_chunks as _untyped_normalize_chunks

from asyncarr.abc import NDArray, Store
from asyncarr.core import AsyncArray
from asyncarr.errors import ConfigError
from asyncarr.sync import Array, open_array

__all__ = ["from_url", "opened_array", "stored_sizes"]

Chunking = Literal["auto", "chunks", "shards"] | int | tuple[Any, ...] | Mapping[int, Any]
BlockSizes = tuple[tuple[int, ...], ...]

# dask has no type hints: typed names for the two calls made here
normalize_chunks: Callable[..., BlockSizes] = _untyped_normalize_chunks
_from_array: Callable[..., da.Array] = da.from_array


def opened_array(
    source: str | os.PathLike[str] | Store | Array | AsyncArray,
    *,
    mode: Literal["r", "r+"],
    storage_options: Mapping[str, Any] | None,
    path: str | None,
) -> tuple[Array, bool]:
    """``(array, whether it was opened here)`` for a URL, path, store or open handle."""
    if isinstance(source, Array | AsyncArray):
        if storage_options or path:
            raise ConfigError(
                "storage_options and path apply to a URL, not to an array that is open already"
            )
        return (Array(source) if isinstance(source, AsyncArray) else source), False
    target = os.fspath(source) if isinstance(source, os.PathLike) else source
    return open_array(target, mode=mode, path=path or "", storage_options=storage_options), True


def stored_sizes(array: Array) -> BlockSizes:
    """Per dimension, the sizes of the objects the array stores: shards, else chunks."""
    return array.chunk_grid.chunk_sizes


def _block_sizes(array: Array, chunks: Chunking) -> BlockSizes:
    shape, dtype = array.shape, array.dtype
    if isinstance(chunks, str):
        if chunks == "chunks":
            return array.chunk_sizes
        if chunks == "shards":
            return stored_sizes(array)
        if chunks == "auto":
            return _auto(array)
        raise ConfigError(
            f"chunks must be 'auto', 'chunks', 'shards' or block sizes as dask takes them, "
            f"got {chunks!r}"
        )
    try:
        sizes = normalize_chunks(chunks, shape, dtype=dtype)
    except (ValueError, TypeError) as exc:
        raise ConfigError(f"chunks={chunks!r} do not fit the array's shape {shape}: {exc}") from exc
    return sizes


def _auto(array: Array) -> BlockSizes:
    """Blocks of about dask's ``array.chunk-size`` made of whole shards (whole chunks
    where a shard alone is bigger, or the grid is not regular)."""
    shape, dtype = array.shape, array.dtype
    if not array.chunk_grid.is_regular:
        return stored_sizes(array)
    units = [array.shards] if array.shards is not None else []
    units.append(array.chunks)
    for unit in units:
        if 0 in shape:
            return normalize_chunks(unit, shape, dtype=dtype)
        sizes = normalize_chunks("auto", shape, dtype=dtype, previous_chunks=unit)
        if all(_aligned(dim, step) for dim, step in zip(sizes, unit, strict=True)):
            return sizes
    return array.chunk_sizes


def _aligned(sizes: tuple[int, ...], step: int) -> bool:
    """Whether every block boundary but the last falls on a multiple of ``step``."""
    edge = 0
    for size in sizes[:-1]:
        edge += size
        if edge % step:
            return False
    return True


def _read_block(array: Array, selection: tuple[slice, ...]) -> NDArray:
    """A dask task: one block, read through asyncarr."""
    return array.read(selection)


def _graph_name(array: Array, sizes: BlockSizes) -> str:
    """A name that is the same for the same array (place, path, metadata) and blocks."""
    where = array.store.location or f"{type(array.store).__name__}@{id(array.store):x}"
    document = json.dumps(array.metadata.to_json(), sort_keys=True, default=str)
    digest = hashlib.blake2b(
        repr((where, array.path, document, sizes)).encode(), digest_size=12
    ).hexdigest()
    return f"from-asyncarr-{digest}"


def from_url(
    url: str | os.PathLike[str] | Store | Array | AsyncArray,
    *,
    chunks: Chunking = "auto",
    storage_options: Mapping[str, Any] | None = None,
    path: str | None = None,
) -> da.Array:
    """A lazy ``dask.array.Array`` of the Zarr array at ``url``, read through asyncarr.

    ``url`` is a URL or path (with ``storage_options`` and ``path`` as for
    :func:`asyncarr.open_array`; opened read-only), a :class:`~asyncarr.abc.Store`, or an
    open :class:`asyncarr.sync.Array` / :class:`asyncarr.AsyncArray`.

    ``chunks`` picks the dask blocks:

    - ``"auto"`` (default): whole shards of a sharded array (whole chunks otherwise),
      grouped into blocks of about dask's ``array.chunk-size`` setting; whole chunks where
      one shard is bigger than that; the stored objects as they are for a rectilinear grid.
    - ``"shards"``: one block per shard (per chunk for an array without shards).
    - ``"chunks"``: one block per chunk (the inner chunks of a sharded array).
    - anything ``dask.array`` takes as ``chunks`` (a tuple of sizes, ``-1``, ...).

    Each task reads its block with one asyncarr read, which fetches and decodes the
    block's chunks concurrently. The handle is in the graph once; the scheduler sends it
    to the processes that need it (it pickles as its store, path and metadata).
    """
    array, _opened = opened_array(url, mode="r", storage_options=storage_options, path=path)
    sizes = _block_sizes(array, chunks)
    meta = np.empty((0,) * array.ndim, dtype=array.dtype)
    return _from_array(
        array,
        chunks=sizes,
        name=_graph_name(array, sizes),
        lock=False,
        asarray=False,
        fancy=False,
        getitem=_read_block,
        meta=meta,
        inline_array=False,
    )
