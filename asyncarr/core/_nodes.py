"""Finding and loading nodes (arrays and groups) of either format from a store."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from asyncarr.core._metadata import (
    ZARR_JSON,
    ZARRAY,
    ZATTRS,
    ZGROUP,
    ArrayMetadata,
    GroupMetadata,
    document_too_large,
    dumps_json,
    loads_json,
    parse_array_metadata_v2,
    parse_array_metadata_v3,
    parse_group_metadata_v2,
    parse_group_metadata_v3,
)
from asyncarr.errors import MetadataError, NodeNotFoundError, ValueTooLargeError
from asyncarr.runtime import ManagedStore, gather_all

__all__ = [
    "join_path",
    "load_node",
    "metadata_keys",
    "node_location",
    "node_from_documents",
    "read_document",
    "read_document_bytes",
    "save_array_metadata",
    "save_group_metadata",
]

logger = logging.getLogger(__name__)


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
    where = f"at path {path!r}" if path else "at the root"
    raise NodeNotFoundError(f"no Zarr array or group {where}")


def node_location(store: object, path: str) -> str:
    """Where a node is, for messages: ``at 'a/b' in <store>`` or ``at <store>``; a store
    shows as its URL, bucket or directory (its repr, which never holds credentials)."""
    return f"at {path!r} in {store}" if path else f"at {store}"


async def read_document_bytes(io: ManagedStore, key: str) -> bytes | None:
    """The bytes of the metadata document at ``key`` (``None`` if missing); one larger than
    the store's ``max_metadata_bytes`` is a :class:`MetadataError`, and is not read past
    the limit."""
    limit = io.store.limits.max_metadata_bytes
    try:
        data = await io.get(key, max_size=limit)
    except ValueTooLargeError as exc:
        raise MetadataError(document_too_large(None, limit), key=key) from exc
    if data is not None and len(data) > limit:  # (a store that does not take max_size)
        raise MetadataError(document_too_large(len(data), limit), key=key)
    return data


async def read_document(io: ManagedStore, key: str) -> dict[str, Any] | None:
    """The metadata document at ``key`` parsed (``None`` if missing), within the store's
    size limit (:func:`read_document_bytes`)."""
    data = await read_document_bytes(io, key)
    return None if data is None else loads_json(data, key=key)


async def load_node(
    io: ManagedStore, path: str, *, zarr_format: int | None = None
) -> ArrayMetadata | GroupMetadata:
    """Load the array or group at ``path``, deciding by format precedence.

    Zarr v3 comes first (unless ``zarr_format=2``): a valid ``zarr.json`` decides at once,
    and the v2 documents (fetched meanwhile, to save a round trip when there is none) are
    dropped unread, so no junk or slow file beside it can fail or hold the open. A
    ``zarr.json`` that is not a JSON object at all (an HTML page from a server answering
    every path) gives way to a valid v2 node; with none, its error is raised. Among the
    v2 documents ``.zarray`` comes before ``.zgroup`` the same way; ``.zattrs`` belongs to
    the node found and must be a JSON object.
    """
    try:
        if zarr_format == 2:
            return await _load_v2(io, path)
        v3_key = _key(path, ZARR_JSON)
        if zarr_format == 3:
            doc = await read_document(io, v3_key)
            if doc is None:
                raise NodeNotFoundError("no Zarr v3 array or group")
            return node_from_documents(path, doc, None, None, None, zarr_format=3)
        v2 = asyncio.ensure_future(_load_v2(io, path))
        try:
            raw = await read_document_bytes(io, v3_key)
            if raw is not None:
                try:
                    doc = loads_json(raw, key=v3_key)
                except MetadataError as junk:
                    return await _v2_instead_of(v2, junk)
                v2.cancel()
                return node_from_documents(path, doc, None, None, None, zarr_format=3)
            return await v2
        finally:
            if not v2.done():
                v2.cancel()
                await asyncio.gather(v2, return_exceptions=True)
            elif not v2.cancelled():
                v2.exception()  # retrieved: a failure nobody awaited is not logged
    except NodeNotFoundError as exc:  # say where: the store (its root, bucket, URL, ...)
        raise NodeNotFoundError(f"{exc} {node_location(io.store, path)}") from None


async def _v2_instead_of(
    v2: asyncio.Future[ArrayMetadata | GroupMetadata], junk: MetadataError
) -> ArrayMetadata | GroupMetadata:
    """The v2 node where ``zarr.json`` is not a JSON object; else ``junk`` is the error."""
    try:
        node = await v2
    except (MetadataError, NodeNotFoundError):
        raise junk from None
    logger.warning("opening the Zarr v2 node beside an unreadable zarr.json: %s", junk)
    return node


async def _load_v2(io: ManagedStore, path: str) -> ArrayMetadata | GroupMetadata:
    """The v2 array or group at ``path``: ``.zarray`` first, then ``.zgroup``."""
    names = (ZARRAY, ZGROUP, ZATTRS)
    keys = [_key(path, n) for n in names]
    raw = await gather_all(*(read_document_bytes(io, k) for k in keys))
    found: dict[str, dict[str, Any]] = {}
    junk: MetadataError | None = None
    for name, key, data in zip(names[:2], keys, raw, strict=False):
        if data is None:
            continue
        try:
            found[name] = loads_json(data, key=key)
            break  # .zarray decides before .zgroup
        except MetadataError as exc:
            junk = junk or exc
    if not found:
        if junk is not None:
            raise junk
        raise NodeNotFoundError("no Zarr array or group")
    attrs = None if raw[2] is None else loads_json(raw[2], key=keys[2])
    return node_from_documents(
        path, None, found.get(ZARRAY), found.get(ZGROUP), attrs, zarr_format=2
    )


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
