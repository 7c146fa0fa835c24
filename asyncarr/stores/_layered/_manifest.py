"""Manifests: the immutable, numbered generations of a layered container.

``manifest.<generation>`` (12 digits or more, zero-padded) is a UTF-8 JSON object naming
the layers of that generation, newest first, with its parent generation, a timestamp, a
message and what kind of change made it. Each is created once, with put-if-absent, and
never changed; the newest generation is the container's current state. See
``docs/layered.md``.
"""

from __future__ import annotations

import json
import os
import re
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Final, Literal

from asyncarr.abc import normalize_key
from asyncarr.errors import CorruptContainerError, InvalidKeyError

__all__ = [
    "FORMAT_NAME",
    "MANIFEST_PREFIX",
    "LayerRef",
    "Manifest",
    "layer_created_ms",
    "manifest_generation",
    "manifest_name",
    "new_layer_name",
]

FORMAT_NAME: Final = "asyncarr.layered"
FORMAT_VERSION: Final = 1
MANIFEST_PREFIX: Final = "manifest."
LAYER_PREFIX: Final = "layers/"
PACK_SELF: Final = "."
"""The layer name a pack's embedded manifest uses for the pack itself."""
Kind = Literal["commit", "compact", "pack"]
_KINDS: Final = ("commit", "compact", "pack")
_LAYER_NAME = re.compile(r"layers/(\d{13})-[0-9a-f]{32}\.layer")
_MANIFEST_NAME = re.compile(r"manifest\.(\d{12,})")


def manifest_name(generation: int) -> str:
    return f"{MANIFEST_PREFIX}{generation:012d}"


def manifest_generation(name: str) -> int | None:
    """The generation a manifest's name gives, or ``None`` for other names."""
    m = _MANIFEST_NAME.fullmatch(name)
    if m is None or manifest_name(int(m.group(1))) != name:
        return None
    return int(m.group(1))


def new_layer_name(now: float | None = None) -> str:
    """A fresh, unique layer name; it records when it was made (milliseconds since the
    epoch), which garbage collection's grace period is measured from."""
    ms = int((time.time() if now is None else now) * 1000)
    return f"{LAYER_PREFIX}{ms:013d}-{os.urandom(16).hex()}.layer"


def layer_created_ms(name: str) -> int | None:
    """When the layer ``name`` was made (ms since the epoch), ``None`` if its name does not
    say (never collected then)."""
    m = _LAYER_NAME.fullmatch(name)
    return int(m.group(1)) if m else None


@dataclass(frozen=True, slots=True)
class LayerRef:
    """A layer as a manifest names it."""

    name: str
    size: int
    entries: int

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "size": self.size, "entries": self.entries}


def _iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


@dataclass(frozen=True, slots=True)
class Manifest:
    """One generation of a container."""

    generation: int
    layers: tuple[LayerRef, ...]
    """Newest first: a key's value is the one in the first layer that mentions it."""
    timestamp: float
    """Seconds since the epoch (UTC), never earlier than the parent's."""
    message: str = ""
    kind: Kind = "commit"
    added: tuple[str, ...] = ()
    """The layers this generation brought in (a commit's changes; a compaction's output)."""
    commit_id: str = field(default_factory=lambda: os.urandom(16).hex())
    """Random, per attempt: a writer recognises its own manifest after a lost reply."""

    @property
    def parent(self) -> int:
        return self.generation - 1

    @property
    def when(self) -> datetime:
        return datetime.fromtimestamp(self.timestamp, UTC)

    def to_json(self) -> bytes:
        doc = {
            "format": FORMAT_NAME,
            "version": FORMAT_VERSION,
            "generation": self.generation,
            "parent": self.parent,
            "timestamp": _iso(self.timestamp),
            "message": self.message,
            "kind": self.kind,
            "layers": [ref.to_json() for ref in self.layers],
            "added": list(self.added),
            "commit_id": self.commit_id,
        }
        return json.dumps(doc, ensure_ascii=False, separators=(",", ":")).encode("utf-8")

    def summary(self) -> dict[str, Any]:
        """What ``asyncarr layers`` prints about it."""
        return {
            "generation": self.generation,
            "timestamp": _iso(self.timestamp),
            "message": self.message,
            "kind": self.kind,
            "layers": len(self.layers),
            "bytes": sum(ref.size for ref in self.layers),
        }

    @classmethod
    def from_json(cls, data: bytes, *, key: str, generation: int | None) -> Manifest:
        """Parse and check a manifest (``generation``: the one its name gives)."""

        def bad(what: str) -> CorruptContainerError:
            return CorruptContainerError(f"corrupt manifest: {what}", key=key)

        try:
            doc = json.loads(data.decode("utf-8"))
        except (UnicodeDecodeError, ValueError) as exc:
            raise bad(f"not UTF-8 JSON ({exc})") from exc
        if not isinstance(doc, dict):
            raise bad("not a JSON object")
        if doc.get("format") != FORMAT_NAME:
            raise bad(f"format is {doc.get('format')!r}, expected {FORMAT_NAME!r}")
        if doc.get("version") != FORMAT_VERSION:
            raise bad(f"version {doc.get('version')!r}; this reader knows {FORMAT_VERSION}")
        gen = _int(doc, "generation", bad)
        if gen < 1 or (generation is not None and gen != generation):
            raise bad(f"it says generation {gen}, its name says {generation}")
        parent = _int(doc, "parent", bad)
        if parent != gen - 1:
            raise bad(
                f"parent {parent} is not generation {gen - 1}: the generations' parents must "
                "form one chain (a cycle or a gap)"
            )
        when = doc.get("timestamp")
        try:
            ts = datetime.fromisoformat(str(when).replace("Z", "+00:00")).timestamp()
        except ValueError as exc:
            raise bad(f"timestamp {when!r} is not ISO 8601") from exc
        message, kind, commit_id = doc.get("message"), doc.get("kind"), doc.get("commit_id")
        if not isinstance(message, str) or not isinstance(commit_id, str):
            raise bad("message and commit_id must be strings")
        if kind not in _KINDS:
            raise bad(f"kind {kind!r} is not one of {_KINDS}")
        layers = _layers(doc.get("layers"), bad)
        added = doc.get("added")
        names = {ref.name for ref in layers}
        if not isinstance(added, list) or not all(a in names for a in added):
            raise bad("'added' must list layers of the manifest")
        return cls(gen, layers, ts, message, kind, tuple(added), commit_id)


def _int(doc: dict[str, Any], name: str, bad: Any) -> int:
    value = doc.get(name)
    if not isinstance(value, int) or isinstance(value, bool):
        raise bad(f"{name} must be an integer, got {value!r}")
    return value


def _layers(value: Any, bad: Any) -> tuple[LayerRef, ...]:
    if not isinstance(value, list):
        raise bad("'layers' must be a list")
    refs: list[LayerRef] = []
    seen: set[str] = set()
    for item in value:
        if not isinstance(item, dict):
            raise bad("every layer must be an object")
        name, size, entries = item.get("name"), item.get("size"), item.get("entries")
        if not isinstance(name, str) or name in seen:
            raise bad(f"layer name {name!r} is missing or repeated")
        if name != PACK_SELF:
            try:
                normalize_key(name)
            except InvalidKeyError as exc:
                raise bad(f"layer name {name!r} is not a valid key") from exc
            if not name.startswith(LAYER_PREFIX):
                raise bad(f"layer name {name!r} is not under {LAYER_PREFIX!r}")
        for label, number in (("size", size), ("entries", entries)):
            if not isinstance(number, int) or isinstance(number, bool) or number < 0:
                raise bad(f"layer {name!r}: {label} must be a non-negative integer")
        assert isinstance(size, int) and isinstance(entries, int)
        seen.add(name)
        refs.append(LayerRef(name, size, entries))
    return tuple(refs)
