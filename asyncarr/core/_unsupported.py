"""Group members that asyncarr lists but cannot open (an unknown data type, codec or chunk
grid, or metadata that does not parse)."""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from types import MappingProxyType
from typing import Any, Literal, NoReturn

from asyncarr.abc import Store
from asyncarr.core._metadata import ZARR_JSON, ZARRAY, ZATTRS, ZGROUP
from asyncarr.core._nodes import join_path, read_document
from asyncarr.errors import AsyncarrError, MetadataError
from asyncarr.runtime import ManagedStore, gather_all

__all__ = ["UnsupportedNode", "readable_documents"]


class UnsupportedNode:
    """A member of a group whose metadata asyncarr cannot use: a data type, codec or chunk
    grid it does not know, or a document that does not parse.

    Listing a group (``members()``, ``arrays()``, ``array_keys()``, ``tree()``, ``info``,
    the CLI) shows it like any other member, so one odd member never hides the others;
    what its documents say (shape, data type, attributes, dimension names) is available
    as far as they can be read. Reading or writing it raises a :class:`MetadataError`
    naming the member and what was wrong (:attr:`error`).

    It does no I/O, so the async and the blocking API share this one class; its ``read``
    and ``write`` raise at once, before anything is awaited.
    """

    def __init__(
        self,
        store: Store,
        path: str,
        documents: Mapping[str, Any],
        error: AsyncarrError,
        *,
        zarr_format: int | None = None,
    ) -> None:
        self._store = store
        self._path = path
        self._documents = dict(documents)
        self._error = error
        self._zarr_format = zarr_format if zarr_format is not None else _format_of(documents)

    # -- where and what -----------------------------------------------------------------
    @property
    def store(self) -> Store:
        return self._store

    @property
    def path(self) -> str:
        return self._path

    @property
    def name(self) -> str:
        return "/" + self._path

    @property
    def basename(self) -> str:
        return self._path.rsplit("/", 1)[-1]

    @property
    def zarr_format(self) -> int | None:
        """2 or 3 where the documents say so, else ``None``."""
        return self._zarr_format

    @property
    def node_type(self) -> Literal["array", "group"] | None:
        """What the documents say the member is (``None``: they do not say)."""
        if ZARR_JSON in self._documents:
            kind = self._documents[ZARR_JSON].get("node_type")
            return kind if kind in ("array", "group") else None
        if ZARRAY in self._documents:
            return "array"
        if ZGROUP in self._documents:
            return "group"
        return None

    @property
    def documents(self) -> Mapping[str, Any]:
        """The member's metadata documents that parse as JSON objects, by file name."""
        return MappingProxyType(self._documents)

    @property
    def error(self) -> AsyncarrError:
        """Why asyncarr cannot open it."""
        return self._error

    @property
    def reason(self) -> str:
        return str(self._error)

    @property
    def short_reason(self) -> str:
        """:attr:`reason` without the key it names and the alternatives it lists."""
        text = str(self._error.args[0]) if self._error.args else self.reason
        text = re.sub(r" \(key=.*\)$", "", text)
        return text.split("; ", 1)[0]

    @property
    def shape(self) -> tuple[int, ...] | None:
        """The array's shape, where its document gives a valid one."""
        shape = self._array_document().get("shape")
        if isinstance(shape, list) and all(
            isinstance(s, int) and not isinstance(s, bool) and s >= 0 for s in shape
        ):
            return tuple(shape)
        return None

    @property
    def data_type(self) -> Any:
        """The array's data type as its document spells it (v3 ``data_type``, v2 ``dtype``)."""
        doc = self._array_document()
        return doc.get("data_type", doc.get("dtype"))

    @property
    def attrs(self) -> Mapping[str, Any]:
        """The attributes, where the documents hold a valid attributes object."""
        if ZARR_JSON in self._documents:
            attrs = self._documents[ZARR_JSON].get("attributes")
        else:
            attrs = self._documents.get(ZATTRS)
        return MappingProxyType(attrs if isinstance(attrs, dict) else {})

    @property
    def dimension_names(self) -> tuple[str | None, ...] | None:
        if ZARR_JSON in self._documents:
            names = self._documents[ZARR_JSON].get("dimension_names")
        else:
            names = self.attrs.get("_ARRAY_DIMENSIONS")
        if isinstance(names, list) and all(n is None or isinstance(n, str) for n in names):
            return tuple(names)
        return None

    def _array_document(self) -> dict[str, Any]:
        doc = self._documents.get(ZARR_JSON, self._documents.get(ZARRAY))
        return doc if isinstance(doc, dict) and self.node_type == "array" else {}

    def label(self) -> str:
        """One line for listings: what is known of it, and why it cannot be opened."""
        parts = []
        if self.shape is not None:
            parts.append(str(self.shape))
        data_type = self.data_type
        if data_type is not None:
            parts.append(data_type if isinstance(data_type, str) else _compact(data_type))
        parts.append(f"[unsupported: {self.short_reason}]")
        return " ".join(parts)

    def __repr__(self) -> str:
        kind = self.node_type or "node"
        return f"<UnsupportedNode {kind} {self._store}{self.name}: {self.reason}>"

    # -- data: refused ------------------------------------------------------------------
    def unreadable(self) -> MetadataError:
        """The error that any use of the member's data raises."""
        kind = self.node_type or "node"
        error = MetadataError(
            f"cannot open the {kind} {self.name!r} of {self._store}: {self.reason}"
        )
        error.key = getattr(self._error, "key", None)  # (already named in the reason)
        error.__cause__ = self._error
        return error

    def read(self, *args: Any, **kwargs: Any) -> NoReturn:
        """Raises :class:`MetadataError`: the member cannot be read."""
        raise self.unreadable()

    def write(self, *args: Any, **kwargs: Any) -> NoReturn:
        """Raises :class:`MetadataError`: the member cannot be written."""
        raise self.unreadable()

    def __getitem__(self, selection: Any) -> NoReturn:
        raise self.unreadable()

    def __setitem__(self, selection: Any, value: Any) -> NoReturn:
        raise self.unreadable()

    def __array__(self, dtype: Any = None, copy: bool | None = None) -> NoReturn:
        raise self.unreadable()


async def readable_documents(
    io: ManagedStore, path: str, *, zarr_format: int | None = None
) -> dict[str, Any]:
    """The metadata documents at ``path`` (of ``zarr_format``, or both formats) that parse
    as JSON objects, by file name: what can be said of a node that failed to open."""
    names = {2: (ZARRAY, ZGROUP, ZATTRS), 3: (ZARR_JSON,)}.get(
        zarr_format or 0, (ZARR_JSON, ZARRAY, ZGROUP, ZATTRS)
    )
    keys = [join_path(path, name) for name in names]

    async def readable(key: str) -> dict[str, Any] | None:
        try:
            return await read_document(io, key)
        except MetadataError:
            return None

    found = await gather_all(*(readable(k) for k in keys))
    return {name: doc for name, doc in zip(names, found, strict=True) if doc is not None}


def _format_of(documents: Mapping[str, Any]) -> int | None:
    if ZARR_JSON in documents:
        fmt = documents[ZARR_JSON].get("zarr_format")
        return fmt if fmt in (2, 3) else None
    return 2 if ZARRAY in documents or ZGROUP in documents else None


def _compact(value: Any) -> str:
    """A JSON value on one short line."""
    text = json.dumps(value, separators=(",", ":"), default=str)
    return text if len(text) <= 60 else text[:57] + "..."
