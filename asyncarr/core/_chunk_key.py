"""Chunk key encodings: how chunk grid coordinates become store keys."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from asyncarr._types import ChunkCoords
from asyncarr.errors import MetadataError

__all__ = ["ChunkKeyEncoding", "parse_chunk_key_encoding"]


@dataclass(frozen=True, slots=True)
class ChunkKeyEncoding:
    """``default`` (``c/1/2``) or ``v2`` (``1.2``) with a ``/`` or ``.`` separator."""

    kind: Literal["default", "v2"] = "default"
    separator: Literal["/", "."] = "/"

    def encode(self, coords: ChunkCoords) -> str:
        if self.kind == "default":
            return self.separator.join(["c", *map(str, coords)])
        return self.separator.join(map(str, coords)) if coords else "0"

    def to_json(self) -> dict[str, Any]:
        return {"name": self.kind, "configuration": {"separator": self.separator}}


def parse_chunk_key_encoding(value: object, *, key: str | None = None) -> ChunkKeyEncoding:
    """Parse a v3 ``chunk_key_encoding`` entry (or a user shorthand)."""
    if value is None:
        return ChunkKeyEncoding()
    if isinstance(value, ChunkKeyEncoding):
        return value
    if isinstance(value, str):
        value = {"name": value}
    if not isinstance(value, dict) or value.get("name") not in ("default", "v2"):
        raise MetadataError(
            f"chunk_key_encoding must be 'default' or 'v2' (with an optional separator), got {value!r}",
            key=key,
        )
    kind = value["name"]
    config = value.get("configuration") or {}
    if not isinstance(config, dict):
        raise MetadataError(
            f"chunk_key_encoding configuration must be an object: {value!r}", key=key
        )
    sep = config.get("separator", "/" if kind == "default" else ".")
    if sep not in ("/", "."):
        raise MetadataError(f"chunk key separator must be '/' or '.', got {sep!r}", key=key)
    return ChunkKeyEncoding(kind, sep)
