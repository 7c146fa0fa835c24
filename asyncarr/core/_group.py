"""``AsyncGroup``: the async handle on a Zarr group (v2 or v3)."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

from asyncarr.abc import Store
from asyncarr.core._array import AsyncArray
from asyncarr.core._context import forget_cached_prefix
from asyncarr.core._info import GroupInfo
from asyncarr.core._metadata import (
    ZARR_JSON,
    ZARRAY,
    ZATTRS,
    ZGROUP,
    ZMETADATA,
    ArrayMetadata,
    GroupMetadata,
)
from asyncarr.core._node import NodeBase
from asyncarr.core._nodes import (
    join_path,
    load_node,
    node_from_documents,
    read_document,
    save_group_metadata,
)
from asyncarr.core._operation import store_operation
from asyncarr.core._unsupported import UnsupportedNode, readable_documents
from asyncarr.errors import (
    AsyncarrError,
    CodecError,
    ConfigError,
    ContainsArrayError,
    MetadataError,
    NodeNotFoundError,
)
from asyncarr.runtime import bounded_map, managed

__all__ = ["AsyncGroup", "Member", "load_v2_consolidated"]


def _validate_name(name: str) -> str:
    if not isinstance(name, str) or not name.strip("/"):
        raise ConfigError(f"invalid member name {name!r}")
    parts = name.strip("/").split("/")
    if any(p in ("", ".", "..") or p.startswith("__") for p in parts):
        raise ConfigError(f"invalid member name {name!r}")
    return "/".join(parts)


_METADATA_DOCUMENTS = frozenset({ZARR_JSON, ZARRAY, ZGROUP, ZATTRS, ZMETADATA})
"""Names in a group's listing that are its own metadata, never members."""


class AsyncGroup(NodeBase):
    """An open Zarr group: a node holding arrays and other groups."""

    _kind = "group"

    def __init__(
        self,
        store: Store,
        path: str,
        metadata: GroupMetadata,
        *,
        owns_store: bool = False,
        use_consolidated: bool = True,
        read_only: bool = False,
    ) -> None:
        super().__init__(store, path, owns_store=owns_store, read_only=read_only)
        self._meta = metadata
        self._use_consolidated = use_consolidated and metadata.consolidated is not None
        self._io = managed(store)

    # -- description --------------------------------------------------------------------
    @property
    def metadata(self) -> GroupMetadata:
        return self._meta

    def __reduce__(self) -> tuple[Any, ...]:
        """Pickled as its store (see :class:`asyncarr.abc.Store`), path, mode and the
        metadata it holds now (consolidated metadata included): the copy does no I/O until
        it is used, and owns its store."""
        return (
            _reopen_group,
            (type(self), self._store, self._path, self._meta, self._use_consolidated,
             self._read_only),
        )  # fmt: skip

    def __repr__(self) -> str:
        return f"<AsyncGroup {self._store}{self.name} zarr_format={self.zarr_format}>"

    def _child(self, name: str) -> str:
        return join_path(self._path, _validate_name(name))

    # -- attributes -----------------------------------------------------------------------
    def _attributes_owner(self) -> GroupMetadata:
        return self._meta

    async def _save_attributes(self, attrs: dict[str, Any]) -> None:
        meta = GroupMetadata(self._meta.zarr_format, attrs, self._meta.consolidated)
        await save_group_metadata(self._io, self._path, meta)
        self._meta = meta

    # -- members ------------------------------------------------------------------------
    def _node(self, path: str, meta: ArrayMetadata | GroupMetadata) -> AsyncArray | AsyncGroup:
        if isinstance(meta, ArrayMetadata):
            return AsyncArray(self._store, path, meta, read_only=self._read_only)
        return AsyncGroup(
            self._store, path, meta, use_consolidated=False, read_only=self._read_only
        )

    def _consolidated_node(self, rel: str) -> ArrayMetadata | GroupMetadata | None:
        docs = self._meta.consolidated
        if not self._use_consolidated or docs is None:
            return None
        path = join_path(self._path, rel)
        if self.zarr_format == 3:
            doc = docs.get(rel)
            if doc is None:
                return None
            if (
                isinstance(doc, dict)
                and doc.get("node_type") == "group"
                and "consolidated_metadata" in doc
            ):
                # zarr-python puts an empty placeholder block in each child group's entry;
                # it says nothing of the child's own zarr.json, and kept, it was written
                # there on the child's next change (the child then listed no members)
                doc = {k: v for k, v in doc.items() if k != "consolidated_metadata"}
            return node_from_documents(path, doc, None, None, None, zarr_format=3)
        zarray = docs.get(f"{rel}/{ZARRAY}")
        zgroup = docs.get(f"{rel}/{ZGROUP}")
        if zarray is None and zgroup is None:
            return None
        return node_from_documents(
            path, None, zarray, zgroup, docs.get(f"{rel}/{ZATTRS}"), zarr_format=2
        )

    async def get(self, name: str) -> AsyncArray | AsyncGroup:
        """The member at ``name`` (a path relative to this group)."""
        rel = _validate_name(name)
        meta = self._consolidated_node(rel)
        path = join_path(self._path, rel)
        if meta is None:
            meta = await load_node(self._io, path, zarr_format=self.zarr_format)
        return self._node(path, meta)

    def __getitem__(self, name: str) -> Any:
        """``await group["name"]``."""
        return self.get(name)

    async def contains(self, name: str) -> bool:
        """Whether a member ``name`` exists (one asyncarr cannot open counts)."""
        try:
            await self.get(name)
        except NodeNotFoundError:
            return False
        except (MetadataError, CodecError):
            return True  # there, though asyncarr cannot open it
        return True

    async def _child_names(self) -> list[str]:
        if self._use_consolidated and self._meta.consolidated is not None:
            names = set()
            for rel in self._meta.consolidated:
                first = rel.split("/", 1)[0]
                if first and first not in _METADATA_DOCUMENTS:
                    names.add(first)
            return sorted(names)
        # a name may start with "." (zarr-python lists ".hidden" too); what is not a node
        # (.zmetadata, a stray dotfile) is dropped by members() when it fails to load
        return [n for n in await self._io.list_dir(self._path) if n not in _METADATA_DOCUMENTS]

    @store_operation("list", write=False)
    async def members(self, max_depth: int | None = 0) -> list[tuple[str, Member]]:
        """``(relative path, node)`` for each child; ``max_depth=None`` recurses fully.

        ``max_depth=0`` gives the direct children only. A member whose metadata asyncarr
        cannot use (an unknown data type, codec or chunk grid, a document that does not
        parse) is listed as an :class:`UnsupportedNode`; only using its data raises.
        """
        names = await self._child_names()

        async def load(name: str) -> tuple[str, Member] | None:
            try:
                return name, await self.get(name)
            except NodeNotFoundError:
                return None  # a plain prefix (e.g. chunk directory), not a node
            except (MetadataError, CodecError) as exc:
                return name, await self._unsupported(name, exc)

        found = [m for m in await bounded_map(load, names, limit=32) if m is not None]
        out = list(found)
        if max_depth is None or max_depth > 0:
            deeper = None if max_depth is None else max_depth - 1
            for name, node in found:
                if isinstance(node, AsyncGroup):
                    for sub, child in await node.members(deeper):
                        out.append((f"{name}/{sub}", child))
        return sorted(out, key=lambda m: m[0])

    async def _unsupported(self, rel: str, error: AsyncarrError) -> UnsupportedNode:
        """The member ``rel`` that failed to open with ``error``, as listings show it."""
        path = join_path(self._path, rel)
        docs = self._meta.consolidated if self._use_consolidated else None
        if docs is not None:
            if self.zarr_format == 3:
                found = {ZARR_JSON: docs.get(rel)}
            else:
                found = {n: docs.get(f"{rel}/{n}") for n in (ZARRAY, ZGROUP, ZATTRS)}
            documents = {n: d for n, d in found.items() if isinstance(d, dict)}
        else:
            documents = await readable_documents(self._io, path, zarr_format=self.zarr_format)
        return UnsupportedNode(self._store, path, documents, error)

    async def keys(self) -> list[str]:
        """The names of the direct members, sorted (``iter(group)`` in the blocking API)."""
        return [name for name, _ in await self.members()]

    def __aiter__(self) -> AsyncIterator[str]:
        """``async for name in group``: the names of the direct members."""
        return _names(self)

    async def nmembers(self, max_depth: int | None = 0) -> int:
        """How many members (``len(group)`` in the blocking API); ``max_depth`` as for
        :meth:`members`."""
        return len(await self.members(max_depth))

    async def arrays(self) -> list[tuple[str, AsyncArray | UnsupportedNode]]:
        """``(name, array)`` for each direct member that is an array (one asyncarr cannot
        open as an :class:`UnsupportedNode`)."""
        return [(n, node) for n, node in await self.members() if _is_array(node)]  # type: ignore[misc]

    async def groups(self) -> list[tuple[str, AsyncGroup | UnsupportedNode]]:
        """``(name, group)`` for each direct member that is a group."""
        return [(n, node) for n, node in await self.members() if _is_group(node)]  # type: ignore[misc]

    async def array_keys(self) -> list[str]:
        return [n for n, _ in await self.arrays()]

    async def group_keys(self) -> list[str]:
        return [n for n, _ in await self.groups()]

    async def tree(self) -> str:
        """A text tree of the hierarchy below this group."""
        members = await self.members(max_depth=None)
        lines = [self.name]
        for path, node in members:
            depth = path.count("/")
            label = path.rsplit("/", 1)[-1]
            if isinstance(node, AsyncArray):
                label += f" {node.shape} {node.metadata.data_type.describe()}"
            elif isinstance(node, UnsupportedNode):
                label += f" {node.label()}"
            lines.append("    " * (depth + 1) + label)
        return "\n".join(lines)

    @property
    def info(self) -> GroupInfo:
        """A readable summary (no I/O); see :meth:`info_complete` for the members."""
        return GroupInfo.from_group(self)

    async def info_complete(self) -> GroupInfo:
        """:attr:`info` plus the members below the group (all depths), counted by kind,
        and those asyncarr cannot open, with why."""
        return GroupInfo.from_group(self, await self.members(max_depth=None))

    # -- creation -------------------------------------------------------------------------
    @store_operation("create group in", write=True)
    async def create_group(
        self, name: str, *, attributes: dict[str, Any] | None = None, overwrite: bool = False
    ) -> AsyncGroup:
        """Create a child group (same format as this group)."""
        from asyncarr.core._api import create_group

        self._check_writable()
        group = await create_group(
            self._store,
            path=self._child(name),
            zarr_format=self._meta.zarr_format,
            attributes=attributes,
            overwrite=overwrite,
        )
        await self._refresh_consolidated(_validate_name(name), group)
        return group

    @store_operation("require group in", write=True)
    async def require_group(self, name: str) -> AsyncGroup:
        """The child group ``name``, created if missing."""
        try:
            node = await self.get(name)
        except NodeNotFoundError:
            return await self.create_group(name)
        if not isinstance(node, AsyncGroup):
            raise ContainsArrayError(f"{name!r} is an array, not a group")
        return node

    @store_operation("create array in", write=True)
    async def create_array(self, name: str, **kwargs: Any) -> AsyncArray:
        """Create a child array; keywords as for :func:`asyncarr.create_array`."""
        from asyncarr.core._api import create_array

        self._check_writable()
        kwargs.setdefault("zarr_format", self.zarr_format)
        array = await create_array(self._store, path=self._child(name), **kwargs)
        await self._refresh_consolidated(_validate_name(name), array)
        return array

    @store_operation("delete from", write=True)
    async def delete(self, name: str) -> None:
        """Delete the member ``name`` and everything below it."""
        self._check_writable()
        prefix = self._child(name) + "/"
        try:
            await self._io.delete_prefix(prefix)
        finally:
            forget_cached_prefix(self._store, prefix)
        await self._refresh_consolidated(_validate_name(name), None)

    async def _refresh_consolidated(self, rel: str, node: AsyncArray | AsyncGroup | None) -> None:
        """Keep this group's consolidated metadata (if it has any) true after it created
        (``node``) or deleted (``None``) the member ``rel``: that member's entries and
        everything below it go, the new node's come in. (Changes made through other
        objects, e.g. a subgroup's own ``delete``, still need :meth:`consolidate_metadata`.)
        """
        docs = self._meta.consolidated
        if docs is None:
            return
        v2 = self.zarr_format == 2

        def under(key: str) -> bool:  # v2 keys end in a metadata file name
            path = key.rpartition("/")[0] if v2 else key
            return path == rel or path.startswith(rel + "/")

        kept = {k: v for k, v in docs.items() if not under(k)}
        if node is not None:
            kept.update(_consolidated_entries(rel, node, v2))
            # parents created on the way ("x" for "x/y") need entries too: a consolidated
            # copy with "x/y" but no "x" cannot be opened by zarr-python
            parts = rel.split("/")[:-1]
            for depth in range(1, len(parts) + 1):
                ancestor = "/".join(parts[:depth])
                if (f"{ancestor}/{ZGROUP}" if v2 else ancestor) not in kept:
                    meta = await load_node(self._io, join_path(self._path, ancestor))
                    parent = self._node(join_path(self._path, ancestor), meta)
                    kept.update(_consolidated_entries(ancestor, parent, v2))
        await self._save_consolidated(kept)

    # -- consolidated metadata --------------------------------------------------------------
    @store_operation("consolidate", write=True)
    async def consolidate_metadata(self) -> AsyncGroup:
        """Write every descendant's metadata into this group (v3 ``zarr.json`` block, v2 ``.zmetadata``)."""
        self._check_writable()
        plain = AsyncGroup(
            self._store,
            self._path,
            GroupMetadata(self._meta.zarr_format, dict(self._meta.attributes)),
        )
        members = await plain.members(max_depth=None)
        v2 = self.zarr_format == 2
        docs: dict[str, Any] = {}
        if v2:
            docs[ZGROUP] = {"zarr_format": 2}
            if self._meta.attributes:
                docs[ZATTRS] = self._meta.attributes
        for rel, node in members:
            docs.update(_consolidated_entries(rel, node, v2))
        await self._save_consolidated(docs)
        return self

    async def _save_consolidated(self, docs: dict[str, Any]) -> None:
        """Store ``docs`` as this group's consolidated metadata and use them."""
        if self.zarr_format == 3:
            meta = GroupMetadata(3, dict(self._meta.attributes), docs)
            await save_group_metadata(self._io, self._path, meta)
        else:
            body = {"zarr_consolidated_format": 1, "metadata": docs}
            await self._io.set(
                join_path(self._path, ZMETADATA), json.dumps(body, indent=2).encode()
            )
            meta = GroupMetadata(2, dict(self._meta.attributes), dict(docs))
        self._meta = meta
        self._use_consolidated = True


Member = AsyncArray | AsyncGroup | UnsupportedNode
"""What listing a group gives for each member: an array, a group, or a member asyncarr
cannot open (:class:`UnsupportedNode`, listed all the same)."""


async def _names(group: AsyncGroup) -> AsyncIterator[str]:
    for name in await group.keys():
        yield name


def _is_array(node: Member) -> bool:
    return isinstance(node, AsyncArray) or (
        isinstance(node, UnsupportedNode) and node.node_type == "array"
    )


def _is_group(node: Member) -> bool:
    return isinstance(node, AsyncGroup) or (
        isinstance(node, UnsupportedNode) and node.node_type == "group"
    )


def _consolidated_entries(rel: str, node: Member, v2: bool) -> dict[str, Any]:
    """The consolidated-metadata entries of the member ``rel``: v3 one document under its
    path, v2 its ``.zarray`` or ``.zgroup`` and its ``.zattrs`` (a member asyncarr cannot
    open: its documents as stored, so readers that can open it still find it)."""
    if isinstance(node, UnsupportedNode):
        return _unsupported_entries(rel, node, v2)
    if not v2:
        return {rel: node.metadata.to_json()}
    entries: dict[str, Any] = {}
    if isinstance(node, AsyncArray):
        entries[f"{rel}/{ZARRAY}"] = node.metadata.to_json()
    else:
        entries[f"{rel}/{ZGROUP}"] = {"zarr_format": 2}
    if node.metadata.attributes:
        entries[f"{rel}/{ZATTRS}"] = dict(node.metadata.attributes)
    return entries


def _unsupported_entries(rel: str, node: UnsupportedNode, v2: bool) -> dict[str, Any]:
    docs = node.documents
    if node.node_type is None:
        raise MetadataError(
            f"cannot consolidate the metadata of the group: its member {rel!r} has no "
            f"readable metadata ({node.reason})"
        )
    if not v2:
        return {rel: dict(docs[ZARR_JSON])}
    return {f"{rel}/{name}": dict(doc) for name, doc in docs.items()}


async def load_v2_consolidated(store: Store, path: str) -> dict[str, Any] | None:
    """The ``metadata`` mapping of a v2 ``.zmetadata`` document, if present."""
    key = join_path(path, ZMETADATA)
    doc = await read_document(managed(store), key)
    if doc is None:
        return None
    meta = doc.get("metadata")
    if not isinstance(meta, dict):
        raise MetadataError("consolidated metadata lacks a 'metadata' object", key=key)
    return meta


def _reopen_group(
    cls: type[AsyncGroup],
    store: Store,
    path: str,
    metadata: GroupMetadata,
    use_consolidated: bool,
    read_only: bool,
) -> AsyncGroup:
    """Unpickle an :class:`AsyncGroup`."""
    return cls(
        store,
        path,
        metadata,
        owns_store=True,
        use_consolidated=use_consolidated,
        read_only=read_only,
    )
