"""A transaction: writes pending on top of one snapshot, committed as one generation.

Values are kept in memory until they pass ``spill_bytes``; then they are sealed into a
layer and uploaded (not yet referenced by any manifest, so invisible to readers), and
the transaction goes on in memory. A commit seals what is left, uploads it and
publishes the next generation naming all of them (or none, on conflict). Reads in the
transaction see its own writes first, then its spilled layers, then its snapshot.

Conflicts: when other commits landed since the snapshot, the transaction re-bases on
the newest generation if none of them wrote a key it writes; otherwise the commit fails
with :class:`ConflictError` naming those keys (first committer wins: no update is lost).
"""

from __future__ import annotations

import asyncio
import functools
import itertools
import os
import time
from typing import TypeAlias

from asyncarr.errors import ConflictError, StoreError
from asyncarr.stores._layered._container import Container
from asyncarr.stores._layered._format import LayerBuilder, LayerIndex
from asyncarr.stores._layered._manifest import LayerRef, Manifest, layer_created_ms
from asyncarr.stores._layered._snapshot import Found, Snapshot

__all__ = ["Transaction", "Value", "version_of"]

Value: TypeAlias = bytes | Found
"""A value a transaction sees: pending bytes, or a stored one."""

LONG_LIVED_LAYER_MS = 5 * 60 * 1000
"""Spilled layers older than this are checked to still exist before a commit names them
(garbage collection with a grace period shorter than the transaction may have removed
them: the commit then fails instead of publishing a generation with a missing layer)."""


class Transaction:
    """Pending writes over ``base``, the snapshot they were made on."""

    def __init__(
        self,
        container: Container,
        base: Snapshot,
        *,
        spill_bytes: int,
        compression: str,
    ) -> None:
        self.container = container
        self.base = base
        self.id = os.urandom(8).hex()
        self._spill_bytes = spill_bytes
        self._compression = compression
        self._pending: dict[str, bytes | None] = {}
        self._pending_bytes = 0
        self._sealing: list[dict[str, bytes | None]] = []
        self._spilled: list[tuple[LayerRef, LayerIndex]] = []  # oldest first
        self._versions: dict[str, str] = {}
        self._seq = itertools.count(1)
        self.written: set[str] = set()
        self.state = "open"

    def __repr__(self) -> str:
        return (
            f"<Transaction {self.id} on generation {self.base.generation}: "
            f"{len(self.written)} keys, {self.state}>"
        )

    def check_open(self) -> None:
        if self.state != "open":
            raise StoreError(f"the transaction is {self.state}", store=self.container)

    # -- reading -----------------------------------------------------------------------------
    def lookup(self, key: str) -> Value | None:
        """What ``key`` holds in this transaction (``None``: nothing)."""
        if key in self.written:
            if key in self._pending:
                return self._pending[key]
            for sealing in reversed(self._sealing):
                if key in sealing:
                    return sealing[key]
            for _ref, index in reversed(self._spilled):
                row = index.position(key)
                if row is not None:
                    return None if index.is_tombstone(row) else (index, row)
        return self.base.lookup(key)

    def version(self, key: str) -> str | None:
        """The version token of ``key``'s value here (``None`` if it has none)."""
        value = self.lookup(key)
        if value is None:
            return None
        if isinstance(value, bytes):
            return self._versions[key]
        return version_of(value)

    def keys_with_prefix(self, prefix: str) -> list[str]:
        """The live keys starting with ``prefix``, sorted."""
        mine = [k for k in self.written if k.startswith(prefix)]
        if not mine:
            return self.base.keys_with_prefix(prefix)
        keys = set(self.base.keys_with_prefix(prefix)) | set(mine)
        return sorted(k for k in keys if self.lookup(k) is not None)

    # -- writing -----------------------------------------------------------------------------
    async def put(self, key: str, value: bytes | None) -> None:
        """Write (``None``: delete) ``key``."""
        self.check_open()
        if value is None and self.lookup(key) is None:
            return  # deleting what is not there changes nothing
        self._pending[key] = value
        self._versions[key] = f"pending:{self.id}.{next(self._seq)}"
        self.written.add(key)
        self._pending_bytes += len(key) + (len(value) if value is not None else 0)
        if self._pending_bytes >= self._spill_bytes:
            await self._spill()

    async def _spill(self) -> None:
        """Seal the pending writes into a layer and upload it, unreferenced for now (the
        writes stay visible here while that happens)."""
        items, self._pending, self._pending_bytes = self._pending, {}, 0
        self._sealing.append(items)
        try:
            ref_index = await self._upload(items)
        except BaseException:
            self._sealing.remove(items)
            for key, value in items.items():  # back in, unless written again since
                self._pending.setdefault(key, value)
            raise
        if ref_index is not None:
            self._spilled.append(ref_index)
        self._sealing.remove(items)

    async def _upload(self, items: dict[str, bytes | None]) -> tuple[LayerRef, LayerIndex] | None:
        size = sum(len(v) for v in items.values() if v is not None)
        build = functools.partial(self._build, items)
        # building compresses small values: off the event loop unless there is little
        data = await asyncio.to_thread(build) if size > 1 << 20 else build()
        return None if data is None else await self.container.upload(data)

    def _build(self, items: dict[str, bytes | None]) -> bytes | None:
        builder = LayerBuilder(compression=self._compression)
        for key, value in items.items():
            if value is None and not self._shadows(key):
                continue  # nothing below it to delete
            builder.add(key, value)
        return builder.finish() if len(builder) else None

    def _shadows(self, key: str) -> bool:
        """Whether a tombstone for ``key`` hides anything (in the snapshot or a spill)."""
        if self.base.lookup(key) is not None:
            return True
        return any(index.position(key) is not None for _ref, index in self._spilled)

    # -- committing ----------------------------------------------------------------------
    async def seal(self) -> list[LayerRef]:
        """Upload what is pending; the transaction's layers, newest first."""
        self.check_open()
        self.state = "committing"
        if self._pending:
            await self._spill()
        await self._check_spills_exist()
        return [ref for ref, _index in reversed(self._spilled)]

    async def _check_spills_exist(self) -> None:
        now = time.time() * 1000
        for ref, _index in self._spilled:
            made = layer_created_ms(ref.name)
            old = made is not None and now - made > LONG_LIVED_LAYER_MS
            if old and not await self.container.io.exists(ref.name):
                raise StoreError(
                    "a layer this transaction wrote earlier is gone (garbage collection "
                    "with a grace period shorter than the transaction?); nothing was "
                    "committed",
                    store=self.container,
                    key=ref.name,
                )

    def conflicts(self, changed: set[str]) -> list[str]:
        return sorted(changed & self.written)

    async def commit(self, *, message: str, kind: str = "commit") -> Manifest | None:
        """Publish the transaction as the next generation (``None`` if it wrote nothing)."""
        layers = await self.seal()
        if not layers:
            self.state = "committed"
            return None
        container = self.container
        added = tuple(ref.name for ref in layers)

        async def make(
            newest: int, top: Manifest | None, between: list[Manifest]
        ) -> Manifest | None:
            changed: set[str] = set()
            for manifest in between:
                changed |= await container.changed_keys(manifest)
            clash = self.conflicts(changed)
            if clash:
                raise ConflictError(
                    f"commit {message!r} conflicts with a commit made since generation "
                    f"{self.base.generation} (now {newest}) on these keys",
                    store=container,
                    keys=tuple(clash),
                )
            below = top.layers if top is not None else ()
            return Manifest(
                generation=newest + 1,
                layers=(*layers, *below),
                timestamp=max(time.time(), top.timestamp if top else 0.0),
                message=message,
                kind="commit",
                added=added,
            )

        try:
            manifest = await container.publish(self.base.generation, make)
        except ConflictError:
            self.state = "conflicted"
            await self.discard()
            raise
        self.state = "committed"
        return manifest

    async def discard(self) -> None:
        """Drop the pending writes and remove the layers spilled so far (best effort:
        garbage collection removes what is left)."""
        if self.state in ("open", "committing"):
            self.state = "discarded"
        self._pending.clear()
        spilled, self._spilled = self._spilled, []
        for ref, _index in spilled:
            try:
                await self.container.io.delete(ref.name)
            except StoreError:
                pass


def version_of(found: Found) -> str:
    """The version token of a stored value: its layer and row (unique per write)."""
    index, row = found
    return f"{index.name}#{row}"
