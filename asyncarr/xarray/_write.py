"""``asyncarr.xarray.to_zarr``: write an xarray dataset as ``Dataset.to_zarr`` does,
through asyncarr."""

from __future__ import annotations

import os
from collections.abc import Hashable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
from xarray import Dataset, Variable, conventions

import asyncarr
from asyncarr.abc import NDArray, Store
from asyncarr.core import AsyncArray, AsyncGroup
from asyncarr.errors import ConfigError, ContainsArrayError, ContainsGroupError, SelectionError
from asyncarr.runtime import gather_all, get_portal
from asyncarr.sync import Array, Group
from asyncarr.xarray._backend import lazy_variable
from asyncarr.xarray._encode import (
    apply_encoding,
    array_options,
    attribute_value,
    encode_variable,
)
from asyncarr.xarray._regions import resolve_region
from asyncarr.xarray._store_chunked import store_chunked
from asyncarr.xarray._variables import dimensions_and_attributes

__all__ = ["to_zarr"]

WriteMode = Literal["w-", "w", "a", "r+"]
Region = Mapping[Hashable, slice | Literal["auto"]] | Literal["auto"]


@dataclass
class _Write:
    """One variable to write: a new array (``options``) or an existing one (``name``),
    with the region it fills and, when it grows along the append dimension, its new
    shape."""

    name: str
    variable: Variable
    options: dict[str, Any] | None = None
    region: dict[Hashable, slice] = field(default_factory=dict)
    grow_to: tuple[int, ...] | None = None


def _resolve_mode(
    mode: WriteMode | None, append_dim: Hashable | None, region: Region | None
) -> WriteMode:
    if mode is None:
        mode = "a" if append_dim is not None else "r+" if region is not None else "w-"
    if mode not in ("w-", "w", "a", "r+"):
        raise ConfigError(f"mode must be 'w-', 'w', 'a' or 'r+', got {mode!r}")
    if append_dim is not None and mode != "a":
        raise ConfigError(f"append_dim needs mode='a', got mode={mode!r}")
    if region is not None and mode not in ("a", "r+"):
        raise ConfigError(f"region needs mode='a' or mode='r+', got mode={mode!r}")
    return mode


async def _create_target(
    where: str | Store,
    mode: WriteMode,
    path: str,
    zarr_format: Literal[2, 3],
    storage_options: Mapping[str, Any] | None,
) -> AsyncGroup:
    try:
        return await asyncarr.create_group(
            where,
            zarr_format=zarr_format,
            overwrite=mode == "w",
            storage_options=storage_options,
            path=path,
        )
    except (ContainsGroupError, ContainsArrayError) as exc:
        raise type(exc)(
            f"{exc}; to_zarr's mode='w-' does not overwrite: use mode='w' to replace it or "
            "mode='a' to add to it"
        ) from exc


async def _open_target(
    where: str | Store,
    mode: WriteMode,
    path: str,
    zarr_format: Literal[2, 3] | None,
    storage_options: Mapping[str, Any] | None,
) -> AsyncGroup:
    target = await asyncarr.open_group(
        where,
        mode="a" if mode == "a" else "r+",
        path=path,
        zarr_format=zarr_format,
        use_consolidated=False,  # (consolidated once, at the end)
        storage_options=storage_options,
    )
    if zarr_format is not None and target.zarr_format != zarr_format:
        await target.aclose()
        raise ConfigError(
            f"the group is Zarr v{target.zarr_format}; cannot add v{zarr_format} arrays to it"
        )
    return target


def _matching_dims(name: str, variable: Variable, dims: Sequence[Hashable]) -> Variable:
    """``variable`` with the dimension order of the existing array it is written to."""
    if tuple(variable.dims) == tuple(dims):
        return variable
    if set(variable.dims) != set(dims):
        raise ConfigError(
            f"{name!r} has dimensions {variable.dims}, but the stored array has {tuple(dims)}"
        )
    return variable.transpose(*dims)


def _plan(
    ds: Dataset,
    fmt: int,
    existing: Mapping[str, Array],
    *,
    mode: WriteMode = "w",
    append_dim: Hashable | None = None,
    region: dict[Hashable, slice] | None = None,
    encoding: Mapping[str, Mapping[str, Any]],
) -> tuple[list[_Write], dict[str, Any]]:
    """What to write, every variable CF-encoded; and the group's attributes."""
    if region:
        ds = ds.drop_vars(list(ds.indexes))  # index coordinates stay as stored
    variables, attrs = conventions.encode_dataset_coordinates(ds)
    apply_encoding(variables, encoding)
    names = [str(n) for n in variables]
    new = [n for n in names if n not in existing]
    if new and mode == "r+":
        raise ConfigError(
            f"mode='r+' writes only into existing arrays; {new} are not in the group "
            "(use mode='a' to add them)"
        )
    if new and region:
        raise ConfigError(
            f"a region write fills existing arrays; {new} are not in the group (write "
            "them whole first, or leave them out)"
        )
    region = region or {}
    stored = {
        n: lazy_variable(existing[n], fill_value_as_mask=fmt == 2) for n in names if n in existing
    }
    decoded, _, _ = conventions.decode_cf_variables(stored, {})
    writes: list[_Write] = []
    for key, variable in variables.items():
        name = str(key)
        if name not in existing:
            encoded = encode_variable(variable, name, fmt)
            options = array_options(
                encoded, name, zarr_format=fmt, fill_value_as_mask=fmt == 2, strict=name in encoding
            )
            writes.append(_Write(name, encoded, options=options))
            continue
        if name in encoding:
            raise ConfigError(
                f"{name!r} is already stored, with its own encoding; encoding= applies "
                "to new variables only"
            )
        variable = variable.copy(deep=False)
        variable.encoding = dict(decoded[name].encoding)
        encoded = _matching_dims(name, encode_variable(variable, name, fmt), decoded[name].dims)
        writes.append(_existing_write(name, encoded, existing[name], append_dim, region))
    group_attrs = {k: attribute_value(v) for k, v in attrs.items()}
    return writes, group_attrs


def _existing_write(
    name: str,
    variable: Variable,
    array: Array,
    append_dim: Hashable | None,
    region: dict[Hashable, slice],
) -> _Write:
    """Where ``variable`` goes in the stored ``array``: appended along ``append_dim``,
    into ``region``, or over the whole array (which must have its shape)."""
    write = _Write(name, variable, region={d: region.get(d, slice(None)) for d in variable.dims})
    if append_dim is not None and append_dim in variable.dims:
        axis = variable.dims.index(append_dim)
        old = array.shape[axis]
        write.region[append_dim] = slice(old, None)
        write.grow_to = tuple(
            n + variable.shape[axis] if d == axis else n for d, n in enumerate(array.shape)
        )
        others = [d for d in range(array.ndim) if d != axis]
        if any(variable.shape[d] != array.shape[d] for d in others):
            raise SelectionError(
                f"cannot append {name!r} of shape {variable.shape} along {append_dim!r} to "
                f"the stored shape {array.shape}: the other dimensions must match"
            )
        return write
    shape = tuple(
        len(range(*write.region[d].indices(n)))
        for d, n in zip(variable.dims, array.shape, strict=True)
    )
    if shape != variable.shape:
        raise SelectionError(
            f"{name!r} has shape {variable.shape}, but its place in the stored array "
            f"{array.shape} has shape {shape}; use append_dim=, region= or mode='w'"
        )
    return write


def _selection(write: _Write, shape: tuple[int, ...]) -> tuple[slice, ...]:
    return tuple(
        slice(*write.region.get(d, slice(None)).indices(n))
        for d, n in zip(write.variable.dims, shape, strict=True)
    )


async def _prepare_and_write(
    target: AsyncGroup,
    existing: Mapping[str, AsyncArray],
    writes: list[_Write],
    in_memory: list[NDArray | None],
    attrs: dict[str, Any] | None,
) -> list[tuple[AsyncArray, tuple[slice, ...]]]:
    """Create (or grow) every array, write the ``in_memory`` values (one per write,
    ``None`` for the chunked ones) concurrently, and return where each write goes."""
    if attrs is not None:
        await target.set_attributes(attrs)

    async def prepare(write: _Write) -> AsyncArray:
        if write.options is not None:
            return await target.create_array(write.name, **write.options)
        array = existing[write.name]
        if write.grow_to is not None:
            await array.resize(write.grow_to)
        return array

    arrays = await gather_all(*(prepare(w) for w in writes))
    places = [(a, _selection(w, a.shape)) for a, w in zip(arrays, writes, strict=True)]

    await gather_all(
        *(
            array.write(values, where)
            for (array, where), values in zip(places, in_memory, strict=True)
            if values is not None
        )
    )
    return places


def to_zarr(
    ds: Dataset,
    url: str | os.PathLike[str] | Store,
    *,
    mode: WriteMode | None = None,
    group: str | None = None,
    append_dim: Hashable | None = None,
    region: Region | None = None,
    zarr_format: Literal[2, 3] | None = None,
    encoding: Mapping[str, Mapping[str, Any]] | None = None,
    storage_options: Mapping[str, Any] | None = None,
    consolidated: bool = True,
) -> None:
    """Write ``ds`` as :meth:`xarray.Dataset.to_zarr` does, through asyncarr.

    Variables are CF-encoded by xarray's own Zarr encoders (times, packing, fill values)
    and stored with their dimension names (v3 ``dimension_names``, v2
    ``_ARRAY_DIMENSIONS``); the metadata is consolidated at the store's root once all
    data is written (``consolidated=False`` leaves it as it is). dask-backed variables
    are written block by block by dask's scheduler; the others concurrently.

    ``mode``: ``"w-"`` creates (and refuses to overwrite), ``"w"`` replaces, ``"a"``
    adds variables, overwrites existing ones, or with ``append_dim`` extends them along
    that dimension, ``"r+"`` writes only into existing arrays; by default ``"a"`` with
    ``append_dim``, ``"r+"`` with ``region``, else ``"w-"``. ``region`` maps dimensions to
    slices (or ``"auto"``: found from the stored index coordinates) of existing arrays
    to fill; index coordinates are not written there. ``zarr_format``: 3 for new stores
    (existing ones keep theirs). ``encoding``: per new variable, xarray's CF keys
    (``dtype``, ``units``, ``calendar``, ``scale_factor``, ``add_offset``,
    ``_FillValue``) and asyncarr's storage keys (``chunks``, ``shards``, ``compressor``,
    ``filters``, ``codecs``, ``chunk_key_encoding``, ``write_empty_chunks``; v3
    ``fill_value``).
    """
    if not isinstance(ds, Dataset):
        raise ConfigError(
            f"to_zarr writes an xarray Dataset, got {type(ds).__name__} "
            "(a DataArray: da.to_dataset(name=...))"
        )
    mode = _resolve_mode(mode, append_dim, region)
    where = url if isinstance(url, Store) else os.fspath(url)
    path = (group or "").strip("/")
    portal = get_portal()
    with portal:
        if mode in ("w", "w-"):  # everything checked before anything is replaced
            writes, attrs = _plan(ds, zarr_format or 3, {}, encoding=encoding or {})
            target = Group(
                portal.call(_create_target, where, mode, path, zarr_format or 3, storage_options)
            )
            existing: dict[str, Array] = {}
        else:
            target = Group(
                portal.call(_open_target, where, mode, path, zarr_format, storage_options)
            )
        try:
            if mode in ("a", "r+"):
                existing = {n: a for n, a in target.arrays() if isinstance(a, Array)}
                slices = _check_placement(ds, existing, append_dim, region)
                writes, attrs = _plan(
                    ds,
                    target.zarr_format,
                    existing,
                    mode=mode,
                    append_dim=append_dim,
                    region=slices,
                    encoding=encoding or {},
                )
            _execute(target, existing, writes, attrs if mode != "r+" else None, consolidated)
        finally:
            target.close()


def _check_placement(
    ds: Dataset,
    existing: Mapping[str, Array],
    append_dim: Hashable | None,
    region: Region | None,
) -> dict[Hashable, slice]:
    """The region (as slices) a write into existing arrays fills; ``append_dim`` checked."""
    if append_dim is not None and existing:
        stored = {d for a in existing.values() for d in dimensions_and_attributes(a)[0]}
        if append_dim not in stored:
            raise ConfigError(
                f"append_dim={append_dim!r} is not a dimension of the stored arrays "
                f"{sorted(stored)}"
            )
    return resolve_region(ds, region, existing, append_dim) if region is not None else {}


def _execute(
    target: Group,
    existing: Mapping[str, Array],
    writes: list[_Write],
    attrs: dict[str, Any] | None,
    consolidated: bool,
) -> None:
    """Create or grow the arrays, write the data, consolidate the metadata."""
    portal = get_portal()
    # Values are made numpy here, in the caller's thread, not on the portal loop (which
    # must neither block on a conversion nor read a lazy source through the blocking API).
    in_memory = [
        None if w.variable.chunks is not None else np.asarray(w.variable.values) for w in writes
    ]
    places = portal.call(
        _prepare_and_write,
        target.async_group,
        {name: a.async_array for name, a in existing.items()},
        writes,
        in_memory,
        attrs,
    )
    store_chunked(
        [
            (w.variable.data, Array(array), where)
            for w, (array, where) in zip(writes, places, strict=True)
            if w.variable.chunks is not None
        ]
    )
    if consolidated:
        portal.call(asyncarr.consolidate_metadata, target.store)
