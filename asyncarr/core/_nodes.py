"""Finding and loading nodes (arrays and groups) of either format from a store."""

from __future__ import annotations

from typing import Any

from asyncarr.core._metadata import (
    ZARR_JSON,
    ZARRAY,
    ZATTRS,
    ZGROUP,
    ArrayMetadata,
    GroupMetadata,
    dumps_json,
    loads_json,
    parse_array_metadata_v2,
    parse_array_metadata_v3,
    parse_group_metadata_v2,
    parse_group_metadata_v3,
)
from asyncarr.errors import MetadataError, NodeNotFoundError
from asyncarr.runtime import ManagedStore, gather_all

__all__ = [
    "join_path",
    "load_node",
    "metadata_keys",
    "node_from_documents",
    "save_array_metadata",
    "save_group_metadata",
]


def join_path(*parts: str) -> str:
    return "/".join(p.strip("/") for p in parts if p and p.strip("/"))


def _key(path: str, name: str) -> str:
    return f"{path}/{name}" if path else name


def metadata_keys(path: str) -> list[str]:
    return [_key(path, n) for n in (ZARR_JSON, ZARRAY, ZGROUP, ZATTRS)]


def node_from_documents(
    path: str,
    zarr_json: dict[str, Any] | None,
    zarray: dict[str, Any] | None,
    zgroup: dict[str, Any] | None,
    zattrs: dict[str, Any] | None,
    *,
    zarr_format: int | None = None,
) -> ArrayMetadata | GroupMetadata:
    """Pick the node a set of metadata documents describes (v3 wins when both exist)."""
    for name, doc in ((ZARR_JSON, zarr_json), (ZARRAY, zarray), (ZGROUP, zgroup), (ZATTRS, zattrs)):
        if doc is not None and not isinstance(doc, dict):
            raise MetadataError(
                f"metadata must be a JSON object, got {type(doc).__name__}", key=_key(path, name)
            )
    if zarr_json is not None and zarr_format in (None, 3):
        key = _key(path, ZARR_JSON)
        node_type = zarr_json.get("node_type")
        if node_type == "array":
            return parse_array_metadata_v3(zarr_json, key=key)
        if node_type == "group":
            return parse_group_metadata_v3(zarr_json, key=key)
        raise MetadataError(f"node_type must be 'array' or 'group', got {node_type!r}", key=key)
    if zarr_format in (None, 2):
        if zarray is not None:
            return parse_array_metadata_v2(zarray, zattrs, key=_key(path, ZARRAY))
        if zgroup is not None:
            return parse_group_metadata_v2(zgroup, zattrs, key=_key(path, ZGROUP))
    where = f"at path {path!r}" if path else "at the store root"
    raise NodeNotFoundError(f"no Zarr array or group {where}")


async def load_node(
    io: ManagedStore, path: str, *, zarr_format: int | None = None
) -> ArrayMetadata | GroupMetadata:
    """Load the array or group at ``path`` (all candidate documents fetched concurrently)."""
    keys = metadata_keys(path)
    blobs = await gather_all(*(io.get(k) for k in keys))
    docs = [None if b is None else loads_json(b, key=k) for k, b in zip(keys, blobs, strict=True)]
    try:
        return node_from_documents(path, *docs, zarr_format=zarr_format)
    except NodeNotFoundError as exc:  # say where: the store (its root, bucket, URL, ...)
        raise NodeNotFoundError(f"{exc} of {io.store}") from None


async def save_array_metadata(io: ManagedStore, path: str, meta: ArrayMetadata) -> None:
    if meta.zarr_format == 3:
        await io.set(_key(path, ZARR_JSON), dumps_json(meta.to_json()))
        return
    await io.set(_key(path, ZARRAY), dumps_json(meta.to_json()))
    if meta.attributes:
        await io.set(_key(path, ZATTRS), dumps_json(meta.attributes))
    else:
        await io.delete(_key(path, ZATTRS))


async def save_group_metadata(io: ManagedStore, path: str, meta: GroupMetadata) -> None:
    if meta.zarr_format == 3:
        await io.set(_key(path, ZARR_JSON), dumps_json(meta.to_json()))
        return
    await io.set(_key(path, ZGROUP), dumps_json(meta.to_json()))
    if meta.attributes:
        await io.set(_key(path, ZATTRS), dumps_json(meta.attributes))
    else:
        await io.delete(_key(path, ZATTRS))
