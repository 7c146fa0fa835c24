"""The objects of one layered container in its base store, and how they are read and
published: generations (found by listing, then by probing forward), manifests and layer
indexes (immutable, so cached), values (one range request each) and the commit
protocol (upload layers, then create the next manifest with put-if-absent, re-basing on
the winner when another writer took the generation first)."""

from __future__ import annotations

import asyncio
import logging
import math
import random
import threading
import time
import weakref
from collections import OrderedDict
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from typing import Any, Protocol

from asyncarr._types import ByteRange, RangeRequest, range_to_slice
from asyncarr.abc import Store
from asyncarr.errors import (
    ConflictError,
    CorruptContainerError,
    SnapshotNotFoundError,
    StoreError,
    TruncatedReadError,
    UnsupportedOperationError,
    ValueTooLargeError,
)
from asyncarr.stores._layered._format import (
    CODEC_RAW,
    FIRST_TAIL_READ,
    MANIFEST_LIMIT,
    TRAILER_SIZE,
    LayerIndex,
    Trailer,
    checksum,
    decode_value,
    parse_footer,
    parse_layer_object,
)
from asyncarr.stores._layered._manifest import (
    MANIFEST_PREFIX,
    PACK_SELF,
    LayerRef,
    Manifest,
    manifest_generation,
    manifest_name,
    new_layer_name,
)
from asyncarr.stores._layered._snapshot import Found, Snapshot

__all__ = [
    "LATEST_HINT",
    "BaseIO",
    "Container",
    "LayerMissingError",
    "LoopLocks",
    "MakeManifest",
    "use_runtime",
]

logger = logging.getLogger("asyncarr.layered")

LATEST_HINT = "latest"
"""A small object naming a recent generation (ASCII digits), rewritten after commits:
opening reads it and probes forward instead of listing every manifest (and it is what
lets a container be read over HTTP, which cannot list)."""
HINT_EVERY = 8
"""Commits rewrite the hint every this many generations (and compactions always): a
reader probes forward from it, a few more requests at most, and a commit costs one
request less."""
MAX_PUBLISH_ATTEMPTS = 1000
"""Lost races before a commit gives up (each loser re-bases on the winner at once)."""
_MANIFEST_CACHE = 512
_STACK_AT_MOST = 64
"""A snapshot this many generations behind is brought up to date by stacking each
commit's layers on it; further behind, the target is built from its layer indexes."""


class BaseIO(Protocol):
    """What the container needs of its base store (a :class:`Store`, or the runtime's
    managed view of one: limiter slot, timeouts, retries and statistics per request)."""

    async def get(
        self, key: str, byte_range: RangeRequest | None = None, *, max_size: int | None = None
    ) -> bytes | None: ...
    async def getsize(self, key: str) -> int: ...
    async def exists(self, key: str) -> bool: ...
    async def set(self, key: str, value: bytes) -> None: ...
    async def set_if_not_exists(self, key: str, value: bytes) -> bool: ...
    async def delete(self, key: str) -> None: ...
    def list_prefix(self, prefix: str) -> AsyncIterator[str]: ...


_runtime_io: Callable[[Store], Any] | None = None
_runtime_cache: tuple[Callable[[], bool], Callable[[list[str], set[str] | None], None]] | None = (
    None
)


def use_runtime(
    *,
    io: Callable[[Store], Any],
    caching: Callable[[], bool],
    forget: Callable[[list[str], set[str] | None], None],
) -> None:
    """How layered containers reach the runtime (layer 3, which a store cannot import;
    the runtime calls this when imported):

    - ``io(store)``: the view every base-store request goes through (the runtime's
      :func:`~asyncarr.runtime.managed`: limits, retries, timeouts, statistics);
    - ``caching()``: whether decoded chunks are cached;
    - ``forget(roots, keys)``: drop cached chunks whose place is a root plus one of the
      keys (``None``: every key): a handle's view moved to a generation that changed them.
    """
    global _runtime_io, _runtime_cache
    _runtime_io = io
    _runtime_cache = (caching, forget)


def _pause(attempt: int) -> Awaitable[None]:
    return asyncio.sleep(random.uniform(0, min(0.05, 0.001 * 2 ** min(attempt, 6))))


MakeManifest = Callable[[int, Manifest | None, list[Manifest]], Awaitable[Manifest | None]]
"""Given the newest generation, its manifest and the manifests since the writer's base
generation, the manifest to publish as the next one (``None``: nothing to publish)."""


class Container:
    """One container: the root of ``base`` holds its manifests and ``layers/``; or, with
    ``pack``, the single object ``pack`` of ``base`` holds everything (read-only)."""

    def __init__(self, base: Store, *, pack: str | None = None) -> None:
        self.base = base
        self.pack = pack
        self._manifests: OrderedDict[int, Manifest] = OrderedDict()
        self._indexes: weakref.WeakValueDictionary[str, LayerIndex] = weakref.WeakValueDictionary()
        self._pack_state: tuple[Manifest, LayerIndex] | None = None
        self.latest: Snapshot | None = None
        self.checked_at = -math.inf
        self.followers: weakref.WeakSet[Any] = weakref.WeakSet()
        """The handles that read the newest generation (``cache_root``: where the chunk
        cache keeps what they read)."""
        self._refresh_locks = LoopLocks()
        self._state_lock = threading.Lock()

    def __repr__(self) -> str:
        where = f"{self.base}" + (f", pack {self.pack!r}" if self.pack else "")
        return f"layered container at {where}"

    @property
    def io(self) -> BaseIO:
        io: BaseIO = self.base if _runtime_io is None else _runtime_io(self.base)
        return io

    def object_key(self, name: str) -> str:
        """The base-store key of the layer ``name``."""
        if name == PACK_SELF and self.pack is not None:
            return self.pack
        return name

    def refresh_lock(self) -> asyncio.Lock:
        return self._refresh_locks.get()

    # -- generations -----------------------------------------------------------------------
    async def generations(self) -> list[int]:
        """Every generation whose manifest exists, oldest first: by listing, or, where
        the base store cannot list (HTTP), the contiguous run that ends at the newest."""
        if self.pack is not None:
            return [1]
        if not self.base.supports_listing:
            return await self._probed_generations()
        found: list[int] = []
        try:
            async for key in self.io.list_prefix(MANIFEST_PREFIX):
                gen = manifest_generation(key)
                if gen is not None:
                    found.append(gen)
        except UnsupportedOperationError:
            return await self._probed_generations()
        return sorted(found)

    async def _probed_generations(self) -> list[int]:
        newest = await self.newest(await self._hinted() or 0)
        if not newest:
            return []
        oldest = await self._edge(newest, 0)  # retained: missing below, present from
        return list(range(oldest, newest + 1))

    async def _edge(self, have: int, missing: int) -> int:
        """Bisect between a generation whose manifest exists and one (above or below)
        whose manifest does not: the existing generation next to the edge."""
        while abs(missing - have) > 1:
            mid = (have + missing) // 2
            if await self.io.exists(manifest_name(mid)):
                have = mid
            else:
                missing = mid
        return have

    async def _hinted(self) -> int | None:
        """The generation the ``latest`` hint names, if its manifest still exists."""
        try:
            data = await self.io.get(LATEST_HINT, max_size=64)
        except ValueTooLargeError:
            return None
        if data is None or not data.strip().isdigit() or len(data) > 20:
            return None
        gen = int(data)
        if gen and await self.io.exists(manifest_name(gen)):
            return gen
        return None

    async def write_hint(self, generation: int) -> None:
        """Record ``generation`` in the ``latest`` hint (best effort: readers probe
        forward from it, and list when it is missing or stale)."""
        try:
            await self.io.set(LATEST_HINT, str(generation).encode())
        except StoreError as exc:
            logger.warning("could not update the latest-generation hint: %s", exc)

    async def newest(self, known: int | None) -> int:
        """The newest generation (0 when there is none): from the ``latest`` hint (or,
        without one, by listing) the first time, then probed forward from ``known``
        (one request when nothing changed; galloping, then bisecting, when many
        generations were added)."""
        if self.pack is not None:
            return 1
        if known is None:
            known = await self._hinted()
        if known is None:
            if self.base.supports_listing:
                try:
                    gens = await self.generations()
                    return gens[-1] if gens else 0
                except UnsupportedOperationError:
                    pass
            known = 0
        step, have = 1, known
        while await self.io.exists(manifest_name(have + step)):
            have += step
            step *= 2
        return await self._edge(have, have + step)

    async def manifest(self, generation: int, *, check: bool = False) -> Manifest:
        """The manifest of ``generation`` (cached: manifests never change; ``check``:
        make sure a cached one was not deleted since)."""
        if self.pack is not None:
            return (await self._pack())[0]
        with self._state_lock:
            cached = self._manifests.get(generation)
        if cached is not None:
            if check and not await self.io.exists(manifest_name(generation)):
                raise await self._no_generation(generation)
            return cached
        key = manifest_name(generation)
        try:
            data = await self.io.get(key, max_size=MANIFEST_LIMIT)
        except ValueTooLargeError as exc:
            raise CorruptContainerError(
                f"corrupt manifest: larger than {MANIFEST_LIMIT} bytes", store=self, key=key
            ) from exc
        if data is None:
            raise await self._no_generation(generation)
        manifest = Manifest.from_json(data, key=key, generation=generation)
        self.remember(manifest)
        return manifest

    def remember(self, manifest: Manifest) -> None:
        with self._state_lock:
            self._manifests[manifest.generation] = manifest
            while len(self._manifests) > _MANIFEST_CACHE:
                self._manifests.popitem(last=False)

    async def _no_generation(self, generation: int) -> SnapshotNotFoundError:
        gens = await self.generations()
        if not gens:
            return SnapshotNotFoundError(
                f"generation {generation} does not exist: the container is empty", store=self
            )
        if generation < gens[0]:
            return SnapshotNotFoundError(
                f"generation {generation} was removed by garbage collection; the container "
                f"keeps generations {gens[0]}..{gens[-1]}",
                store=self,
            )
        return SnapshotNotFoundError(
            f"generation {generation} does not exist; the container keeps generations "
            f"{gens[0]}..{gens[-1]}",
            store=self,
        )

    async def at_time(self, when: float) -> int:
        """The newest generation committed at or before ``when`` (seconds since the
        epoch): a bisection over the retained generations, whose timestamps never
        decrease."""
        gens = await self.generations()
        if not gens or (await self.manifest(gens[0])).timestamp > when:
            oldest = f"; the oldest kept is generation {gens[0]}" if gens else ""
            raise SnapshotNotFoundError(
                f"no generation of the container is as old as {when!r}{oldest}", store=self
            )
        lo, hi = 0, len(gens) - 1
        while lo < hi:
            mid = (lo + hi + 1) // 2
            if (await self.manifest(gens[mid])).timestamp <= when:
                lo = mid
            else:
                hi = mid - 1
        return gens[lo]

    # -- layers ------------------------------------------------------------------------------
    async def index(self, ref: LayerRef) -> LayerIndex:
        """The checked index of a layer (cached while any snapshot uses it)."""
        if ref.name == PACK_SELF and self.pack is not None:
            return (await self._pack())[1]
        found = self._indexes.get(ref.name)
        if found is not None:
            return found
        index, _manifest = await self._read_footer(ref.name, ref.size)
        if len(index) != ref.entries:
            raise CorruptContainerError(
                f"corrupt layer: it has {len(index)} entries, its manifest says {ref.entries}",
                store=self,
                key=ref.name,
            )
        self._indexes[ref.name] = index
        return index

    async def _read_footer(self, name: str, size: int) -> tuple[LayerIndex, bytes | None]:
        """The tail of a layer: one range request, a second when its footer is larger."""
        key = self.object_key(name)
        if size < TRAILER_SIZE:
            raise CorruptContainerError(
                f"corrupt layer: {size} bytes cannot hold a layer", store=self, key=key
            )
        first = min(size, FIRST_TAIL_READ)
        start = size - first
        tail = await self.read_exact(key, start, size, size)
        trailer = Trailer.unpack(tail[-TRAILER_SIZE:], name=key, size=size)
        if trailer.footer_offset < start:
            more = await self.read_exact(key, trailer.footer_offset, start, size)
            tail, start = more + tail, trailer.footer_offset
        return parse_footer(key, size, trailer, tail, start)

    async def read_exact(self, key: str, start: int, end: int, size: int) -> bytes:
        """Bytes ``[start, end)`` of a layer of ``size`` bytes, or a clear error: missing,
        truncated at rest (corrupt) or cut off in transit (retried)."""
        data = await self.io.get(key, ByteRange(start, end))
        if data is None:
            raise LayerMissingError(
                "a layer of the container is missing (removed by garbage collection while "
                "this snapshot was open, or the container is damaged)",
                store=self,
                key=key,
            )
        if len(data) == end - start:
            return data
        actual = await self.io.getsize(key)
        if actual != size:
            raise CorruptContainerError(
                f"corrupt layer: it is {actual} bytes, its manifest says {size} (truncated?)",
                store=self,
                key=key,
            )
        raise TruncatedReadError(
            f"read {len(data)} of {end - start} bytes at {start}", store=self, key=key
        )

    async def _pack(self) -> tuple[Manifest, LayerIndex]:
        if self._pack_state is None:
            assert self.pack is not None
            size = await self.io.getsize(self.pack)
            index, raw = await self._read_footer(PACK_SELF, size)
            if raw is None:
                raise CorruptContainerError(
                    "not a pack: the layer has no embedded manifest", store=self, key=self.pack
                )
            manifest = Manifest.from_json(raw, key=self.pack, generation=None)
            if [r.name for r in manifest.layers] != [PACK_SELF]:
                raise CorruptContainerError(
                    "corrupt pack: its manifest must name the pack itself as its one layer",
                    store=self,
                    key=self.pack,
                )
            self._pack_state = (manifest, index)
        return self._pack_state

    async def read(self, found: Found, byte_range: RangeRequest | None) -> bytes:
        """A stored value (or a range of it): one range request in the layer.

        A whole value is checked against its CRC32C; a range of a raw value is fetched
        alone (not checkable, as a plain store's range reads are not)."""
        layer, row = found
        offset = int(layer.offsets[row])
        stored = int(layer.stored_lengths[row])
        codec = int(layer.codecs[row])
        key = self.object_key(layer.name)
        if codec == CODEC_RAW and byte_range is not None:
            sl = range_to_slice(byte_range, stored)
            if sl.stop <= sl.start:
                return b""
            return await self.read_exact(key, offset + sl.start, offset + sl.stop, layer.size)
        data = await self.read_exact(key, offset, offset + stored, layer.size) if stored else b""
        if checksum(data) != int(layer.crcs[row]):
            raise CorruptContainerError(
                f"corrupt layer: the value of {layer.keys[row]!r} does not match its checksum",
                store=self,
                key=key,
            )
        value = decode_value(
            data, codec, int(layer.raw_lengths[row]), name=key, key=layer.keys[row]
        )
        return value if byte_range is None else value[range_to_slice(byte_range, len(value))]

    async def read_ranges(self, found: Found, ranges: Sequence[RangeRequest]) -> list[bytes]:
        """Several ranges of one stored value."""
        layer, row = found
        if int(layer.codecs[row]) != CODEC_RAW or len(ranges) == 1:
            if len(ranges) == 1:
                return [await self.read(found, ranges[0])]
            value = await self.read(found, None)
            return [value[range_to_slice(r, len(value))] for r in ranges]
        return list(await asyncio.gather(*(self.read(found, r) for r in ranges)))

    async def upload(self, data: bytes) -> tuple[LayerRef, LayerIndex]:
        """Store a new layer object (from :meth:`LayerBuilder.finish`), unreferenced until
        a manifest names it."""
        name = new_layer_name()
        index, _ = parse_layer_object(name, data)
        await self.io.set(name, data)
        self._indexes[name] = index
        return LayerRef(name, len(data), len(index)), index

    async def changed_keys(self, manifest: Manifest) -> set[str]:
        """The keys a generation changed: those of the layers it added (none for a
        compaction, which changes no value)."""
        if manifest.kind != "commit":
            return set()
        refs = [ref for ref in manifest.layers if ref.name in manifest.added]
        indexes = await asyncio.gather(*(self.index(ref) for ref in refs))
        return {key for index in indexes for key in index.keys}

    # -- snapshots ---------------------------------------------------------------------------
    async def snapshot(self, generation: int, *, near: Snapshot | None = None) -> Snapshot:
        """The merged view of ``generation`` (from ``near``, a snapshot of an older
        generation, where only commits happened in between)."""
        if generation == 0 and self.pack is None:
            return Snapshot.empty()
        if near is not None and 0 <= generation - near.generation <= _STACK_AT_MOST:
            try:
                return await self._stack(near, generation)
            except (SnapshotNotFoundError, _Rebuild):
                pass
        manifest = await self.manifest(generation)
        layers = await asyncio.gather(*(self.index(ref) for ref in manifest.layers))
        return Snapshot.build(manifest, tuple(layers))

    async def _stack(self, snap: Snapshot, generation: int) -> Snapshot:
        for gen in range(snap.generation + 1, generation + 1):
            manifest = await self.manifest(gen)
            fresh = len(manifest.layers) - len(snap.layers)
            below = [ref.name for ref in manifest.layers[fresh:]] if fresh >= 0 else None
            if below != [layer.name for layer in snap.layers]:
                raise _Rebuild
            new = await asyncio.gather(*(self.index(r) for r in manifest.layers[:fresh]))
            snap = snap.stacked(manifest, tuple(new))
        return snap

    async def adopt(self, snap: Snapshot, checked_at: float | None = None) -> None:
        """Make ``snap`` the latest known state (if it is newer). Decoded chunks the
        handles following the newest generation cached for keys changed since are
        forgotten first (only where a chunk cache is on)."""
        stale = await self._changed_since(self.latest, snap)
        with self._state_lock:
            if self.latest is None or snap.generation >= self.latest.generation:
                self.latest = snap
                if stale != set() and _runtime_cache is not None:
                    roots = [view.cache_root for view in list(self.followers)]
                    if roots:
                        _runtime_cache[1](roots, stale)
            if checked_at is not None:
                self.checked_at = max(self.checked_at, checked_at)

    async def _changed_since(self, old: Snapshot | None, new: Snapshot) -> set[str] | None:
        """The keys commits changed from ``old`` to ``new`` (``None``: unknown, all);
        an empty set when nothing is cached anyway."""
        if (
            old is None
            or new.generation <= old.generation
            or _runtime_cache is None
            or not _runtime_cache[0]()
            or not self.followers
        ):
            return set()
        keys: set[str] = set()
        try:
            for gen in range(old.generation + 1, new.generation + 1):
                keys |= await self.changed_keys(await self.manifest(gen))
        except SnapshotNotFoundError:
            return None
        return keys

    async def fresh(self, max_age: float) -> Snapshot:
        """The newest generation's snapshot, checked for newer ones at most ``max_age``
        seconds ago (concurrent callers share one check)."""
        latest = self.latest
        asked = time.monotonic()
        if latest is not None and asked - self.checked_at < max_age:
            return latest
        async with self.refresh_lock():
            latest = self.latest
            if latest is not None and (
                self.checked_at >= asked or time.monotonic() - self.checked_at < max_age
            ):
                return latest
            started = time.monotonic()
            newest = await self.newest(latest.generation if latest is not None else None)
            if latest is None or newest != latest.generation:
                latest = await self.snapshot(newest, near=latest)
            await self.adopt(latest, started)
            return latest

    # -- publishing ---------------------------------------------------------------------------
    async def publish(self, base: int, make: MakeManifest) -> Manifest | None:
        """Create the next generation after ``base``: ``make`` builds its manifest from the
        newest generation (and those since ``base``); it is created with put-if-absent.
        When another writer took that generation first, ``make`` runs again on top of it.
        """
        if self.pack is not None:
            raise StoreError("a pack is read-only", store=self, key=self.pack)
        known = base
        for attempt in range(MAX_PUBLISH_ATTEMPTS):
            newest = await self.newest(known)
            between = list(
                await asyncio.gather(*(self.manifest(g) for g in range(base + 1, newest + 1)))
            )
            top = between[-1] if between else (await self.manifest(newest) if newest else None)
            manifest = await make(newest, top, between)
            if manifest is None:
                return None
            key = manifest_name(manifest.generation)
            if await self.io.set_if_not_exists(key, manifest.to_json()):
                self.remember(manifest)
                if manifest.generation % HINT_EVERY == 0 or manifest.kind != "commit":
                    await self.write_hint(manifest.generation)
                return manifest
            if (await self.manifest(manifest.generation)).commit_id == manifest.commit_id:
                return manifest  # our own attempt, whose reply was lost
            known = newest + 1
            await _pause(attempt)
        raise ConflictError(
            f"gave up after {MAX_PUBLISH_ATTEMPTS} lost races for the next generation",
            store=self,
        )


class LoopLocks:
    """One :class:`asyncio.Lock` per event loop (a handle may be used from several: the
    sync API's and the caller's), for coordinating the tasks of each."""

    def __init__(self) -> None:
        self._guard = threading.Lock()
        self._locks: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, asyncio.Lock] = (
            weakref.WeakKeyDictionary()
        )

    def get(self) -> asyncio.Lock:
        """The running loop's lock."""
        loop = asyncio.get_running_loop()
        with self._guard:
            lock = self._locks.get(loop)
            if lock is None:
                lock = self._locks[loop] = asyncio.Lock()
            return lock


class LayerMissingError(CorruptContainerError):
    """A layer a manifest names is not there."""


class _Rebuild(Exception):
    """A generation between two snapshots did more than stack layers (a compaction)."""
