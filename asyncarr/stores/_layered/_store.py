"""``LayeredStore``: a versioned container of keys and values on any base store.

Any Zarr hierarchy lives in it unchanged: the store API reads the container's newest
generation (or a pinned snapshot) and every change becomes a new generation. How much
goes into one generation:

- inside :meth:`LayeredStore.operation` (the array API opens one around each of its
  top-level calls: a write, a create, a resize, setting attributes, ...) every change
  the call makes, committed when it ends, discarded if it raises;
- in a transaction view (:meth:`LayeredStore.begin`, or ``asyncarr.transaction``)
  everything until :meth:`commit`;
- otherwise each store call is its own change; concurrent calls on one handle are
  committed together (group commit), each call returning once its change is published.
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
import math
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from types import MappingProxyType, TracebackType
from typing import Any, Literal, TypeVar

from asyncarr._tasks import await_unabandoned
from asyncarr._types import RangeRequest, Versioned, range_to_slice
from asyncarr.abc import Store
from asyncarr.config import StoreLimits
from asyncarr.errors import (
    ConfigError,
    ConflictError,
    KeyNotFoundError,
    ReadOnlyStoreError,
    StoreError,
)
from asyncarr.stores._bodies import too_large
from asyncarr.stores._layered._container import Container, LayerMissingError
from asyncarr.stores._layered._groupcommit import GroupCommit, Op, apply_op, batch_message
from asyncarr.stores._layered._manifest import Manifest
from asyncarr.stores._layered._snapshot import Snapshot
from asyncarr.stores._layered._txn import Transaction, Value, version_of

__all__ = ["LayeredStore"]

logger = logging.getLogger("asyncarr.layered")

T = TypeVar("T")
Compression = Literal["auto", "zstd", "none"]
_COMPRESSIONS = ("auto", "zstd", "none")


@dataclass(eq=False)
class _Scope:
    """An open operation of one store handle (in a context variable)."""

    view: Transaction | Snapshot
    name: str

    @property
    def txn(self) -> Transaction | None:
        return self.view if isinstance(self.view, Transaction) else None


_NO_SCOPES: Mapping[int, _Scope] = MappingProxyType({})
_SCOPES: contextvars.ContextVar[Mapping[int, _Scope]] = contextvars.ContextVar(
    "asyncarr_layered_scopes", default=_NO_SCOPES
)


@dataclass(eq=False)
class _Shared:
    """What every view of one container shares."""

    container: Container
    owns_base: bool
    refresh_interval: float
    auto_compact_layers: int | None
    spill_bytes: int
    compression: Compression
    group: GroupCommit = field(default_factory=GroupCommit)
    closed: bool = False


class _Operation:
    """:meth:`LayeredStore.operation`'s context manager."""

    __slots__ = ("_name", "_scope", "_store", "_token", "_write")

    def __init__(self, store: LayeredStore, name: str, write: bool) -> None:
        self._store = store
        self._name = name
        self._write = write
        self._token: contextvars.Token[Mapping[int, _Scope]] | None = None
        self._scope: _Scope | None = None

    async def __aenter__(self) -> None:
        store = self._store
        if store._txn is not None or store._at is not None:
            return  # a transaction view or a snapshot: already one unit
        scopes = _SCOPES.get()
        current = scopes.get(id(store))
        write = self._write and not store.read_only
        if current is not None and (current.txn is not None or not write):
            return  # part of the enclosing operation
        shared = store._shared
        if write:
            base = await shared.container.fresh(0.0)
            view: Transaction | Snapshot = store._new_transaction(base)
        else:
            view = await shared.container.fresh(shared.refresh_interval)
        self._scope = _Scope(view, self._name)
        self._token = _SCOPES.set({**scopes, id(store): self._scope})

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._token is None:
            return
        _SCOPES.reset(self._token)
        self._token = None
        assert self._scope is not None
        txn = self._scope.txn
        if txn is None:
            return
        if exc_type is not None:
            if exc_type is not asyncio.CancelledError:
                await txn.discard()
            return
        task = asyncio.ensure_future(self._store._commit(txn, self._name))
        await await_unabandoned(task, lambda: False)


class LayeredStore(Store):
    """A layered, versioned container at the root of ``base`` (a :class:`Store` or a
    URL), itself a store holding any Zarr hierarchy.

    - ``at``: open a read-only snapshot: a generation number, or a time (a timezone-aware
      :class:`~datetime.datetime`, an ISO 8601 string or seconds since the epoch) for the
      newest generation committed by then.
    - ``refresh_interval``: how old (seconds) the handle's view of the newest generation
      may be before a read outside an operation checks for newer ones (one request);
      writing operations always start from the newest.
    - ``auto_compact_layers``: after a commit leaves more layers than this, merge the
      newest ones (see :meth:`compact`); ``None``: never automatically.
    - ``spill_bytes``: pending writes beyond this are sealed into a layer and uploaded
      before the commit (still invisible until it), so memory stays bounded.
    - ``compression``: how values are stored: ``"auto"`` (zstd for values up to 1 MiB
      when it saves an eighth), ``"zstd"`` or ``"none"``. Readers need no setting.
    - ``pack``: the name of a pack object in ``base`` to open (read-only).
    - ``storage_options``: for ``base`` given as a URL.

    See ``docs/layered.md`` for the format, the commit protocol and its guarantees.
    """

    def __init__(
        self,
        base: Store | str,
        *,
        at: int | float | str | datetime | None = None,
        read_only: bool = False,
        refresh_interval: float = 1.0,
        auto_compact_layers: int | None = None,
        spill_bytes: int = 64 << 20,
        compression: Compression = "auto",
        pack: str | None = None,
        limits: StoreLimits | Mapping[str, Any] | None = None,
        storage_options: Mapping[str, Any] | None = None,
        _shared: _Shared | None = None,
        _txn: Transaction | None = None,
        _message: str = "",
    ) -> None:
        if _shared is None:
            _shared = _new_shared(
                base, at, read_only, refresh_interval, auto_compact_layers, spill_bytes,
                compression, pack, storage_options,
            )  # fmt: skip
        container = _shared.container
        read_only = read_only or at is not None or container.pack is not None
        read_only = read_only or container.base.read_only
        super().__init__(read_only=read_only, limits=limits or _shared.container.base.limits)
        self._shared = _shared
        self._at = _check_at(at)
        self._pinned: Snapshot | None = None
        self._txn = _txn
        self._message = _message
        self._root = _txn is None and at is None
        if self._root:
            container.followers.add(self)

    # -- identity ------------------------------------------------------------------------
    @property
    def base(self) -> Store:
        """The store holding the container's objects."""
        return self._shared.container.base

    @property
    def endpoint_key(self) -> str:
        return f"layered:{self.base.endpoint_key}"

    @property
    def location(self) -> str:
        """This handle's own place: its reads (the newest generation, a snapshot, a
        transaction's own changes) are not another handle's, so each caches decoded
        chunks on its own (and a handle following the newest generation forgets those
        that later commits changed)."""
        return f"layered-handle:{id(self):x}"

    @property
    def cache_root(self) -> str:
        """Where the chunk cache keeps this handle's chunks (its location and ``/``)."""
        return self.location + "/"

    @property
    def supports_conditional_writes(self) -> bool:
        return True

    @property
    def supports_listing(self) -> bool:
        return True

    def __repr__(self) -> str:
        extra = ""
        if self._at is not None:
            extra = f" at {self._at!r}"
        elif self._txn is not None:
            extra = f" transaction {self._txn.id}"
        ro = ", read-only" if self.read_only else ""
        return f"LayeredStore({self.base}{extra}{ro})"

    __str__ = __repr__

    def _view_copy(self, **changes: Any) -> LayeredStore:
        """Another view of the same container (and, pickled, the same settings)."""
        shared = self._shared
        args: dict[str, Any] = {
            "at": self._at,
            "read_only": self.read_only,
            "refresh_interval": shared.refresh_interval,
            "auto_compact_layers": shared.auto_compact_layers,
            "spill_bytes": shared.spill_bytes,
            "compression": shared.compression,
            "pack": shared.container.pack,
            "limits": self.limits,
            "_shared": shared,
            "_txn": self._txn,
            "_message": self._message,
        }
        args.update(changes)
        return LayeredStore(self.base, **args)

    def _reopen_arguments(self) -> tuple[tuple[Any, ...], dict[str, Any]]:
        if self._txn is not None:
            raise ConfigError(
                "a transaction's store cannot be pickled: its pending changes live in this "
                "process (commit first, and pass the container's URL or store)"
            )
        return super()._reopen_arguments()

    def with_read_only(self, read_only: bool = True) -> LayeredStore:
        return self._view_copy(read_only=read_only)

    def snapshot(self, at: int | float | str | datetime) -> LayeredStore:
        """A read-only view of the container as it was at ``at`` (see the class)."""
        return self._view_copy(at=at, read_only=True, _txn=None)

    # -- views ---------------------------------------------------------------------------
    def operation(self, name: str, *, write: bool) -> _Operation:
        """One top-level call of the array API: a reading one sees one generation
        throughout; a writing one commits all its changes as one generation when it
        ends (``name`` is the commit message), none if it raises. Nested operations
        are part of the outer one."""
        return _Operation(self, name, write)

    def _scope(self) -> _Scope | None:
        """The operation of this handle that the running task is in, if any."""
        scopes = _SCOPES.get()
        return scopes.get(id(self)) if scopes else None

    async def _view(self) -> Transaction | Snapshot:
        if self._txn is not None:
            return self._txn
        scope = self._scope()
        if scope is not None:
            return scope.view
        if self._at is not None:
            return await self._pinned_snapshot()
        shared = self._shared
        return await shared.container.fresh(shared.refresh_interval)

    def _writing(self) -> Transaction | None:
        """The transaction this task's writes go to (``None``: commit each call)."""
        if self._txn is not None:
            return self._txn
        scope = self._scope()
        return scope.txn if scope is not None else None

    async def _pinned_snapshot(self) -> Snapshot:
        if self._pinned is None:
            container = self._shared.container
            at = self._at
            if isinstance(at, int):
                generation = at
                if generation < 0:
                    raise ConfigError(f"at must be a generation >= 0, got {generation}")
                if generation:
                    await container.manifest(generation, check=True)  # gone: an error
            else:
                assert isinstance(at, float)
                generation = await container.at_time(at)
            latest = container.latest
            near = latest if latest is not None and latest.generation <= generation else None
            self._pinned = await container.snapshot(generation, near=near)
        return self._pinned

    async def generation(self) -> int:
        """The generation this handle reads now (0: the container is empty)."""
        view = await self._view()
        return view.base.generation if isinstance(view, Transaction) else view.generation

    async def refresh(self) -> int:
        """Look for newer generations now; the newest generation."""
        snap = await self._shared.container.fresh(0.0)
        return snap.generation

    def _new_transaction(self, base: Snapshot) -> Transaction:
        shared = self._shared
        return Transaction(
            shared.container, base, spill_bytes=shared.spill_bytes, compression=shared.compression
        )

    # -- transactions ------------------------------------------------------------------------
    async def begin(self, *, message: str = "") -> LayeredStore:
        """A view of the store in a new transaction on the newest generation: its writes
        are seen by it alone until :meth:`commit` publishes them as one generation."""
        self._check_writable()
        if self._txn is not None:
            raise ConfigError("this store is already a transaction; commit it first")
        base = await self._shared.container.fresh(0.0)
        return self._view_copy(_txn=self._new_transaction(base), _message=message)

    async def commit(self, message: str | None = None) -> Manifest | None:
        """Publish this transaction view's changes as one new generation (``None`` when
        it changed nothing). :class:`ConflictError` when a commit made since it began
        changed some of the same keys; it is then discarded."""
        if self._txn is None:
            raise ConfigError("commit() is for transaction views (see begin())")
        return await self._commit(self._txn, self._message if message is None else message)

    async def discard(self) -> None:
        """Drop this transaction view's changes."""
        if self._txn is None:
            raise ConfigError("discard() is for transaction views (see begin())")
        await self._txn.discard()

    async def _commit(self, txn: Transaction, message: str) -> Manifest | None:
        manifest = await txn.commit(message=message)
        if manifest is not None:
            await self._adopt(manifest, txn.base)
        return manifest

    async def _adopt(self, manifest: Manifest, base: Snapshot) -> None:
        container = self._shared.container
        latest = container.latest
        near = latest if latest is not None and latest.generation >= base.generation else base
        await container.adopt(await container.snapshot(manifest.generation, near=near))
        limit = self._shared.auto_compact_layers
        if limit is not None and len(manifest.layers) > limit:
            from asyncarr.stores._layered._maintenance import auto_compact

            try:
                await auto_compact(container, limit)
            except ConflictError as exc:  # someone else compacted or committed meanwhile
                logger.info("automatic compaction skipped: %s", exc)

    # -- reads ---------------------------------------------------------------------------
    async def _read(self, value: Value, byte_range: RangeRequest | None) -> bytes:
        if isinstance(value, bytes):
            return value if byte_range is None else value[range_to_slice(byte_range, len(value))]
        return await self._shared.container.read(value, byte_range)

    async def _fetch(
        self, key: str, fetch: Callable[[Value, Transaction | Snapshot], Awaitable[T]]
    ) -> T | None:
        """``fetch(value, view)`` for ``key``'s value (``None`` if it has none). A handle
        that follows the newest generation whose view is stale enough that garbage
        collection removed one of its layers looks again (once) at the newest."""
        key = self._key(key)
        view = await self._view()
        value = view.lookup(key)
        if value is None:
            return None
        try:
            return await fetch(value, view)
        except LayerMissingError:
            if self._txn is not None or self._at is not None or self._scope() is not None:
                raise
            fresh = await self._shared.container.fresh(0.0)
            if fresh is view:
                raise
            value = fresh.lookup(key)
            return None if value is None else await fetch(value, fresh)

    def _bound(self, key: str, value: Value, rng: RangeRequest | None, limit: int | None) -> None:
        """Refuse (before reading) a value or range larger than ``limit`` bytes."""
        if limit is None:
            return
        size = len(value) if isinstance(value, bytes) else int(value[0].raw_lengths[value[1]])
        if rng is not None:
            sl = range_to_slice(rng, size)
            size = max(0, sl.stop - sl.start)
        if size > limit:
            raise too_large(self, key, size, limit)

    async def get(
        self, key: str, byte_range: RangeRequest | None = None, *, max_size: int | None = None
    ) -> bytes | None:
        async def fetch(value: Value, view: Transaction | Snapshot) -> bytes:
            self._bound(key, value, byte_range, max_size)
            return await self._read(value, byte_range)

        return await self._fetch(key, fetch)

    async def get_ranges(self, key: str, ranges: Sequence[RangeRequest]) -> list[bytes] | None:
        async def fetch(value: Value, view: Transaction | Snapshot) -> list[bytes]:
            if isinstance(value, bytes):
                return [value[range_to_slice(r, len(value))] for r in ranges]
            return await self._shared.container.read_ranges(value, ranges)

        return await self._fetch(key, fetch)

    async def get_versioned(self, key: str, *, max_size: int | None = None) -> Versioned | None:
        async def fetch(value: Value, view: Transaction | Snapshot) -> Versioned:
            self._bound(key, value, None, max_size)
            data = await self._read(value, None)
            if isinstance(view, Transaction):
                version = view.version(key)
                assert version is not None
                return Versioned(data, version)
            assert not isinstance(value, bytes)
            return Versioned(data, version_of(value))

        return await self._fetch(key, fetch)

    async def exists(self, key: str) -> bool:
        key = self._key(key)
        return (await self._view()).lookup(key) is not None

    async def getsize(self, key: str) -> int:
        key = self._key(key)
        value = (await self._view()).lookup(key)
        if value is None:
            raise KeyNotFoundError("no such key", store=self, key=key)
        if isinstance(value, bytes):
            return len(value)
        layer, row = value
        return int(layer.raw_lengths[row])

    async def list_prefix(self, prefix: str) -> AsyncIterator[str]:
        prefix = self._list_prefix_arg(prefix)
        for key in (await self._view()).keys_with_prefix(prefix):
            yield key

    # -- writes --------------------------------------------------------------------------
    async def set(self, key: str, value: bytes) -> None:
        key = self._key(key)
        self._check_writable(key)
        txn = self._writing()
        if txn is not None:
            await txn.put(key, bytes(value))
            return
        await self._autocommit(Op("set", key, bytes(value)))

    async def delete(self, key: str) -> None:
        key = self._key(key)
        self._check_writable(key)
        txn = self._writing()
        if txn is not None:
            await txn.put(key, None)
            return
        await self._autocommit(Op("delete", key))

    async def delete_prefix(self, prefix: str) -> None:
        prefix = self._list_prefix_arg(prefix)
        self._check_writable(prefix)
        txn = self._writing()
        if txn is not None:
            for key in txn.keys_with_prefix(prefix):
                await txn.put(key, None)
            return
        await self._autocommit(Op("delete_prefix", prefix))

    async def set_if_not_exists(self, key: str, value: bytes) -> bool:
        key = self._key(key)
        self._check_writable(key)
        op = Op("set_if_not_exists", key, bytes(value))
        txn = self._writing()
        if txn is not None:
            return bool(await apply_op(txn, op))
        return bool(await self._autocommit(op))

    async def set_if_version(self, key: str, value: bytes, version: str | None) -> None:
        key = self._key(key)
        self._check_writable(key)
        op = Op("set_if_version", key, bytes(value), version)
        txn = self._writing()
        await (apply_op(txn, op) if txn is not None else self._autocommit(op))

    async def delete_if_version(self, key: str, version: str) -> None:
        key = self._key(key)
        self._check_writable(key)
        op = Op("delete_if_version", key, None, version)
        txn = self._writing()
        await (apply_op(txn, op) if txn is not None else self._autocommit(op))

    # -- group commit --------------------------------------------------------------------
    async def _autocommit(self, op: Op) -> Any:
        """Commit one store call, together with the calls waiting with it."""
        return await self._shared.group.submit(op, self._publish_batch)

    async def _publish_batch(self, batch: list[Op]) -> list[Any]:
        """Evaluate ``batch`` on the newest generation (again after each lost race) and
        publish it as the next one; the outcome of each call."""
        shared = self._shared
        container = shared.container
        base = await container.fresh(shared.refresh_interval)  # publish() probes for newer
        outcomes: list[Any] = []
        uploaded: list[str] = []
        txn_base: list[Snapshot] = [base]

        async def make(
            newest: int, top: Manifest | None, between: list[Manifest]
        ) -> Manifest | None:
            snap = await container.snapshot(newest, near=container.latest)
            txn = self._new_transaction(snap)
            txn_base[0] = snap
            outcomes[:] = [await apply_op(txn, op, capture=True) for op in batch]
            layers = await txn.seal()
            uploaded.extend(ref.name for ref in layers)
            if not layers:
                return None
            return Manifest(
                generation=newest + 1,
                layers=(*layers, *(top.layers if top else ())),
                timestamp=max(time.time(), top.timestamp if top else 0.0),
                message=batch_message(batch),
                added=tuple(ref.name for ref in layers),
            )

        manifest = await container.publish(base.generation, make)
        for name in uploaded:  # layers of attempts that lost their race: never named
            if manifest is None or name not in manifest.added:
                try:
                    await container.io.delete(name)
                except StoreError:
                    pass  # garbage collection removes it
        if manifest is not None:
            await self._adopt(manifest, txn_base[0])
        return outcomes

    # -- maintenance (see _maintenance) ----------------------------------------------------
    async def history(self) -> list[Manifest]:
        """Every retained generation's manifest, newest first."""
        container = self._shared.container
        gens = await container.generations()
        manifests = await asyncio.gather(*(container.manifest(g) for g in reversed(gens)))
        return list(manifests)

    async def compact(
        self, layers: int | None = None, *, message: str = "compact"
    ) -> Manifest | None:
        """Merge all layers (or the oldest ``layers``) into one (more when larger than
        256 MiB), dropping overwritten values and tombstones, as a new generation.
        Snapshots of older generations are unaffected. ``None`` if there was nothing
        to merge."""
        from asyncarr.stores._layered._maintenance import compact

        self._check_writable()
        manifest = await compact(self._shared.container, oldest=layers, message=message)
        if manifest is not None:
            container = self._shared.container
            await container.adopt(await container.snapshot(manifest.generation))
        return manifest

    async def gc(self, *, keep: int = 1, older_than: float = 0.0, grace: float = 3600.0) -> Any:
        """Delete the generations that are neither among the newest ``keep`` nor younger
        than ``older_than`` seconds, then every layer no remaining generation uses that
        is older than ``grace`` seconds (a commit in progress uploads its layers before
        naming them). Returns a :class:`GCReport`."""
        from asyncarr.stores._layered._maintenance import collect_garbage

        self._check_writable()
        return await collect_garbage(
            self._shared.container, keep=keep, older_than=older_than, grace=grace
        )

    # -- lifecycle -----------------------------------------------------------------------
    async def aclose(self) -> None:
        """Close the base store if this handle opened it (views close nothing)."""
        await super().aclose()
        shared = self._shared
        if self._root and shared.owns_base and not shared.closed:
            shared.closed = True
            await shared.container.base.aclose()

    def _check_writable(self, key: str | None = None) -> None:
        if self.read_only:
            what = "a snapshot" if self._at is not None else "store"
            raise ReadOnlyStoreError(f"{what} is read-only", store=self, key=key)


def _check_at(at: Any) -> int | float | None:
    """``at`` as a generation (int) or seconds since the epoch (float)."""
    if at is None or (isinstance(at, int) and not isinstance(at, bool)):
        return at
    if isinstance(at, float) and math.isfinite(at):
        return at
    if isinstance(at, str):
        text = at.strip()
        if text.isdigit():
            return int(text)
        try:
            at = datetime.fromisoformat(text.replace("Z", "+00:00"))
        except ValueError as exc:
            raise ConfigError(f"at must be a generation or an ISO 8601 time, got {text!r}") from exc
    if isinstance(at, datetime):
        if at.tzinfo is None:
            raise ConfigError(f"at={at!r} needs a timezone (e.g. UTC)")
        return at.timestamp()
    raise ConfigError(f"at must be a generation, a datetime or an ISO 8601 time, got {at!r}")


def _new_shared(
    base: Store | str,
    at: Any,
    read_only: bool,
    refresh_interval: float,
    auto_compact_layers: int | None,
    spill_bytes: int,
    compression: str,
    pack: str | None,
    storage_options: Mapping[str, Any] | None,
) -> _Shared:
    if not (isinstance(refresh_interval, int | float) and refresh_interval >= 0):
        raise ConfigError(f"refresh_interval must be >= 0 seconds, got {refresh_interval!r}")
    if auto_compact_layers is not None and (
        not isinstance(auto_compact_layers, int) or auto_compact_layers < 2
    ):
        raise ConfigError(f"auto_compact_layers must be >= 2 or None, got {auto_compact_layers!r}")
    if not isinstance(spill_bytes, int) or spill_bytes < 1:
        raise ConfigError(f"spill_bytes must be a positive integer, got {spill_bytes!r}")
    if compression not in _COMPRESSIONS:
        raise ConfigError(f"compression must be one of {_COMPRESSIONS}, got {compression!r}")
    owns = isinstance(base, str)
    if isinstance(base, str):
        from asyncarr.stores._registry import store_from_url

        if base[:9].lower() == "layered::":  # the container's own URL: its base is inside
            base = base[9:]

        base = store_from_url(
            base,
            read_only=read_only or at is not None or pack is not None,
            storage_options=storage_options,
        )
    elif storage_options:
        raise ConfigError("storage_options only apply when the base is given as a URL")
    if not isinstance(base, Store):
        raise ConfigError(f"expected a Store or a URL as the base, got {type(base).__name__}")
    if isinstance(base, LayeredStore):
        raise ConfigError("a layered container cannot live inside another one")
    return _Shared(
        Container(base, pack=pack),
        owns,
        float(refresh_interval),
        auto_compact_layers,
        spill_bytes,
        compression,  # type: ignore[arg-type]
    )
