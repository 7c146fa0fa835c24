"""Friendly builders used by ``create_array``: compressor and filter specs -> codecs.

A compressor spec may be:

* ``None``, ``"none"`` or ``False``: no compression;
* ``"auto"`` / ``"default"``: :data:`DEFAULT_COMPRESSOR` (zstd, level 3);
* a name: ``"zstd"`` (level 3), ``"gzip"`` (level 5), ``"zlib"`` (level 5),
  ``"blosc"`` (zstd inside, clevel 5, shuffle chosen from the dtype),
  ``"lz4"`` (acceleration 1), ``"bz2"`` (level 5), ``"lzma"`` (preset 6),
  ``"crc32c"`` (v3 only) or any numcodecs id / ``numcodecs.<id>`` name;
* a numcodecs-style dict (``{"id": "blosc", "cname": "lz4", "clevel": 5, "shuffle": 1}``)
  or a v3 entry (``{"name": "zstd", "configuration": {...}}``);
* a numcodecs ``Codec`` object, or an asyncarr bytes -> bytes codec;
* for v3, a list of any of these (applied in order).

For v3, ``zstd``, ``gzip`` and ``blosc`` become the native v3 codecs (what
every Zarr implementation reads); other ids become ``numcodecs.<id>``
adapters, as zarr-python writes them. For v2 the result is a numcodecs
adapter whose ``to_v2_config()`` is the ``.zarray`` entry.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from asyncarr._types import ChunkSpec
from asyncarr.abc import BytesBytesCodec, Codec
from asyncarr.codecs._blosc import BLOSC_SHUFFLES, BloscCodec
from asyncarr.codecs._crc32c import Crc32cCodec
from asyncarr.codecs._numcodecs import NUMCODECS_PREFIX, NumcodecsCodec, numcodecs_adapter
from asyncarr.codecs._registry import codec_from_metadata
from asyncarr.codecs._stdlib import GzipCodec
from asyncarr.codecs._transpose import TransposeCodec
from asyncarr.codecs._v2 import numcodecs_from_v2_config
from asyncarr.codecs._zstd import ZstdCodec
from asyncarr.errors import ConfigError

__all__ = ["DEFAULT_COMPRESSOR", "codecs_from_compressor", "filters_from_spec"]

DEFAULT_COMPRESSOR = "zstd"
"""What ``"auto"`` means: zstd at level 3 (fast, good ratio, every Zarr reads it)."""

_DEFAULTS: dict[str, dict[str, Any]] = {
    "zstd": {"level": 3, "checksum": False},
    "gzip": {"level": 5},
    "zlib": {"level": 5},
    "blosc": {"cname": "zstd", "clevel": 5, "blocksize": 0},
    "lz4": {"acceleration": 1},
    "bz2": {"level": 5},
    "lzma": {"format": 1, "check": -1, "preset": 6, "filters": None},
}
_NONE = ("none", "")


def _spec(dtype: Any) -> ChunkSpec:
    return ChunkSpec(shape=(1,), dtype=np.dtype(dtype), fill_value=None)


def _blosc_shuffle(dtype: np.dtype[Any]) -> int:
    return 2 if dtype.itemsize == 1 else 1


def _to_numcodecs_config(spec: object) -> dict[str, Any] | None:
    """A numcodecs config for numcodecs objects and ``{"id": ...}`` dicts, else None."""
    get_config = getattr(spec, "get_config", None)
    if callable(get_config) and hasattr(spec, "codec_id"):
        config = get_config()
        if isinstance(config, Mapping):
            return dict(config)
    if isinstance(spec, Mapping) and "id" in spec:
        return dict(spec)
    return None


def _v3_from_numcodecs(config: dict[str, Any], dtype: np.dtype[Any]) -> BytesBytesCodec:
    codec_id = config.pop("id")
    try:
        if codec_id == "zstd":
            return ZstdCodec(level=config.get("level", 0), checksum=config.get("checksum", False))
        if codec_id == "gzip":
            return GzipCodec(level=config.get("level", 1))
        if codec_id == "blosc":
            shuffle = config.get("shuffle", 1)
            if shuffle == -1:  # AUTOSHUFFLE
                shuffle = _blosc_shuffle(dtype)
            return BloscCodec(
                cname=config.get("cname", "lz4"),
                clevel=config.get("clevel", 5),
                shuffle=BLOSC_SHUFFLES[shuffle],
                blocksize=config.get("blocksize", 0),
                typesize=config.get("typesize") or max(1, dtype.itemsize),
            )
    except (IndexError, TypeError) as exc:
        raise ConfigError(f"invalid {codec_id} compressor configuration {config!r}: {exc}") from exc
    codec = numcodecs_adapter(codec_id, config).evolve(_spec(dtype))
    if not isinstance(codec, BytesBytesCodec):
        raise ConfigError(f"numcodecs {codec_id!r} is a filter, not a compressor")
    return codec


def _v2_from_v3(codec: Codec, dtype: np.dtype[Any]) -> NumcodecsCodec:
    if isinstance(codec, NumcodecsCodec):
        return codec if codec.typed_input else codec.as_v2()
    if isinstance(codec, ZstdCodec):
        return numcodecs_from_v2_config({"id": "zstd", **codec.to_config()})
    if isinstance(codec, GzipCodec):
        return numcodecs_from_v2_config({"id": "gzip", **codec.to_config()})
    if isinstance(codec, BloscCodec):
        blosc = codec.evolve(_spec(dtype))
        return numcodecs_from_v2_config(
            {
                "id": "blosc",
                "cname": blosc.cname,
                "clevel": blosc.clevel,
                "shuffle": BLOSC_SHUFFLES.index(blosc.shuffle),
                "blocksize": blosc.blocksize,
            }
        )
    raise ConfigError(f"{codec!r} has no Zarr v2 (numcodecs) equivalent")


def _one_compressor(spec: object, zarr_format: int, dtype: np.dtype[Any]) -> list[BytesBytesCodec]:
    if spec is None or spec is False or (isinstance(spec, str) and spec.lower() in _NONE):
        return []
    if isinstance(spec, str):
        name = spec.lower()
        if name in ("auto", "default"):
            name = DEFAULT_COMPRESSOR
        if name == "crc32c" and zarr_format == 3:
            return [Crc32cCodec()]
        codec_id = name[len(NUMCODECS_PREFIX) :] if name.startswith(NUMCODECS_PREFIX) else name
        config: dict[str, Any] = {"id": codec_id, **_DEFAULTS.get(codec_id, {})}
        if codec_id == "blosc":
            config["shuffle"] = _blosc_shuffle(dtype)
        spec = config
        if zarr_format == 3 and name.startswith(NUMCODECS_PREFIX):
            codec = numcodecs_adapter(codec_id, _DEFAULTS.get(codec_id, {})).evolve(_spec(dtype))
            return [_check_bytes(codec)]
    if isinstance(spec, Codec):
        if zarr_format == 2:
            return [_v2_from_v3(spec, dtype)]  # type: ignore[list-item]
        return [_check_bytes(spec.evolve(_spec(dtype)))]
    nc_config = _to_numcodecs_config(spec)
    if nc_config is not None:
        if zarr_format == 2:
            codec = numcodecs_from_v2_config(nc_config)
            return [_check_bytes(codec)]
        return [_v3_from_numcodecs(nc_config, dtype)]
    if isinstance(spec, Mapping) and "name" in spec:
        return _one_compressor(codec_from_metadata(spec), zarr_format, dtype)
    raise ConfigError(
        f"cannot make a compressor from {spec!r}: expected None, a name, a numcodecs config or "
        "codec, or an asyncarr bytes->bytes codec"
    )


def _check_bytes(codec: Codec) -> BytesBytesCodec:
    if not isinstance(codec, BytesBytesCodec):
        raise ConfigError(
            f"{codec.codec_name!r} is an {codec.kind.replace('_', ' ')} codec, not a compressor; "
            "pass it as a filter"
        )
    return codec


def codecs_from_compressor(
    compressor: object, *, zarr_format: int, dtype: np.dtype[Any] | str
) -> list[BytesBytesCodec]:
    """The bytes -> bytes codecs for a compressor spec (see the module docstring).

    For ``zarr_format=2`` the list has at most one element, a numcodecs
    adapter (``to_v2_config()`` gives the ``.zarray`` ``compressor``).
    Raises :class:`~asyncarr.errors.ConfigError` for specs it cannot use.
    """
    if zarr_format not in (2, 3):
        raise ConfigError(f"zarr_format must be 2 or 3, got {zarr_format!r}")
    dt = np.dtype(dtype)
    items: Sequence[object]
    items = compressor if isinstance(compressor, list | tuple) else [compressor]
    out: list[BytesBytesCodec] = []
    for item in items:
        out.extend(_one_compressor(item, zarr_format, dt))
    if zarr_format == 2 and len(out) > 1:
        raise ConfigError(f"Zarr v2 arrays take one compressor, got {len(out)}: {out!r}")
    return out


def filters_from_spec(
    filters: object, *, zarr_format: int, dtype: np.dtype[Any] | str
) -> list[Codec]:
    """The filter codecs for a list of filter specs.

    Each item is a numcodecs config dict or object (e.g. ``numcodecs.Delta``),
    a v3 entry (``{"name": "transpose", ...}``), an asyncarr codec, or a
    numcodecs id for filters that need only the dtype (``"delta"``,
    ``"packbits"``). Filters without a ``dtype`` get the array's. For v3 every
    filter must be array -> array; v2 also allows numcodecs bytes filters.
    """
    if zarr_format not in (2, 3):
        raise ConfigError(f"zarr_format must be 2 or 3, got {zarr_format!r}")
    if filters is None:
        return []
    if not isinstance(filters, list | tuple):
        filters = [filters]
    spec = _spec(dtype)
    out: list[Codec] = []
    for item in filters:
        codec: Codec
        if isinstance(item, str):
            item = {
                "id": item[len(NUMCODECS_PREFIX) :] if item.startswith(NUMCODECS_PREFIX) else item
            }
        nc_config = _to_numcodecs_config(item)
        if isinstance(item, Codec):
            codec = _v2_from_v3(item, spec.dtype) if zarr_format == 2 else item
        elif nc_config is not None:
            codec_id = nc_config.pop("id")
            codec = numcodecs_adapter(codec_id, nc_config)
            if zarr_format == 2:
                codec = codec.as_v2()
        elif isinstance(item, Mapping) and "name" in item:
            codec = codec_from_metadata(item)
            if zarr_format == 2:
                codec = _v2_from_v3(codec, spec.dtype)
        else:
            raise ConfigError(f"cannot make a filter from {item!r}")
        codec = codec.evolve(spec)
        if zarr_format == 3 and codec.kind != "array_to_array":
            raise ConfigError(
                f"{codec.codec_name!r} is not an array->array codec; in Zarr v3 put it among "
                "the compressors"
            )
        if not isinstance(codec, TransposeCodec):  # its checks need the chunk's ndim
            codec.validate(spec)
            spec = codec.resolve_spec(spec)
        out.append(codec)
    return out
