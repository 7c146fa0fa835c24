"""Builds an array's codec chain from v3 metadata or from ``create_array`` arguments."""

from __future__ import annotations

from typing import TYPE_CHECKING

from asyncarr.abc import Codec
from asyncarr.errors import AsyncarrError, MetadataError

if TYPE_CHECKING:
    from asyncarr.core._metadata import ArrayMetadata

__all__ = ["check_codecs_fit", "codec_chain_from_metadata"]


def codec_chain_from_metadata(
    value: object, meta: ArrayMetadata, *, key: str | None = None
) -> tuple[Codec, ...]:
    """Parse the ``codecs`` list of an array's ``zarr.json`` and check it fits the array."""
    from asyncarr.codecs import codec_from_metadata
    from asyncarr.core._metadata import validate_codec_chain

    if not isinstance(value, list) or not value:
        raise MetadataError(f"codecs must be a non-empty list, got {value!r}", key=key)
    try:
        codecs = tuple(v if isinstance(v, Codec) else codec_from_metadata(v) for v in value)
        validate_codec_chain(codecs, key=key)
        check_codecs_fit(codecs, meta)
    except AsyncarrError as exc:
        if getattr(exc, "key", None) is None and key is not None:
            exc.key = key  # type: ignore[attr-defined]
            exc.args = (f"{exc.args[0]} (key={key!r})",)
        raise
    except (TypeError, ValueError, KeyError) as exc:
        raise MetadataError(f"invalid codec in {value!r}: {exc}", key=key) from exc
    return codecs


def check_codecs_fit(codecs: tuple[Codec, ...], meta: ArrayMetadata) -> None:
    """Check every codec against the array: a whole pipeline for the first chunk, and each
    codec's per-axis constraints (e.g. sharding's whole inner chunks) against every other
    edge length of a rectilinear grid."""
    from asyncarr.abc import ArrayArrayCodec
    from asyncarr.core._pipeline import CodecPipeline
    from asyncarr.core._types_bridge import chunk_spec

    CodecPipeline(codecs, chunk_spec(meta))
    shapes = meta.chunk_grid.chunk_shapes_for_validation()
    next(shapes)  # the first chunk's: checked above
    for shape in shapes:
        spec = chunk_spec(meta, shape)
        for codec in codecs:
            codec.validate(spec)
            if isinstance(codec, ArrayArrayCodec):
                spec = codec.resolve_spec(spec)
