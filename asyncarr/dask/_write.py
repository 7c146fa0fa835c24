"""``store``: write a dask array into an asyncarr array."""

from __future__ import annotations

import itertools
import os
import warnings
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Literal

import dask.array as da
import numpy as np
from dask.array.core import PerformanceWarning
from dask.delayed import Delayed

from asyncarr.abc import Store
from asyncarr.core import AsyncArray
from asyncarr.dask._read import opened_array, stored_sizes
from asyncarr.errors import (
    ConfigError,
    DTypeError,
    NodeNotFoundError,
    ReadOnlyStoreError,
    SelectionError,
)
from asyncarr.sync import Array, create_array

__all__ = ["MisalignedWritesWarning", "store"]

_MODES = ("a", "r+", "w", "w-")

# dask has no type hints: typed names for the calls made here
_rechunk: Callable[[da.Array, tuple[tuple[int, ...], ...]], da.Array] = da.Array.rechunk
_store: Callable[..., Delayed | None] = da.store


class MisalignedWritesWarning(PerformanceWarning):
    """Blocks of a dask array cross the shard (or chunk) boundaries of the array they are
    written to: the chunks they share are read, merged and written back (correct, but
    slower)."""


def _boundaries(sizes: Sequence[int]) -> set[int]:
    return {0, *itertools.accumulate(sizes)}


def _region(region: Any, shape: tuple[int, ...]) -> tuple[slice, ...]:
    """``region`` as one ``slice(start, stop)`` per dimension of the destination."""
    if region is None:
        return tuple(slice(0, n) for n in shape)
    items = region if isinstance(region, tuple) else (region,)
    if len(items) != len(shape) or not all(isinstance(s, slice) for s in items):
        raise SelectionError(
            f"region must be one slice per dimension of the destination (shape {shape}), "
            f"got {region!r}"
        )
    out = []
    for s, n in zip(items, shape, strict=True):
        start, stop, step = s.indices(n)
        if step != 1:
            raise SelectionError(f"region slices must have step 1, got {region!r}")
        out.append(slice(start, max(start, stop)))
    return tuple(out)


def _aligned_sizes(
    block_sizes: tuple[int, ...], start: int, stop: int, units: tuple[int, ...]
) -> tuple[int, ...]:
    """Block sizes for ``[start, stop)`` that cut only at stored-object boundaries, each
    about as long as the largest of ``block_sizes`` (at least one object)."""
    cuts = sorted({start, stop, *(b for b in _boundaries(units) if start < b < stop)})
    target = max(block_sizes, default=1)
    out: list[int] = []
    current = 0
    for lo, hi in itertools.pairwise(cuts):
        if current and current + (hi - lo) > target:
            out.append(current)
            current = 0
        current += hi - lo
    if current or not out:
        out.append(current)
    return tuple(out)


def _misaligned_dims(
    darr: da.Array, region: tuple[slice, ...], units: tuple[tuple[int, ...], ...]
) -> list[int]:
    """The dimensions along which some block starts or ends inside a stored object."""
    dims = []
    for d, (sizes, sel, unit) in enumerate(zip(darr.chunks, region, units, strict=True)):
        edges = {sel.start + e for e in _boundaries(sizes)}
        if not edges <= _boundaries(unit):
            dims.append(d)
    return dims


def _destination(
    darr: da.Array,
    target: str | os.PathLike[str] | Store | Array | AsyncArray,
    mode: str,
    region: Any,
    storage_options: Mapping[str, Any] | None,
    path: str | None,
    create: dict[str, Any],
) -> tuple[Array, bool]:
    """The array to write into, opened (or created) here if ``target`` is not one."""
    if mode not in _MODES:
        raise ConfigError(f"mode must be one of {', '.join(_MODES)}, got {mode!r}")
    if isinstance(target, Array | AsyncArray) or mode in ("a", "r+"):
        if create and isinstance(target, Array | AsyncArray):
            raise ConfigError(
                f"{sorted(create)} apply when store() creates the array, not to an open one"
            )
        try:
            return opened_array(target, mode="r+", storage_options=storage_options, path=path)
        except NodeNotFoundError:
            if mode == "r+":
                raise
    if region is not None:
        raise ConfigError(
            "region writes into an existing array; none exists at the destination "
            "(create it first, or leave region out to create one of the dask array's shape)"
        )
    if isinstance(target, Array | AsyncArray):  # pragma: no cover - returned above
        raise AssertionError
    options = dict(create)
    options.setdefault("chunks", darr.chunksize)
    options.setdefault("dtype", darr.dtype)
    made = create_array(
        os.fspath(target) if isinstance(target, os.PathLike) else target,
        shape=darr.shape,
        overwrite=mode == "w",
        storage_options=storage_options,
        path=path or "",
        **options,
    )
    return made, True


def store(
    darr: da.Array,
    url_or_array: str | os.PathLike[str] | Store | Array | AsyncArray,
    *,
    region: tuple[slice, ...] | None = None,
    compute: bool = True,
    mode: Literal["a", "r+", "w", "w-"] = "a",
    storage_options: Mapping[str, Any] | None = None,
    path: str | None = None,
    **create: Any,
) -> Delayed | None:
    """Write the dask array ``darr`` into a Zarr array through asyncarr.

    ``url_or_array`` is an open :class:`asyncarr.sync.Array` / :class:`asyncarr.AsyncArray`,
    or a URL, path or :class:`~asyncarr.abc.Store` (with ``storage_options`` and ``path``
    as for :func:`asyncarr.open_array`) opened with ``mode``: ``"a"`` (default) writes
    into the array there or creates one, ``"r+"`` needs one to exist, ``"w"`` creates one
    (replacing what is there) and ``"w-"`` creates one where nothing is. A new array has
    ``darr``'s shape and dtype and, unless ``create`` says otherwise, its block shape as
    chunks; ``create`` takes :func:`asyncarr.create_array`'s keywords (``chunks``,
    ``shards``, ``compressor``, ``zarr_format``, ``dimension_names``, ...).

    ``region`` (one ``slice`` per dimension) is where ``darr`` goes in an existing array;
    default: the whole array, whose shape ``darr`` must have.

    Blocks that start and end on the destination's shard boundaries (chunk boundaries
    where it has no shards; the array's edge counts) are encoded and stored whole, with
    no read-modify-write. Other blocks stay correct: the chunks two blocks share are read,
    merged and written conditionally, so concurrent writers from every worker process
    never lose each other's data; :class:`MisalignedWritesWarning` says once which
    rechunking would avoid it. On a store without conditional writes, blocks are
    rechunked to align instead (in the graph), since no store-side check could keep
    writers in different processes from overwriting each other.

    ``compute=False`` returns a ``dask.delayed.Delayed`` to compute later (with any
    scheduler); otherwise the graph is computed now with the current scheduler (threads by
    default, or the active ``dask.distributed`` client) and ``None`` is returned.
    """
    if not isinstance(darr, da.Array):
        raise ConfigError(f"store() writes a dask.array.Array, got {type(darr).__name__}")
    array, opened = _destination(darr, url_or_array, mode, region, storage_options, path, create)
    try:
        written = _write_graph(darr, array, _region(region, array.shape), compute)
    except BaseException:
        if opened:
            array.close()
        raise
    if compute and opened:
        array.close()
    return written


def _write_graph(
    darr: da.Array, array: Array, region: tuple[slice, ...], compute: bool
) -> Delayed | None:
    """Check ``darr`` against the ``region`` of ``array``, align it if it must be, and
    build (and with ``compute``, run) the graph that writes it."""
    if array.read_only:
        raise ReadOnlyStoreError(
            f"cannot store into {array!r}: it is opened read-only (open it with mode='r+', "
            "or pass its URL)",
            store=array.store,
        )
    want = tuple(s.stop - s.start for s in region)
    if darr.shape != want:
        raise SelectionError(
            f"the dask array's shape {darr.shape} does not match the destination region's "
            f"shape {want} (destination shape {array.shape}, region {region})"
        )
    if darr.dtype != array.dtype and not np.can_cast(darr.dtype, array.dtype, "same_kind"):
        raise DTypeError(
            f"cannot store {darr.dtype} values into the {array.dtype} array {array.name!r} "
            f"without loss; cast them first (darr.astype({str(array.dtype)!r}))"
        )
    units = stored_sizes(array)
    misaligned = _misaligned_dims(darr, region, units)
    if misaligned:
        aligned = tuple(
            _aligned_sizes(sizes, sel.start, sel.stop, unit) if d in misaligned else sizes
            for d, (sizes, sel, unit) in enumerate(zip(darr.chunks, region, units, strict=True))
        )
        kind = "shard" if array.shards is not None else "chunk"
        conditional = array.store.supports_conditional_writes
        consequence = (
            f"the {kind}s they share are read, merged and written back conditionally "
            "(correct, but slower)"
            if conditional
            else f"{array.store} has no conditional writes, so the blocks are rechunked "
            "to align before they are written"
        )
        warnings.warn(
            f"asyncarr.dask.store: blocks of the dask array cross the {kind} boundaries of "
            f"{array!r} along dimension(s) {', '.join(map(str, misaligned))}; "
            f"{consequence}. Rechunk to avoid it: darr.rechunk({_spelled(aligned)})",
            MisalignedWritesWarning,
            stacklevel=3,
        )
        if not conditional:
            darr = _rechunk(darr, aligned)
    target_region = None if region == tuple(slice(0, n) for n in array.shape) else region
    return _store(darr, array, regions=target_region, lock=False, compute=compute)


def _spelled(sizes: tuple[tuple[int, ...], ...]) -> str:
    """Block sizes as short as dask takes them: one size per dimension where all blocks
    but the last have it (and the last is not longer)."""
    out: list[str] = []
    for dim in sizes:
        first = dim[0] if dim else 0
        regular = all(s == first for s in dim[:-1]) and (not dim or dim[-1] <= first)
        out.append(str(first) if regular else str(dim))
    return f"({', '.join(out)},)" if len(out) == 1 else f"({', '.join(out)})"
