"""Builds an array's codec chain from v3 metadata or from ``create_array`` arguments."""

from __future__ import annotations

from typing import TYPE_CHECKING

from asyncarr.abc import Codec
from asyncarr.errors import AsyncarrError, MetadataError

if TYPE_CHECKING:
    from asyncarr.core._metadata import ArrayMetadata

__all__ = ["codec_chain_from_metadata"]


def codec_chain_from_metadata(
    value: object, meta: ArrayMetadata, *, key: str | None = None
) -> tuple[Codec, ...]:
    """Parse the ``codecs`` list of an array's ``zarr.json`` and check it fits the array."""
    from asyncarr.codecs import codec_from_metadata
    from asyncarr.core._metadata import validate_codec_chain
    from asyncarr.core._pipeline import CodecPipeline
    from asyncarr.core._types_bridge import chunk_spec

    if not isinstance(value, list) or not value:
        raise MetadataError(f"codecs must be a non-empty list, got {value!r}", key=key)
    try:
        codecs = tuple(v if isinstance(v, Codec) else codec_from_metadata(v) for v in value)
        validate_codec_chain(codecs, key=key)
        CodecPipeline(codecs, chunk_spec(meta))  # checks every codec against the array
    except AsyncarrError as exc:
        if getattr(exc, "key", None) is None and key is not None:
            exc.key = key  # type: ignore[attr-defined]
            exc.args = (f"{exc.args[0]} (key={key!r})",)
        raise
    except (TypeError, ValueError, KeyError) as exc:
        raise MetadataError(f"invalid codec in {value!r}: {exc}", key=key) from exc
    return codecs
