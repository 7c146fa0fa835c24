"""MongoDB store on pymongo's native asyncio API, with GridFS for large values.

URL: ``mongodb://[user:pass@]host[:port][,host2...]/database/collection[/prefix]?<uri options>``
(also ``mongodb+srv://``). The database, collection and prefix are taken out of
the path; the rest (hosts, credentials, options) is handed to
:class:`pymongo.AsyncMongoClient` as ``mongodb://hosts/?options``, so the
authentication database defaults to ``admin``; pass ``authSource=`` to change it.

Layout
------
Every key has exactly one *key document* in the collection::

    {_id: "<prefix><key>", parent: "<prefix><dir>/", size: int, version: str,
     data: bytes | None, fs: str | None, cs: int | None}

Values of at most ``inline_threshold`` bytes live inline in ``data`` (one round
trip per read). Larger ones are uploaded to the GridFS bucket
``<collection>_fs``; ``fs`` holds the hex ObjectId of that file and ``cs`` its
chunk size. ``version`` is a random token replaced on every write; conditional
writes filter on ``{_id, version}``.

Writes of large values upload the new GridFS file first, then swap the pointer
in the key document atomically, then delete the old file, so a reader sees the
old value or the new one, never a half-written one. A reader that loses the
race against that delete re-reads the key document and tries again.

Ranged reads of GridFS values fetch only the chunk documents that cover the
range (``{files_id, n: {$gte, $lte}}`` on the bucket's ``chunks`` collection,
served by GridFS's own ``files_id_1_n_1`` index; one query per run of
consecutive chunks, because nx-27017 ignores ``$in`` on ``n``), checking each
chunk's length. pymongo's download stream would fetch the chunks from the seek
position to the end of the first server batch (up to 16 MiB) for any read.

Listing: what nx-27017 (0.8.1, the test server) really does
------------------------------------------------------------
Measured against nx-27017: anchored ``$regex`` and range queries on the
GridFS ``files.filename`` field return nothing, and equality on an
ObjectId-valued field of an ordinary collection does not match. Range queries
and anchored ``$regex`` on ``_id`` of an ordinary collection, equality and
ranges on a string field, ``$group``, and range queries on ``chunks.n`` work.
Hence:

- listing never touches GridFS: every key (inline or not) has a key document;
- ``list_prefix(p)`` is the range query ``_id >= p and _id < succ(p)`` (``succ``
  bumps the last code point), which uses the ``_id`` index on real MongoDB and
  needs no regex escaping; MongoDB compares strings by UTF-8 bytes, which
  orders like code points;
- ``list_dir(d)`` combines the keys whose indexed ``parent`` equals ``d`` with
  the ``$group`` of deeper ``parent`` values in the range ``(d, succ(d))``, so
  it reads one document per sub-directory rather than one per key;
- GridFS file references are stored as hex strings, not ObjectIds.

nx-27017 also answers the deletion of a missing GridFS file with an
``OperationFailure`` without a code instead of ``NoFile``; both are ignored.
A collection created with a non-simple collation would break the range
queries; asyncarr creates its collections without one.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import itertools
import re
import secrets
import weakref
from collections.abc import AsyncIterator, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote, urlsplit, urlunsplit

from asyncarr._tasks import gather_all
from asyncarr._types import RangeRequest, Versioned, range_to_slice
from asyncarr.abc import Store
from asyncarr.config import StoreLimits
from asyncarr.errors import (
    AsyncarrError,
    ConfigError,
    KeyNotFoundError,
    MissingExtraError,
    PreconditionFailedError,
    StoreError,
    TransientStoreError,
)
from asyncarr.stores._bodies import too_large
from asyncarr.stores._client_pool import Lease, LoopClientPool, PooledClient
from asyncarr.stores._mongodb_errors import translate

if TYPE_CHECKING:
    from gridfs import AsyncGridFSBucket
    from pymongo import AsyncMongoClient
    from pymongo.asynchronous.collection import AsyncCollection
    from pymongo.asynchronous.database import AsyncDatabase

__all__ = ["MongoDBStore", "mongodb_store_from_url"]

Doc = dict[str, Any]

DEFAULT_INLINE_THRESHOLD = 1 << 20
"""Values up to this many bytes are stored inline in their key document."""
MAX_INLINE_THRESHOLD = 15 << 20
"""MongoDB documents are limited to 16 MiB; keep room for the other fields."""
DEFAULT_GRIDFS_CHUNK_SIZE = 255 * 1024
_READ_ATTEMPTS = 5
_DELETE_BATCH = 500
_FETCHES_AT_ONCE = 8
_REPLY_BYTES = 16 << 20
"""Most GridFS chunk bytes asked for by one query (see ``_read_file``)."""
SERVER_SELECTION_TIMEOUT_MS = 5000
"""How long one attempt waits for a usable MongoDB server (pymongo's default is 30 s);
a URI or ``client_kwargs`` setting of ``serverSelectionTimeoutMS`` wins."""

_OPTIONS = frozenset({"inline_threshold", "gridfs_chunk_size", "limits", "client_kwargs"})


def _import_pymongo() -> None:
    """Import the driver now, so a missing extra is reported when the store is built."""
    try:
        import gridfs  # noqa: F401
        import pymongo  # noqa: F401
    except ImportError as exc:
        raise MissingExtraError("the MongoDB store", "mongodb", "pymongo") from exc


def _successor(prefix: str) -> str | None:
    """The smallest string greater than every string starting with ``prefix``."""
    chars = list(prefix)
    while chars:
        cp = ord(chars[-1]) + 1
        if cp == 0xD800:  # lone surrogates cannot be encoded as UTF-8
            cp = 0xE000
        if cp <= 0x10FFFF:
            chars[-1] = chr(cp)
            return "".join(chars)
        chars.pop()
    return None


def _range(field_name: str, prefix: str, *, inclusive: bool = True) -> Doc:
    """A query on ``field_name`` for values starting with ``prefix``."""
    cond: Doc = {"$gte" if inclusive else "$gt": prefix}
    upper = _successor(prefix)
    if upper is not None:
        cond["$lt"] = upper
    return {field_name: cond}


def _runs_of(intervals: Iterable[tuple[int, int]]) -> list[tuple[int, int]]:
    """Inclusive intervals merged into sorted runs of consecutive values:
    [(5, 7), (1, 3), (2, 2), (8, 8)] -> [(1, 3), (5, 8)] (never one entry per value: a
    hostile size must not cost memory before the server is asked)."""
    runs: list[tuple[int, int]] = []
    for lo, hi in sorted(intervals):
        if runs and lo <= runs[-1][1] + 1:
            runs[-1] = (runs[-1][0], max(runs[-1][1], hi))
        else:
            runs.append((lo, hi))
    return runs


def _parent(full_key: str) -> str:
    head, sep, _ = full_key.rpartition("/")
    return head + sep


# -- one client per (uri, credentials, options) per event loop, see _client_pool -------------


@dataclass(eq=False)
class _MongoClient:
    mongo: AsyncMongoClient[Doc]
    indexed: set[tuple[str, str]] = field(default_factory=set)  # (database, collection)


async def _close_quietly(client: _MongoClient) -> None:
    with contextlib.suppress(Exception):
        await client.mongo.close()


_clients: LoopClientPool[str, _MongoClient] = LoopClientPool("MongoDB", close=_close_quietly)


class _Changed(Exception):
    """A GridFS file vanished or changed while being read (internal)."""


class MongoDBStore(Store):
    """Keys and values in a MongoDB collection (large values in GridFS).

    ``uri`` is a plain MongoDB connection string (hosts, credentials,
    options; no database in the path); ``database`` and ``collection`` name
    where the key documents live and ``prefix`` is prepended to every key.
    Clients are shared per event loop by every store with the same URI and
    client options, sized to ``limits.max_concurrency`` connections.
    """

    def __init__(
        self,
        uri: str,
        database: str,
        collection: str,
        *,
        prefix: str = "",
        read_only: bool = False,
        limits: StoreLimits | None = None,
        inline_threshold: int = DEFAULT_INLINE_THRESHOLD,
        gridfs_chunk_size: int = DEFAULT_GRIDFS_CHUNK_SIZE,
        client_kwargs: Mapping[str, Any] | None = None,
    ) -> None:
        super().__init__(read_only=read_only, limits=limits)
        _import_pymongo()
        parts = urlsplit(uri)
        if parts.scheme not in ("mongodb", "mongodb+srv") or not parts.netloc:
            raise ConfigError("expected a mongodb:// or mongodb+srv:// URI with a host")
        _check_names(database, collection)
        if (
            isinstance(inline_threshold, bool)
            or not isinstance(inline_threshold, int)
            or not (0 <= inline_threshold <= MAX_INLINE_THRESHOLD)
        ):
            raise ConfigError(
                f"inline_threshold must be an int in [0, {MAX_INLINE_THRESHOLD}], "
                f"got {inline_threshold!r}"
            )
        if (
            isinstance(gridfs_chunk_size, bool)
            or not isinstance(gridfs_chunk_size, int)
            or not (1024 <= gridfs_chunk_size <= MAX_INLINE_THRESHOLD)
        ):
            raise ConfigError(
                f"gridfs_chunk_size must be an int in [1024, {MAX_INLINE_THRESHOLD}], "
                f"got {gridfs_chunk_size!r}"
            )
        self._uri = uri
        self._hosts = parts.netloc.rpartition("@")[2]
        self._scheme = parts.scheme
        self._database = database
        self._collection = collection
        self._root = ""
        self._root = self._prefix(prefix) if prefix else ""
        self._inline_threshold = inline_threshold
        self._chunk_size = gridfs_chunk_size
        self._client_kwargs: Doc = dict(client_kwargs or {})
        self._secrets = _secrets_of(parts.netloc, self._client_kwargs)
        uri_options = {k.lower() for k in _query_keys(parts.query)}
        given = uri_options | {k.lower() for k in self._client_kwargs}
        if "maxpoolsize" not in given:
            self._client_kwargs["maxPoolSize"] = self.limits.max_concurrency
        if "serverselectiontimeoutms" not in given:
            # pymongo waits 30 s for a server to appear: per attempt, so a dead or wrong
            # address took the whole retry deadline (120 s) to fail; other stores fail in
            # seconds
            self._client_kwargs["serverSelectionTimeoutMS"] = SERVER_SELECTION_TIMEOUT_MS
        self._ident = hashlib.sha256(
            f"{uri}\x00{sorted(self._client_kwargs.items(), key=lambda kv: kv[0])!r}".encode()
        ).hexdigest()
        self._held: weakref.WeakKeyDictionary[
            asyncio.AbstractEventLoop, Lease[str, _MongoClient]
        ] = weakref.WeakKeyDictionary()

    # -- identity ---------------------------------------------------------------------------
    @property
    def endpoint_key(self) -> str:
        return f"mongodb:{self._hosts}"

    @property
    def supports_conditional_writes(self) -> bool:
        return True

    @property
    def inline_threshold(self) -> int:
        return self._inline_threshold

    def with_read_only(self, read_only: bool = True) -> MongoDBStore:
        return MongoDBStore(
            self._uri,
            self._database,
            self._collection,
            prefix=self._root,
            read_only=read_only,
            limits=self.limits,
            inline_threshold=self._inline_threshold,
            gridfs_chunk_size=self._chunk_size,
            client_kwargs={k: v for k, v in self._client_kwargs.items()},
        )

    @property
    def location(self) -> str:
        where = f"{self._scheme}://{self._hosts}/{self._database}/{self._collection}"
        return f"{where}/{self._root}".rstrip("/")

    def __repr__(self) -> str:
        where = f"{self._scheme}://{self._hosts}/{self._database}/{self._collection}"
        if self._root:
            where += "/" + self._root.rstrip("/")
        return f"MongoDBStore({where}{', read-only' if self.read_only else ''})"

    __str__ = __repr__

    # -- plumbing -------------------------------------------------------------------------------
    def _shared(self) -> PooledClient[str, _MongoClient]:
        """The client this store shares in the running loop (with its reference count)."""
        if self._closed:
            raise StoreError("store is closed", store=self)
        loop = asyncio.get_running_loop()
        lease = self._held.get(loop)
        if lease is None:
            with self._errors(None):
                try:
                    lease = _clients.acquire_nowait(self._ident, self._new_client)
                except (ValueError, TypeError) as exc:  # pymongo's checks of client options
                    raise ConfigError(f"invalid MongoDB client option for {self}: {exc}") from exc
            self._held[loop] = lease
        return lease.pooled

    def _new_client(self) -> _MongoClient:
        from pymongo import AsyncMongoClient

        return _MongoClient(AsyncMongoClient(self._uri, **self._client_kwargs))

    def _db(self) -> AsyncDatabase[Doc]:
        return self._shared().client.mongo[self._database]

    def _coll(self) -> AsyncCollection[Doc]:
        return self._db()[self._collection]

    def _bucket_name(self) -> str:
        return f"{self._collection}_fs"

    def _bucket(self) -> AsyncGridFSBucket:
        from gridfs import AsyncGridFSBucket

        return AsyncGridFSBucket(self._db(), self._bucket_name(), chunk_size_bytes=self._chunk_size)

    def _chunks(self) -> AsyncCollection[Doc]:
        return self._db()[f"{self._bucket_name()}.chunks"]

    def _full(self, key: str) -> str:
        return self._root + self._key(key)

    @contextlib.contextmanager
    def _errors(self, key: str | None) -> Iterator[None]:
        """Translate driver exceptions raised inside the block."""
        try:
            yield
        except AsyncarrError:
            raise
        except Exception as exc:
            translated = translate(exc, self, key, self._scrub)
            if translated is None:
                raise
            raise translated from exc

    def _scrub(self, text: str) -> str:
        """``text`` with the password masked where it stands as a whole token (a short
        password replaced inside every word would garble the message and show itself by
        the pattern of the gaps)."""
        for secret in self._secrets:
            text = re.sub(rf"(?<![A-Za-z0-9]){re.escape(secret)}(?![A-Za-z0-9])", "***", text)
        return text

    async def _ensure_indexes(self) -> None:
        shared = self._shared().client
        marker = (self._database, self._collection)
        if marker not in shared.indexed:
            await self._coll().create_index("parent")
            shared.indexed.add(marker)

    # -- reads ----------------------------------------------------------------------------------
    async def get(
        self, key: str, byte_range: RangeRequest | None = None, *, max_size: int | None = None
    ) -> bytes | None:
        got = await self._read(key, [byte_range], max_size)
        return None if got is None else got[1][0]

    async def get_ranges(
        self, key: str, ranges: Sequence[RangeRequest | None]
    ) -> list[bytes] | None:
        got = await self._read(key, ranges)
        return None if got is None else got[1]

    async def get_versioned(self, key: str, *, max_size: int | None = None) -> Versioned | None:
        got = await self._read(key, [None], max_size)
        return None if got is None else Versioned(got[1][0], got[0])

    def _check_sizes(
        self, key: str, size: int, ranges: Sequence[RangeRequest | None], max_size: int | None
    ) -> list[slice]:
        """The slices ``ranges`` select of a value of ``size`` bytes, each within
        ``max_size`` (before any GridFS chunk is fetched)."""
        slices = [range_to_slice(r, size) for r in ranges]
        for s in slices:
            if max_size is not None and s.stop - s.start > max_size:
                raise too_large(self, key, s.stop - s.start, max_size)
        return slices

    async def _read(
        self, key: str, ranges: Sequence[RangeRequest | None], max_size: int | None = None
    ) -> tuple[str, list[bytes]] | None:
        full = self._full(key)
        last_fs: str | None = None
        with self._errors(key):
            for _ in range(_READ_ATTEMPTS):
                doc = await self._coll().find_one({"_id": full})
                if doc is None:
                    return None
                version = str(doc.get("version"))
                fs = doc.get("fs")
                if not fs:
                    data = bytes(doc.get("data") or b"")
                    slices = self._check_sizes(key, len(data), ranges, max_size)
                    return version, [data[s] for s in slices]
                size, cs = doc.get("size"), doc.get("cs")
                if not (isinstance(size, int) and size >= 0 and isinstance(cs, int) and cs > 0):
                    raise StoreError(
                        f"corrupt key document: GridFS size {size!r}, chunk size {cs!r}",
                        store=self,
                        key=key,
                    )
                slices = self._check_sizes(key, size, ranges, max_size)
                if fs == last_fs:
                    raise StoreError(
                        f"GridFS file {fs} referenced by the key is missing or corrupt",
                        store=self,
                        key=key,
                    )
                try:
                    return version, await self._read_file(fs, size, cs, slices)
                except _Changed:
                    last_fs = fs  # replaced or deleted while we read: look again
        raise TransientStoreError("value kept changing while being read", store=self, key=key)

    async def _read_file(self, fs: str, size: int, cs: int, slices: list[slice]) -> list[bytes]:
        """``slices`` of the GridFS file ``fs`` (``size`` bytes in chunks of ``cs``)."""
        from bson import ObjectId

        runs = _runs_of((s.start // cs, (s.stop - 1) // cs) for s in slices if s.stop > s.start)
        if not runs:
            return [b"" for _ in slices]
        wanted = sum(hi - lo + 1 for lo, hi in runs)
        files_id = ObjectId(fs)
        nchunks = (size + cs - 1) // cs
        chunks: dict[int, bytes] = {}

        async def fetch(lo: int, hi: int) -> None:
            flt = {"files_id": files_id, "n": {"$gte": lo, "$lte": hi}}
            async for chunk in self._chunks().find(flt, {"n": 1, "data": 1}):
                n = int(chunk["n"])
                data = bytes(chunk["data"])
                if len(data) != (cs if n < nchunks - 1 else size - n * cs):
                    raise _Changed
                if lo <= n <= hi:
                    chunks[n] = data
            if any(n not in chunks for n in (lo, hi)):
                raise _Changed  # missing chunks: the file changed (or a size that lies)

        # One query per run of consecutive chunks ($in on "n" is ignored by nx-27017), of at
        # most ~16 MiB each: nx-27017 answers a query in one reply whatever the batch size,
        # and refuses replies past its 48 MB message limit. A few at a time, so a key
        # document announcing an absurd size fails at the first empty answer.
        per_query = max(1, _REPLY_BYTES // cs)
        pieces = (
            (start, min(hi, start + per_query - 1))
            for lo, hi in runs
            for start in range(lo, hi + 1, per_query)
        )
        while batch := list(itertools.islice(pieces, _FETCHES_AT_ONCE)):
            await gather_all(*(fetch(lo, hi) for lo, hi in batch))
        if len(chunks) != wanted:
            raise _Changed
        out: list[bytes] = []
        for s in slices:
            if s.stop <= s.start:
                out.append(b"")
                continue
            first, last = s.start // cs, (s.stop - 1) // cs
            joined = b"".join(chunks[n] for n in range(first, last + 1))
            out.append(joined[s.start - first * cs : s.stop - first * cs])
        return out

    async def exists(self, key: str) -> bool:
        full = self._full(key)
        with self._errors(key):
            return await self._coll().find_one({"_id": full}, {"_id": 1}) is not None

    async def getsize(self, key: str) -> int:
        full = self._full(key)
        with self._errors(key):
            doc = await self._coll().find_one({"_id": full}, {"size": 1})
        if doc is None:
            raise KeyNotFoundError("no such key", store=self, key=key)
        return int(doc["size"])

    # -- writes ---------------------------------------------------------------------------------
    async def _prepare(self, full: str, value: bytes) -> Doc:
        """The key document fields for ``value``, uploading it to GridFS if large."""
        value = bytes(value)
        fields: Doc = {
            "parent": _parent(full),
            "size": len(value),
            "version": secrets.token_hex(12),
            "data": None,
            "fs": None,
            "cs": None,
        }
        await self._ensure_indexes()
        if len(value) <= self._inline_threshold:
            fields["data"] = value
        else:
            file_id = await self._bucket().upload_from_stream(full, value, metadata={"key": full})
            fields["fs"] = str(file_id)
            fields["cs"] = self._chunk_size
        return fields

    async def _delete_file(self, fs: str | None) -> None:
        """Delete a GridFS file; missing files are fine (nx-27017 raises OperationFailure)."""
        if not fs:
            return
        from bson import ObjectId
        from gridfs.errors import NoFile
        from pymongo.errors import OperationFailure

        try:
            await self._bucket().delete(ObjectId(fs))
        except NoFile:
            pass
        except OperationFailure as exc:
            if exc.code is not None or "not found" not in str(exc).lower():
                raise

    async def _discard(self, fields: Doc) -> None:
        """Best-effort removal of a file uploaded for a write that did not happen."""
        with contextlib.suppress(Exception):
            await self._delete_file(fields.get("fs"))

    async def set(self, key: str, value: bytes) -> None:
        full = self._full(key)
        self._check_writable(key)
        from pymongo import ReturnDocument
        from pymongo.errors import DuplicateKeyError

        with self._errors(key):
            fields = await self._prepare(full, value)
            try:
                for attempt in range(2):
                    try:
                        old = await self._coll().find_one_and_update(
                            {"_id": full},
                            {"$set": fields},
                            projection={"fs": 1},
                            upsert=True,
                            return_document=ReturnDocument.BEFORE,
                        )
                        break
                    except DuplicateKeyError:  # two upserts of a new key raced
                        if attempt:
                            raise
            except BaseException:
                await self._discard(fields)
                raise
            if old is not None:
                await self._delete_file(old.get("fs"))

    async def _insert(self, key: str, value: bytes) -> bool:
        full = self._full(key)
        self._check_writable(key)
        from pymongo.errors import DuplicateKeyError

        with self._errors(key):
            if len(value) > self._inline_threshold and await self.exists(key):
                return False  # spare the upload; the insert below stays authoritative
            fields = await self._prepare(full, value)
            try:
                await self._coll().insert_one({"_id": full, **fields})
            except DuplicateKeyError:
                await self._discard(fields)
                return False
            except BaseException:
                await self._discard(fields)
                raise
            return True

    async def set_if_not_exists(self, key: str, value: bytes) -> bool:
        return await self._insert(key, value)

    async def set_if_version(self, key: str, value: bytes, version: str | None) -> None:
        if version is None:
            if not await self._insert(key, value):
                raise PreconditionFailedError("key already exists", store=self, key=key)
            return
        full = self._full(key)
        self._check_writable(key)
        from pymongo import ReturnDocument

        with self._errors(key):
            fields = await self._prepare(full, value)
            try:
                old = await self._coll().find_one_and_update(
                    {"_id": full, "version": version},
                    {"$set": fields},
                    projection={"fs": 1},
                    return_document=ReturnDocument.BEFORE,
                )
            except BaseException:
                await self._discard(fields)
                raise
            if old is None:
                await self._discard(fields)
                raise PreconditionFailedError(
                    f"version is no longer {version!r}", store=self, key=key
                )
            await self._delete_file(old.get("fs"))

    async def delete(self, key: str) -> None:
        full = self._full(key)
        self._check_writable(key)
        with self._errors(key):
            old = await self._coll().find_one_and_delete({"_id": full}, {"fs": 1})
            if old is not None:
                await self._delete_file(old.get("fs"))

    async def delete_prefix(self, prefix: str) -> None:
        prefix = self._list_prefix_arg(prefix)
        self._check_writable(prefix)
        full = self._root + prefix
        with self._errors(prefix or None):
            coll = self._coll()
            inline: list[str] = []
            files: list[tuple[str, str]] = []
            async for doc in coll.find(_range("_id", full) if full else {}, {"fs": 1}):
                if doc.get("fs"):
                    files.append((doc["_id"], doc["fs"]))
                else:
                    inline.append(doc["_id"])
            for i in range(0, len(inline), _DELETE_BATCH):
                # "fs": None keeps a key that became a GridFS value meanwhile (its writer won)
                await coll.delete_many({"_id": {"$in": inline[i : i + _DELETE_BATCH]}, "fs": None})
            for doc_id, fs in files:
                result = await coll.delete_one({"_id": doc_id, "fs": fs})
                if result.deleted_count:
                    await self._delete_file(fs)

    # -- listing -------------------------------------------------------------------------------
    async def list_prefix(self, prefix: str) -> AsyncIterator[str]:
        prefix = self._list_prefix_arg(prefix)
        full = self._root + prefix
        cut = len(self._root)
        with self._errors(prefix or None):
            cursor = self._coll().find(_range("_id", full) if full else {}, {"_id": 1})
            async for doc in cursor:
                yield str(doc["_id"])[cut:]

    async def list_dir(self, prefix: str) -> list[str]:
        base = self._root + self._prefix(prefix)
        names: set[str] = set()
        with self._errors(prefix or None):
            coll = self._coll()
            async for doc in coll.find({"parent": base}, {"_id": 1}):
                names.add(str(doc["_id"])[len(base) :])
            deeper = _range("parent", base, inclusive=False)
            async for group in await coll.aggregate(
                [{"$match": deeper}, {"$group": {"_id": "$parent"}}]
            ):
                rest = str(group["_id"])[len(base) :]
                if rest:
                    names.add(rest.split("/", 1)[0])
        return sorted(names)

    # -- lifecycle ------------------------------------------------------------------------------
    async def aclose(self) -> None:
        if self._closed:
            return
        leases = list(self._held.values())
        self._held.clear()
        await super().aclose()
        await _clients.release_all(leases)


def _check_names(database: str, collection: str) -> None:
    if not database or any(c in database for c in '/\\. "$\x00') or len(database) > 63:
        raise ConfigError(f"invalid MongoDB database name {database!r}")
    if (
        not collection
        or "$" in collection
        or "\x00" in collection
        or collection.startswith("system.")
    ):
        raise ConfigError(f"invalid MongoDB collection name {collection!r}")


def _query_keys(query: str) -> list[str]:
    return [part.split("=", 1)[0] for part in query.split("&") if part]


def _secrets_of(netloc: str, client_kwargs: Mapping[str, Any]) -> list[str]:
    found: list[str] = []
    userinfo, at, _ = netloc.rpartition("@")
    if at and ":" in userinfo:
        raw = userinfo.split(":", 1)[1]
        found += [raw, unquote(raw)]
    password = client_kwargs.get("password")
    if isinstance(password, str):
        found.append(password)
    return [s for s in found if s]


def mongodb_store_from_url(
    url: str, *, read_only: bool, storage_options: Mapping[str, Any]
) -> MongoDBStore:
    """Open ``mongodb://host/database/collection[/prefix]?options`` (or ``mongodb+srv://``).

    ``storage_options``: ``inline_threshold`` (bytes stored inline in the
    key document; larger values go to GridFS), ``gridfs_chunk_size``,
    ``limits`` (:class:`~asyncarr.config.StoreLimits`) and ``client_kwargs``
    (extra :class:`pymongo.AsyncMongoClient` keyword arguments).
    """
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    if scheme not in ("mongodb", "mongodb+srv"):
        raise ConfigError(f"not a MongoDB URL: scheme {scheme!r}")
    if "#" in url:
        raise ConfigError(
            "MongoDB URL has a fragment ('#'): it would cut the prefix short; "
            "percent-encode a '#' in the prefix as %23"
        )
    if not parts.netloc.rpartition("@")[2]:
        raise ConfigError("MongoDB URL needs a host, e.g. mongodb://127.0.0.1:27017/db/collection")
    segments = [unquote(s) for s in parts.path.split("/") if s]
    if len(segments) < 2:
        raise ConfigError(
            "MongoDB URL must name a database and a collection: "
            "mongodb://host[:port]/database/collection[/prefix]"
        )
    unknown = set(storage_options) - _OPTIONS
    if unknown:
        raise ConfigError(
            f"unknown storage_options for mongodb://: {sorted(unknown)}; "
            f"expected some of {sorted(_OPTIONS)}"
        )
    limits = storage_options.get("limits")
    client_kwargs = storage_options.get("client_kwargs") or {}
    if not isinstance(client_kwargs, Mapping):
        raise ConfigError(f"client_kwargs must be a mapping, got {type(client_kwargs).__name__}")
    client_uri = urlunsplit((scheme, parts.netloc, "/", parts.query, ""))
    return MongoDBStore(
        client_uri,
        segments[0],
        segments[1],
        prefix="/".join(segments[2:]),
        read_only=read_only,
        limits=limits,
        inline_threshold=storage_options.get("inline_threshold", DEFAULT_INLINE_THRESHOLD),
        gridfs_chunk_size=storage_options.get("gridfs_chunk_size", DEFAULT_GRIDFS_CHUNK_SIZE),
        client_kwargs=client_kwargs,
    )
