"""The top-level async API: create/open arrays and groups from URLs or stores."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Mapping, Sequence
from typing import Any, Literal

from asyncarr.abc import Store
from asyncarr.core._array import AsyncArray
from asyncarr.core._chunk_grid import ChunkGrid
from asyncarr.core._context import forget_cached_prefix
from asyncarr.core._create import DEFAULT_COMPRESSOR, build_array_metadata
from asyncarr.core._group import AsyncGroup, load_v2_consolidated
from asyncarr.core._metadata import (
    ZARR_JSON,
    ZARRAY,
    ZGROUP,
    ArrayMetadata,
    GroupMetadata,
    dumps_json,
)
from asyncarr.core._nodes import (
    join_path,
    load_node,
    node_location,
    save_array_metadata,
    save_group_metadata,
)
from asyncarr.errors import (
    ConfigError,
    ContainsArrayError,
    ContainsGroupError,
    NodeNotFoundError,
)
from asyncarr.runtime import managed
from asyncarr.stores import store_from_url

__all__ = [
    "AccessMode",
    "consolidate_metadata",
    "create_array",
    "create_group",
    "open",
    "open_array",
    "open_group",
    "resolve_store",
    "staged_array",
]

AccessMode = Literal["r", "r+", "a", "w", "w-"]
_MODES = ("r", "r+", "a", "w", "w-")


def resolve_store(
    store: str | Store, *, read_only: bool, storage_options: Mapping[str, Any] | None
) -> tuple[Store, bool]:
    """(store, whether we opened it and must close it).

    A :class:`Store` object is used as it is (mode ``"r"`` is then enforced by
    the array or group, not by a read-only copy of the store that would hold
    its own connections).
    """
    if isinstance(store, Store):
        if storage_options:
            raise ConfigError("storage_options only apply when a URL is given, not a Store object")
        return store, False
    if not isinstance(store, str):
        import os

        if isinstance(store, os.PathLike):
            store = os.fspath(store)
        else:
            raise ConfigError(f"expected a URL, a path or a Store, got {type(store).__name__}")
    return store_from_url(str(store), read_only=read_only, storage_options=storage_options), True


async def _existing(store: Store, path: str) -> ArrayMetadata | GroupMetadata | None:
    try:
        return await load_node(managed(store), path)
    except NodeNotFoundError:
        return None


async def _prepare_location(store: Store, path: str, overwrite: bool) -> None:
    existing = await _existing(store, path)
    if existing is None:
        return
    if not overwrite:
        where = node_location(store, path)
        if isinstance(existing, ArrayMetadata):
            raise ContainsArrayError(f"an array already exists {where} (pass overwrite=True)")
        raise ContainsGroupError(f"a group already exists {where} (pass overwrite=True)")
    io = managed(store)
    prefix = f"{path}/" if path else ""
    try:
        await io.delete_prefix(prefix)
    finally:
        forget_cached_prefix(store, prefix)


async def _ensure_parents(store: Store, path: str, zarr_format: Literal[2, 3]) -> None:
    """Create a group at every ancestor of ``path`` that has no node yet (as zarr-python does),
    so the new node is reachable from the root by listing."""
    parts = path.split("/")[:-1] if path else []
    ancestors = ["/".join(parts[:i]) for i in range(len(parts) + 1)] if path else []
    io = managed(store)
    for ancestor in ancestors:
        existing = await _existing(store, ancestor)
        if isinstance(existing, ArrayMetadata):
            where = node_location(store, ancestor)
            raise ContainsArrayError(f"cannot create {path!r}: an array exists {where}")
        if existing is None:
            meta = GroupMetadata(zarr_format)
            name = ZARR_JSON if zarr_format == 3 else ZGROUP
            await io.set_if_not_exists(join_path(ancestor, name), dumps_json(meta.to_json()))


async def _create_node(
    st: Store, owns: bool, path: str, meta: ArrayMetadata | GroupMetadata, overwrite: bool
) -> None:
    """Write a new node's metadata atomically (its first document with
    ``set_if_not_exists``, so two concurrent creators cannot both win)."""
    kind = "array" if isinstance(meta, ArrayMetadata) else "group"
    try:
        async with st.operation(f"create {kind} /{path}", write=True):
            await _prepare_node(st, path, meta, overwrite)
            await _publish_node(st, path, meta)
    except BaseException as exc:
        await _close_on_error(st, owns, exc)
        raise


async def _prepare_node(
    st: Store, path: str, meta: ArrayMetadata | GroupMetadata, overwrite: bool
) -> None:
    """Make room for a new node at ``path`` (or refuse) and create its missing parents."""
    await _prepare_location(st, path, overwrite)
    await _ensure_parents(st, path, meta.zarr_format)


async def _publish_node(st: Store, path: str, meta: ArrayMetadata | GroupMetadata) -> None:
    """Store a new node's metadata: from then on it exists."""
    is_array = isinstance(meta, ArrayMetadata)
    io = managed(st)
    name = ZARR_JSON if meta.zarr_format == 3 else (ZARRAY if is_array else ZGROUP)
    if not await io.set_if_not_exists(join_path(path, name), dumps_json(meta.to_json())):
        error = ContainsArrayError if is_array else ContainsGroupError
        raise error(f"another writer created a node {node_location(st, path)} concurrently")
    if meta.zarr_format == 2 and meta.attributes:  # v2 keeps attributes in .zattrs
        if isinstance(meta, ArrayMetadata):
            await save_array_metadata(io, path, meta)
        else:
            await save_group_metadata(io, path, meta)


@contextlib.asynccontextmanager
async def staged_array(
    store: str | Store,
    meta: ArrayMetadata,
    *,
    overwrite: bool = False,
    storage_options: Mapping[str, Any] | None = None,
    path: str = "",
    write_empty_chunks: bool = False,
) -> AsyncIterator[AsyncArray]:
    """Create the array ``meta`` describes (see :func:`build_array_metadata`) with its
    metadata stored last: ``async with staged_array(...) as arr`` yields a handle to write
    the data through, and the array comes into existence (its metadata document is
    stored) only when the block ends without an error. The handle is closed then.

    If the block raises or is cancelled, nothing at ``path`` claims to be an array: no
    reader can mistake a half-written array for a complete one. The chunks written by
    then stay in the store as plain keys (the caller knows which;
    :func:`asyncarr.ingest.copy_array` removes them).
    """
    st, owns = resolve_store(store, read_only=False, storage_options=storage_options)
    path = join_path(path)
    try:
        # one store operation for the whole block: on a layered container, the array's
        # data and metadata are one commit
        async with st.operation(f"create array /{path}", write=True):
            await _prepare_node(st, path, meta, overwrite)
            yield AsyncArray(st, path, meta, write_empty_chunks=write_empty_chunks)
            await _publish_node(st, path, meta)
    finally:
        if owns:
            await st.aclose()


async def _close_on_error(store: Store, owns: bool, exc: BaseException) -> None:
    if owns:
        await store.aclose()


async def create_array(
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
) -> AsyncArray:
    """Create a new array at ``store`` (a URL, a local path or a :class:`Store`).

    v2 takes ``compressor``/``filters`` (names like ``"zstd"``, numcodecs-style
    dicts or numcodecs objects); v3 takes ``codecs`` (``{"name", "configuration"}``
    dicts or codec objects) or builds the chain from ``compressor``/``filters``.
    The default compressor is zstd (level 3). ``shards`` (v3) groups
    ``chunks``-shaped inner chunks into shard objects.

    ``chunks`` (or, sharded, ``shards``) may give a dimension a list of chunk edge
    lengths instead of one size, summing to its length: a rectilinear chunk grid (v3),
    e.g. ``chunks=[[10, 20, 30], 25]``.
    """
    meta = build_array_metadata(
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
    )
    st, owns = resolve_store(store, read_only=False, storage_options=storage_options)
    path = join_path(path)
    await _create_node(st, owns, path, meta, overwrite)
    return AsyncArray(st, path, meta, write_empty_chunks=write_empty_chunks, owns_store=owns)


async def create_group(
    store: str | Store,
    *,
    zarr_format: Literal[2, 3] = 3,
    attributes: dict[str, Any] | None = None,
    overwrite: bool = False,
    storage_options: Mapping[str, Any] | None = None,
    path: str = "",
) -> AsyncGroup:
    """Create a new group."""
    if zarr_format not in (2, 3):
        raise ConfigError(f"zarr_format must be 2 or 3, got {zarr_format!r}")
    st, owns = resolve_store(store, read_only=False, storage_options=storage_options)
    path = join_path(path)
    meta = GroupMetadata(zarr_format, dict(attributes or {}))
    await _create_node(st, owns, path, meta, overwrite)
    return AsyncGroup(st, path, meta, owns_store=owns)


def _check_mode(mode: str) -> None:
    if mode not in _MODES:
        raise ConfigError(f"mode must be one of {', '.join(_MODES)}, got {mode!r}")


async def open(
    store: str | Store,
    *,
    mode: AccessMode = "r",
    path: str = "",
    zarr_format: Literal[2, 3] | None = None,
    use_consolidated: bool | None = None,
    storage_options: Mapping[str, Any] | None = None,
) -> AsyncArray | AsyncGroup:
    """Open whatever node is at ``store``/``path`` (array or group, v2 or v3)."""
    _check_mode(mode)
    if mode in ("w", "w-"):
        raise ConfigError("open() cannot create a node; use create_array or create_group")
    st, owns = resolve_store(store, read_only=mode == "r", storage_options=storage_options)
    path = join_path(path)
    try:
        meta = await load_node(managed(st), path, zarr_format=zarr_format)
        if isinstance(meta, ArrayMetadata):
            return AsyncArray(st, path, meta, owns_store=owns, read_only=mode == "r")
        return await _group_from(st, path, meta, owns, use_consolidated, mode == "r")
    except BaseException as exc:
        await _close_on_error(st, owns, exc)
        raise


async def _group_from(
    st: Store,
    path: str,
    meta: GroupMetadata,
    owns: bool,
    use_consolidated: bool | None,
    read_only: bool,
) -> AsyncGroup:
    if meta.zarr_format == 2 and use_consolidated is not False:
        docs = await load_v2_consolidated(st, path)
        if docs is not None:
            meta = GroupMetadata(2, meta.attributes, docs)
        elif use_consolidated:
            raise NodeNotFoundError(
                f"no consolidated metadata (.zmetadata) {node_location(st, path)}"
            )
    elif use_consolidated and meta.consolidated is None:
        raise NodeNotFoundError(f"the group {node_location(st, path)} has no consolidated metadata")
    return AsyncGroup(
        st,
        path,
        meta,
        owns_store=owns,
        use_consolidated=use_consolidated is not False,
        read_only=read_only,
    )


async def open_array(
    store: str | Store,
    *,
    mode: AccessMode = "r",
    path: str = "",
    zarr_format: Literal[2, 3] | None = None,
    storage_options: Mapping[str, Any] | None = None,
    write_empty_chunks: bool = False,
) -> AsyncArray:
    """Open an existing array (format detected unless ``zarr_format`` is given)."""
    _check_mode(mode)
    if mode in ("w", "w-"):
        raise ConfigError("open_array() cannot create an array; use create_array")
    st, owns = resolve_store(store, read_only=mode == "r", storage_options=storage_options)
    path = join_path(path)
    try:
        meta = await load_node(managed(st), path, zarr_format=zarr_format)
        if not isinstance(meta, ArrayMetadata):
            raise ContainsGroupError(f"expected an array {node_location(st, path)}, found a group")
    except BaseException as exc:
        await _close_on_error(st, owns, exc)
        raise
    return AsyncArray(
        st,
        path,
        meta,
        write_empty_chunks=write_empty_chunks,
        owns_store=owns,
        read_only=mode == "r",
    )


async def open_group(
    store: str | Store,
    *,
    mode: AccessMode = "r",
    path: str = "",
    zarr_format: Literal[2, 3] | None = None,
    use_consolidated: bool | None = None,
    storage_options: Mapping[str, Any] | None = None,
) -> AsyncGroup:
    """Open a group; ``mode="a"`` creates it when missing.

    Consolidated metadata is used when present (``use_consolidated=None``),
    required with ``True`` and ignored with ``False``.
    """
    _check_mode(mode)
    if mode in ("w", "w-"):
        return await create_group(
            store,
            zarr_format=zarr_format or 3,
            overwrite=mode == "w",
            storage_options=storage_options,
            path=path,
        )
    st, owns = resolve_store(store, read_only=mode == "r", storage_options=storage_options)
    path = join_path(path)
    try:
        try:
            meta = await load_node(managed(st), path, zarr_format=zarr_format)
        except NodeNotFoundError:
            if mode != "a":
                raise
            grp = await create_group(st, zarr_format=zarr_format or 3, path=path)
            return AsyncGroup(st, path, grp.metadata, owns_store=owns)
        if not isinstance(meta, GroupMetadata):
            raise ContainsArrayError(f"expected a group {node_location(st, path)}, found an array")
        return await _group_from(st, path, meta, owns, use_consolidated, mode == "r")
    except BaseException as exc:
        await _close_on_error(st, owns, exc)
        raise


async def consolidate_metadata(
    store: str | Store,
    *,
    path: str = "",
    storage_options: Mapping[str, Any] | None = None,
) -> AsyncGroup:
    """Gather the metadata of every node below the group at ``path`` into it."""
    group = await open_group(
        store, mode="r+", path=path, use_consolidated=False, storage_options=storage_options
    )
    return await group.consolidate_metadata()
