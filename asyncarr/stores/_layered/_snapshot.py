"""A generation's merged view: which layer holds each live key.

A :class:`Snapshot` maps every live key of one generation to its row in the newest
layer that mentions it (tombstones hide older values), so a read is one dictionary
lookup however many layers there are. A new generation that only stacks layers on top
of the previous one (a commit) is built from the previous snapshot by applying just the
new layers (an overlay, folded into the base map once it grows), not from scratch.
"""

from __future__ import annotations

import bisect
from collections.abc import Iterable
from typing import TypeAlias

from asyncarr.stores._layered._format import LayerIndex
from asyncarr.stores._layered._manifest import Manifest

__all__ = ["Found", "Snapshot", "keys_under"]

Found: TypeAlias = tuple[LayerIndex, int]
"""A stored value: the layer and its row there."""

_FOLD_AT = 4096


def _apply(target: dict[str, Found | None], layers_oldest_first: Iterable[LayerIndex]) -> None:
    for layer in layers_oldest_first:
        dead = layer.tombstone_rows()
        if dead:
            for row, key in enumerate(layer.keys):
                target[key] = None if row in dead else (layer, row)
        else:
            target.update(zip(layer.keys, ((layer, row) for row in range(len(layer.keys)))))


def keys_under(sorted_keys: list[str], prefix: str) -> list[str]:
    """The keys of a sorted list that start with ``prefix``."""
    lo = bisect.bisect_left(sorted_keys, prefix)
    hi = lo
    n = len(sorted_keys)
    while hi < n and sorted_keys[hi].startswith(prefix):
        hi += 1
    return sorted_keys[lo:hi]


class Snapshot:
    """The live keys of one generation (``generation`` 0: the empty container)."""

    __slots__ = ("_base", "_overlay", "_sorted", "generation", "layers", "manifest")

    def __init__(
        self,
        generation: int,
        manifest: Manifest | None,
        layers: tuple[LayerIndex, ...],
        base: dict[str, Found],
        overlay: dict[str, Found | None],
    ) -> None:
        self.generation = generation
        self.manifest = manifest
        self.layers = layers
        """Newest first (they are referenced here, so their indexes stay cached)."""
        self._base = base
        self._overlay = overlay
        self._sorted: list[str] | None = None

    def __repr__(self) -> str:
        return f"<Snapshot generation {self.generation}: {len(self.layers)} layers>"

    @classmethod
    def empty(cls) -> Snapshot:
        return cls(0, None, (), {}, {})

    @classmethod
    def build(cls, manifest: Manifest, layers: tuple[LayerIndex, ...]) -> Snapshot:
        """From scratch: every layer, oldest first."""
        merged: dict[str, Found | None] = {}
        _apply(merged, reversed(layers))
        base = {k: v for k, v in merged.items() if v is not None}
        return cls(manifest.generation, manifest, layers, base, {})

    def stacked(self, manifest: Manifest, new_layers: tuple[LayerIndex, ...]) -> Snapshot:
        """The generation ``manifest``, which put ``new_layers`` (newest first) on top of
        this one's layers."""
        overlay = dict(self._overlay)
        _apply(overlay, reversed(new_layers))
        base = self._base
        if len(overlay) > max(_FOLD_AT, len(base) // 4):
            base = dict(base)
            for key, found in overlay.items():
                if found is None:
                    base.pop(key, None)
                else:
                    base[key] = found
            overlay = {}
        return Snapshot(manifest.generation, manifest, new_layers + self.layers, base, overlay)

    def lookup(self, key: str) -> Found | None:
        """Where the live value of ``key`` is, or ``None`` if there is none."""
        overlay = self._overlay
        if overlay and key in overlay:
            return overlay[key]
        return self._base.get(key)

    def sorted_keys(self) -> list[str]:
        """Every live key, sorted (worked out once per snapshot, on first listing)."""
        if self._sorted is None:
            live = set(self._base)
            for key, found in self._overlay.items():
                if found is None:
                    live.discard(key)
                else:
                    live.add(key)
            self._sorted = sorted(live)
        return self._sorted

    def keys_with_prefix(self, prefix: str) -> list[str]:
        return keys_under(self.sorted_keys(), prefix)

    def __len__(self) -> int:
        return len(self.sorted_keys())
