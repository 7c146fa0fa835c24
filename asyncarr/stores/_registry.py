"""URL scheme → store factory registry.

Built-in backends are registered lazily by module path so that optional SDKs
are imported only when a URL of that scheme is opened.
"""

from __future__ import annotations

import importlib
import os
import re
from collections.abc import Mapping
from typing import Any, Protocol
from urllib.parse import urlsplit

from asyncarr.abc import Store
from asyncarr.errors import ConfigError
from asyncarr.stores._fsspec_options import translate_fsspec_options

__all__ = [
    "StoreFactory",
    "register_store",
    "registered_schemes",
    "store_from_url",
    "unregister_store",
]


class StoreFactory(Protocol):
    def __call__(
        self, url: str, *, read_only: bool, storage_options: Mapping[str, Any]
    ) -> Store: ...


# scheme -> factory or "module:function" for lazy import
_BUILTIN: dict[str, str] = {
    "file": "asyncarr.stores._local:local_store_from_url",
    "memory": "asyncarr.stores._memory:memory_store_from_url",
    "zip": "asyncarr.stores._zip:zip_store_from_url",
    "s3": "asyncarr.stores._s3:s3_store_from_url",
    "gs": "asyncarr.stores._gcs:gcs_store_from_url",
    "gcs": "asyncarr.stores._gcs:gcs_store_from_url",
    "az": "asyncarr.stores._azure:azure_store_from_url",
    "abfs": "asyncarr.stores._azure:azure_store_from_url",
    "abfss": "asyncarr.stores._azure:azure_store_from_url",
    "mongodb": "asyncarr.stores._mongodb:mongodb_store_from_url",
    "mongodb+srv": "asyncarr.stores._mongodb:mongodb_store_from_url",
    "http": "asyncarr.stores._http:http_store_from_url",
    "https": "asyncarr.stores._http:http_store_from_url",
    "layered": "asyncarr.stores._layered:layered_store_from_url",
}
_factories: dict[str, StoreFactory | str] = dict(_BUILTIN)


def register_store(scheme: str, factory: StoreFactory, *, replace: bool = False) -> None:
    """Make ``scheme://...`` URLs open with ``factory``."""
    scheme = scheme.lower()
    if not scheme.isidentifier() and not all(c.isalnum() or c in "+-." for c in scheme):
        raise ConfigError(f"invalid URL scheme {scheme!r}")
    if scheme in _factories and not replace:
        raise ConfigError(f"a store is already registered for {scheme!r}:// (pass replace=True)")
    _factories[scheme] = factory


def unregister_store(scheme: str) -> None:
    """Remove a scheme registration (built-ins come back to their default)."""
    scheme = scheme.lower()
    if scheme in _BUILTIN:
        _factories[scheme] = _BUILTIN[scheme]
    else:
        _factories.pop(scheme, None)


def registered_schemes() -> list[str]:
    return sorted(_factories)


def _resolve(scheme: str) -> StoreFactory:
    entry = _factories.get(scheme)
    if entry is None:
        raise ConfigError(
            f"no store is registered for URL scheme {scheme!r}; known: {', '.join(registered_schemes())}"
        )
    if isinstance(entry, str):
        module_name, func_name = entry.split(":")
        module = importlib.import_module(module_name)
        factory: StoreFactory = getattr(module, func_name)
        return factory
    return entry


def store_from_url(
    url: str,
    *,
    read_only: bool = False,
    storage_options: Mapping[str, Any] | None = None,
) -> Store:
    """Open the store a URL (or a plain local path) points to.

    A wrapper store chains onto another URL fsspec-style, ``wrapper::inner-url``
    (``layered::s3://bucket/path``): the wrapper's factory gets the whole URL.
    """
    if not isinstance(url, str) or not url:
        raise ConfigError(f"expected a store URL or path, got {url!r}")
    head, chained, _inner = url.partition("::")
    if chained and head.isalnum():
        scheme = head.lower()
    else:
        scheme = urlsplit(url).scheme.lower() if "://" in url else ""
    if scheme == "" or (len(scheme) == 1 and url[1:3] in (":\\", ":/")):
        scheme = "file"  # plain path (also Windows drive letters)
        _check_plain_path(url)
    factory = _resolve(scheme)
    options = dict(storage_options or {})
    if _factories.get(scheme) == _BUILTIN.get(scheme):
        options = translate_fsspec_options(scheme, options)
    return factory(url, read_only=read_only, storage_options=options)


_SCHEME_WITHOUT_SLASHES = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]+):/?(?!/)(.*)$")
"""``s3:/bucket`` or ``s3:bucket``: a scheme not followed by ``//``."""


def _check_plain_path(url: str) -> None:
    """Refuse, with the fix, what looks like a URL mistyped as a path, or a zip archive
    given as a plain path (a plain path is a directory of files)."""
    mistyped = _SCHEME_WITHOUT_SLASHES.match(url)
    if mistyped and mistyped.group(1).lower() in set(_factories) - {"file"}:
        scheme, rest = mistyped.group(1), mistyped.group(2)
        raise ConfigError(
            f"{url!r} looks like a mistyped {scheme}:// URL (as it is, it would open a local "
            f"path): a URL has two slashes after the scheme; did you mean {scheme}://{rest}?"
        )
    if url.lower().rstrip("/").endswith(".zip") and not os.path.isdir(os.path.expanduser(url)):
        raise ConfigError(
            f"{url!r} names a zip archive, but a plain path opens a directory of files: "
            f"open the archive as zip://{url}"
        )
