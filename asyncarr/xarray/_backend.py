"""The ``"asyncarr"`` engine for :func:`xarray.open_dataset` and
:func:`xarray.open_datatree`."""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from typing import Any, Literal

from xarray import Dataset, DataTree, Variable
from xarray.backends import AbstractDataStore, BackendEntrypoint
from xarray.backends.store import StoreBackendEntrypoint
from xarray.core import indexing

from asyncarr.abc import Store
from asyncarr.errors import MetadataError
from asyncarr.runtime import get_portal
from asyncarr.sync import Array, Group
from asyncarr.xarray._array import AsyncarrBackendArray
from asyncarr.xarray._open import open_groups
from asyncarr.xarray._variables import group_attributes, variable_parts

__all__ = ["AsyncarrBackendEntrypoint", "AsyncarrDataStore", "lazy_variable", "open_stores"]

Location = str | os.PathLike[str] | Store

_ZARR_DOCUMENTS = ("zarr.json", ".zgroup", ".zmetadata", ".zarray")


class AsyncarrDataStore(AbstractDataStore):
    """One group's arrays, as xarray's CF decoders read them (lazily: no data is read
    until a variable is indexed)."""

    __slots__ = ("_arrays", "_closer", "_fill_value_as_mask", "_group")

    def __init__(
        self,
        group: Group,
        arrays: Iterable[tuple[str, Array]],
        *,
        fill_value_as_mask: bool | None = None,
        closer: Group | None = None,
    ) -> None:
        """``fill_value_as_mask``: whether the arrays' fill values are CF ``_FillValue``s
        (``None``: for v2 groups, as xarray does); ``closer``: the group to close with the
        store (the root a store was opened for)."""
        self._group = group
        self._arrays = dict(arrays)
        if fill_value_as_mask is None:
            fill_value_as_mask = group.zarr_format == 2
        self._fill_value_as_mask = fill_value_as_mask
        self._closer = closer

    @property
    def group(self) -> Group:
        return self._group

    def get_variables(self) -> dict[str, Variable]:
        mask = self._fill_value_as_mask
        return {
            name: lazy_variable(array, fill_value_as_mask=mask)
            for name, array in self._arrays.items()
        }

    def get_attrs(self) -> dict[str, Any]:
        return group_attributes(self._group.attrs)

    def get_dimensions(self) -> dict[str, int]:
        sizes: dict[str, int] = {}
        for name, var in self.get_variables().items():
            for dim, n in var.sizes.items():
                if sizes.setdefault(str(dim), n) != n:
                    raise MetadataError(
                        f"the dimension {dim!r} has length {sizes[str(dim)]} in one array "
                        f"and {n} in {name!r}"
                    )
        return sizes

    def close(self) -> None:
        if self._closer is not None:
            self._closer.close()


def lazy_variable(array: Array, *, fill_value_as_mask: bool) -> Variable:
    """``array`` as a lazily indexed xarray variable, before CF decoding."""
    dims, attrs, encoding = variable_parts(array, fill_value_as_mask=fill_value_as_mask)
    data = indexing.LazilyIndexedArray(AsyncarrBackendArray(array))
    return Variable(dims, data, attrs, encoding)


def _location(where: Location) -> str | Store:
    return where if isinstance(where, Store) else os.fspath(where)


def _member_path(group: str | None) -> str:
    return (group or "").strip("/")


def open_stores(
    where: Location,
    *,
    group: str | None = None,
    consolidated: bool | None = None,
    storage_options: Mapping[str, Any] | None = None,
    zarr_format: Literal[2, 3] | None = None,
    use_zarr_fill_value_as_mask: bool | None = None,
    tree: bool = False,
    drop_variables: str | Iterable[str] | None = None,
) -> dict[str, AsyncarrDataStore]:
    """A data store per group: the one at ``group`` (and with ``tree``, every group below
    it), keyed by path relative to it (``""`` for itself). Closing the first closes the
    store for all. Arrays named in ``drop_variables`` are left out (so one asyncarr
    cannot read does not stop the others)."""
    dropped = {drop_variables} if isinstance(drop_variables, str) else set(drop_variables or ())
    portal = get_portal()
    with portal:  # the stores' client sessions live on the portal loop
        opened = portal.call(
            open_groups,
            _location(where),
            group=_member_path(group),
            consolidated=consolidated,
            storage_options=storage_options,
            zarr_format=zarr_format,
            depth=None if tree else 0,
            skip=frozenset(dropped),
        )
        owner = Group(opened.owner)
        return {
            path: AsyncarrDataStore(
                owner if node is opened.owner else Group(node),
                ((name, Array(a)) for name, a in arrays.items()),
                fill_value_as_mask=use_zarr_fill_value_as_mask,
                closer=owner if path == "" else None,
            )
            for path, (node, arrays) in opened.groups.items()
        }


class AsyncarrBackendEntrypoint(BackendEntrypoint):
    """Open Zarr v2 and v3 stores with asyncarr: ``xarray.open_dataset(url,
    engine="asyncarr")``, for any URL asyncarr opens (local paths, ``file://``,
    ``memory://``, ``zip://``, ``s3://``, ``gs://``, ``az://``, ``http(s)://``,
    ``mongodb://``) or a :class:`asyncarr.abc.Store`.

    Options: ``storage_options`` (as for :func:`asyncarr.open_group`), ``group`` (a path
    below the root), ``consolidated`` (``None``: use consolidated metadata where there
    is some; ``True``: require it; ``False``: ignore it), ``zarr_format`` and
    ``use_zarr_fill_value_as_mask`` (xarray's meaning: by default ``True`` for v2 and
    ``False`` for v3 stores). Data is read lazily, on indexing, through asyncarr.
    """

    description = "Open Zarr v2/v3 stores (local, S3, GCS, Azure, HTTP, ...) with asyncarr"
    supports_groups = True

    def guess_can_open(self, filename_or_obj: Any) -> bool:
        """Paths and URLs ending in ``.zarr`` (a trailing ``/`` aside), local directories
        holding Zarr metadata, and asyncarr stores."""
        if isinstance(filename_or_obj, Store):
            return True
        if not isinstance(filename_or_obj, str | os.PathLike):
            return False
        text = os.fspath(filename_or_obj)
        if not isinstance(text, str):
            return False
        if os.path.splitext(text.rstrip("/"))[1] == ".zarr":
            return True
        return "://" not in text and any(
            os.path.isfile(os.path.join(text, doc)) for doc in _ZARR_DOCUMENTS
        )

    def open_dataset(  # type: ignore[override]
        self,
        filename_or_obj: Location,
        *,
        mask_and_scale: bool = True,
        decode_times: bool = True,
        concat_characters: bool = True,
        decode_coords: bool | Literal["coordinates", "all"] = True,
        drop_variables: str | Iterable[str] | None = None,
        use_cftime: bool | None = None,
        decode_timedelta: bool | None = None,
        group: str | None = None,
        consolidated: bool | None = None,
        storage_options: Mapping[str, Any] | None = None,
        zarr_format: Literal[2, 3] | None = None,
        use_zarr_fill_value_as_mask: bool | None = None,
    ) -> Dataset:
        return _open(locals(), tree=False)["/"]

    def open_datatree(  # type: ignore[override]
        self,
        filename_or_obj: Location,
        *,
        mask_and_scale: bool = True,
        decode_times: bool = True,
        concat_characters: bool = True,
        decode_coords: bool | Literal["coordinates", "all"] = True,
        drop_variables: str | Iterable[str] | None = None,
        use_cftime: bool | None = None,
        decode_timedelta: bool | None = None,
        group: str | None = None,
        consolidated: bool | None = None,
        storage_options: Mapping[str, Any] | None = None,
        zarr_format: Literal[2, 3] | None = None,
        use_zarr_fill_value_as_mask: bool | None = None,
    ) -> DataTree:
        groups = _open(locals(), tree=True)
        try:
            tree = DataTree.from_dict(groups)
        except BaseException:
            for ds in groups.values():
                ds.close()
            raise
        for path, ds in groups.items():
            tree[path].set_close(ds._close)
        return tree

    def open_groups_as_dict(  # type: ignore[override]
        self,
        filename_or_obj: Location,
        *,
        mask_and_scale: bool = True,
        decode_times: bool = True,
        concat_characters: bool = True,
        decode_coords: bool | Literal["coordinates", "all"] = True,
        drop_variables: str | Iterable[str] | None = None,
        use_cftime: bool | None = None,
        decode_timedelta: bool | None = None,
        group: str | None = None,
        consolidated: bool | None = None,
        storage_options: Mapping[str, Any] | None = None,
        zarr_format: Literal[2, 3] | None = None,
        use_zarr_fill_value_as_mask: bool | None = None,
    ) -> dict[str, Dataset]:
        """A dataset per group, at ``group`` and below, keyed ``"/"``, ``"/a"``,
        ``"/a/b"``, … (relative to ``group``)."""
        return _open(locals(), tree=True)


_OPEN_OPTIONS = (
    "drop_variables",
    "group",
    "consolidated",
    "storage_options",
    "zarr_format",
    "use_zarr_fill_value_as_mask",
)
_DECODE_OPTIONS = (
    "mask_and_scale",
    "decode_times",
    "concat_characters",
    "decode_coords",
    "drop_variables",
    "use_cftime",
    "decode_timedelta",
)


def _open(options: Mapping[str, Any], *, tree: bool) -> dict[str, Dataset]:
    """The datasets of the group ``options`` name (with ``tree``, and of every group
    below it), keyed ``"/"``, ``"/a"``, …; ``options``: an opening method's arguments."""
    stores = open_stores(
        options["filename_or_obj"], tree=tree, **{k: options[k] for k in _OPEN_OPTIONS}
    )
    decode = {k: options[k] for k in _DECODE_OPTIONS}
    out: dict[str, Dataset] = {}
    try:
        for path, store in stores.items():
            out["/" + path] = _decoded(store, decode)
    except BaseException:
        stores[""].close()
        raise
    return out


def _decoded(store: AsyncarrDataStore, decode: Mapping[str, Any]) -> Dataset:
    """The dataset of ``store``, CF-decoded by xarray's own decoders."""
    return StoreBackendEntrypoint().open_dataset(store, **decode)
