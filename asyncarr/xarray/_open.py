"""Opening a group and the groups below it for xarray, with every member's metadata
fetched at once: from consolidated metadata where there is some (at the store's root,
as xarray reads it, or at the group), else by listing the groups concurrently."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

import asyncarr
from asyncarr.abc import Store
from asyncarr.core import AsyncArray, AsyncGroup, UnsupportedNode
from asyncarr.errors import CodecError, ContainsArrayError, MetadataError, NodeNotFoundError
from asyncarr.runtime import gather_all

__all__ = ["OpenedGroups", "open_groups"]

Member = AsyncArray | AsyncGroup | UnsupportedNode

_V2_NODE_DOCUMENTS = (".zarray", ".zgroup")


@dataclass
class OpenedGroups:
    """``owner``: the group whose store was opened (close it to close the store);
    ``groups``: path below the requested group (``""`` for itself) → (group, its
    arrays by name)."""

    owner: AsyncGroup
    groups: dict[str, tuple[AsyncGroup, dict[str, AsyncArray]]] = field(default_factory=dict)


def _consolidated_paths(docs: Mapping[str, Any], zarr_format: int) -> list[str]:
    """The node paths consolidated metadata describes (relative to its group)."""
    if zarr_format == 3:
        return [p for p in docs if p]
    paths = set()
    for key in docs:
        head, _, leaf = key.rpartition("/")
        if head and leaf in _V2_NODE_DOCUMENTS:
            paths.add(head)
    return sorted(paths)


def _below(paths: list[str], base: str, depth: int | None) -> list[str]:
    """The paths below ``base``, relative to it, at most ``depth`` levels further down
    than its children (``None``: all)."""
    prefix = f"{base}/" if base else ""
    out = []
    for p in paths:
        if p.startswith(prefix) and p != base:
            rel = p[len(prefix) :]
            if depth is None or rel.count("/") <= depth:
                out.append(rel)
    return out


async def _from_consolidated(
    owner: AsyncGroup, base: str, depth: int | None
) -> list[tuple[str, Member]] | None:
    """``base`` and its members as ``owner``'s consolidated metadata describes them (no
    I/O), or ``None`` where it does not describe ``base`` as a group."""
    docs = owner.metadata.consolidated
    if docs is None:
        return None
    paths = _consolidated_paths(docs, owner.zarr_format)
    if base and base not in paths:
        return None
    rels = _below(paths, base, depth)
    prefix = f"{base}/" if base else ""

    async def member(path: str) -> Member:
        try:
            return await owner.get(path)
        except (MetadataError, CodecError) as exc:  # listed, as members() lists it
            if owner.zarr_format == 3:
                found = {"zarr.json": docs.get(path)}
            else:
                found = {n: docs.get(f"{path}/{n}") for n in (".zarray", ".zgroup", ".zattrs")}
            documents = {n: d for n, d in found.items() if isinstance(d, dict)}
            full = f"{owner.path}/{path}" if owner.path else path
            return UnsupportedNode(owner.store, full, documents, exc)

    nodes = await gather_all(*(member(prefix + rel) for rel in ["", *rels] if prefix + rel))
    if base:
        target, nodes = nodes[0], nodes[1:]
        if not isinstance(target, AsyncGroup):
            return None
    else:
        target = owner
    return [("", target), *zip(rels, nodes, strict=True)]


async def open_groups(
    where: str | Store,
    *,
    group: str,
    consolidated: bool | None,
    storage_options: Mapping[str, Any] | None,
    zarr_format: Literal[2, 3] | None,
    depth: int | None,
    skip: frozenset[str] = frozenset(),
) -> OpenedGroups:
    """The group at ``group`` and (to ``depth`` levels below its children; ``None``: all)
    the groups below it, each with its arrays but those named in ``skip``."""

    async def open_at(path: str, use: bool | None) -> AsyncGroup:
        return await asyncarr.open_group(
            where,
            mode="r",
            path=path,
            zarr_format=zarr_format,
            use_consolidated=use,
            storage_options=storage_options,
        )

    found: list[tuple[str, Member]] | None = None
    owner: AsyncGroup | None = None
    if group and consolidated is not False:  # xarray reads the root's consolidated metadata
        try:
            owner = await open_at("", None)
        except (NodeNotFoundError, ContainsArrayError):
            owner = None
        if owner is not None:
            found = await _close_if_failed(owner, _from_consolidated(owner, group, depth))
            if found is None:
                await owner.aclose()
                owner = None
    if owner is None:
        owner = await open_at(group, consolidated)
    result = OpenedGroups(owner)
    try:
        if found is None:
            found = (
                await _from_consolidated(owner, "", depth) if consolidated is not False else None
            )
        if found is None:
            found = [("", owner), *(await owner.members(max_depth=depth))]
        for path, node in found:
            if isinstance(node, AsyncGroup):
                result.groups[path] = (node, {})
        for path, node in found:
            parent, _, name = path.rpartition("/")
            if name in skip:
                continue
            if isinstance(node, UnsupportedNode) and node.node_type != "group":
                raise MetadataError(
                    f"asyncarr cannot read the array {node.name!r} as an xarray variable: "
                    f"{node.reason} (xarray's engine='zarr' reads through zarr-python)"
                ) from node.error
            if isinstance(node, AsyncArray):
                result.groups[parent][1][name] = node
    except BaseException:
        await owner.aclose()
        raise
    return result


async def _close_if_failed(owner: AsyncGroup, work: Any) -> Any:
    try:
        return await work
    except BaseException:
        await owner.aclose()
        raise
