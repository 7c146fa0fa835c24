"""Compaction, garbage collection and packs of layered containers.

**Compaction** merges a run of adjacent layers of the newest generation into one (or
several, each at most ``part_bytes``), keeping each key's newest entry and, when the run
reaches the oldest layer, dropping tombstones and the values they hid. Stored bytes are
copied as they are (no decoding), read in large sequential ranges. The result is
published as a new generation of kind ``compact`` with the run replaced; a commit that
landed meanwhile stays on top (its layers were not in the run). Older generations still
name the old layers, so their snapshots read exactly as before, until garbage collection
removes them.

**Garbage collection** deletes the manifests of the generations it does not keep (oldest
first, so the retained generations stay contiguous), then every layer object no retained
generation names, once it is older than the grace period.

**Packs** are one self-contained object: a single layer holding every key, with its
manifest embedded (see ``docs/layered.md``).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from dataclasses import dataclass

from asyncarr.abc import Store
from asyncarr.errors import ConflictError, StoreError
from asyncarr.stores._layered._container import Container
from asyncarr.stores._layered._format import LayerBuilder, LayerIndex
from asyncarr.stores._layered._manifest import (
    PACK_SELF,
    LayerRef,
    Manifest,
    layer_created_ms,
    manifest_name,
)

__all__ = ["GCReport", "auto_compact", "build_pack", "collect_garbage", "compact"]

PART_BYTES = 256 << 20
"""Compaction output is cut into layers of about this size (each uploaded whole)."""
READ_WINDOW = 16 << 20
"""Compaction reads the values it keeps in ranges of up to this size."""
READ_GAP = 1 << 20
"""Values closer than this in a layer are fetched by one range request."""


async def compact(
    container: Container,
    *,
    oldest: int | None = None,
    message: str = "compact",
    part_bytes: int = PART_BYTES,
) -> Manifest | None:
    """Merge all layers of the newest generation (or its ``oldest`` N) into one."""
    snap = await container.fresh(0.0)
    count = len(snap.layers)
    take = count if oldest is None else min(max(int(oldest), 0), count)
    if take < 1 or (take == 1 and not snap.layers[-1].tombstone_rows()):
        return None
    run = snap.layers[count - take :]
    return await _compact_run(container, snap.generation, run, True, message, part_bytes)


def choose_run(sizes: Sequence[int], limit: int) -> tuple[int, int] | None:
    """Which layers (newest first, by ``sizes``) automatic compaction merges when there
    are more than ``limit``: ``(start, stop)``. The newest layers are merged, extended
    downwards while the next layer is no larger than twice what is merged so far (so a
    large old layer is rewritten only when the newer ones have grown comparable to it:
    each byte is rewritten O(log n) times), and always far enough to bring the count
    down to half the limit."""
    n = len(sizes)
    if n <= limit:
        return None
    must = n - max(1, limit // 2) + 1  # merging this many leaves limit // 2 layers
    stop, total = 0, 0
    while stop < n and (stop < must or sizes[stop] <= 2 * total):
        total += sizes[stop]
        stop += 1
    return (0, stop) if stop >= 2 else None


async def auto_compact(container: Container, limit: int) -> Manifest | None:
    """Compaction after a commit that left more than ``limit`` layers."""
    snap = await container.fresh(0.0)
    run = choose_run([layer.size for layer in snap.layers], limit)
    if run is None:
        return None
    start, stop = run
    bottom = stop == len(snap.layers)
    return await _compact_run(
        container, snap.generation, snap.layers[start:stop], bottom, f"automatic compaction of {stop - start} layers",
        PART_BYTES,
    )  # fmt: skip


async def _compact_run(
    container: Container,
    base: int,
    run: tuple[LayerIndex, ...],
    bottom: bool,
    message: str,
    part_bytes: int,
) -> Manifest | None:
    """Merge ``run`` (adjacent layers, newest first; ``bottom``: it ends with the oldest
    layer, so tombstones go) and publish the generation that replaces it."""
    keep: dict[str, tuple[LayerIndex, int]] = {}
    for layer in run:  # newest first: the first entry of a key wins
        for row, key in enumerate(layer.keys):
            keep.setdefault(key, (layer, row))
    builder = LayerBuilder(compression="none")
    parts: list[LayerRef] = []
    for layer in reversed(run):
        rows = [row for key, (lay, row) in keep.items() if lay is layer]
        rows.sort(key=lambda r: int(layer.offsets[r]))
        if bottom:
            dead = layer.tombstone_rows()
            rows = [r for r in rows if r not in dead]
        for window in _windows(layer, rows):
            await _copy_window(container, layer, window, builder)
            if builder.nbytes >= part_bytes:
                parts.append(await _upload(container, builder))
                builder = LayerBuilder(compression="none")
    if len(builder) or not parts:
        parts.append(await _upload(container, builder))
    names = [layer.name for layer in run]

    async def make(newest: int, top: Manifest | None, between: list[Manifest]) -> Manifest:
        current = list(top.layers) if top is not None else []
        at = _find_run([ref.name for ref in current], names)
        if at is None:
            raise ConflictError(
                "the layers being compacted are no longer in the newest generation "
                "(compacted concurrently?)",
                store=container,
                keys=tuple(names[:3]),
            )
        layers = (*current[:at], *parts, *current[at + len(names) :])
        return Manifest(
            generation=newest + 1,
            layers=layers,
            timestamp=max(time.time(), top.timestamp if top else 0.0),
            message=message,
            kind="compact",
            added=tuple(ref.name for ref in parts),
        )

    try:
        return await container.publish(base, make)
    except BaseException:
        for ref in parts:  # never named: remove (garbage collection would, later)
            try:
                await container.io.delete(ref.name)
            except (StoreError, asyncio.CancelledError):
                break
        raise


def _find_run(names: list[str], run: list[str]) -> int | None:
    n = len(run)
    for at in range(len(names) - n + 1):
        if names[at : at + n] == run:
            return at
    return None


def _windows(layer: LayerIndex, rows: list[int]) -> list[list[int]]:
    """``rows`` (in offset order) grouped into ranges of at most :data:`READ_WINDOW`
    with gaps under :data:`READ_GAP`."""
    windows: list[list[int]] = []
    current: list[int] = []
    start = end = 0
    for row in rows:
        off = int(layer.offsets[row])
        length = int(layer.stored_lengths[row])
        if current and (off - end > READ_GAP or off + length - start > READ_WINDOW):
            windows.append(current)
            current = []
        if not current:
            start = off
        current.append(row)
        end = max(end, off + length) if len(current) > 1 else off + length
    if current:
        windows.append(current)
    return windows


async def _copy_window(
    container: Container, layer: LayerIndex, rows: list[int], builder: LayerBuilder
) -> None:
    start = int(layer.offsets[rows[0]])
    end = max(int(layer.offsets[r]) + int(layer.stored_lengths[r]) for r in rows)
    data = b""
    if end > start:
        key = container.object_key(layer.name)
        data = await container.read_exact(key, start, end, layer.size)
    for row in rows:
        off = int(layer.offsets[row]) - start
        stored = data[off : off + int(layer.stored_lengths[row])]
        builder.add_stored(
            layer.keys[row],
            stored,
            int(layer.raw_lengths[row]),
            int(layer.crcs[row]),
            int(layer.codecs[row]),
            int(layer.flags[row]),
        )


async def _upload(container: Container, builder: LayerBuilder) -> LayerRef:
    data = await asyncio.to_thread(builder.finish)
    ref, _index = await container.upload(data)
    return ref


@dataclass(frozen=True)
class GCReport:
    """What :func:`collect_garbage` did."""

    kept: tuple[int, int] | None
    """The oldest and newest generation kept (``None``: the container is empty)."""
    manifests_deleted: int
    layers_deleted: int
    bytes_deleted: int
    """Of the deleted layers whose size a manifest recorded."""

    def __str__(self) -> str:
        kept = f"generations {self.kept[0]}..{self.kept[1]}" if self.kept else "nothing"
        return (
            f"kept {kept}; deleted {self.manifests_deleted} manifests and "
            f"{self.layers_deleted} layers ({self.bytes_deleted} bytes)"
        )


async def collect_garbage(
    container: Container, *, keep: int, older_than: float, grace: float
) -> GCReport:
    """Keep the newest ``keep`` generations and those younger than ``older_than``
    seconds; delete the other manifests, then unreferenced layers older than ``grace``."""
    if not isinstance(keep, int) or keep < 1:
        raise StoreError(f"gc must keep at least the newest generation (keep={keep!r})")
    if older_than < 0 or grace < 0:
        raise StoreError("older_than and grace must be >= 0 seconds")
    now = time.time()
    gens = await container.generations()
    if not gens:
        return GCReport(None, 0, 0, 0)
    manifests = dict(
        zip(gens, await asyncio.gather(*(container.manifest(g) for g in gens)), strict=True)
    )
    kept = set(gens[-keep:]) | {g for g in gens if manifests[g].timestamp >= now - older_than}
    first = min(kept)
    sizes = {ref.name: ref.size for m in manifests.values() for ref in m.layers}
    deleted = 0
    for gen in gens:  # oldest first: the kept generations stay one contiguous run
        if gen >= first:
            break
        await container.io.delete(manifest_name(gen))
        deleted += 1
    used = {ref.name for g in gens if g >= first for ref in manifests[g].layers}
    cutoff_ms = (now - grace) * 1000
    removed = freed = 0
    async for key in container.io.list_prefix("layers/"):
        made = layer_created_ms(key)
        if key in used or made is None or made > cutoff_ms:
            continue
        await container.io.delete(key)
        removed += 1
        freed += sizes.get(key, 0)
    await container.write_hint(max(gens[-1], await container.newest(gens[-1])))
    return GCReport((first, gens[-1]), deleted, removed, freed)


async def build_pack(source: Store, *, message: str, concurrency: int = 32) -> bytes:
    """Every key and value of ``source`` as one pack object (held in memory)."""
    keys = sorted([k async for k in source.list_prefix("")])
    builder = LayerBuilder(compression="auto")
    sem = asyncio.Semaphore(concurrency)

    async def fetch(key: str) -> tuple[str, bytes | None]:
        async with sem:
            return key, await source.get(key)

    for start in range(0, len(keys), 4096):
        for key, value in await asyncio.gather(*(fetch(k) for k in keys[start : start + 4096])):
            if value is not None:  # gone since listed
                builder.add(key, value)
    manifest = Manifest(
        generation=1,
        layers=(LayerRef(PACK_SELF, 0, len(builder)),),
        timestamp=time.time(),
        message=message,
        kind="pack",
        added=(PACK_SELF,),
    )
    return await asyncio.to_thread(builder.finish, manifest=manifest.to_json())
