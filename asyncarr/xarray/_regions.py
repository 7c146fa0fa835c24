"""The ``region`` of :func:`asyncarr.xarray.to_zarr`: which part of stored arrays a
dataset fills, given as slices or found from the stored index coordinates."""

from __future__ import annotations

from collections.abc import Hashable, Mapping
from typing import Literal

import numpy as np
import pandas as pd
from xarray import Dataset, conventions

from asyncarr.errors import ConfigError, SelectionError
from asyncarr.sync import Array
from asyncarr.xarray._backend import lazy_variable

__all__ = ["resolve_region"]


def _auto_slice(ds: Dataset, dim: Hashable, existing: Mapping[str, Array]) -> slice:
    """Where the values of ``ds[dim]`` lie along the stored coordinate ``dim``."""
    if dim not in ds.variables:
        return slice(0, ds.sizes[dim])
    stored = existing.get(str(dim))
    if stored is None:
        raise ConfigError(
            f"region {dim!r}='auto' needs the coordinate {dim!r} in the store, to find "
            "where the new values go; it has none"
        )
    variable = lazy_variable(stored, fill_value_as_mask=stored.zarr_format == 2)
    index = pd.Index(np.asarray(conventions.decode_cf_variable(str(dim), variable).values))
    positions = index.get_indexer(np.asarray(ds[dim].values))
    if (positions == -1).any():
        raise SelectionError(
            f"region {dim!r}='auto': some values of {dim!r} are not in the stored "
            "coordinate (a region write changes no coordinate)"
        )
    if (np.diff(positions) != 1).any():
        raise SelectionError(
            f"region {dim!r}='auto': the values of {dim!r} are not one contiguous run of "
            "the stored ones"
        )
    return slice(int(positions[0]), int(positions[-1]) + 1) if positions.size else slice(0, 0)


def resolve_region(
    ds: Dataset,
    region: Mapping[Hashable, slice | Literal["auto"]] | Literal["auto"],
    existing: Mapping[str, Array],
    append_dim: Hashable | None,
) -> dict[Hashable, slice]:
    """``region`` as a slice per dimension, checked: dimensions of ``ds``, steps of 1,
    every variable but the index coordinates (not written) on one of them."""
    if region == "auto":
        region = dict.fromkeys(ds.dims, "auto")
    if not isinstance(region, Mapping):
        raise ConfigError(f"region must be a mapping of dimension to slice, got {region!r}")
    out: dict[Hashable, slice] = {}
    for dim, where in region.items():
        if dim not in ds.dims:
            raise ConfigError(
                f"region names {dim!r}, not a dimension of the dataset {list(ds.dims)}"
            )
        if dim == append_dim:
            raise ConfigError(f"{dim!r} cannot be both the append_dim and in the region")
        if where == "auto":
            where = _auto_slice(ds, dim, existing)
        if not isinstance(where, slice) or where.step not in (None, 1):
            raise ConfigError(
                f"region[{dim!r}] must be a slice with step 1 (or 'auto'), got {where!r}"
            )
        out[dim] = where
    outside = [
        str(name)
        for name, var in ds.variables.items()
        if name not in ds.indexes and not set(out) & set(var.dims)
    ]
    if out and outside:
        raise ConfigError(
            f"region {list(out)}: {outside} have none of these dimensions, so there is no "
            f"part of them to write; leave them out (ds.drop_vars({outside!r}))"
        )
    return out
