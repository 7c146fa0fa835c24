"""``layered::<url>``: a layered container (or a pack) on the store of any URL."""

from __future__ import annotations

import posixpath
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from asyncarr.errors import ConfigError
from asyncarr.stores._layered._store import LayeredStore

__all__ = ["LAYERED_OPTIONS", "layered_store_from_url", "split_object_url"]

LAYERED_OPTIONS = frozenset(
    {"at", "refresh_interval", "auto_compact_layers", "spill_bytes", "compression", "pack"}
)
"""``storage_options`` the layered store takes for itself; the others go to the base."""


def split_object_url(url: str) -> tuple[str, str]:
    """``(parent URL, last segment)`` of the URL (or path) of one object."""
    if "://" not in url:
        parent, name = posixpath.split(url.rstrip("/"))
        return parent or ".", name
    parts = urlsplit(url)
    path = parts.path.rstrip("/")
    parent, name = posixpath.split(path)
    if not name and parts.netloc and "/" not in path:  # s3://bucket/name.pack has path /name
        parent, name = "", parts.netloc
    return urlunsplit((parts.scheme, parts.netloc, parent, "", "")), name


def layered_store_from_url(
    url: str, *, read_only: bool, storage_options: Mapping[str, Any]
) -> LayeredStore:
    """``layered::<any store URL>``: the container at that URL's root; a URL whose last
    segment ends in ``.pack`` (or the option ``pack=True``) opens that object as a pack.

    Options of the layered store (``at``, ``refresh_interval``, ``auto_compact_layers``,
    ``spill_bytes``, ``compression``, ``pack``) are taken out of ``storage_options``;
    the rest configure the base store."""
    head, sep, inner = url.partition("::")
    if head.lower() != "layered" or not sep or not inner:
        raise ConfigError(f"expected layered::<store URL>, got {url!r}")
    base_options = {k: v for k, v in storage_options.items() if k not in LAYERED_OPTIONS}
    mine = {k: v for k, v in storage_options.items() if k in LAYERED_OPTIONS}
    pack = mine.pop("pack", None)
    if pack not in (None, True, False):
        raise ConfigError(f"storage option pack must be true or false, got {pack!r}")
    if pack is None:
        pack = inner.rstrip("/").endswith(".pack")
    if pack:
        parent, name = split_object_url(inner)
        if not name:
            raise ConfigError(f"a pack URL must name the pack object, got {inner!r}")
        return LayeredStore(parent, pack=name, read_only=True, storage_options=base_options, **mine)
    return LayeredStore(inner, read_only=read_only, storage_options=base_options, **mine)
