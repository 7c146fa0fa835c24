"""Codec name -> codec class registry, and parsing of v3 codec metadata entries.

Lookup order for a name: codecs registered here (built-ins and
:func:`register_codec`), then entry points in the ``asyncarr.codecs`` group
(loaded once, on the first miss), then ``numcodecs.<id>`` names, which
resolve through numcodecs' own registry to an adapter.
"""

from __future__ import annotations

import importlib
import threading
from collections.abc import Mapping
from importlib.metadata import entry_points
from typing import Any

from asyncarr.abc import Codec
from asyncarr.codecs._base import CodecConfigError
from asyncarr.codecs._numcodecs import NUMCODECS_PREFIX, numcodecs_adapter_class
from asyncarr.errors import ConfigError, MetadataError, UnknownCodecError

__all__ = [
    "ENTRY_POINT_GROUP",
    "codec_from_metadata",
    "get_codec_class",
    "register_codec",
    "registered_codecs",
    "unregister_codec",
]

ENTRY_POINT_GROUP = "asyncarr.codecs"

_BUILTIN: dict[str, str] = {
    "bytes": "asyncarr.codecs._bytes:BytesCodec",
    "transpose": "asyncarr.codecs._transpose:TransposeCodec",
    "gzip": "asyncarr.codecs._stdlib:GzipCodec",
    "zstd": "asyncarr.codecs._zstd:ZstdCodec",
    "blosc": "asyncarr.codecs._blosc:BloscCodec",
    "crc32c": "asyncarr.codecs._crc32c:Crc32cCodec",
    "vlen-utf8": "asyncarr.codecs._vlen:VlenUtf8Codec",
    "vlen-bytes": "asyncarr.codecs._vlen:VlenBytesCodec",
}
_codecs: dict[str, type[Codec] | str] = dict(_BUILTIN)
_entry_points_loaded = False
_lock = threading.Lock()


def register_codec(name: str, cls: type[Codec], *, replace: bool = False) -> None:
    """Make the v3 codec ``name`` decode/encode with ``cls``.

    Raises :class:`~asyncarr.errors.ConfigError` if ``name`` is taken (pass
    ``replace=True`` to override, e.g. a built-in) or ``cls`` is not a
    :class:`~asyncarr.abc.Codec` subclass.
    """
    if not isinstance(name, str) or not name:
        raise ConfigError(f"a codec name must be a non-empty string, got {name!r}")
    if not (isinstance(cls, type) and issubclass(cls, Codec)):
        raise ConfigError(f"{cls!r} is not a subclass of asyncarr.abc.Codec")
    with _lock:
        if name in _codecs and not replace:
            raise ConfigError(f"a codec is already registered as {name!r} (pass replace=True)")
        _codecs[name] = cls


def unregister_codec(name: str) -> None:
    """Remove a registration; a built-in name goes back to its built-in class."""
    with _lock:
        if name in _BUILTIN:
            _codecs[name] = _BUILTIN[name]
        else:
            _codecs.pop(name, None)


def registered_codecs() -> list[str]:
    """The registered names (built-ins, registrations, loaded entry points), sorted.

    ``numcodecs.<id>`` names resolve on demand and are listed only once used.
    """
    return sorted(_codecs)


def _load_entry_points() -> None:
    global _entry_points_loaded
    with _lock:
        if _entry_points_loaded:
            return
        _entry_points_loaded = True
        found = list(entry_points(group=ENTRY_POINT_GROUP))
        for ep in found:
            _codecs.setdefault(ep.name, f"{ep.module}:{ep.attr}" if ep.attr else ep.value)


def _resolve(name: str, entry: type[Codec] | str) -> type[Codec]:
    if not isinstance(entry, str):
        return entry
    module_name, _, attr = entry.partition(":")
    try:
        obj: Any = importlib.import_module(module_name)
        for part in attr.split("."):
            obj = getattr(obj, part)
    except Exception as exc:
        raise UnknownCodecError(
            f"codec {name!r} could not be loaded from {entry!r}: {exc}"
        ) from exc
    if not (isinstance(obj, type) and issubclass(obj, Codec)):
        raise UnknownCodecError(f"codec {name!r} ({entry}) is not an asyncarr Codec class")
    with _lock:
        if _codecs.get(name) == entry:
            _codecs[name] = obj
    return obj


def get_codec_class(name: str) -> type[Codec]:
    """The class registered for the v3 codec ``name``.

    Raises :class:`~asyncarr.errors.UnknownCodecError` (a ``CodecError`` and
    a ``MetadataError``) naming the codec and listing the known ones.
    """
    entry = _codecs.get(name)
    if entry is None and not _entry_points_loaded:
        _load_entry_points()
        entry = _codecs.get(name)
    if entry is not None:
        return _resolve(name, entry)
    if isinstance(name, str) and name.startswith(NUMCODECS_PREFIX):
        codec_id = name[len(NUMCODECS_PREFIX) :]
        try:
            cls = numcodecs_adapter_class(codec_id)
        except UnknownCodecError as exc:
            raise UnknownCodecError(
                f"unknown codec {name!r}: {exc}; known codecs: {', '.join(registered_codecs())}"
            ) from exc
        return cls
    raise UnknownCodecError(
        f"unknown codec {name!r}; known codecs: {', '.join(registered_codecs())} "
        f"and numcodecs.<id> for any numcodecs codec"
    )


def codec_from_metadata(obj: object) -> Codec:
    """Build a codec from one entry of a v3 ``codecs`` list.

    Accepts ``{"name": ..., "configuration": {...}}`` (configuration
    optional; ``must_understand`` is allowed and ignored) or a bare name
    string. A malformed entry raises :class:`~asyncarr.errors.MetadataError`;
    an unknown name :class:`~asyncarr.errors.UnknownCodecError`; a bad
    configuration :class:`CodecConfigError` (both a ``CodecError`` and a
    ``MetadataError``).
    """
    configuration: Any
    if isinstance(obj, str):
        name, configuration = obj, {}
    elif isinstance(obj, Mapping):
        raw_name = obj.get("name")
        if not isinstance(raw_name, str) or not raw_name:
            raise MetadataError(f"a codec entry needs a string 'name', got {dict(obj)!r}")
        name = raw_name
        extra = set(obj) - {"name", "configuration", "must_understand"}
        if extra:
            raise MetadataError(f"unexpected keys {sorted(extra)} in codec entry {dict(obj)!r}")
        configuration = obj.get("configuration", {})
        if configuration is None:
            configuration = {}
        if not isinstance(configuration, Mapping):
            raise MetadataError(
                f"the configuration of codec {name!r} must be an object, got {configuration!r}"
            )
    else:
        raise MetadataError(f"a codec entry must be an object or a name, got {obj!r}")
    cls = get_codec_class(name)
    try:
        return cls.from_config(dict(configuration))
    except CodecConfigError:
        raise
    except (TypeError, ValueError, KeyError) as exc:
        raise CodecConfigError(
            f"invalid configuration for codec {name!r}: {dict(configuration)!r}: {exc}"
        ) from exc
